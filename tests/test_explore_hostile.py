"""`attnlm explore` tried as an attacker would: a page on another site that rebinds its name to 127.0.0.1 or
posts to the server, a server bound beyond loopback without its token, and clients that send what no browser
would (any method, a broken request line or header, a body too deep, too long or not JSON, two hundred at
once, a line at a time). Each gets a JSON 4xx naming the problem or is cut off in time, and the server keeps
serving."""

from __future__ import annotations

import http.client
import json
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnlm.api.explore import explore
from attnlm.errors import UserError
from attnlm.explore.endpoints import FIELDS, ROUTES
from attnlm.explore.server import ExploreServer, start

TEXT = "To be, or not"
JSON = {"Content-Type": "application/json"}


class Reply:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> dict:
        assert self.headers.get_content_type() == "application/json", (self.status, self.headers, self.body[:200])
        return json.loads(self.body)

    def refused(self, status: int, *words: str) -> bool:
        """A JSON refusal with this status whose message holds every word."""
        answer = self.json()
        return self.status == status and answer["status"] == status and all(w in answer["error"] for w in words)


def port_of(server: ExploreServer) -> int:
    return server.server_address[1]


def ask(server: ExploreServer, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> Reply:
    """One request through http.client, which sends a Host header of our choosing when one is given."""
    connection = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def post(server: ExploreServer, path: str, body: object, headers: dict[str, str] | None = None) -> Reply:
    return ask(server, "POST", path, json.dumps(body).encode(), {**JSON, **(headers or {})})


def raw(server: ExploreServer, data: bytes, method: str = "GET") -> Reply:
    """Bytes as they are, as no HTTP library would send them; the reply read by http.client's parser."""
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=30) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return Reply(response.status, response.headers, response.read())


def still_serving(server: ExploreServer) -> bool:
    reply = ask(server, "GET", "/api/info")
    return reply.status == 200 and reply.json()["model"]["block_size"] == 32


def host_line(server: ExploreServer) -> bytes:
    return f"Host: 127.0.0.1:{port_of(server)}\r\n".encode()


# ----- the Host header: DNS rebinding ---------------------------------------------------------------
@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "localhost.evil.example:{port}",
                                  "127.0.0.1.nip.io:{port}", "192.168.1.20:{port}", "0.0.0.0:{port}"])
def test_a_foreign_host_is_refused_for_get_and_post(served, host: str) -> None:
    """A page whose name was rebound to 127.0.0.1 sends its own name as Host: it reads nothing and computes
    nothing."""
    server, _ = served
    named = {"Host": host.format(port=port_of(server))}
    for reply in (ask(server, "GET", "/api/info", headers=named), ask(server, "GET", "/", headers=named),
                  post(server, "/api/analyze", {"text": TEXT}, named)):
        assert reply.refused(403, "answers only requests addressed to", "127.0.0.1", "localhost")
        assert b"shared" not in reply.body and b"vocab" not in reply.body
    assert still_serving(server)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:{port}", "localhost", "LOCALHOST:{port}", "[::1]:{port}",
                                  "127.0.0.1:9000"])
def test_the_loopback_names_are_served_with_or_without_the_port(served, host: str) -> None:
    """Any port, so that a tunnel (ssh -L 9000:localhost:8765) still reaches it."""
    server, _ = served
    assert ask(server, "GET", "/api/info", headers={"Host": host.format(port=port_of(server))}).status == 200


@pytest.mark.parametrize(("request_head", "words"), [
    (b"GET /api/info HTTP/1.1\r\n", "has no Host header"),
    (b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n", "more than one Host header"),
    (b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1 evil\r\n", "is not a host name"),
    (b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1:99999\r\n", "is not a host name"),
    (b"GET /api/info HTTP/1.1\r\nHost: user@127.0.0.1\r\n", "is not a host name"),
])
def test_a_missing_doubled_or_malformed_host_is_a_400(served, request_head: bytes, words: str) -> None:
    server, _ = served
    assert raw(server, request_head + b"\r\n").refused(400, words)


# ----- Origin and Content-Type: cross-origin requests -------------------------------------------------
@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:1", "https://127.0.0.1:{port}", "null",
                                    "http://localhost:{port}", "http://127.0.0.1:{port}/x", "not a url"])
def test_a_foreign_origin_is_refused(served, origin: str) -> None:
    server, _ = served
    other = {"Origin": origin.format(port=port_of(server))}
    assert post(server, "/api/analyze", {"text": TEXT}, other).refused(403, "cross-origin request", "refused")
    assert ask(server, "GET", "/api/info", headers=other).refused(403, "cross-origin request")
    own = {"Origin": f"http://127.0.0.1:{port_of(server)}"}  # what the server's own page sends
    assert post(server, "/api/analyze", {"text": TEXT}, own).status == 200


def test_a_request_the_browser_marks_as_from_another_site_is_refused(served) -> None:
    """An <img> or <script> on another site sends no Origin; the browser still says where it comes from."""
    server, _ = served
    for site in ("cross-site", "same-site"):
        query = urllib.parse.urlencode({"text": TEXT})
        assert ask(server, "GET", f"/api/analyze?{query}", headers={"Sec-Fetch-Site": site}).refused(
            403, f"Sec-Fetch-Site: {site}")
    assert ask(server, "GET", "/api/info", headers={"Sec-Fetch-Site": "same-origin"}).status == 200
    assert ask(server, "GET", "/", headers={"Sec-Fetch-Site": "cross-site"}).status == 200  # a link to the page


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                  "", "application/json; charset=latin-1", "application/jsonp", "text/json"])
def test_a_post_that_is_not_json_is_refused(served, kind: str) -> None:
    """The three content types a page may post cross-origin without asking first, and other near misses."""
    server, _ = served
    headers = {"Content-Type": kind} if kind else {}
    reply = ask(server, "POST", "/api/analyze", json.dumps({"text": TEXT}).encode(), headers)
    assert reply.refused(415, "Content-Type: application/json" if "charset" not in kind else "must be UTF-8")
    ok = ask(server, "POST", "/api/analyze", json.dumps({"text": TEXT}).encode(),
             {"Content-Type": "Application/JSON; charset=UTF-8"})
    assert ok.status == 200 and ok.json()["text"] == TEXT


# ----- the token beyond loopback -------------------------------------------------------------------
@pytest.fixture(scope="module")
def open_server(served) -> Iterator[ExploreServer]:
    """The shared model served on every address of the machine: it asks for a token."""
    _, model = served
    server = start(model, "0.0.0.0", 0)
    yield server
    server.shutdown()
    server.server_close()


def test_bound_beyond_loopback_the_server_asks_for_its_token(open_server: ExploreServer) -> None:
    server = open_server
    token = server.guard.token
    assert token and len(token) >= 40 and server.url == f"http://127.0.0.1:{port_of(server)}/?token={token}"
    for path in ("/", "/api/info", "/app.js"):
        missing = ask(server, "GET", path)
        assert missing.refused(401, "needs its token", "?token=") and missing.headers["WWW-Authenticate"]
    assert post(server, "/api/analyze", {"text": TEXT}).refused(401, "needs its token")
    assert ask(server, "GET", "/api/info?token=wrong-" + token[6:]).refused(403, "wrong token in ?token=")
    assert ask(server, "GET", "/api/info", headers={"Authorization": "token nope"}).refused(403, "wrong token")
    cookie = f"{server.guard.cookie_name}={token[:-1]}x"
    assert ask(server, "GET", "/api/info", headers={"Cookie": cookie}).refused(403, "wrong token in the cookie")

    # Opening the printed URL: the token moves into a cookie and out of the address bar.
    opened = ask(server, "GET", f"/?token={token}")
    assert opened.status == 303 and opened.headers["Location"] == "/"
    set_cookie = opened.headers["Set-Cookie"]
    assert set_cookie.startswith(f"{server.guard.cookie_name}={token};")
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    jar = {"Cookie": f"other=1; {set_cookie.split(';')[0]}"}
    page = ask(server, "GET", "/", headers=jar)
    assert page.status == 200 and b"attnlm explore" in page.body
    assert ask(server, "GET", "/api/info", headers=jar).json()["model"]["block_size"] == 32
    assert post(server, "/api/analyze", {"text": TEXT}, jar).status == 200
    for header in (f"token {token}", f"Bearer {token}"):
        assert ask(server, "GET", "/api/info", headers={"Authorization": header}).status == 200
    assert ask(server, "GET", f"/api/epoch?epoch=1&token={token}").json()["epoch"] == 1
    # A cookie left by an earlier explorer on this port does not lock out the new URL.
    stale = ask(server, "GET", f"/?token={token}", headers={"Cookie": f"{server.guard.cookie_name}=old-token-123456"})
    assert stale.status == 303 and token in stale.headers["Set-Cookie"]


def test_bound_to_every_address_any_host_name_is_served_with_the_token(open_server: ExploreServer) -> None:
    """From another machine the page is opened by this one's name or address, which the server cannot know;
    there the token, not the name, keeps other sites out (their pages never hold it)."""
    server = open_server
    auth = {"Authorization": f"token {server.guard.token}"}
    assert ask(server, "GET", "/api/info", headers={**auth, "Host": f"workstation.lan:{port_of(server)}"}).status == 200
    assert ask(server, "GET", "/api/info", headers={"Host": "evil.example"}).refused(401, "needs its token")


def test_on_loopback_a_token_is_asked_only_when_given(served) -> None:
    _, model = served
    token = "a-token-of-my-own-choosing"
    server = start(model, token=token)
    try:
        assert server.url.endswith(f"/?token={token}")
        assert ask(server, "GET", "/api/info").refused(401, "needs its token")
        assert ask(server, "GET", "/api/info", headers={"Authorization": f"Bearer {token}"}).status == 200
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(UserError, match=r"^token must be at least 16 characters of A-Z, a-z, 0-9, '-' and '_'"):
        start(model, token="short")
    with pytest.raises(UserError, match=r"^--token must be at least 16 characters"):
        explore(None, None, "127.0.0.1", 0, open_browser=False, device="cpu", token="has spaces in it, sixteen+")


# ----- methods, request lines, headers ------------------------------------------------------------
@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "BREW", "G3T", "get"])
def test_every_other_method_gets_a_json_405_with_allow(served, method: str) -> None:
    server, _ = served
    for path in ("/", "/api/analyze"):
        reply = raw(server, f"{method} {path} HTTP/1.1\r\n".encode() + host_line(server)
                    + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        assert reply.refused(405, repr(method), "GET, HEAD, POST") and reply.headers["Allow"] == "GET, HEAD, POST"
    assert still_serving(server)


def test_head_answers_as_get_without_a_body(served) -> None:
    server, _ = served
    for path in ("/", "/api/info"):
        got = ask(server, "GET", path)
        head = raw(server, f"HEAD {path} HTTP/1.1\r\n".encode() + host_line(server) + b"\r\n", method="HEAD")
        assert head.status == 200 and head.body == b"" and head.headers["Content-Length"] == str(len(got.body))


@pytest.mark.parametrize(("request_bytes", "status", "words"), [
    (b"GARBAGE\r\n\r\n", 400, "the request line must be METHOD PATH HTTP/1.1, got 'GARBAGE'"),
    (b"\r\n", 400, "the request line must be"),
    (b"GET /\r\n", 400, "the request line must be"),  # HTTP/0.9, which has no status line to answer with
    (b"GET / HTTP/1.1 extra\r\n\r\n", 400, "the request line must be"),
    (b"GET / HTTX/1.1\r\n\r\n", 400, "Bad request version"),
    (b"GET / HTTP/1.1.1\r\n\r\n", 400, "Bad request version"),
    (b"GET / HTTP/2.0\r\n\r\n", 400, "speaks HTTP/1.1"),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "longer than 65536 bytes"),
    (b"GET http://evil.example/api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, "must be a path"),
    (b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, "must be a path"),
    (b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n", 400, "header line is malformed"),
    (b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Name: 1\r\n\r\n", 400, "header line is malformed"),
    (b"GET /api/info HTTP/1.1\r\n folded\r\nHost: 127.0.0.1\r\n\r\n", 400, "header line is malformed"),
    (b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\r\n 2\r\n\r\n", 400, "folded onto a second line"),
    (b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431, "Line too long"),
    (b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X%d: 1\r\n" % i for i in range(101)) + b"\r\n",
     431, "Too many headers"),
    (b"GET /\xff\x00%ff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 404, "no such page"),
    (b"GET /api/info?" + b"&".join(b"a%d=1" % i for i in range(30)) + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
     400, "more than 20 parameters"),
    (b"GET /api/epoch?epoch=1&epoch=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, "epoch given more than once"),
])
def test_a_malformed_request_line_or_header_gets_a_json_4xx(served, request_bytes: bytes, status: int,
                                                            words: str) -> None:
    server, _ = served
    assert raw(server, request_bytes).refused(status, words)
    assert still_serving(server)


# ----- bodies --------------------------------------------------------------------------------------
def body_request(server: ExploreServer, body: bytes, path: str = "/api/analyze", length: str | None = None,
                 extra: bytes = b"") -> Reply:
    return raw(server, f"POST {path} HTTP/1.1\r\n".encode() + host_line(server) + b"Content-Type: application/json\r\n"
               + f"Content-Length: {len(body) if length is None else length}\r\n".encode() + extra + b"\r\n" + body)


@pytest.mark.parametrize(("body", "path", "status", "words"), [
    (b"[" * 100_000 + b"]" * 100_000, "/api/analyze", 400, "nested too deeply"),
    (b'{"text": ' * 50_000 + b'"To"' + b"}" * 50_000, "/api/analyze", 400, "nested too deeply"),
    (b'{"text": "To", "n": ' + b"9" * 5000 + b"}", "/api/sample", 400, "has 5000 digits"),
    (b'{"text": "To", "n": -' + b"1" * 5000 + b"}", "/api/sample", 400, "has 5000 digits"),
    (b'{"text": "To", "seed": 99999999999999999999}', "/api/sample", 400, "far out of range"),
    (b'{"text": "To", "seed": 18446744073709551616}', "/api/sample", 400, "far out of range"),
    (b'{"text": "To", "seed": -1}', "/api/sample", 400, "seed must be between 0 and"),
    (b'{"text": "To", "temperature": 1e999999}', "/api/sample", 400, "temperature must be in (0, 10]"),
    (b'{"text": "To", "temperature": ' + b"9" * 29 + b"}", "/api/sample", 400, "temperature must be in (0, 10]"),
    (b'{"text": "To", "temperature": 10' + b"0" * 400 + b".5}", "/api/sample", 400, "temperature must be in"),
    (b"\xff\xfe{}", "/api/analyze", 400, "not UTF-8"),
    (b'\xef\xbb\xbf{"text": "To"}', "/api/analyze", 400, "not JSON"),
    (b"{'text': 'To'}", "/api/analyze", 400, "not JSON"),
    (b'{"text": "To"} {}', "/api/analyze", 400, "not JSON"),
    (b'"To"', "/api/analyze", 400, "must be a JSON object"),
    (b'{"text": "To", "txet": 1}', "/api/analyze", 400, "unknown field 'txet' for /api/analyze; it takes text"),
    (b'{"text": ["T", "o"]}', "/api/analyze", 400, "field 'text' must be text, got a JSON array"),
    (b'{"text": "To", "layer": {"a": 1}}', "/api/trace", 400, "field 'layer' must be a number, got a JSON object"),
    (b'{"text": "' + b"x" * 200_000 + b'"}', "/api/analyze", 413, "far longer than any model context"),
    (b'{"text": "\\ud800"}', "/api/analyze", 400, "the model never saw"),
    (b"{}", "/api/nothing", 404, "no such endpoint: /api/nothing"),
])
def test_a_bad_body_gets_a_json_4xx_naming_the_problem(served, body: bytes, path: str, status: int, words: str) -> None:
    server, _ = served
    reply = body_request(server, body, path)
    assert reply.refused(status, words), reply.body[:300]
    assert still_serving(server)


@pytest.mark.parametrize(("length", "extra", "status", "words"), [
    ("-5", b"", 400, "Content-Length is not a whole number"),
    ("1_0", b"", 400, "Content-Length is not a whole number"),
    ("0x10", b"", 400, "Content-Length is not a whole number"),
    ("4", b"Content-Length: 5\r\n", 400, "Content-Length headers that disagree"),
    ("2097152", b"", 413, "at most 1048576"),
    ("9" * 40, b"", 413, "at most 1048576"),
    ("4", b"Transfer-Encoding: chunked\r\n", 411, "Content-Length"),
])
def test_a_bad_content_length_gets_a_json_4xx(served, length: str, extra: bytes, status: int, words: str) -> None:
    server, _ = served
    assert body_request(server, b"{}", length=length, extra=extra).refused(status, words)
    assert still_serving(server)


def test_a_body_shorter_than_announced_is_refused(served) -> None:
    server, _ = served
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=30) as sock:
        sock.sendall(b"POST /api/analyze HTTP/1.1\r\n" + host_line(server)
                     + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"text\"")
        sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        reply = Reply(response.status, response.headers, response.read())
    assert reply.refused(400, "ended after 7 of the 100 bytes announced")


# ----- any body, any bytes: a property -------------------------------------------------------------
FIELD_NAMES = sorted({f for fields in FIELDS.values() for f in fields} | {"token"})
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40) | \
    st.text(alphabet="To be, or nt", min_size=1, max_size=40)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                                   max_size=4), max_leaves=12)
bodies = (json_values | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), json_values, max_size=5)
          ).map(lambda v: json.dumps(v).encode()) | st.binary(max_size=600)


def answered_in_json(reply: Reply) -> bool:
    """A 2xx (in JSON, but for the page itself) or a 4xx in JSON with its message."""
    if 200 <= reply.status < 300 and reply.headers.get_content_type() == "text/html":
        return reply.body.startswith(b"<!doctype html>")
    answer = reply.json()
    return 200 <= reply.status < 300 or (400 <= reply.status < 500 and answer["status"] == reply.status
                                         and isinstance(answer["error"], str) and answer["error"] != "")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(sorted(ROUTES)), body=bodies)
def test_any_body_gets_a_2xx_or_a_json_4xx(served, path: str, body: bytes) -> None:
    server, _ = served
    assert answered_in_json(body_request(server, body, path))
    assert still_serving(server)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(sorted(ROUTES) + ["/", "/x"]),
       query=st.lists(st.tuples(st.sampled_from(FIELD_NAMES) | st.text(max_size=6),
                                st.text(max_size=30) | st.integers().map(str)), max_size=5))
def test_any_query_gets_a_2xx_or_a_json_4xx(served, path: str, query: list[tuple[str, str]]) -> None:
    server, _ = served
    assert answered_in_json(ask(server, "GET", path + "?" + urllib.parse.urlencode(query)))


header_bytes = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=header_bytes | st.sampled_from([b"GET / HTTP/1.1", b"POST /api/analyze HTTP/1.1", b"GET /api/info HTTP/1.0"]),
       headers=st.lists(header_bytes | st.builds(lambda n, v: n + b": " + v, st.sampled_from(
           [b"Host", b"Origin", b"Content-Type", b"Content-Length", b"Cookie", b"Authorization", b"Sec-Fetch-Site",
            b"Transfer-Encoding", b"Expect", b"Connection"]), header_bytes), max_size=6))
def test_any_request_head_gets_a_2xx_or_a_json_4xx(served, line: bytes, headers: list[bytes]) -> None:
    """Any request line and header lines (each ended, so the request is complete): an answer, never silence."""
    server, _ = served
    request = b"\r\n".join([line, *headers, b"Connection: close"]) + b"\r\n\r\n"
    method = "HEAD" if line.startswith(b"HEAD ") else "GET"
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=30) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # a body announced but not sent ends here instead of waiting for it
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        reply = Reply(response.status, response.headers, response.read())
    if method == "HEAD" and reply.status < 300:
        assert reply.body == b""
    else:
        assert answered_in_json(reply), (request, reply.status, reply.body[:200])
    assert still_serving(server)


# ----- many clients, slow clients -----------------------------------------------------------------
def test_two_hundred_clients_at_once_are_all_answered(served) -> None:
    server, _ = served
    clients = 200
    ready = threading.Barrier(clients)
    results: list[object] = [None] * clients

    def client(i: int) -> None:
        try:
            ready.wait(timeout=60)
            # The cheap endpoints: what is under test is the connections, not the model's speed.
            results[i] = (post(server, "/api/info", {}) if i % 2 else ask(server, "GET", "/api/info")).status
        except Exception as e:  # noqa: BLE001 - a reset or a timeout is what the test looks for
            results[i] = repr(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [200] * clients


@pytest.fixture
def impatient(served) -> Iterator[ExploreServer]:
    """The shared model on a server that drops a silent client after 0.5 s and a trickling one after 1.5 s."""
    _, model = served
    server = start(model, timeout=0.5, deadline=1.5)
    yield server
    server.shutdown()
    server.server_close()


def closed_by_server(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it was still open after `within` s."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


def test_clients_that_stop_mid_request_do_not_block_others(served) -> None:
    server, _ = served
    stalled = [socket.create_connection(("127.0.0.1", port_of(server)), timeout=30) for _ in range(5)]
    try:
        for i, sock in enumerate(stalled):
            sock.sendall(b"GET /api/info HTTP/1.1\r\n" + host_line(server) if i % 2 else
                         b"POST /api/analyze HTTP/1.1\r\n" + host_line(server) + b"Content-Length: 50\r\n\r\n{")
        assert still_serving(server) and post(server, "/api/analyze", {"text": TEXT}).status == 200
    finally:
        for sock in stalled:
            sock.close()


def test_a_client_that_stops_mid_request_is_dropped(impatient: ExploreServer) -> None:
    """Silent for the server's timeout: a request whose headers stopped is closed, one whose body stopped is
    answered 408 and closed."""
    server = impatient
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=30) as half_head, \
            socket.create_connection(("127.0.0.1", port_of(server)), timeout=30) as half_body:
        half_head.sendall(b"GET /api/info HTTP/1.1\r\n" + host_line(server))
        half_body.sendall(b"POST /api/analyze HTTP/1.1\r\n" + host_line(server)
                          + b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"te")
        assert closed_by_server(half_head, within=20) == b""
        late = closed_by_server(half_body, within=20)
    assert late is not None and b" 408 " in late.split(b"\r\n")[0] and b"did not arrive in time" in late
    assert still_serving(server)


def test_a_client_that_trickles_its_headers_is_dropped_at_the_deadline(impatient: ExploreServer) -> None:
    """A header line every 0.1 s never trips the 0.5 s silence limit; the 1.5 s limit on the whole request ends it."""
    server = impatient
    start_line = b"GET /api/info HTTP/1.1\r\n" + host_line(server)
    sent = 0
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=30) as slow:
        slow.sendall(start_line)
        started = time.monotonic()
        try:
            while time.monotonic() - started < 30:
                slow.sendall(b"X-Slow-" + str(sent).encode() + b": 1\r\n")
                sent += 1
                if sent % 5 == 0:
                    assert still_serving(server)
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - started < 30, "the trickling client was never dropped"
        assert closed_by_server(slow, within=5) is not None


# ----- security headers ------------------------------------------------------------------------------
def test_every_reply_carries_the_security_headers(served) -> None:
    server, _ = served
    replies = [ask(server, "GET", "/"), ask(server, "GET", "/app.js"), ask(server, "GET", "/style.css"),
               ask(server, "GET", "/api/info"), post(server, "/api/analyze", {"text": TEXT}),
               ask(server, "GET", "/nothing"), post(server, "/api/analyze", {"text": 5}), raw(server, b"GARBAGE\r\n\r\n"),
               ask(server, "GET", "/api/info", headers={"Host": "evil.example"})]
    for reply in replies:
        csp = reply.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["X-Frame-Options"] == "DENY"
        assert reply.headers["Referrer-Policy"] == "no-referrer"
        assert reply.headers["Cache-Control"] in ("no-store", "no-cache")
    assert replies[0].headers["Content-Type"] == "text/html; charset=utf-8"
    assert replies[3].headers["Cache-Control"] == "no-store"  # the run's data stays out of caches


def test_the_page_has_no_inline_script_or_style() -> None:
    """What the Content-Security-Policy would block: the browser test runs the page under it."""
    from attnlm.explore.server import static_file

    page = static_file("index.html").decode()
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="app.js">', '<script src="ablate.js">']
    assert "<style" not in page and not re.search(r"\sstyle=|\son[a-z]+=", page)
    for name in ("app.js", "ablate.js"):
        assert not re.search(r"""setAttribute\(\s*["']style""", static_file(name).decode()), name


def test_the_page_opens_from_the_printed_url_in_a_real_browser(open_server: ExploreServer) -> None:
    """Served beyond loopback: the browser opens the URL with the token, keeps the cookie and the page draws,
    under the Content-Security-Policy, with no error in its console."""
    from test_explore_browser import FLAGS, chromium

    executable = chromium()
    from playwright.sync_api import expect, sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=FLAGS)
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(open_server.url)
        expect(page.locator("#lines path.edge").first).to_be_attached(timeout=60_000)
        assert page.url == f"http://127.0.0.1:{port_of(open_server)}/"  # the token left the address bar
        assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's scripts cannot read it
        browser.close()
    assert errors == []


def test_the_explore_command_bound_beyond_loopback_prints_the_url_with_its_token(trained_run) -> None:
    import subprocess
    import sys

    from run_helpers import ROOT

    run_dir, _ = trained_run
    proc = subprocess.Popen([sys.executable, "-m", "attnlm", "explore", "--run", str(run_dir), "--port", "0",
                             "--host", "0.0.0.0", "--no-browser"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line, note = proc.stdout.readline(), proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]{43})\s", line)
        assert url, line
        assert note.startswith("note: serving on every address of this machine: anyone who can reach it and has "
                               "the URL's token can use the page"), note
        connection = http.client.HTTPConnection("127.0.0.1", int(url.group(1)), timeout=30)
        connection.request("GET", "/api/info")
        assert connection.getresponse().status == 401
        connection.close()
        connection = http.client.HTTPConnection("127.0.0.1", int(url.group(1)), timeout=30)
        connection.request("GET", f"/api/info?token={url.group(2)}")
        assert json.loads(connection.getresponse().read())["model"]["block_size"] == 32
        connection.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in proc.stderr.read()


def test_nothing_a_client_sends_prints_a_traceback(served, capfd: pytest.CaptureFixture[str]) -> None:
    """The server's terminal stays quiet whatever clients send: their mistakes are answered, not logged."""
    server, _ = served
    capfd.readouterr()
    body_request(server, b"[" * 100_000)
    body_request(server, b'{"n": ' + b"7" * 5000 + b"}", "/api/sample")
    raw(server, b"GARBAGE\r\n\r\n")
    raw(server, b"BREW / HTTP/1.1\r\n" + host_line(server) + b"\r\n")
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=30) as sock:
        sock.sendall(b"GET /api/info HTTP/1.1\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset, not a close
    assert still_serving(server)
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "Error" not in err and out == ""

