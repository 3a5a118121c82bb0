"""Sampling filters: next_token_probs is softmax(logits / T), then top-k keeps exactly the k most likely
characters, then top-p keeps the smallest most-likely-first prefix whose mass reaches p (the character that
crosses p included), each renormalised; and generation draws from exactly that distribution.

Every expected distribution here is worked out independently (by hand or in float64 numpy), not by calling the
code under test a second time."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from attnlm.api.model import Model
from attnlm.checks import SamplingOptions
from attnlm.config import Config, ModelConfig
from attnlm.data import Vocab
from attnlm.errors import UserError
from attnlm.lm.generate import next_token_probs
from attnlm.lm.model import AttnLM

# Four characters with probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1, listed out of order on purpose.
PROBS = [0.15, 0.5, 0.05, 0.3]
LOGITS = torch.tensor([math.log(p) for p in PROBS])


def probs_of(logits: torch.Tensor | list[float], temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None) -> list[float]:
    logits = torch.as_tensor(logits, dtype=torch.float32)
    return next_token_probs(logits, SamplingOptions(temperature, top_k, top_p)).tolist()


def softmax64(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def reference(logits: list[float], temperature: float, top_k: int | None, top_p: float | None) -> np.ndarray:
    """The documented filters in float64, written out step by step."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    keep = np.ones(len(z), dtype=bool)
    if top_k is not None and top_k < len(z):
        keep[:] = False
        keep[np.argsort(-z, kind="stable")[:top_k]] = True
    p = np.where(keep, softmax64(np.where(keep, z, -np.inf)), 0.0)
    if top_p is not None and top_p < 1:
        order = np.argsort(-p, kind="stable")
        kept, mass = [], 0.0
        for i in order:  # most likely first, until the mass reaches top_p; the one that crosses it stays
            if mass >= top_p:
                break
            kept.append(i)
            mass += p[i]
        nucleus = np.zeros(len(p), dtype=bool)
        nucleus[kept] = True
        p = np.where(nucleus, p, 0.0)
        p = p / p.sum()
    return p


# ----- temperature -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [0.25, 0.5, 1.0, 2.0, 7.0])
def test_temperature_divides_the_logits_before_the_softmax(temperature: float) -> None:
    logits = [2.0, -1.0, 0.5, 3.0, 0.0]
    weights = [math.exp(x / temperature) for x in logits]
    expected = [w / sum(weights) for w in weights]
    assert probs_of(logits, temperature) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_a_low_temperature_sharpens_and_a_high_one_flattens() -> None:
    cold, plain, hot = (probs_of(LOGITS, t) for t in (0.5, 1.0, 2.0))
    assert plain == pytest.approx(PROBS, rel=1e-5)
    assert max(cold) > max(plain) > max(hot)
    # At T = 1/2 each probability is squared before renormalising; at T = 2 its square root is taken.
    assert cold == pytest.approx([p * p / sum(q * q for q in PROBS) for p in PROBS], rel=1e-5)
    assert hot == pytest.approx([math.sqrt(p) / sum(math.sqrt(q) for q in PROBS) for p in PROBS], rel=1e-5)


# ----- top-k -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("k", "expected"), [
    (1, [0, 1, 0, 0]),
    (2, [0, 0.5 / 0.8, 0, 0.3 / 0.8]),
    (3, [0.15 / 0.95, 0.5 / 0.95, 0, 0.3 / 0.95]),
    (4, PROBS),
    (9, PROBS),  # more than the vocabulary: nothing to drop
])
def test_top_k_keeps_exactly_the_k_most_likely_renormalised(k: int, expected: list[float]) -> None:
    assert probs_of(LOGITS, top_k=k) == pytest.approx(expected, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("k", range(1, 12))
def test_top_k_keeps_k_characters_of_a_larger_vocabulary(k: int) -> None:
    logits = torch.tensor([0.3, -2.0, 1.7, 0.9, -0.4, 2.5, 0.1, -1.1, 1.2, -3.0, 0.6])
    probs = torch.tensor(probs_of(logits, top_k=k))
    kept = set(torch.nonzero(probs).flatten().tolist())
    assert kept == set(torch.argsort(logits, descending=True)[:k].tolist())
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)


def test_top_k_keeps_every_character_tied_with_the_kth() -> None:
    """What the code does with ties (documented, not a promise of the CLI): a character whose logit equals the
    k-th largest is kept too, so k=2 over [3, 1, 1, 0] keeps three characters, evenly between the tied two."""
    probs = probs_of([3.0, 1.0, 1.0, 0.0], top_k=2)
    e = [math.exp(3.0), math.exp(1.0), math.exp(1.0)]
    assert probs == pytest.approx([e[0] / sum(e), e[1] / sum(e), e[2] / sum(e), 0.0], rel=1e-5)


def test_top_k_is_unchanged_by_temperature_in_what_it_keeps() -> None:
    for temperature in (0.3, 3.0):
        probs = probs_of(LOGITS, temperature, top_k=2)
        w = [0.5 ** (1 / temperature), 0.3 ** (1 / temperature)]
        assert probs == pytest.approx([0, w[0] / sum(w), 0, w[1] / sum(w)], rel=1e-5, abs=1e-7)


# ----- top-p -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("p", "expected"), [
    # Most likely first: 0.5, then 0.3 (0.8), then 0.15 (0.95), then 0.05 (1.0).
    (0.01, [0, 1, 0, 0]),  # the most likely character always stays
    (0.45, [0, 1, 0, 0]),
    (0.55, [0, 0.5 / 0.8, 0, 0.3 / 0.8]),  # 0.5 falls short of 0.55, so the 0.3 that crosses it is kept
    (0.7, [0, 0.5 / 0.8, 0, 0.3 / 0.8]),
    (0.85, [0.15 / 0.95, 0.5 / 0.95, 0, 0.3 / 0.95]),
    (0.9, [0.15 / 0.95, 0.5 / 0.95, 0, 0.3 / 0.95]),
    (0.97, PROBS),
    (1.0, PROBS),  # p = 1 keeps everything
])
def test_top_p_keeps_the_smallest_prefix_that_reaches_p_renormalised(p: float, expected: list[float]) -> None:
    assert probs_of(LOGITS, top_p=p) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_top_p_of_one_keeps_even_a_vanishing_character() -> None:
    probs = probs_of([0.0, 0.0, -30.0], top_p=1.0)
    assert probs[2] > 0 and probs == pytest.approx([0.5, 0.5, 0.0], abs=1e-6)
    # Characters so unlikely that the mass before them already rounds to 1: top_p=1 is off, so they stay, as the
    # unfiltered softmax has them.
    logits = torch.tensor([0.0, -60.0, -80.0])
    kept = next_token_probs(logits, SamplingOptions(top_p=1.0))
    assert torch.equal(kept, next_token_probs(logits, SamplingOptions())) and bool((kept > 0).all())


def test_top_p_reached_exactly_by_a_prefix_stops_there() -> None:
    """Mass 0.5 + 0.25 is exactly 0.75 (binary fractions: no rounding): that prefix already reaches p = 0.75."""
    logits = [math.log(0.5), math.log(0.25), math.log(0.125), math.log(0.125)]
    assert probs_of(logits, top_p=0.75) == pytest.approx([2 / 3, 1 / 3, 0, 0], rel=1e-5, abs=1e-7)
    assert probs_of(logits, top_p=0.5) == pytest.approx([1, 0, 0, 0], abs=1e-7)


# ----- together --------------------------------------------------------------------------------------------
def test_top_p_applies_to_the_top_k_distribution() -> None:
    """top-k first; the nucleus is then taken over the k kept characters renormalised: k=3 leaves
    0.5/0.95 = 0.526, 0.3/0.95 = 0.316 and 0.15/0.95 = 0.158, and p = 0.8 is reached by the first two
    (0.842), so the third goes."""
    assert probs_of(LOGITS, top_k=3, top_p=0.8) == pytest.approx([0, 0.5 / 0.8, 0, 0.3 / 0.8], rel=1e-5, abs=1e-7)
    # p = 0.55: the whole distribution's 0.5 would fall short, but 0.5 / 0.8 of the top two reaches it alone.
    assert probs_of(LOGITS, top_k=2, top_p=0.55) == pytest.approx([0, 1, 0, 0], abs=1e-7)
    # k = 1 leaves one character whatever p is.
    assert probs_of(LOGITS, top_k=1, top_p=0.99) == pytest.approx([0, 1, 0, 0], abs=1e-7)


def test_temperature_is_applied_before_top_p() -> None:
    """At T = 2 the probabilities are proportional to sqrt(0.15), sqrt(0.5), sqrt(0.05), sqrt(0.3):
    0.226, 0.413, 0.131, 0.320 (rounded), so p = 0.7 needs three characters where T = 1 needed two."""
    w = [math.sqrt(p) for p in PROBS]
    hot = [x / sum(w) for x in w]
    kept = hot[0] + hot[1] + hot[3]
    assert probs_of(LOGITS, 2.0, top_p=0.7) == pytest.approx([hot[0] / kept, hot[1] / kept, 0, hot[3] / kept], rel=1e-5)
    # At T = 1/2 (probabilities squared: 0.25 / 0.3875 = 0.645 alone) p = 0.6 keeps only the most likely.
    assert probs_of(LOGITS, 0.5, top_p=0.6) == pytest.approx([0, 1, 0, 0], abs=1e-7)
    assert probs_of(LOGITS, 1.0, top_p=0.6) == pytest.approx([0, 0.5 / 0.8, 0, 0.3 / 0.8], rel=1e-5, abs=1e-7)


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[float], float, int | None, float | None]:
    size = draw(st.integers(2, 24))
    # Distinct logits in any order: a start, then gaps of at least 0.01 (ties would make "the k most likely"
    # ambiguous), spread over at most about 8 so that even at T = 0.1 no probability underflows float32.
    start = draw(st.floats(-4, 4))
    gaps = draw(st.lists(st.floats(0.01, 0.35), min_size=size - 1, max_size=size - 1))
    ascending = [float(np.float32(start + g)) for g in np.concatenate(([0.0], np.cumsum(gaps)))]
    logits = draw(st.permutations(ascending))
    temperature = draw(st.floats(0.1, 5.0))
    top_k = draw(st.none() | st.integers(1, size + 2))
    top_p = draw(st.none() | st.floats(0.01, 1.0))
    return logits, temperature, top_k, top_p


@settings(max_examples=150, deadline=None, derandomize=True, database=None)  # the same cases every run
@given(cases())
def test_filters_match_their_definition_for_any_logits(case: tuple[list[float], float, int | None, float | None]) -> None:
    logits, temperature, top_k, top_p = case
    expected = reference(logits, temperature, top_k, top_p)
    if top_p is not None and top_p < 1:  # no prefix mass within rounding of p: either side would be right
        before = reference(logits, temperature, top_k, None)
        assume(np.abs(np.cumsum(np.sort(before)[::-1]) - top_p).min() > 1e-4)
    got = np.asarray(probs_of(logits, temperature, top_k, top_p))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert (got > 0).sum() == (expected > 0).sum()  # the same characters kept, not just close numbers
    assert got.sum() == pytest.approx(1.0, abs=1e-5) and got.argmax() == int(np.argmax(logits))


# ----- end to end: generation draws from the filtered distribution ------------------------------------------
def greedy_model() -> Model:
    cfg = ModelConfig(block_size=24, n_layer=2, n_head=2, n_embd=16, pos="rope")
    torch.manual_seed(0)
    module = AttnLM(cfg, 12).eval()
    with torch.no_grad():
        for p in module.parameters():  # spread the logits out: a freshly initialised model is nearly uniform
            p.add_(0.5 * torch.randn_like(p))
    return Model(module, Vocab("\nabcdefghijk"), Config(model=cfg), "a test model")


def greedy(model: Model, prompt: str, n: int) -> str:
    """Argmax of the model's own full-context logits, one character at a time."""
    ids = model.vocab.encode(prompt).tolist()
    with torch.no_grad():
        for _ in range(n):
            logits = model.module(torch.tensor([ids]))[0][0, -1]
            top2 = logits.topk(2).values
            assert float(top2[0] - top2[1]) > 1e-3, "a near tie would make greedy ambiguous; change the seed"
            ids.append(int(logits.argmax()))
    return model.vocab.decode(ids[len(prompt):])


@pytest.mark.parametrize("options", [
    {"top_k": 1},
    {"top_k": 1, "temperature": 5.0},
    {"top_p": 1e-4},
    {"top_p": 1e-4, "temperature": 5.0},
    {"top_k": 3, "top_p": 1e-4},
])
@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_with_one_kept_character_is_greedy(options: dict, use_cache: bool) -> None:
    model = greedy_model()
    expected = greedy(model, "abc", 20)
    assert len(set(expected)) > 2  # a continuation with some variety, so a random one would not match by chance
    for seed in (0, 1, 2):
        assert model.generate("abc", 20, seed=seed, use_cache=use_cache, **options) == expected


def test_generation_without_filters_is_not_greedy() -> None:
    """The greedy test above can fail: at a high temperature the unfiltered draws leave the argmax path."""
    model = greedy_model()
    expected = greedy(model, "abc", 20)
    assert any(model.generate("abc", 20, temperature=5.0, seed=seed) != expected for seed in (0, 1, 2))


@pytest.mark.parametrize(("options", "message"), [
    ({"temperature": 0.0}, r"temperature must be > 0, got 0\.0"),
    ({"temperature": -0.5}, r"temperature must be > 0, got -0\.5"),
    ({"temperature": math.nan}, r"temperature must be > 0, got nan"),
    ({"temperature": math.inf}, r"temperature must be > 0, got inf"),
    ({"top_k": 0}, r"top_k must be at least 1, got 0"),
    ({"top_k": -3}, r"top_k must be at least 1, got -3"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0\.0"),
    ({"top_p": -0.2}, r"top_p must be in \(0, 1\], got -0\.2"),
    ({"top_p": 1.01}, r"top_p must be in \(0, 1\], got 1\.01"),
    ({"top_p": math.nan}, r"top_p must be in \(0, 1\], got nan"),
])
def test_generation_refuses_options_outside_their_range(options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        greedy_model().generate("abc", 5, seed=0, **options)
