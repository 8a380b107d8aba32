"""``edgectl convert`` — a thin click layer over :func:`edgectl.converter.convert`.

Flags mirror :class:`ConvertConfig` fields (their help texts come from there); ``--config`` reads a TOML recipe and
flags override it. Errors are typed EdgectlErrors: the root CLI prints ``error: <message>`` and exits with the
error's code (2 bad input, 3 accuracy tolerance missed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

from edgectl.errors import InputFileError

from .config import option_help

HELP = option_help()


def _opt(*decls: str, field: str, **kw: Any) -> Any:
    return click.option(*decls, field, default=None, help=HELP[field], **kw)


@click.command("convert", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("source", required=False)
@click.option(
    "--config",
    "recipe",
    type=click.Path(path_type=Path),
    default=None,
    help="A TOML recipe (edgectl.toml) with the same options; flags override it.",
)
@_opt("--weights", field="weights", type=click.Path(path_type=Path))
@_opt("--input-shape", field="input_shape")
@_opt("--input-names", field="input_names")
@_opt("--output-names", field="output_names")
@_opt("--dynamic-batch/--no-dynamic-batch", field="dynamic_batch")
@_opt("--opset", field="opset", type=int)
@_opt("--calibration", field="calibration", type=click.Path(path_type=Path))
@_opt("--validation", field="validation", type=click.Path(path_type=Path))
@_opt("--labels", field="labels", type=click.Path(path_type=Path))
@_opt("--preprocess", field="preprocess")
@_opt("--image-size", field="image_size", type=int)
@_opt("--calibration-samples", field="calibration_samples", type=int)
@_opt("--validation-samples", field="validation_samples", type=int)
@_opt("--batch-size", field="batch_size", type=int)
@_opt("--precision", field="precisions")
@_opt("--format", field="formats")
@_opt("--calibrate-method", field="calibrate_method")
@_opt("--per-channel/--per-tensor", field="per_channel")
@_opt("--activation-type", field="activation_type")
@_opt("--weight-type", field="weight_type")
@_opt("--reduce-range/--no-reduce-range", field="reduce_range")
@_opt("--quantize-op-types", field="quantize_op_types")
@_opt("--nodes-to-exclude", field="nodes_to_exclude")
@_opt("--max-accuracy-drop", field="max_accuracy_drop", metavar="POINTS|N%rel")
@_opt("--max-float-layers", field="max_float_layers", type=int)
@_opt("--prune", field="prune", metavar="METHOD:RATIO")
@_opt("--prune-exclude", field="prune_exclude", metavar="LAYER[,LAYER...]")
@_opt("--finetune", field="finetune", metavar="MODULE:FUNCTION|none")
@_opt("--finetune-steps", field="finetune_steps", type=int)
@_opt("--target", field="target")
@_opt("--warn-accuracy-drop", field="warn_accuracy_drop", type=float)
@_opt("--latency-threads", field="latency_threads", type=int)
@_opt("--latency-runs", field="latency_runs", type=int)
@_opt("--measure-memory/--no-measure-memory", field="measure_memory")
@_opt("--golden-samples", field="golden_samples", type=int)
@_opt("--seed", field="seed", type=int)
@_opt("--out", "-o", field="out", type=click.Path(path_type=Path))
@_opt("--name", field="name")
@_opt("--version", field="version", type=int)
@click.option("--force", "force", is_flag=True, default=None, help=HELP["force"])
def convert(source: str | None, recipe: Path | None, **flags: Any) -> None:
    """Convert SOURCE (TorchScript .pt, torch.export .pt2, ONNX, or module:callable) into a validated bundle.

    \b
    Examples:
      edgectl convert model.pt --input-shape 1x3x224x224 --calibration calib.npz --precision int8 --out bundles/
      edgectl convert my_pkg.models:build_net --weights net.pth --calibration images/ --preprocess imagenet \\
          --precision fp16,int8
      edgectl convert model.onnx --precision int8 --calibration calib.npz --max-accuracy-drop 0.5 --labels labels.npy
    """
    from .config import ConvertConfig
    from .pipeline import convert as run_convert

    config = ConvertConfig.from_recipe(recipe, source=source, **flags)
    console = Console()
    if not console.is_terminal:  # logs and CI: room for the whole report table
        console = Console(width=140)
    try:
        result = run_convert(config, console=console)
    except OSError as exc:  # a folder that cannot be written, a disk that is full: the user's to fix
        where = f" {exc.filename}" if exc.filename else ""
        raise InputFileError(f"Cannot read or write{where}: {exc.strerror or exc}.") from exc
    console.print(f"bundle: {result.bundle_dir}")
    console.print(f"tar:    {result.tar_path}")
    console.print(f"report: {result.report_json}, {result.report_md}")
