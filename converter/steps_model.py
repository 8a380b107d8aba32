"""The steps that turn the input into artifacts: load -> data -> export -> quantize."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from edgectl.runtime.backends import SessionOptions, backend_for

from edgectl.errors import ConfigError, MissingDependencyError, SignatureError, UserError

from .config import ConvertConfig
from .context import ConversionContext, _need
from .data import Dataset, load_dataset, read_labels
from .load import LoadedModel, load_model, run_torch
from .package import check_free, next_version, valid_name
from .quantize import CalibrationReader, QuantizationConfig, convert_fp16, quantize_onnx
from .signature import example_batch, peek_data, preprocessing_for, resolve_inputs
from .types import ExportedArtifact
from .validate import accuracy_of, run_session, top1

#: Samples used when the user gives no data at all (seeded random inputs; the report says so).
SYNTHETIC_SAMPLES = 32


class LoadStep:
    """Load the model; settle the bundle name and version and refuse an existing bundle before any work."""

    name = "load"

    def run(self, ctx: ConversionContext) -> None:
        cfg = ctx.config
        ctx.loaded = load_model(cfg)
        ctx.name = valid_name(cfg.name or ctx.loaded.default_name)
        ctx.version = cfg.version or next_version(cfg.out, ctx.name)
        check_free(cfg.out, ctx.name, ctx.version, force=cfg.force)


class DataStep:
    """Resolve the input signature, load calibration / validation data and labels, run the original model."""

    name = "data"

    def run(self, ctx: ConversionContext) -> None:
        cfg, loaded = ctx.config, _need(ctx.loaded)
        ctx.inputs = resolve_inputs(cfg, loaded, peek_data(cfg.calibration or cfg.validation))
        ctx.preprocessing = preprocessing_for(cfg, ctx.inputs)
        fixed = ctx.inputs[0].shape[0] if ctx.inputs[0].shape and ctx.inputs[0].shape[0] > 0 else None
        ctx.batch_size = fixed or cfg.batch_size
        labels_in_file = None
        if cfg.calibration is not None:
            ctx.calibration, labels_in_file = load_dataset(
                cfg.calibration, ctx.inputs, limit=cfg.calibration_samples, preprocessing=ctx.preprocessing
            )
        if cfg.validation is not None:
            ctx.validation, labels_in_file = load_dataset(
                cfg.validation, ctx.inputs, limit=cfg.validation_samples, preprocessing=ctx.preprocessing
            )
        elif ctx.calibration is not None:
            ctx.validation = ctx.calibration.head(cfg.validation_samples)
            ctx.warnings.append("Validated on the calibration data (optimistic); pass --validation for held-out data.")
        else:
            rng = np.random.default_rng(cfg.seed)
            ctx.validation = Dataset(example_batch(ctx.inputs, rng, SYNTHETIC_SAMPLES), "random inputs")
            ctx.warnings.append("No data given: validated on seeded random inputs; agreement numbers are indicative.")
        ctx.labels = read_labels(cfg.labels) if cfg.labels is not None else labels_in_file
        if ctx.labels is not None and ctx.labels.shape[0] < len(ctx.validation):
            raise ConfigError(
                f"{ctx.labels.shape[0]} labels for {len(ctx.validation)} validation samples; give one label per sample."
            )
        self._reference(ctx)

    def _reference(self, ctx: ConversionContext) -> None:
        loaded, names = _need(ctx.loaded), [s.name for s in ctx.inputs]
        data = _need(ctx.validation)
        rows = min(2, len(data)) if ctx.inputs[0].shape[0] == -1 else ctx.inputs[0].shape[0]
        ctx.example = {k: np.concatenate([v, v])[:rows] if len(v) < rows else v[:rows] for k, v in data.arrays.items()}
        run = _reference_runner(ctx, loaded, names)
        try:
            run(ctx.example)
        except (UserError, MissingDependencyError):
            raise
        except Exception as exc:  # the model's own shape checks (matmul sizes, conv channels) land here
            shapes = ", ".join(f"{k}: {'x'.join(map(str, v.shape))}" for k, v in ctx.example.items())
            raise SignatureError(
                f"The model does not accept inputs of shape {shapes}: {_last_line(exc)}",
                hint="Check --input-shape and the calibration data.",
            ) from exc
        batches = ctx.validation_batches()
        with ctx.progress("reference model", len(batches)) as advance:
            for batch in batches:
                ctx.reference.append(run(batch))
                advance()
        count = len(ctx.reference[0])
        if ctx.config.output_names:
            if len(ctx.config.output_names) != count:
                raise SignatureError(
                    f"--output-names gives {len(ctx.config.output_names)} name(s); the model has {count}."
                )
            ctx.output_names = list(ctx.config.output_names)
        elif loaded.declared_outputs:
            ctx.output_names = list(loaded.declared_outputs)
        else:
            ctx.output_names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
        if top1(ctx.reference[0][0]) is None and ctx.config.max_accuracy_drop is not None:
            raise ConfigError(
                "--max-accuracy-drop needs a classification output (N x classes); this model's first output has "
                f"shape {list(ctx.reference[0][0].shape)}. Judge it by the max/mean error in the report instead."
            )
        if ctx.labels is not None:
            ctx.reference_quality = accuracy_of([np.concatenate([r[0] for r in ctx.reference])], ctx.labels)


def _last_line(exc: Exception) -> str:
    """The message of an error raised inside the model; TorchScript prepends its own serialized traceback."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def _reference_runner(ctx: ConversionContext, loaded: LoadedModel, names: list[str]) -> Callable[..., Any]:
    if loaded.is_torch:
        return lambda batch: run_torch(loaded.module, batch, names)
    session = backend_for("onnx").load(_need(loaded.onnx_path), SessionOptions())
    return lambda batch: run_session(session, batch)


class ExportStep:
    """fp32 ONNX (checked against the original), plus TFLite artifacts when asked for."""

    name = "export"

    def run(self, ctx: ConversionContext) -> None:
        from .export_onnx import check_against_reference, export_torch, import_onnx, traceable_module

        cfg, loaded = ctx.config, _need(ctx.loaded)
        out = ctx.work_dir / "model.fp32.onnx"
        if loaded.is_torch:
            if ctx.module is None:
                ctx.module = traceable_module(loaded, ctx.example, [s.name for s in ctx.inputs])
            ctx.fp32 = export_torch(
                ctx.module,
                ctx.example,
                ctx.inputs,
                ctx.output_names,
                kind=loaded.kind,
                dynamic_batch=cfg.dynamic_batch,
                opset=cfg.opset,
                out_path=out,
            )
        else:
            if "tflite" in cfg.formats:
                raise UserError(
                    "TFLite export needs the PyTorch model (TorchScript, .pt2 or a factory); this input is ONNX.",
                    hint="Pass the original PyTorch model, or use --format onnx.",
                )
            ctx.fp32 = import_onnx(loaded, out)
        ctx.export_check_error = check_against_reference(
            ctx.fp32.path,
            ctx.example,
            # After --prune the export is checked against the pruned module it was made from.
            run_torch(ctx.module, ctx.example, [s.name for s in ctx.inputs])
            if "prune" in ctx.step_records
            else _reference_runner(ctx, loaded, [s.name for s in ctx.inputs])(ctx.example),
            ctx.output_names,
        )
        session = backend_for("onnx").load(ctx.fp32.path, SessionOptions())
        ctx.inputs, ctx.outputs = list(session.signature.inputs), list(session.signature.outputs)
        session.close()
        if "onnx" in cfg.formats and "fp32" in cfg.precisions:
            ctx.artifacts.append(ctx.fp32)
        if "tflite" in cfg.formats:
            ctx.artifacts.extend(self._tflite(ctx))

    def _tflite(self, ctx: ConversionContext) -> list[ExportedArtifact]:
        try:
            from edgectl.converter.tflite import TfliteOptions, export_tflite_artifacts
        except ImportError as exc:
            raise MissingDependencyError("litert-torch", extra="convert-tflite", purpose="TFLite export") from exc
        import torch

        tflite_dir = ctx.work_dir / "tflite"
        tflite_dir.mkdir(exist_ok=True)
        single = tuple(torch.from_numpy(ctx.example[s.name][:1]) for s in ctx.inputs)
        return list(
            export_tflite_artifacts(
                ctx.module,
                single,
                precisions=list(ctx.config.precisions),
                calibration=ctx.calibration_batches(),
                input_names=[s.name for s in ctx.inputs],
                output_names=list(ctx.output_names),
                out_dir=tflite_dir,
                options=TfliteOptions(
                    calibration_samples=ctx.config.calibration_samples, per_channel=ctx.config.per_channel
                ),
            )
        )


def quantization_config(config: ConvertConfig, mode: str) -> QuantizationConfig:
    """The typed quantization options the flags describe (``mode`` "static" or "dynamic")."""
    return QuantizationConfig(
        mode=mode,
        calibrate_method=config.calibrate_method,
        per_channel=config.per_channel,
        activation_type=config.activation_type,
        weight_type=config.weight_type,
        reduce_range=config.reduce_range,
        op_types_to_quantize=config.quantize_op_types,
        nodes_to_exclude=config.nodes_to_exclude,
    )


class QuantizeStep:
    """fp16, int8 static (calibrated, QDQ) and int8 dynamic ONNX files from the fp32 one."""

    name = "quantize"

    def run(self, ctx: ConversionContext) -> None:
        cfg, fp32 = ctx.config, _need(ctx.fp32)
        if "onnx" not in cfg.formats:
            return
        if "fp16" in cfg.precisions:
            ctx.artifacts.append(convert_fp16(fp32.path, ctx.work_dir / "model.fp16.onnx"))
        if "int8" in cfg.precisions:
            batches = ctx.calibration_batches()
            with ctx.progress(f"calibrating ({cfg.calibrate_method})", len(batches)) as advance:
                reader = CalibrationReader(batches, on_batch=advance)
                ctx.artifacts.append(
                    quantize_onnx(
                        fp32.path, ctx.work_dir / "model.int8.onnx", quantization_config(cfg, "static"), reader
                    )
                )
        if "int8-dynamic" in cfg.precisions:
            ctx.artifacts.append(
                quantize_onnx(
                    fp32.path, ctx.work_dir / "model.int8-dynamic.onnx", quantization_config(cfg, "dynamic"), None
                )
            )
