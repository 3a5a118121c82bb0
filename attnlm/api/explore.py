"""`attnlm explore`: load a trained model and serve the explorer (attnlm.explore) on it until Ctrl-C."""

from __future__ import annotations

import sys
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnlm.api.arguments import check_device
from attnlm.api.model import load
from attnlm.checks import check_path, check_port, need_str
from attnlm.errors import ArgumentValueError, UserError
from attnlm.explore.guard import check_token, is_loopback, is_wildcard
from attnlm.explore.model_access import ExploredModel
from attnlm.explore.server import ExploreServer, make_server, start
from attnlm.store.run_dir import list_run_dirs, named_run, resolve_checkpoint

# The model a learner with no run is offered: small enough to train in under a minute on a laptop CPU,
# trained on English text so that its attention has words to show (docs/lesson.md starts from it).
LESSON_CONFIG = Path("configs/tiny.yaml")


def open_explored(run: str | None, checkpoint: str | None, device: str = "cpu") -> ExploredModel:
    """The model of --run, --checkpoint or the newest run, as every command finds it, with its run folder."""
    path = resolve_checkpoint(run, checkpoint)
    # A checkpoint inside a run folder (RUN/checkpoints/x.pt) brings its run's history along.
    run_dir = named_run(run) if run else path.parent.parent if (path.parent.parent / "metrics.jsonl").is_file() else None
    return ExploredModel(load(path, device=device), run_dir)


def start_explorer(run: str | None = None, checkpoint: str | None = None, host: str = "127.0.0.1", port: int = 0,
                   device: str = "cpu", token: str | None = None) -> ExploreServer:
    """The explorer answering in a background thread (for notebooks and scripts); stop it with .shutdown().
    Beyond loopback it asks for a token (`token`, or a random one); server.url carries it."""
    for name, value in (("run", run), ("checkpoint", checkpoint)):
        if value is not None:
            check_path(name, value)
    if run is not None and checkpoint is not None:
        raise ArgumentValueError("give run (a run folder) or checkpoint (a checkpoint file), not both")
    need_str("host", host, "a host name or address, e.g. '127.0.0.1'")
    port = check_port("port", port)
    check_device(device)
    if token is not None:
        try:
            check_token(need_str("token", token, "a str or None"), "token")
        except ValueError as e:
            raise ArgumentValueError(str(e)) from None
    return start(open_explored(None if run is None else str(run), None if checkpoint is None else str(checkpoint),
                               device), host, port, token)


def offer_lesson_run(ask: Callable[[str], bool], root: str | Path = "runs") -> str | None:
    """With no trained run under `root` and the lesson's config at hand, ask whether to train it now; the new
    run's folder if the answer is yes, else None (and the command then says how to train one)."""
    if any(any((p / "checkpoints").glob("*.pt")) for p in list_run_dirs(root)) or not LESSON_CONFIG.is_file():
        return None
    if not ask(f"There is no trained model under {root}/ yet. Train the lesson model now ({LESSON_CONFIG}, "
               "under a minute on a laptop CPU)?"):
        return None
    from attnlm.api.run import train

    result = train(LESSON_CONFIG)
    if result.exit_code != 0:  # interrupted: its last.pt is kept, but there is nothing finished to show
        raise UserError(f"training stopped before the end; `attnlm train --resume {result.dir}` continues it")
    return str(result.dir)


def explore(run: str | None, checkpoint: str | None, host: str, port: int, open_browser: bool, device: str,
            print_line: Any = print, token: str | None = None, ask: Callable[[str], bool] | None = None) -> None:
    """The `attnlm explore` command: load, serve until Ctrl-C. `ask` (a yes/no question, given only when
    someone is at the terminal) lets a learner with no run train the lesson model first."""
    check_port("--port", port)
    if token is not None:
        try:
            check_token(token, "--token")
        except ValueError as e:
            raise UserError(str(e)) from None
    if run is None and checkpoint is None and ask is not None:
        run = offer_lesson_run(ask)
    model = open_explored(run, checkpoint, device)
    server = make_server(model, host, port, token)
    print_line(f"attnlm explore: {model.source} at {server.url}  (Ctrl-C to stop)")
    if not is_loopback(host):
        where = "every address of this machine" if is_wildcard(host) else host
        print_line(f"note: serving on {where}: anyone who can reach it and has the URL's token can use the page; "
                   "open it from elsewhere with this machine's name or address in place of the one above")
    sys.stdout.flush()
    if open_browser:
        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print_line("stopped")
    finally:
        server.server_close()
