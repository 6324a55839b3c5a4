"""SessionHost: the server's sessions, stepped together by one thread.

Threads. The event loop receives PCM and control messages and appends them to a session's
inbox. One stepper thread owns every engine.Session and is the only code that touches one:
it drains the inboxes, steps each checkpoint's sessions as one batch (BatchScheduler), and
hands each block's output back to the loop. The Session code needs no locks, and a slow
model never blocks the loop.

Timing. For every input block of n frames the client gets n frames back: exactly what
Session.process(block) returns, so a stream equals file mode for the same seed and input
(file mode also trims the first `latency_samples`). A control message takes effect at the
first hop after the audio received before it: the stepper feeds and steps the audio up to
a command before applying it.

Bounded work. Each cycle takes at most about PIECE_HOPS hops of audio from each session, so
one session's backlog, however it arrived (a 2 s block, or thousands of 1-frame blocks),
delays the others' answers by a few batched rounds at most. A session's blocks in one cycle
are fed, read and mixed as one span, so tiny blocks cost little more than large ones. A
block longer than a piece is split into pieces on arrival and answered whole once its last
piece is done, so the session's output FIFO never holds more than a cycle's worth.

Deadlines. Rounds are aligned (server/rounds.py): a round waits up to the batch window for
the sessions due by then. A block's output is late when it is ready more than one hop plus
that window after the block arrived; late blocks count as misses in telemetry and /metrics.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.errors import EngineError
from engine.ringbuffer import RingBuffer
from engine.scheduler import BatchScheduler
from engine.session import Session, SessionConfig, check_rate
from server.catalog import CheckpointCatalog
from server.config import ServerConfig
from server.errors import ServerError, SessionBusy, TooManySessions, UnknownSession
from server.metrics import ServerMetrics
from server.protocol import STEER_PREFIX, ProtocolError, SessionSpec
from server.rounds import RoundWindow

SWITCH_FADE_SAMPLES = 512  # the old checkpoint's last sound fades out over this many
PIECE_HOPS = 4  # model hops of audio a session contributes to one cycle, at most (about)

log = logging.getLogger("bandmate.host")


@dataclass(frozen=True)
class InputBlock:
    samples: np.ndarray  # mono float32 at the session's rate
    arrived: float  # time.perf_counter() when it came off the socket
    last: bool = True  # the last piece of its PCM message: its answer can go


@dataclass(frozen=True)
class Command:
    name: str  # a control name, or "reset"
    value: object = None


class HostedSession:
    """One session as the server holds it: the engine Session plus its inbox, mix and
    delivery. Everything but `inbox` and `deliver` belongs to the stepper thread."""

    def __init__(self, session_id: str, spec: SessionSpec, session: Session, window_s: float = 0.0):
        self.id, self.spec, self.session = session_id, spec, session
        self.hop_s = session.hop / session.model_rate
        self.window_s = window_s  # the host's batch window: part of this session's latency
        self.checkpoint = spec.checkpoint
        self.created = time.time()
        self.inbox: deque[InputBlock | Command] = deque()
        self.backlog_frames = 0  # frames in the inbox (written by both threads: approximate)
        # Set while a stream is open; takes the answers to one or more PCM messages, in order.
        self.deliver: Callable[[list[np.ndarray]], None] | None = None
        self.claimed = False  # a socket has it, or is attaching (under the host's lock)
        self.idle_since = time.monotonic()  # unclaimed since; it expires after the idle timeout
        device_hop = session.hop * spec.sample_rate / session.model_rate
        self.piece_frames = int(np.ceil(PIECE_HOPS * device_hop))
        self.next_due: float | None = None  # its next block's arrival, by its last's length
        self._answering: list[np.ndarray] = []  # answered pieces of a PCM message so far
        self.dry_wet = 1.0
        self._dry_wet_now = 1.0
        self._tail = np.zeros(0, np.float32)  # a switched-out checkpoint's fading last sound
        self._dry = RingBuffer(session.latency_samples + 8 * 48_000)
        self._dry.write(np.zeros(session.latency_samples, np.float32))
        self.dropped_blocks = 0  # input dropped because the model fell behind
        self.dropped_messages = 0  # output dropped because the client fell behind
        self.valence: float | None = None  # set by a BCMI loop over OSC, shown in telemetry

    @property
    def streaming(self) -> bool:
        return self.deliver is not None

    def controls(self) -> dict[str, float | int | str]:
        controls = self.session.controls
        return {
            "gain": controls.gain,
            "dry_wet": self.dry_wet,
            "noise_scale": controls.noise_scale,
            "anticipation": self.session.backend.info.anticipation,
            "seed": self.session.config.seed,
            "checkpoint": self.checkpoint,
            **{STEER_PREFIX + name: alpha for name, alpha in controls.steer.items()},
        }

    def telemetry(self) -> dict[str, float | int]:
        """The engine's summary; the latency a hosted session reports includes the window."""
        latency_ms = 1e3 * (self.session.latency_seconds + self.window_s)
        return self.session.telemetry.summary().as_dict() | {"latency_ms": latency_ms}

    def waiting_since(self) -> float | None:
        """When the inbox's head arrived (a command: now; None: nothing waits)."""
        if not self.inbox:  # only the stepper pops: a non-empty inbox stays so meanwhile
            return None
        head = self.inbox[0]
        return head.arrived if isinstance(head, InputBlock) else time.perf_counter()

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "checkpoint": self.checkpoint,
            "sample_rate": self.spec.sample_rate,
            "streaming": self.streaming,
            "latency_samples": self.session.latency_samples,
            "batch_window_ms": 1e3 * self.window_s,
            "controls": self.controls(),
            "telemetry": self.telemetry(),
            "dropped_messages": self.dropped_messages + self.dropped_blocks,
        }

    def feed(self, blocks: list[InputBlock]) -> None:
        """Feed blocks to the model and to the dry path as one span (on the stepper)."""
        span = np.concatenate([b.samples for b in blocks]) if len(blocks) > 1 else blocks[0].samples
        self.session.feed(span)
        self._dry.write(span)

    def answer(self, blocks: list[InputBlock]) -> list[np.ndarray]:
        """After stepping: the output for the span fed for `blocks`, mixed, as the answers to
        the PCM messages it completes (a message split into pieces is answered whole)."""
        n = sum(len(b.samples) for b in blocks)
        out = self.mix(self.session.read(n), self._dry.read(n), len(blocks[0].samples))
        answers: list[np.ndarray] = []
        start = 0
        for block in blocks:
            self._answering.append(out[start : start + len(block.samples)])
            start += len(block.samples)
            if block.last:
                parts, self._answering = self._answering, []
                answers.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
        return answers

    def mix(self, accompaniment: np.ndarray, dry: np.ndarray, ramp: int) -> np.ndarray:
        """wet * accompaniment + (1 - wet) * input, the input delayed to line up with the
        accompaniment; a dry/wet change ramps across the first `ramp` samples (the first
        block after it) so it never clicks."""
        n = len(accompaniment)
        wet = np.full(n, self.dry_wet, np.float32)
        if self._dry_wet_now != self.dry_wet:
            wet[:ramp] = np.linspace(self._dry_wet_now, self.dry_wet, min(ramp, n),
                                     endpoint=False, dtype=np.float32)  # fmt: skip
        self._dry_wet_now = self.dry_wet
        out = wet * accompaniment + (1 - wet) * dry
        if len(self._tail):
            k = min(n, len(self._tail))
            out[:k] += self._tail[:k]
            self._tail = self._tail[k:]
        return out.astype(np.float32)

    def switch_to(self, checkpoint: str, session: Session) -> None:
        old = self.session
        tail = old.read(min(old.available(), SWITCH_FADE_SAMPLES)) * np.float32(self.dry_wet)
        self._tail = tail * np.linspace(1, 0, len(tail), dtype=np.float32)
        session.controls = old.controls  # the knobs stay where the player left them
        self.session, self.checkpoint = session, checkpoint
        self.hop_s = session.hop / session.model_rate


class SessionHost:
    def __init__(self, catalog: CheckpointCatalog, config: ServerConfig, metrics: ServerMetrics):
        self.catalog, self.metrics = catalog, metrics
        self.max_sessions, self.max_backlog_s = config.max_sessions, config.max_backlog_s
        # A session no socket has claimed for this long goes (POST /v1/sessions, then nothing).
        self.unclaimed_timeout_s = config.idle_timeout_s
        self.window = RoundWindow(config.batch_window_ms)
        self._sessions: dict[str, HostedSession] = {}
        self._schedulers: dict[str, BatchScheduler] = {}
        self._lock = threading.Lock()  # the two tables; never held while stepping
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bandmate-stepper", daemon=True)
        self.instruction: str | None = None  # an experiment's current instruction, for the page

    # -- lifecycle (event loop side) ------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def create(self, spec: SessionSpec, claimed: bool = False) -> HostedSession:
        """Blocking (loads the checkpoint's backend on first use): call it off the loop.
        `claimed`: for the socket that creates it, so it cannot expire under that socket."""
        try:
            check_rate(spec.sample_rate)
        except EngineError as exc:
            raise ServerError(str(exc)) from None
        backend = self.catalog.backend(spec.checkpoint)
        session = Session(backend, SessionConfig(device_rate=spec.sample_rate, seed=spec.seed))
        hosted = HostedSession(uuid.uuid4().hex[:12], spec, session, self.window.seconds)
        hosted.claimed = claimed
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise TooManySessions(f"the server is full ({self.max_sessions} sessions)")
            self._sessions[hosted.id] = hosted
            self._scheduler(spec.checkpoint).add(hosted.id, session)
        self.metrics.sessions.set(len(self._sessions))
        return hosted

    def get(self, session_id: str) -> HostedSession | None:
        with self._lock:
            return self._sessions.get(session_id)

    def all(self) -> list[HostedSession]:
        with self._lock:
            return list(self._sessions.values())

    def claim(self, session_id: str) -> HostedSession:
        """The session, now held by the caller until release(); one holder at a time."""
        with self._lock:
            hosted = self._sessions.get(session_id)
            if hosted is None:
                raise UnknownSession(f"no session {session_id!r}")
            if hosted.claimed:
                raise SessionBusy(f"session {session_id} already has a stream")
            hosted.claimed = True
            return hosted

    def release(self, hosted: HostedSession) -> None:
        with self._lock:
            hosted.claimed = False
            hosted.idle_since = time.monotonic()

    def expire(self) -> list[str]:
        """Remove the sessions nobody has claimed for the idle timeout; returns their ids."""
        deadline = time.monotonic() - self.unclaimed_timeout_s
        with self._lock:
            gone = [h.id for h in self._sessions.values()
                    if not h.claimed and h.idle_since < deadline]  # fmt: skip
        for session_id in gone:
            self.remove(session_id)
        return gone

    def remove(self, session_id: str) -> bool:
        with self._lock:
            hosted = self._sessions.pop(session_id, None)
            if hosted is not None:
                self._schedulers[hosted.checkpoint].remove(session_id)
        self.metrics.sessions.set(len(self._sessions))
        return hosted is not None

    def submit(self, hosted: HostedSession, samples: np.ndarray) -> bool:
        """Queue a block for the model; False (and counted) when the backlog is full. A block
        longer than the backlog itself could never be answered: ProtocolError."""
        limit = int(self.max_backlog_s * hosted.spec.sample_rate)
        if len(samples) > limit:
            raise ProtocolError(
                "bad_pcm",
                f"a PCM message holds at most {limit} frames ({self.max_backlog_s:g} s); "
                f"this one has {len(samples)}: send shorter blocks",
            )
        if hosted.backlog_frames + len(samples) > limit:
            hosted.dropped_blocks += 1
            self.metrics.dropped.labels("input").inc()
            return False
        hosted.backlog_frames += len(samples)
        arrived, piece = time.perf_counter(), hosted.piece_frames
        hosted.next_due = arrived + len(samples) / hosted.spec.sample_rate
        for start in range(0, len(samples), piece):
            last = start + piece >= len(samples)
            hosted.inbox.append(InputBlock(samples[start : start + piece], arrived, last))
        self._wake.set()
        return True

    def command(self, hosted: HostedSession, name: str, value: object = None) -> None:
        hosted.inbox.append(Command(name, value))
        self._wake.set()

    def _scheduler(self, checkpoint: str) -> BatchScheduler:
        if checkpoint not in self._schedulers:
            backend = self.catalog.backend(checkpoint)
            self._schedulers[checkpoint] = BatchScheduler(backend, observer=self._observe_round)
        return self._schedulers[checkpoint]

    # -- the stepper thread ---------------------------------------------------------------
    def _observe_round(self, seconds: float, batch: int) -> None:
        self.metrics.frame_compute.observe(seconds)

    def _run(self) -> None:
        expired_at = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(timeout=0.1)
            self._wake.clear()
            self.window.gather(self.all, self._wake, self._stop)
            while self._cycle():
                self.window.gather(self.all, self._wake, self._stop)
            if time.monotonic() - expired_at > 1.0:
                expired_at = time.monotonic()
                self.expire()

    def _cycle(self) -> bool:
        """Feed every session's audio up to its next command (at most a piece's worth), step
        all sessions in batches, answer the PCM messages now complete. Returns whether any
        inbox still holds work."""
        fed: list[tuple[HostedSession, list[InputBlock]]] = []
        for hosted in self.all():
            blocks = self._take_segment(hosted)
            if blocks:
                fed.append((hosted, blocks))
        with self._lock:
            schedulers = list(self._schedulers.values())
        for scheduler in schedulers:
            scheduler.step()
        for hosted, blocks in fed:
            self._answer(hosted, blocks)
        return any(h.inbox for h in self.all())

    def _take_segment(self, hosted: HostedSession) -> list[InputBlock]:
        """Apply the commands at the head of the inbox, then feed the blocks after them, up to
        the next command or a piece's worth of frames, as one span."""
        blocks: list[InputBlock] = []
        frames = 0
        while hosted.inbox and frames < hosted.piece_frames:
            item = hosted.inbox[0]
            if isinstance(item, InputBlock):
                hosted.inbox.popleft()
                blocks.append(item)
                frames += len(item.samples)
            elif blocks:
                break  # step the audio before it first
            else:
                hosted.inbox.popleft()
                self._apply(hosted, item)
        if blocks:
            hosted.backlog_frames -= frames
            hosted.feed(blocks)
        return blocks

    def _answer(self, hosted: HostedSession, blocks: list[InputBlock]) -> None:
        deadline = self.window.deadline(hosted.hop_s)
        now = time.perf_counter()
        answers = hosted.answer(blocks)
        for block in blocks:
            if block.last and now - block.arrived > deadline:
                hosted.session.telemetry.miss()
                self.metrics.misses.inc()
        if answers and hosted.deliver is not None:
            hosted.deliver(answers)

    def _apply(self, hosted: HostedSession, command: Command) -> None:
        session = hosted.session
        if command.name == "reset":
            session.reset()
        elif command.name == "gain":
            session.controls.gain = float(command.value)  # type: ignore[arg-type]
        elif command.name == "noise_scale":
            session.controls.noise_scale = float(command.value)  # type: ignore[arg-type]
        elif command.name == "steer":
            try:  # checked where it came in; a checkpoint switched since may steer less
                session.steer(dict(command.value))  # type: ignore[call-overload]
            except EngineError as exc:
                log.warning("session %s: %s", hosted.id, exc)
        elif command.name == "dry_wet":
            hosted.dry_wet = float(command.value)  # type: ignore[arg-type]
        elif command.name == "seed":
            session.reseed(int(command.value))  # type: ignore[call-overload]
        elif command.name == "checkpoint":
            self._switch(hosted, str(command.value))

    def _switch(self, hosted: HostedSession, checkpoint: str) -> None:
        if checkpoint == hosted.checkpoint:
            return
        config = hosted.session.config
        session = Session(self.catalog.backend(checkpoint), config)
        with self._lock:
            self._schedulers[hosted.checkpoint].remove(hosted.id)
            hosted.switch_to(checkpoint, session)
            self._scheduler(checkpoint).add(hosted.id, session)
