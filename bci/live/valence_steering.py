"""How the listener's valence steers the band (`bandmate bci run --server-osc`).

Each window's valence (-1..1) becomes one alpha per steered attribute, alpha = gain * valence,
clipped to +-MAX_ALPHA, and is sent to the server's OSC steering addresses. A YAML file can
change the attributes and gains (`--steer-map`):

    steer:
      brightness: 1.5   # a brighter mood, a brighter band
      register: 1.0

The default maps valence to brightness and register: the two attributes whose steering
`bench steering` measures as most monotone, and the two that listeners hear as "brighter".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bci.errors import BciError

# The attributes the band's generator can be steered along (the server says which a
# checkpoint has; an attribute it lacks is ignored there with a warning).
STEERABLE = ("brightness", "density", "register", "loudness")
MAX_ALPHA = 2.0


def _default_gains() -> dict[str, float]:
    return {"brightness": 1.5, "register": 1.0}


@dataclass(frozen=True)
class ValenceSteering:
    gains: dict[str, float] = field(default_factory=_default_gains)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.gains) - set(STEERABLE))
        if unknown:
            raise BciError(f"cannot steer {', '.join(unknown)}: use {', '.join(STEERABLE)}")

    def alphas(self, valence: float) -> dict[str, float]:
        return {
            name: float(max(-MAX_ALPHA, min(MAX_ALPHA, gain * valence)))
            for name, gain in self.gains.items()
        }


def load_valence_steering(path: Path | None) -> ValenceSteering:
    """The default mapping, or the one in a YAML file; a bad file is one BciError line."""
    if path is None:
        return ValenceSteering()
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BciError(f"cannot read steering map {path}: {exc}") from None
    steer = raw.get("steer") if isinstance(raw, dict) else None
    if not isinstance(steer, dict) or not steer:
        raise BciError(f"steering map {path}: expected 'steer: {{attribute: gain, ...}}'")
    gains: dict[str, float] = {}
    for name, gain in steer.items():
        if isinstance(gain, bool) or not isinstance(gain, int | float):
            raise BciError(f"steering map {path}: {name}: the gain is a number, not {gain!r}")
        gains[str(name)] = float(gain)
    return ValenceSteering(gains)
