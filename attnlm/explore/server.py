"""`attnlm explore`: a local web server for the page in static/ and its JSON API (attnlm.explore.endpoints).

Standard library only (http.server): nothing to install, and the page works offline. Every request is
answered, however malformed: a 4xx with a message for what the client got wrong, a 500 with a message for
a bug; the server itself never stops on one.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from attnlm.errors import UserError
from attnlm.explore import endpoints
from attnlm.explore.model_access import ExploredModel

MAX_BODY = 1 << 20
STATIC = {"/": ("index.html", "text/html"), "/index.html": ("index.html", "text/html"),
          "/app.js": ("app.js", "text/javascript"), "/style.css": ("style.css", "text/css")}


def static_file(name: str) -> bytes:
    return resources.files("attnlm.explore").joinpath("static", name).read_bytes()


class Handler(BaseHTTPRequestHandler):
    server: ExploreServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # a line per keystroke would bury the URL; errors are reported below

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        url = urlsplit(self.path)
        if url.path in STATIC:
            name, kind = STATIC[url.path]
            self._send(200, static_file(name), f"{kind}; charset=utf-8")
        elif url.path in endpoints.ROUTES:
            self._answer(url.path, dict(parse_qsl(url.query)))
        else:
            self._error(404, f"no such page: {url.path}")

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path not in endpoints.ROUTES:
            self._error(404, f"no such endpoint: {url.path}")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._error(400, "Content-Length is not a number")
            return
        if length > MAX_BODY:
            self._drain(length)
            self._error(413, f"request body of {length} bytes; the explorer accepts at most {MAX_BODY}")
            return
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            request = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self._error(400, f"the request body is not JSON ({e})")
            return
        if not isinstance(request, dict):
            self._error(400, "the request body must be a JSON object, e.g. {\"text\": \"To be\"}")
            return
        self._answer(url.path, request)

    def _drain(self, length: int) -> None:
        """Read and drop a body too large to keep, so the client can read the answer (up to a bound)."""
        self.close_connection = True
        left = min(length, 64 * MAX_BODY)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)

    def do_PUT(self) -> None:  # noqa: N802
        length = self.headers.get("Content-Length", "0")
        self._drain(int(length) if length.isdigit() else 0)
        self._error(405, "use GET or POST")

    do_DELETE = do_PATCH = do_PUT

    def _answer(self, path: str, request: dict[str, Any]) -> None:
        try:
            reply = endpoints.ROUTES[path](self.server.model, request)
        except endpoints.ApiError as e:
            self._error(e.status, e.message)
        except UserError as e:
            self._error(400, str(e))
        except Exception as e:  # a bug: say so on the page and in the terminal, keep serving
            traceback.print_exc(file=sys.stderr)
            self._error(500, f"internal error ({type(e).__name__}: {e}); please report it")
        else:
            self._send(200, json.dumps(reply).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"error": message, "status": status}).encode("utf-8"), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        try:
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away mid-answer (a newer keystroke): nothing to do


class ExploreServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, model: ExploredModel, host: str, port: int) -> None:
        self.model = model
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"


def start(model: ExploredModel, host: str = "127.0.0.1", port: int = 0) -> ExploreServer:
    """A server answering in a background thread (for notebooks and tests); stop it with .shutdown()."""
    server = make_server(model, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def make_server(model: ExploredModel, host: str, port: int) -> ExploreServer:
    try:
        return ExploreServer(model, host, port)
    except OSError as e:
        raise UserError(f"cannot serve on {host}:{port} ({e.strerror}); pick another port with --port N "
                        "(--port 0 takes any free one)") from None
