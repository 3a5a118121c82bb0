"""docs/lesson.md stays true: every command in it runs, in order, and prints what the page shows it printing.

The training commands run cut short (a few steps instead of minutes): the lesson's numbers come from full runs,
this test checks that each command works and that the first line of what it prints still reads as the page
shows it (numbers and run folders aside). `attnlm explore` serves until Ctrl-C, so it is left to the explorer's
own tests.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from run_helpers import ROOT, run_cli

LESSON = ROOT / "docs" / "lesson.md"
# Appended to every `attnlm train` of the lesson: the same commands, a few steps long.
SHORT = ["--set", "train.epochs=2", "--set", "train.steps_per_epoch=8", "--set", "train.eval_chars=4096",
         "--set", "log.sample_chars=0", "--set", "log.tensorboard=false"]


def steps() -> list[tuple[list[str], str | None]]:
    """Each command of the lesson's bash blocks, with the text block that follows its block (if one does)."""
    text = LESSON.read_text(encoding="utf-8")
    blocks = list(re.finditer(r"```(\w+)\n(.*?)```", text, flags=re.DOTALL))
    found = []
    for i, block in enumerate(blocks):
        if block[1] != "bash":
            continue
        shown = blocks[i + 1][2] if i + 1 < len(blocks) and blocks[i + 1][1] == "text" else None
        between = text[block.end():blocks[i + 1].start()] if shown is not None else ""
        commands = [shlex.split(line)[1:] for line in block[2].splitlines() if line.startswith("attnlm ")]
        # The output shown after a block is its last command's.
        found += [(args, shown if n == len(commands) - 1 and between.strip() == "" else None)
                  for n, args in enumerate(commands)]
    return found


def shape(line: str) -> str:
    """A printed line without what changes from run to run: run folders' time stamps, numbers, spacing."""
    line = re.sub(r"(runs/[\w.-]+?)-(\d{8}-\d{6}|…)", r"\1", line)
    return re.sub(r"\s+", " ", re.sub(r"-?\d[\d,.]*", "N", line)).strip()


def test_the_lesson_has_its_steps_in_order() -> None:
    commands = [args[0] for args, _ in steps()]
    assert commands[0] == "train" and "trace" in commands and "attention" in commands
    assert {"heads", "ablate"} <= set(commands) and commands[-1] == "explore"


def test_every_command_of_the_lesson_runs_and_prints_what_the_page_shows(tmp_path: Path) -> None:
    for name in ("configs", "data"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    for args, shown in steps():
        if args[0] == "explore":
            continue
        result = run_cli(*args, *(SHORT if args[0] == "train" else []), cwd=tmp_path, env={"COLUMNS": "100"})
        assert result.returncode == 0, f"attnlm {shlex.join(args)}\n{result.stdout}\n{result.stderr}"
        if shown is not None:
            first_shown = shown.strip().splitlines()[0]
            first_printed = result.stdout.strip().splitlines()[0]
            if args[0] == "train":  # the header up to the data, which the cut-short run evaluates less of
                first_shown, first_printed = first_shown.split(";")[0], first_printed.split(";")[0]
            assert shape(first_printed) == shape(first_shown), f"attnlm {shlex.join(args)}"
        for arg in args:
            if arg.endswith((".png", ".dot", ".svg")):
                assert (tmp_path / arg).stat().st_size > 0, f"attnlm {shlex.join(args)} wrote no {arg}"
