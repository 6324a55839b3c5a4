"""Which Bandmate this is: the installed package's version (the server's /v1/version and
`bandmate --version`), kept free of heavy imports so `bandmate --version` stays quick."""

from __future__ import annotations

import importlib.metadata


def version() -> str:
    try:
        return importlib.metadata.version("bandmate")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
