"""Who may ask the explorer: the name a request is addressed to (Host), the page it comes from (Origin,
Sec-Fetch-Site) and, when the server has one, its token.

A web page on any site can make the browser send requests to 127.0.0.1, and can rebind its own name to
127.0.0.1 to read the replies; only the Host header tells such a request apart, so the server answers only the
names it is served under (as Jupyter and TensorBoard do). Requests a page sends from another origin are
refused, so no site can make the model compute or read the run. Served beyond loopback, anyone on the network
can reach the port: there a token (printed in the URL, kept as a cookie by the browser) is the key.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from werkzeug.http import dump_cookie, parse_cookie

# A host name, an IPv4 address or a bracketed IPv6 address, then an optional port (RFC 9110 section 7.2).
_HOST = re.compile(r"(?P<name>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")
MIN_TOKEN = 16  # characters; the server does not slow down guesses, so a short token would be found


class Refused(Exception):
    """A request the server will not answer: its status, the message naming why, and headers to send with it."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach: localhost, 127.x.x.x, ::1."""
    ip = _ip(host)
    return host.lower() == "localhost" if ip is None else ip.is_loopback


def is_wildcard(host: str) -> bool:
    """True for a bind to every address of the machine: "", 0.0.0.0, ::."""
    ip = _ip(host)
    return host == "" or (ip is not None and ip.is_unspecified)


def check_token(token: str, name: str = "token") -> str:
    """A token given by the user, or ValueError naming what is wrong with it (as `name`, the caller's word)."""
    if not isinstance(token, str) or len(token) < MIN_TOKEN or not _TOKEN_CHARS.fullmatch(token):
        raise ValueError(f"{name} must be at least {MIN_TOKEN} characters of A-Z, a-z, 0-9, '-' and '_', "
                         "e.g. from: python -c 'import secrets; print(secrets.token_urlsafe())'")
    return token


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Guard:
    """What a request must show to be answered. `names` are the Host names accepted (None: any, for a server
    bound to every address, where the token is the key); `token` is None when none is asked for."""

    names: frozenset[str] | None
    port: int
    token: str | None
    cookie_name: str = field(init=False)

    def __post_init__(self) -> None:
        # Browsers keep one cookie jar per host name whatever the port: the port in the name keeps two explorers
        # on one machine from overwriting each other's token.
        object.__setattr__(self, "cookie_name", f"attnlm_explore_{self.port}")

    @classmethod
    def serving(cls, host: str, port: int, token: str | None) -> Guard:
        """The guard of a server bound to `host`: loopback names are always accepted (and, ssh -L style, under
        any port), the bound name too; a wildcard bind accepts any name."""
        if is_wildcard(host):
            return cls(None, port, token)
        name = host.lower()
        if _ip(name) is not None and _ip(name).version == 6:
            name = f"[{name.strip('[]')}]"
        return cls(frozenset({"localhost", "127.0.0.1", "[::1]", name}), port, token)

    # ----- Host ------------------------------------------------------------------------------------
    def host(self, values: list[str]) -> str:
        """The request's Host header, lower-cased, if the server answers that name; else Refused."""
        if not values:
            raise Refused(400, "the request has no Host header; send Host: 127.0.0.1 (HTTP/1.1 requires it)")
        if len(values) > 1:
            raise Refused(400, "the request has more than one Host header; send one")
        value = values[0].strip().lower()
        m = _HOST.fullmatch(value)
        if m is None or (m["port"] is not None and not 0 < int(m["port"]) < 65536):
            raise Refused(400, f"the Host header {values[0][:100]!r} is not a host name with an optional port")
        name = m["name"]
        ip = _ip(name)
        accepted = self.names is None or name in self.names or (ip is not None and ip.is_loopback)
        if not accepted:
            served = ", ".join(sorted(self.names or ()))
            raise Refused(403, f"this explorer answers only requests addressed to {served}, not to {name!r} "
                               "(a page on another site may have pointed its name at this machine); open the "
                               "URL attnlm explore printed")
        return value

    # ----- Origin ----------------------------------------------------------------------------------
    def origin(self, origin: str | None, fetch_site: str | None, host: str, api: bool) -> None:
        """Refuse a request a page of another origin makes: an Origin header other than this server's own,
        and, for the JSON API, a browser's own word that the request comes from another site (Sec-Fetch-Site,
        sent even where Origin is not, as for an <img> or a <script>)."""
        if origin is not None and not _same_origin(origin, host):
            raise Refused(403, f"cross-origin request from {origin[:100]!r} refused: the explorer answers only "
                               f"its own page (http://{host})")
        if api and fetch_site is not None and fetch_site.strip().lower() in ("cross-site", "same-site"):
            raise Refused(403, f"request from a page of another site refused (Sec-Fetch-Site: {fetch_site[:40]}): "
                               f"the explorer answers only its own page (http://{host})")

    # ----- the token -------------------------------------------------------------------------------
    def authorize(self, query_token: str | None, authorization: str | None, cookies: list[str]) -> bool:
        """Whether the request shows the token (in ?token=, an Authorization header or the cookie); Refused if
        the server asks for one and it is missing or wrong. True when it came in the URL: the server then sets
        the cookie, so the page's own requests carry it."""
        if self.token is None:
            return False
        shown = [("?token=", query_token)]
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            shown.append(("the Authorization header", value.strip() if scheme.lower() in ("token", "bearer") else ""))
        for header in cookies:
            value = parse_cookie(header).get(self.cookie_name)
            if value is not None:
                shown.append(("the cookie", value))
        given = [(where, value) for where, value in shown if value is not None]
        if not given:
            raise Refused(401, "this explorer needs its token: open the URL with ?token=... that attnlm explore "
                               "printed, or send the header Authorization: token ...",
                          {"WWW-Authenticate": 'Bearer realm="attnlm explore"'})
        # Any one right token will do: a browser may still hold the cookie of an earlier explorer on this port
        # when it opens the new URL, whose token then replaces it.
        if not any(self._right(value) for _, value in given):
            places = " and ".join(where for where, _ in given)
            raise Refused(403, f"wrong token in {places}; open the URL with ?token=... that attnlm explore printed")
        return query_token is not None and self._right(query_token)

    def _right(self, value: str) -> bool:
        return hmac.compare_digest(value.encode("utf-8", "replace"), (self.token or "").encode())

    def cookie(self) -> str:
        """The Set-Cookie header value that keeps the token in this browser, for this server only."""
        return dump_cookie(self.cookie_name, self.token or "", path="/", httponly=True, samesite="Strict")


def _same_origin(origin: str, host: str) -> bool:
    """Whether an Origin header names this server as the request's (checked) Host header does: http, the same
    name and port (80 where neither says)."""
    own = _HOST.fullmatch(host)
    try:
        url = urlsplit(origin.strip().lower())
        port = url.port or 80
    except ValueError:
        return False
    if own is None or url.scheme != "http" or url.path or url.query or url.fragment or url.username is not None:
        return False
    return url.hostname == own["name"].strip("[]") and port == int(own["port"] or 80)
