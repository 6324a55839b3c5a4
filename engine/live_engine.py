"""Live audio: a duplex PortAudio stream around one Session.

    device in -> callback -> input ring -> worker: session.process -> output ring -> callback
              -> dry * dry_gain + accompaniment * wet_gain -> device out (one channel pair)

The callback only copies, into arrays allocated up front: no model calls, no locks, no
waiting. The worker thread does the inference. The output ring starts with `extra_blocks`
blocks of silence, which is the time the worker has to turn block n into accompaniment.

Alignment. Output sample j of the stream is the session's output sample j - extra, so the
accompaniment stays locked to the player. When the worker is late the callback plays what
there is, fades the rest to silence from the last sample, and owes the missing samples: when
they arrive late it drops exactly that many, so after the glitch output j is again the
session's sample j - extra. The callback drops them itself, not the worker: only the ring's
reader may move its read counter, and only the reader knows, race-free, what was played.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import portaudio
from engine.errors import EngineError
from engine.ringbuffer import RingBuffer
from engine.session import Session, check_rate

if TYPE_CHECKING:
    import sounddevice as sd

FADE_SECONDS = 0.002  # underrun fade-out and recovery fade-in: short, but no click


class DeviceLostError(EngineError):
    """The stream died while playing. PortAudio can no longer be shut down cleanly, so the
    process should exit without its exit handlers (see LiveEngine.close)."""


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    hostapi: str
    inputs: int
    outputs: int
    default_rate: float
    default_input: bool = False  # PortAudio's default device for that direction
    default_output: bool = False


@dataclass(frozen=True)
class LiveConfig:
    input_device: int | None = None  # PortAudio index; None is the default device
    output_device: int | None = None
    samplerate: int = 48_000
    blocksize: int = 256
    input_channel: int = 0  # 0-based
    output_channel: int = 0  # first channel of the output pair, 0-based
    dry_gain: float = 0.0  # the player's own input in the monitor mix
    wet_gain: float = 1.0  # the accompaniment in the monitor mix
    extra_blocks: int = 2  # output buffering beyond the session's latency: the worker's slack
    input_seconds: float = 10.0  # input ring size: how far the worker may fall behind

    def __post_init__(self) -> None:
        if self.blocksize < 1:
            raise EngineError(f"block size must be positive, not {self.blocksize}")
        if self.extra_blocks < 1:
            raise EngineError(f"extra buffering must be at least 1 block, not {self.extra_blocks}")
        if self.input_channel < 0 or self.output_channel < 0:
            raise EngineError("channel numbers start at 0")


def list_devices() -> list[DeviceInfo]:
    """PortAudio's devices, rescanned so a JACK server started after import is seen."""
    import sounddevice as sd

    with portaudio.scanned():  # no other thread may terminate PortAudio mid-query
        apis = sd.query_hostapis()
        default_in, default_out = sd.default.device
        found = list(sd.query_devices())
    return [
        DeviceInfo(
            index=int(d["index"]),
            name=str(d["name"]),
            hostapi=str(apis[d["hostapi"]]["name"]),
            inputs=int(d["max_input_channels"]),
            outputs=int(d["max_output_channels"]),
            default_rate=float(d["default_samplerate"]),
            default_input=d["index"] == default_in,
            default_output=d["index"] == default_out,
        )
        for d in found
    ]


def find_device(devices: list[DeviceInfo], spec: str | None, direction: str) -> DeviceInfo:
    """By index or case-insensitive name substring; None picks PortAudio's default device, or
    else the first with channels in that direction. `direction` is 'input' or 'output'."""
    if not devices:
        raise EngineError("no audio devices found (on Linux without a sound card, start jackd)")
    usable = [d for d in devices if (d.inputs if direction == "input" else d.outputs) > 0]
    if spec is None:
        if not usable:
            raise EngineError(f"no audio device has {direction} channels; run 'bandmate devices'")
        defaults = [d for d in usable if (d.default_input, d.default_output)[direction != "input"]]
        return (defaults or usable)[0]
    if spec.strip().isdigit():
        matches = [d for d in devices if d.index == int(spec)]
    else:
        matches = [d for d in usable if spec.lower() in d.name.lower()]
    if not matches:
        raise EngineError(f"no audio device matches {spec!r}; run 'bandmate devices'")
    return matches[0]


def check_channels(config: LiveConfig, device_in: DeviceInfo, device_out: DeviceInfo) -> None:
    check_rate(config.samplerate)
    if config.input_channel >= device_in.inputs:
        raise EngineError(
            f"input channel {config.input_channel} out of range: {device_in.name!r} has "
            f"{device_in.inputs} input channel(s), numbered from 0"
        )
    if config.output_channel >= device_out.outputs:
        raise EngineError(
            f"output channel {config.output_channel} out of range: {device_out.name!r} has "
            f"{device_out.outputs} output channel(s), numbered from 0"
        )


class LiveEngine:
    """One player's live stream. `callback` and `work` are public so tests can drive them
    without a device; `open`/`close` (or `with`) run them on a real stream and thread."""

    def __init__(self, session: Session, config: LiveConfig, output_channels: int = 2):
        self.session, self.config = session, config
        check_rate(config.samplerate)
        if session.device_rate != config.samplerate:
            raise EngineError(
                f"session runs at {session.device_rate} Hz, the stream at {config.samplerate}"
            )
        block = config.blocksize
        # PortAudio may hand over other block sizes than asked for; these bound what fits.
        self._max_frames = max(8192, 4 * block)
        self.extra_samples = config.extra_blocks * block
        self.input = RingBuffer(int(config.input_seconds * config.samplerate) + self._max_frames)
        self.output = RingBuffer(self.input.capacity + self.extra_samples)
        self.output.write(np.zeros(self.extra_samples, np.float32))
        self.output_channels = output_channels  # how many channels the stream's output has
        self._acc = np.zeros(self._max_frames, np.float32)
        self._mix = np.zeros(self._max_frames, np.float32)
        self._gain = np.zeros(self._max_frames, np.float32)
        self._steps = np.arange(1, self._max_frames + 1, dtype=np.float32)
        self._fade_step = np.float32(1.0 / max(1, round(FADE_SECONDS * config.samplerate)))
        self._work_chunk = np.zeros(block, np.float32)
        # Callback-only state (the callback is the one writer of each).
        self.owed = 0  # samples played as fade/silence whose accompaniment is still to come
        self.played = 0  # samples the callback has output
        self.xruns = 0  # blocks PortAudio flagged (device over/underflow)
        self.input_dropped = 0  # input samples that found the input ring full
        self._last = np.float32(0.0)  # last accompaniment sample played
        self._hold = np.float32(0.0)  # value being faded out after an underrun
        self._hold_gain = np.float32(0.0)  # what is left of that fade, 1 -> 0
        self._in_gain = np.float32(1.0)  # fade-in of the recovered accompaniment, 0 -> 1
        self._starved = False  # the previous block ended short
        # Worker state.
        self.processed = 0  # input samples the worker has turned into accompaniment
        self.input_peak = 0.0  # largest |input| since take_input_peak(): the status's meter
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._stream: sd.Stream | None = None
        self.stream_latency_samples = 0
        self.device_lost = False  # the stream died under us (see close)

    # -- latency ---------------------------------------------------------------------------
    @property
    def latency_samples(self) -> int:
        """Input sample i is accompanied at output sample i + this: the session's latency,
        the worker's buffer and the stream's reported input + output latency."""
        return self.session.latency_samples + self.extra_samples + self.stream_latency_samples

    @property
    def latency_ms(self) -> float:
        return 1e3 * self.latency_samples / self.config.samplerate

    # -- audio thread ----------------------------------------------------------------------
    def callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, _time: Any,
                 status: Any) -> None:  # fmt: skip
        """PortAudio's duplex callback: copies only, into preallocated arrays."""
        if status:
            self.xruns += 1
        dry = indata[:, self.config.input_channel]
        # Only if the worker falls input_seconds behind; then the accompaniment follows a
        # shifted input, so it is counted and reported.
        self.input_dropped += frames - self.input.write(dry)
        acc = self._render_accompaniment(frames)
        mix = self._mix[:frames]
        np.multiply(acc, np.float32(self.config.wet_gain), out=mix)
        if self.config.dry_gain:
            np.multiply(dry, np.float32(self.config.dry_gain), out=acc)  # acc is spent: reuse
            mix += acc
        outdata.fill(0)
        first = self.config.output_channel
        for channel in range(first, min(first + 2, self.output_channels)):
            outdata[:, channel] = mix
        self.played += frames

    def _render_accompaniment(self, frames: int) -> np.ndarray:
        """The next `frames` accompaniment samples; on a shortfall, a fade instead of a click."""
        acc = self._acc[:frames]
        if self.owed:  # late samples of an earlier underrun: their moment has passed
            self.owed -= self.output.skip(self.owed)
        got = self.output.read_into(acc) if not self.owed else 0
        if got and (self._in_gain < 1 or self._hold_gain > 0):
            self._crossfade(acc[:got])
        missing = frames - got
        if missing:
            if got or not self._starved:  # a new underrun: fade from the last sample played
                self._hold = acc[got - 1] if got else self._last
                self._hold_gain, self._in_gain = np.float32(1.0), np.float32(0.0)
            self._fade(acc[got:], self._hold, self._hold_gain)
            self._hold_gain = max(np.float32(0.0), self._hold_gain - missing * self._fade_step)
            self.owed += missing
            self.session.telemetry.miss()
        self._starved = missing > 0
        self._last = acc[frames - 1]
        return acc

    def _crossfade(self, acc: np.ndarray) -> None:
        """Recovered audio fades in while the held value finishes fading out."""
        n = len(acc)
        gain = self._gain[:n]
        np.multiply(self._steps[:n], self._fade_step, out=gain)
        gain += self._in_gain
        np.minimum(gain, np.float32(1.0), out=gain)
        acc *= gain
        if self._hold_gain > 0:
            tail = self._mix[:n]  # free until the mix is computed
            self._fade(tail, self._hold, self._hold_gain)
            acc += tail
        self._in_gain = min(np.float32(1.0), self._in_gain + n * self._fade_step)
        self._hold_gain = max(np.float32(0.0), self._hold_gain - n * self._fade_step)

    def _fade(self, out: np.ndarray, value: np.float32, gain: np.float32) -> None:
        """out[k] = value * max(0, gain - (k + 1) * step): a linear fade to silence."""
        n = len(out)
        np.multiply(self._steps[:n], -self._fade_step, out=out)
        out += gain
        np.maximum(out, np.float32(0.0), out=out)
        out *= value

    # -- worker ----------------------------------------------------------------------------
    def work(self) -> int:
        """Turn all waiting input into accompaniment, a block at a time; returns how much."""
        done = 0
        while available := self.input.available():
            chunk = self._work_chunk[: min(available, len(self._work_chunk))]
            self.input.read_into(chunk)
            # Measured here, not in the callback, which only copies.
            self.input_peak = max(self.input_peak, float(chunk.max()), -float(chunk.min()))
            self.output.write(self.session.process(chunk))
            self.processed += len(chunk)
            done += len(chunk)
        return done

    def _work_loop(self) -> None:
        # Polling, not an Event: setting one from the callback would take a lock.
        idle = min(0.001, self.config.blocksize / self.config.samplerate / 4)
        try:
            while not self._stop.is_set():
                if not self.work():
                    time.sleep(idle)
        except BaseException as exc:  # reported by run(); the callback plays on, fading out
            self._error = exc

    def start_worker(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._work_loop, name="bandmate-worker",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def stop_worker(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def take_input_peak(self) -> float:
        """The input's peak since the last call. The worker may raise it in between the read
        and the reset; a meter can lose that one block's peak."""
        peak, self.input_peak = self.input_peak, 0.0
        return peak

    def check_worker(self) -> None:
        if self._error is not None:
            raise EngineError(f"inference worker failed: {self._error}") from self._error

    # -- stream ----------------------------------------------------------------------------
    def open(self) -> LiveEngine:
        import sounddevice as sd

        c = self.config
        try:
            self._stream = sd.Stream(
                device=(c.input_device, c.output_device),
                samplerate=c.samplerate,
                blocksize=c.blocksize,
                channels=(c.input_channel + 1, self.output_channels),
                dtype="float32",
                latency="low",
                callback=self.callback,
            )
            portaudio.stream_opened()
            in_latency, out_latency = self._stream.latency
            self.stream_latency_samples = round((in_latency + out_latency) * c.samplerate)
            self.start_worker()
            self._stream.start()
        except sd.PortAudioError as exc:
            self.close()
            raise EngineError(f"audio device error: {portaudio_message(exc)}") from None
        return self

    def close(self) -> None:
        if self._stream is not None and not self.device_lost:
            self._stream.stop()
            self._stream.close()
        if self._stream is not None:
            portaudio.stream_closed()
        # A lost stream is abandoned: PortAudio's JACK host API then blocks for good in
        # stop, abort, close and terminate, waiting for a process callback that never comes.
        self._stream = None
        self.stop_worker()

    def run(self, seconds: float, on_tick: Callable[[], None] | None = None) -> None:
        """Play for `seconds` (0: until KeyboardInterrupt), raising if the worker failed;
        `on_tick` is called every 0.1 s (a status line)."""
        now = time.monotonic()
        deadline = now + seconds if seconds > 0 else float("inf")
        played, heard_at = self.played, now
        while now < deadline:
            self.check_worker()
            if self.played != played:
                played, heard_at = self.played, now
            if self._stream is not None and (not self._stream.active or now - heard_at > 2):
                self.device_lost = True
                raise DeviceLostError("the audio device stopped calling back (is jackd gone?)")
            if on_tick is not None:
                on_tick()
            time.sleep(min(0.1, max(0.0, deadline - now)))
            now = time.monotonic()
        self.check_worker()

    def __enter__(self) -> LiveEngine:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def portaudio_message(exc: Exception) -> str:
    """sounddevice's error text, on one line (host errors can span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__
