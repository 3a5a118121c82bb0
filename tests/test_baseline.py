"""The uniform baseline against hand-computed values, and the vs-uniform table's cells."""

from __future__ import annotations

import pytest
import torch

from attnlm.inspection.attention import char_groups, group_matrix, word_groups
from attnlm.inspection.attention_table import attention_table, difference_text, shade_difference
from attnlm.inspection.baseline import above_uniform, uniform_attention, uniform_grouped


def test_uniform_attention_gives_each_visible_character_one_over_i_plus_one() -> None:
    expected = torch.tensor([[1, 0, 0, 0], [1 / 2, 1 / 2, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0], [1 / 4, 1 / 4, 1 / 4, 1 / 4]])
    assert torch.allclose(uniform_attention(4), expected)


def test_uniform_by_word_counts_the_visible_characters() -> None:
    # "a bc": "a" is position 0, " bc" positions 1-3. Row "a" (i = 0) sees only itself. Row "bc" averages
    # i = 1, 2, 3: "a" gets 1/2, 1/3, 1/4 -> 13/36, "bc" gets 1/2, 2/3, 3/4 -> 23/36.
    groups = word_groups("a bc")
    assert groups == [("a", [0]), ("bc", [1, 2, 3])]
    assert torch.allclose(uniform_grouped(groups), torch.tensor([[1.0, 0.0], [13 / 36, 23 / 36]]))


def test_the_full_stop_of_the_example_sees_each_word_by_its_length() -> None:
    # "." is position 13 and sees 14 characters: I 1, " love" 5, " tennis" 7, "." 1.
    u = uniform_grouped(word_groups("I love tennis."))
    assert torch.allclose(u[3], torch.tensor([1 / 14, 5 / 14, 7 / 14, 1 / 14]))
    assert [round(x, 2) for x in u[3].tolist()] == [0.07, 0.36, 0.50, 0.07]
    # Row "love" (positions 1-5) averages 1/(i+1) for "I": (1/2 + 1/3 + 1/4 + 1/5 + 1/6) / 5.
    assert u[1, 0].item() == pytest.approx((1 / 2 + 1 / 3 + 1 / 4 + 1 / 5 + 1 / 6) / 5)
    assert torch.allclose(u.sum(-1), torch.ones(4)) and (u.triu(1) == 0).all()


@pytest.mark.parametrize("text", ["I love tennis.", "Oh, don't!  ", "a👍🏽 e\u0301x"])
def test_the_counting_formula_agrees_with_grouping_the_uniform_weights(text: str) -> None:
    for groups in (word_groups(text), char_groups(text)):
        assert torch.allclose(uniform_grouped(groups), group_matrix(uniform_attention(len(text)), groups), atol=1e-6)


def test_above_uniform_is_zero_for_an_even_head_and_signed_otherwise() -> None:
    assert above_uniform(uniform_attention(5)).abs().max() == 0
    diagonal = torch.eye(3)  # every query attends only to itself
    expected = torch.tensor([[0.0, 0, 0], [-1 / 2, 1 / 2, 0], [-1 / 3, -1 / 3, 2 / 3]])
    assert torch.allclose(above_uniform(diagonal), expected)
    groups = word_groups("a bc")
    words = group_matrix(torch.eye(4), groups)  # (2, 2): each word attends to itself
    assert torch.allclose(above_uniform(words, groups), torch.tensor([[0.0, 0.0], [-13 / 36, 13 / 36]]))


def test_difference_cells_are_signed_with_the_uniform_value_beside() -> None:
    assert difference_text(0.0714, 0.3571, False) == "+0.07 (0.36)"
    assert difference_text(-0.1429, 0.5, False) == "-0.14 (0.50)"
    assert difference_text(-0.001, 1.0, False) == "0.00 (1.00)"  # never "-0.00"
    assert [difference_text(d, 0.5, True) for d in (0.0714, -0.1429, 0.0)] == ["+.07", "-.14", ".00"]
    # White at chance, deep blue a whole probability above it, deep red a whole probability below.
    assert shade_difference(0.0) == "black on #ffffff"
    assert shade_difference(1.0) == "white on #08306b" and shade_difference(-1.0) == "white on #a50f15"


def test_vs_uniform_table_reads_learned_minus_uniform() -> None:
    groups = word_groups("a bc")
    learned = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    table = attention_table(learned, ["a", "bc"], "vs uniform", uniform=uniform_grouped(groups))
    cells = [[str(c) for c in column.cells] for column in table.columns]
    assert cells[0] == ['"a"', '"bc"']
    assert cells[1] == ["0.00 (1.00)", "+0.14 (0.36)"]  # 0.5 - 13/36
    assert cells[2] == ["0", "-0.14 (0.64)"]  # the future: 0, unshaded
