"""Where the SoundFonts live. All three ship in packages, so nothing is downloaded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from models.errors import ModelsError


class MissingSoundFontError(ModelsError):
    """A SoundFont the build asked for is not on this machine."""


def _pretty_midi_soundfont() -> Path:
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or spec.origin is None:
        return Path("<pretty_midi not installed>/TimGM6mb.sf2")
    return Path(spec.origin).parent / "TimGM6mb.sf2"


# name -> (how to find it, what installs it)
_KNOWN: dict[str, tuple[Path | None, str]] = {
    "fluidr3": (
        Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
        "the Debian package fluid-soundfont-gm",
    ),
    "musescore": (
        Path("/usr/share/sounds/sf3/MuseScore_General.sf3"),
        "the Debian package musescore-general-soundfont-small",
    ),
    "timgm6mb": (None, "the pip package pretty-midi"),  # located at call time, inside the wheel
}
SOUNDFONT_NAMES = tuple(_KNOWN)


def locate_soundfont(name_or_path: str) -> Path:
    """A known SoundFont name ('fluidr3', 'musescore', 'timgm6mb') or a file path."""
    if name_or_path in _KNOWN:
        known, installer = _KNOWN[name_or_path]
        path = known if known is not None else _pretty_midi_soundfont()
        hint = f"install {installer} (make demo / make test do this)"
    else:
        path = Path(name_or_path)
        hint = "check the path"
    if not path.is_file():
        raise MissingSoundFontError(
            f"SoundFont {name_or_path!r} not found at {path}: {hint}, or choose others with "
            f"--soundfonts (known: {', '.join(SOUNDFONT_NAMES)})"
        )
    return path
