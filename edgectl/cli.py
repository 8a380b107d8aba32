"""The root ``edgectl`` command. Subcommands live with their packages and are imported only when used,
so ``edgectl serve`` on a device never imports the converter (or torch).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from edgectl import __version__
from edgectl.errors import EdgectlError
from edgectl.log import setup_logging

#: command name -> "module:attribute" of its click command.
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("edgectl.converter.cli:convert", "Convert a PyTorch or ONNX model into a validated bundle."),
    "serve": ("edgectl.runtime.cli:serve", "Serve the active models of a model store over HTTP."),
    "models": ("edgectl.runtime.cli:models", "Install, list and activate bundles in a model store."),
    "bundle": ("edgectl.bundle_cli:bundle", "Inspect, verify and pack bundles."),
    "keys": ("edgectl.trust.cli:keys", "Create and rotate signing keys."),
    "repo": ("edgectl.trust.cli:repo", "Manage the signed model repository (TUF)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target[0].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or "?"
            if missing.startswith("edgectl"):
                raise
            raise click.ClickException(
                f"'edgectl {cmd_name}' needs the Python package '{missing}', which is not installed. "
                f"Install the matching extra, e.g. pip install 'edgectl[{_extra_for(cmd_name)}]'."
            ) from exc
        command: click.Command = getattr(module, attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgectlError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)


def _extra_for(cmd_name: str) -> str:
    return {"convert": "convert"}.get(cmd_name, "device")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="edgectl")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--log-json", is_flag=True, help="Log JSON lines instead of text.")
def cli(verbose: int, log_json: bool) -> None:
    """edgectl — convert models for edge devices, serve them there, and roll them out to a fleet."""
    setup_logging(verbose, json_lines=log_json)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="edgectl", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted; nothing was left half-written.", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
