"""PortAudio's view of the host APIs. PortAudio scans them once at initialisation, so it sees
a JACK server only if the server ran then; and it must let go of JACK before the server
stops, or its JACK host API asserts at exit.

PortAudio is one library per process and is not safe to re-initialise from several threads
at once: eight parallel rescans crashed the server (SIGSEGV/SIGABRT) or hung it. So every
terminate, initialise and device query goes through one process-wide lock, and a rescan is
skipped while a stream is open, whose host API a re-initialisation would pull away.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

# One PortAudio per process, so one lock and one count per process.
_lock = threading.RLock()
_open_streams = 0


@contextmanager
def scanned() -> Iterator[bool]:
    """Hold PortAudio for a device query, rescanned first unless a stream is open; yields
    whether it rescanned."""
    with _lock:
        yield rescan()


def rescan() -> bool:
    """Re-initialise PortAudio so devices that appeared since (a JACK server) are listed.
    Does nothing, and returns False, while a stream is open."""
    import sounddevice as sd

    with _lock:
        if _open_streams:
            return False
        release()
        sd._initialize()
        return True


def release() -> None:
    """Terminate PortAudio entirely; the next rescan() starts it again."""
    import sounddevice as sd

    with _lock:
        while sd._initialized:
            sd._terminate()


def stream_opened() -> None:
    """Call when a stream opens; until stream_closed(), rescans leave PortAudio alone."""
    global _open_streams
    with _lock:
        _open_streams += 1


def stream_closed() -> None:
    global _open_streams
    with _lock:
        _open_streams = max(0, _open_streams - 1)
