"""``edgectl bundle``: verify, inspect and pack bundles."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from edgectl.bundle import pack_bundle, unpack_bundle, verify_bundle


@click.group()
def bundle() -> None:
    """Inspect, verify and pack bundles (directories or .tar files)."""


def _open(path: Path, tmp: Path) -> Path:
    return unpack_bundle(path, tmp) if path.is_file() else path


@bundle.command()
@click.argument("path", type=click.Path(path_type=Path))
def verify(path: Path) -> None:
    """Check every file of a bundle (directory or .tar) against its manifest."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        manifest = verify_bundle(_open(path, Path(tmp)))
    click.echo(f"ok: {manifest.bundle_dirname} ({len(manifest.files)} files verified)")


@bundle.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def inspect(path: Path, as_json: bool) -> None:
    """Show a bundle's signature, artifacts and measured metrics."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        manifest = verify_bundle(_open(path, Path(tmp)))
    if as_json:
        click.echo(json.dumps(manifest.to_json(), indent=2, sort_keys=True))
        return
    console = Console()
    console.print(f"[bold]{manifest.name}[/] version {manifest.version}  created {manifest.created}")
    for kind, specs in (("input", manifest.inputs), ("output", manifest.outputs)):
        for t in specs:
            console.print(f"  {kind:6} {t.name}: {t.dtype}{list(t.shape)}")
    table = Table("artifact", "format", "precision", "bytes", "p50 ms", "agreement / accuracy")
    for a in manifest.artifacts:
        quality = a.metrics.get("accuracy", a.metrics.get("top1_agreement", ""))
        table.add_row(
            a.path, a.format, a.precision, str(a.length), str(a.metrics.get("latency_p50_ms", "")), str(quality)
        )
    console.print(table)


@bundle.command()
@click.argument("bundle_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), help="Tar path (default: beside it).")
def pack(bundle_dir: Path, out: Path | None) -> None:
    """Pack a bundle directory into one uncompressed tar."""
    tar = pack_bundle(bundle_dir, out or bundle_dir.with_suffix(".tar"))
    click.echo(str(tar))
