"""The one error type the BCI path shows to users, and the YAML loader that produces it.

Anything a user can fix (no stream, a missing electrode label, a typo in a montage file) is
raised as a `BciError` whose message is a single line; the CLI prints it as `error: ...`
without a traceback. Programming errors stay ordinary exceptions.

Config files are read into the same frozen dataclasses that code uses, validated by pydantic
(so nested tuples of dataclasses and `__post_init__` checks work unchanged); a dataclass opts
into rejecting unknown keys with `__pydantic_config__ = ConfigDict(extra="forbid")`.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import TypeVar

import pydantic
import yaml

ConfigT = TypeVar("ConfigT")


class BciError(Exception):
    """A problem the user can fix, described in one line."""


def write_failure(what: str, path: Path, error: BaseException) -> str:
    """One line for a write the disk refused. A full disk is named by its mount point and
    free space, since the folder alone does not tell an experimenter which disk to clear."""
    if not (isinstance(error, OSError) and error.errno == errno.ENOSPC):
        return f"{what} {path} failed: {error}"
    mount = path.resolve()
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    free_mb = shutil.disk_usage(mount).free / 1e6
    return (
        f"{what} {path} stopped: no space left on device (the disk mounted at {mount}, "
        f"{free_mb:.1f} MB free); everything written before then is kept"
    )


def load_yaml_config(path: Path, config_type: type[ConfigT]) -> ConfigT:
    """Read a YAML mapping into `config_type`; every problem becomes a BciError naming the
    file and, where there is one, the field."""
    try:
        text = path.read_text()
    except OSError as error:
        raise BciError(f"{path}: cannot read it ({error.strerror or error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise BciError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise BciError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return pydantic.TypeAdapter(config_type).validate_python(data)
    except pydantic.ValidationError as error:
        problems = error.errors()
        first = problems[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise BciError(f"{path}: {field}: {message}{more}") from None
