"""Aligned rounds in the server's stepper (server/host.py): blocks due within the batch window
are stepped as one batch, a session that stopped sending is not waited for, and the window
is counted in the latency each session reports. A real SessionHost on the tiny checkpoint,
driven from this thread as the event loop drives it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from server.catalog import CheckpointCatalog
from server.config import ServerConfig
from server.host import HostedSession, SessionHost
from server.metrics import ServerMetrics
from server.protocol import SessionSpec
from tests.helpers import models_dir

WINDOW_MS = 20.0  # the largest the config takes: wide enough to see on a busy machine


class Answers:
    """A session's deliveries: when each came (perf_counter) and how many samples."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.samples = 0
        self.event = threading.Event()

    def __call__(self, answers: list[np.ndarray]) -> None:  # on the stepper thread
        self.times.append(time.perf_counter())
        self.samples += sum(len(a) for a in answers)
        self.event.set()

    def wait(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.times) < count:
            assert self.event.wait(max(0.0, deadline - time.monotonic())), "no answer in time"
            self.event.clear()


@pytest.fixture
def host(tiny_checkpoint: Path, tmp_path: Path) -> Iterator[SessionHost]:
    config = ServerConfig(models_dir=models_dir(tmp_path / "models", tiny_checkpoint),
                          batch_window_ms=WINDOW_MS)  # fmt: skip
    catalog = CheckpointCatalog(config.models_dir, "onnx", warm_batches=2)
    running = SessionHost(catalog, config, ServerMetrics())
    running.start()
    yield running
    running.stop()


def streaming(host: SessionHost, seed: int) -> tuple[HostedSession, Answers]:
    hosted = host.create(SessionSpec(seed=seed), claimed=True)
    answers = Answers()
    hosted.deliver = answers
    return hosted, answers


def rounds(host: SessionHost) -> float:
    count = host.metrics.registry.get_sample_value("bandmate_frame_compute_seconds_count")
    return count or 0.0


def block(hosted: HostedSession) -> np.ndarray:
    """One hop of quiet noise at the session's rate."""
    hop = round(hosted.hop_s * hosted.spec.sample_rate)
    return np.random.default_rng(0).normal(0, 0.05, hop).astype(np.float32)


def test_blocks_due_within_the_window_are_stepped_as_one_round(host: SessionHost) -> None:
    (a, answers_a), (b, answers_b) = streaming(host, 1), streaming(host, 2)
    host.submit(a, block(a))  # each session's first block sets when its next one is due
    host.submit(b, block(b))
    answers_a.wait(1)
    answers_b.wait(1)
    time.sleep(max(0.0, b.next_due - time.perf_counter()))  # type: ignore[operator]
    before = rounds(host)
    sent = time.perf_counter()
    host.submit(a, block(a))
    time.sleep(WINDOW_MS / 1e3 / 3)  # b's block comes a third of the window later
    host.submit(b, block(b))
    answers_a.wait(2)
    answers_b.wait(2)
    assert rounds(host) - before == 1  # one batch of two, not a round each
    assert answers_a.times[1] - sent >= WINDOW_MS / 1e3 / 3  # a waited for b
    assert answers_a.samples == answers_b.samples == 2 * len(block(a))


def test_a_session_that_stopped_sending_is_not_waited_for(host: SessionHost) -> None:
    (a, answers_a), (b, answers_b) = streaming(host, 1), streaming(host, 2)
    host.submit(b, block(b))
    answers_b.wait(1)
    time.sleep(3 * b.hop_s)  # b's next block is long overdue: it stopped
    before = rounds(host)
    sent = time.perf_counter()
    host.submit(a, block(a))
    answers_a.wait(1)
    assert rounds(host) - before == 1
    # The window opens and closes at once: nothing else is due. (On a machine busy enough
    # to take the whole window for one tiny step this would flake; the step takes ~1 ms.)
    assert answers_a.times[0] - sent < WINDOW_MS / 1e3


def test_the_window_is_counted_in_the_latency_a_session_reports(host: SessionHost) -> None:
    hosted, _ = streaming(host, 0)
    described = hosted.describe()
    engine_ms = 1e3 * hosted.session.latency_samples / hosted.spec.sample_rate
    assert described["batch_window_ms"] == WINDOW_MS
    assert described["telemetry"]["latency_ms"] == pytest.approx(engine_ms + WINDOW_MS)  # type: ignore[index]
    assert hosted.telemetry()["latency_ms"] == pytest.approx(engine_ms + WINDOW_MS)
