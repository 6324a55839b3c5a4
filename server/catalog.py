"""The checkpoints a server offers: the exported folders directly inside --models-dir.

Clients choose a checkpoint by name, never by path. A name is looked up in the folder
listing made at start, so '../x', '/etc' or a symlink trick can only ever be "unknown".
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from engine.backends import Backend, create_backend, warm_up
from engine.checkpoint import EngineCheckpoint, load_engine_checkpoint
from engine.errors import EngineError
from server.errors import ServerError

log = logging.getLogger("bandmate.server")


class UnknownCheckpoint(ServerError):
    pass


@dataclass(frozen=True)
class CheckpointEntry:
    name: str
    checkpoint: EngineCheckpoint

    def describe(self) -> dict[str, object]:
        info = self.checkpoint.info
        return {
            "name": self.name,
            "sample_rate": info.sample_rate,
            "hop_samples": info.hop,
            "latent_dim": info.latent_dim,
            "anticipation": info.anticipation,
            "window_frames": info.window,
        }


class CheckpointCatalog:
    def __init__(
        self, models_dir: Path, backend: str = "auto", threads: int = 1, warm_batches: int = 1
    ):
        if not models_dir.is_dir():
            raise ServerError(f"models dir {models_dir} does not exist")
        self.models_dir = models_dir
        self._backend_name, self._threads = backend, threads
        self._warm_batches = warm_batches
        self.entries: dict[str, CheckpointEntry] = {}
        for folder in sorted(p for p in models_dir.iterdir() if p.is_dir()):
            if not (folder / "config.json").is_file():
                continue
            try:
                self.entries[folder.name] = CheckpointEntry(
                    folder.name, load_engine_checkpoint(folder)
                )
            except EngineError as exc:
                log.warning("skipping checkpoint %s: %s", folder.name, exc)
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()
        # Every graph is loaded now, not on first use: a corrupt one is then a warning at
        # start, rather than an internal error for the first player who picks it.
        for name in list(self.entries):
            try:
                self.backend(name)
            except EngineError as exc:
                log.warning("skipping checkpoint %s: %s", name, exc)
                del self.entries[name]
        if not self.entries:
            raise ServerError(f"models dir {models_dir} holds no usable exported checkpoint")

    def entry(self, name: str) -> CheckpointEntry:
        if name not in self.entries:
            known = ", ".join(self.entries)
            raise UnknownCheckpoint(f"unknown checkpoint {name!r}: this server offers {known}")
        return self.entries[name]

    def backend(self, name: str) -> Backend:
        """The one backend for this checkpoint (each is loaded once, at start)."""
        entry = self.entry(name)
        with self._lock:
            if name not in self._backends:
                backend = create_backend(entry.checkpoint, self._backend_name, self._threads)
                warm_up(backend, self._warm_batches)
                self._backends[name] = backend
                log.info("checkpoint %s runs on %s", name, backend.name)
            return self._backends[name]
