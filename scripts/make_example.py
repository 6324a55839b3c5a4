"""Cut the shipped example recording from a full data build (run once; the result is committed).

    .venv/bin/python scripts/make_example.py data/full band/bossa-033 20

It takes the live part (the melody) of a held-out test piece: the model never trained on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import soundfile as sf

from engine.demo import EXAMPLE_RECORDING
from models.data.manifest import load_manifest, read_audio


def main(root: Path, piece_id: str, seconds: float) -> None:
    manifest = load_manifest(root)
    example = next(e for e in manifest.examples if e.piece_id == piece_id)
    assert example.split == "test", f"{piece_id} is in the {example.split} split, not test"
    audio = read_audio(root, example.live.file)[: int(seconds * example.sample_rate)]
    EXAMPLE_RECORDING.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(EXAMPLE_RECORDING), audio, example.sample_rate, subtype="PCM_16")
    print(
        f"wrote {EXAMPLE_RECORDING}: {piece_id} live part ({example.live.name}, GM program "
        f"{example.live.program}, {example.soundfont}), {len(audio) / example.sample_rate:.1f} s"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
