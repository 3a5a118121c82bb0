"""`attnlm explore`: load a trained model and serve the explorer (attnlm.explore) on it until Ctrl-C."""

from __future__ import annotations

import sys
import threading
import webbrowser
from pathlib import Path
from typing import Any

from attnlm.api.model import load
from attnlm.errors import UserError
from attnlm.explore.guard import check_token, is_loopback, is_wildcard
from attnlm.explore.model_access import ExploredModel
from attnlm.explore.server import ExploreServer, make_server, start
from attnlm.store.run_dir import resolve_checkpoint


def open_explored(run: str | None, checkpoint: str | None, device: str = "cpu") -> ExploredModel:
    """The model of --run, --checkpoint or the newest run, as every command finds it, with its run folder."""
    path = resolve_checkpoint(run, checkpoint)
    # A checkpoint inside a run folder (RUN/checkpoints/x.pt) brings its run's history along.
    run_dir = Path(run) if run else path.parent.parent if (path.parent.parent / "metrics.jsonl").is_file() else None
    return ExploredModel(load(path, device=device), run_dir)


def start_explorer(run: str | None = None, checkpoint: str | None = None, host: str = "127.0.0.1", port: int = 0,
                   device: str = "cpu", token: str | None = None) -> ExploreServer:
    """The explorer answering in a background thread (for notebooks and scripts); stop it with .shutdown().
    Beyond loopback it asks for a token (`token`, or a random one); server.url carries it."""
    return start(open_explored(run, checkpoint, device), host, port, token)


def explore(run: str | None, checkpoint: str | None, host: str, port: int, open_browser: bool, device: str,
            print_line: Any = print, token: str | None = None) -> None:
    """The `attnlm explore` command: load, serve until Ctrl-C."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, got {port}")
    if token is not None:
        try:
            check_token(token, "--token")
        except ValueError as e:
            raise UserError(str(e)) from None
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
