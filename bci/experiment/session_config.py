"""What `session run` is asked to do: its config, and the plan it follows, as `--dry-run`
prints it (the participant's blocks in order, each after its get-ready countdown, with the
onsets and the total; the self-paced SAM ratings come on top)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bci.errors import BciError
from bci.experiment.experiment_protocol import (
    PlannedBlock,
    Protocol,
    load_protocol,
    participant_index,
    plan_session,
)
from bci.live.lsl_input import StreamQuery
from bci.montage import MUSE, Montage

RATINGS = ("page", "prompt", "auto")


@dataclass(frozen=True)
class RunnerConfig:
    protocol: Path
    participant: str
    out: Path
    covariates: dict[str, float] = field(default_factory=dict)
    query: StreamQuery = field(default_factory=StreamQuery)
    montage: Montage = MUSE
    midi_port: str | None = None
    synth_driver: str | None = None
    # "page": the participant clicks SAM on the page; "prompt": typed at the terminal;
    # "auto": every rating 5, and no waiting for Start (tests, demos)
    ratings: str = "page"
    overwrite: bool = False
    seed: int = 0
    server_osc: str | None = None  # "HOST:PORT" of `bandmate serve --osc-port`: its page
    # shows the instructions, and the valence drives its accompaniment
    time_scale: float = 1.0  # every duration times this (0.1: a 12-minute protocol in 72 s)
    session: str | None = None  # the BIDS session label; None: the participant's next
    page_port: int | None = 0  # the participant page's port (0: any free one); None: no page
    ready_s: float = 3.0  # the get-ready countdown before each block, before time_scale

    def __post_init__(self) -> None:
        if self.ratings not in RATINGS:
            raise BciError(f"--ratings is one of {', '.join(RATINGS)}, not {self.ratings!r}")
        if self.ratings == "page" and self.page_port is None:
            raise BciError("--ratings page needs the participant page: use prompt or auto")


def parse_covariates(text: str | None) -> dict[str, float]:
    """'musical_training=5,acting=0' -> {'musical_training': 5.0, 'acting': 0.0}."""
    covariates: dict[str, float] = {}
    for item in filter(None, (text or "").split(",")):
        name, _, value = item.partition("=")
        try:
            covariates[name.strip()] = float(value)
        except ValueError:
            raise BciError(f"covariate {item!r}: expected NAME=NUMBER") from None
        if not name.strip().isidentifier():
            raise BciError(f"covariate {item!r}: the name must be a word like musical_training")
    return covariates


def planned_session(config: RunnerConfig) -> tuple[Protocol, list[PlannedBlock]]:
    protocol = load_protocol(config.protocol)
    index = participant_index(config.participant)
    return protocol, plan_session(protocol, index, config.time_scale)


def schedule_lines(config: RunnerConfig) -> list[str]:
    """`session run --dry-run`: the participant's blocks with their onsets, and the total."""
    protocol, plan = planned_session(config)
    ready = config.ready_s * config.time_scale
    rated = sum(p.block.ratings for p in plan)
    lines = [
        f"{protocol.name} (version {protocol.version}) for {config.participant}, time scale "
        f"{config.time_scale:g}: {len(plan)} blocks, each after a {ready:g} s get-ready "
        "countdown",
        f"{'#':>3}  {'onset':>7}  {'block':<16}{'kind':<22}{'seconds':>8}  music     SAM",
    ]
    onset = 0.0
    for planned in plan:
        block = planned.block
        onset += ready
        lines.append(
            f"{planned.index + 1:>3}  {_clock(onset):>7}  {block.name:<16}{block.kind:<22}"
            f"{planned.duration_s:>8g}  {block.music:<10}{'yes' if block.ratings else '-'}"
        )
        onset += planned.duration_s
    lines.append(f"total {_clock(onset)} ({onset:g} s), plus {rated} self-paced SAM ratings")
    return lines


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"
