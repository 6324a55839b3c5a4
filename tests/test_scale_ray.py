"""`bandmate serve --ray`: the same app through Ray Serve. A real local one-node Ray cluster with
2 replicas behind Ray's proxy; two sessions stream through it at once, and each output equals
`bandmate accompany` on the same input and seed, sample for sample.

The `scale` group: it needs the `scale` extra (ray[serve]) and starts Ray (about 15 s to come
up on 2 cores). `make test` runs it; `pytest -m "not scale"` leaves it out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from clients.stream import StreamOptions, stream_audio
from engine.backends import Backend
from engine.filemode import accompany
from tests.helpers import BANDMATE, models_dir

pytestmark = [pytest.mark.scale, pytest.mark.slow]


class RayServer:
    """`bandmate serve --ray` on loopback, in its own process session, stopped by PID."""

    def __init__(self, models: Path, replicas: int, *extra: str):
        pytest.importorskip("ray.serve", reason="the `scale` extra: pip install -e '.[scale]'")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # local Ray
        self.process = subprocess.Popen(
            [BANDMATE, "serve", "--ray", "--replicas", str(replicas), "--port", str(self.port),
             "--models-dir", str(models), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bandmate serve --ray exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("bandmate serve --ray did not come up in 180 s")

    def output(self) -> str:
        return self.process.stdout.read().decode() if self.process.stdout else ""

    def stop(self) -> str:
        """SIGTERM to the server alone (not its group: Ray's own processes are in it, and the
        server takes them down itself)."""
        if self.process.poll() is not None:
            return ""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.output()


@pytest.fixture(scope="module")
def ray_server(
    tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RayServer]:
    # One socket per replica: the proxy must send the second player to the other replica.
    one_each = ("--max-sessions", "1", "--rest-headroom", "0")
    server = RayServer(models_dir(tmp_path_factory.mktemp("models"), tiny_checkpoint), 2, *one_each)
    yield server
    server.stop()


def test_two_sessions_through_rays_proxy_equal_accompany(
    ray_server: RayServer, onnx_backend: Backend, live_recording: np.ndarray
) -> None:
    """The second socket opens while the first streams, and a replica here takes one socket,
    so the proxy gives it the other replica: a session stays where it opened, each is stepped
    alone on its replica, and equals accompany sample for sample. (Ray's router alone put
    both on one replica about one time in five: batched, they equal it within 1e-5 only,
    tests/test_engine_session.py.)"""
    audio = live_recording[: 3 * 48_000]
    ws_url = f"ws://127.0.0.1:{ray_server.port}"

    async def overlapping() -> list:
        first_streams = asyncio.Event()
        first = asyncio.create_task(stream_audio(
            audio, 48_000, StreamOptions(ws_url, seed=1), lambda _: first_streams.set()
        ))  # fmt: skip
        await asyncio.wait_for(first_streams.wait(), 30)
        second = await stream_audio(audio, 48_000, StreamOptions(ws_url, seed=2))
        return [await first, second]

    results = asyncio.run(overlapping())
    for seed, result in zip((1, 2), results, strict=True):
        assert result.errors == []
        expected = accompany(audio, 48_000, onnx_backend, seed=seed).accompaniment
        np.testing.assert_array_equal(result.accompaniment, expected, err_msg=f"seed {seed}")
    assert results[0].ready["session"] != results[1].ready["session"]


def test_the_ray_server_reports_health_and_stops_cleanly_on_sigterm(
    ray_server: RayServer,
) -> None:
    """Last in the module: it stops the shared server."""
    health = httpx.get(f"{ray_server.url}/health").json()
    assert health["status"] == "ok" and "batch_window_ms" in health
    started = time.monotonic()
    output = ray_server.stop()
    assert ray_server.process.returncode == 0, output
    assert time.monotonic() - started < 30
    assert "through Ray Serve on local Ray: 2 replicas" in output


def test_bench_capacity_ray_reports_the_proxys_cost_against_direct(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    pytest.importorskip("ray.serve", reason="the `scale` extra: pip install -e '.[scale]'")
    served = models_dir(tmp_path / "models", tiny_checkpoint)
    path = tmp_path / "ray.json"
    done = subprocess.run([BANDMATE, "bench", "capacity", "--ray", "--sessions", "2",
                           "--seconds", "1", "--models-dir", str(served), "--json", str(path)],
                          capture_output=True, text=True, timeout=400)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(path.read_text())
    for name in ("direct", "ray"):
        run = report[name]
        assert len(run["sessions"]) == 2 and run["errors"] == 0
        assert 0 < run["round_trip_p50_ms"] <= run["round_trip_p99_ms"]
    assert report["proxy_p50_ms"] == pytest.approx(
        report["ray"]["round_trip_p50_ms"] - report["direct"]["round_trip_p50_ms"]
    )
    assert "the proxy adds" in done.stdout
