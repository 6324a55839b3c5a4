"""The live path: LiveEngine's callback and worker against file mode, underrun fades, and
`bandmate jam` / `bandmate devices` as real commands on a real JACK server."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.jam_probe import JamProbe, find_exactly
from engine.backends import Backend
from engine.filemode import accompany
from engine.jackd import JackServer
from engine.live_engine import FADE_SECONDS, LiveConfig, LiveEngine
from engine.session import Session, SessionConfig
from server.jam_status import JamStatus
from tests.helpers import BANDMATE

RATE = 48_000


@pytest.fixture(scope="module")
def recording(live_recording: np.ndarray) -> np.ndarray:
    return live_recording


def engine_for(backend: Backend, rate: int = RATE, **config: Any) -> LiveEngine:
    session = Session(backend, SessionConfig(device_rate=rate, seed=3))
    return LiveEngine(session, LiveConfig(samplerate=rate, **config), output_channels=4)


def callback(engine: LiveEngine, block: np.ndarray) -> np.ndarray:
    """One device callback with `block` on input channel 1 (a constant on channel 0, which
    must be ignored); returns the four output channels."""
    indata = np.stack([np.full_like(block, 0.5), block], axis=1)
    outdata = np.full((len(block), 4), np.nan, np.float32)
    engine.callback(indata, outdata, len(block), None, None)
    return outdata


def wait_until_processed(engine: LiveEngine, samples: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while engine.processed < samples:
        engine.check_worker()
        assert time.monotonic() < deadline, "the worker did not keep up"
        time.sleep(0.0005)


def live_run(engine: LiveEngine, audio: np.ndarray, block: int) -> np.ndarray:
    """Drive the callback block by block with the worker thread running, letting the worker
    finish each block before the next callback, so nothing underruns."""
    engine.start_worker()
    outputs = []
    try:
        for start in range(0, len(audio), block):
            outputs.append(callback(engine, audio[start : start + block]))
            wait_until_processed(engine, min(start + block, len(audio)))
    finally:
        engine.stop_worker()
    return np.concatenate(outputs)


@pytest.mark.parametrize("rate", [48_000, 44_100])
def test_live_accompaniment_equals_file_mode_delayed_by_the_reported_latency(
    onnx_backend: Backend, recording: np.ndarray, rate: int
) -> None:
    audio = recording[: 3 * RATE]
    engine = engine_for(onnx_backend, rate, input_channel=1, output_channel=2, extra_blocks=3)
    out = live_run(engine, audio, block=256)
    expected = accompany(audio, rate, onnx_backend, seed=3, blocksize=1000).accompaniment
    shift = engine.latency_samples  # no stream: the session's latency plus the extra blocks
    assert shift == engine.session.latency_samples + 3 * 256
    assert engine.session.telemetry.misses == 0
    np.testing.assert_array_equal(out[:, 2], out[:, 3])
    assert not out[:, :2].any(), "channels outside the output pair must be silent"
    assert not out[:shift, 2].any()
    np.testing.assert_array_equal(out[shift:, 2], expected[: len(audio) - shift])


def test_monitor_mix_is_dry_input_plus_accompaniment_with_their_gains(
    onnx_backend: Backend, recording: np.ndarray
) -> None:
    audio = recording[:RATE]
    wet = live_run(engine_for(onnx_backend, input_channel=1, output_channel=2), audio, 256)
    mixed_engine = engine_for(
        onnx_backend, input_channel=1, output_channel=2, dry_gain=0.5, wet_gain=0.25
    )
    mixed = live_run(mixed_engine, audio, 256)
    np.testing.assert_allclose(mixed[:, 2], 0.5 * audio + 0.25 * wet[:, 2], atol=1e-6)


def test_an_underrun_fades_out_counts_misses_and_the_accompaniment_realigns(
    onnx_backend: Backend, recording: np.ndarray
) -> None:
    """The worker is driven by hand (no thread) and stalls for six callbacks. The session is
    the real one; no stub backend."""
    audio, block, extra = recording[: 2 * RATE], 256, 2
    engine = engine_for(onnx_backend, input_channel=1, output_channel=2, extra_blocks=extra)
    fade = round(FADE_SECONDS * RATE)
    outputs, position, recovered_at = [], 0, None

    def play(frames: int) -> None:
        nonlocal position
        outputs.append(callback(engine, audio[position : position + frames])[:, 2])
        position += frames

    for _ in range(40):  # in step
        play(block)
        engine.work()
    underrun_at = engine.processed + extra * block  # where the buffered accompaniment ends
    for _ in range(6):  # the worker stalls; 384-frame callbacks run dry mid-block
        play(384)
    assert engine.session.telemetry.misses == 5
    while position + block <= len(audio):  # the worker catches up
        owed_before, start = engine.owed, position
        play(block)
        if owed_before and not engine.owed and recovered_at is None:
            recovered_at = start
        engine.work()
    assert engine.session.telemetry.misses == 6, "the first callback after the stall is short too"
    assert recovered_at is not None

    out = np.concatenate(outputs)
    expected = accompany(audio, RATE, onnx_backend, seed=3, blocksize=512).accompaniment
    shift = engine.latency_samples
    reference = np.concatenate([np.zeros(shift, np.float32), expected])[: len(out)]
    np.testing.assert_array_equal(out[:underrun_at], reference[:underrun_at])
    last = out[underrun_at - 1]
    ramp = np.clip(1 - np.arange(1, fade + 1) / fade, 0, None).astype(np.float32)
    np.testing.assert_allclose(out[underrun_at : underrun_at + fade], last * ramp, atol=1e-6)
    jumps = np.abs(np.diff(out[underrun_at - 1 : underrun_at + fade + 1]))
    assert jumps.max() <= abs(last) / fade + 1e-6, "the underrun must fade, not click"
    assert not out[underrun_at + fade : recovered_at].any()
    # After the fade-in the accompaniment is exactly where file mode has it: no drift.
    settled = recovered_at + fade
    assert settled < len(out) - RATE // 2
    np.testing.assert_array_equal(out[settled:], reference[settled:])


def test_jam_status_meters_the_input_peak_held_then_falling(onnx_backend: Backend) -> None:
    engine = engine_for(onnx_backend, input_channel=1, output_channel=2)
    status = JamStatus(engine)
    callback(engine, np.full(256, 0.5, np.float32))
    engine.work()
    assert status.line(now=100.0).startswith("input -6.0 dBFS [##################--] |")
    callback(engine, np.zeros(256, np.float32))
    engine.work()
    assert status.line(now=101.0).startswith("input -26.0 dBFS [###########---------] |")
    assert status.line(now=104.0).startswith("input silent [--------------------] |")


def test_jam_status_counts_the_misses(onnx_backend: Backend, recording: np.ndarray) -> None:
    """The worker never runs: the 2-block buffer plays out, and the next 2 callbacks miss."""
    engine = engine_for(onnx_backend, input_channel=1, output_channel=2, extra_blocks=2)
    for start in range(0, 4 * 256, 256):
        callback(engine, recording[start : start + 256])
    assert engine.session.telemetry.misses == 2
    assert JamStatus(engine).line(now=0.0).endswith(" | 2 misses | 0 xruns | 0:00")


def bandmate(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BANDMATE, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.jack
@pytest.mark.slow
def test_devices_lists_the_jack_device(jack_server: JackServer) -> None:
    result = bandmate("devices")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\s*\d+\s+2\s+2\s+48000\s+JACK Audio Connection Kit / ", result.stdout, re.M)


@pytest.mark.jack
@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--input-device", "no-such-device"], "no audio device matches 'no-such-device'"),
        (["--samplerate", "12345"], "unsupported sample rate 12345 Hz"),
        (["--input-channel", "7"], "input channel 7 out of range"),
        (["--samplerate", "44100"], "JACK runs at 48000 Hz, not 44100"),  # JACK cannot resample
    ],
)
def test_jam_reports_a_bad_setting_as_one_error_line(
    jack_server: JackServer, tiny_checkpoint: Path, options: list[str], fragment: str
) -> None:
    result = bandmate("jam", "--seconds", "1", "--checkpoint", tiny_checkpoint, *options)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.jack
@pytest.mark.slow
def test_jam_with_blocks_smaller_than_the_jack_period_buffers_two_periods_and_says_why(
    jack_server: JackServer, tiny_checkpoint: Path
) -> None:
    """100-frame blocks on JACK's 256-frame period come in bursts of up to 3 within one JACK
    cycle; with the default 2-block buffer nearly every period missed (210 misses in 2 s).
    A loaded machine still loses the odd period (xruns), so a few misses are tolerated."""
    result = bandmate("jam", "--seconds", "3", "--blocksize", "100",
                      "--checkpoint", tiny_checkpoint)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"^jam: JACK calls back once per 256-frame period, so 100-frame blocks "
                     r"come up to 3 at a time: the buffer is 6 blocks \(600 samples", result.stdout,
                     re.M), result.stdout  # fmt: skip
    assert re.search(r"^jam: backend .* block 100; .*buffer 12\.5 ms", result.stdout, re.M)
    telemetry = re.search(r"^telemetry: (\d+) hops, .*, (\d+) misses", result.stdout, re.M)
    assert telemetry, result.stdout
    hops, misses = int(telemetry[1]), int(telemetry[2])
    assert hops > 100 and misses < 20, result.stdout


@pytest.mark.jack
@pytest.mark.slow
def test_jam_shows_a_status_line_while_it_plays(
    jack_server: JackServer, tiny_checkpoint: Path
) -> None:
    """Into a pipe the status is a line every 5 s (bci/console.py); JACK's dummy driver
    captures silence."""
    result = bandmate("jam", "--seconds", "7", "--checkpoint", tiny_checkpoint)
    assert result.returncode == 0, result.stderr
    status = r"^status: input silent \[-{20}\] \| \d+ miss(es)? \| \d+ xruns? \| 0:0\d$"
    assert len(re.findall(status, result.stdout, re.M)) >= 2, result.stdout


@pytest.mark.jack
@pytest.mark.slow
def test_jam_exits_with_one_error_line_when_jackd_goes_away(
    tiny_checkpoint: Path, jack_server: JackServer
) -> None:
    """PortAudio blocks forever in stop/close once its JACK server is gone; jam must not."""
    # A short name: JACK 1.9.21 clients abort (malloc assertion) on 24- or 40-character ones.
    own = JackServer(name=f"bm-lost-{os.getpid()}").start()
    try:
        jam = subprocess.Popen(
            [BANDMATE, "jam", "--checkpoint", str(tiny_checkpoint)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **own.client_env()},
        )  # fmt: skip
        assert jam.stdout is not None and jam.stdout.readline().startswith("jam: ")
    finally:
        own.stop()
    stdout, stderr = jam.communicate(timeout=60)
    assert jam.returncode == 2
    assert stderr.strip().splitlines() == [
        "error: the audio device stopped calling back (is jackd gone?)"
    ]
    assert re.search(r"^telemetry: ", stdout, re.M), stdout


@pytest.mark.jack
@pytest.mark.slow
def test_jam_accompanies_a_recording_through_jack_exactly_as_file_mode_does(
    jack_server: JackServer, tiny_checkpoint: Path, onnx_backend: Backend, recording: np.ndarray
) -> None:
    client = JamProbe(recording, seconds=20, name="bandmate-test")
    jam = subprocess.Popen(
        [BANDMATE, "jam", "--seconds", "10", "--checkpoint", str(tiny_checkpoint),
         "--samplerate", "48000", "--blocksize", "256", "--extra-blocks", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        client.wait_for_jam_ports(jam)
        client.recording = True
        time.sleep(1.0)  # a second of silent input first: it pins down the alignment
        client.feeding = True
        stdout, stderr = jam.communicate(timeout=120)
    finally:
        if jam.poll() is None:
            jam.kill()
        client.close()
    assert jam.returncode == 0, stderr
    assert "Traceback" not in stderr
    reported = re.search(
        r"^jam: backend onnx-cpu;.*latency \d+\.\d ms = (\d+) samples", stdout, re.M
    )
    assert reported, stdout
    assert re.search(r"^telemetry: \d+ hops, p50 .* misses, real-time factor", stdout, re.M)

    recorded, started = client.recorded[: client.captured], client.feed_started_at
    assert started is not None and len(recorded) - started > 5 * RATE
    accompanied = recorded[started + 4096 :]
    assert not np.isnan(recorded).any()
    assert 1e-4 < float(np.sqrt(np.mean(accompanied**2))) < 1.0
    assert np.abs(accompanied).max() > 1e-2, "the accompaniment is silent"

    # While the input is silent, jam plays file mode's output for silence, sample for
    # sample; finding where gives the offset between our recorded count and file mode's.
    silence = accompany(np.zeros(started + 10 * RATE, np.float32), RATE, onnx_backend)
    windows = range(4096, started - 2048, 4096)
    found = [find_exactly(recorded[a : a + 2048], silence.accompaniment) for a in windows]
    matches = [(a, f - a) for a, f in zip(windows, found, strict=True) if f is not None]
    assert matches, "jam's output for silent input is nowhere file mode's"
    anchor, offset = matches[-1]  # file mode's output index = recorded index + offset
    # If the reported latency is the true one, jam heard our first fed sample as its input
    # sample `onset`, and all we recorded from the anchor until jam stopped is file mode's
    # output for that input. Except near an xrun: jam and this client may then disagree on a
    # period of input or output, and the model's state differs for a while. A difference is
    # allowed only if JACK reported an xrun at most the latency and a hop or two before it
    # shows, or (the report comes late) a period or two after.
    latency = int(reported.group(1))
    onset = started + offset + latency
    live_input = np.concatenate([np.zeros(onset, np.float32), recording, np.zeros(10 * RATE)])
    expected = accompany(live_input.astype(np.float32), RATE, onnx_backend).accompaniment
    stopped = int(np.flatnonzero(recorded)[-1]) - 1024  # then only silence came: jam's end
    differs = np.flatnonzero(
        recorded[anchor:stopped] != expected[anchor + offset : stopped + offset]
    )
    if len(differs):
        first = anchor + int(differs[0])
        assert any(first - latency - 4096 <= x <= first + 4096 for x in client.xruns), (
            f"live != file mode from recorded sample {first} (fed from {started}) with no xrun"
        )


@pytest.mark.jack
@pytest.mark.slow
def test_jam_stops_on_sigterm_as_on_ctrl_c_even_with_sigint_ignored(
    tiny_checkpoint: Path, jack_server: JackServer
) -> None:
    """A script's background job inherits SIGINT ignored; SIGTERM must still end the jam
    cleanly, with its telemetry, as a service manager's stop expects."""
    import signal

    jam = subprocess.Popen(
        [BANDMATE, "jam", "--checkpoint", str(tiny_checkpoint)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    assert jam.stdout is not None and jam.stdout.readline().startswith("jam: ")
    jam.send_signal(signal.SIGINT)  # ignored, as in a background job
    time.sleep(0.5)
    assert jam.poll() is None
    jam.terminate()
    stdout, stderr = jam.communicate(timeout=30)
    assert jam.returncode == 0, stderr
    assert re.search(r"^telemetry: ", stdout, re.M), stdout
