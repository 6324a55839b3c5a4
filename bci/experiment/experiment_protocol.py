"""Experiment protocols: which blocks a participant does, in which order, and for how long.

A protocol file (YAML, see `protocols/seed_study.yaml`) has two parts. `blocks` is the pool:
each block says what the participant is asked to do (`instruction`), for how long, what the
music does meanwhile (`feedback`: the BCMI loop plays from this participant's EEG; `sham`: music
that does not follow it, for control conditions; `silent`), and whether SAM self-ratings
(valence and arousal, 1-9) follow it. `sequence` is the order, written with block names. One
pass through the sequence is a repetition, and a session is `repetitions` passes.

A sequence item is one of:

- `eyes_open`: a block, by name.
- `{block: eyes_open, once: true}`: the same, but run only in the first repetition. Baselines
  are marked this way: the loop is calibrated once per session, not once per repetition.
- `{counterbalance: [happy, sad], after_each: rest}`: these blocks in an order that depends on
  the participant (below). `after_each` names a block that follows each of them, so a rest
  between emotion blocks stays between them whatever the order. `once` works here too.

Counterbalancing uses a balanced Latin square (Williams, 1949). For k conditions, row 0 is
0, 1, k-1, 2, k-2, 3, ... and row r adds r to every entry, mod k. Over the k rows each condition
takes each position once and, when k is even, each ordered pair of neighbours occurs exactly
once, which balances first-order carry-over (sad after happy as often as happy after sad). No
k-row square balances neighbours for odd k, so the odd design adds the k rows reversed: 2k rows,
each ordered pair of neighbours twice. Participant p (0-based) gets row p mod the number of rows
and keeps it in every repetition, so a study is fully balanced when its participant count is a
multiple of k (even k) or 2k (odd k).

Errors point at lines. `load_protocol` composes the YAML into a node tree, which keeps each
node's line, and constructs the data from that same tree; a pydantic error's `loc`, such as
("blocks", 2, "duration_s"), is then a path through the tree. Checks that span fields (unknown
block names, the baseline) raise `_FieldError`, which carries its own path relative to the model
being validated, so they point at the offending entry rather than at the top of the file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bci.errors import BciError
from bci.live.harmony import SHIPPED_CHORD_MODEL, ChordTable

EXAMPLE_PROTOCOL = Path(__file__).parent / "protocols" / "seed_study.yaml"

BlockKind = Literal["baseline_eyes_open", "baseline_eyes_closed", "rest", "emotion"]
BASELINE_KINDS: frozenset[str] = frozenset({"baseline_eyes_open", "baseline_eyes_closed"})
MusicCondition = Literal["feedback", "sham", "silent"]

# The Self-Assessment Manikin, as the seed study used it. The scale is a field of the protocol
# so that a file says which scale its ratings are on; another scale would be a new literal.
RatingScale = Literal["sam_1_9"]
SAM_DIMENSIONS = ("valence", "arousal")
SAM_RANGE = (1, 9)

Loc = tuple[str | int, ...]


def _dotted(loc: Sequence[str | int]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


class _FieldError(ValueError):
    """A problem found by a model validator that knows which field it is about. pydantic keeps
    the exception in the error's context, so `load_protocol` can extend the location with `loc`
    and find the line; code that builds models directly sees `loc: message`."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(f"{_dotted(loc)}: {message}")
        self.loc = loc
        self.message = message


class Block(BaseModel):
    """One block of the pool: a stretch of time with one instruction and one music condition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: BlockKind
    instruction: str = Field(min_length=1)  # shown to the participant
    duration_s: float = Field(gt=0, allow_inf_nan=False)
    target_emotion: str | None = None  # required for emotion blocks, e.g. "happy"
    music: MusicCondition = "silent"  # an emotion block defaults to "feedback"
    ratings: bool = False  # SAM after the block; an emotion block defaults to True

    @model_validator(mode="before")
    @classmethod
    def _emotion_defaults(cls, data: Any) -> Any:
        # Defaults that depend on `kind` are filled before validation, so the fields stay
        # plain types and the model can stay frozen.
        if isinstance(data, dict) and data.get("kind") == "emotion":
            data = {"music": "feedback", "ratings": True, **data}
        return data

    @model_validator(mode="after")
    def _target_iff_emotion(self) -> Block:
        if self.kind == "emotion" and not self.target_emotion:
            raise _FieldError(
                ("target_emotion",), "an emotion block needs a target_emotion (e.g. happy)"
            )
        if self.kind != "emotion" and self.target_emotion is not None:
            raise _FieldError(
                ("target_emotion",), f"only emotion blocks have one; this is a {self.kind} block"
            )
        return self

    @property
    def is_baseline(self) -> bool:
        return self.kind in BASELINE_KINDS


class SequenceItem(BaseModel):
    """One entry of `sequence`: a block, or a counterbalanced group (see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    block: str | None = None
    counterbalance: tuple[str, ...] | None = Field(default=None, min_length=2)
    after_each: str | None = None  # a block that follows each block of the group
    once: bool = False  # run only in the first repetition

    @model_validator(mode="before")
    @classmethod
    def _name_means_block(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"block": data}
        if not isinstance(data, dict):
            raise ValueError("expected a block name or a mapping with block or counterbalance")
        return data

    @model_validator(mode="after")
    def _one_kind_of_item(self) -> SequenceItem:
        if (self.block is None) == (self.counterbalance is None):
            raise ValueError("an item has either block or counterbalance, not both or neither")
        if self.block is not None and self.after_each is not None:
            raise _FieldError(("after_each",), "only a counterbalance group has after_each")
        if self.counterbalance is not None and len(set(self.counterbalance)) < len(
            self.counterbalance
        ):
            raise _FieldError(("counterbalance",), "a block is named twice in the group")
        return self

    def references(self) -> list[tuple[Loc, str]]:
        """Every block name this item uses, with its path inside the item."""
        if self.block is not None:
            return [(("block",), self.block)]
        named: list[tuple[Loc, str]] = [
            (("counterbalance", i), name) for i, name in enumerate(self.counterbalance or ())
        ]
        if self.after_each is not None:
            named.append((("after_each",), self.after_each))
        return named


class Protocol(BaseModel):
    """A study's protocol: the block pool, the order, and how often the order repeats."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    version: int
    baseline_block: str  # the block whose EEG calibrates the BCMI loop
    blocks: tuple[Block, ...] = Field(min_length=1)
    sequence: tuple[SequenceItem, ...] = Field(min_length=1)
    repetitions: int = Field(default=1, ge=1)
    rating_scale: RatingScale = "sam_1_9"
    # Where the BCMI's chords come from: the rules, or the chord model playing `genre`.
    harmony: Literal["rules", "model"] = "rules"
    genre: str = "bach"

    @model_validator(mode="after")
    def _references_resolve(self) -> Protocol:
        seen: set[str] = set()
        for i, block in enumerate(self.blocks):
            if block.name in seen:
                raise _FieldError(("blocks", i, "name"), f"block '{block.name}' is defined twice")
            seen.add(block.name)
        for i, item in enumerate(self.sequence):
            for loc, name in item.references():
                if name not in seen:
                    known = ", ".join(sorted(seen))
                    raise _FieldError(
                        ("sequence", i, *loc), f"unknown block '{name}' (blocks are: {known})"
                    )
        self._check_baseline()
        self._check_genre()
        return self

    def _check_genre(self) -> None:
        if self.harmony != "model":
            return
        known = ChordTable.read(SHIPPED_CHORD_MODEL / "tokens.json").genres()
        if self.genre not in known:
            raise _FieldError(
                ("genre",), f"unknown genre '{self.genre}' (known: {', '.join(known)})"
            )

    def _check_baseline(self) -> None:
        names = {block.name: block for block in self.blocks}
        baseline = names.get(self.baseline_block)
        if baseline is None:
            raise _FieldError(("baseline_block",), f"no block is named '{self.baseline_block}'")
        if not baseline.is_baseline:
            raise _FieldError(
                ("baseline_block",),
                f"'{baseline.name}' is a {baseline.kind} block, not a baseline "
                f"({' or '.join(sorted(BASELINE_KINDS))})",
            )
        # The loop has nothing to calibrate against until the baseline has run, so no block
        # before it may play feedback (and the baseline itself cannot).
        for i, item in enumerate(self.sequence):
            used = [names[name] for _, name in item.references()]
            if any(block.name == baseline.name for block in used):
                return
            for block in used:
                if block.music == "feedback":
                    raise _FieldError(
                        ("sequence", i),
                        f"'{block.name}' plays feedback before the baseline_block "
                        f"'{baseline.name}' has calibrated the loop",
                    )
        raise _FieldError(
            ("baseline_block",), f"'{baseline.name}' never runs: add it to the sequence"
        )

    def block(self, name: str) -> Block:
        """The block of the pool with this name (KeyError if there is none)."""
        for block in self.blocks:
            if block.name == name:
                return block
        raise KeyError(name)


@dataclass(frozen=True)
class PlannedBlock:
    """One block as a participant will do it: its place in the session, its planned onset
    (seconds from the session's start, summing the durations before it; the self-paced
    ratings are not counted, so real onsets drift later by the time ratings take) and how long
    it runs: the protocol's duration times the session's time scale."""

    index: int  # 0-based position in the session
    repetition: int  # 0-based
    block: Block
    onset_s: float
    duration_s: float


def balanced_latin_square(conditions: int) -> list[list[int]]:
    """The rows of a Williams balanced Latin square over conditions 0..k-1: k rows for even k,
    2k rows (the k rows and their reverses) for odd k. See the module doc."""
    if conditions < 1:
        raise ValueError(f"a Latin square needs at least one condition, got {conditions}")
    # 0, 1, k-1, 2, k-2, ...: odd positions count up from 1, even ones down from k (mod k: 0).
    first = [
        (j + 1) // 2 if j % 2 else (conditions - j // 2) % conditions for j in range(conditions)
    ]
    rows = [[(entry + shift) % conditions for entry in first] for shift in range(conditions)]
    if conditions % 2:
        rows += [row[::-1] for row in rows]
    return rows


def plan_session(
    protocol: Protocol, participant_index: int, time_scale: float = 1.0
) -> list[PlannedBlock]:
    """The blocks participant `participant_index` (0-based) does, in order, with planned onsets.
    Deterministic: the same protocol and index always give the same plan. `time_scale`
    multiplies every duration (0.1 runs a 12-minute protocol in 72 s, for pilots and tests)."""
    if participant_index < 0:
        raise ValueError(f"participant_index is 0-based, got {participant_index}")
    if not 0 < time_scale < math.inf:
        raise BciError(f"the time scale must be a positive number, got {time_scale:g}")
    plan: list[PlannedBlock] = []
    onset_s = 0.0
    for repetition in range(protocol.repetitions):
        for item in protocol.sequence:
            if item.once and repetition > 0:
                continue
            for name in _ordered_names(item, participant_index):
                block = protocol.block(name)
                duration_s = block.duration_s * time_scale
                plan.append(PlannedBlock(index=len(plan), repetition=repetition, block=block,
                                         onset_s=onset_s, duration_s=duration_s))  # fmt: skip
                onset_s += duration_s
    return plan


def _ordered_names(item: SequenceItem, participant_index: int) -> list[str]:
    if item.block is not None:
        return [item.block]
    group = item.counterbalance or ()
    rows = balanced_latin_square(len(group))
    names: list[str] = []
    for condition in rows[participant_index % len(rows)]:
        names.append(group[condition])
        if item.after_each is not None:
            names.append(item.after_each)
    return names


# An optional "sub-" (or other letters and "-"/"_"), then the BIDS label: letters, then the
# participant's 1-based number. BIDS labels are alphanumeric, so the label drops the prefix.
_PARTICIPANT_ID = re.compile(r"(?:[A-Za-z]*[_-])?([A-Za-z]*?(\d+))")


def participant_label(participant_id: str) -> str:
    """The BIDS subject label of a participant id: "P01" -> "P01", "sub-07" -> "07"; BciError
    for an id without a trailing number."""
    return _match_participant(participant_id).group(1)


def participant_index(participant_id: str) -> int:
    """The 0-based index of a participant id that ends in their 1-based number: "P01", "sub-07"
    and "12" are 0, 6 and 11. BciError for anything else."""
    number = int(_match_participant(participant_id).group(2))
    if number < 1:
        raise BciError(f"participant id '{participant_id}': participant numbers start at 1")
    return number - 1


def _match_participant(participant_id: str) -> re.Match[str]:
    match = _PARTICIPANT_ID.fullmatch(participant_id.strip())
    if match is None:
        raise BciError(
            f"participant id '{participant_id}' should be a number, optionally after letters "
            "(P01, sub-07, 12)"
        )
    return match


def load_protocol(path: Path) -> Protocol:
    """Read and check a protocol file; every problem is a one-line BciError that starts with
    `file:line:` where a line is known."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else None
        raise BciError(f"{path}: cannot read it ({reason or error})") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f"{mark.line + 1}:" if mark is not None else ""
        problem = getattr(error, "problem", None) or "cannot parse it"
        raise BciError(f"{path}:{line} not valid YAML: {problem}") from None
    finally:
        loader.dispose()
    if root is None or not isinstance(data, dict):
        found = "nothing" if data is None else type(data).__name__
        raise BciError(f"{path}:1: expected a mapping of protocol fields, got {found}")
    try:
        return Protocol.model_validate(data)
    except ValidationError as error:
        raise BciError(_describe_first_problem(path, root, error)) from None


def _describe_first_problem(path: Path, root: yaml.Node, error: ValidationError) -> str:
    problems = error.errors()
    first = problems[0]
    loc: Loc = tuple(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, _FieldError):
        loc, message = (*loc, *cause.loc), cause.message
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return f"{path}:{_line_of(root, loc)}: {_dotted(loc)}: {message}{more}"


def _line_of(root: yaml.Node, loc: Loc) -> int:
    """The 1-based line of the deepest node along `loc`; a key's own line for mapping entries
    (a nested mapping's value starts on the line below its key). Parts that are not in the file,
    such as a missing field, stop the walk at the entry that should hold them."""
    node, line = root, root.start_mark.line
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            entry = next((e for e in node.value if e[0].value == str(part)), None)
            if entry is None:
                break
            line, node = entry[0].start_mark.line, entry[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line
        else:
            break
    return line + 1
