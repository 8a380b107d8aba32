"""The typed options of one conversion: :class:`ConvertConfig`, and how a TOML recipe becomes one.

Every field describes itself (``metadata["help"]``); the CLI flags and the recipe keys use the same names
(dashes or underscores). Precedence, lowest to highest: field defaults, the recipe, flags or keyword arguments.
This module imports neither torch nor onnx, so ``import edgectl.converter`` stays cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgectl.config import load_toml
from edgectl.errors import ConfigError

#: Precision names a user may ask for. "int8" is static (calibrated, QDQ); "int8-dynamic" quantizes weights
#: ahead of time and activations at run time (for linear / attention-heavy models).
PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic")
FORMATS = ("onnx", "tflite")
CALIBRATE_METHODS = ("minmax", "entropy", "percentile", "distribution")
QUANT_TYPES = ("uint8", "int8")


def _help(text: str, **extra: Any) -> dict[str, Any]:
    """Field metadata: the help text the CLI and docs show (``api=True`` marks Python-API-only fields)."""
    return {"help": text, **extra}


@dataclass(kw_only=True)
class ConvertConfig:
    """Everything a conversion needs. Build it directly, from a recipe (:meth:`from_recipe`) or via the CLI."""

    # -- the model ------------------------------------------------------------------------------
    source: str | None = field(
        default=None,
        metadata=_help(
            "Model to convert: a TorchScript file (.pt/.pth), a torch.export program (.pt2), an ONNX file, "
            "or a 'package.module:callable' factory that returns a torch.nn.Module."
        ),
    )
    model: Any = field(
        default=None,
        metadata=_help("An in-memory torch.nn.Module to convert instead of `source` (Python API only).", api=True),
    )
    weights: Path | None = field(
        default=None, metadata=_help("A state dict (.pth/.pt) loaded into the module a factory returns.")
    )
    input_shape: tuple[tuple[int, ...], ...] | None = field(
        default=None,
        metadata=_help(
            "Input shape(s) such as 1x3x224x224 (comma-separated for several inputs). Taken from the model or the "
            "calibration data when omitted."
        ),
    )
    input_names: tuple[str, ...] | None = field(
        default=None, metadata=_help("Names of the model inputs (comma-separated).")
    )
    output_names: tuple[str, ...] | None = field(
        default=None, metadata=_help("Names of the model outputs (comma-separated).")
    )
    dynamic_batch: bool = field(
        default=True, metadata=_help("Export the first dimension of every input and output as dynamic.")
    )
    opset: int | None = field(
        default=None, metadata=_help("ONNX opset to export with (default: the exporter's own default).")
    )

    # -- data -----------------------------------------------------------------------------------
    calibration: Path | None = field(
        default=None, metadata=_help("Calibration data: a .npz (one array per input), a .npy, or an image folder.")
    )
    validation: Path | None = field(
        default=None,
        metadata=_help("Validation data in the same forms; defaults to the calibration data (an optimistic measure)."),
    )
    labels: Path | None = field(
        default=None,
        metadata=_help(
            "Integer class labels (.npy, .npz or .txt) for the validation data: turns agreement into accuracy."
        ),
    )
    preprocess: str | None = field(
        default=None,
        metadata=_help(
            "Named preprocessing for image folders (imagenet, imagenet-nhwc, unit, unit-nhwc); recorded in the "
            "manifest so the device applies the same steps."
        ),
    )
    image_size: int | None = field(
        default=None, metadata=_help("Crop size for image preprocessing (default from the preset or the shape).")
    )
    calibration_samples: int = field(
        default=256, metadata=_help("Use at most this many calibration samples (first ones, in file order).")
    )
    validation_samples: int = field(default=1000, metadata=_help("Validate on at most this many samples."))
    batch_size: int = field(default=8, metadata=_help("Batch size for calibration and validation runs."))

    # -- precisions and formats -----------------------------------------------------------------
    precisions: tuple[str, ...] = field(
        default=("fp32",),
        metadata=_help(
            "Comma-separated precisions to produce: fp32, fp16, int8 (static, calibrated), int8-dynamic. One bundle "
            "holds one file per precision."
        ),
    )
    formats: tuple[str, ...] = field(
        default=("onnx",), metadata=_help("Comma-separated model formats to produce: onnx, tflite.")
    )
    calibrate_method: str = field(
        default="minmax",
        metadata=_help("Static int8 calibration method: minmax, entropy, percentile (or distribution)."),
    )
    per_channel: bool = field(default=True, metadata=_help("Quantize weights per output channel (static int8)."))
    activation_type: str = field(
        default="uint8", metadata=_help("Activation type for static int8: uint8 (fast with VNNI / on ARM) or int8.")
    )
    weight_type: str = field(default="int8", metadata=_help("Weight type for int8: int8 or uint8."))
    reduce_range: bool = field(
        default=False, metadata=_help("Quantize weights to 7 bits (helps CPUs without VNNI avoid saturation).")
    )
    quantize_op_types: tuple[str, ...] | None = field(
        default=None, metadata=_help("Only quantize these ONNX op types (default: every op onnxruntime can quantize).")
    )
    nodes_to_exclude: tuple[str, ...] = field(
        default=(), metadata=_help("ONNX node names to keep in float when quantizing.")
    )

    # -- quality bar and measurement -------------------------------------------------------------
    max_accuracy_drop: float | None = field(
        default=None,
        metadata=_help(
            "Guarantee: at most this many accuracy (or agreement) points lost, or N%rel of the original's accuracy. "
            "With int8 the fastest quantization within it is searched for; nothing within it fails (exit 3)."
        ),
    )
    warn_accuracy_drop: float = field(
        default=1.0, metadata=_help("Flag an artifact in the report when it loses more than this many points.")
    )
    latency_threads: int = field(default=1, metadata=_help("Threads used when measuring latency."))
    latency_runs: int = field(
        default=30, metadata=_help("Timed runs per artifact (after warm-up) for the latency percentiles.")
    )
    measure_memory: bool = field(
        default=True, metadata=_help("Measure peak memory of loading + running each artifact in a subprocess.")
    )
    golden_samples: int = field(default=4, metadata=_help("Number of golden inputs stored in golden.npz."))
    seed: int = field(default=0, metadata=_help("Seed for every random choice (reproducible bundles)."))
    accuracy_drop_relative: bool = field(
        default=False,
        metadata=_help("Read max_accuracy_drop as a percentage of the original's accuracy (what '1%rel' sets)."),
    )
    max_float_layers: int = field(
        default=8, metadata=_help("Accuracy tuning: keep at most this many sensitive layer groups in float.")
    )

    # -- pruning and device profile (docs/tuning.md) ----------------------------------------------
    prune: str | None = field(
        default=None,
        metadata=_help(
            "Prune before export: channels:R (structured, smaller and faster dense model) or magnitude:R "
            "(unstructured, smaller compressed file); R in (0, 1), per-layer ratios as channels:0.3,LAYER=0.5."
        ),
    )
    prune_exclude: tuple[str, ...] = field(
        default=(), metadata=_help("Modules (and their children) that pruning must not touch, e.g. classifier.")
    )
    finetune: str | None = field(
        default=None,
        metadata=_help(
            "Recovery after channel pruning: 'module:function' called as finetune(model, data) -> model, or 'none'. "
            "Default: a short distillation from the original model on the calibration inputs."
        ),
    )
    finetune_steps: int = field(default=300, metadata=_help("Steps of the built-in recovery distillation."))
    target: str | None = field(
        default=None,
        metadata=_help(
            "Device profile that sets the defaults: rpi4, rpi5, jetson-orin, x86-avx512, generic-arm64 "
            "(explicit flags win; see docs/tuning.md)."
        ),
    )

    # -- output ---------------------------------------------------------------------------------
    out: Path = field(
        default_factory=lambda: Path("bundles"),
        metadata=_help("Output folder for the bundle, its tar and the reports."),
    )
    name: str | None = field(
        default=None, metadata=_help("Bundle name (default: the model file stem or factory name, sanitised).")
    )
    version: int | None = field(
        default=None, metadata=_help("Bundle version (default: 1 + the highest existing one of that name in --out).")
    )
    force: bool = field(default=False, metadata=_help("Replace an existing bundle of the same name and version."))

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check values that do not need the model. Raises :class:`ConfigError` naming the bad option."""
        if self.source is None and self.model is None:
            raise ConfigError("Nothing to convert: give a model file, an ONNX file or a 'module:callable' factory.")
        if not self.precisions:
            raise ConfigError("--precision needs at least one of " + ", ".join(PRECISIONS) + ".")
        for prec in self.precisions:
            if prec not in PRECISIONS:
                raise ConfigError(f"Unknown precision '{prec}'; choose from {', '.join(PRECISIONS)}.")
        if len(set(self.precisions)) != len(self.precisions):
            raise ConfigError(f"--precision lists a precision twice: {','.join(self.precisions)}.")
        for fmt in self.formats:
            if fmt not in FORMATS:
                raise ConfigError(f"Unknown format '{fmt}'; choose from {', '.join(FORMATS)}.")
        if not self.formats:
            raise ConfigError("--format needs at least one of " + ", ".join(FORMATS) + ".")
        if self.calibrate_method not in CALIBRATE_METHODS:
            raise ConfigError(
                f"Unknown calibration method '{self.calibrate_method}'; choose from {', '.join(CALIBRATE_METHODS)}."
            )
        for opt in ("activation_type", "weight_type"):
            if getattr(self, opt) not in QUANT_TYPES:
                raise ConfigError(f"--{opt.replace('_', '-')} must be one of {', '.join(QUANT_TYPES)}.")
        for opt in ("calibration_samples", "validation_samples", "batch_size", "latency_threads", "latency_runs"):
            if getattr(self, opt) < 1:
                raise ConfigError(f"--{opt.replace('_', '-')} must be at least 1, got {getattr(self, opt)}.")
        if self.golden_samples < 1:
            raise ConfigError(f"--golden-samples must be at least 1, got {self.golden_samples}.")
        if self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            raise ConfigError(f"--max-accuracy-drop must be >= 0 points, got {self.max_accuracy_drop}.")
        self._validate_tuning()
        if self.version is not None and self.version < 1:
            raise ConfigError(f"--version must be a positive integer, got {self.version}.")
        if self.weights is not None and self.source is not None and ":" not in str(self.source):
            raise ConfigError("--weights only applies to a 'module:callable' factory; a model file carries its own.")
        if "int8" in self.precisions and self.calibration is None:
            raise ConfigError(
                "Static int8 needs calibration data.",
                hint="Pass --calibration data.npz (or an image folder), or use --precision int8-dynamic.",
            )

    def _validate_tuning(self) -> None:
        from .profiles import get_profile
        from .prune import PruneMethod, parse_prune_spec

        if self.prune is not None:
            method = parse_prune_spec(self.prune, exclude=self.prune_exclude).method
            if self.finetune is not None and method is not PruneMethod.CHANNELS:
                raise ConfigError(
                    "--finetune applies to channel pruning only; magnitude pruning keeps no recovery step "
                    "(training would regrow the zeroed weights)."
                )
        elif self.prune_exclude or self.finetune is not None:
            raise ConfigError("--prune-exclude and --finetune need --prune (e.g. --prune channels:0.3).")
        for opt in ("finetune_steps", "max_float_layers"):
            if getattr(self, opt) < 1:
                raise ConfigError(f"--{opt.replace('_', '-')} must be at least 1, got {getattr(self, opt)}.")
        if self.accuracy_drop_relative and self.max_accuracy_drop is not None and self.max_accuracy_drop >= 100:
            raise ConfigError(f"A relative accuracy drop must be below 100%rel, got {self.max_accuracy_drop}%rel.")
        if self.target is not None:
            get_profile(self.target)

    def allowed_drop(self, reference: float | None) -> float | None:
        """--max-accuracy-drop in points for a reference accuracy (percent); None when no tolerance is set."""
        if self.max_accuracy_drop is None:
            return None
        if self.accuracy_drop_relative:
            return None if reference is None else reference * self.max_accuracy_drop / 100.0
        return self.max_accuracy_drop

    # -- recipes --------------------------------------------------------------------------------

    @classmethod
    def from_recipe(cls, path: Path | None, **overrides: Any) -> ConvertConfig:
        """Read a TOML recipe (its ``[convert]`` table, or the top level) and apply ``overrides`` on top.

        Relative paths in the recipe are resolved against the recipe's folder. ``None`` overrides are ignored,
        so unset CLI flags keep the recipe's value. Raises :class:`ConfigError` for unknown keys or bad values.
        """
        values: dict[str, Any] = {}
        if path is not None:
            raw = load_toml(Path(path))
            table = raw.get("convert", raw)
            if not isinstance(table, dict):
                raise ConfigError(f"[convert] in {path} must be a table.")
            table = {k.replace("-", "_"): v for k, v in table.items()}
            values = coerce_values(table, where=str(path), base_dir=Path(path).parent)
        values.update(coerce_values({k: v for k, v in overrides.items() if v is not None}, where="arguments"))
        if values.get("target"):
            from .profiles import config_defaults, get_profile

            # The profile fills only what neither the recipe nor a flag set: explicit values always win.
            for key, value in config_defaults(get_profile(values["target"]), source=values.get("source")).items():
                values.setdefault(key, value)
        return cls(**values)

    def parameters(self) -> dict[str, Any]:
        """The options that shape the bundle, as JSON-able values (recorded in the manifest).

        Output placement (out, force) and the in-memory module are left out: they do not change the bundle.
        """
        skip = {"out", "force", "model"}
        params: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in skip:
                continue
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            params[f.name] = value
        return params


def option_help() -> dict[str, str]:
    """Field name -> help text (used by the CLI and the docs)."""
    return {f.name: f.metadata["help"] for f in dataclasses.fields(ConvertConfig)}


_PATHS = {"weights", "calibration", "validation", "labels", "out"}
_STR_TUPLES = {
    "input_names",
    "output_names",
    "precisions",
    "formats",
    "quantize_op_types",
    "nodes_to_exclude",
    "prune_exclude",
}
_INTS = {
    "opset",
    "image_size",
    "calibration_samples",
    "validation_samples",
    "batch_size",
    "latency_threads",
    "latency_runs",
    "golden_samples",
    "seed",
    "finetune_steps",
    "max_float_layers",
    "version",
}
_FLOATS = {"max_accuracy_drop", "warn_accuracy_drop"}
_BOOLS = {"dynamic_batch", "per_channel", "reduce_range", "measure_memory", "force", "accuracy_drop_relative"}


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x3x224x224"`` -> ``(1, 3, 224, 224)``. Raises :class:`ConfigError` for anything else."""
    try:
        dims = tuple(int(d) for d in text.strip().lower().split("x"))
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise ConfigError(f"Bad input shape '{text}': write positive dimensions joined by 'x', e.g. 1x3x224x224.")
    return dims


def _split(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list | tuple):
        return list(value)
    raise ConfigError(f"Expected a comma-separated string or a list, got {value!r}.")


def coerce_values(values: Mapping[str, Any], *, where: str, base_dir: Path | None = None) -> dict[str, Any]:
    """Turn raw recipe / flag values into the field types of :class:`ConvertConfig`."""
    known = {f.name for f in dataclasses.fields(ConvertConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"Unknown option(s) {', '.join(unknown)} in {where}; known: {', '.join(sorted(known))}.")
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "max_accuracy_drop" and isinstance(value, str):
            from .tuning import AccuracyTolerance

            # "1", "1pt" (points) or "2%rel" (relative to the original's accuracy): one flag, two fields.
            tolerance = AccuracyTolerance.parse(value)
            out[key], out["accuracy_drop_relative"] = tolerance.value, tolerance.relative
            continue
        try:
            out[key] = _coerce(key, value, base_dir)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Option '{key}' in {where} has a bad value {value!r}: {exc}.") from exc
    return out


def _coerce(key: str, value: Any, base_dir: Path | None) -> Any:
    if key in _PATHS:
        path = Path(value)
        return base_dir / path if base_dir is not None and not path.is_absolute() else path
    if key == "source":
        text = str(value)
        is_factory = ":" in text and not Path(text).exists()
        if base_dir is not None and not is_factory and not Path(text).is_absolute():
            return str(base_dir / text)
        return text
    if key in _STR_TUPLES:
        return tuple(str(v) for v in _split(value))
    if key == "input_shape":
        if isinstance(value, str):
            return tuple(parse_shape(s) for s in _split(value))
        items = list(value)
        if items and all(isinstance(d, int) for d in items):
            return (tuple(int(d) for d in items),)
        return tuple(parse_shape(s) if isinstance(s, str) else tuple(int(d) for d in s) for s in items)
    if key in _INTS:
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        return int(value)
    if key in _FLOATS:
        return float(value)
    if key in _BOOLS:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if key in ("calibrate_method", "activation_type", "weight_type", "preprocess", "name"):
        return str(value).lower() if key != "name" else str(value)
    return value
