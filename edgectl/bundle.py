"""The bundle: the unit that moves from the converter to a device (DESIGN.md, "The bundle").

A bundle is a directory ``<name>-<version>/`` holding ``manifest.json``, the model files and ``golden.npz``;
it travels as one uncompressed tar. The manifest lists the sha256 and length of every other file, and
nothing that is not listed is ever read: :func:`verify_bundle` refuses unlisted files, links, paths that
escape the bundle and any hash or length mismatch.

Public API: :class:`TensorSpec`, :class:`Artifact`, :class:`FileEntry`, :class:`Manifest`,
:func:`write_manifest`, :func:`read_manifest`, :func:`verify_bundle`, :func:`pack_bundle`,
:func:`unpack_bundle`, :func:`load_golden`.
"""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from edgectl.errors import InputFileError, IntegrityError, ManifestError, UnsafePathError
from edgectl.fsutil import atomic_output, atomic_write_text, sha256_file, staging_dir

FORMAT = "edgectl-bundle/1"
MANIFEST = "manifest.json"
GOLDEN = "golden.npz"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8")
DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")
#: Upper bound on one manifest; a larger one is refused before it is parsed.
MAX_MANIFEST_BYTES = 16 << 20


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: ``shape`` uses -1 for a dynamic dimension."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        try:
            name, dtype, shape = data["name"], data["dtype"], tuple(int(d) for d in data["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"Malformed tensor spec in manifest: {data!r} ({exc}).") from exc
        if dtype not in DTYPES:
            raise ManifestError(f"Tensor '{name}' has unsupported dtype '{dtype}'; expected one of {DTYPES}.")
        if any(d < -1 or d == 0 for d in shape):
            raise ManifestError(f"Tensor '{name}' has invalid shape {list(shape)}; use -1 for dynamic dims.")
        return cls(name=str(name), dtype=str(dtype), shape=shape)

    @property
    def has_batch_dim(self) -> bool:
        return len(self.shape) > 0 and self.shape[0] == -1


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    length: int


@dataclass
class Artifact:
    """One model file of the bundle. ``metrics`` holds what validation measured for this artifact."""

    path: str
    format: str
    precision: str
    sha256: str = ""
    length: int = 0
    opset: int | None = None
    required_ops: list[str] = field(default_factory=list)
    quantization: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    golden_tolerance: dict[str, float] = field(default_factory=lambda: {"atol": 1e-4, "rtol": 1e-3})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        try:
            art = cls(**data)
        except TypeError as exc:
            raise ManifestError(f"Malformed artifact entry in manifest: {exc}.") from exc
        if art.format not in FORMATS:
            raise ManifestError(f"Artifact {art.path} has unknown format '{art.format}'; expected {FORMATS}.")
        if art.precision not in PRECISIONS:
            raise ManifestError(f"Artifact {art.path} has unknown precision '{art.precision}'.")
        return art


@dataclass
class Manifest:
    """Everything that was done and measured to produce a bundle."""

    name: str
    version: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    artifacts: list[Artifact]
    created: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    converter: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    reference_stats: dict[str, Any] = field(default_factory=dict)
    golden: str | None = GOLDEN
    target: dict[str, Any] = field(default_factory=dict)
    files: list[FileEntry] = field(default_factory=list)
    format: str = FORMAT

    @property
    def bundle_dirname(self) -> str:
        return f"{self.name}-{self.version}"

    def artifact(self, path: str) -> Artifact:
        for art in self.artifacts:
            if art.path == path:
                return art
        raise ManifestError(f"Bundle {self.bundle_dirname} has no artifact '{path}'.")

    def to_json(self) -> dict[str, Any]:
        data = {
            "format": self.format,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "source": self.source,
            "converter": self.converter,
            "signature": {
                "inputs": [t.to_json() for t in self.inputs],
                "outputs": [t.to_json() for t in self.outputs],
            },
            "preprocessing": self.preprocessing,
            "artifacts": [asdict(a) for a in self.artifacts],
            "golden": self.golden,
            "metrics": self.metrics,
            "reference_stats": self.reference_stats,
            "target": self.target,
            "files": [asdict(f) for f in self.files],
        }
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True, default=_json_default) + "\n"

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError("manifest.json must hold a JSON object.")
        if data.get("format") != FORMAT:
            raise ManifestError(
                f"Unsupported bundle format {data.get('format')!r}; this edgectl reads {FORMAT!r}.",
                hint="Upgrade edgectl on this machine or re-convert the model.",
            )
        try:
            name = str(data["name"])
            version = data["version"]
            sig = data["signature"]
            inputs = [TensorSpec.from_json(t) for t in sig["inputs"]]
            outputs = [TensorSpec.from_json(t) for t in sig["outputs"]]
            artifacts = [Artifact.from_json(a) for a in data["artifacts"]]
            files = [FileEntry(str(f["path"]), str(f["sha256"]), int(f["length"])) for f in data["files"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"manifest.json is missing or has a malformed field: {exc}.") from exc
        check_name(name)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ManifestError(f"Bundle version must be a positive integer, got {version!r}.")
        if not inputs or not outputs or not artifacts:
            raise ManifestError("A manifest needs at least one input, one output and one artifact.")
        return cls(
            name=name,
            version=version,
            inputs=inputs,
            outputs=outputs,
            artifacts=artifacts,
            created=str(data.get("created", "")),
            source=dict(data.get("source") or {}),
            converter=dict(data.get("converter") or {}),
            preprocessing=data.get("preprocessing"),
            metrics=dict(data.get("metrics") or {}),
            reference_stats=dict(data.get("reference_stats") or {}),
            golden=data.get("golden"),
            target=dict(data.get("target") or {}),
            files=files,
        )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ManifestError(
            f"Invalid model name {name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def _safe_relpath(rel: str) -> PurePosixPath:
    p = PurePosixPath(rel)
    if p.is_absolute() or not p.parts or any(part in ("", ".", "..") for part in p.parts) or "\\" in rel:
        raise UnsafePathError(f"Bundle path {rel!r} is not a plain relative path inside the bundle.")
    return p


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Manifest:
    """Hash every file in ``bundle_dir`` into ``manifest.files`` (and artifact entries), then write it.

    Every file in the directory (except manifest.json) must be a plain file; each is listed.
    """
    bundle_dir = Path(bundle_dir)
    entries: list[FileEntry] = []
    for path in sorted(bundle_dir.rglob("*")):
        rel = path.relative_to(bundle_dir).as_posix()
        if path.is_symlink():
            raise UnsafePathError(f"Refusing to package a symbolic link: {rel}.")
        if path.is_dir() or rel == MANIFEST:
            continue
        _safe_relpath(rel)
        digest, length = sha256_file(path)
        entries.append(FileEntry(rel, digest, length))
    by_path = {e.path: e for e in entries}
    for art in manifest.artifacts:
        entry = by_path.get(art.path)
        if entry is None:
            raise ManifestError(f"Artifact {art.path} is not in the bundle directory {bundle_dir}.")
        art.sha256, art.length = entry.sha256, entry.length
    if manifest.golden is not None and manifest.golden not in by_path:
        raise ManifestError(f"Golden file {manifest.golden} is not in the bundle directory {bundle_dir}.")
    manifest.files = entries
    atomic_write_text(bundle_dir / MANIFEST, manifest.dumps())
    return manifest


def read_manifest(bundle_dir: Path) -> Manifest:
    """Parse ``manifest.json`` (without checking file hashes: use :func:`verify_bundle` for that)."""
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file() or path.is_symlink():
        raise ManifestError(f"{bundle_dir} is not a bundle: it has no manifest.json.")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes; refusing to parse it.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}.") from exc
    return Manifest.from_json(data)


def verify_bundle(bundle_dir: Path) -> Manifest:
    """Check every file of an unpacked bundle against its manifest and return the manifest.

    Raises :class:`UnsafePathError` for links or unlisted files, :class:`IntegrityError` for any sha256 or
    length mismatch or missing file, :class:`ManifestError` for a malformed manifest.
    """
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise InputFileError(f"Bundle directory {bundle_dir} does not exist.")
    manifest = read_manifest(bundle_dir)
    listed = {}
    for entry in manifest.files:
        _safe_relpath(entry.path)
        if entry.path in listed or entry.path == MANIFEST:
            raise ManifestError(f"manifest.json lists {entry.path!r} twice or lists itself.")
        listed[entry.path] = entry
    for path in bundle_dir.rglob("*"):
        rel = path.relative_to(bundle_dir).as_posix()
        if path.is_symlink():
            raise UnsafePathError(f"Bundle {bundle_dir.name} contains a symbolic link ({rel}); refusing it.")
        if path.is_dir() or rel == MANIFEST:
            continue
        if rel not in listed:
            raise UnsafePathError(f"Bundle {bundle_dir.name} contains {rel}, which its manifest does not list.")
    for entry in listed.values():
        path = bundle_dir / entry.path
        if not path.is_file():
            raise IntegrityError(f"Bundle {bundle_dir.name} is missing {entry.path}, listed in its manifest.")
        if path.stat().st_size != entry.length:
            raise IntegrityError(
                f"{entry.path} in bundle {bundle_dir.name} is {path.stat().st_size} bytes; "
                f"the manifest says {entry.length}. The bundle is corrupt or was tampered with."
            )
        digest, _ = sha256_file(path)
        if digest != entry.sha256:
            raise IntegrityError(
                f"{entry.path} in bundle {bundle_dir.name} does not match its sha256 in the manifest. "
                "The bundle is corrupt or was tampered with."
            )
    for art in manifest.artifacts:
        listed_entry = listed.get(art.path)
        if listed_entry is None or listed_entry.sha256 != art.sha256 or listed_entry.length != art.length:
            raise ManifestError(f"Artifact {art.path} does not match the manifest's file list.")
    if manifest.golden is not None and manifest.golden not in listed:
        raise ManifestError(f"Golden file {manifest.golden} is not listed in the manifest.")
    return manifest


def pack_bundle(bundle_dir: Path, tar_path: Path) -> Path:
    """Write ``bundle_dir`` as one uncompressed, deterministic tar (sorted, zeroed owners and times)."""
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir)
    names = [MANIFEST, *sorted(e.path for e in manifest.files)]
    with atomic_output(Path(tar_path)) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for rel in names:
            src = bundle_dir / rel
            info = tarfile.TarInfo(f"{manifest.bundle_dirname}/{rel}")
            info.size = src.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            with open(src, "rb") as fh:
                tar.addfile(info, fh)
    return Path(tar_path)


def unpack_bundle(tar_path: Path, dest_parent: Path, *, max_bytes: int = 4 << 30) -> Path:
    """Safely unpack a bundle tar into ``dest_parent/<name>-<version>/`` and verify it.

    Only regular files under one top-level directory are accepted; links, devices, absolute paths, ``..``
    and anything beyond ``max_bytes`` in total are refused. The result appears atomically: on any error
    nothing is left behind. Returns the verified bundle directory.
    """
    tar_path = Path(tar_path)
    if not tar_path.is_file():
        raise InputFileError(f"Bundle file {tar_path} does not exist.", hint="Check the path.")
    try:
        tar = tarfile.open(tar_path, "r:")  # noqa: SIM115 - closed by the with-block below
    except tarfile.TarError as exc:
        raise ManifestError(f"{tar_path} is not an uncompressed tar bundle: {exc}.") from exc
    with tar:
        members = tar.getmembers()
        tops = set()
        total = 0
        for m in members:
            rel = _safe_relpath(m.name)
            if m.isdir():
                continue
            if not m.isfile():
                raise UnsafePathError(f"{tar_path.name}: member {m.name!r} is not a regular file; refusing it.")
            if len(rel.parts) < 2:
                raise UnsafePathError(f"{tar_path.name}: member {m.name!r} is outside the bundle directory.")
            tops.add(rel.parts[0])
            total += m.size
            if total > max_bytes:
                raise IntegrityError(f"{tar_path.name} unpacks to more than {max_bytes} bytes; refusing it.")
        if len(tops) != 1:
            raise UnsafePathError(f"{tar_path.name} must hold exactly one bundle directory, found {sorted(tops)}.")
        top = tops.pop()
        final = Path(dest_parent) / top
        if final.exists():
            raise InputFileError(f"{final} already exists; remove it first or unpack elsewhere.")
        with staging_dir(final) as tmp:
            for m in members:
                if m.isdir():
                    continue
                rel = PurePosixPath(m.name).relative_to(top)
                out = tmp / Path(*rel.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                if src is None:
                    raise UnsafePathError(f"{tar_path.name}: cannot read member {m.name!r}.")
                with src, open(out, "wb") as fh:
                    remaining = m.size
                    while remaining > 0:
                        chunk = src.read(min(remaining, 1 << 20))
                        if not chunk:
                            raise IntegrityError(f"{tar_path.name} is truncated at {m.name!r}.")
                        fh.write(chunk)
                        remaining -= len(chunk)
            manifest = verify_bundle(tmp)
            if manifest.bundle_dirname != top:
                raise ManifestError(
                    f"{tar_path.name}: directory {top!r} does not match the manifest ({manifest.bundle_dirname})."
                )
    return final


def load_golden(bundle_dir: Path, manifest: Manifest) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """Return (inputs, expected outputs per artifact path) from the bundle's golden file.

    Keys in ``golden.npz``: ``input/<name>`` and ``output/<artifact path>/<output name>``.
    """
    if manifest.golden is None:
        raise ManifestError(f"Bundle {manifest.bundle_dirname} has no golden outputs.")
    with np.load(Path(bundle_dir) / manifest.golden, allow_pickle=False) as data:
        inputs: dict[str, np.ndarray] = {}
        outputs: dict[str, dict[str, np.ndarray]] = {}
        for key in data.files:
            kind, _, rest = key.partition("/")
            if kind == "input":
                inputs[rest] = data[key]
            elif kind == "output":
                art, _, out = rest.rpartition("/")
                outputs.setdefault(art, {})[out] = data[key]
    missing = {t.name for t in manifest.inputs} - inputs.keys()
    if missing:
        raise ManifestError(f"golden.npz lacks inputs {sorted(missing)}.")
    return inputs, outputs


def save_golden(path: Path, inputs: dict[str, np.ndarray], outputs: dict[str, dict[str, np.ndarray]]) -> None:
    """Write ``golden.npz`` in the layout :func:`load_golden` reads."""
    arrays = {f"input/{k}": v for k, v in inputs.items()}
    for art, outs in outputs.items():
        for name, value in outs.items():
            arrays[f"output/{art}/{name}"] = value
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
