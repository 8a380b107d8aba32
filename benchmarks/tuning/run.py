"""Pruning + accuracy-aware int8 on real models, against the same job done by hand with the usual tools.

    python -m benchmarks.tuning.run [--skip-efficientnet] [--out benchmarks/tuning]

For the digits CNN and EfficientNet-Lite0 it measures, side by side:

- ``fp32``: the original model;
- ``edgectl channels:0.3 + distill``: structured pruning of 30% of the channels (torch-pruning's dependency graph),
  then edgectl's built-in distillation from the original on the unlabelled calibration inputs;
- ``edgectl magnitude:0.5``: unstructured pruning (reported for its compressed size);
- ``edgectl int8 (tuned, 1pt)``: the accuracy-aware tuner on the pruned model, the drop bounded by 1 point from the
  *original* model;
- ``by hand``: ``torch.nn.utils.prune.ln_structured`` 30% (masks, dense shapes), the same distillation, then
  onnxruntime's ``quantize_static`` with its defaults — what a user reaches for first.

Plus the int8 failure cases: EfficientNet-Lite0 and a CNN with an outlier activation channel, where the default int8
misses a 1-point tolerance, and what the tuner does about it. Writes results.json and README.md next to this file.
Quality is top-1 accuracy on labels for digits, top-1 agreement with the original fp32 model for EfficientNet (there
are no ImageNet labels for the bundled photos). Latency: one thread, interleaved rounds, as ratios to fp32.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgectl.converter.distill import DistillConfig, FinetuneData, distill
from edgectl.converter.prune import model_stats, parse_prune_spec, prune_model
from edgectl.converter.tuning import AccuracyTolerance, QuantSettings
from edgectl.converter.tuning_ort import TuningData, tune_onnx
from torch import nn

from benchmarks.common import digits_cnn, efficientnet_lite0, machine_info, photo_crops, write_json
from benchmarks.tuning.measure import Row, export_onnx, latencies, onnx_outputs, top1_percent, torch_outputs
from benchmarks.tuning.outlier import build_outlier_model
from benchmarks.tuning.readme import render_readme
from edgectl.errors import AccuracyToleranceError
from edgectl.fsutil import atomic_write_text

HERE = Path(__file__).resolve().parent


def by_hand_prune(model: nn.Module, amount: float, *, protect: str) -> nn.Module:
    """What the PyTorch tutorial does: mask 30% of each conv / linear layer's output channels by L2 norm."""
    from torch.nn.utils import prune

    model = copy.deepcopy(model)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear) and name != protect:
            prune.ln_structured(module, name="weight", amount=amount, n=2, dim=0)
    return model


def bake_masks(model: nn.Module) -> nn.Module:
    from torch.nn.utils import prune

    for module in model.modules():
        if hasattr(module, "weight_orig"):
            prune.remove(module, "weight")
    return model.eval()


def ort_default_int8(fp32: Path, out: Path, calibration: np.ndarray) -> Path:
    """onnxruntime's quantize_static with every default (QDQ, per-tensor, MinMax, int8 activations)."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": calibration[i : i + 16]} for i in range(0, len(calibration), 16)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(str(fp32), str(out), Reader())
    return out


def tuning_data(
    fp32: Path, calibration: np.ndarray, validation: np.ndarray, reference: np.ndarray, labels: np.ndarray | None
) -> TuningData:
    step = 50
    return TuningData(
        calibration=[{"x": calibration[i : i + 16]} for i in range(0, len(calibration), 16)],
        validation=[{"x": validation[i : i + step]} for i in range(0, len(validation), step)],
        reference=[[reference[i : i + step]] for i in range(0, len(validation), step)],
        labels=labels,
        latency_runs=10,
    )


def run_model(
    name: str,
    teacher: nn.Module,
    calibration: np.ndarray,
    validation: np.ndarray,
    labels: np.ndarray | None,
    *,
    protect: str,
    distill_steps: int,
    distill_batch: int,
    work: Path,
    batches: dict[str, int],
) -> dict[str, Any]:
    """Every variant of one model; returns the JSON section for it."""
    timings: dict[str, float] = {}
    example = torch.from_numpy(validation[:2])
    reference = torch_outputs(teacher, validation)
    target = labels if labels is not None else reference
    rows: list[Row] = []

    def add(variant: str, path: Path, model: nn.Module | None = None, note: str = "") -> Row:
        stats = model_stats(model, example) if model is not None else None
        row = Row(
            model=name,
            variant=variant,
            path=path,
            quality=top1_percent(onnx_outputs(path, validation), target),
            params=stats.params if stats else None,
            nonzero_params=stats.nonzero_params if stats else None,
            macs=stats.macs if stats else None,
            note=note,
        )
        rows.append(row)
        return row

    fp32 = add("fp32", export_onnx(teacher, validation, work / f"{name}-fp32.onnx"), teacher)
    data = FinetuneData(inputs=(calibration,))
    recovery = DistillConfig(steps=distill_steps, batch_size=distill_batch, lr=1e-3, show_progress=False)

    start = time.perf_counter()
    pruned = prune_model(teacher, example, parse_prune_spec("channels:0.3", exclude=()))
    result = distill(pruned.model, teacher, data, recovery)
    timings["prune_and_distill_s"] = time.perf_counter() - start
    pruned_row = add(
        "edgectl channels:0.3 + distill",
        export_onnx(pruned.model, validation, work / f"{name}-pruned.onnx"),
        pruned.model,
        note=f"distillation loss {result.first_loss:.3f} -> {result.last_loss:.3f}",
    )

    sparse = prune_model(teacher, example, parse_prune_spec("magnitude:0.5"))
    add(
        "edgectl magnitude:0.5",
        export_onnx(sparse.model, validation, work / f"{name}-sparse.onnx"),
        sparse.model,
        note="dense shapes unchanged: smaller gzip, same latency",
    )

    tuned = _tune(name, pruned_row, calibration, validation, reference, labels, fp32.quality, work, timings)
    if tuned is not None:
        rows.append(tuned)

    start = time.perf_counter()
    masked = by_hand_prune(teacher, 0.3, protect=protect)
    distill(masked, teacher, data, recovery)
    masked = bake_masks(masked)
    timings["by_hand_prune_and_distill_s"] = time.perf_counter() - start
    hand = add(
        "by hand: torch ln_structured 0.3 + distill",
        export_onnx(masked, validation, work / f"{name}-hand.onnx"),
        masked,
        note="channels zeroed, not removed",
    )
    add(
        "by hand: + onnxruntime quantize_static defaults",
        ort_default_int8(hand.path, work / f"{name}-hand-int8.onnx", calibration),
        note="QDQ, per-tensor, MinMax, int8 activations",
    )

    inputs = {f"batch{b}": np.ascontiguousarray(validation[:b]) for b in batches.values()}
    lat = latencies(rows, inputs, rounds=5, iterations=20 if name == "digits" else 8)
    out_rows = []
    for row in rows:
        record = row.to_json()
        record["latency_ms"] = {b: lat[row.variant][b]["p50_ms"] for b in inputs}
        record["latency_vs_fp32"] = {
            b: round(lat[row.variant][b]["p50_ms"] / lat[fp32.variant][b]["p50_ms"], 3) for b in inputs
        }
        record["quality_drop"] = round(fp32.quality - row.quality, 2)
        out_rows.append(record)
    return {
        "rows": out_rows,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "quality": "accuracy" if labels is not None else "agreement with fp32",
    }


def _tune(
    name: str,
    pruned: Row,
    calibration: np.ndarray,
    validation: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray | None,
    original: float,
    work: Path,
    timings: dict[str, float],
) -> Row | None:
    """The tuner on the pruned model under a 1-point budget: from the original model when the pruned fp32 model is
    within 1 point of it, else from the pruned fp32 model (the int8 step's own budget; the row says which)."""
    start = time.perf_counter()
    data = tuning_data(pruned.path, calibration, validation, reference, labels)
    total = pruned.quality >= original - 1.0
    try:
        artifact, _ = tune_onnx(
            pruned.path,
            data=data,
            tolerance=AccuracyTolerance(1.0),
            default=QuantSettings(),
            work_dir=work / f"{name}-tune",
            baseline_accuracy=original if total else None,
            max_float_layers=4,
        )
    except AccuracyToleranceError as err:
        print(f"{name}: no int8 candidate of the pruned model within the 1-point budget:\n{err}")
        return None
    finally:
        timings["tune_pruned_s"] = time.perf_counter() - start
    label = artifact.quantization["tuning"]["chosen"]
    return Row(
        model=name,
        variant="edgectl channels:0.3 + int8 (tuned, 1pt " + ("vs original)" if total else "vs pruned fp32)"),
        path=artifact.path,
        quality=top1_percent(onnx_outputs(artifact.path, validation), labels if labels is not None else reference),
        note=f"chosen: {label}",
    )


def int8_failure_case(
    name: str,
    fp32: Path,
    calibration: np.ndarray,
    validation: np.ndarray,
    reference: np.ndarray,
    *,
    max_float_layers: int,
) -> dict[str, Any]:
    """Default int8 vs the tuner under a 1-point agreement budget; the full candidate table either way."""
    data = tuning_data(fp32, calibration, validation, reference, None)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"tune-{name}-") as tmp:
        try:
            _, report = tune_onnx(
                fp32,
                data=data,
                tolerance=AccuracyTolerance(1.0),
                default=QuantSettings(),
                work_dir=Path(tmp),
                max_float_layers=max_float_layers,
            )
            outcome = "recovered"
        except AccuracyToleranceError as err:
            report, outcome = err.report, "no candidate within tolerance (AccuracyToleranceError)"
    return {
        "model": name,
        "outcome": outcome,
        "seconds": round(time.perf_counter() - start, 1),
        "report": report.to_json(),
        "table": report.to_markdown(),
    }


def outlier_model(path: Path) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """A CNN with one activation channel ~300x larger than the rest (compensated in the next layer)."""
    build_outlier_model(path, outlier=300.0)
    x = np.random.default_rng(1).random((400, 1, 8, 8)).astype(np.float32)
    return path, x[:64], x[64:], onnx_outputs(path, x[64:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-efficientnet", action="store_true", help="only the digits CNN (a few minutes)")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--effnet-distill-steps", type=int, default=40, help="recovery steps for EfficientNet-Lite0")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    results: dict[str, Any] = {"machine": machine_info(), "models": {}, "int8_failures": []}
    with tempfile.TemporaryDirectory(prefix="edgectl-bench-tuning-") as tmp:
        work = Path(tmp)
        digits = digits_cnn()
        results["models"]["digits"] = run_model(
            "digits",
            digits.model,
            digits.calibration,
            digits.validation,
            digits.labels,
            protect="11",
            distill_steps=400,
            distill_batch=32,
            work=work,
            batches={"b1": 1, "b64": 64},
        )
        path, cal, val, ref = outlier_model(work / "outlier.onnx")
        results["int8_failures"].append(int8_failure_case("outlier-cnn", path, cal, val, ref, max_float_layers=4))
        _write(args.out, results)  # each section is kept even if a later, longer one is interrupted
        if not args.skip_efficientnet:
            model = efficientnet_lite0()
            calibration, validation = photo_crops(128, split="calibration"), photo_crops(120, split="validation")
            results["models"]["efficientnet-lite0"] = run_model(
                "efficientnet-lite0",
                model,
                calibration,
                validation,
                None,
                protect="_fc",
                distill_steps=args.effnet_distill_steps,
                distill_batch=16,
                work=work,
                batches={"b1": 1},
            )
            _write(args.out, results)
            fp32 = export_onnx(model, validation, work / "effnet-failure-fp32.onnx")
            results["int8_failures"].append(
                int8_failure_case(
                    "efficientnet-lite0",
                    fp32,
                    calibration[:64],
                    validation,
                    torch_outputs(model, validation),
                    max_float_layers=8,
                )
            )
    _write(args.out, results)
    print(render_readme(results))


def _write(out: Path, results: dict[str, Any]) -> None:
    write_json(out / "results.json", results)
    atomic_write_text(out / "README.md", render_readme(results))


if __name__ == "__main__":
    main()
