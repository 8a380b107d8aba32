"""``edgectl serve`` (the daemon, and ``serve keys``) and ``edgectl models`` (the model store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .security import KeyRing, Role, add_key

STORE_OPTION = click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="EDGECTL_SERVE_STORE",
    default="/var/lib/edgectl/models",
    show_default=True,
    help="Model store directory.",
)


@click.group(invoke_without_command=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="TOML file ([serve]).")
@click.option("--store", type=click.Path(file_okay=False, path_type=Path), help="Model store directory.")
@click.option("--bind", help="HOST:PORT to listen on (default 127.0.0.1:8080).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), help="TLS certificate (PEM).")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="TLS private key (PEM).")
@click.option("--api-keys", type=click.Path(dir_okay=False, path_type=Path), help="Keys file (hashes).")
@click.option("--insecure", is_flag=True, default=None, help="Allow a non-loopback bind without API keys.")
@click.option("--threads", type=int, help="Backend threads per model (0: cores-1, at most 4).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "tensorrt"]), help="Execution device.")
@click.option("--instances", type=int, help="Worker threads per model.")
@click.option("--max-batch-size", type=int, help="Dynamic batching: rows per batch (1: off).")
@click.option("--max-queue-delay-ms", type=float, help="Dynamic batching: longest wait for company.")
@click.option(
    "--batch-autotune/--no-batch-autotune", default=None, help="Measure at load which batch size pays off (default on)."
)
@click.option("--max-queue", type=int, help="Queued requests per model before 429.")
@click.option("--max-body-bytes", type=int, help="Largest request body (413 above).")
@click.option("--rate-limit", type=float, help="Requests per second per API key (0: off).")
@click.option("--rate-burst", type=float, help="Token-bucket burst per API key.")
@click.option("--poll-interval-s", type=float, help="How often the store's active pointers are checked.")
@click.option("--request-timeout-s", type=float, help="Longest an inference may wait and run (503 after).")
@click.option("--limit-concurrency", type=int, help="Open requests before the server answers 503.")
@click.pass_context
def serve(ctx: click.Context, config_file: Path | None, **flags: Any) -> None:
    """Serve the active models of a model store over HTTP (Open Inference Protocol, /predict, /metrics).

    Settings come from flags, then EDGECTL_SERVE_* variables, then the [serve] table of --config.
    """
    if ctx.invoked_subcommand is not None:
        return
    import logging

    # A daemon's log is its only voice: model loads, swaps and refusals are worth seeing without -v.
    edgectl_log = logging.getLogger("edgectl")
    if edgectl_log.level > logging.INFO:
        edgectl_log.setLevel(logging.INFO)
    from .config import load_serve_config
    from .daemon import serve as run_daemon

    run_daemon(load_serve_config(config_file=config_file, flags=flags))


@serve.group()
def keys() -> None:
    """Manage API keys (only their hashes are stored)."""


@keys.command("add")
@click.argument("keys_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Who or what uses the key.")
@click.option("--admin", is_flag=True, help="Allow the repository API (load / unload models).")
def keys_add(keys_file: Path, name: str, admin: bool) -> None:
    """Create a key, store its hash in KEYS_FILE and print the key once."""
    key = add_key(keys_file, name, Role.ADMIN if admin else Role.USER)
    click.echo(key)
    click.echo(f"Stored the hash of {name}'s key in {keys_file}; the key is not shown again.", err=True)


@keys.command("list")
@click.argument("keys_file", type=click.Path(dir_okay=False, path_type=Path))
def keys_list(keys_file: Path) -> None:
    """List key names and roles."""
    for key in KeyRing.load(keys_file).keys:
        click.echo(f"{key.name}\t{key.role.value}")


@click.group()
def models() -> None:
    """Install, list, activate, roll back and remove models in a store."""


def _store(store: Path) -> Any:
    from .store import ModelStore

    return ModelStore(store)


@models.command("install")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@STORE_OPTION
@click.option("--no-activate", is_flag=True, help="Install side by side without activating.")
def models_install(bundle: Path, store: Path, no_activate: bool) -> None:
    """Verify BUNDLE (a .tar or an unpacked bundle directory: hashes, manifest, golden outputs on this device),
    put it in the store and activate it atomically."""
    manifest = _store(store).install(bundle, activate=not no_activate)
    state = "installed" if no_activate else "installed and activated"
    click.echo(f"{manifest.name} version {manifest.version} {state} in {store}")


@models.command("list")
@STORE_OPTION
def models_list(store: Path) -> None:
    """Models, their versions and the active one."""
    entries = _store(store).entries()
    if not entries:
        click.echo(f"no models in {store}")
    for e in entries:
        versions = ", ".join(f"*{v}" if v == e.active else str(v) for v in e.versions)
        click.echo(f"{e.name}\tactive={e.active if e.active is not None else '-'}\tversions: {versions}")


@models.command("activate")
@click.argument("model")
@click.argument("version", type=int)
@STORE_OPTION
def models_activate(model: str, version: int, store: Path) -> None:
    """Make VERSION the active version of MODEL (a running daemon switches within a second)."""
    _store(store).activate(model, version)
    click.echo(f"{model} version {version} is active")


@models.command("rollback")
@click.argument("model")
@STORE_OPTION
def models_rollback(model: str, store: Path) -> None:
    """Re-activate the version that was active before the current one."""
    version = _store(store).rollback(model)
    click.echo(f"{model} rolled back to version {version}")


@models.command("remove")
@click.argument("model")
@click.argument("version", type=int, required=False)
@STORE_OPTION
@click.option("--force", is_flag=True, help="Also remove the active version.")
def models_remove(model: str, version: int | None, store: Path, force: bool) -> None:
    """Remove one VERSION of MODEL, or the whole model."""
    _store(store).remove(model, version, force=force)
    click.echo(f"removed {model}" + (f" version {version}" if version is not None else ""))


@models.command("check")
@STORE_OPTION
def models_check(store: Path) -> None:
    """Check that every version matches its manifest and every active pointer names an installed version."""
    from edgectl.errors import StoreError

    problems = _store(store).check()
    for p in problems:
        click.echo(p)
    if problems:
        raise StoreError(f"The store {store} has {len(problems)} problem(s).")
    click.echo(f"{store}: consistent")
