"""`attnlm explore`: a local web server for the page in static/ and its JSON API (attnlm.explore.endpoints).

The standard library's ThreadingHTTPServer carries the bytes, one thread per connection; guard.py decides who
may ask (Host, Origin, the token). Werkzeug's own server is this same http.server underneath, and it would
exit the process when the port is taken, close every connection after one reply and log every request, so
only werkzeug's header parsers are used (Content-Type here, Cookie in guard.py).

Every request gets a JSON answer, however malformed: a 4xx naming what the client got wrong (never logged: a
hostile page must not be able to fill the terminal), a 500 for a bug, with its traceback in the terminal; the
server never stops on one. A client that goes quiet is dropped after `timeout` seconds, and one that trickles
its request a byte at a time after `deadline` seconds, so neither holds more than its own thread.
"""

from __future__ import annotations

import email.errors
import io
import json
import math
import socket
import socketserver
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from werkzeug.http import parse_options_header

from attnlm.errors import UserError
from attnlm.explore import endpoints
from attnlm.explore.guard import Guard, Refused, check_token, is_loopback, is_wildcard, new_token
from attnlm.explore.model_access import ExploredModel

MAX_BODY = 1 << 20
MAX_DRAIN = 16 * MAX_BODY  # at most this much of a refused body is read and dropped before closing
MAX_DIGITS = 30  # longer whole numbers in a body are refused before Python converts them (quadratic time)
MAX_QUERY_FIELDS = 20
ALLOW = "GET, HEAD, POST"
STATIC = {"/": ("index.html", "text/html"), "/index.html": ("index.html", "text/html"),
          "/app.js": ("app.js", "text/javascript"), "/style.css": ("style.css", "text/css"),
          "/ablate.js": ("ablate.js", "text/javascript")}
# The page's own files only: no inline script or style (the page sets styles through the CSSOM), nothing
# from the network, no framing, no form posting elsewhere.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def static_file(name: str) -> bytes:
    return resources.files("attnlm.explore").joinpath("static", name).read_bytes()


def _big_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"a number in it has {len(digits.lstrip('-'))} digits; the explorer reads at most {MAX_DIGITS}")
    return int(digits)


# The header-block defects the email parser notes; the others it notes are about a multipart body, unread here.
_BROKEN_HEADER = (email.errors.MissingHeaderBodySeparatorDefect, email.errors.FirstHeaderLineIsContinuationDefect,
                  email.errors.InvalidHeaderDefect)


class _Clocked(io.RawIOBase):
    """The connection's incoming bytes under two limits: `timeout` seconds of silence per read, and a deadline
    for the whole request that the handler sets, so that trickling a byte at a time does not last forever."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long to arrive")
        self.sock.settimeout(min(self.timeout, left))
        return self.sock.recv_into(buffer)


class Handler(BaseHTTPRequestHandler):
    server: ExploreServer
    protocol_version = "HTTP/1.1"
    # Errors found in the request line are answered as HTTP/1.0, so they carry a status line and headers (the
    # standard library's default, HTTP/0.9, sends a bare body).
    default_request_version = "HTTP/1.0"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms wait for the second

    def setup(self) -> None:
        self.timeout = self.server.client_timeout
        super().setup()
        self.rfile.close()  # replaced below; closing it gives back its hold on the socket
        self.clock = _Clocked(self.connection, self.server.client_timeout)
        self.rfile = io.BufferedReader(self.clock)

    def version_string(self) -> str:
        return "attnlm-explore"

    def handle(self) -> None:
        self.linger = False
        try:
            super().handle()
            if self.linger:
                self._linger()
        except (ConnectionError, TimeoutError):
            pass  # the client went away or stopped sending: nothing to answer

    def _linger(self) -> None:
        """After refusing a body it did not read, stop writing and drop what the client still sends, for a
        moment: closing with unread bytes resets the connection, which can wipe the answer before the client
        reads it."""
        self.connection.shutdown(socket.SHUT_WR)
        self.connection.settimeout(0.5)
        end, left = time.monotonic() + 2.0, MAX_DRAIN
        while left > 0 and time.monotonic() < end:
            chunk = self.connection.recv(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)

    def handle_one_request(self) -> None:
        self.clock.deadline = time.monotonic() + self.server.request_deadline
        self.body_read = False
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # a line per keystroke would bury the URL, and clients' mistakes are theirs; bugs are printed below

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        # Every method, known or not, comes to one place, which answers 405 for those the explorer has no use for.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def parse_request(self) -> bool:
        words = self.raw_requestline.split()
        if len(words) != 3:
            self.command, self.request_version, self.close_connection = None, self.default_request_version, True
            self.send_error(400, "the request line must be METHOD PATH HTTP/1.1, got "
                                 f"{self.raw_requestline[:100].decode('latin-1').strip()!r}")
            return False
        if not super().parse_request():
            return False
        if any(isinstance(d, _BROKEN_HEADER) for d in self.headers.defects):
            self.send_error(400, "a header line is malformed (each must be Name: value)")
            return False
        if any("\n" in value for value in self.headers.values()):
            self.send_error(400, "a header is folded onto a second line; send each header on one line")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the standard library refuses itself (request line, headers), answered as every refusal is."""
        detail = message or HTTPStatus(code).phrase
        if code == HTTPStatus.REQUEST_URI_TOO_LONG:
            detail = "the request line is longer than 65536 bytes"
        elif code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:  # a 5xx would blame the server for the client's line
            code, detail = 400, f"{detail}: the explorer speaks HTTP/1.1 and HTTP/1.0"
        elif explain:
            detail = f"{detail} ({explain})"
        self.close_connection = True
        self._error(code, detail)

    # ----- one request ---------------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            self._answer_checked()
        except (Refused, endpoints.ApiError) as e:
            self._discard_body()
            self._error(e.status, e.message, getattr(e, "headers", None))
        except Exception as e:  # a bug: say so on the page and in the terminal, keep serving
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._error(500, f"internal error ({type(e).__name__}: {e}); please report it")

    def _answer_checked(self) -> None:
        if not self.path.startswith("/"):
            raise Refused(400, f"the request target must be a path such as /api/info, got {self.path[:100]!r}")
        guard = self.server.guard
        host = guard.host(self.headers.get_all("Host") or [])
        url = urlsplit(self.path)
        guard.origin(self.headers.get("Origin"), self.headers.get("Sec-Fetch-Site"), host, url.path.startswith("/api/"))
        query = self._query(url)
        came_in_url = guard.authorize(query.pop("token", None), self.headers.get("Authorization"),
                                      self.headers.get_all("Cookie") or [])
        if self.command not in ("GET", "HEAD", "POST"):
            raise Refused(405, f"method {self.command[:20]!r} is not allowed; the explorer answers {ALLOW}",
                          {"Allow": ALLOW})
        if self.command == "POST":
            request = self._body(url.path)
        else:
            self._discard_body()
            self.clock.deadline = math.inf
            request = query
        if came_in_url and url.path in STATIC:
            # The token goes into a cookie and out of the address bar (and the browser's history).
            rest = urlencode(query)
            self._send(303, b"", None, {"Location": url.path + (f"?{rest}" if rest else ""),
                                        "Set-Cookie": guard.cookie()})
        elif url.path in STATIC and self.command != "POST":
            name, kind = STATIC[url.path]
            self._send(200, static_file(name), f"{kind}; charset=utf-8", {"Cache-Control": "no-cache"})
        elif url.path in endpoints.ROUTES:
            self._reply(url.path, request, {"Set-Cookie": guard.cookie()} if came_in_url else {})
        elif self.command == "POST":
            raise Refused(404, f"no such endpoint: {url.path[:100]}")
        else:
            raise Refused(404, f"no such page: {url.path[:100]}")

    def _query(self, url: SplitResult) -> dict[str, str]:
        try:
            pairs = parse_qsl(url.query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:
            raise Refused(400, f"the query has more than {MAX_QUERY_FIELDS} parameters") from None
        query = dict(pairs)
        if len(query) < len(pairs):
            repeated = sorted({k for k, _ in pairs if sum(1 for j, _ in pairs if j == k) > 1})
            raise Refused(400, f"parameter {', '.join(repeated)[:100]} given more than once; give each once")
        return query

    def _length(self) -> int | None:
        """The body's length from Content-Length: 0 without one, None when the body cannot be read (chunked)."""
        if self.headers.get("Transfer-Encoding") is not None:
            return None
        values = self.headers.get_all("Content-Length") or []
        if len({v.strip() for v in values}) > 1:
            raise Refused(400, "the request has Content-Length headers that disagree; send one")
        if not values:
            return 0
        value = values[0].strip()
        if not value.isascii() or not value.isdigit():
            raise Refused(400, f"Content-Length is not a whole number of bytes: {value[:30]!r}")
        return int(value) if len(value) <= MAX_DIGITS else 10**MAX_DIGITS

    def _discard_body(self) -> None:
        """Read and drop a body left unread, so that the connection can carry the next request; one too large
        or of unknown length closes the connection after the answer (see _linger)."""
        if self.body_read:
            return
        self.body_read = True
        try:
            length = self._length()
        except Refused:
            length = None
        if length is None or length > MAX_BODY:
            self.close_connection = self.linger = True
            return
        try:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    self.close_connection = True
                    break
                length -= len(chunk)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _body(self, path: str) -> dict[str, Any]:
        """The POST body as a JSON object, or Refused naming what is wrong with it."""
        if path not in endpoints.ROUTES:
            raise Refused(404, f"no such endpoint: {path[:100]}")
        kind, params = parse_options_header(self.headers.get("Content-Type"))
        if kind.lower() != "application/json":
            raise Refused(415, f"the request body must be JSON, sent with Content-Type: application/json, "
                               f"got {kind[:60] or 'no Content-Type'}")
        if params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
            raise Refused(415, f"the request body must be UTF-8, got charset={params['charset'][:30]}")
        length = self._length()
        if length is None:
            raise Refused(411, "send the body with a Content-Length (the explorer does not read chunked bodies)")
        if length > MAX_BODY:
            raise Refused(413, f"request body of {length} bytes; the explorer accepts at most {MAX_BODY}")
        self.body_read = True
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            raise Refused(408, f"the request body did not arrive in time ({length} bytes announced)") from None
        if len(raw) < length:
            self.close_connection = True
            raise Refused(400, f"the request body ended after {len(raw)} of the {length} bytes announced")
        self.clock.deadline = math.inf
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Refused(400, f"the request body is not UTF-8 ({e.reason} at byte {e.start})") from None
        try:
            request = json.loads(text, parse_int=_big_int) if text.strip() else {}
        except RecursionError:
            raise Refused(400, "the request body is nested too deeply; the explorer takes a flat JSON object") from None
        except ValueError as e:
            raise Refused(400, f"the request body is not JSON ({str(e)[:200]})") from None
        if not isinstance(request, dict):
            raise Refused(400, "the request body must be a JSON object, e.g. {\"text\": \"To be\"}")
        return request

    def _reply(self, path: str, request: dict[str, Any], headers: dict[str, str]) -> None:
        try:
            reply = endpoints.answer(self.server.model, path, request)
        except UserError as e:
            raise Refused(400, str(e)) from None
        self._send(200, json.dumps(reply).encode("utf-8"), "application/json", headers)

    # ----- writing -------------------------------------------------------------------------------
    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": message, "status": status}).encode("utf-8")
        self._send(status, body, "application/json", headers)

    def _send(self, status: int, body: bytes, kind: str | None, headers: dict[str, str] | None = None) -> None:
        try:
            self.connection.settimeout(self.server.client_timeout)
            self.send_response(status)
            if kind:
                self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in {"Cache-Control": "no-store", **SECURITY_HEADERS, **(headers or {})}.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the page went away mid-answer (a newer keystroke): nothing to do


class ExploreServer(ThreadingHTTPServer):
    """The explorer's HTTP server. `token` (None: none asked) guards it beyond loopback; `timeout` is how long a
    client may stay silent, `deadline` how long one request may take to arrive."""

    daemon_threads = True
    request_queue_size = 1024  # a burst of connections waits in the kernel's queue instead of being reset

    def __init__(self, model: ExploredModel, host: str, port: int, token: str | None = None,
                 timeout: float = 20.0, deadline: float = 60.0) -> None:
        self.model = model
        self.host = host
        self.client_timeout = timeout
        self.request_deadline = deadline
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        self.guard = Guard.serving(host, self.server_address[1], token)

    def server_bind(self) -> None:
        # http.server's own looks the host up in DNS (socket.getfqdn), which can hang on a machine without a
        # resolver; the explorer never uses the name it finds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.host, self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that went away is not a fault of the server's
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        """The page's address, with the token when there is one; for a wildcard bind, through loopback."""
        host, port = self.server_address[:2]
        if is_wildcard(self.host):
            host = "::1" if self.address_family == socket.AF_INET6 else "127.0.0.1"
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/" + (f"?token={self.guard.token}" if self.guard.token else "")


def start(model: ExploredModel, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
          timeout: float = 20.0, deadline: float = 60.0) -> ExploreServer:
    """A server answering in a background thread (for notebooks and tests); stop it with .shutdown()."""
    server = make_server(model, host, port, token, timeout, deadline)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def make_server(model: ExploredModel, host: str, port: int, token: str | None = None,
                timeout: float = 20.0, deadline: float = 60.0) -> ExploreServer:
    """The server for `host`:`port`. Beyond loopback it asks for a token: `token`, or a new random one."""
    if token is not None:
        try:
            check_token(token)
        except ValueError as e:
            raise UserError(str(e)) from None
    elif not is_loopback(host):
        token = new_token()
    try:
        return ExploreServer(model, host, port, token, timeout, deadline)
    except OSError as e:
        raise UserError(f"cannot serve on {host}:{port} ({e.strerror or e}); pick another port "
                        "(port 0 takes any free one)") from None
