"""Step 6: write the bundle (DESIGN.md, "The bundle") atomically, pack it, and write the reports.

Output layout in ``--out``: ``<name>-<version>/`` (the bundle), ``<name>-<version>.tar``,
``<name>-<version>.report.json`` and ``<name>-<version>.report.md``. The bundle directory is built in a
staging folder and renamed into place, so an interrupted conversion leaves no half-written bundle.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from edgectl.bundle import Manifest, check_name, pack_bundle, write_manifest
from edgectl.errors import ConfigError, ManifestError, OutputExistsError
from edgectl.fsutil import atomic_write_text, staging_dir

from .report import ConversionReport

#: Preference order of artifact variants, best first (the runtime takes the first one it can run): int8 is the
#: smallest and fastest on edge CPUs, fp32 is the fallback every runtime can run.
VARIANT_RANK = {"int8": 0, "int8-dynamic": 1, "fp16": 2, "fp32": 3}
FORMAT_RANK = {"onnx": 0, "tflite": 1}


def valid_name(name: str) -> str:
    try:
        return check_name(name)
    except ManifestError as exc:
        raise ConfigError(exc.message) from exc


def next_version(out: Path, name: str) -> int:
    """1 + the highest version of ``name`` found in ``out`` (bundle folders and tars), or 1."""
    pattern = re.compile(rf"^{re.escape(name)}-(\d+)(\.tar)?$")
    versions = [int(m.group(1)) for p in Path(out).glob(f"{name}-*") if (m := pattern.match(p.name))]
    return max(versions, default=0) + 1


def output_paths(out: Path, name: str, version: int) -> dict[str, Path]:
    stem = f"{name}-{version}"
    return {
        "bundle": Path(out) / stem,
        "tar": Path(out) / f"{stem}.tar",
        "report_json": Path(out) / f"{stem}.report.json",
        "report_md": Path(out) / f"{stem}.report.md",
    }


def check_free(out: Path, name: str, version: int, *, force: bool) -> None:
    """Refuse to overwrite an existing bundle of that name and version unless ``force``."""
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the bundle, its tar and the reports.")
    paths = output_paths(out, name, version)
    taken = [p for p in (paths["bundle"], paths["tar"]) if p.exists()]
    if taken and not force:
        raise OutputExistsError(
            f"{taken[0]} already exists.",
            hint="Pass --force to replace it, or --version to write another version.",
        )


def write_reports(report: ConversionReport, out: Path) -> tuple[Path, Path]:
    paths = output_paths(out, report.name, report.version)
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths["report_json"], report.dumps())
    atomic_write_text(paths["report_md"], report.to_markdown())
    return paths["report_json"], paths["report_md"]


def fix_zip_times(path: Path) -> None:
    """Rewrite a zip (``.npz``) with every entry dated 1980-01-01, so equal arrays give equal bytes.

    numpy stamps each entry with the wall-clock time; without this, golden.npz (and so the manifest's file list)
    would differ between two otherwise identical conversions.
    """
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w") as dst:
        for info, data in entries:
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type, fixed.external_attr = info.compress_type, 0o644 << 16
            dst.writestr(fixed, data)
    os.replace(tmp, path)


def write_bundle(
    out: Path, manifest: Manifest, files: dict[str, Path], golden_writer: Callable[[Path], None], *, force: bool
) -> tuple[Path, Path]:
    """Copy ``files`` (bundle path -> source) into a staged bundle, let ``golden_writer(path)`` write golden.npz,
    hash everything into the manifest, rename the bundle into place and pack the tar. Returns (dir, tar).
    """
    paths = output_paths(out, manifest.name, manifest.version)
    final = paths["bundle"]
    final.parent.mkdir(parents=True, exist_ok=True)
    trash = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old")) if force else None
    try:
        with staging_dir(final) as tmp:
            for rel, src in files.items():
                shutil.copyfile(src, tmp / rel)
            if manifest.golden is not None:
                golden_writer(tmp / manifest.golden)
                fix_zip_times(tmp / manifest.golden)
            write_manifest(tmp, manifest)
            if final.exists():
                if trash is None:  # someone else wrote it while we were converting
                    raise OutputExistsError(f"{final} appeared while converting; pass --force to replace it.")
                # Move the old bundle aside so the staged one can be renamed into place.
                os.rename(final, trash / final.name)
    except BaseException:
        if trash is not None and (trash / final.name).exists() and not final.exists():
            os.rename(trash / final.name, final)  # the old bundle stays in place when the new one fails
        raise
    finally:
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    pack_bundle(final, paths["tar"])
    return final, paths["tar"]
