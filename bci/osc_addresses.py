"""The OSC addresses of the server's control interface (`bandmate serve --osc-port`), defined
once: the server listens on them and the BCMI loop and the session runner send to them.

They live in bci, not server, because bci never imports server (tests/test_code_quality.py)
while the server may import bci.
"""

from __future__ import annotations

OSC_ROOT = "/bandmate"
OSC_PATTERN = f"{OSC_ROOT}/*"  # what the server's dispatcher maps: every control, any session


def osc_address(control: str) -> str:
    """The address that sets `control` (or `reset`, `valence`, `instruction`) in every session."""
    return f"{OSC_ROOT}/{control}"


OSC_INSTRUCTION = osc_address("instruction")
OSC_VALENCE = osc_address("valence")


def osc_steer_address(attribute: str) -> str:
    """The address that steers every session along `attribute` (`bandmate steer build`)."""
    return f"{OSC_ROOT}/steer/{attribute}"
