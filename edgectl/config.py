"""Configuration sources, lowest to highest precedence: defaults, a TOML file, ``EDGECTL_*`` environment
variables, command-line flags. Each command owns a typed dataclass; this module only merges raw values.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgectl.errors import ConfigError, InputFileError


def load_toml(path: Path, *, section: str | None = None) -> dict[str, Any]:
    """Read a TOML file (optionally one table of it). Keys use dashes or underscores; both map to underscores."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"Config file {path} does not exist.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from exc
    if section is not None:
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] in {path} must be a table.")
        data = table
    return {k.replace("-", "_"): v for k, v in data.items()}


def env_values(prefix: str, known: set[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Collect ``EDGECTL_<PREFIX>_<KEY>`` variables for the given keys (raw strings)."""
    environ = os.environ if environ is None else environ
    out = {}
    for key in known:
        var = f"EDGECTL_{prefix}_{key}".upper() if prefix else f"EDGECTL_{key}".upper()
        if var in environ:
            out[key] = environ[var]
    return out


def check_known(values: Mapping[str, Any], known: set[str], *, where: str) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"Unknown option(s) {', '.join(unknown)} in {where}; known: {', '.join(sorted(known))}.")
