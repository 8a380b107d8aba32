"""Render the TFLite benchmark's README.md from its results.json (the JSON is the record; this is for people)."""

from __future__ import annotations

from typing import Any

from benchmarks.common import markdown_table


def _variant_table(model: dict[str, Any], threads: list[str]) -> str:
    headers = ["variant", "backend", "batching", "size KiB", "size / fp32 (same format)", "size / fp32 ONNX"]
    headers += [f"p50 ms @{t}T (ratio)" for t in threads]
    headers += [
        "accuracy %",
        "top-1 agreement with fp32 (same format) %",
        "agreement where fp32 is confident %",
        "agreement with fp32 ONNX %",
    ]
    rows = []
    for name, v in model["variants"].items():
        lat = [f"{v['latency'][t]['p50_ms']:.3f} ({v['latency'][t]['ratio_vs_fp32_onnx']:.2f}x)" for t in threads]
        rows.append(
            [
                name,
                v["backend"],
                v["batch_mode"],
                f"{v['size_bytes'] / 1024:.1f}",
                f"{v['size_vs_fp32_same_format']:.3f}",
                f"{v['size_vs_fp32_onnx']:.3f}",
                *lat,
                "-" if v["accuracy_pct"] is None else f"{v['accuracy_pct']:.2f}",
                f"{v['agreement_vs_fp32_same_format_pct']:.2f}",
                "-"
                if v["agreement_on_confident_pct"] is None
                else f"{v['agreement_on_confident_pct']:.2f} (of {v['confident_share_pct']:.0f}%)",
                f"{v['agreement_vs_fp32_onnx_pct']:.2f}",
            ]
        )
    return markdown_table(headers, rows)


def render(results: dict[str, Any]) -> str:
    """The README: targets first, then one table per model, then how it was measured."""
    machine = results["machine"]
    threads = [str(t) for t in results["config"]["threads"]]
    targets = markdown_table(
        ["target", "measured", "met?"],
        [[t["target"], t["measured"], "yes" if t["met"] else "**no**"] for t in results["targets"]],
    )
    parts = [
        "# TFLite benchmark: LiteRT fp32 / int8 next to ONNX\n",
        f"Run {results['date']} on {machine.get('cpu_model', 'unknown CPU')} "
        f"({machine.get('usable_cores', '?')} usable cores, load average at start "
        f"{machine.get('load_average_at_start')}). "
        "Regenerate with `python -m benchmarks.tflite.run`.\n",
        "## Targets (int8 TFLite)\n",
        targets,
        "Why the two misses happen (fixed per-file overhead on a 40k-weight model; EfficientNet-Lite0's agreement is "
        "lost to int8 weights on low-confidence crops, with what was tried) is written up in "
        "[docs/tflite.md](../../docs/tflite.md#benchmarks).\n",
    ]
    for key, title in (
        ("digits", "Digits CNN (scikit-learn digits, labelled)"),
        ("efficientnet_lite0", "EfficientNet-Lite0 (real photo crops, no labels)"),
    ):
        model = results[key]
        q = model["tflite_int8_quantization"]
        parts += [
            f"## {title}\n",
            f"{model['validation_samples']} validation samples; one `edgectl convert --format onnx,tflite --precision "
            f"fp32,int8` took {model['convert_wall_s']} s. TFLite int8: {q.get('scheme')} "
            f"({q.get('tool')} {q.get('tool_version')}, {q.get('calibration_samples')} calibration rows, "
            f"{q.get('calibration_range')} ranges, I/O {q.get('io')}).\n",
            _variant_table(model, threads),
        ]
    parts += [
        "## How it was measured\n",
        "- All four files come from one real `edgectl.converter.convert` call per model (ONNX through onnxruntime's "
        "quantizer, TFLite through litert-torch and the AI Edge Quantizer).\n"
        "- Each file is opened with the runtime backend the device uses: onnxruntime (CPU) for `.onnx`, LiteRT "
        "(`ai-edge-litert`, XNNPACK) for `.tflite`.\n"
        "- Latency: batch 1, p50 over interleaved rounds (every variant runs in every round, order rotating), "
        "as a ratio to the fp32 ONNX file measured in the same rounds at the same thread count.\n"
        "- Agreement: share of validation inputs whose top-1 class equals that of the fp32 file of the same format "
        "(and of the fp32 ONNX file); also on the inputs where that fp32 file's top-1 probability is >= 0.5 (share "
        "in brackets). Accuracy: against the digits labels.\n"
        "- `batching` is how the LiteRT session runs a batch of N for a model exported with batch 1: `resize` "
        "(inputs resized, checked against single rows at load) or `row-by-row` (the model cannot resize).\n",
    ]
    return "\n".join(parts)
