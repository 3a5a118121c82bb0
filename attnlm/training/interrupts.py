"""Ctrl-C and SIGTERM as a request to stop at the next step boundary; a second one exits at once."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


@contextmanager
def stop_requests(record: Callable[[int], None], received: Callable[[], int | None],
                  resume_command: Callable[[], str], exit_process: bool = True) -> Iterator[None]:
    """While active, a first SIGINT/SIGTERM calls `record(signum)`; the trainer saves at the next step
    boundary. A second one leaves at once: checkpoints are renamed into place whole, so none is torn. From
    the command line it ends the process; inside a notebook kernel (`exit_process=False`) that would kill the
    kernel, so it raises KeyboardInterrupt into the training code instead and the notebook keeps running."""

    def handle(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if received() is not None:
            # os.write, not print: the interrupted code may be inside a buffered write to stdout.
            os.write(2, f"\n{name} again: {'exiting' if exit_process else 'stopping'} now; resume from the last "
                        f"checkpoint with: {resume_command()}\n".encode())
            if not exit_process:
                raise KeyboardInterrupt
            os._exit(EXIT_SIGNAL.get(signum, 128 + signum))
        record(signum)
        # Said at once: a step or an evaluation can take a while, and silence invites a second Ctrl-C.
        os.write(2, f"\n{name} received: finishing the current step, then saving a checkpoint "
                    "(send it again to quit at once)\n".encode())

    old = {}
    for sig in EXIT_SIGNAL:
        try:
            old[sig] = signal.signal(sig, handle)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
