"""The participant's screen: a page `session run` serves on loopback, opened in a browser on
the participant's display (`participant_page.html`).

The runner sets what the page shows (`show`): a welcome with a Start button, the block's
instruction with a get-ready countdown, the fixation cross with the block's time left, the
SAM valence and arousal scales (manikins drawn as SVG, clicked or keyed 1-9), a paused screen,
and the end. `tone` plays the end-of-block tone (WebAudio, unlocked by the Start click, which
browsers require before a page may play sound): every state carries the count of tones so
far, so a tone is played once even when the next screen follows at once and the page only
sees the newer state. The runner sends an LSL marker for every cue and rating it gives the
page; the page only displays.

Transport: the page follows the state over Server-Sent Events (`GET /events`; a reloaded page
gets the current state at once, with the countdown's time left as of then), and posts the
Start click (`POST /start`) and ratings (`POST /rating`, JSON). stdlib `http.server`, one
thread per connection: the page is one client on loopback.

Loopback only, and guarded like the server's page: a request whose Host is not this address
is refused (DNS rebinding), and a POST must be JSON from this page's own origin, so another
site open in the participant's browser cannot post a rating.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bci.errors import BciError
from bci.experiment.experiment_protocol import SAM_DIMENSIONS, SAM_RANGE

PAGE = Path(__file__).with_name("participant_page.html")
KEEPALIVE_S = 10.0  # an SSE comment this often, so a dead connection is noticed


@dataclass(frozen=True)
class Screen:
    """What the page shows; `seconds` starts a countdown."""

    name: str  # welcome, waiting, ready, block, rating, paused, done
    text: str = ""
    seconds: float | None = None
    dimension: str | None = None  # the SAM scale of a rating screen


class ParticipantPage:
    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.started = threading.Event()  # the participant pressed Start
        self.ratings: queue.Queue[tuple[str, int]] = queue.Queue()
        self._screen = Screen("welcome")
        self._deadline: float | None = None
        self._tones = 0
        self._seq = 0
        self._changed = threading.Condition()
        self._closing = False
        self.html = PAGE.read_bytes()
        try:
            self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        except OSError as error:
            raise BciError(
                f"the participant page cannot listen on {host}:{port} ({error.strerror}): "
                "choose another --page-port, or 0 for any free one"
            ) from None
        self._server.daemon_threads = True
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="participant-page", daemon=True)  # fmt: skip
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def show(self, screen: Screen) -> None:
        with self._changed:
            self._screen, self._seq = screen, self._seq + 1
            self._deadline = None if screen.seconds is None else time.monotonic() + screen.seconds
            self._changed.notify_all()

    def tone(self) -> None:
        with self._changed:
            self._tones, self._seq = self._tones + 1, self._seq + 1
            self._changed.notify_all()

    def state(self) -> tuple[int, dict[str, Any]]:
        """The current state as the page receives it: its number and its JSON fields."""
        with self._changed:
            screen, seq, deadline, tones = self._screen, self._seq, self._deadline, self._tones
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        fields = {"seq": seq, "screen": screen.name, "text": screen.text, "seconds_left": left,
                  "dimension": screen.dimension, "tones": tones}  # fmt: skip
        return seq, fields

    def wait_for_change(self, seq: int, timeout: float) -> bool:
        """True once the state is newer than `seq`; False at the timeout or when closing."""
        with self._changed:
            self._changed.wait_for(lambda: self._seq != seq or self._closing, timeout)
            return self._seq != seq and not self._closing

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def receive(self, path: str, body: dict[str, Any]) -> int:
        """A POST from the page; the HTTP status to answer."""
        if path == "/start":
            self.started.set()
            return 204
        if path == "/rating":
            dimension, value = body.get("dimension"), body.get("value")
            low, high = SAM_RANGE
            # `type`, not isinstance: bool is an int subclass, and true is not a rating
            if dimension not in SAM_DIMENSIONS or type(value) is not int:
                return 400
            if not low <= value <= high:
                return 400
            with self._changed:
                asked = self._screen.name == "rating" and self._screen.dimension == dimension
            if not asked:
                return 409  # e.g. a second click after the rating was taken
            self.ratings.put((str(dimension), value))
            return 204
        return 404


def _handler_for(page: ParticipantPage) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # the experimenter's terminal shows the session, not each request

        def _host_is_ours(self) -> bool:
            host = self.headers.get("Host", "")
            return host in (f"{page.host}:{page.port}", f"localhost:{page.port}")

        def _answer(self, status: int, body: bytes = b"", kind: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if not self._host_is_ours():
                self._answer(400, b"wrong host")
            elif self.path == "/":
                self._answer(200, page.html, "text/html; charset=utf-8")
            elif self.path == "/events":
                self._events()
            else:
                self._answer(404, b"not found")

        def do_POST(self) -> None:
            origin = self.headers.get("Origin")
            own = origin in (
                None,
                f"http://{page.host}:{page.port}",
                f"http://localhost:{page.port}",
            )
            is_json = self.headers.get("Content-Type", "").startswith("application/json")
            if not self._host_is_ours() or not own or not is_json:
                self._answer(403, b"only this page may post, as JSON")
                return
            length = min(int(self.headers.get("Content-Length") or 0), 4096)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = None
            status = page.receive(self.path, body) if isinstance(body, dict) else 400
            self._answer(status)

        def _events(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seq = -1
            try:
                while True:  # the newest state first, so the last one ("done") goes out
                    if seq != page.state()[0]:
                        seq, fields = page.state()
                        self.wfile.write(f"data: {json.dumps(fields)}\n\n".encode())
                    elif page.closing:
                        return
                    elif not page.wait_for_change(seq, KEEPALIVE_S):
                        self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
            except OSError:
                return  # the page was closed or reloaded

    return Handler
