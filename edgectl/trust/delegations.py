"""What targets.json delegates: the director's keys (always) and, for large repositories, hash bins.

* ``director``: a delegated role with an empty path list. It carries the director keys and threshold to devices
  through verified metadata, and can vouch for no target file (see director.py).
* ``bins-<hex>`` (optional, TUF's hash-bin delegation): targets are spread over 16, 256 or 4096 bin roles by the
  sha256 of their target path. targets.json then stays the same size however many bundles there are; a device
  downloads only the bins of the targets it looks up, and adding a bundle re-signs one bin. Bins are signed by the
  targets keys (the split bounds metadata size; it does not separate trust), so rotating the targets keys re-signs them.

Public API: :data:`VALID_BIN_COUNTS`, :func:`bin_roles`, :func:`bin_for`, :func:`build_delegations`,
:func:`director_keys`.
"""

from __future__ import annotations

import hashlib

from securesystemslib.signer import Key
from tuf.api.metadata import DelegatedRole, Delegations, Targets

from edgectl.errors import ConfigError
from edgectl.trust.settings import DIRECTOR

#: Powers of 16, so each bin is exactly one hex prefix of the path hash.
VALID_BIN_COUNTS = (16, 256, 4096)
BIN_PREFIX = "bins-"


def _prefix_len(count: int) -> int:
    if count not in VALID_BIN_COUNTS:
        raise ConfigError(f"Hash bins must be one of {', '.join(map(str, VALID_BIN_COUNTS))} (or 0 for none).")
    return len(f"{count - 1:x}")


def bin_roles(count: int) -> list[tuple[str, str]]:
    """``[(role name, path-hash prefix)]`` for ``count`` bins."""
    width = _prefix_len(count)
    return [(f"{BIN_PREFIX}{i:0{width}x}", f"{i:0{width}x}") for i in range(count)]


def bin_for(target_path: str, count: int) -> str:
    """The bin role that holds ``target_path`` (the same hash python-tuf's client uses to find it)."""
    digest = hashlib.sha256(target_path.encode("utf-8")).hexdigest()
    return f"{BIN_PREFIX}{digest[: _prefix_len(count)]}"


def build_delegations(
    *,
    director_keys: dict[str, Key],
    director_threshold: int,
    bin_keys: dict[str, Key],
    bin_threshold: int,
    bins: int,
) -> Delegations:
    """The delegations block of targets.json: director first, then the bins (if any) in prefix order."""
    keys = dict(director_keys)
    roles = {DIRECTOR: DelegatedRole(DIRECTOR, sorted(director_keys), director_threshold, True, paths=[])}
    if bins:
        keys.update(bin_keys)
        for name, prefix in bin_roles(bins):
            roles[name] = DelegatedRole(name, sorted(bin_keys), bin_threshold, True, path_hash_prefixes=[prefix])
    return Delegations(keys=keys, roles=roles)


def director_keys(targets: Targets) -> tuple[dict[str, Key], int]:
    """The director's keys and threshold as ``targets`` delegates them (raises ConfigError when it does not)."""
    delegations = targets.delegations
    if delegations is None or delegations.roles is None or DIRECTOR not in delegations.roles:
        raise ConfigError("targets.json delegates no director role; this repository cannot sign instructions.")
    role = delegations.roles[DIRECTOR]
    return {k: delegations.keys[k] for k in role.keyids}, role.threshold
