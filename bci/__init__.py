"""The EEG -> music loop (BCMI)."""

import os
from pathlib import Path

# liblsl prints an INFO line to stderr when it loads ("Loaded default config"), which would
# turn our one-line errors into two. Quieten it with our config, unless the user has one of
# liblsl's own (LSLAPICFG, ./lsl_api.cfg, ~/lsl_api/lsl_api.cfg, /etc/lsl_api/lsl_api.cfg).
_USER_CONFIGS = (Path("lsl_api.cfg"), Path.home() / "lsl_api" / "lsl_api.cfg",
                 Path("/etc/lsl_api/lsl_api.cfg"))  # fmt: skip
if "LSLAPICFG" not in os.environ and not any(p.is_file() for p in _USER_CONFIGS):
    os.environ["LSLAPICFG"] = str(Path(__file__).with_name("lsl_api.cfg"))
