"""Convert benchmark: edgectl int8 vs the fp32 ONNX baseline vs plain ``quantize_static``, on two real models.

Usage (from the repository root)::

    python -m benchmarks.convert.run            # full run, writes results.json and README.md next to this file
    python -m benchmarks.convert.run --quick    # fewer crops and rounds, writes into --out (default: a temp dir)
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.common import digits_cnn, efficientnet_lite0, machine_info, photo_crops, write_json
from edgectl.fsutil import atomic_write_text

from .measure import latencies, op_census, open_session, predict, quality, torch_thread_probe
from .readme import render
from .targets import EDGECTL, FP32, PER_TENSOR, PLAIN, judge
from .variants import run_edgectl, run_per_tensor_ablation, run_plain_quantize_static

HERE = Path(__file__).resolve().parent
#: Inputs the torch thread probe runs right after the conversion (same machine load).
PROBE_INPUTS = 32


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """How much to measure. The defaults are the published run."""

    threads: int = 1
    rounds: int = 9
    warmup: int = 10
    #: Timed runs per variant per round; the digits CNN runs in microseconds, so it gets more.
    iterations_digits: int = 300
    iterations_effnet: int = 30
    calibration_crops: int = 256
    validation_crops: int = 300


QUICK = BenchConfig(
    rounds=3, warmup=3, iterations_digits=50, iterations_effnet=5, calibration_crops=32, validation_crops=48
)


def _summary(params: dict[str, Any]) -> str:
    channel = "per-channel" if params.get("per_channel") else "per-tensor"
    parts = [
        channel,
        f"activations {params.get('activation_type')}",
        f"weights {params.get('weight_type')}",
        f"reduce_range={params.get('reduce_range')}",
        f"calibration {params.get('calibrate_method')}",
        "QDQ",
        "with quant_pre_process" if params.get("preprocess") else "no pre-processing",
    ]
    return ", ".join(parts)


def _plain_defaults() -> dict[str, Any]:
    """quantize_static's own defaults, read from its signature (so a new onnxruntime is described truthfully)."""
    from onnxruntime.quantization import quantize_static

    defaults = {k: p.default for k, p in inspect.signature(quantize_static).parameters.items()}

    def name(value: Any) -> str:
        return {"QUInt8": "uint8", "QInt8": "int8"}.get(getattr(value, "name", ""), str(getattr(value, "name", value)))

    return {
        "per_channel": defaults["per_channel"],
        "activation_type": name(defaults["activation_type"]),
        "weight_type": name(defaults["weight_type"]),
        "reduce_range": defaults["reduce_range"],
        "calibrate_method": name(defaults["calibrate_method"]).lower(),
        "preprocess": False,
    }


def bench_model(
    name: str,
    model: nn.Module,
    *,
    calibration: np.ndarray,
    validation: np.ndarray,
    labels: np.ndarray | None,
    iterations: int,
    config: BenchConfig,
    work_dir: Path,
) -> dict[str, Any]:
    """Convert one model both ways and measure the three variants side by side."""
    print(f"[{name}] edgectl convert (fp32 + int8) ...", flush=True)
    edge = run_edgectl(
        model,
        name=name.replace("_", "-"),
        calibration=calibration,
        validation=validation,
        labels=labels,
        work_dir=work_dir,
    )
    probe = torch_thread_probe(model, validation[:PROBE_INPUTS])
    print(f"[{name}] plain quantize_static ...", flush=True)
    plain_path = work_dir / "plain.int8.onnx"
    plain_s = run_plain_quantize_static(edge.fp32_path, plain_path, calibration)
    print(f"[{name}] ablation: edgectl's quantizer with per-tensor weights ...", flush=True)
    ablation_path = work_dir / "per-tensor.int8.onnx"
    run_per_tensor_ablation(edge.fp32_path, ablation_path, calibration, edge.quantization)
    paths = {FP32: edge.fp32_path, EDGECTL: edge.int8_path, PLAIN: plain_path, PER_TENSOR: ablation_path}
    sessions = {variant: open_session(path, config.threads) for variant, path in paths.items()}
    print(f"[{name}] quality on {len(validation)} inputs, latency in {config.rounds} rounds ...", flush=True)
    logits = {variant: predict(session, validation) for variant, session in sessions.items()}
    timing = latencies(sessions, validation[:1], rounds=config.rounds, iterations=iterations, warmup=config.warmup)
    summaries = {
        FP32: "float32",
        EDGECTL: _summary(edge.quantization),
        PLAIN: _summary(_plain_defaults()),
        PER_TENSOR: _summary({**edge.quantization, "per_channel": False}),
    }
    variants: dict[str, Any] = {}
    for variant, path in paths.items():
        size = path.stat().st_size
        variants[variant] = {
            "size_bytes": size,
            "size_ratio": round(size / paths[FP32].stat().st_size, 4),
            "latency": timing[variant].as_dict(),
            "latency_ratio": round(timing[variant].p50_ms / timing[FP32].p50_ms, 4),
            "quality": quality(logits[variant], logits[FP32], labels).as_dict(),
            "quantization_summary": summaries[variant],
            "op_census": op_census(path) if variant != FP32 else None,
            "providers": sessions[variant].providers,
        }
    for session in sessions.values():
        session.close()
    return {
        "variants": variants,
        "edgectl": {
            "wall_s": round(edge.wall_s, 2),
            "cpu_s": round(edge.cpu_s, 2),
            "load_average_1min": [round(edge.load_before, 2), round(edge.load_after, 2)],
            "torch_threads": torch.get_num_threads(),
            "torch_thread_probe": probe,
            "step_s": {k: round(v, 2) for k, v in edge.step_s.items()},
            "quantization": edge.quantization,
            "report_rows": edge.report_rows,
        },
        "plain_quantize_s": round(plain_s, 2),
    }


def _efficientnet(config: BenchConfig, work_dir: Path) -> dict[str, Any]:
    calibration = photo_crops(config.calibration_crops, split="calibration")
    validation = photo_crops(config.validation_crops, split="validation")
    result = bench_model(
        "efficientnet_lite0",
        efficientnet_lite0(),
        calibration=calibration,
        validation=validation,
        labels=None,
        iterations=config.iterations_effnet,
        config=config,
        work_dir=work_dir,
    )
    result["data"] = {
        "calibration": f"{len(calibration)} photo crops (calibration split)",
        "validation": f"{len(validation)} disjoint photo crops (validation split), no labels",
    }
    return result


def _digits(config: BenchConfig, work_dir: Path) -> dict[str, Any]:
    digits = digits_cnn()
    result = bench_model(
        "digits_cnn",
        digits.model,
        calibration=digits.calibration,
        validation=digits.validation,
        labels=digits.labels,
        iterations=config.iterations_digits,
        config=config,
        work_dir=work_dir,
    )
    result["data"] = {
        "calibration": f"{len(digits.calibration)} images of the training split",
        "validation": f"the {len(digits.validation)} held-out test images with true labels",
        "torch_accuracy_pct": round(100.0 * digits.accuracy, 2),
    }
    return result


def run(config: BenchConfig, out_dir: Path) -> dict[str, Any]:
    """Run the whole benchmark and write ``results.json`` and ``README.md`` into ``out_dir``."""
    results: dict[str, Any] = {
        "benchmark": "convert",
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "settings": asdict(config),
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="edgectl-bench-convert-") as tmp:
        # EfficientNet-Lite0 first: its conversion then pays the exporter's first-use cost, as a fresh CLI would.
        results["models"]["efficientnet_lite0"] = _efficientnet(config, Path(tmp) / "effnet")
        results["models"]["digits_cnn"] = _digits(config, Path(tmp) / "digits")
    results["targets"] = judge(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "README.md", render(results))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few crops and rounds: checks the plumbing only")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: this folder; --quick: temp)")
    parser.add_argument("--readme-only", action="store_true", help="regenerate README.md from results.json")
    args = parser.parse_args(argv)
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="bench-convert-quick-")) if args.quick else HERE)
    if args.readme_only:
        results = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
        atomic_write_text(out_dir / "README.md", render(results))
        return 0
    results = run(QUICK if args.quick else BenchConfig(), out_dir)
    for target in results["targets"]:
        mark = "met " if target["met"] else "MISS"
        print(f"{mark}  {target['model']}: {target['what']} {target['target']}: {target['measured']}{target['unit']}")
    print(f"wrote {out_dir / 'results.json'} and {out_dir / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
