"""Who may talk to the server, beyond the token: which web pages may open a WebSocket
(cross-site WebSocket hijacking), and which Host names a loopback server answers to (DNS
rebinding). A browser sends both headers itself and a page cannot forge them.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from server.config import ServerConfig, is_loopback

# A loopback server is reached by these names only, on any port. A page on another name
# that resolves to 127.0.0.1 (DNS rebinding) gets 400 for every request.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def token_matches(expected: str | None, given: str | None) -> bool:
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a WebSocket from a page of `origin` may use this server, reached as `host`.

    Browsers send Origin on every WebSocket; a client without one is not a browser (the
    Python client, a script), so no page can be using it. A page is let in when it is the
    server's own page (its origin is the Host it asked for) or its origin was allowed."""
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if origin in {a.rstrip("/").lower() for a in allowed}:
        return True
    parts = urlsplit(origin)
    own = host is not None and parts.netloc == host.strip().lower()
    return own and parts.scheme in ("http", "https")


def trusted_hosts(config: ServerConfig) -> list[str] | None:
    """The Host names to answer to: on loopback, the loopback names; elsewhere any (None),
    since the names the server is reached by are not known here and the token guards it."""
    return list(LOOPBACK_HOSTS) if is_loopback(config.host) else None
