"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from models.data.arrange import AugmentConfig
from models.data.build import BuildConfig

BANDMATE = str(Path(sys.executable).parent / "bandmate")
SPKIT_RATE = 128.0


def spkit_eeg() -> tuple[np.ndarray, list[str]]:
    """spkit's real 16 s, 14-channel (Emotiv AF3..AF4, with F3/F4) recording at 128 Hz, in
    microvolts [samples, channels], read straight from its pickle: importing spkit would pull
    heavy dependencies. `make test` installs the wheel without them."""
    import importlib.util
    import pickle

    spec = importlib.util.find_spec("spkit")
    if spec is None or not spec.submodule_search_locations:
        raise AssertionError("spkit is not installed: `make test` installs it (it ships real EEG)")
    path = Path(spec.submodule_search_locations[0]) / "data" / "files" / "EEG16SecData.pkl"
    with path.open("rb") as file:
        data, labels = pickle.load(file)
    return np.asarray(data, dtype=float), list(labels)


def tiny_build_config(out: Path, **overrides: object) -> BuildConfig:
    """A handful of short pieces on the small SoundFont: builds in seconds."""
    settings: dict[str, object] = {
        "out": out,
        "seed": 0,
        "limit": 6,
        "soundfonts": ("timgm6mb",),
        "augment": AugmentConfig(max_seconds=10.0),
    }
    settings.update(overrides)
    return BuildConfig(**settings)  # type: ignore[arg-type]


def train_tiny_checkpoint(data_root: Path, work: Path) -> Path:
    """A real, tiny, briefly trained codec + generator, exported: what the engine runs."""
    from models.export import export_checkpoint
    from models.train.codec_trainer import CodecTrainConfig, CodecTrainer
    from models.train.generator_trainer import GeneratorTrainConfig, GeneratorTrainer

    quiet = {"validate_every": 1000, "audio_every": 1000, "save_every": 1000, "threads": 1}
    CodecTrainer(
        CodecTrainConfig(data=data_root, run_dir=work / "codec", preset="tiny", steps=3,
                         batch_size=2, pool_examples=3, validation_crops=3, statistics_crops=6,
                         **quiet),  # type: ignore[arg-type]
        progress=False,
    ).train()  # fmt: skip
    GeneratorTrainer(
        GeneratorTrainConfig(data=data_root, codec=work / "codec" / "checkpoint",
                             run_dir=work / "generator", preset="tiny", steps=3, batch_size=2,
                             validation_batches=1, **quiet),  # type: ignore[arg-type]
        progress=False,
    ).train()  # fmt: skip
    exported = work / "exported"
    export_checkpoint(work / "generator" / "checkpoint", exported)
    return exported


def models_dir(root: Path, checkpoint: Path, names: tuple[str, ...] = ("default",)) -> Path:
    """A --models-dir at `root` offering `checkpoint` under each name (symlinks)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).symlink_to(checkpoint)
    return root


class RunningServer:
    """A real `bandmate serve` process on loopback, stopped by `stop()`."""

    def __init__(self, models_dir: Path, *extra: str, port: int | None = None):
        import socket
        import subprocess
        import time

        import httpx

        if port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"
        command = [BANDMATE, "serve", "--port", str(port), "--models-dir", str(models_dir), *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode() if self.process.stdout else ""
                raise RuntimeError(f"bandmate serve exited: {output}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("bandmate serve did not come up in 60 s")

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        return self.process.poll() is None

    def sessions_after_cleanup(self, timeout: float = 10.0) -> list[dict[str, object]]:
        """GET /v1/sessions once it is empty, or at the timeout: a socket's session goes a
        moment after the socket does."""
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while (sessions := httpx.get(f"{self.url}/v1/sessions").json()) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        return list(sessions)

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()
            self.process.wait()
        return self.process.stdout.read().decode() if self.process.stdout else ""


BIDS_VALIDATOR = Path(__file__).resolve().parents[1] / ".cache/npm/node_modules/.bin/bids-validator"


def assert_valid_bids(root: Path) -> None:
    """The official BIDS validator (npm's bids-validator, which `make test` installs) finds no
    errors in `root`."""
    import subprocess

    import pytest

    if not BIDS_VALIDATOR.is_file():
        pytest.fail(f"{BIDS_VALIDATOR} is missing: `make test` installs it with npm")
    done = subprocess.run([str(BIDS_VALIDATOR), str(root)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "This dataset appears to be BIDS compatible" in done.stdout


@contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A real, small filesystem (tmpfs) at `mount_point`, to fill up for real; skips the
    test where mounting is not allowed (it needs root)."""
    import subprocess

    import pytest

    mount_point.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)]
    mounted = subprocess.run(mount, capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def simulated_session_run(protocol: Path, out: Path) -> tuple[Any, list[str]]:
    """A started EEG simulator under a fresh name, and the `bandmate session run` command that
    records participant P01 from it into `out` (auto ratings, no synth). Stop the simulator."""
    import uuid

    from bci.live.simulate import Schedule, Simulator, SimulatorConfig

    name = f"sim-{uuid.uuid4().hex[:8]}"
    simulator = Simulator(SimulatorConfig(name=name, source_id=name), Schedule())
    simulator.start()
    command = [BANDMATE, "session", "run", str(protocol), "--participant", "P01",
               "--out", str(out), "--stream", name, "--ratings", "auto",
               "--synth-driver", "none"]  # fmt: skip
    return simulator, command


def free_udp_port() -> int:
    """A UDP port on loopback that nothing listens on now (for a server's --osc-port)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
