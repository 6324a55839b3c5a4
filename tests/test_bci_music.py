"""The music side of the BCMI: valence -> MusicParams -> composed bars -> timed MIDI (also
through a real JACK server)."""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise

import numpy as np
import pytest
import rtmidi

from bci.live.composer import CLOSED_HAT, KICK, PART_CHANNELS, SNARE, Composer, NoteEvent
from bci.live.mapping import MODE_INTERVALS, MODES, MappingConfig, MusicParams, ParameterMapper
from bci.live.midi_out import MidiOutError, MidiScheduler, MusicPlayer, RtMidiSink, SentMessage
from engine.jackd import JackServer

SWEEP = np.linspace(-1.0, 1.0, 201)
NOTE_ON, NOTE_OFF, CONTROL_CHANGE = 0x90, 0x80, 0xB0


def music(mode: str = "dorian", tempo: float = 120.0, density: float = 0.6,
          register: int = 0, velocity: int = 80) -> MusicParams:  # fmt: skip
    return MusicParams(mode, tempo, density, register, velocity)


def fresh_map(valence: float, arousal: float | None = None) -> MusicParams:
    return ParameterMapper(MappingConfig()).map(valence, arousal)


def compose(seed: int, params: list[MusicParams], tonic: int = 60) -> list[list[NoteEvent]]:
    composer = Composer(seed, tonic)
    return [composer.compose_bar(bar, p) for bar, p in enumerate(params)]


class ListSink:
    def __init__(self) -> None:
        self.messages: list[list[int]] = []

    def send(self, message: list[int]) -> None:
        self.messages.append(message)

    def close(self) -> None:
        pass


def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """A liveness bound only: nothing here asserts how fast anything happens."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


# Mapping


def test_extreme_and_neutral_valence_give_the_brightest_darkest_and_middle_modes() -> None:
    assert fresh_map(1.0).mode == "lydian"
    assert fresh_map(-1.0).mode == "locrian"
    assert fresh_map(0.0).mode == MODES[len(MODES) // 2] == "dorian"


def test_mode_gets_brighter_as_valence_rises_through_all_seven_modes() -> None:
    darkness = [MODES.index(fresh_map(v).mode) for v in SWEEP]
    assert all(later <= earlier for earlier, later in pairwise(darkness))
    assert set(darkness) == set(range(len(MODES)))


def test_hysteresis_holds_the_mode_just_past_a_boundary_and_changes_it_clearly_past() -> None:
    boundary = -1.0 + 4 * 2.0 / 7  # between dorian (below) and mixolydian (above)
    mapper = ParameterMapper(MappingConfig(hysteresis=0.05))
    assert mapper.map(0.0).mode == "dorian"
    assert mapper.map(boundary + 0.02).mode == "dorian"  # held
    assert fresh_map(boundary + 0.02).mode == "mixolydian"  # without history it is past
    assert mapper.map(boundary + 0.1).mode == "mixolydian"
    assert mapper.map(boundary - 0.02).mode == "mixolydian"  # held on the way down too
    assert mapper.map(boundary - 0.1).mode == "dorian"


def test_out_of_range_inputs_are_clipped_and_nan_raises() -> None:
    assert fresh_map(5.0) == fresh_map(1.0)
    assert fresh_map(-3.0, arousal=-9.0) == fresh_map(-1.0, arousal=-1.0)
    with pytest.raises(ValueError, match="valence"):
        fresh_map(float("nan"))
    with pytest.raises(ValueError, match="arousal"):
        fresh_map(0.0, arousal=float("nan"))


def test_tempo_follows_arousal_when_given_and_valence_otherwise() -> None:
    config = MappingConfig()
    by_valence = [fresh_map(v).tempo_bpm for v in SWEEP]
    assert np.all(np.diff(by_valence) > 0)
    assert (by_valence[0], by_valence[-1]) == config.tempo_range
    assert {fresh_map(v, arousal=0.5).tempo_bpm for v in SWEEP} == {fresh_map(0, 0.5).tempo_bpm}
    by_arousal = [fresh_map(0.0, arousal=a).tempo_bpm for a in SWEEP]
    assert np.all(np.diff(by_arousal) > 0)


def test_density_register_and_velocity_rise_with_valence_across_their_ranges() -> None:
    config = MappingConfig()
    mapped = [fresh_map(v) for v in SWEEP]
    for name, configured in [("density", config.density_range),
                             ("register", config.register_range),
                             ("velocity", config.velocity_range)]:  # fmt: skip
        values = [getattr(p, name) for p in mapped]
        assert np.all(np.diff(values) >= 0), name
        assert (values[0], values[-1]) == configured, name
    assert np.all(np.diff([p.density for p in mapped]) > 0)


def test_a_hysteresis_wider_than_half_a_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        MappingConfig(hysteresis=0.2)


# Composer

VARIED = [music("lydian", density=0.85, register=7), music("aeolian", density=0.3),
          music("phrygian", density=0.7, register=-5), music("ionian")] * 2  # fmt: skip


def test_the_same_seed_and_params_give_identical_bars() -> None:
    assert compose(7, VARIED) == compose(7, VARIED)


def test_a_different_seed_gives_different_bars() -> None:
    assert compose(7, VARIED) != compose(8, VARIED)


@pytest.mark.parametrize("mode", MODES)
def test_every_pitched_note_is_in_the_mode_and_drums_are_kick_snare_hat(mode: str) -> None:
    tonic = 62  # D: pitch classes must be taken relative to the tonic, not to C
    bars = compose(1, [music(mode, density=d, register=r) for d, r in
                       [(0.85, 7), (0.25, -5), (0.6, 0)] * 4], tonic)  # fmt: skip
    events = [e for bar in bars for e in bar]
    pitched = [e for e in events if e.part != "drums"]
    assert {e.part for e in events} == set(PART_CHANNELS)
    assert {(e.pitch - tonic) % 12 for e in pitched} <= set(MODE_INTERVALS[mode])
    assert {e.pitch for e in events if e.part == "drums"} <= {KICK, SNARE, CLOSED_HAT}


def test_channels_are_the_documented_ones() -> None:
    assert PART_CHANNELS == {"chords": 0, "bass": 1, "melody": 2, "drums": 9}
    for event in (e for bar in compose(2, VARIED) for e in bar):
        assert event.channel == PART_CHANNELS[event.part]


@pytest.mark.parametrize("tonic", [0, 5, 120, 127])
def test_pitches_and_velocities_stay_valid_midi_for_extreme_tonics(tonic: int) -> None:
    params = [music(m, density=0.85, register=r, velocity=v)
              for m in MODES for r, v in [(7, 127), (-5, 1)]]  # fmt: skip
    events = [e for bar in compose(3, params, tonic) for e in bar]
    assert all(0 <= e.pitch <= 127 and 1 <= e.velocity <= 127 for e in events)
    pitched = [e for e in events if e.part != "drums"]
    assert all((e.pitch - tonic) % 12 in MODE_INTERVALS[p.mode] for e, p in
               ((e, params[int(e.beat) // 4]) for e in pitched))  # fmt: skip


@pytest.mark.parametrize("beats_per_bar", [3, 4])
def test_every_note_starts_and_ends_inside_its_bar(beats_per_bar: int) -> None:
    composer = Composer(4, beats_per_bar=beats_per_bar)
    for bar, params in enumerate(VARIED):
        start, end = bar * beats_per_bar, (bar + 1) * beats_per_bar
        for event in composer.compose_bar(bar, params):
            assert start <= event.beat < end and event.duration > 0
            assert event.beat + event.duration <= end


def test_changing_params_between_bars_changes_the_mode_of_the_next_bar_only() -> None:
    bright, dark = music("lydian"), music("phrygian")
    unchanged = compose(5, [bright] * 4)
    changed = compose(5, [bright, bright, dark, dark])
    assert changed[:2] == unchanged[:2]
    for bar in changed[2:]:
        classes = {e.pitch % 12 for e in bar if e.part != "drums"}
        assert classes <= set(MODE_INTERVALS["phrygian"])
        assert not classes <= set(MODE_INTERVALS["lydian"])  # audibly another mode


def test_higher_density_plays_more_melody_notes_and_hats() -> None:
    def counts(density: float) -> tuple[int, int]:
        events = [e for bar in compose(6, [music(density=density)] * 16) for e in bar]
        hats = sum(e.pitch == CLOSED_HAT for e in events if e.part == "drums")
        return sum(e.part == "melody" for e in events), hats

    sparse, busy = counts(0.25), counts(0.85)
    assert busy[0] > 2 * sparse[0] and busy[1] > 2 * sparse[1]


# Scheduler (in-memory sink, real clock)


def test_scheduler_sends_in_time_order_with_offs_before_ons_at_the_same_time() -> None:
    sink, sent = ListSink(), list[SentMessage]()
    scheduler = MidiScheduler(sink, on_sent=sent.append)
    events = [NoteEvent(10.0, 0.5, "melody", 2, 72, 90),  # listed out of time order
              NoteEvent(8.0, 1.0, "chords", 0, 60, 70),
              NoteEvent(9.0, 1.0, "chords", 0, 60, 71),  # the same pitch again, legato
              NoteEvent(8.5, 0.25, "drums", 9, 42, 50)]  # fmt: skip
    scheduler.start()
    try:
        bar_start = time.perf_counter() + 0.05
        scheduler.schedule(events, bar_start, tempo_bpm=600.0, first_beat=8.0)
        wait_until(lambda: scheduler.pending() == 0)
    finally:
        scheduler.stop()
    assert [m.message for m in sent[:8]] == [
        (NOTE_ON | 0, 60, 70), (NOTE_ON | 9, 42, 50), (NOTE_OFF | 9, 42, 0),
        (NOTE_OFF | 0, 60, 0), (NOTE_ON | 0, 60, 71),
        (NOTE_OFF | 0, 60, 0), (NOTE_ON | 2, 72, 90), (NOTE_OFF | 2, 72, 0),
    ]  # fmt: skip
    beat_s = 60.0 / 600.0
    expected_dues = [0, 0.5, 0.75, 1, 1, 2, 2, 2.5]
    assert [m.due - bar_start for m in sent[:8]] == pytest.approx(
        [b * beat_s for b in expected_dues], abs=1e-9
    )
    assert all(m.sent >= m.due for m in sent[:8])
    # Nothing was sounding at stop(): only all-notes-off on the channels used.
    assert [m.message for m in sent[8:]] == [(CONTROL_CHANGE | ch, 123, 0) for ch in (0, 2, 9)]
    assert sink.messages == [list(m.message) for m in sent]


def test_stop_releases_sounding_notes_and_drops_queued_ones() -> None:
    sink = ListSink()
    scheduler = MidiScheduler(sink)
    scheduler.start()
    long_note = NoteEvent(0.0, 100.0, "bass", 1, 40, 90)
    later_note = NoteEvent(50.0, 1.0, "melody", 2, 70, 90)
    scheduler.schedule([long_note, later_note], time.perf_counter() + 0.02, 120.0, 0.0)
    wait_until(lambda: [NOTE_ON | 1, 40, 90] in sink.messages)
    scheduler.stop()
    assert sink.messages == [
        [NOTE_ON | 1, 40, 90],
        [NOTE_OFF | 1, 40, 0],
        [CONTROL_CHANGE | 1, 123, 0],
    ]
    assert scheduler.pending() == 0


def test_midi_clock_sends_start_24_ticks_per_beat_following_tempo_and_stop() -> None:
    sent = list[SentMessage]()
    scheduler = MidiScheduler(ListSink(), midi_clock=True, on_sent=sent.append)
    scheduler.start()
    bar_start = time.perf_counter() + 0.05
    scheduler.schedule([], bar_start, tempo_bpm=600.0, first_beat=0.0)
    scheduler.schedule([], bar_start + 4 * 0.1, tempo_bpm=300.0, first_beat=4.0)
    ticks = lambda: [m for m in sent if m.message == (0xF8,)]  # noqa: E731
    wait_until(lambda: len(ticks()) >= 24 * 6)
    scheduler.stop()
    assert sent[0].message == (0xFA,) and sent[-1].message == (0xFC,)
    assert {m.message for m in sent[1:-1]} == {(0xF8,)}
    dues = np.array([m.due for m in ticks()])
    assert dues[0] == pytest.approx(bar_start, abs=1e-9)
    assert np.diff(dues[: 24 * 4]) == pytest.approx(0.1 / 24, abs=1e-9)  # 600 BPM
    assert np.diff(dues[24 * 4 : 24 * 6]) == pytest.approx(0.2 / 24, abs=1e-9)  # then 300 BPM


# End to end


def player_messages(seed: int, sequence: list[MusicParams], bars: int) -> list[tuple[int, ...]]:
    """What a MusicPlayer sends before stop(), once `bars` bars have been composed."""
    sent = list[SentMessage]()
    calls = iter(range(10**6))
    provider = lambda: sequence[min(next(calls), len(sequence) - 1)]  # noqa: E731
    player = MusicPlayer(Composer(seed), MidiScheduler(ListSink(), on_sent=sent.append),
                         provider, schedule_ahead_s=0.1)  # fmt: skip
    player.start()
    try:
        wait_until(lambda: player.bars >= bars)
        before_stop = list(sent)
        assert player.current == sequence[min(player.bars, len(sequence)) - 1]
    finally:
        player.stop()
    assert player.failure is None
    return [m.message for m in before_stop]


def test_same_seed_and_params_sequence_send_the_same_messages_end_to_end() -> None:
    sequence = [music("lydian", 960, 0.85, 7, 100), music("lydian", 960, 0.85, 7, 100),
                music("phrygian", 720, 0.3, -5, 60)]  # fmt: skip
    first = player_messages(11, sequence, bars=4)
    second = player_messages(11, sequence, bars=4)
    # Bars 0 and 1 are over by the time bar 3 is composed: at least their notes must match.
    two_bars = compose(11, sequence[:2])
    common = min(len(first), len(second))
    assert common >= 2 * sum(len(bar) for bar in two_bars)
    assert first[:common] == second[:common]
    note_ons = [m for m in first if m[0] & 0xF0 == NOTE_ON]
    expected = sorted((NOTE_ON | e.channel, e.pitch, e.velocity) for bar in two_bars for e in bar)
    assert sorted(note_ons[: len(expected)]) == expected


# Through a real JACK server


def test_an_unknown_api_or_a_missing_jack_server_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(MidiOutError, match="unknown MIDI API"):
        RtMidiSink("bci-test", api="bogus")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "bci-music-test-no-such-server")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    with pytest.raises(MidiOutError, match="cannot open MIDI output") as raised:
        RtMidiSink("bci-test", api="jack")
    assert "\n" not in str(raised.value)


@pytest.mark.jack
@pytest.mark.slow
def test_notes_played_into_a_jack_virtual_port_arrive_in_order(jack_server: JackServer) -> None:
    sink = RtMidiSink("bci-music-out")
    listener = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="bci-music-listener")
    received: list[list[int]] = []
    sent = list[SentMessage]()
    scheduler = MidiScheduler(sink, on_sent=sent.append)
    try:
        ports = listener.get_ports()
        listener.open_port(next(i for i, name in enumerate(ports) if "bci-music-out" in name))
        listener.set_callback(lambda event, _: received.append(event[0]))
        params = music("mixolydian", tempo=240.0, density=0.85)
        composer = Composer(seed=9)
        events = composer.compose_bar(0, params) + composer.compose_bar(1, params)
        scheduler.start()
        scheduler.schedule(events, time.perf_counter() + 0.1, params.tempo_bpm, 0.0)
        wait_until(lambda: scheduler.pending() == 0)
        scheduler.stop()
        wait_until(lambda: len(received) >= len(sent))
    finally:
        scheduler.stop()
        listener.close_port()
        listener.delete()
        sink.close()
    assert received == [list(m.message) for m in sent]
    assert all(a.due <= b.due for a, b in pairwise(sent))
    note_ons = sorted(tuple(m) for m in received if m[0] & 0xF0 == NOTE_ON)
    assert note_ons == sorted((NOTE_ON | e.channel, e.pitch, e.velocity) for e in events)
    assert {m[0] & 0x0F for m in received} == set(PART_CHANNELS.values())
