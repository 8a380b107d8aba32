"""Accuracy-aware tuning: ``--max-accuracy-drop`` as a guarantee.

The search runs in order of cost and stops at the first stage that yields a model within the tolerance:

1. ``default``: the profile's int8 settings.
2. ``calibration``: every calibration method × per-channel / per-tensor weights.
3. ``sensitivity``: with the most accurate int8 settings so far, keep one quantizable layer (Conv, Gemm, MatMul)
   in float at a time and measure the accuracy gained — a per-layer sensitivity ranking, shown in the report.
4. ``mixed``: keep the k most sensitive layers in float, for growing k.

Among the candidates of the stage that succeeds, the fastest wins. When nothing meets the tolerance,
:class:`~edgectl.errors.AccuracyToleranceError` carries the full table: never a silent best effort.

Tolerance syntax (``--max-accuracy-drop``)::

    1        1pt       an absolute drop of at most 1 percentage point (90.0% -> 89.0% is allowed)
    2%rel              a relative drop: at most 2% of the baseline (90.0% -> 88.2% is allowed)
    0                  no drop at all

The tuner is independent of how models are quantized and measured: it takes ``quantize(fp32, out, settings)`` and
``evaluate(onnx) -> Metrics`` callables, so the pipeline plugs in its own and tests plug in small ones.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgectl.errors import AccuracyToleranceError, ConfigError, InputFileError

from .profiles import CalibrationMethod
from .prune import gzip_size
from .tuning_report import Candidate, Metrics, QuantSettings, Sensitivity, TuningReport

__all__ = [
    "AccuracyTolerance",
    "Candidate",
    "LayerGroup",
    "Metrics",
    "QuantSettings",
    "Sensitivity",
    "TuningConfig",
    "TuningReport",
    "layer_groups",
    "quantizable_nodes",
    "tune",
]

log = logging.getLogger(__name__)

Quantize = Callable[[Path, Path, QuantSettings], None]
Evaluate = Callable[[Path], Metrics]

_TOLERANCE_RE = re.compile(r"^\s*(?P<value>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>pt|points?|%rel)?\s*$")
QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class AccuracyTolerance:
    """An allowed accuracy drop: ``value`` points, or ``value`` percent of the baseline when ``relative``."""

    value: float
    relative: bool = False

    @classmethod
    def parse(cls, text: str) -> AccuracyTolerance:
        """Parse ``1``, ``1pt``, ``0.5points`` or ``2%rel``.

        Raises:
            ConfigError: anything else (including negative numbers).
        """
        match = _TOLERANCE_RE.match(str(text))
        if match is None:
            raise ConfigError(
                f"Invalid --max-accuracy-drop '{text}'.",
                hint="Write an absolute drop in percentage points (1 or 1pt) or a relative one (2%rel).",
            )
        value = float(match["value"])
        relative = match["unit"] == "%rel"
        if relative and value >= 100:
            raise ConfigError(f"A relative accuracy drop must be below 100%rel (got {text}).")
        return cls(value=value, relative=relative)

    def allowed_drop(self, baseline: float) -> float:
        """The allowed drop in percentage points for a baseline accuracy in percent."""
        return baseline * self.value / 100.0 if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}%rel" if self.relative else f"{self.value:g}pt"


@dataclass(frozen=True, kw_only=True)
class TuningConfig:
    """How far the search may go.

    Args:
        tolerance: the allowed accuracy drop.
        default: the profile's int8 settings (tried first).
        calibrations: calibration methods for stage 2, cheapest first.
        max_float_layers: at most this many layer groups are kept in float in stage 4.
        max_sensitivity_groups: when the model has more quantizable layers than this, the sensitivity analysis
            works on blocks (layers sharing a parent module, e.g. ``blocks.3``) instead of single layers, so its
            cost stays bounded on deep networks.
        baseline_accuracy: the accuracy drops are measured from (percent). ``None``: the fp32 model given to
            :func:`tune`. Pass the original model's accuracy when the fp32 model is already a pruned one, so that
            the tolerance bounds the total drop of the conversion, not only the quantization's share.
    """

    tolerance: AccuracyTolerance
    default: QuantSettings = field(default_factory=QuantSettings)
    calibrations: tuple[CalibrationMethod, ...] = (
        CalibrationMethod.MINMAX,
        CalibrationMethod.PERCENTILE,
        CalibrationMethod.ENTROPY,
    )
    max_float_layers: int = 8
    max_sensitivity_groups: int = 24
    baseline_accuracy: float | None = None


@dataclass(frozen=True)
class LayerGroup:
    """Quantizable ONNX nodes analysed (and kept in float) together. ``name``: the PyTorch module they come from,
    read from their weight initializers (``features.3``), or the node name when the weight has no name."""

    name: str
    nodes: tuple[str, ...]
    op_types: tuple[str, ...]


def quantizable_nodes(onnx_path: Path) -> list[tuple[str, str, str]]:
    """(node name, op type, layer name) of the nodes int8 quantization would change, in graph order. The layer
    name is the weight's module path (``features.3`` for ``features.3.weight``), else the node name.

    Raises:
        InputFileError: the file is not a readable ONNX model.
    """
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError / OSError variants
        raise InputFileError(f"Cannot read ONNX model {onnx_path}: {exc}.") from exc
    weights = {init.name for init in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type not in QUANTIZABLE_OPS or not node.name:
            continue
        weight = next((i for i in node.input[1:2] if i in weights), "")
        layer = weight.removesuffix(".weight") if weight.endswith(".weight") else node.name
        out.append((node.name, node.op_type, layer))
    return out


def layer_groups(onnx_path: Path, *, max_groups: int) -> list[LayerGroup]:
    """One group per quantizable layer, or per block (parent module) when there are more than ``max_groups``."""
    nodes = quantizable_nodes(onnx_path)
    per_block = len(nodes) > max_groups
    groups: dict[str, list[tuple[str, str]]] = {}
    for node, op_type, layer in nodes:
        key = layer
        if per_block and "." in layer:
            key = layer.rsplit(".", 1)[0]  # features.3.conv -> features.3; a top-level layer stays itself
        groups.setdefault(key, []).append((node, op_type))
    return [
        LayerGroup(name=name, nodes=tuple(n for n, _ in items), op_types=tuple(sorted({t for _, t in items})))
        for name, items in groups.items()
    ]


def tune(
    fp32_path: Path,
    *,
    quantize: Quantize,
    evaluate: Evaluate,
    config: TuningConfig,
    work_dir: Path | None = None,
) -> tuple[Path, TuningReport]:
    """Find the fastest int8 model of ``fp32_path`` within the tolerance.

    Args:
        fp32_path: the float ONNX model (the reference for accuracy and latency).
        quantize: writes an int8 model of its first argument to its second with the given settings.
        evaluate: measures an ONNX model.
        config: tolerance and search bounds.
        work_dir: where candidate models are written (a temp dir when ``None``; it must outlive the result).

    Returns:
        (path of the chosen model inside ``work_dir``, the report).

    Raises:
        AccuracyToleranceError: no candidate meets the tolerance; ``err.report`` is the :class:`TuningReport`.
    """
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="edgectl-tune-"))
    work.mkdir(parents=True, exist_ok=True)
    search = _Search(fp32_path, quantize, evaluate, config, work)
    return search.run()


class _Search:
    def __init__(self, fp32: Path, quantize: Quantize, evaluate: Evaluate, config: TuningConfig, work: Path) -> None:
        self.fp32, self.quantize, self.evaluate, self.config, self.work = fp32, quantize, evaluate, config, work
        self.paths: dict[QuantSettings, Path] = {}
        self.groups: list[LayerGroup] = []
        self.seen: dict[QuantSettings, Candidate] = {}
        reference = evaluate(fp32)
        self.fp32_latency = reference.latency_ms
        baseline = reference.accuracy if config.baseline_accuracy is None else config.baseline_accuracy
        self.report = TuningReport(
            tolerance=str(config.tolerance),
            baseline_accuracy=baseline,
            allowed_drop=config.tolerance.allowed_drop(baseline),
        )
        self.report.candidates.append(self._candidate("reference", None, reference, fp32))

    def run(self) -> tuple[Path, TuningReport]:
        reference = self.report.candidates[0]
        if not reference.meets:
            # Quantization does not give accuracy back: when the float model already misses, no search can help.
            raise AccuracyToleranceError(
                f"The fp32 model itself is {reference.drop:.2f} points below the baseline "
                f"({reference.accuracy:.2f}% vs {self.report.baseline_accuracy:.2f}%), beyond the allowed "
                f"{self.report.allowed_drop:.2f} points of --max-accuracy-drop {self.config.tolerance}; "
                "no int8 candidate can do better.",
                report=self.report,
                hint="Prune less, give the recovery more steps or data (--finetune-steps, --finetune), "
                "or allow a larger drop.",
            )
        default = self.config.default
        stages: list[tuple[str, Callable[[], Sequence[QuantSettings]]]] = [
            ("default", lambda: [default]),
            ("calibration", self._grid),
            ("mixed", self._mixed),
        ]
        for stage, settings_of in stages:
            start = len(self.report.candidates)
            returned = [self._try(stage, s) for s in settings_of()]
            # Candidates measured on the way (the sensitivity runs) count as well: each is a valid model.
            tried = self.report.candidates[start:] + returned
            passing = [c for c in tried if c.meets and c.settings is not None]
            if passing:
                chosen = min(passing, key=lambda c: c.latency_ms)
                self.report.chosen = chosen
                return self.paths[chosen.settings or default], self.report
        raise AccuracyToleranceError(
            f"No int8 candidate keeps the accuracy drop within {self.config.tolerance} "
            f"(baseline {self.report.baseline_accuracy:.2f}%, allowed drop {self.report.allowed_drop:.2f} points):\n"
            + self.report.to_markdown(),
            report=self.report,
            hint="Allow a larger drop, give more representative calibration data, or convert to fp32/fp16.",
        )

    def _grid(self) -> list[QuantSettings]:
        base = self.config.default
        return [
            replace(base, calibration=method, per_channel=per_channel)
            for method in self.config.calibrations
            for per_channel in (base.per_channel, not base.per_channel)
        ]

    def _mixed(self) -> list[QuantSettings]:
        int8 = [c for c in self.report.candidates if c.settings is not None and not c.settings.float_nodes]
        best = max(int8, key=lambda c: c.accuracy)
        base = best.settings or self.config.default
        ranking = self._sensitivity(base, best)
        groups = {g.name: g for g in self.groups}
        out: list[QuantSettings] = []
        for k in _growth(min(self.config.max_float_layers, len(ranking))):
            chosen = [groups[s.layer] for s in ranking[:k]]
            settings = replace(
                base,
                float_nodes=tuple(n for g in chosen for n in g.nodes),
                float_layers=tuple(g.name for g in chosen),
            )
            out.append(settings)
            # Stop growing as soon as one passes: more float layers only cost speed.
            if self._try("mixed", settings).meets:
                break
        return out

    def _sensitivity(self, base: QuantSettings, base_candidate: Candidate) -> list[Sensitivity]:
        self.groups = layer_groups(self.fp32, max_groups=self.config.max_sensitivity_groups)
        results = []
        for group in self.groups:
            settings = replace(base, float_nodes=group.nodes, float_layers=(group.name,))
            cand = self._try("sensitivity", settings)
            reduction = None
            if cand.error is not None and base_candidate.error:
                reduction = 1.0 - cand.error / base_candidate.error
            results.append(
                Sensitivity(
                    layer=group.name,
                    op_type="+".join(group.op_types),
                    nodes=len(group.nodes),
                    accuracy_when_float=cand.accuracy,
                    gain=cand.accuracy - base_candidate.accuracy,
                    error_reduction=reduction,
                )
            )

        # Most sensitive first. Top-1 on a few hundred samples moves in coarse steps, so the output error (when
        # measured) ranks first and the accuracy gain breaks its ties; graph order keeps the ranking deterministic.
        def key(pair: tuple[int, Sensitivity]) -> tuple[float, float, int]:
            index, s = pair
            return (-(s.error_reduction or 0.0), -s.gain, index)

        self.report.sensitivity = [s for _, s in sorted(enumerate(results), key=key)]
        return self.report.sensitivity

    def _try(self, stage: str, settings: QuantSettings) -> Candidate:
        if settings in self.seen:
            return self.seen[settings]
        path = self.work / f"candidate-{len(self.paths):03d}.onnx"
        self.quantize(self.fp32, path, settings)
        if not path.is_file():
            raise InputFileError(f"The quantizer did not write {path} for '{settings.label()}'.")
        self.paths[settings] = path
        candidate = self._candidate(stage, settings, self.evaluate(path), path)
        self.seen[settings] = candidate
        self.report.candidates.append(candidate)
        log.info("tuning %s: %s -> %.2f%% (%.3f ms)", stage, settings.label(), candidate.accuracy,
                 candidate.latency_ms)  # fmt: skip
        return candidate

    def _candidate(self, stage: str, settings: QuantSettings | None, metrics: Metrics, path: Path) -> Candidate:
        drop = self.report.baseline_accuracy - metrics.accuracy
        data = path.read_bytes()
        return Candidate(
            stage=stage,
            settings=settings,
            accuracy=metrics.accuracy,
            latency_ms=metrics.latency_ms,
            error=metrics.error,
            size_bytes=len(data),
            gzip_bytes=gzip_size(data),
            drop=drop,
            # A tiny epsilon so that "exactly the allowed drop" passes despite float rounding.
            meets=drop <= self.report.allowed_drop + 1e-9,
            speedup_vs_fp32=self.fp32_latency / metrics.latency_ms if metrics.latency_ms > 0 else float("inf"),
        )


def _growth(limit: int) -> list[int]:
    """How many layers to keep in float, in the order tried: 1, 2, 3, 4, 6, 8, 12, 16, … up to ``limit``."""
    steps: list[int] = []
    k = 1
    while k < limit:
        steps.append(k)
        k = k + 1 if k < 4 else k + k // 2
    if limit >= 1:
        steps.append(limit)
    return steps
