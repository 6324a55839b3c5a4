"""What the experimenter's status line says about the BCMI loop, e.g.

    calibrating 4 s | AF7 ok 31 uV, AF8 blink 212 uV | gated 12 % of 40 windows | 0 dropped
    valence +0.42 | AF7 ok 28 uV, AF8 ok 30 uV | gated 3 % of 480 windows | 12 dropped

The calibration countdown (the loop's baseline, on the EEG's own clock) until the music
starts, then the valence; each montage channel judged on its own in the newest window (the
checks it failed, joined by "/", or ok, and its peak-to-peak amplitude: a loose electrode
reads flat or huge); the share of windows the gate held back; samples the stream lost.
`session run` puts its block and time left in front (bci/experiment/session_runner.py).
"""

from __future__ import annotations

import math

from bci.live.loop import BciLoop


def loop_status(loop: BciLoop, now: float) -> str:
    """The loop's part of the status line at LSL time `now`."""
    summary, processor = loop.summary, loop.processor
    last = summary.last
    if last is None:
        return "waiting for the first EEG window"
    if processor.in_baseline:
        ends = processor.baseline_until
        left = max(0.0, ends - now) if ends is not None else math.nan
        state = f"calibrating {left:.0f} s" if math.isfinite(left) else "calibrating"
    else:
        state = f"valence {last.valence:+.2f}"
    labels = (loop.config.montage.left, loop.config.montage.right)
    channels = ", ".join(
        f"{label} {'/'.join(check.failed) or 'ok'}"
        + (f" {check.peak_to_peak_uv:.0f} uV" if math.isfinite(check.peak_to_peak_uv) else "")
        for label, check in zip(labels, last.channels, strict=True)
    )
    gated = 100 * summary.gated / max(summary.windows, 1)
    dropped = loop.eeg.stats.dropped
    return (
        f"{state} | {channels} | gated {gated:.0f} % of {summary.windows} windows | "
        f"{dropped} dropped"
    )
