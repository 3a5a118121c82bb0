"""Writing to a terminal or a pipe: tables wider than the terminal, and a stdout that its reader closed.

A closed stdout (`attnlm train ... | head -3`: head exits after three lines) must not cost a run. Python
ignores SIGPIPE, so the next write raises BrokenPipeError. `guard_streams` wraps sys.stdout so that this
write and every later one go to os.devnull instead: `train` tells stderr once and trains on, saving its
checkpoints and finishing its run as if nothing happened (the progress bar on stderr still shows it
working); every other command ends at once with exit 0, as Unix tools do under `| head`. A closed stderr
(`2>&1 | head`) only goes quiet.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from rich.console import Console, RenderableType
from rich.measure import Measurement


class PipeClosed(Exception):
    """stdout's reader went away while a command that stops then was writing (exit 0)."""


class GuardedStream:
    """sys.stdout or sys.stderr that survives its reader closing the pipe (see the module's docstring)."""

    def __init__(self, stream: TextIO, keep_going: bool, note: str | None = None) -> None:
        self._stream = stream
        self.keep_going = keep_going
        self.note = note  # told to stderr, once, when the pipe closes and the command goes on
        self.closed_pipe = False

    def _closed(self) -> None:
        if not self.closed_pipe:
            self.closed_pipe = True
            # The descriptor itself now points at devnull, so the interpreter's own flush at exit (of this
            # stream and of sys.__stdout__) finds nothing broken either.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
            if self.keep_going and self.note:
                try:
                    print(self.note, file=sys.stderr, flush=True)
                except OSError:
                    pass  # stderr went down the same pipe
        if not self.keep_going:
            raise PipeClosed

    def write(self, text: str) -> int:
        if self.closed_pipe:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._closed()
            return len(text)

    def flush(self) -> None:
        if self.closed_pipe:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._closed()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the real stream's
        return getattr(self._stream, name)


def guard_streams(keep_going: bool) -> None:
    """Put GuardedStreams in place of sys.stdout and sys.stderr; called again, it only changes whether a
    closed stdout lets the command go on (`keep_going`, train) or ends it with exit 0 (the others)."""
    if isinstance(sys.stdout, GuardedStream):
        sys.stdout.keep_going = keep_going
        return
    sys.stdout = GuardedStream(sys.stdout, keep_going, "note: stdout was closed (e.g. by `| head`); training "
                               "goes on and saves its run, printing nothing more")  # type: ignore[assignment]
    sys.stderr = GuardedStream(sys.stderr, keep_going=True)  # type: ignore[assignment]


def print_whole(console: Console, renderable: RenderableType, width: int) -> None:
    """Print `renderable` laid out `width` columns wide even where the console is narrower: rich would
    cut cells (a number becomes "0.…") to fit; a terminal wraps the long line instead and keeps every digit."""
    if width <= console.width:
        console.print(renderable)
        return
    wide = Console(file=console.file, width=width, color_system=console.color_system,
                   force_terminal=console.is_terminal, highlight=False, no_color=console.no_color)
    wide.print(renderable, crop=False)


def natural_width(console: Console, renderable: RenderableType) -> int:
    """The columns `renderable` takes when nothing squeezes it."""
    return Measurement.get(console, console.options.update_width(10_000), renderable).maximum


def print_fitting(console: Console, layouts: list[RenderableType]) -> None:
    """Print the first of `layouts` (widest first) that fits the console whole; the last one, the most
    compact, as the console lays it out (its text wrapping at spaces, so no number is cut)."""
    for renderable in layouts[:-1]:
        if natural_width(console, renderable) <= console.width:
            console.print(renderable)
            return
    console.print(layouts[-1], soft_wrap=False)  # wrapped here, at spaces, not by the terminal mid-number
