"""Slow, idle and surplus connections, cut at the HTTP layer (uvicorn's httptools protocol).

uvicorn times out a keep-alive connection between requests, but not one that sends nothing,
or half its headers, or half a WebSocket handshake: those stayed open for minutes, and 1,100
of them used up every file descriptor. So a request's headers must be complete within a
deadline of the connection's start (or of the previous response), and connections beyond a
cap are answered 503 and closed at once, before they can use up the descriptors.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_BODY = b"too many open connections\n"
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol with a deadline on request headers and a connection cap."""

    class GuardedHttpProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= max_connections:  # WebSockets count too
                transport.write(REFUSED)
                transport.close()
                return
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.transport is None:
                return  # refused in connection_made: nothing was set up
            self._disarm()
            super().connection_lost(exc)

        def on_headers_complete(self) -> None:
            self._disarm()  # a WebSocket upgrade is complete here too
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers are due as well

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(header_timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedHttpProtocol


def uvicorn_options(header_timeout_s: float, max_connections: int) -> dict[str, Any]:
    """uvicorn.run options for these limits. Its own limit_concurrency answers 503 when the
    running requests (tasks), not only the connections, reach the cap."""
    return {
        "http": guarded_protocol(header_timeout_s, max_connections),
        "limit_concurrency": max_connections + 1,  # uvicorn counts the new one, we do not
    }
