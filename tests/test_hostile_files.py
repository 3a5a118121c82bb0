"""Files that are not plain files, and files edited to lie: folders of text holding link loops, named pipes,
sockets, dangling links, links out of the folder and unreadable files; exports whose JSON or safetensors files
do not match. Each ends in one line per skipped file (and a count) or one clear error line, never a hang or a
traceback. Every CLI run is bounded by a timeout, so a hang fails the test instead of blocking the suite."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from run_helpers import run_cli, train_args
from safetensors.torch import save

import attnlm
from attnlm.config import Config, LogConfig, ModelConfig
from attnlm.data import load_corpus
from attnlm.data.prepare import scan
from attnlm.data.sources import SourceFile, resolve
from attnlm.errors import UserError
from attnlm.lm.model import AttnLM
from attnlm.store.checkpoint import save_checkpoint
from attnlm.store.export import export
from attnlm.store.exported import FORMAT
from attnlm.store.load import load_model

pytestmark = pytest.mark.skipif(os.name != "posix", reason="named pipes, sockets and symlinks as tested here are POSIX")

BOUND = 120  # seconds: far beyond any of these runs; reached only by a hang
FAST = ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=3", "--set", "log.sample_chars=0"]


def reads_anything() -> bool:
    """Whether this process reads a file that grants nobody the right (root does: it bypasses permissions)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "locked"
        path.write_bytes(b"x")
        path.chmod(0)
        try:
            path.read_bytes()
        except PermissionError:
            return False
        return True


def hostile_folder(root: Path, text: str) -> dict[str, str]:
    """A folder with one good text file and every kind of file that must be skipped; returns name -> the reason
    its skip line gives."""
    root.mkdir()
    (root / "good.txt").write_text(text, encoding="utf-8")
    (root / "alias.txt").symlink_to("good.txt")  # a link to a file inside: read once, as good.txt
    (root.parent / "secret.txt").write_text("not to be read\n", encoding="utf-8")
    (root / "outside.txt").symlink_to(root.parent / "secret.txt")
    (root / "loop").symlink_to(".")  # a link to its own folder: walking it would never end
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to("..")
    (root / "dangling.txt").symlink_to("missing.txt")
    (root / "self.txt").symlink_to("self.txt")  # a link to itself
    os.mkfifo(root / "x.txt")  # opened plainly, a named pipe blocks until someone writes
    bind_socket(root / "sock.txt")
    return {"dangling.txt": "is a link to nothing (its target is missing)",
            "loop": "links to a folder it is in (a loop)",
            "outside.txt": f"links outside {root} (to {(root.parent / 'secret.txt').resolve()})",
            "self.txt": "is a link that loops back on itself",
            "sock.txt": "is a socket, not a regular file",
            "sub/up": "links to a folder it is in (a loop)",
            "x.txt": "is a named pipe (FIFO), not a regular file"}


def bind_socket(path: Path) -> None:
    """A Unix socket file at `path` (bound from its folder: socket paths are limited to about 100 bytes)."""
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path.name)
    finally:
        os.chdir(here)


def skip_lines(output: str) -> list[str]:
    return sorted(line for line in output.splitlines() if line.startswith("skipping "))


def expected_skips(root: Path, reasons: dict[str, str]) -> list[str]:
    return sorted(f"skipping {root / name}: it {why}" for name, why in reasons.items())


@pytest.fixture
def text(small_corpus: Path) -> str:
    return small_corpus.read_text(encoding="utf-8")[:5000]


def test_prepare_skips_every_special_file_with_one_line_each(tmp_path: Path, text: str) -> None:
    root = tmp_path / "texts"
    reasons = hostile_folder(root, text)
    result = run_cli("data", "prepare", str(root), "--out", str(tmp_path / "prepared"), timeout=BOUND)
    assert result.returncode == 0, result.stderr
    assert skip_lines(result.stdout) == expected_skips(root, reasons)
    assert f"5,000 characters in 1 document ({len(reasons)} other files skipped)" in result.stdout
    meta = json.loads((tmp_path / "prepared" / "meta.json").read_text(encoding="utf-8"))
    assert [d["path"] for d in meta["documents"]] == [str((root / "good.txt").resolve())]
    assert "not to be read" not in (tmp_path / "prepared" / "train.bin").read_bytes().decode("ascii")


def test_train_reads_the_same_folder_and_counts_what_it_skipped(tmp_path: Path, text: str) -> None:
    root = tmp_path / "texts"
    reasons = hostile_folder(root, text)
    result = run_cli(*train_args(root, tmp_path / "runs", "hostile", *FAST), timeout=BOUND)
    assert result.returncode == 0, result.stderr
    assert skip_lines(result.stderr) == expected_skips(root, reasons)
    assert f"{root}: {len(reasons)} files skipped (listed above), 1 read" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr


def test_nothing_readable_is_one_line_and_exit_2(tmp_path: Path) -> None:
    root = tmp_path / "texts"
    root.mkdir()
    (root / "loop").symlink_to(".")
    (root / "dangling.txt").symlink_to("missing.txt")
    os.mkfifo(root / "x.txt")
    for args in (["data", "prepare", str(root)], train_args(root, tmp_path / "runs", "none", *FAST)):
        result = run_cli(*args, timeout=BOUND)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [
            f"error: no readable file in {root}: {root / 'loop'} links to a folder it is in (a loop) "
            "(and 2 more skipped); give regular UTF-8 text files or set data.path elsewhere"]


def test_a_data_path_that_is_itself_no_file_is_one_line(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "dangling.txt").symlink_to("missing.txt")
    (tmp_path / "looping.txt").symlink_to("looping.txt")
    bind_socket(tmp_path / "sock.txt")
    cases = {"pipe.txt": "is a named pipe (FIFO), not a regular file; set data.path to UTF-8 text files, a folder "
                         "or a glob",
             "sock.txt": "is a socket, not a regular file; set data.path to UTF-8 text files, a folder or a glob",
             "dangling.txt": "is a link to nothing (its target is missing); point it at a UTF-8 text file or set "
                             "data.path elsewhere",
             "looping.txt": "is a link that loops back on itself; point it at a UTF-8 text file or set data.path "
                            "elsewhere"}
    for name, tail in cases.items():
        path = tmp_path / name
        for args in (["data", "prepare", str(path)], train_args(path, tmp_path / "runs", "x", *FAST)):
            result = run_cli(*args, timeout=BOUND)
            assert (result.returncode, result.stderr.splitlines()) == (2, [f"error: data path {path} {tail}"])
    with pytest.raises(UserError, match=r"is a named pipe \(FIFO\), not a regular file"):
        load_corpus(tmp_path / "pipe.txt", 0.1)


@pytest.mark.skipif(os.name == "posix" and reads_anything(),
                    reason="running as root, which reads any file whatever its permissions, so no file can be made "
                           "unreadable here")
def test_unreadable_files_and_folders_are_skipped(tmp_path: Path, text: str) -> None:
    root = tmp_path / "texts"
    root.mkdir()
    (root / "good.txt").write_text(text, encoding="utf-8")
    (root / "locked.txt").write_text(text, encoding="utf-8")
    (root / "locked").mkdir()
    (root / "locked" / "inner.txt").write_text(text, encoding="utf-8")
    os.chmod(root / "locked.txt", 0)
    os.chmod(root / "locked", 0)
    try:
        result = run_cli("data", "prepare", str(root), "--out", str(tmp_path / "prepared"), timeout=BOUND)
        assert result.returncode == 0, result.stderr
        assert skip_lines(result.stdout) == sorted([f"skipping {root / 'locked'}: it cannot be read (Permission denied)",
                                                    f"skipping {root / 'locked.txt'}: it cannot be read (Permission denied)"])
        result = run_cli("data", "prepare", str(root / "locked.txt"), timeout=BOUND)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
        assert "Permission denied" in result.stderr
    finally:
        os.chmod(root / "locked.txt", 0o644)
        os.chmod(root / "locked", 0o755)


def test_globs_never_follow_links_round_in_circles(tmp_path: Path, text: str) -> None:
    """Two links to the folder itself: glob.glob's ** would list 2**40 paths through them."""
    root = tmp_path / "texts"
    root.mkdir()
    (root / "a.txt").write_text(text, encoding="utf-8")
    (root / "l1").symlink_to(".")
    (root / "l2").symlink_to(".")
    (root / "deep").mkdir()
    (root / "deep" / "b.txt").write_text(text[:100], encoding="utf-8")
    result = run_cli("data", "prepare", f"{root}/**/*.txt", "--out", str(tmp_path / "prepared"), timeout=BOUND)
    assert result.returncode == 0, result.stderr
    assert "in 2 documents" in result.stdout and skip_lines(result.stdout) == []
    found = resolve(f"{root}/*")
    assert [f.path.name for f in found.files] == ["a.txt", "b.txt"]
    assert found.skipped == [(str(root / "l1"), "links to a folder it is in (a loop)"),
                             (str(root / "l2"), "links to a folder it is in (a loop)")]


def test_a_file_swapped_for_a_pipe_after_the_check_is_refused_not_waited_on(tmp_path: Path) -> None:
    """The walk saw a regular file; by the time it is read it is a named pipe with no writer. The scan runs in a
    thread so that a hang fails the test (the blocked thread is a daemon: it cannot keep pytest from ending)."""
    os.mkfifo(tmp_path / "swapped.txt")
    lines: list[str] = []
    outcome: list[object] = []
    reader = threading.Thread(target=lambda: outcome.append(scan([SourceFile(tmp_path / "swapped.txt", 10, 0)],
                                                                 strict=False, log=lines.append, progress=False)),
                              daemon=True)
    reader.start()
    reader.join(BOUND)
    assert not reader.is_alive(), "reading a named pipe blocked"
    assert lines == [f"skipping {tmp_path / 'swapped.txt'}: it is a named pipe (FIFO), not a regular file"]
    assert outcome[0].documents == []


# Exports.

CHARS = "\n !,.abcdehlnorstw"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model's export, written by attnlm's own export()."""
    folder = tmp_path_factory.mktemp("hostile-export")
    cfg = Config(model=ModelConfig(block_size=16, n_layer=2, n_head=2, n_embd=16), log=LogConfig(name="x"))
    torch.manual_seed(0)
    model = AttnLM(cfg.model, len(CHARS))
    save_checkpoint({"config": cfg.to_dict(), "vocab": CHARS, "model": model.state_dict()}, folder / "m.pt")
    export(folder / "m.pt", folder / "export")
    return folder / "export"


def edited(exported: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "edited"
    shutil.copytree(exported, folder)
    return folder


def rewrite_json(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def assert_refused(folder: Path, message: str) -> None:
    """One line at the CLI (exit 2) and a UserError in Python, both saying `message`."""
    with pytest.raises(UserError) as caught:
        load_model(folder, torch.device("cpu"))
    assert message in str(caught.value), str(caught.value)
    result = run_cli("sample", "--checkpoint", str(folder), "-n", "5", timeout=BOUND)
    assert (result.returncode, result.stderr.splitlines()) == (2, [f"error: {caught.value}"])


def test_the_export_loads_and_its_config_json_is_what_builds_the_model(exported: Path) -> None:
    model, vocab, cfg, meta = load_model(exported, torch.device("cpu"))
    assert vocab.chars == CHARS and meta["model"] == cfg.to_dict()["model"] and meta["vocab_size"] == len(CHARS)
    assert model.tok_emb.weight.shape == (meta["vocab_size"], meta["model"]["n_embd"])


def test_a_character_listed_twice_in_vocab_json(exported: Path, tmp_path: Path) -> None:
    folder = edited(exported, tmp_path)
    rewrite_json(folder / "vocab.json", lambda v: v["chars"].__setitem__(3, "a"))
    assert_refused(folder, f"{folder / 'vocab.json'} lists 'a' more than once")


def test_a_vocab_one_character_too_long(exported: Path, tmp_path: Path) -> None:
    folder = edited(exported, tmp_path)
    rewrite_json(folder / "vocab.json", lambda v: v["chars"].append("z"))
    assert_refused(folder, f"{folder / 'vocab.json'} lists {len(CHARS) + 1} characters but config.json has "
                           f"vocab_size {len(CHARS)}")
    rewrite_json(folder / "config.json", lambda c: c.__setitem__("vocab_size", len(CHARS) + 1))
    assert_refused(folder, f"vocab_size {len(CHARS) + 1} (the weights: {len(CHARS)})")


def test_the_same_characters_in_another_order(exported: Path, tmp_path: Path) -> None:
    folder = edited(exported, tmp_path)
    rewrite_json(folder / "vocab.json", lambda v: v.__setitem__("chars", v["chars"][::-1]))
    assert_refused(folder, "vocab.json does not match the vocabulary model.safetensors was trained with")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("n_embd", 32, "model.n_embd 32 (the weights: 16)"),
    ("n_layer", 3, "model.n_layer 3 (the weights: 2)"),
    ("block_size", 8, "model.block_size 8 (the weights: 16)"),
    ("n_head", 4, "model.n_head 4 (the weights: 2)"),
    ("mlp_ratio", 2, "model.mlp_ratio 2 (the weights: 4)"),
])
def test_config_json_shapes_that_the_weights_do_not_have(exported: Path, tmp_path: Path, key: str, value: int,
                                                         message: str) -> None:
    folder = edited(exported, tmp_path)

    def change(c: dict) -> None:
        c["model"][key] = c["config"]["model"][key] = value

    rewrite_json(folder / "config.json", change)
    assert_refused(folder, message)


def test_the_two_model_sections_of_config_json_must_agree(exported: Path, tmp_path: Path) -> None:
    folder = edited(exported, tmp_path)
    rewrite_json(folder / "config.json", lambda c: c["model"].__setitem__("n_layer", 3))
    assert_refused(folder, 'has a "model" section that "config"."model" contradicts (n_layer)')


def test_weights_without_their_own_record_are_checked_by_shape(exported: Path, tmp_path: Path) -> None:
    """An export whose safetensors metadata holds only the format (as older exports do) loads, and its shapes
    are still checked against config.json."""
    from safetensors.torch import load_file

    folder = edited(exported, tmp_path)
    tensors = {name: t.clone() for name, t in load_file(folder / "model.safetensors").items()}  # not the mapped file
    (folder / "model.safetensors").write_bytes(save(tensors, metadata={"format": FORMAT}))
    model, _, _, _ = load_model(folder, torch.device("cpu"))
    assert torch.equal(model.tok_emb.weight, tensors["tok_emb.weight"])
    (folder / "model.safetensors").write_bytes(save({**tensors, "tok_emb.weight": tensors["tok_emb.weight"].half()},
                                                    metadata={"format": FORMAT}))
    assert_refused(folder, "tok_emb.weight is F16, not float32")
    tensors.pop("blocks.1.mlp.up.weight")
    (folder / "model.safetensors").write_bytes(save(tensors, metadata={"format": FORMAT}))
    assert_refused(folder, "blocks.1.mlp.up.weight is missing")


def test_a_truncated_safetensors_file(exported: Path, tmp_path: Path) -> None:
    folder = edited(exported, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert_refused(folder, f"{folder / 'model.safetensors'} is truncated ({len(data) // 2:,} bytes, its header needs "
                           f"{len(data):,})")
    (folder / "model.safetensors").write_bytes(data[:5])
    assert_refused(folder, "is truncated (5 bytes, not even a safetensors header)")


def test_a_header_length_of_2_to_the_60(exported: Path, tmp_path: Path) -> None:
    folder = edited(exported, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes((2**60).to_bytes(8, "little") + data[8:])
    assert_refused(folder, f"is truncated or not a safetensors file (its header claims {2**60:,} bytes, the file has "
                           f"{len(data):,})")


def test_a_pipe_in_place_of_vocab_json_is_refused_at_once(exported: Path, tmp_path: Path) -> None:
    folder = edited(exported, tmp_path)
    os.mkfifo(folder / "pipe")
    os.replace(folder / "pipe", folder / "vocab.json")
    assert_refused(folder, f"{folder / 'vocab.json'} is a named pipe (FIFO), not a regular file")


def json_leaves(value: object, path: tuple = ()) -> list[tuple]:
    """The path of every value inside a JSON document, containers included."""
    found = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            found += json_leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += json_leaves(v, (*path, i))
    return found


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=5)


def values_like(original: object) -> st.SearchStrategy:
    """A value of the same kind as `original` and near it (an edit a person might make), or any JSON value."""
    if isinstance(original, bool):
        like = st.booleans()
    elif isinstance(original, int):
        like = st.integers(original - 2, original + 2)
    elif isinstance(original, float):
        like = st.floats(0, 2 * abs(original) + 1)
    elif isinstance(original, str):
        like = st.sampled_from([original, original + "x", original[:-1]]) if original else st.text(max_size=2)
    else:
        like = JSON_VALUES
    return like | JSON_VALUES


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_edits_of_the_json_files_load_or_fail_with_one_attnlm_error(exported: Path, tmp_path: Path,
                                                                           data: st.DataObject) -> None:
    folder = tmp_path / "mutated"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(exported, folder)
    for _ in range(data.draw(st.integers(1, 2), label="edits")):
        # config.json has far more to edit; any edit of vocab.json contradicts the weights' own record of it
        name = data.draw(st.sampled_from(["config.json"] * 4 + ["vocab.json"]), label="file")
        document = json.loads((folder / name).read_text(encoding="utf-8"))
        where = data.draw(st.sampled_from(json_leaves(document)), label="where")
        parent = document
        for step in where[:-1]:
            parent = parent[step]
        value = data.draw(values_like(parent[where[-1]] if where else document), label="value")
        if not where:
            document = value
        else:
            if data.draw(st.booleans(), label="delete") and isinstance(parent, dict):
                del parent[where[-1]]
            else:
                parent[where[-1]] = value
        (folder / name).write_text(json.dumps(document), encoding="utf-8")
    try:
        model = attnlm.load(folder)
    except UserError as e:
        assert len(str(e).splitlines()) == 1
        event(f"refused: {str(e).split(' ', 1)[0].rsplit('/', 1)[-1]}")
        return
    event("loaded")
    assert len(model.generate("", 10, seed=0)) == 10
