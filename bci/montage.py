"""Channel montages: which two electrodes the asymmetry is measured between.

Frontal alpha asymmetry compares one left and one right prefrontal electrode (AF7/AF8 on a
Muse, F3/F4 on 10-20 caps). Channels are picked by their *label* in the LSL stream
description, never by position, because devices disagree on channel order.

A montage may name reference channels (for a Muse, the mastoids TP9/TP10): the input then
subtracts their mean from left and right. The Muse's hardware reference is FPz, which sits
between AF7 and AF8 and picks up the same frontal activity; re-referencing to the mastoids
removes that shared term, at the price of the mastoids' own noise. It is optional for that
reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import ConfigDict

from bci.errors import BciError, load_yaml_config


@dataclass(frozen=True)
class Montage:
    __pydantic_config__ = ConfigDict(extra="forbid")  # a typo in a montage file is an error

    left: str
    right: str
    reference: tuple[str, ...] = ()  # subtract their mean from left and right; () = as recorded
    sample_rate: float = 256.0  # the nominal rate the stream must declare

    def __post_init__(self) -> None:
        labels = (self.left, self.right, *self.reference)
        if not all(label.strip() for label in labels):
            raise ValueError("channel labels must not be empty")
        if len(set(labels)) != len(labels):
            raise ValueError(f"a channel is named twice: {', '.join(labels)}")
        if not self.sample_rate > 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def channels(self) -> tuple[str, ...]:
        """The labels an input keeps, in this order: left, right, then the references."""
        return (self.left, self.right, *self.reference)

    def rows_in(self, stream: str, labels: list[str], rate: float) -> list[int]:
        """The row of each of `channels` in a stream with these labels; BciError naming what
        is missing, or both rates when the stream's nominal rate is not `sample_rate`."""
        missing = [label for label in self.channels if label not in labels]
        if missing:
            raise BciError(
                f"stream '{stream}' has no channel {', '.join(missing)} "
                f"(it has {', '.join(labels)})"
            )
        if not math.isclose(rate, self.sample_rate, rel_tol=1e-6):
            raise BciError(
                f"stream '{stream}' runs at {rate:g} Hz but the montage expects "
                f"{self.sample_rate:g} Hz"
            )
        return [labels.index(label) for label in self.channels]


MUSE = Montage("AF7", "AF8", reference=(), sample_rate=256.0)
MUSE_MASTOID = Montage("AF7", "AF8", reference=("TP9", "TP10"), sample_rate=256.0)
F3F4_128 = Montage("F3", "F4", sample_rate=128.0)  # e.g. Emotiv-style systems

MONTAGES: dict[str, Montage] = {
    "muse": MUSE,
    "muse-mastoid": MUSE_MASTOID,
    "f3f4-128": F3F4_128,
}


def load_montage(path: Path) -> Montage:
    """A montage from YAML: `{left: AF7, right: AF8, reference: [TP9, TP10], sample_rate: 256}`.
    Raises BciError naming the file and the bad field."""
    return load_yaml_config(path, Montage)
