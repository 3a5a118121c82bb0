"""`python -m attnlm ARGS` in a process forked from a warm one, for the tests.

A CLI process here spends most of its CPU importing torch (~3 s on a slow 2-core machine) and torch._dynamo,
which every torch optimizer imports (~3 s more), against ~1.5 s for a whole tiny training run. The suite
starts over a hundred of them. So each pytest worker keeps one server process (multiprocessing's forkserver)
that has imported the heavy third-party modules once, and every CLI run is a fork of it that runs attnlm's
real `__main__` with its own arguments, working directory, environment and stdout/stderr files; attnlm itself
is imported afresh in each fork. What a fork cannot reproduce (a sitecustomize, a check that torch is not
imported, signals, terminals, torchrun) the tests run as plain processes (`run_cli(..., fresh=True)`,
`start`), and ATTNLM_TEST_FRESH=1 makes every CLI run a plain process.
"""

from __future__ import annotations

import atexit
import os
import runpy
import sys
import traceback

# Imported once in the server; none of them reads the environment a CLI run is given at import time.
PRELOAD = ["torch", "torch._dynamo", "torch.optim", "torch.utils.tensorboard", "numpy", "yaml", "rich.console",
           "rich.table", "typer", "tqdm"]


def main_in_fork(args: list[str], cwd: str, env: dict[str, str], out_path: str, err_path: str) -> None:
    """The child's whole life: become `python -m attnlm ARGS` in `cwd` with `env`, then exit with its code."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, out_path, os.O_WRONLY), (2, err_path, os.O_WRONLY)):
        new = os.open(path, flags)
        os.dup2(new, fd)
        os.close(new)
    # The same streams a fresh interpreter gets with pipes: UTF-8, stdout block-buffered, stderr line-buffered.
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.path[0:0] = [cwd]  # `python -m` puts the working directory first
    if "OMP_NUM_THREADS" in env:  # a fresh interpreter's torch would read it when its thread pool starts
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    sys.argv = ["attnlm", *args]
    code = 0
    try:
        runpy.run_module("attnlm", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if exit_.code is not None and not isinstance(exit_.code, int):
            print(exit_.code, file=sys.stderr)
    except BaseException:  # as the interpreter does: the traceback on stderr, exit code 1
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
