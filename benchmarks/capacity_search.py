"""The most players this machine carries: the largest number of sessions stepped in batch at
real-time pace with zero deadline misses, in the engine and then through the server.

`bandmate bench capacity` (without --sessions) runs it. The rule:

1. Engine, per backend (onnx-cpu, plus the CUDA backends when there is a GPU). N sessions
   are stepped in-process by the server's own code, `BatchScheduler` after the same warm-up
   of every batch size, one hop of the example recording per session per hop period, paced
   by the clock. A hop misses its deadline when its output is ready more than one hop after
   its input was complete: the definition the server counts (`server/host.py`). Misses in a
   run's first JOIN_SECONDS are join misses, reported but not counted (as through the
   server, `benchmarks/capacity.py`): a lone spike there (23 ms, seen once at N = 4) said
   nothing about the steady state.
   a. Screen with short runs (`screen_seconds`, default 5 s) at N = 1, 2, 4, ... up to
      `max_sessions` until one misses, then bisect between the last N that passed and the
      first that missed. A miss is final: a longer run at that N would miss too. A clean
      screen only makes N a candidate.
   b. Confirm the largest clean N with a full run (`seconds`, default 60). If it misses,
      step down by one and confirm again, while the time budget still leaves room for that
      run and for the server's. The capacity is the largest N whose full run had no miss
      (0 if none; `confirmed` is false when the budget stopped the search first).
2. Server: a real `bandmate serve` (backend auto, as it runs by default) with N WebSocket
   clients, once per batch window asked for (`windows`, the server's --batch-window-ms; by
   default only the server's default). Short screens (`screen_seconds`) bisect between 0
   and the engine capacity of the backend the server uses, then `repeats` full runs
   (`seconds` each) confirm the best N: it holds when the median run has no miss, dropped
   message or error; else N steps down by one while the budget allows. The machine is noisy,
   so `--repeats 3` is how the README's figures are taken; every run is reported. Each
   window's entry also has the latency the sessions reported (the window included) and the
   round trip the clients measured, so the window's cost shows beside its gain.

The budget (`budget_seconds`, default 270 s) keeps the default run under 5 minutes on 2 CPU
cores: screens take seconds, and each full run is `seconds` plus the server's start-up. A
sweep of several windows or repeats needs a larger one (`--budget-seconds`).
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.capacity import JOIN_SECONDS, CapacityBenchConfig, run_capacity_benchmark
from benchmarks.latency import example_audio, hop_frames
from engine.backends import Backend, create_backend, warm_up
from engine.checkpoint import DEFAULT_CHECKPOINT, load_engine_checkpoint
from engine.errors import EngineError
from engine.scheduler import BatchScheduler
from engine.session import Session, SessionConfig

SERVER_START_SECONDS = 20.0  # start-up, warm-up stream and the last block's return, generously


@dataclass(frozen=True)
class CapacitySearchConfig:
    seconds: float = 60.0  # each confirming run, engine and server
    screen_seconds: float = 5.0  # after the join; a rate of a few misses a minute shows
    max_sessions: int = 64  # the search stops here; the report says when it got there
    threads: int = 1
    backends: tuple[str, ...] = field(default_factory=tuple)  # empty: onnx-cpu + CUDA ones
    models_dir: Path | None = None  # the server's; the engine runs its "default" checkpoint
    checkpoint: Path | None = None  # the engine's, when not models_dir's "default"
    budget_seconds: float = 270.0
    server: bool = True
    windows: tuple[float, ...] = ()  # the server's --batch-window-ms; empty: its default
    max_batch: int = 64  # the engine's rounds, at most (the server's BatchScheduler default)
    repeats: int = 1  # full runs per confirmation; N holds when the median run is clean


@dataclass
class PacedRun:
    phase: str  # "screen", "confirm" or "server"
    backend: str
    sessions: int
    seconds: float
    hops: int  # per session, until the end or the first miss of a screen
    misses: int  # late hops summed over sessions, after the join
    round_p50_ms: float  # the batched backend step
    round_p99_ms: float
    round_max_ms: float
    # Input complete -> output ready, the deadline being one hop (the server's runs report
    # misses only, so None there).
    worst_lateness_ms: float | None
    join_misses: int = 0  # late hops in the first JOIN_SECONDS, not counted in `misses`

    @property
    def clean(self) -> bool:
        return self.misses == 0


def search_backends(checkpoint_dir: Path, names: tuple[str, ...], threads: int) -> list[Backend]:
    """onnx-cpu, plus onnx-cuda and torch-cuda when they run here; or exactly `names`."""
    checkpoint = load_engine_checkpoint(checkpoint_dir)
    if not names:
        from engine.backends.onnx import cuda_available

        wanted = ["onnx-cpu"] + (["onnx-cuda"] if cuda_available() else [])
        try:
            import torch

            wanted += ["torch-cuda"] if torch.cuda.is_available() else []
        except ImportError:
            pass
        names = tuple(wanted)
    backends: list[Backend] = []
    for name in names:
        kind, _, device = name.partition("-")
        if device not in ("cpu", "cuda"):
            raise EngineError(f"unknown backend {name!r}: use onnx-cpu, onnx-cuda, torch-cpu...")
        backends.append(create_backend(checkpoint, kind, threads, device))
    return backends


def run_paced(backend: Backend, sessions: int, seconds: float, frames: np.ndarray, phase: str,
              stop_at_first_miss: bool, max_batch: int = 64) -> PacedRun:  # fmt: skip
    """N sessions through one BatchScheduler, one hop each per hop period, by the clock."""
    from tqdm import tqdm

    hop = backend.info.hop
    hop_s = hop / backend.info.sample_rate
    rounds: list[float] = []
    scheduler = BatchScheduler(backend, max_batch, observer=lambda s, _batch: rounds.append(s))
    players = [Session(backend, SessionConfig(seed=i)) for i in range(sessions)]
    for index, player in enumerate(players):
        scheduler.add(str(index), player)
    join_hops = int(JOIN_SECONDS / hop_s)
    total_hops = join_hops + max(1, int(seconds / hop_s))
    misses, joined, worst, done_hops = 0, 0, 0.0, 0
    start = time.perf_counter()
    label = f"{phase} {backend.name} N={sessions}"
    for k in tqdm(range(total_hops), desc=label, unit="hop", leave=False):
        complete = start + (k + 1) * hop_s  # when hop k's last input sample exists
        time.sleep(max(0.0, complete - time.perf_counter()))
        for index, player in enumerate(players):  # the players enter at different places
            player.feed(frames[(k + 97 * index) % len(frames)])
        scheduler.step()
        for player in players:
            player.read(hop)
        lateness = time.perf_counter() - complete
        if k < join_hops:
            joined += sessions if lateness > hop_s else 0
            rounds.clear()  # the steady state's compute only
            continue
        worst = max(worst, lateness)
        done_hops = k + 1 - join_hops
        if lateness > hop_s:
            misses += sessions
            if stop_at_first_miss:
                break
    ms = 1e3 * np.asarray(rounds)
    return PacedRun(phase, backend.name, sessions, done_hops * hop_s, done_hops, misses,
                    float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.max()),
                    1e3 * worst, joined)  # fmt: skip


class Search:
    """The engine search for one backend, recording every run."""

    def __init__(self, backend: Backend, config: CapacitySearchConfig, frames: np.ndarray,
                 deadline: float):  # fmt: skip
        self.backend, self.config, self.frames, self.deadline = backend, config, frames, deadline
        self.runs: list[PacedRun] = []
        self.warmed = 0

    def _run(self, sessions: int, phase: str) -> PacedRun:
        if sessions > self.warmed:  # as the server does at start, for the same reason
            warm_up(self.backend, sessions)
            self.warmed = sessions
        screen = phase == "screen"
        seconds = self.config.screen_seconds if screen else self.config.seconds
        run = run_paced(self.backend, sessions, seconds, self.frames, phase, screen,
                        self.config.max_batch)  # fmt: skip
        self.runs.append(run)
        report_progress(run)
        return run

    def screen(self) -> tuple[int, bool]:
        """The largest N with a clean screen (0 if N = 1 missed), and whether it is the cap."""
        cap, passed, failed = self.config.max_sessions, 0, None
        n = 1
        while failed is None:
            if self._run(n, "screen").clean:
                passed = n
                if n == cap:
                    return cap, True
                n = min(2 * n, cap)
            else:
                failed = n
        while failed - passed > 1:
            middle = (passed + failed) // 2
            if self._run(middle, "screen").clean:
                passed = middle
            else:
                failed = middle
        return passed, False

    def confirm(self, candidate: int, reserve: float) -> tuple[int, bool]:
        """Step down from the candidate until a full run is clean: (that N, True). When the
        budget runs out first: (the next N down, not run, False)."""
        n = candidate
        while n >= 1:
            if self._run(n, "confirm").clean:
                return n, True
            n -= 1
            if n >= 1 and time_left(self.deadline) < self.config.seconds + reserve:
                return n, False
        return 0, True


def time_left(deadline: float) -> float:
    return deadline - time.monotonic()


def report_progress(run: PacedRun) -> None:
    from rich.console import Console

    verdict = "clean" if run.clean else f"{run.misses} misses"
    Console(stderr=True).print(
        f"{run.phase:8} {run.backend:10} N={run.sessions:<3} {run.seconds:5.1f} s: {verdict}, "
        f"round p99 {run.round_p99_ms:.2f} ms"
    )


def search_server(
    config: CapacitySearchConfig,
    backend: str,
    start_at: int,
    deadline: float,
    window: float | None = None,
) -> tuple[int | None, list[dict[str, Any]]]:
    """N WebSocket clients through a real server with batch window `window` (None: the
    server's default): screen down from `start_at` (a server carries fewer players than the
    engine alone: the clients and the socket traffic share the cores), bisecting on short
    runs, then confirm the best N with `repeats` full runs, stepping down while the median
    run is not clean and the budget allows."""
    runs: list[dict[str, Any]] = []
    repeats = max(1, config.repeats)

    def clean(n: int, seconds: float, phase: str) -> bool:
        bench = CapacityBenchConfig(n, seconds, models_dir=config.models_dir,
                                    threads=config.threads, batch_window_ms=window)  # fmt: skip
        report = run_capacity_benchmark(bench)
        rows = report["sessions"]
        run = PacedRun(
            phase, backend, n, seconds, min(r["hops"] for r in rows),
            report["misses_total"], float(np.median([r["p50_ms"] for r in rows])),
            max(r["p99_ms"] for r in rows), max(r["max_ms"] for r in rows), None,
            report["join_misses_total"],
        )  # fmt: skip
        figures = ("dropped_total", "errors", "rss_before_mib", "rss_after_mib", "latency_ms",
                   "batch_window_ms", "round_trip_p50_ms", "round_trip_p99_ms")  # fmt: skip
        runs.append({**asdict(run), **{k.removesuffix("_total"): report[k] for k in figures}})
        report_progress(run)
        return run.clean and report["dropped_total"] == 0 and report["errors"] == 0

    def holds(n: int) -> bool:
        """Up to `repeats` full runs at N, until most are clean (the median run is) or most
        are not."""
        needed, good, bad = repeats // 2 + 1, 0, 0
        while good < needed and bad < needed:
            if clean(n, config.seconds, "server"):
                good += 1
            else:
                bad += 1
        return good >= needed

    passed, failed = 0, start_at + 1
    n = start_at
    full = repeats * (config.seconds + SERVER_START_SECONDS)
    while failed - passed > 1:
        if time_left(deadline) < config.screen_seconds + SERVER_START_SECONDS + full:
            break
        if clean(n, config.screen_seconds, "server screen"):
            passed = n
        else:
            failed = n
        n = (passed + failed) // 2
    if not runs:
        return None, runs  # the engine search left no time for the server
    n = passed
    while n >= 1:
        if time_left(deadline) < full:
            return None, runs
        if holds(n):
            return n, runs
        n -= 1
    return 0, runs


def window_entry(window: float | None, found: int | None, runs: list[dict[str, Any]]
                 ) -> dict[str, Any]:  # fmt: skip
    """One window's result: its capacity, and from its confirming runs at that N the latency
    the sessions reported and the clients' round trip (medians over the repeats)."""
    at = [r for r in runs if r["phase"] == "server" and r["sessions"] == found]

    def median(key: str) -> float | None:
        values = [r[key] for r in at if r[key] is not None]
        return float(np.median(values)) if values else None

    return {
        "batch_window_ms": runs[0]["batch_window_ms"] if runs else window,
        "capacity": found,
        "confirming_misses": [r["misses"] for r in at],
        "latency_ms": median("latency_ms"),
        "round_trip_p50_ms": median("round_trip_p50_ms"),
        "round_trip_p99_ms": median("round_trip_p99_ms"),
        "runs": runs,
    }


def run_capacity_search(config: CapacitySearchConfig) -> dict[str, Any]:
    deadline = time.monotonic() + config.budget_seconds
    checkpoint_dir = config.checkpoint or (
        config.models_dir / "default" if config.models_dir else DEFAULT_CHECKPOINT
    )
    backends = search_backends(checkpoint_dir, config.backends, config.threads)
    info = backends[0].info
    frames = hop_frames(example_audio(20.0, info.sample_rate, 0), info.hop)[:, 0]
    # Room left for the server, per window: two screens and the full runs, each with a start.
    repeats = max(1, config.repeats)
    full = repeats * (config.seconds + SERVER_START_SECONDS)
    server_time = 2 * (config.screen_seconds + SERVER_START_SECONDS) + full
    windows: tuple[float | None, ...] = config.windows or (None,)
    reserve = len(windows) * server_time if config.server else 0.0
    engine: dict[str, Any] = {}
    for backend in backends:
        search = Search(backend, config, frames, deadline)
        candidate, at_cap = search.screen()
        capacity, confirmed = search.confirm(candidate, reserve) if candidate else (0, True)
        # `capacity` had a clean full run, unless `confirmed` is false: then the budget ran
        # out and it is the next N down, not run.
        engine[backend.name] = {
            "capacity": capacity,
            "confirmed": confirmed,
            "screen_candidate": candidate,
            "reached_max_sessions": at_cap,
            "runs": [asdict(run) for run in search.runs],
        }
    report: dict[str, Any] = {
        "hop_ms": 1e3 * info.hop / info.sample_rate,
        "config": {k: str(v) for k, v in asdict(config).items()},
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "engine": engine,
        "server": None,
    }
    if config.server:
        from engine.backends.onnx import cuda_available

        server_backend = "onnx-cuda" if cuda_available() else "onnx-cpu"  # what auto picks
        start_at = engine.get(server_backend, next(iter(engine.values())))["capacity"]
        entries = []
        for window in windows:
            found, runs = (
                search_server(config, server_backend, start_at, deadline, window)
                if start_at
                else (0, [])
            )
            entries.append(window_entry(window, found, runs))
        report["server"] = {
            "backend": server_backend,
            "repeats": repeats,
            # The first window's, as before there were windows; each window's under `windows`.
            "capacity": entries[0]["capacity"],
            "runs": [run for entry in entries for run in entry["runs"]],
            "windows": entries,
        }
    return report
