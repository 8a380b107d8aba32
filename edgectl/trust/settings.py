"""Repository settings and on-disk layout: thresholds, key counts and expiry per role; where keys and metadata live.

Layout of a repository folder (only ``metadata/`` and ``targets/`` are published; serve them with any transport)::

    fleet-repo/
      repo.json                    settings (this module); no secrets
      keys/<role>/<keyid>.pem      online private keys: targets, snapshot, timestamp, director (0700 dirs, 0600 files)
      keys/root/<keyid>.pem        root keys, unless --root-keys-dir put them elsewhere (offline root)
      metadata/N.root.json         every root version (clients walk the chain), root.json = the newest
      metadata/timestamp.json      the only file fetched without a version
      metadata/N.snapshot.json     consistent snapshots (plus unversioned copies for humans and simple clients)
      metadata/N.targets.json
      targets/<model>/<sha256>.<model>-<version>.tar   hash-prefixed bundle files

Public API: :class:`RoleSpec`, :class:`RepoSettings`, :class:`RepoLayout`, :func:`parse_duration`,
:data:`TOP_LEVEL_ROLES`, :data:`DIRECTOR`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edgectl.errors import ConfigError, InputFileError
from edgectl.fsutil import atomic_write_text

TOP_LEVEL_ROLES = ("root", "targets", "snapshot", "timestamp")
#: The director signs per-device instructions; its keys are delegated by the targets role (see director.py).
DIRECTOR = "director"
ALL_ROLES = (*TOP_LEVEL_ROLES, DIRECTOR)
SETTINGS_FILE = "repo.json"
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def utcnow() -> datetime:
    """The default clock (aware, UTC). Everything that reads time takes a clock so tests can inject one."""
    return datetime.now(UTC)


def parse_duration(text: str) -> timedelta:
    """Parse ``30m``, ``12h``, ``7d``, ``2w`` into a timedelta (raises :class:`ConfigError`)."""
    match = _DURATION_RE.match(text)
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"Invalid duration {text!r}: use a positive number and a unit, e.g. 30m, 12h, 7d or 2w.")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def format_duration(delta: timedelta) -> str:
    """A short human form: ``3d 4h``, ``45m``, ``-2h`` (already past)."""
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d"] if days else []
    if hours or (days and not minutes):
        parts.append(f"{hours}h")
    if minutes and not days:
        parts.append(f"{minutes}m")
    return sign + (" ".join(parts) or "0m")


@dataclass(frozen=True, kw_only=True)
class RoleSpec:
    """How one role is signed: ``threshold`` of ``keys`` keys, metadata valid for ``expiry``."""

    threshold: int = 1
    keys: int = 1
    expiry: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if self.keys < 1 or not 1 <= self.threshold <= self.keys:
            raise ConfigError(
                f"A role needs 1 <= threshold <= keys, got {self.threshold} of {self.keys}.",
                hint="For example --threshold root=2/3 (two signatures of three keys).",
            )


def _default_roles() -> dict[str, RoleSpec]:
    return {
        "root": RoleSpec(threshold=2, keys=3, expiry=timedelta(days=365)),
        "targets": RoleSpec(expiry=timedelta(days=90)),
        "snapshot": RoleSpec(expiry=timedelta(days=7)),
        "timestamp": RoleSpec(expiry=timedelta(days=1)),
        DIRECTOR: RoleSpec(expiry=timedelta(days=7)),
    }


@dataclass(frozen=True, kw_only=True)
class RepoSettings:
    """Per-role signing rules. For the director, ``expiry`` is the default lifetime of an instruction.
    ``hash_bins``: 0 (every target in targets.json) or 16 / 256 / 4096 hash-bin roles (see delegations.py)."""

    roles: dict[str, RoleSpec] = field(default_factory=_default_roles)
    hash_bins: int = 0

    def __post_init__(self) -> None:
        if self.hash_bins not in (0, 16, 256, 4096):
            raise ConfigError(f"hash_bins must be 0, 16, 256 or 4096, got {self.hash_bins}.")

    def role(self, name: str) -> RoleSpec:
        try:
            return self.roles[name]
        except KeyError:
            raise ConfigError(f"Unknown role {name!r}; roles are {', '.join(ALL_ROLES)}.") from None

    def with_thresholds(self, specs: dict[str, tuple[int, int]]) -> RepoSettings:
        """Return a copy with ``{role: (threshold, keys)}`` applied."""
        roles = dict(self.roles)
        for name, (threshold, keys) in specs.items():
            roles[name] = replace(self.role(name), threshold=threshold, keys=keys)
        return replace(self, roles=roles)

    def with_expiries(self, specs: dict[str, timedelta]) -> RepoSettings:
        roles = dict(self.roles)
        for name, expiry in specs.items():
            roles[name] = replace(self.role(name), expiry=expiry)
        return replace(self, roles=roles)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "edgectl-repo/1",
            "hash_bins": self.hash_bins,
            "roles": {
                name: {"threshold": s.threshold, "keys": s.keys, "expiry_seconds": int(s.expiry.total_seconds())}
                for name, s in self.roles.items()
            },
        }

    @classmethod
    def from_json(cls, data: Any) -> RepoSettings:
        try:
            roles = {
                str(name): RoleSpec(
                    threshold=int(v["threshold"]), keys=int(v["keys"]), expiry=timedelta(seconds=v["expiry_seconds"])
                )
                for name, v in data["roles"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"Malformed repository settings: {exc}.") from exc
        missing = set(ALL_ROLES) - roles.keys()
        if missing:
            raise ConfigError(f"Repository settings lack roles {sorted(missing)}.")
        bins = data.get("hash_bins", 0)
        if not isinstance(bins, int):
            raise ConfigError(f"Malformed repository settings: hash_bins {bins!r}.")
        return cls(roles=roles, hash_bins=bins)


@dataclass(frozen=True)
class RepoLayout:
    """Paths inside one repository folder (see the module docstring)."""

    root: Path

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def metadata(self) -> Path:
        return self.root / "metadata"

    @property
    def targets(self) -> Path:
        return self.root / "targets"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    def online_key_dir(self, role: str) -> Path:
        return self.keys / role

    @property
    def default_root_key_dir(self) -> Path:
        return self.keys / "root"

    def exists(self) -> bool:
        return self.settings_file.is_file() and (self.metadata / "root.json").is_file()

    def load_settings(self) -> RepoSettings:
        if not self.settings_file.is_file():
            raise InputFileError(
                f"{self.root} is not an edgectl repository (it has no {SETTINGS_FILE}).",
                hint=f"Create one with: edgectl keys init --repo {self.root}",
            )
        try:
            data = json.loads(self.settings_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"Cannot read {self.settings_file}: {exc}.") from exc
        return RepoSettings.from_json(data)

    def save_settings(self, settings: RepoSettings) -> None:
        atomic_write_text(self.settings_file, json.dumps(settings.to_json(), indent=2, sort_keys=True) + "\n")
