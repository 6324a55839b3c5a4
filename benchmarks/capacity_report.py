"""The table and summary lines `bandmate bench capacity` prints for its search
(benchmarks/capacity_search.py)."""

from __future__ import annotations

from typing import Any


def print_search_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sessions at real-time pace, hop {report['hop_ms']:.2f} ms")
    for column in ("phase", "backend", "window ms", "N", "seconds", "misses", "join misses",
                   "round p50 ms", "round p99 ms", "max ms", "round trip p50/p99 ms"):  # fmt: skip
        table.add_column(column, justify="right")
    runs = [run for entry in report["engine"].values() for run in entry["runs"]]
    runs += report["server"]["runs"] if report["server"] else []
    for run in runs:
        window = run.get("batch_window_ms")
        trip = (f"{run['round_trip_p50_ms']:.1f} / {run['round_trip_p99_ms']:.1f}"
                if run.get("round_trip_p50_ms") is not None else "")  # fmt: skip
        table.add_row(run["phase"], run["backend"], "" if window is None else f"{window:g}",
                      str(run["sessions"]), f"{run['seconds']:.1f}", str(run["misses"]),
                      str(run["join_misses"]), f"{run['round_p50_ms']:.2f}",
                      f"{run['round_p99_ms']:.2f}", f"{run['round_max_ms']:.2f}", trip)  # fmt: skip
    console = Console()
    console.print(table)
    for name, entry in report["engine"].items():
        note = "" if entry["confirmed"] else " (not confirmed: the time budget ran out)"
        cap = " (the --max-sessions cap)" if entry["reached_max_sessions"] else ""
        console.print(f"engine {name}: {entry['capacity']} sessions{cap}{note}")
    if report["server"]:
        server = report["server"]
        for entry in server["windows"]:
            found = entry["capacity"]
            shown = (
                "not confirmed (the time budget ran out)" if found is None
                else f"{found} sessions (median of {server['repeats']}: misses "
                f"{entry['confirming_misses']})"
            )  # fmt: skip
            cost = ""
            if entry["latency_ms"] is not None:
                cost = (f"; latency {entry['latency_ms']:.1f} ms reported (window included), "
                        f"round trip p50 {entry['round_trip_p50_ms']:.1f} / p99 "
                        f"{entry['round_trip_p99_ms']:.1f} ms")  # fmt: skip
            window = entry["batch_window_ms"]
            console.print(
                f"server ({server['backend']}, batch window "
                f"{'default' if window is None else f'{window:g} ms'}): {shown}{cost}"
            )
