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
                  resume_command: Callable[[], str]) -> Iterator[None]:
    """While active, a first SIGINT/SIGTERM calls `record(signum)`; the trainer saves at the next step
    boundary. A second one exits at once: checkpoints are renamed into place whole, so none is torn."""

    def handle(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if received() is not None:
            # os.write, not print: the interrupted code may be inside a buffered write to stdout.
            os.write(2, f"\n{name} again: exiting now; resume from the last checkpoint with: "
                        f"{resume_command()}\n".encode())
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
