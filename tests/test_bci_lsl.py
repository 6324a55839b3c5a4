"""The LSL input and the EEG simulator, against real LSL outlets and inlets in this process.

Every test names its streams uniquely, so streams of other tests (or other processes on the
machine) never answer its queries."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest
from scipy.signal import welch

from bci.errors import BciError
from bci.live.eeg_ring import EegRing
from bci.live.lsl_input import EegInput, StreamQuery, channel_labels, resolve_stream
from bci.live.sample_grid import NominalGrid
from bci.live.simulate import (
    AsymmetryStep,
    Event,
    Schedule,
    Simulator,
    SimulatorConfig,
    load_schedule,
    synthesize,
)
from bci.montage import MUSE, MUSE_MASTOID, Montage, load_montage

RATE = 256.0
StartSimulator = Callable[..., Simulator]


def unique_name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def start_simulator() -> Iterator[StartSimulator]:
    """Starts simulators with a unique name and source_id; stops them afterwards."""
    started: list[Simulator] = []

    def start(schedule: Schedule = Schedule(), **config: Any) -> Simulator:
        name = unique_name()
        simulator = Simulator(SimulatorConfig(name=name, source_id=name, **config), schedule)
        simulator.start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


def labelled_outlet(name: str, labels: list[str], rate: float = RATE) -> pylsl.StreamOutlet:
    info = pylsl.StreamInfo(name, "EEG", len(labels), rate, "float32", name)
    channels = info.desc().append_child("channels")
    for label in labels:
        channels.append_child("channel").append_child_value("label", label)
    return pylsl.StreamOutlet(info)


def poll_for(
    inputs: EegInput | tuple[EegInput, ...],
    seconds: float,
    until: Callable[[], bool] = lambda: False,
) -> bool:
    """Poll every 10 ms for `seconds` or until `until()`; whether `until()` became true."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for eeg in inputs if isinstance(inputs, tuple) else (inputs,):
            eeg.poll()
        if until():
            return True
        time.sleep(0.01)
    return False


def stop_after_polling(inputs: EegInput | tuple[EegInput, ...], simulator: Simulator) -> None:
    """Take in what has arrived, then stop the simulator. (Once an outlet is gone, liblsl
    raises LostError instead of handing over what the inlet still holds.)"""
    poll_for(inputs, 0.05)
    simulator.stop()


# --- resolution and channels -------------------------------------------------------------


def test_resolve_finds_a_stream_by_name_type_and_source_id(start_simulator: StartSimulator) -> None:
    simulator = start_simulator()
    name = simulator.config.name
    assert resolve_stream(StreamQuery(name=name, timeout_s=2.0)).name() == name
    by_source = resolve_stream(StreamQuery(source_id=name, type=None, timeout_s=2.0))
    assert by_source.source_id() == name
    with pytest.raises(BciError, match="type Markers"):
        resolve_stream(StreamQuery(name=name, type="Markers", timeout_s=0.3))


def test_an_unknown_name_fails_quickly_in_one_line() -> None:
    started = time.perf_counter()
    with pytest.raises(BciError) as error:
        resolve_stream(StreamQuery(name="no-such-stream", timeout_s=0.5))
    assert time.perf_counter() - started < 1.5
    assert str(error.value) == "no LSL stream with name 'no-such-stream' (type EEG) found in 0.5 s"


def test_channel_labels_fall_back_to_numbers_when_the_description_has_none() -> None:
    plain = pylsl.StreamInfo("plain", "EEG", 3, RATE, "float32", "plain")
    assert channel_labels(plain) == ["0", "1", "2"]
    labelled = pylsl.StreamInfo("labelled", "EEG", 2, RATE, "float32", "labelled")
    channels = labelled.desc().append_child("channels")
    for label in ("AF7", "AF8"):
        channels.append_child("channel").append_child_value("label", label)
    assert channel_labels(labelled) == ["AF7", "AF8"]


def test_input_keeps_af7_af8_by_label_and_rereferences_to_the_mastoids(
    start_simulator: StartSimulator,
) -> None:
    simulator = start_simulator()
    query = StreamQuery(name=simulator.config.name, timeout_s=2.0)
    with_reference, as_recorded = EegInput(query, MUSE_MASTOID), EegInput(query, MUSE)
    poll_for((with_reference, as_recorded), 0.8)
    stop_after_polling((with_reference, as_recorded), simulator)
    for eeg in (with_reference, as_recorded):
        window = eeg.window(0.5)
        assert window is not None
        stamps, left, right = window
        first = round((stamps[0] - simulator.origin) * RATE)
        # Sample k is stamped origin + k / rate; the in-process clock correction is microseconds.
        position = (stamps - simulator.origin) * RATE
        np.testing.assert_allclose(position, first + np.arange(128), atol=0.05)
        sent = synthesize(simulator.config, simulator.schedule, first, 128).astype(np.float32)
        tp9, af7, af8, tp10 = sent.astype(np.float64)  # the simulator's channel order
        reference = (tp9 + tp10) / 2 if eeg is with_reference else 0.0
        np.testing.assert_allclose(left, af7 - reference, atol=1e-4)
        np.testing.assert_allclose(right, af8 - reference, atol=1e-4)
        eeg.close()


def test_missing_labels_are_named_with_the_ones_the_stream_has(
    start_simulator: StartSimulator,
) -> None:
    simulator = start_simulator()
    with pytest.raises(BciError) as error:
        EegInput(StreamQuery(name=simulator.config.name, timeout_s=2.0), Montage("F3", "F4"))
    assert "no channel F3, F4 (it has TP9, AF7, AF8, TP10)" in str(error.value)


def test_a_wrong_nominal_rate_names_both_rates() -> None:
    name = unique_name()
    outlet = labelled_outlet(name, ["AF7", "AF8"], rate=128.0)
    with pytest.raises(BciError, match="runs at 128 Hz but the montage expects 256 Hz"):
        EegInput(StreamQuery(name=name, timeout_s=2.0), MUSE)
    del outlet


def test_a_nan_on_a_montage_channel_is_counted_and_reported_once_naming_the_channel() -> None:
    name = unique_name()
    outlet = labelled_outlet(name, ["AF7", "AF8", "AUX"])
    events: list[tuple[str, dict[str, object]]] = []
    eeg = EegInput(StreamQuery(name=name, timeout_s=2.0), MUSE,
                   events=lambda kind, fields: events.append((kind, fields)))  # fmt: skip
    chunk = np.ones((8, 3), dtype=np.float32)
    chunk[:, 2] = np.nan  # a channel the montage does not use is not our business
    outlet.push_chunk(chunk)
    assert poll_for(eeg, 1.0, lambda: eeg.stats.received == 8)
    assert eeg.stats.non_finite == 0
    chunk[5:, 1] = np.nan  # a run of 3 NaN over two chunks: one report
    outlet.push_chunk(chunk)
    chunk[:, 1] = 1.0
    chunk[0, 1] = np.nan
    outlet.push_chunk(chunk)
    assert poll_for(eeg, 1.0, lambda: eeg.stats.received == 24)
    assert eeg.stats.non_finite == 4
    reported = [fields for kind, fields in events if kind == "non_finite"]
    assert [fields["channel"] for fields in reported] == ["AF8"]
    window = eeg.window(24 / RATE)
    assert window is not None and np.isnan(window[2][13:17]).all()  # kept, for the gate
    eeg.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("labels", "rate", "problem"),
    [(["F3", "F4"], RATE, "no channel AF7, AF8"), (["AF7", "AF8"], 128.0, "runs at 128 Hz")],
)
def test_a_stream_that_returns_unfit_is_reported_and_passed_over_until_a_fit_one_comes(
    labels: list[str], rate: float, problem: str
) -> None:
    name = unique_name()  # also each outlet's source_id: every one is "the same stream"
    outlet = labelled_outlet(name, ["AF7", "AF8"])
    events: list[tuple[str, dict[str, object]]] = []
    eeg = EegInput(StreamQuery(name=name, timeout_s=2.0), MUSE, loss_timeout_s=0.3,
                   events=lambda kind, fields: events.append((kind, fields)))  # fmt: skip
    del outlet
    assert poll_for(eeg, 3.0, lambda: not eeg.connected)
    unfit = labelled_outlet(name, labels, rate)
    assert poll_for(eeg, 5.0, lambda: any(kind == "mismatched" for kind, _ in events))
    [mismatched] = [fields for kind, fields in events if kind == "mismatched"]
    assert problem in str(mismatched["problem"])
    poll_for(eeg, 1.5)  # the unfit one stays passed over, and is not reported again
    assert not eeg.connected and [kind for kind, _ in events].count("mismatched") == 1
    fit = labelled_outlet(name, ["AF7", "AF8"])
    assert poll_for(eeg, 5.0, lambda: eeg.connected)
    fit.push_chunk(np.ones((8, 2), dtype=np.float32))
    assert poll_for(eeg, 1.0, lambda: eeg.stats.received == 8)
    assert eeg.stats.reconnects == 1
    eeg.close()
    del unfit, fit


# --- gaps and loss -------------------------------------------------------------------------


def test_dropped_samples_equal_the_simulators_dropout(start_simulator: StartSimulator) -> None:
    # EegInput takes ~0.6 s to connect (liblsl measures the clock offset first).
    simulator = start_simulator(Schedule(events=(Event(1.0, "dropout", 0.5),)))
    eeg = EegInput(StreamQuery(name=simulator.config.name, timeout_s=2.0), MUSE)
    poll_for(eeg, 1.6)
    assert eeg.connected
    stop_after_polling(eeg, simulator)
    assert simulator.dropped == 128
    stats = eeg.stats
    assert stats.dropped == 128 and stats.reconnects == 0
    # Expected: the grid slots since the first sample received, up to 4 s of them.
    assert eeg.dropped_fraction(4.0) == pytest.approx(128 / min(1024, stats.received + 128))
    assert eeg.dropped_fraction(0.25) == 0.0  # the newest quarter second came after it
    eeg.close()


@pytest.mark.slow
def test_a_killed_stream_is_lost_then_reconnected_and_its_gap_counted(
    start_simulator: StartSimulator,
) -> None:
    simulator = start_simulator(Schedule(events=(Event(1.5, "kill", 2.0),)))
    events: list[str] = []
    eeg = EegInput(
        StreamQuery(name=simulator.config.name, timeout_s=2.0),
        MUSE,
        events=lambda kind, fields: events.append(kind),
    )
    assert poll_for(eeg, 2.5, lambda: not eeg.connected)
    lost_at = eeg.stats.stream_lost_at
    assert lost_at is not None and 1.5 <= lost_at - simulator.origin < 1.5 + 1.2
    assert poll_for(eeg, 4.0, lambda: eeg.connected)
    returned_after = pylsl.local_clock() - simulator.origin - 3.5
    assert returned_after < 2.0
    poll_for(eeg, 0.3)
    stop_after_polling(eeg, simulator)
    stats = eeg.stats
    assert stats.reconnects == 1
    assert simulator.dropped == 512
    # Every stamp missing between the first and last sample received is counted: the 512 killed
    # and the few the new outlet sent before the input found it.
    everything = eeg.window(stats.received / RATE)
    assert everything is not None
    stamps = everything[0]
    assert stats.received + stats.dropped == round((stamps[-1] - stamps[0]) * RATE) + 1
    assert 512 <= stats.dropped < 512 + 0.5 * RATE
    assert events[:2] == ["connected", "lost"] and "reconnected" in events
    eeg.close()


def test_the_grid_counts_gaps_exactly_under_jitter_and_drift() -> None:
    rng = np.random.default_rng(0)
    true_rate = RATE * 1.005  # a device a little fast: no false gaps
    indices = np.delete(np.arange(5000), np.s_[1000:1037])  # 37 missing
    # Per-sample jitter of +-0.2 periods: small enough that the gap is counted exactly.
    stamps = 100.0 + indices / true_rate + rng.uniform(-0.2, 0.2, len(indices)) / RATE
    grid = NominalGrid(RATE)
    placed = [grid.place(chunk) for chunk in np.array_split(stamps, 400)]
    assert sum(p.missing for p in placed) == 37
    spacing = np.diff(np.concatenate([p.stamps for p in placed])) * RATE
    # Raw stamps wander by +-0.2 periods; placed ones only step a little where the offset
    # follows the drift between chunks.
    assert np.abs(np.delete(spacing, 999) - 1).max() < 0.1
    assert spacing[999] == pytest.approx(38, abs=0.1)


def test_the_grid_takes_chunks_jittered_by_3_ms_as_jitter_and_counts_a_real_gap() -> None:
    # A bridge stamping chunks of 8 on arrival moves each by up to +-3 ms (0.77 periods), so
    # consecutive stamps can be 2.5 periods apart, or 0.5 periods back, with nothing missing.
    rng = np.random.default_rng(1)
    indices = np.delete(np.arange(4000), np.s_[2000:2012])  # a lost 12-sample packet
    chunks = np.array_split(100.0 + indices / RATE, len(indices) // 8)
    grid = NominalGrid(RATE)
    placed = [grid.place(chunk + rng.uniform(-0.003, 0.003)) for chunk in chunks]
    assert sum(p.missing for p in placed) == pytest.approx(12, abs=1)
    assert not any(p.jumps for p in placed)
    assert np.all(np.diff(np.concatenate([p.indices for p in placed])) >= 1)


def test_the_grid_takes_a_step_of_the_senders_clock_out_either_way() -> None:
    grid = NominalGrid(RATE)
    stamps = 100.0 + np.arange(512) / RATE
    first = grid.place(stamps[:256], waited_s=0.03)
    back = grid.place(stamps[256:] - 5.0, waited_s=0.03)  # a step back
    [jump] = back.jumps
    assert jump.by_s == pytest.approx(-5.0) and back.missing == 0
    # Forward, further than the 30 ms since the last chunk: not samples lost, the clock.
    forward = grid.place(100.0 + 60.0 + np.arange(512, 768) / RATE, waited_s=0.03)
    assert forward.jumps[0].by_s == pytest.approx(65.0) and forward.missing == 0
    placed = np.concatenate([first.stamps, back.stamps, forward.stamps])
    np.testing.assert_allclose(np.diff(placed) * RATE, 1.0, atol=1e-6)
    # The same step after a 61 s silence is a gap: those samples went missing.
    silent = grid.place(100.0 + 60.0 + 60.0 + np.arange(768, 800) / RATE, waited_s=61.0)
    assert not silent.jumps and silent.missing == round(60.0 * RATE)


def test_the_ring_returns_the_newest_samples_in_order_across_the_wrap() -> None:
    ring = EegRing(channels=2, capacity=5)
    assert ring.latest(3)[0].shape == (0,)
    for start, n in ((0, 3), (3, 4), (7, 12)):
        stamps = np.arange(start, start + n, dtype=float)
        ring.write(stamps, np.stack([stamps, -stamps]), 2 * np.arange(start, start + n))
    stamps, samples = ring.latest(10)
    np.testing.assert_array_equal(stamps, [14, 15, 16, 17, 18])
    np.testing.assert_array_equal(samples, [[14, 15, 16, 17, 18], [-14, -15, -16, -17, -18]])
    np.testing.assert_array_equal(ring.indices_ending_at(18, 2), [32, 34])
    assert ring.total == 19


# --- synthesis and schedules ---------------------------------------------------------------

BUSY = Schedule(
    asymmetry=(AsymmetryStep(0.0, 1.0), AsymmetryStep(3.0, -0.5)),
    events=(Event(1.0, "blink", 0.3), Event(4.0, "emg", 1.0), Event(6.0, "dropout", 0.5)),
)


def test_synthesize_does_not_depend_on_chunking() -> None:
    config = SimulatorConfig()
    whole = synthesize(config, BUSY, 0, 2000)
    for size in (7, 256, 333):
        pieces = [synthesize(config, BUSY, s, min(size, 2000 - s)) for s in range(0, 2000, size)]
        np.testing.assert_array_equal(np.concatenate(pieces, axis=1), whole)
    np.testing.assert_array_equal(synthesize(config, BUSY, 1234, 100), whole[:, 1234:1334])


def test_synthesize_is_reproducible_per_seed() -> None:
    first = synthesize(SimulatorConfig(seed=3), BUSY, 500, 600)
    np.testing.assert_array_equal(first, synthesize(SimulatorConfig(seed=3), BUSY, 500, 600))
    assert not np.allclose(first, synthesize(SimulatorConfig(seed=4), BUSY, 500, 600))


def test_blinks_and_emg_show_where_scheduled() -> None:
    quiet = synthesize(SimulatorConfig(), Schedule(), 0, 2000)
    busy = synthesize(SimulatorConfig(), BUSY, 0, 2000) - quiet  # [TP9, AF7, AF8, TP10]
    blink = busy[:, 256:333]
    assert 140 < blink[1].max() < 160 and blink[0].max() < 20
    emg = busy[:, 1024:1280]
    assert np.all((emg.std(axis=1) > 15) & (emg.std(axis=1) < 45))


@pytest.mark.parametrize("asymmetry", [1.0, -1.0])
def test_asymmetry_puts_more_alpha_on_the_side_it_names(asymmetry: float) -> None:
    schedule = Schedule(asymmetry=(AsymmetryStep(0.0, asymmetry),))
    _, af7, af8, _ = synthesize(SimulatorConfig(), schedule, 0, 20 * 256)
    frequencies, power = welch(np.stack([af7, af8]), fs=RATE, nperseg=512)
    alpha = power[:, (frequencies >= 8) & (frequencies <= 13)].sum(axis=1)
    faa = np.log(alpha[1] / alpha[0])  # ln(P_right / P_left)
    assert np.sign(faa) == np.sign(asymmetry)
    assert 1.0 < abs(faa) <= 2.0  # 2 * asymmetry for alpha alone; background dilutes it


def test_flipping_alternates_the_asymmetry() -> None:
    steps = Schedule.flipping(every_s=10.0, total_s=35.0, start=0.8).asymmetry
    assert [(s.at_s, s.asymmetry) for s in steps] == [(0, 0.8), (10, -0.8), (20, 0.8), (30, -0.8)]


def test_config_files_load_and_their_errors_name_file_and_field(tmp_path: Path) -> None:
    montage = tmp_path / "montage.yaml"
    montage.write_text("left: AF7\nright: AF8\nreference: [TP9, TP10]\nsample_rate: 256\n")
    assert load_montage(montage) == MUSE_MASTOID
    montage.write_text("left: AF7\nright: AF8\nrate: 256\n")
    with pytest.raises(BciError, match=r"montage.yaml: rate: Unexpected"):
        load_montage(montage)
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(
        "asymmetry: [{at_s: 0, asymmetry: 1}]\nevents: [{at_s: 2, kind: blink, duration_s: 0.3}]"
    )
    assert load_schedule(schedule).events == (Event(2.0, "blink", 0.3),)
    schedule.write_text("events: [{at_s: 2, kind: blnk, duration_s: 0.3}]\n")
    with pytest.raises(BciError, match=r"schedule.yaml: events.0: kind must be one of .*'blnk'"):
        load_schedule(schedule)
