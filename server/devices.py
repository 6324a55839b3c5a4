"""GET /v1/devices: PortAudio's devices, listed by one thread at a time and kept briefly.

Each listing rescans PortAudio (engine.portaudio), which is slow and must not overlap with
another. Requests that arrive together wait for the one listing in progress and share it.
"""

from __future__ import annotations

import threading
import time

from server.errors import ServerError

CACHE_SECONDS = 2.0


class DeviceList:
    def __init__(self, max_age_s: float = CACHE_SECONDS):
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._devices: list[dict[str, object]] = []
        self._listed_at = -float("inf")

    def get(self) -> list[dict[str, object]]:
        """Blocking: call it off the event loop. ServerError if PortAudio fails."""
        with self._lock:
            if time.monotonic() - self._listed_at > self.max_age_s:
                self._devices = list_now()
                self._listed_at = time.monotonic()
            return self._devices


def list_now() -> list[dict[str, object]]:
    import sounddevice as sd

    from engine.live_engine import list_devices, portaudio_message

    try:
        return [dict(device.__dict__) for device in list_devices()]
    except sd.PortAudioError as exc:
        raise ServerError(f"audio device error: {portaudio_message(exc)}") from None
