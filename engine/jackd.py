"""Start and stop a real JACK server (the dummy driver), for tests, benchmarks and headless runs.

The server gets its own name, and JACK_DEFAULT_SERVER points clients (PortAudio, rtmidi,
JACK-Client) at it, so a user's own jackd is never touched. It is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from types import TracebackType

from engine.errors import EngineError


class JackServer:
    def __init__(self, sample_rate: int = 48_000, period: int = 256, name: str | None = None):
        self.sample_rate = sample_rate
        self.period = period
        name = name or f"bandmate-{os.getpid()}"
        # jackd2 1.9.21's clients abort (a glibc malloc assertion) when the server name is
        # exactly 24 or 40 characters long; one more character keeps them clear of it.
        self.name = name + "_" if len(name) in (24, 40) else name
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def client_env(self) -> dict[str, str]:
        """Environment that points JACK clients at this server and never autostarts another."""
        return {"JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}

    def start(self, timeout: float = 10.0) -> JackServer:
        jackd = shutil.which("jackd")
        if jackd is None:
            raise EngineError("jackd not found: install the Debian package jackd2")
        command = [
            jackd, "--no-realtime", "-n", self.name,
            "-d", "dummy", "-r", str(self.sample_rate), "-p", str(self.period),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise EngineError(f"jackd exited at start: {err.strip().splitlines()[-1:]}")
            if self.is_ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise EngineError(f"jackd did not become ready within {timeout:.0f} s")

    def is_ready(self) -> bool:
        probe = subprocess.run(
            ["jack_lsp", "-s", self.name],
            capture_output=True,
            env={**os.environ, **self.client_env()},
            timeout=5,
        )
        return probe.returncode == 0 and b"system:playback_1" in probe.stdout

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by PID, then SIGKILL if it lingers (jackd can take over a second to exit)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
