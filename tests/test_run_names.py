"""`--run runs/NAME` finds the newest run trained with `--name NAME`, whose folder log.timestamp stamped."""

from __future__ import annotations

from pathlib import Path

from attnlm.store.run_dir import named_run


def test_a_stamped_run_is_found_by_its_name(tmp_path: Path) -> None:
    for name in ("induction-20261203-100000", "induction-20261203-110000", "induction-1layer-20261203-120000",
                 "induction-old", "inductions-20261203-130000"):
        (tmp_path / name).mkdir()
    assert named_run(tmp_path / "induction") == tmp_path / "induction-20261203-110000"
    assert named_run(str(tmp_path / "induction-1layer")) == tmp_path / "induction-1layer-20261203-120000"
    assert named_run(tmp_path / "induction-old") == tmp_path / "induction-old"


def test_a_folder_of_that_very_name_comes_first_and_a_missing_one_stays_missing(tmp_path: Path) -> None:
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny-20261203-100000").mkdir()
    assert named_run(tmp_path / "tiny") == tmp_path / "tiny"
    assert named_run(tmp_path / "none") == tmp_path / "none"
    (tmp_path / "file-20261203-100000").write_text("not a folder")
    assert named_run(tmp_path / "file") == tmp_path / "file"
