"""PortAudio's view of the host APIs. PortAudio scans them once at initialisation, so it sees
a JACK server only if the server ran then; and it must let go of JACK before the server
stops, or its JACK host API asserts at exit."""

from __future__ import annotations


def rescan() -> None:
    """Re-initialise PortAudio so devices that appeared since (a JACK server) are listed."""
    import sounddevice as sd

    release()
    sd._initialize()


def release() -> None:
    """Terminate PortAudio entirely; the next rescan() starts it again."""
    import sounddevice as sd

    while sd._initialized:
        sd._terminate()
