"""Running `edgectl convert` through click's CliRunner, shared by the converter's CLI tests."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from edgectl.cli import cli

#: Keep CLI tests fast: few timed runs, no memory-probe subprocess.
FAST = ["--latency-runs", "2", "--no-measure-memory"]


def run(*args: str | Path) -> Result:
    """Invoke ``edgectl convert ARGS`` (plus :data:`FAST`); a traceback in the output is always a failure."""
    result = CliRunner().invoke(cli, ["convert", *map(str, args), *FAST])
    assert "Traceback" not in result.output
    return result


def error_line(result: Result) -> str:
    """The one ``error: ...`` line a failed conversion prints."""
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]
