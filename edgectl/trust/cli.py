"""``edgectl keys`` and ``edgectl repo``: create and rotate keys, sign bundles, keep the repository fresh.

Errors are raised as edgectl errors; the root CLI prints ``error: <message>`` and exits with their code.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from edgectl.errors import ConfigError
from edgectl.trust.repository import ModelRepository
from edgectl.trust.settings import ALL_ROLES, RepoSettings, format_duration, parse_duration

_ROOT_KEYS_HELP = "Folder with the root keys (keep it offline). Default: <repo>/keys/root."


def _parse_thresholds(values: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    out = {}
    for value in values:
        role, _, spec = value.partition("=")
        threshold, _, keys = spec.partition("/")
        if role not in ALL_ROLES or not threshold.isdigit() or not keys.isdigit():
            raise ConfigError(
                f"Invalid --threshold {value!r}: use ROLE=K/N, e.g. root=2/3 (roles: {', '.join(ALL_ROLES)})."
            )
        out[role] = (int(threshold), int(keys))
    return out


def _parse_expiries(values: tuple[str, ...]) -> dict[str, timedelta]:
    out = {}
    for value in values:
        role, _, duration = value.partition("=")
        if role not in ALL_ROLES:
            raise ConfigError(f"Invalid --expires {value!r}: use ROLE=DURATION, e.g. timestamp=12h.")
        out[role] = parse_duration(duration)
    return out


@click.group()
def keys() -> None:
    """Create and rotate the repository's signing keys."""


@keys.command("init")
@click.option("--repo", "repo_dir", required=True, type=click.Path(path_type=Path), help="Repository folder.")
@click.option("--root-keys-dir", type=click.Path(path_type=Path), help=_ROOT_KEYS_HELP)
@click.option("--threshold", "thresholds", multiple=True, metavar="ROLE=K/N", help="e.g. root=2/3 (repeatable).")
@click.option("--expires", "expiries", multiple=True, metavar="ROLE=DUR", help="e.g. timestamp=12h (repeatable).")
@click.option(
    "--hash-bins",
    type=click.Choice(["0", "16", "256", "4096"]),
    default="0",
    show_default=True,
    help="Spread targets over this many hash-bin roles (for repositories of thousands of bundles).",
)
def keys_init(
    repo_dir: Path,
    root_keys_dir: Path | None,
    thresholds: tuple[str, ...],
    expiries: tuple[str, ...],
    hash_bins: str,
) -> None:
    """Generate root, targets, snapshot, timestamp and director keys and publish version 1 of the metadata."""
    settings = RepoSettings(hash_bins=int(hash_bins))
    settings = settings.with_thresholds(_parse_thresholds(thresholds)).with_expiries(_parse_expiries(expiries))
    repo = ModelRepository.create(repo_dir, settings=settings, root_keys_dir=root_keys_dir)
    _print_status(repo, warn_within=None)
    click.echo(f"created repository {repo_dir}: publish {repo.layout.metadata} and {repo.layout.targets}")
    click.echo(f"devices are enrolled with {repo.layout.metadata / '1.root.json'}")
    if root_keys_dir is None:
        click.echo(
            f"note: the root keys are in {repo.layout.default_root_key_dir}; move them offline and pass "
            "--root-keys-dir when rotating keys."
        )


@keys.command("rotate")
@click.option("--repo", "repo_dir", required=True, type=click.Path(path_type=Path), help="Repository folder.")
@click.option("--role", required=True, type=click.Choice(ALL_ROLES), help="Whose keys to replace.")
@click.option("--root-keys-dir", type=click.Path(path_type=Path), help=_ROOT_KEYS_HELP)
def keys_rotate(repo_dir: Path, role: str, root_keys_dir: Path | None) -> None:
    """Replace every key of ROLE; devices follow the change on their next refresh."""
    repo = ModelRepository(repo_dir, root_keys_dir=root_keys_dir)
    new_ids = repo.rotate(role)
    click.echo(f"rotated {role}: new keys {', '.join(k[:12] for k in new_ids)}; root is now v{repo.root().version}")


@click.group()
def repo() -> None:
    """Manage the signed model repository (TUF)."""


@repo.command("add")
@click.argument("repo_dir", type=click.Path(path_type=Path))
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--allow-rollback", is_flag=True, help="Let devices install this version over a newer one.")
def repo_add(repo_dir: Path, bundles: tuple[Path, ...], allow_rollback: bool) -> None:
    """Verify bundle tars and sign them as targets (custom info: model, version, manifest sha256, formats)."""
    repository = ModelRepository(repo_dir)
    for bundle in bundles:
        path, info = repository.add_target(bundle, allow_rollback=allow_rollback)
        click.echo(f"signed {path} ({info.length} bytes, sha256 {info.hashes['sha256'][:16]}…)")
    click.echo(f"targets v{repository.targets().version}; {repository.target_count()} targets in the repository")


@repo.command("status")
@click.argument("repo_dir", type=click.Path(path_type=Path))
@click.option("--warn-within", help="Warn when a role expires within this long (e.g. 2d). Default: 1/4 of its life.")
@click.option("--root-keys-dir", type=click.Path(path_type=Path), help=_ROOT_KEYS_HELP)
def repo_status(repo_dir: Path, warn_within: str | None, root_keys_dir: Path | None) -> None:
    """Show roles, thresholds, keys, versions and expiries; warn before anything expires."""
    repository = ModelRepository(repo_dir, root_keys_dir=root_keys_dir)
    _print_status(repository, warn_within=parse_duration(warn_within) if warn_within else None)


@repo.command("refresh")
@click.argument("repo_dir", type=click.Path(path_type=Path))
@click.option("--within", help="Re-sign roles expiring within this long. Default: half of each role's life.")
@click.option("--force", is_flag=True, help="Re-sign targets, snapshot and timestamp now.")
@click.option("--root-keys-dir", type=click.Path(path_type=Path), help=_ROOT_KEYS_HELP)
def repo_refresh(repo_dir: Path, within: str | None, force: bool, root_keys_dir: Path | None) -> None:
    """Re-sign timestamp / snapshot (and targets, root when due) before they expire. Safe to run from cron."""
    repository = ModelRepository(repo_dir, root_keys_dir=root_keys_dir)
    done = repository.refresh(within=parse_duration(within) if within else None, force=force)
    if done:
        click.echo(f"re-signed {', '.join(done)}")
    else:
        click.echo("nothing due: every role is fresh")
    for row in repository.status():
        if row.warning:
            click.echo(f"warning: {row.role}: {row.warning}", err=True)


def _print_status(repository: ModelRepository, *, warn_within: timedelta | None) -> None:
    rows = repository.status(warn_within=warn_within)
    now = repository.now()
    table = Table(title=f"repository {repository.layout.root}")
    for col in ("role", "version", "expires", "threshold", "keys (here)", "status"):
        table.add_column(col)
    for row in rows:
        expires = (
            "-" if row.expires is None else f"{row.expires:%Y-%m-%d %H:%M}Z ({format_duration(row.expires - now)})"
        )
        table.add_row(
            row.role,
            "-" if row.version is None else str(row.version),
            expires,
            f"{row.threshold}/{len(row.keyids)}",
            f"{', '.join(k[:8] for k in row.keyids)} ({row.keys_present})",
            row.warning or "ok",
        )
    Console(width=160).print(table)
    for row in rows:
        if row.warning:
            click.echo(f"warning: {row.role}: {row.warning}")
