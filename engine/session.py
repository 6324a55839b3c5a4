"""engine.Session: every piece of streaming state for one player.

Signal path, at the device rate R and the model rate M (48 kHz):
    block (R) -> soxr stream -> hop framing -> model step (encode, generate, decode)
              -> accompaniment hop (M) -> soxr stream -> output FIFO (R) -> block (R)

Timing. Step t consumes input hop t and yields the accompaniment for hop t + a, which the
codec's synthesis delays by `codec_latency` samples (the overlap of its windows). Each hop of
anticipation beyond the first cancels one whole hop of that delay (`lead_hops`), so the
model-rate accompaniment starts with a - lead hops of silence. The output FIFO starts with
the fewest zeros that never run dry for any block size when steps run synchronously: none at
R = M with a >= 1, one hop for a = 0, plus the resamplers' buffering otherwise.
`latency_samples` is that prefill plus the codec delay left over: output sample m is the
accompaniment for input time m - latency_samples, whatever the block sizes, and the same
seed and input give the same output in blocks of 64 or 1024. At rates other than 48 kHz the
codec's share is rounded to the nearest device sample.

`process` runs everything synchronously (file mode, the live worker). A batch scheduler
instead calls feed / take_hop / next_noise / accept / read, stepping many sessions at once.
`snapshot` / `restore` move a session's whole streaming state, so a benchmark or an aligner
can fork a session and continue it twice.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import numpy as np

from engine.backends.base import Backend, ModelState
from engine.errors import EngineError
from engine.ringbuffer import RingBuffer
from engine.telemetry import Telemetry
from models.attributes import ATTRIBUTES

RESAMPLE_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
SUPPORTED_RATES = (16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000, 176_400, 192_000)
# `process` feeds at most this many samples before reading: well inside the output FIFO's
# 65,536 samples of room beyond its prefill.
PROCESS_PIECE = 16_384
# Steering moves at most this much alpha per hop (0 -> 1 in about 0.2 s): a knob turned fast
# glides instead of jumping, and the decoder's crossfade smooths each hop's change further.
STEER_SLEW_PER_HOP = 0.1


@dataclass(frozen=True)
class SessionConfig:
    device_rate: int = 48_000
    seed: int = 0
    # soxr's LQ adds at most ~10 ms per direction; HQ about 20 ms (see README). At 48 kHz
    # there is no resampling at all.
    resample_quality: str = "LQ"


@dataclass
class Controls:
    """Take effect at the next hop."""

    gain: float = 1.0  # accompaniment gain, linear
    noise_scale: float = 1.0  # scales the generator's noise: 0 is deterministic
    steer: dict[str, float] = field(default_factory=dict)  # attribute -> alpha, 0 unsteered


@dataclass(frozen=True)
class SessionSnapshot:
    """Everything a session will play depends on, at one instant between calls: restored into
    a session of the same backend, it continues bit-identically. Telemetry is not in it: it
    measures this session's compute, not what it plays."""

    config: SessionConfig  # its seed is what a reset starts the noise from
    model: ModelState
    rng: Mapping[str, Any]  # the noise generator's bit-generator state
    controls: Controls
    gain_now: float  # where the gain ramp stands
    steer_now: np.ndarray  # where the steering glide stands
    framing: np.ndarray  # the input hop being filled
    hops: tuple[np.ndarray, ...]  # complete input hops not yet stepped
    output: np.ndarray  # the output FIFO's unread samples
    reset_pending: bool
    underruns: int


def check_rate(rate: int) -> None:
    if rate not in SUPPORTED_RATES:
        rates = ", ".join(str(r) for r in SUPPORTED_RATES)
        raise EngineError(f"unsupported sample rate {rate} Hz: use one of {rates}")


def _resampler(rate_in: int, rate_out: int, quality: str):  # type: ignore[no-untyped-def]
    import soxr

    return soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality=quality)


def lead_hops(anticipation: int, codec_latency: int, hop: int) -> int:
    """Hops by which the output can be played earlier than the frame it was predicted for.

    Step t yields the accompaniment of frame t + a, and the codec delays it by
    `codec_latency` samples. One hop of anticipation is needed for the step itself (the hop
    must be complete before it is stepped); each further hop can cancel a hop of the codec's
    delay, as long as the output never comes before its time."""
    return max(0, min(anticipation - 1, codec_latency // hop))


@cache
def output_prefill(
    device_rate: int, model_rate: int, hop: int, anticipation: int, quality: str
) -> int:
    """Device-rate samples of silence the output FIFO needs so it never runs dry.

    Without resampling this is exact. With resampling, soxr releases output in bursts; the
    chain is simulated for several block sizes and the worst shortfall is taken.
    """
    model_delay = max(0, 1 - anticipation) * hop
    if device_rate == model_rate:
        return model_delay
    worst = 0.0
    for chunk in (8, 64, 256, 1024, 4096):
        into_model, out_of_model = (_resampler(device_rate, model_rate, quality),
                                    _resampler(model_rate, device_rate, quality))  # fmt: skip
        produced = len(out_of_model.resample_chunk(np.zeros(anticipation * hop, np.float32)))
        fed = framed = hops = 0
        while fed < 3 * device_rate:
            fed += chunk
            framed += len(into_model.resample_chunk(np.zeros(chunk, np.float32)))
            while (hops + 1) * hop <= framed:
                hops += 1
                produced += len(out_of_model.resample_chunk(np.zeros(hop, np.float32)))
            worst = max(worst, fed - produced)
    return int(np.ceil(model_delay * device_rate / model_rate + worst)) + 8


class Session:
    def __init__(self, backend: Backend, config: SessionConfig | None = None):
        self.config = config = config or SessionConfig()
        check_rate(config.device_rate)
        if config.resample_quality not in RESAMPLE_QUALITIES:
            raise EngineError(f"unknown resample quality {config.resample_quality!r}")
        self.backend = backend
        info = backend.info
        self.hop, self.model_rate, self.device_rate = info.hop, info.sample_rate, config.device_rate
        self.controls = Controls()
        self.telemetry = Telemetry(self.hop / self.model_rate)
        self.underruns = 0  # samples read that were not there (a scheduling bug if nonzero)
        self._reset_at_next_hop = False
        self.state = backend.initial_state(1)
        self.rng = np.random.default_rng(config.seed)
        self._gain_now = self.controls.gain
        self._steer_now = np.zeros(len(ATTRIBUTES), np.float32)
        resample = self.device_rate != self.model_rate
        q = config.resample_quality
        self._into_model = _resampler(self.device_rate, self.model_rate, q) if resample else None
        self._out_of_model = _resampler(self.model_rate, self.device_rate, q) if resample else None
        self._framing = np.zeros(self.hop, np.float32)
        self._framed = 0
        self._hops: deque[np.ndarray] = deque()
        # The codec delays its output by `codec_latency`; hops of anticipation beyond the one
        # that makes up for the model's own framing pay that delay back, whole hops at a time.
        lead = lead_hops(info.anticipation, info.codec_latency, self.hop)
        prefill = output_prefill(self.device_rate, self.model_rate, self.hop,
                                 info.anticipation - lead, q)  # fmt: skip
        model_delay = (info.codec_latency - lead * self.hop) * self.device_rate / self.model_rate
        self.latency_samples = prefill + round(model_delay)
        self.telemetry.latency_ms = 1e3 * self.latency_samples / self.device_rate
        device_hop = int(np.ceil(self.hop * self.device_rate / self.model_rate))
        self._output = RingBuffer(prefill + 16 * device_hop + 65_536)
        self._output.write(np.zeros(prefill, np.float32))
        # The frames before the first prediction (t < a - lead) are silent.
        self._emit(np.zeros((info.anticipation - lead) * self.hop, np.float32))

    @property
    def latency_seconds(self) -> float:
        return self.latency_samples / self.device_rate

    # -- input side ------------------------------------------------------------------------
    def feed(self, block: np.ndarray) -> None:
        """Take a mono block at the device rate; complete hops queue up for stepping."""
        samples = np.asarray(block, np.float32).reshape(-1)
        if self._into_model is not None:
            samples = self._into_model.resample_chunk(samples)
        while len(samples):
            take = min(self.hop - self._framed, len(samples))
            self._framing[self._framed : self._framed + take] = samples[:take]
            self._framed += take
            samples = samples[take:]
            if self._framed == self.hop:
                self._hops.append(self._framing.copy())
                self._framed = 0

    def pending_hops(self) -> int:
        return len(self._hops)

    def take_hop(self) -> np.ndarray:
        """The oldest complete input hop at the model rate. Applies a pending reset first."""
        if self._reset_at_next_hop:
            self.state = self.backend.initial_state(1)
            self.rng = np.random.default_rng(self.config.seed)
            self._reset_at_next_hop = False
        return self._hops.popleft()

    def steer(self, alphas: dict[str, float]) -> None:
        """Set the steering targets (attribute -> alpha; others keep theirs). The alphas the
        generator sees glide there, STEER_SLEW_PER_HOP per hop."""
        problem = self.backend.info.cannot_steer(alphas)
        if problem:
            raise EngineError(problem)
        for name, alpha in alphas.items():
            if not np.isfinite(alpha):
                raise EngineError(f"steering {name}: alpha must be a finite number, not {alpha}")
        self.controls.steer = {**self.controls.steer, **alphas}

    def next_steer(self) -> np.ndarray:
        """This hop's alphas [A]: a step of the glide towards the targets."""
        target = np.array([self.controls.steer.get(a, 0.0) for a in ATTRIBUTES], np.float32)
        move = np.clip(target - self._steer_now, -STEER_SLEW_PER_HOP, STEER_SLEW_PER_HOP)
        self._steer_now = (self._steer_now + move).astype(np.float32)
        return self._steer_now.copy()

    def next_noise(self) -> np.ndarray:
        noise = self.rng.standard_normal(self.backend.info.noise_dim).astype(np.float32)
        return noise * np.float32(self.controls.noise_scale)

    # -- output side -----------------------------------------------------------------------
    def accept(
        self, state: ModelState, accompaniment: np.ndarray, compute_s: float | None = None
    ) -> None:
        """The model's result for the hop last taken: new state and one accompaniment hop."""
        self.state = state
        if compute_s is not None:
            self.telemetry.record(compute_s)
        target = np.float32(self.controls.gain)
        # Ramp gain changes across the hop, so a knob turn never clicks.
        ramp = np.linspace(self._gain_now, target, self.hop, endpoint=False, dtype=np.float32)
        self._gain_now = float(target)
        self._emit(accompaniment.reshape(-1).astype(np.float32) * ramp)

    def _emit(self, audio: np.ndarray) -> None:
        if self._out_of_model is not None:
            audio = self._out_of_model.resample_chunk(audio)
        overflow = len(audio) - self._output.space()
        if overflow > 0:  # nobody is reading: drop the oldest rather than grow
            self._output.skip(overflow)
        self._output.write(audio)

    def read(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        got = self._output.read_into(out)
        self.underruns += n - got
        return out

    def available(self) -> int:
        return self._output.available()

    # -- everything at once ---------------------------------------------------------------
    def step_pending(self) -> None:
        """Run the model on every complete hop, one at a time."""
        while self._hops:
            hop = self.take_hop()
            noise, steer = self.next_noise(), self.next_steer()
            started = time.perf_counter()
            state, out = self.backend.step(self.state, hop[None], noise[None], steer[None])
            self.accept(state, out[0], time.perf_counter() - started)

    def process(self, block: np.ndarray) -> np.ndarray:
        """One block in, the accompaniment for the same span of samples out. A long block is
        processed in pieces, as shorter blocks would be, so its output never overflows the
        output FIFO (which would drop the block's first samples and shift every later one)."""
        samples = np.asarray(block, np.float32).reshape(-1)
        if len(samples) <= PROCESS_PIECE:
            self.feed(samples)
            self.step_pending()
            return self.read(len(samples))
        out = np.empty(len(samples), np.float32)
        for start in range(0, len(samples), PROCESS_PIECE):
            piece = samples[start : start + PROCESS_PIECE]
            self.feed(piece)
            self.step_pending()
            out[start : start + len(piece)] = self.read(len(piece))
        return out

    # -- its whole state -------------------------------------------------------------------
    def snapshot(self) -> SessionSnapshot:
        """A copy of every piece of streaming state, independent of this session from now on.
        Only at the model rate: soxr keeps a resampler's state to itself."""
        if self._into_model is not None:
            raise EngineError(
                f"a session at {self.device_rate} Hz resamples, and soxr cannot hand over its "
                f"state: snapshot a session at the model rate ({self.model_rate} Hz)"
            )
        return SessionSnapshot(
            config=self.config,
            model=self.state.copy(),
            rng=self.rng.bit_generator.state,
            controls=replace(self.controls, steer=dict(self.controls.steer)),
            gain_now=self._gain_now,
            steer_now=self._steer_now.copy(),
            framing=self._framing[: self._framed].copy(),
            hops=tuple(hop.copy() for hop in self._hops),
            output=self._output.peek(),
            reset_pending=self._reset_at_next_hop,
            underruns=self.underruns,
        )

    def restore(self, snapshot: SessionSnapshot) -> None:
        """Continue from `snapshot` (taken from this session or another of the same backend
        and rate), exactly as the session it was taken from would."""
        if snapshot.config.device_rate != self.device_rate or self._into_model is not None:
            raise EngineError(
                f"a snapshot at {snapshot.config.device_rate} Hz cannot be restored into a "
                f"session at {self.device_rate} Hz"
            )
        self.config = snapshot.config
        self.state = snapshot.model.copy()
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = dict(snapshot.rng)
        self.controls = replace(snapshot.controls, steer=dict(snapshot.controls.steer))
        self._gain_now = snapshot.gain_now
        self._steer_now = snapshot.steer_now.copy()
        self._framed = len(snapshot.framing)
        self._framing[: self._framed] = snapshot.framing
        self._hops = deque(hop.copy() for hop in snapshot.hops)
        self._output.skip(self._output.available())
        self._output.write(snapshot.output)
        self._reset_at_next_hop = snapshot.reset_pending
        self.underruns = snapshot.underruns

    def reset(self) -> None:
        """Start the accompaniment afresh at the next hop; timing stays where it is."""
        self._reset_at_next_hop = True

    def reseed(self, seed: int) -> None:
        self.config = SessionConfig(self.device_rate, seed, self.config.resample_quality)
        self.rng = np.random.default_rng(seed)
