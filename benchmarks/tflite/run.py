"""TFLite benchmark: edgectl's TFLite fp32 / int8 next to its ONNX fp32 / int8 (digits CNN, EfficientNet-Lite0).

One real ``edgectl.converter.convert`` call per model produces all four files (``--format onnx,tflite --precision
fp32,int8``); each file is then opened with the runtime backend a device would use (onnxruntime, LiteRT with
XNNPACK) and measured: file size, batch-1 latency at 1 and 2 threads (interleaved rounds, as ratios to the fp32
ONNX file measured in the same rounds), accuracy on labelled digits, top-1 agreement with fp32.

Usage (from the repository root; needs the ``bench`` and ``convert-tflite`` extras)::

    python -m benchmarks.tflite.run            # full run: results.json and README.md next to this file
    python -m benchmarks.tflite.run --quick    # fewer crops and rounds, written to --out (default: a temp dir)
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgectl.runtime.backends import Session, SessionOptions, load
from torch import nn

from benchmarks.common import digits_cnn, efficientnet_lite0, interleaved_latency, machine_info, photo_crops, write_json
from edgectl.fsutil import atomic_write_text

from .readme import render

HERE = Path(__file__).resolve().parent
VARIANTS = ("onnx/fp32", "onnx/int8", "tflite/fp32", "tflite/int8")
#: fp32 top-1 probability at or above which an input counts as "confident" in the agreement breakdown.
CONFIDENT = 0.5


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """How much to measure. The defaults are the published run."""

    threads: tuple[int, ...] = (1, 2)
    rounds: int = 7
    warmup: int = 5
    iterations_digits: int = 200
    iterations_effnet: int = 15
    calibration_crops: int = 128
    validation_crops: int = 200


QUICK = BenchConfig(
    rounds=3, warmup=2, iterations_digits=30, iterations_effnet=3, calibration_crops=16, validation_crops=24
)


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=False)
    return path


def convert_both_formats(
    model: nn.Module,
    *,
    name: str,
    calibration: np.ndarray,
    validation: np.ndarray,
    labels: np.ndarray | None,
    work: Path,
) -> tuple[dict[str, Path], dict[str, Any], float]:
    """One ``edgectl convert`` call making fp32 + int8 in ONNX and TFLite.

    Returns:
        variant ("onnx/int8", ...) -> file in the bundle, the TFLite int8 quantization record, wall seconds.
    """
    from edgectl.converter import ConvertConfig, convert

    config = ConvertConfig(
        model=model,
        name=name,
        calibration=_save(work / "data" / "calibration.npy", calibration),
        validation=_save(work / "data" / "validation.npy", validation),
        labels=None if labels is None else _save(work / "data" / "labels.npy", labels),
        validation_samples=len(validation),
        precisions=("fp32", "int8"),
        formats=("onnx", "tflite"),
        latency_runs=5,
        measure_memory=False,
        out=work / "bundles",
    )
    start = time.perf_counter()
    result = convert(config)
    wall = time.perf_counter() - start
    files = {f"{a.format}/{a.precision}": result.bundle_dir / a.path for a in result.manifest.artifacts}
    tflite_int8 = next(a for a in result.manifest.artifacts if a.format == "tflite" and a.precision == "int8")
    return files, dict(tflite_int8.quantization), wall


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _predict(session: Session, x: np.ndarray, batch: int = 32) -> np.ndarray:
    name, out = session.signature.inputs[0].name, session.signature.outputs[0].name
    return np.concatenate([session.run({name: x[i : i + batch]})[out] for i in range(0, len(x), batch)])


def measure(
    files: dict[str, Path], validation: np.ndarray, labels: np.ndarray | None, *, iterations: int, cfg: BenchConfig
) -> dict[str, dict[str, Any]]:
    """Size, quality and latency of every variant (see the module docstring)."""
    rows: dict[str, dict[str, Any]] = {
        v: {"file": files[v].name, "size_bytes": files[v].stat().st_size} for v in VARIANTS
    }
    sessions = {v: load(files[v], SessionOptions(threads=1)) for v in VARIANTS}
    logits = {v: _predict(s, validation) for v, s in sessions.items()}
    top1 = {v: out.argmax(1) for v, out in logits.items()}
    for v, s in sessions.items():
        fmt = v.split("/")[0]
        row = rows[v]
        row["backend"] = s.backend
        row["batch_mode"] = str(getattr(s, "batch_mode", "native"))
        row["size_vs_fp32_same_format"] = round(row["size_bytes"] / rows[f"{fmt}/fp32"]["size_bytes"], 4)
        row["size_vs_fp32_onnx"] = round(row["size_bytes"] / rows["onnx/fp32"]["size_bytes"], 4)
        row["agreement_vs_fp32_same_format_pct"] = round(100.0 * float(np.mean(top1[v] == top1[f"{fmt}/fp32"])), 2)
        # Where fp32 itself is sure (top-1 probability >= 0.5) a flip is a real error; elsewhere near a coin toss.
        sure = _softmax(logits[f"{fmt}/fp32"]).max(1) >= CONFIDENT
        row["confident_share_pct"] = round(100.0 * float(np.mean(sure)), 2)
        row["agreement_on_confident_pct"] = (
            round(100.0 * float(np.mean(top1[v][sure] == top1[f"{fmt}/fp32"][sure])), 2) if sure.any() else None
        )
        row["agreement_vs_fp32_onnx_pct"] = round(100.0 * float(np.mean(top1[v] == top1["onnx/fp32"])), 2)
        row["accuracy_pct"] = None if labels is None else round(100.0 * float(np.mean(top1[v] == labels)), 2)
        row["latency"] = {}
        s.close()
    one = validation[:1]
    for threads in cfg.threads:
        timed = {v: load(files[v], SessionOptions(threads=threads)) for v in VARIANTS}
        calls = {v: (lambda s=s: s.run({s.signature.inputs[0].name: one})) for v, s in timed.items()}
        lat = interleaved_latency(calls, rounds=cfg.rounds, iterations=iterations, warmup=cfg.warmup)
        base = lat["onnx/fp32"].p50_ms
        for v in VARIANTS:
            rows[v]["latency"][str(threads)] = {
                **lat[v].as_dict(),
                "ratio_vs_fp32_onnx": round(lat[v].p50_ms / base, 3),
            }
        for s in timed.values():
            s.close()
    return rows


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's bars for int8 TFLite, each with what was measured and whether it is met."""
    out = []
    for model in ("digits", "efficientnet_lite0"):
        ratio = results[model]["variants"]["tflite/int8"]["size_vs_fp32_same_format"]
        out.append(
            {
                "target": f"{model}: int8 TFLite size <= 0.30x fp32 TFLite",
                "measured": f"{ratio:.3f}x",
                "met": ratio <= 0.30,
            }
        )
    agree = results["efficientnet_lite0"]["variants"]["tflite/int8"]["agreement_vs_fp32_same_format_pct"]
    out.append(
        {
            "target": "efficientnet_lite0: int8 TFLite top-1 agreement with fp32 TFLite >= 95%",
            "measured": f"{agree:.2f}%",
            "met": agree >= 95.0,
        }
    )
    d = results["digits"]["variants"]
    drop = d["tflite/fp32"]["accuracy_pct"] - d["tflite/int8"]["accuracy_pct"]
    out.append(
        {
            "target": "digits: int8 TFLite accuracy drop vs fp32 <= 0.5 points",
            "measured": f"{drop:.2f}",
            "met": drop <= 0.5,
        }
    )
    return out


def run(cfg: BenchConfig, out_dir: Path) -> dict[str, Any]:
    """Run both models and write ``results.json`` and ``README.md`` into ``out_dir``."""
    results: dict[str, Any] = {
        "benchmark": "tflite",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": asdict(cfg),
    }
    with tempfile.TemporaryDirectory(prefix="edgectl-bench-tflite-") as tmp:
        digits = digits_cnn()
        files, quant, wall = convert_both_formats(
            digits.model,
            name="digits",
            calibration=digits.calibration,
            validation=digits.validation,
            labels=digits.labels,
            work=Path(tmp) / "digits",
        )
        results["digits"] = {
            "validation_samples": len(digits.validation),
            "convert_wall_s": round(wall, 1),
            "tflite_int8_quantization": quant,
            "variants": measure(files, digits.validation, digits.labels, iterations=cfg.iterations_digits, cfg=cfg),
        }
        print(f"digits done in {wall:.0f} s (convert)", file=sys.stderr)
        calibration = photo_crops(cfg.calibration_crops, split="calibration")
        validation = photo_crops(cfg.validation_crops, split="validation")
        files, quant, wall = convert_both_formats(
            efficientnet_lite0(),
            name="efficientnet-lite0",
            calibration=calibration,
            validation=validation,
            labels=None,
            work=Path(tmp) / "effnet",
        )
        results["efficientnet_lite0"] = {
            "validation_samples": len(validation),
            "convert_wall_s": round(wall, 1),
            "tflite_int8_quantization": quant,
            "variants": measure(files, validation, None, iterations=cfg.iterations_effnet, cfg=cfg),
        }
    results["targets"] = targets(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "README.md", render(results))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer crops and rounds (a smoke run)")
    parser.add_argument("--out", type=Path, help="output folder (default: next to this file; a temp dir with --quick)")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else BenchConfig()
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-tflite-")) if args.quick else HERE)
    results = run(cfg, out)
    for t in results["targets"]:
        print(f"{'MET ' if t['met'] else 'MISS'} {t['target']}: {t['measured']}")
    print(f"wrote {out / 'results.json'} and {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
