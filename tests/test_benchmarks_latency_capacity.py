"""`bandmate bench latency` (per part, Markdown, plot) and `bandmate bench capacity`'s search,
run as real commands on the tiny checkpoint with short durations. No timing targets here:
the figures depend on the machine; the tests check what is reported and that it adds up."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from engine.backends import Backend
from tests.helpers import BANDMATE, models_dir

# Slow, so not in `make test-quick`: every test here runs a benchmark as a real command, capacity
# through real servers.
pytestmark = pytest.mark.slow

PARTS = ("encode", "generate", "decode")


def bandmate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BANDMATE, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_bench_latency_times_each_part_and_writes_markdown_and_plot(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    paths = {kind: tmp_path / f"latency.{kind}" for kind in ("json", "md", "png")}
    outputs = ("--json", paths["json"], "--markdown", paths["md"], "--plot", paths["png"])
    result = bandmate(
        "bench", "latency", "--seconds", "2", "--checkpoint", tiny_checkpoint, *outputs
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(paths["json"].read_text())
    hops = 2 * 48_000 // 1024
    for name in ("onnx-cpu", "torch-cpu"):
        entry = report[name]
        assert entry["hops"] == hops
        assert entry["threads"]["intra_op"] == 1  # read back from the runtime: --threads 1
        for part in PARTS:
            stats = entry["components"][part]
            assert stats["hops"] == hops
            assert 0 < stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]
            assert stats["p99_over_hop"] == pytest.approx(stats["p99_ms"] / report["hop_ms"])
        assert entry["components_mean_sum_over_step_mean"] > 0
    markdown = paths["md"].read_text()
    assert markdown in result.stdout  # printed as well as written
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table_rows) == 1 + 2 * (1 + len(PARTS))  # header, then step + parts per backend
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_latency_steps_a_batch_behind_its_flag(tiny_checkpoint: Path, tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    result = bandmate("bench", "latency", "--seconds", "1", "--checkpoint", tiny_checkpoint,
                      "--backend", "onnx-cpu", "--batch", "3", "--json", path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(path.read_text())
    assert report["batch"] == 3 and "3 sessions per step" in result.stdout
    assert report["onnx-cpu"]["hops"] == 48_000 // 1024


def test_bench_latency_model_size_matches_the_checkpoint(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from benchmarks.latency_components import model_size
    from engine.checkpoint import load_engine_checkpoint
    from models.checkpoint import load_codec, load_generator

    size = model_size(load_engine_checkpoint(tiny_checkpoint))
    codec, generator = load_codec(tiny_checkpoint), load_generator(tiny_checkpoint)

    def elements(module: Any) -> int:  # parameters and buffers: what the weights files hold
        return sum(t.numel() for t in module.state_dict().values())

    parameters = size["parameters"]
    assert parameters["encode"] == elements(codec.encoder)
    assert parameters["decode"] == elements(codec.decoder)
    assert parameters["generate"] == elements(generator)
    assert parameters["total"] == sum(parameters[part] for part in PARTS)
    onnx_files = sorted(tiny_checkpoint.glob("*.onnx"))
    assert len(onnx_files) == 3
    assert size["onnx_bytes"] == sum(p.stat().st_size for p in onnx_files)


@pytest.fixture(scope="module")
def latency_run(tiny_checkpoint: Path) -> Any:
    """A short real run of one backend: what `bench latency --plot` draws."""
    from benchmarks.latency import LatencyBenchConfig, run_latency_benchmark

    config = LatencyBenchConfig(tiny_checkpoint, audio_seconds=2, backends=("onnx-cpu",))
    return run_latency_benchmark(config)


def drawn(run: Any) -> Any:
    from benchmarks.latency_report import latency_figure

    figure = latency_figure(run.report, run.samples_ms)
    figure.canvas.draw()
    return figure


def with_a_stalled_part(run: Any, part: str) -> Any:
    """The run with one hop of `part` twice as slow as the slowest step: as a stall that hit
    the parts' session and not the step's leaves it."""
    from benchmarks.latency import LatencyRun, summarize

    samples = {name: dict(parts) for name, parts in run.samples_ms.items()}
    report = copy.deepcopy(run.report)
    slow = samples["onnx-cpu"][part] = samples["onnx-cpu"][part].copy()
    slow[len(slow) // 2] = 2 * samples["onnx-cpu"]["step"].max()
    report["onnx-cpu"]["components"][part] = summarize(slow, report["hop_ms"])
    return LatencyRun(report, samples)


def test_latency_plot_legend_covers_no_plot(latency_run: Any) -> None:
    figure = drawn(latency_run)
    legends = [*figure.legends, *(a.get_legend() for a in figure.axes if a.get_legend())]
    assert legends
    for legend in legends:
        box = legend.get_window_extent()
        assert not any(box.overlaps(axis.get_window_extent()) for axis in figure.axes)


def test_latency_plot_labels_its_axes_at_one_two_five_steps(latency_run: Any) -> None:
    """A log axis labels only decades by default: 0.1, 1, 10 over the whole range."""
    axis = drawn(latency_run).axes[0]
    low, high = axis.get_xlim()
    labels = [t.get_text() for t in axis.get_xticklabels() if low <= t.get_position()[0] <= high]
    assert {"0.5", "1", "2", "5", "10", "20"} <= set(labels), labels
    shares = [t.get_text() for t in axis.get_yticklabels()]
    assert {"1 %", "2 %", "5 %", "10 %", "50 %", "100 %"} <= set(shares), shares


def test_latency_plot_and_table_note_a_part_slower_than_the_step(latency_run: Any) -> None:
    from benchmarks.latency_report import markdown_table

    plain = drawn(latency_run)
    assert not [t for t in plain.axes[0].texts if t.get_text()]
    assert "took longer than the slowest step" not in markdown_table(latency_run.report)
    stalled = with_a_stalled_part(latency_run, "decode")
    figure = drawn(stalled)
    axis = figure.axes[0]
    (note,) = [t for t in axis.texts if t.get_text()]
    assert note.get_text().startswith("onnx-cpu: the slowest decode (")
    assert "took longer than the slowest step" in note.get_text().replace("\n", " ")
    box = note.get_window_extent()
    assert not box.overlaps(axis.get_window_extent()), "the note hides curves"
    assert not box.overlaps(axis.title.get_window_extent()), "the note runs into the title"
    assert "- onnx-cpu: the slowest decode (" in markdown_table(stalled.report)


def check_engine_search(entry: dict[str, Any], max_sessions: int) -> None:
    """The search followed its rule: doubling then bisecting screens, the candidate is the
    largest clean screen, and the capacity had a clean full run with every N above it missing."""
    screens = [run for run in entry["runs"] if run["phase"] == "screen"]
    confirms = [run for run in entry["runs"] if run["phase"] == "confirm"]
    assert screens[0]["sessions"] == 1
    clean = [run["sessions"] for run in screens if run["misses"] == 0]
    assert entry["screen_candidate"] == max(clean, default=0)
    assert all(run["sessions"] <= max_sessions for run in entry["runs"])
    capacity = entry["capacity"]
    assert 0 <= capacity <= entry["screen_candidate"]
    assert entry["confirmed"]  # the default budget is far more than these short runs take
    if capacity:
        assert confirms[-1]["sessions"] == capacity and confirms[-1]["misses"] == 0
    assert all(run["misses"] > 0 for run in confirms if run["sessions"] > capacity)


def test_bench_capacity_search_finds_n_in_the_engine_then_confirms_it_through_the_server(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    served = models_dir(tmp_path / "models", tiny_checkpoint)
    report_path = tmp_path / "capacity.json"
    short = ("--seconds", "1", "--screen-seconds", "0.5", "--max-sessions", "3")
    result = bandmate("bench", "capacity", "--models-dir", served, *short, "--json", report_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert list(report["engine"]) == ["onnx-cpu"]  # no GPU here
    engine = report["engine"]["onnx-cpu"]
    check_engine_search(engine, max_sessions=3)
    server = report["server"]
    assert server["backend"] == "onnx-cpu"
    if engine["capacity"] == 0:
        assert server["runs"] == []
        return
    runs = server["runs"]
    assert runs[0]["sessions"] == engine["capacity"]  # the server starts at the engine's N
    assert server["capacity"] is not None and 0 <= server["capacity"] <= engine["capacity"]
    if server["capacity"]:
        assert runs[-1]["sessions"] == server["capacity"] and runs[-1]["misses"] == 0
        assert runs[-1]["dropped"] == 0 and runs[-1]["errors"] == 0
    assert "sessions" in result.stdout  # the summary lines follow the table


def test_bench_capacity_sweeps_the_batch_window_with_the_median_of_repeats(
    tiny_checkpoint: Path, onnx_backend: Backend, tmp_path: Path
) -> None:
    from engine.session import Session

    session_ms = 1e3 * Session(onnx_backend).latency_seconds
    served = models_dir(tmp_path / "models", tiny_checkpoint)
    report_path = tmp_path / "capacity.json"
    short = ("--seconds", "1", "--screen-seconds", "0.5", "--max-sessions", "2")
    sweep = ("--window", "0", "--window", "5", "--repeats", "3", "--budget-seconds", "600")
    result = bandmate("bench", "capacity", "--models-dir", served, *short, *sweep,
                      "--json", report_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    server = json.loads(report_path.read_text())["server"]
    assert server["repeats"] == 3
    assert [entry["batch_window_ms"] for entry in server["windows"]] == [0.0, 5.0]
    assert server["capacity"] == server["windows"][0]["capacity"]
    for entry in server["windows"]:
        runs = entry["runs"]
        assert {run["batch_window_ms"] for run in runs} == {entry["batch_window_ms"]}
        found = entry["capacity"]
        assert found is not None
        if not found:
            continue
        # The confirmation stopped as soon as most of its runs were clean (the median run).
        confirming = entry["confirming_misses"]
        assert 2 <= len(confirming) <= 3 and sorted(confirming)[len(confirming) // 2] == 0
        # The latency the sessions reported includes the window; the round trip is measured.
        assert entry["latency_ms"] == pytest.approx(session_ms + entry["batch_window_ms"])
        assert 0 < entry["round_trip_p50_ms"] <= entry["round_trip_p99_ms"]
    assert "batch window 5 ms" in result.stdout
