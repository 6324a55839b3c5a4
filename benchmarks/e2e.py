"""Round-trip latency of `bandmate jam` through a real JACK server: `bandmate bench e2e`.

Set-up. The benchmark starts its own `jackd -d dummy` (48 kHz, `--jack-period` frames) and
runs `bandmate jam` on it as a subprocess. A JACK client of ours, the probe
(benchmarks/jam_probe.py), takes the sound card's place: it is wired to jam's input and
output ports, records jam's output from the start, and after a second of silence plays a
train of decaying chirps (10 ms, 200 Hz -> 8 kHz, 0.2-0.3 s apart at seeded random gaps, so
they land at every phase of the model's hop, each at its own level, so no two are alike) into
jam's input.

What is measured. The accompaniment is not an echo of the input, so there is no delayed
copy to correlate with. But the engine is deterministic, so the benchmark renders offline,
with the same Session code, exactly what jam must play for the probe's input, and locates
the recording against it sample for sample (benchmarks/e2e_alignment.py says how). Then:

- accompaniment lag, per chirp: the accompaniment for the input sample the probe fed at
  frame f is found, by an exact search of 2048 samples up to a second late, at frame f + lag.
  This is the quantity the engine reports as its latency ("input sample i is accompanied at
  output sample i + latency"); its distribution is compared with what jam printed, which
  must agree within 1 ms. On a sample clock it is one number unless JACK drops periods.
  An xrun can cost jam a period of input, which moves the rest of the signal in jam's
  input; the search follows such moves (reported as input slips), so later chirps are
  still found.
  The accompaniment of input sample i is what the session plays `latency_samples` after it
  (the codec's synthesis delay, less the hops of anticipation that pay it back), so the lag
  includes the session's latency as well as jam's buffer and the device's.
- reaction time, per chirp: the lag's buffer and device part plus the framing wait, where
  the framing wait (measured offline by leaving just that chirp out and finding the first
  output sample that changes) is the time until the model's next hop boundary: the model
  hears input in 1024-sample hops, so a new sound can change the accompaniment only from the
  next hop on (1 to 1024 samples). It can come before the lag: the codec's overlapping
  synthesis windows start to sound a frame before its centre.
- dry path: a second, short jam run with `--dry-gain 1 --wet-gain 0` plays its input back
  unchanged; the same chirps found in it give the device part (JACK + PortAudio) alone.

What is counted. Frames on JACK's clock from the period in which the probe writes a sample
on its output port to the period in which the response arrives on its input port: JACK's
graph (a cycle through two clients costs one period), PortAudio's buffering, jam's worker
buffer and the model's framing. Not counted: converters and driver buffers of a real
interface. JACK describes those as the system ports' latencies (in the JSON; the dummy
driver gives capture 1 period, playback 2), and PortAudio, whose figure is the device part
jam prints, takes them from the system ports it connects to when it opens; the probe
stands in front of them. On this driver the loop through the probe and PortAudio's figure
agree to the sample at every period and block size tried (128 to 512 frames).

Glitches. Lost JACK periods (xruns) and late inference (misses) make jam's output depart
from the offline rendering. After the signal's start the alignment follows them; between
the lead-in and the start they leave nothing exact to locate the start by, so that
recording is made again (`--attempts`, reported under glitches.failed_attempts).

Target (issue 8): <= hop + 2 blocks + 5 ms, judged for the accompaniment lag and for the
worst reaction time.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import e2e_alignment as align
from benchmarks.e2e_alignment import ProbeSignal
from benchmarks.jam_probe import JamProbe, ReportedLatency, find_exactly, jam_command
from benchmarks.jam_probe import parse_jam_latency as parse_reported
from benchmarks.report import distribution_ms
from engine.backends import Backend
from engine.errors import EngineError

RATE = 48_000  # the model's rate: no resampling, so the engine's latency is in whole samples
CHIRP_SECONDS = 0.01


@dataclass(frozen=True)
class E2EBenchConfig:
    seconds: float = 30.0  # of chirps through the accompaniment path
    blocksize: int = 256  # jam's --blocksize
    jack_period: int = 256  # jackd -p
    extra_blocks: int = 2  # jam's --extra-blocks
    dry_seconds: float = 3.0  # of chirps through the dry path
    checkpoint: Path | None = None  # None: the shipped default
    seed: int = 0  # the chirps' gaps and jam's noise
    lead_in_seconds: float = 1.0  # silent input first: jam's answer to it pins the timing down
    max_lag_seconds: float = 1.0  # how late an answer is searched for
    attempts: int = 3  # recordings tried when glitches leave the signal's start unlocatable

    def __post_init__(self) -> None:
        if self.seconds < 1 or self.dry_seconds < 0.5:
            raise EngineError("give at least 1 s of signal (and 0.5 s for the dry path)")
        if self.attempts < 1:
            raise EngineError("give at least 1 attempt")


@dataclass(frozen=True)
class JamRecording:
    recorded: np.ndarray  # jam's output on the probe's clock
    started: int  # recorded index of the frame the probe fed the signal's first sample at
    reported: ReportedLatency
    telemetry: str  # jam's closing line: compute, misses, device xruns
    probe_xruns: list[int]  # recorded index of each xrun the probe saw

    def glitch_summary(self) -> str:
        nearest = sorted(self.probe_xruns, key=lambda x: abs(x - self.started))[:3]
        near = ", ".join(f"{1e3 * (x - self.started) / RATE:+.0f} ms" for x in sorted(nearest))
        return (
            f"probe xruns: {len(self.probe_xruns)} (nearest the signal's start: {near or '-'}); "
            f"jam {self.telemetry}"
        )


def chirp_train(seconds: float, seed: int) -> ProbeSignal:
    """The probe's signal. It starts with an event, so its very first sample is loud: a
    one-sample shift changes the model's input."""
    t = np.arange(int(CHIRP_SECONDS * RATE)) / RATE
    phase = 2 * np.pi * (200 * t + (8000 - 200) * t**2 / (2 * CHIRP_SECONDS))
    chirp = (0.5 * np.exp(-t / 0.002) * np.cos(phase)).astype(np.float32)
    rng = np.random.default_rng(seed)
    length, events, at = int(seconds * RATE), [], 0
    while at + len(chirp) <= length:
        events.append(at)
        at += int(rng.uniform(0.2, 0.3) * RATE)
    train = np.zeros(length, np.float32)
    for event in events:
        train[event : event + len(chirp)] = chirp * np.float32(rng.uniform(0.5, 1.0))
    return ProbeSignal(train, np.array(events), len(chirp))


def record_through_jam(train: np.ndarray, config: E2EBenchConfig, dry: bool) -> JamRecording:
    from tqdm import tqdm

    tail = config.max_lag_seconds + 0.1
    probe = JamProbe(train, config.lead_in_seconds + len(train) / RATE + tail + 1)
    options = ["--samplerate", str(RATE), "--blocksize", str(config.blocksize),
               "--extra-blocks", str(config.extra_blocks), "--backend", "onnx",
               "--threads", "1", "--seed", str(config.seed)]  # fmt: skip
    if config.checkpoint is not None:
        options += ["--checkpoint", str(config.checkpoint)]
    if dry:
        options += ["--dry-gain", "1", "--wet-gain", "0"]
    jam = subprocess.Popen(jam_command(*options), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        probe.wait_for_jam_ports(jam)
        probe.recording = True
        time.sleep(config.lead_in_seconds)
        probe.feeding = True
        path = "dry path" if dry else "accompaniment"
        with tqdm(total=round(len(train) / RATE), desc=path, unit="s", leave=False) as bar:
            while not probe.finished_feeding:
                if jam.poll() is not None:
                    raise EngineError(f"bandmate jam stopped: {jam.communicate()[1].strip()}")
                time.sleep(0.1)
                bar.update(probe.fed // RATE - bar.n)
        time.sleep(tail)
        probe.recording = False
        # How a service stops jam: it ends as on Ctrl-C, printing its telemetry. SIGINT would
        # be ignored when this benchmark itself runs as a background job of a script.
        jam.terminate()
        try:
            stdout, stderr = jam.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            raise EngineError("bandmate jam did not exit within 60 s of SIGTERM") from None
    finally:
        if jam.poll() is None:
            jam.kill()
            jam.wait()
        probe.close()
    if jam.returncode != 0:
        raise EngineError(f"bandmate jam failed: {stderr.strip().splitlines()[-1:]}")
    if probe.feed_started_at is None:
        raise EngineError("the probe never fed its signal")
    telemetry = re.search(r"^telemetry: .*$", stdout, re.M)
    return JamRecording(probe.recorded[: probe.captured].copy(), probe.feed_started_at,
                        parse_reported(stdout), telemetry[0] if telemetry else "",
                        list(probe.xruns))  # fmt: skip


def stats_ms(samples: list[int]) -> dict[str, float | int]:
    """Frames at the JACK rate, as durations."""
    return distribution_ms(1e3 * np.asarray(samples, float) / RATE)


def system_port_latencies(server_name: str) -> dict[str, dict[str, list[int]]]:
    """`jack_lsp -l`: each system port's capture and playback latency range, in frames."""
    listing = subprocess.run(["jack_lsp", "-s", server_name, "-l"], capture_output=True,
                             text=True, timeout=10).stdout  # fmt: skip
    ports: dict[str, dict[str, list[int]]] = {}
    port = ""
    for line in listing.splitlines():
        if not line.startswith("\t"):
            port = line.strip()
        elif port.startswith("system:") and (
            found := re.search(r"port (\w+) latency = \[ (\d+) (\d+) \]", line)
        ):
            ports.setdefault(port, {})[found[1]] = [int(found[2]), int(found[3])]
    return ports


def jam_glitches(telemetry: str) -> dict[str, int | None]:
    """Misses and device xruns from jam's closing telemetry line."""
    counts = {}
    for key, pattern in (("jam_misses", r"(\d+) misses"), ("jam_xruns", r"(\d+) device xruns")):
        found = re.search(pattern, telemetry)
        counts[key] = int(found[1]) if found else None
    return counts


def dry_lags(recording: JamRecording, signal: ProbeSignal, max_lag: int) -> list[int]:
    """Each chirp found unchanged in the dry path's output: its lag in frames."""
    lags, length = [], signal.event_length
    for event in signal.events.tolist():
        fed_at = recording.started + event
        within = recording.recorded[fed_at : fed_at + max_lag + length]
        if (found := find_exactly(signal.train[event : event + length], within)) is not None:
            lags.append(found)
    return lags


def record_and_locate(
    backend: Backend, signal: ProbeSignal, config: E2EBenchConfig
) -> tuple[JamRecording, int, list[str]]:
    """Record the signal through jam and find the session input index of its first sample.

    Lost JACK periods (xruns) and late inference (misses) between the lead-in and the
    signal's start leave no exact rendering to find it by; that recording is then made
    again, up to `config.attempts` times. Returns the recording, the onset, and why each
    earlier attempt failed."""
    failed: list[str] = []
    while True:
        wet = record_through_jam(signal.train, config, dry=False)
        if wet.reported.backend != backend.name:
            raise EngineError(
                f"jam ran {wet.reported.backend}, the offline rendering {backend.name}"
            )
        seed, recorded, started = config.seed, wet.recorded, wet.started
        try:
            offset = align.output_offset(backend, seed, recorded, started)
            departure = align.first_departure(backend, seed, recorded, started, offset)
            onset = align.locate_onset(backend, seed, signal.train, recorded, offset, departure)
        except EngineError as exc:
            failed.append(f"{exc} ({wet.glitch_summary()})")
            if len(failed) == config.attempts:
                raise EngineError(
                    f"{len(failed)} recordings failed; the last: {failed[-1]}"
                ) from None
            print(f"attempt {len(failed)}: {failed[-1]}; recording again", file=sys.stderr)
            continue
        return wet, onset, failed


def run_e2e_benchmark(config: E2EBenchConfig) -> dict[str, Any]:
    from engine.backends import create_backend
    from engine.checkpoint import load_engine_checkpoint
    from engine.jackd import JackServer

    checkpoint = load_engine_checkpoint(config.checkpoint)
    if checkpoint.info.sample_rate != RATE:
        raise EngineError(f"the benchmark runs JACK at {RATE} Hz, the model's rate must match")
    backend = create_backend(checkpoint, "onnx", threads=1)
    signal, dry_signal = (
        chirp_train(config.seconds, config.seed),
        chirp_train(config.dry_seconds, config.seed),
    )
    with JackServer(RATE, config.jack_period, name=f"bm-e2e-{os.getpid()}") as jack:
        os.environ.update(jack.client_env())  # the probe is a JACK client of this process
        ports = system_port_latencies(jack.name)
        wet, onset, failed = record_and_locate(backend, signal, config)
        dry = record_through_jam(dry_signal.train, config, dry=True)
    max_lag = round(config.max_lag_seconds * RATE)
    seed, recorded, started = config.seed, wet.recorded, wet.started
    slip_step = min(config.jack_period, config.blocksize)  # what an xrun can cost jam's input
    timings = align.event_timings(backend, seed, signal, recorded, started, onset, max_lag,
                                  slip_step)  # fmt: skip
    lags = [t.lag for t in timings if t.lag is not None]
    waits = [t.framing_wait for t in timings if t.framing_wait is not None]
    session_latency = align.fresh_session(backend, seed).latency_samples
    reactions = [t.lag - session_latency + t.framing_wait for t in timings
                 if t.lag is not None and t.framing_wait is not None]  # fmt: skip
    reported = wet.reported.samples
    hop = checkpoint.info.hop
    target_ms = 1e3 * (hop + 2 * config.blocksize) / RATE + 5.0
    alignment, reaction = stats_ms(lags), stats_ms(reactions)
    worst = max((abs(lag - reported) for lag in lags), default=None)
    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "checkpoint": str(checkpoint.directory),
        "hop_ms": 1e3 * hop / RATE,
        "jack": {
            "sample_rate": RATE,
            "period": config.jack_period,
            "system_port_latency_frames": ports,
        },
        "reported": {**asdict(wet.reported), "latency_ms": 1e3 * reported / RATE},
        "session_latency_ms": 1e3 * session_latency / RATE,
        "accompaniment_lag": {
            **alignment,
            "events": len(signal.events),
            "matched": len(lags),
            "distinct_lags_samples": sorted(set(lags)),
            # Moves of the signal in jam's input found on the way: periods lost to xruns.
            "input_slips_samples": [t.slip for t in timings if t.slip],
            "max_difference_from_reported_ms": None if worst is None else 1e3 * worst / RATE,
            "agrees_within_1ms": worst is not None and worst <= RATE // 1000,
        },
        "framing_wait": stats_ms(waits),
        "reaction": reaction,
        "dry_path": {
            **stats_ms(dry_lags(dry, dry_signal, max_lag)),
            "events": len(dry_signal.events),
            "reported_device_ms": dry.reported.device_ms,
        },
        "target": {
            "ms": target_ms,
            "accompaniment_lag_within": bool(lags) and alignment["max_ms"] <= target_ms,
            "worst_reaction_within": bool(reactions) and reaction["max_ms"] <= target_ms,
        },
        # Lost JACK periods (xruns) and late inference (misses) make the output depart from
        # the offline rendering (a lost input period for good, a miss for its fade), so the
        # chirps they touch cannot be located.
        "glitches": {
            "probe_xruns": len(wet.probe_xruns),
            **jam_glitches(wet.telemetry),
            "probe_xruns_dry_path": len(dry.probe_xruns),
            # Recordings made again because glitches hid the signal's start, and why.
            "failed_attempts": failed,
        },
        "jam_telemetry": {"accompaniment": wet.telemetry, "dry_path": dry.telemetry},
    }


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    config = report["config"]
    table = Table(
        title=f"jam round trip through jackd -d dummy: period {config['jack_period']}, "
        f"block {config['blocksize']}, {config['seconds']:g} s of chirps"
    )
    for column in ("measure", "n", "p50 ms", "p99 ms", "min ms", "max ms"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for label, key in (("accompaniment lag", "accompaniment_lag"),
                       ("model framing wait (offline)", "framing_wait"),
                       ("reaction = buffer + device + framing wait", "reaction"),
                       ("dry path (device part)", "dry_path")):  # fmt: skip
        row = report[key]
        times = (f"{row[k]:.2f}" if k in row else "-" for k in ("p50_ms", "p99_ms", "min_ms",
                                                                 "max_ms"))  # fmt: skip
        table.add_row(label, str(row["n"]), *times)
    Console().print(table)
    lag, reported, target = report["accompaniment_lag"], report["reported"], report["target"]
    verdict = {True: "pass", False: "FAIL"}
    worst = lag["max_difference_from_reported_ms"]
    print(
        f"reported by jam: {reported['latency_ms']:.2f} ms = {reported['samples']} samples "
        f"(device {reported['device_ms']} ms); measured lag differs by at most "
        f"{'-' if worst is None else f'{worst:.2f}'} ms: {verdict[lag['agrees_within_1ms']]} "
        f"(within 1 ms); {lag['matched']}/{lag['events']} chirps located"
    )
    print(
        f"target hop + 2 blocks + 5 ms = {target['ms']:.2f} ms: accompaniment lag "
        f"{verdict[target['accompaniment_lag_within']]}, worst reaction "
        f"{verdict[target['worst_reaction_within']]}; glitches: {report['glitches']}"
    )
