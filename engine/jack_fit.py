"""A live stream on JACK: the JACK server sets the sample rate and the period, and `jam`
must fit them, or say why it cannot.

- Rate. JACK runs every client at the server's rate and does not resample; PortAudio's only
  answer to another rate is "Invalid sample rate". So jam refuses it, naming JACK's rate.
- Period. JACK calls PortAudio once a period. With blocks smaller than the period, PortAudio
  calls our callback several times in a row inside that one cycle, too quickly for the
  worker to answer in between, so the output ring must already hold the whole period, and
  then a period more as the worker's slack: two periods, which the default (blocks of one
  period, a 2-block buffer) has. A 2-block buffer of 100-frame blocks on a 256-frame period
  missed 210 hops in 2 s. So the buffer grows to two periods, and jam says so.
"""

from __future__ import annotations

from dataclasses import replace

from engine.errors import EngineError
from engine.live_engine import DeviceInfo, LiveConfig

JACK_HOST_API = "JACK Audio Connection Kit"  # PortAudio's name for it


def on_jack(*devices: DeviceInfo) -> bool:
    return any(device.hostapi == JACK_HOST_API for device in devices)


def jack_period() -> int | None:
    """The running JACK server's period in frames (the one PortAudio talks to), or None."""
    import jack

    try:
        client = jack.Client("bandmate-period", no_start_server=True)
    except jack.JackOpenError:
        return None
    try:
        return int(client.blocksize)
    finally:
        client.close()


def check_jack_rate(rate: int, device: DeviceInfo) -> None:
    jack_rate = round(device.default_rate)  # PortAudio reports the server's rate
    if rate != jack_rate:
        raise EngineError(
            f"JACK runs at {jack_rate} Hz, not {rate}: leave out --samplerate, or restart "
            f"jackd at {rate} Hz (JACK does not resample)"
        )


def fit_buffer_to_period(config: LiveConfig, period: int) -> tuple[LiveConfig, str | None]:
    """`config` with a worker buffer of at least two periods when its blocks are smaller
    than the period, and the line that says why; else `config` as it is and None."""
    needed = -(-2 * period // config.blocksize)  # blocks in two periods, rounded up
    if config.blocksize >= period or config.extra_blocks >= needed:
        return config, None
    bursts = -(-period // config.blocksize)
    note = (
        f"JACK calls back once per {period}-frame period, so {config.blocksize}-frame blocks "
        f"come up to {bursts} at a time: the buffer is {needed} blocks "
        f"({needed * config.blocksize} samples, two periods), not {config.extra_blocks}, or "
        f"nearly every period would miss"
    )
    return replace(config, extra_blocks=needed), note
