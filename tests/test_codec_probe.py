"""The codec probe tells a decoder that uses its latents from one that ignores them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers import BANDMATE


def test_codec_probe_sees_a_decoder_that_depends_on_its_latents(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    # The tiny codec is barely trained, so its decoder still responds to its input: the
    # three decodings must differ. (The shipped default's are equal: README, "collapsed".)
    report_path = tmp_path / "probe.json"
    command = [BANDMATE, "bench", "codec", "--checkpoint", str(tiny_checkpoint)]
    done = subprocess.run(
        [*command, "--json", str(report_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(report_path.read_text())["decoded_from"]
    real = rows["real latents"]["mr_stft"]
    assert real != rows["time-averaged latent"]["mr_stft"]
    assert real != rows["another crop's latents"]["mr_stft"]
