"""How many players one server carries: N sessions streaming at real-time pace at once.

`bandmate bench capacity --sessions 8 --json FILE` starts a real `bandmate serve` on loopback
(the shipped default unless --models-dir), streams the example recording from N concurrent
WebSocket clients at real-time pace in 1024-frame blocks, and reports per session the
deadline misses, dropped messages and batched-step compute from the server's own telemetry,
plus the server's resident memory before and after. Misses in each session's first
JOIN_SECONDS are reported apart, as join misses (see below).
"""

from __future__ import annotations

import asyncio
import platform
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import EngineError

EXAMPLE = Path(__file__).resolve().parent.parent / "models" / "examples" / "live_part.flac"
# A session's first seconds are its join: N players opening at once, each session's first
# allocations and the warm-up client's tail. Misses there are reported apart ("join
# misses"), not counted against capacity; every later miss is.
JOIN_SECONDS = 2.0
HOPS_PER_SECOND = 48_000 / 1024  # the model's hop rate


def join_misses(telemetry: list[dict[str, Any]]) -> int:
    """Misses a session had reported by the end of its join: telemetry is cumulative."""
    joined = [t["misses"] for t in telemetry if t["hops"] <= JOIN_SECONDS * HOPS_PER_SECOND]
    return max(joined, default=0)


@dataclass(frozen=True)
class CapacityBenchConfig:
    sessions: int = 8
    seconds: float = 60.0
    blocksize: int = 1024
    models_dir: Path | None = None
    threads: int = 1  # the server's --threads
    batch_window_ms: float | None = None  # the server's --batch-window-ms; None: its default


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    models_dir: Path | None, max_sessions: int, threads: int = 1, *extra: str, wait_s: float = 60
) -> tuple[subprocess.Popen[bytes], str]:
    """A real `bandmate serve` on a free loopback port (`extra`: more of its options), in its
    own process session: stop it by its PID alone (`stop_server`)."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port),
               "--max-sessions", str(max_sessions), "--threads", str(threads), *extra]  # fmt: skip
    if models_dir is not None:
        command += ["--models-dir", str(models_dir)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process, f"ws://127.0.0.1:{port}"
        except httpx.TransportError:
            time.sleep(0.2)
    stop_server(process)
    raise EngineError(f"bandmate serve {' '.join(extra)} did not come up in {wait_s:g} s")


def stop_server(process: subprocess.Popen[bytes], wait_s: float = 60) -> None:
    """SIGTERM to the server alone (with --ray its group holds Ray's processes, which it
    takes down itself), then SIGKILL if it has not gone in `wait_s`."""
    process.terminate()
    try:
        process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def session_row(last: dict[str, Any], join: int) -> dict[str, Any]:
    """One session's figures from its last telemetry, its misses split at the join."""
    row = {k: last[k] for k in ("hops", "p50_ms", "p99_ms", "max_ms", "dropped_messages")}
    return row | {"misses": last["misses"] - join, "join_misses": join}


def server_options(config: CapacityBenchConfig) -> tuple[str, ...]:
    window = config.batch_window_ms
    return () if window is None else ("--batch-window-ms", f"{window:g}")


def stream_sessions(url: str, config: CapacityBenchConfig, pid: int | None) -> dict[str, Any]:
    """N real-time clients against the server at `url` (a warm-up stream first): each
    session's figures from its telemetry, and the round trips after the join. `pid`: the
    server process, for its resident memory (None: not one process, e.g. behind Ray)."""
    import soundfile as sf

    from clients.stream import StreamOptions, stream_audio

    audio, rate = sf.read(str(EXAMPLE), dtype="float32")
    # The join, then `seconds` counted: as the engine's runs (loops the 20 s example).
    audio = np.resize(audio, int((JOIN_SECONDS + config.seconds) * rate))
    options = [StreamOptions(url, seed=i, blocksize=config.blocksize)
               for i in range(config.sessions)]  # fmt: skip

    async def all_sessions() -> list[Any]:
        return await asyncio.gather(*(stream_audio(audio, rate, o) for o in options))

    warm = np.resize(audio, rate * 2)
    asyncio.run(stream_audio(warm, rate, StreamOptions(url, realtime=False)))
    before = rss_bytes(pid) if pid else 0
    results = asyncio.run(all_sessions())
    after = rss_bytes(pid) if pid else 0
    if any(not r.telemetry for r in results):  # it comes twice a second: a stream ended early
        raise EngineError("a capacity session ended before the server sent any telemetry")
    last = [r.telemetry[-1] for r in results]
    joins = [join_misses(r.telemetry) for r in results]
    joined = int(JOIN_SECONDS * rate / config.blocksize)  # messages sent during the join
    trips = 1e3 * np.concatenate([np.asarray(r.round_trips_s[joined:]) for r in results])
    return {
        "join_seconds": JOIN_SECONDS,
        "sessions": [session_row(t, join) for t, join in zip(last, joins, strict=True)],
        "misses_total": sum(t["misses"] for t in last) - sum(joins),
        "join_misses_total": sum(joins),
        "dropped_total": sum(t["dropped_messages"] for t in last),
        "errors": sum(len(r.errors) for r in results),
        # What a session reports (its engine latency plus the server's batch window), and
        # what the client measured on top: send to the last sample of the answer.
        "latency_ms": float(last[0]["latency_ms"]),
        "batch_window_ms": float(results[0].ready["batch_window_ms"]),
        "round_trip_p50_ms": float(np.percentile(trips, 50)) if len(trips) else None,
        "round_trip_p99_ms": float(np.percentile(trips, 99)) if len(trips) else None,
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
    }


def run_capacity_benchmark(config: CapacityBenchConfig) -> dict[str, Any]:
    # One more than the players: the warm-up stream's session may still be closing. The
    # server also steps every batch size up to this once at start, as it would in use.
    server, url = start_server(config.models_dir, max(16, config.sessions + 1), config.threads,
                               *server_options(config))  # fmt: skip
    try:
        figures = stream_sessions(url, config, server.pid)
    finally:
        stop_server(server)
    return {
        "config": {**asdict(config), "models_dir": str(config.models_dir or "shipped default")},
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        **figures,
    }


def run_ray_overhead(config: CapacityBenchConfig, replicas: int = 1) -> dict[str, Any]:
    """The cost of Ray Serve's proxy: the same N real-time clients against `bandmate serve`,
    then against `bandmate serve --ray` with `replicas` replicas, one after the other in
    this run; each with the round trip its clients measured (send to the last sample back)
    after the join. One replica compares the same single server with and without the proxy."""
    runs: dict[str, dict[str, Any]] = {}
    ray_options = ("--ray", "--replicas", str(replicas))
    for name, extra, wait_s in (("direct", (), 60.0), ("ray", ray_options, 180.0)):
        server, url = start_server(config.models_dir, max(16, config.sessions + 1),
                                   config.threads, *server_options(config), *extra,
                                   wait_s=wait_s)  # fmt: skip
        try:  # behind Ray the server is several processes: no one RSS to read
            runs[name] = stream_sessions(url, config, None if extra else server.pid)
        finally:
            stop_server(server)
    direct, ray = runs["direct"], runs["ray"]
    return {
        "config": {**asdict(config), "models_dir": str(config.models_dir or "shipped default"),
                   "ray_replicas": replicas},
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        **runs,
        "proxy_p50_ms": delta(ray["round_trip_p50_ms"], direct["round_trip_p50_ms"]),
        "proxy_p99_ms": delta(ray["round_trip_p99_ms"], direct["round_trip_p99_ms"]),
    }  # fmt: skip


def delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def print_ray_overhead(report: dict[str, Any]) -> None:
    config = report["config"]
    print(
        f"{config['sessions']} real-time clients x {config['seconds']:g} s, direct, then through "
        f"Ray Serve's proxy ({config['ray_replicas']} replica(s)); round trip after the join:"
    )
    for name in ("direct", "ray"):
        run = report[name]
        print(
            f"  {name:6}: p50 {ms(run['round_trip_p50_ms'])}, p99 {ms(run['round_trip_p99_ms'])}"
            f"; misses {run['misses_total']}, dropped {run['dropped_total']}, "
            f"errors {run['errors']}"
        )
    print(f"  the proxy adds {ms(report['proxy_p50_ms'])} at p50, {ms(report['proxy_p99_ms'])} "
          "at p99")  # fmt: skip


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    config = report["config"]
    table = Table(title=f"{config['sessions']} sessions x {config['seconds']:g} s at real time")
    for column in ("session", "hops", "step p50 ms", "step p99 ms", "max ms", "misses",
                   "join misses", "dropped"):  # fmt: skip
        table.add_column(column, justify="right")
    for index, row in enumerate(report["sessions"]):
        times = (f"{row[k]:.2f}" for k in ("p50_ms", "p99_ms", "max_ms"))
        table.add_row(str(index), str(row["hops"]), *times, str(row["misses"]),
                      str(row["join_misses"]), str(row["dropped_messages"]))  # fmt: skip
    Console().print(table)
    print(f"server RSS {report['rss_before_mib']:.0f} -> {report['rss_after_mib']:.0f} MiB")
    print(
        f"latency {report['latency_ms']:.1f} ms reported (batch window "
        f"{report['batch_window_ms']:g} ms included); round trip after the join "
        f"{ms(report['round_trip_p50_ms'])} p50 / {ms(report['round_trip_p99_ms'])} p99"
    )


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"
