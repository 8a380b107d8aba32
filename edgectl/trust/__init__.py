"""Trust: keys, the signed model repository (TUF via python-tuf) and the device's verifying update client.

Operator side: :class:`ModelRepository` (``edgectl keys`` / ``edgectl repo``) and :func:`sign_instruction` for the
director. Device side: :class:`ModelUpdater` with a transport plug-in (:class:`LocalDirFetcher`,
:class:`MemoryFetcher`, or the fleet's MQTT fetcher). See docs/trust.md for the attack table.
"""

from edgectl.trust.client import ClientConfig, ModelUpdater, VerifiedBundle
from edgectl.trust.director import DesiredState, HealthCheckPolicy, sign_instruction, verify_instruction
from edgectl.trust.fetchers import GuardedFetcher, LocalDirFetcher, MemoryFetcher
from edgectl.trust.repository import ModelRepository, RoleStatus
from edgectl.trust.settings import RepoSettings, RoleSpec
from edgectl.trust.targetmeta import DeviceCapabilities, TargetMeta

__all__ = [
    "ClientConfig",
    "DesiredState",
    "DeviceCapabilities",
    "GuardedFetcher",
    "HealthCheckPolicy",
    "LocalDirFetcher",
    "MemoryFetcher",
    "ModelRepository",
    "ModelUpdater",
    "RepoSettings",
    "RoleSpec",
    "RoleStatus",
    "TargetMeta",
    "VerifiedBundle",
    "sign_instruction",
    "verify_instruction",
]
