"""What the repository signs about a bundle (TUF target ``custom`` info), and the device's compatibility rules.

The repository fills :class:`TargetMeta` from the manifest inside the bundle tar; devices read it from verified
targets metadata *before* downloading (a device never fetches a bundle it could not run or must not install), and
check it again against the manifest after unpacking (the signed custom info and the bundle must agree).

Public API: :class:`TargetMeta`, :class:`DeviceCapabilities`, :func:`inspect_bundle`, :func:`target_path_for`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgectl.bundle import MANIFEST, Manifest, read_manifest, unpack_bundle
from edgectl.errors import IncompatibleTarget, UnsignedTarget
from edgectl.fsutil import sha256_file


def target_path_for(manifest: Manifest) -> str:
    """The TUF target path of a bundle: ``<model>/<model>-<version>.tar``."""
    return f"{manifest.name}/{manifest.bundle_dirname}.tar"


@dataclass(frozen=True, kw_only=True)
class TargetMeta:
    """The signed facts about one bundle target."""

    model: str
    version: int
    manifest_sha256: str
    formats: tuple[str, ...]
    precisions: tuple[str, ...] = ()
    profile: str | None = None
    execution_provider: str | None = None
    #: Operator-signed permission to install this version over a newer one (a deliberate rollback).
    allow_rollback: bool = False

    @classmethod
    def from_manifest(cls, manifest: Manifest, manifest_sha256: str, *, allow_rollback: bool = False) -> TargetMeta:
        target = manifest.target or {}
        return cls(
            model=manifest.name,
            version=manifest.version,
            manifest_sha256=manifest_sha256,
            formats=tuple(sorted({a.format for a in manifest.artifacts})),
            precisions=tuple(sorted({a.precision for a in manifest.artifacts})),
            profile=_opt_str(target.get("name")),
            execution_provider=_opt_str(target.get("execution_provider")),
            allow_rollback=allow_rollback,
        )

    def to_custom(self) -> dict[str, Any]:
        return {
            "edgectl": {
                "model": self.model,
                "version": self.version,
                "manifest_sha256": self.manifest_sha256,
                "formats": list(self.formats),
                "precisions": list(self.precisions),
                "profile": self.profile,
                "execution_provider": self.execution_provider,
                "allow_rollback": self.allow_rollback,
            }
        }

    @classmethod
    def from_custom(cls, custom: Any, *, target_path: str) -> TargetMeta:
        """Parse the custom info of a verified target (raises :class:`UnsignedTarget` when it is not a bundle)."""
        data = custom.get("edgectl") if isinstance(custom, dict) else None
        if not isinstance(data, dict):
            raise UnsignedTarget(
                f"Target {target_path} is signed but carries no edgectl bundle info; it is not a model bundle.",
                hint="Sign bundles with: edgectl repo add <repo> <bundle.tar>",
            )
        try:
            version = data["version"]
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                raise ValueError(f"version {version!r} is not a positive integer")
            return cls(
                model=str(data["model"]),
                version=version,
                manifest_sha256=str(data["manifest_sha256"]),
                formats=tuple(str(f) for f in data["formats"]),
                precisions=tuple(str(p) for p in data.get("precisions", ())),
                profile=_opt_str(data.get("profile")),
                execution_provider=_opt_str(data.get("execution_provider")),
                allow_rollback=data.get("allow_rollback") is True,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnsignedTarget(f"Target {target_path} has malformed edgectl info: {exc}.") from exc


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, kw_only=True)
class DeviceCapabilities:
    """What a device can run. Empty ``profiles`` accepts bundles built for any profile."""

    formats: frozenset[str] = frozenset({"onnx"})
    profiles: frozenset[str] = field(default_factory=frozenset)

    def check(self, meta: TargetMeta, *, target_path: str) -> None:
        """Raise :class:`IncompatibleTarget` when this device cannot run the target."""
        if not set(meta.formats) & self.formats:
            raise IncompatibleTarget(
                f"Target {target_path} ships {', '.join(meta.formats) or 'no'} artifacts; this device runs only "
                f"{', '.join(sorted(self.formats))}.",
                hint="Convert the model with an artifact format the device supports, or install that backend.",
            )
        if self.profiles and meta.profile is not None and meta.profile not in self.profiles:
            raise IncompatibleTarget(
                f"Target {target_path} was built for profile {meta.profile!r}; this device accepts "
                f"{', '.join(sorted(self.profiles))}.",
                hint="Convert with --target set to this device's profile.",
            )


def inspect_bundle(tar_path: Path) -> tuple[Manifest, str]:
    """Fully unpack and verify a bundle tar in a temporary folder; return its manifest and manifest sha256.

    The repository signs only bundles that verify: a corrupt bundle would otherwise be signed and then refused by
    every device. Raises the bundle errors of :func:`edgectl.bundle.unpack_bundle`.
    """
    with tempfile.TemporaryDirectory(prefix="edgectl-inspect-") as tmp:
        bundle_dir = unpack_bundle(Path(tar_path), Path(tmp))
        manifest = read_manifest(bundle_dir)
        digest, _ = sha256_file(bundle_dir / MANIFEST)
    return manifest, digest
