"""The loop over a recording, as fast as it computes: EEG file in, MIDI out, deterministically.

The same windows, gate, valence and composer as `bandmate bci run`, on the recording's own
sample clock instead of LSL's. Bars follow the live player's rule: bar k is composed
`schedule_ahead_s` before it starts, with the parameters of the newest window whose last
sample came before that moment. Live, the window arriving a few ms late can make the player
use the previous window; here there is no lateness, so the same seed and the same EEG give
the same MIDI, note for note.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bci.errors import BciError
from bci.live.composer import Composer
from bci.live.harmony import make_harmony
from bci.live.loop import BciRunConfig, WindowProcessor, WindowResult
from bci.live.mapping import MusicParams


@dataclass(frozen=True)
class TimedMessage:
    time_s: float  # seconds from the recording's first sample
    message: tuple[int, ...]


def montage_signals(
    data: np.ndarray, labels: list[str], rate: float, config: BciRunConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) in µV, re-referenced as the montage asks; BciError for missing labels or
    a rate the montage does not expect."""
    rows = config.montage.rows_in("recording", labels, rate)
    left, right = data[rows[0]].astype(np.float64), data[rows[1]].astype(np.float64)
    if config.montage.reference:
        reference = data[rows[2:]].mean(axis=0)
        left, right = left - reference, right - reference
    return left, right


def process_recording(
    left: np.ndarray, right: np.ndarray, rate: float, config: BciRunConfig
) -> list[WindowResult]:
    """Every window, cut as the live loop cuts them: ending at window_s, then every hop_s."""
    processor = WindowProcessor(config)
    size = round(config.faa.window_s * rate)
    hop = max(1, round(config.faa.hop_s * rate))
    stamps = np.arange(len(left)) / rate
    return [
        processor.process(stamps[end - size : end], left[end - size : end],
                          right[end - size : end], 0.0)
        for end in range(size, len(left) + 1, hop)
    ]  # fmt: skip


def render_midi(results: list[WindowResult], config: BciRunConfig,
                schedule_ahead_s: float = 0.2) -> list[TimedMessage]:  # fmt: skip
    """Note-on/off messages of the music the windows drive, from the end of the baseline to
    the last window."""
    feedback = [r for r in results if r.params is not None]
    if not feedback:
        return []
    composer = Composer(config.seed, config.mapping.tonic, harmony=make_harmony(config.harmony))
    times = np.array([r.lsl_time for r in feedback])
    bar_start, end = feedback[0].lsl_time, feedback[-1].lsl_time
    messages: list[TimedMessage] = []
    bar = 0
    while bar_start < end:
        newest = int(np.searchsorted(times, bar_start - schedule_ahead_s, side="right")) - 1
        params: MusicParams = feedback[max(newest, 0)].params  # type: ignore[assignment]
        seconds_per_beat = 60.0 / params.tempo_bpm
        for note in composer.compose_bar(bar, params):
            onset = bar_start + (note.beat - bar * composer.beats_per_bar) * seconds_per_beat
            offset = onset + note.duration * seconds_per_beat
            messages.append(TimedMessage(onset, (0x90 | note.channel, note.pitch, note.velocity)))
            messages.append(TimedMessage(offset, (0x80 | note.channel, note.pitch, 0)))
        bar_start += composer.beats_per_bar * seconds_per_beat
        bar += 1
    # Note-offs before note-ons at the same instant, as the live scheduler sends them.
    return sorted(messages, key=lambda m: (m.time_s, m.message[0] & 0xF0 == 0x90))


TICKS_PER_SECOND = 960  # 480 ticks per beat at the file's fixed 120 BPM tempo meta


def write_midi_file(messages: list[TimedMessage], path: Path) -> None:
    """A type-0 MIDI file of the rendered messages, timed in seconds (the music's own tempo
    lives in the note times, so the file's tempo is a fixed 120 BPM)."""
    import mido

    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000, time=0)])
    previous = 0
    for timed in messages:
        tick = round(timed.time_s * TICKS_PER_SECOND)
        track.append(mido.Message.from_bytes(list(timed.message), time=tick - previous))
        previous = tick
    midi = mido.MidiFile(type=0, ticks_per_beat=480, tracks=[track])
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        midi.save(str(path))
    except OSError as exc:
        raise BciError(f"cannot write {path}: {exc.strerror}") from None
