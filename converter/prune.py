"""Pruning: ``--prune channels:0.3`` (structured) and ``--prune magnitude:0.5`` (unstructured).

Structured channel pruning physically removes output channels and everything coupled to them, through
torch-pruning's dependency graph: a BatchNorm follows its convolution, a depthwise convolution follows its input,
both sides of a residual add and the slices of a concatenation stay consistent. The result is a smaller *dense*
model: fewer parameters and MACs, a smaller file, lower latency on any runtime.

Unstructured magnitude pruning zeroes the smallest weights. The tensors keep their shapes, so dense runtimes gain
no speed; what shrinks is the *compressed* size (gzip of the file), which is what this module reports for it.

Spec syntax (``--prune``)::

    METHOD:RATIO[,LAYER=RATIO...]       e.g.  channels:0.3    magnitude:0.5    channels:0.3,features.0=0.1

``RATIO`` is the fraction removed, strictly between 0 and 1; ``LAYER=RATIO`` overrides it for one module (and the
modules under it). ``--prune-exclude NAME`` protects a module and its children. Layers whose output channels are
model outputs (the classifier's classes) are always protected: removing them would change the model's meaning.
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import io
import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from edgectl.errors import ConfigError, MissingDependencyError, ModelLoadError

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

_SPEC_RE = re.compile(r"^\s*(?P<method>[a-z_-]+)\s*:\s*(?P<rest>.+)$")


class PruneMethod(StrEnum):
    CHANNELS = "channels"
    MAGNITUDE = "magnitude"


@dataclass(frozen=True, kw_only=True)
class PruneConfig:
    """What to prune.

    Args:
        method: ``channels`` (structured, removes channels) or ``magnitude`` (unstructured, zeroes weights).
        ratio: fraction of channels / weights removed from every prunable layer, in (0, 1).
        layer_ratios: per-module overrides, module name -> ratio (applies to the module and its children).
        exclude: module names protected from pruning (with their children).
        round_to: channel pruning keeps the multiple of this many channels nearest to the ratio (``None``: exact
            ratios). onnxruntime's fast (NCHWc) convolutions work on blocks of 16 channels with AVX-512, 8 with
            AVX2 / NEON: on the digits CNN (AVX-512), 30% pruning to 11/22/44 channels ran 1.18x the unpruned
            model's latency at batch 64, 8/24/48 channels 0.99x, 16/16/48 channels 0.59x. Device profiles set
            the block for their hardware; 16 is the default.
    """

    method: PruneMethod
    ratio: float
    layer_ratios: dict[str, float] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    round_to: int | None = 16

    def __post_init__(self) -> None:
        _check_ratio(self.ratio, "the pruning ratio")
        for name, value in self.layer_ratios.items():
            _check_ratio(value, f"the pruning ratio of layer '{name}'")
        if self.round_to is not None and self.round_to < 1:
            raise ConfigError(f"round_to must be a positive channel count or None, got {self.round_to}.")

    def to_manifest(self) -> dict[str, Any]:
        return {
            "method": str(self.method),
            "ratio": self.ratio,
            "layer_ratios": dict(self.layer_ratios),
            "exclude": list(self.exclude),
            "round_to": self.round_to,
        }


@dataclass(frozen=True)
class ModelStats:
    """Size of a PyTorch model. ``size_bytes`` / ``gzip_bytes``: its serialized state dict, raw and gzip-9.
    ``macs``: multiply-accumulates of one forward pass (``None`` for TorchScript, which cannot be hooked)."""

    params: int
    nonzero_params: int
    macs: int | None
    size_bytes: int
    gzip_bytes: int

    def to_json(self) -> dict[str, int | None]:
        return {
            "params": self.params,
            "nonzero_params": self.nonzero_params,
            "macs": self.macs,
            "size_bytes": self.size_bytes,
            "gzip_bytes": self.gzip_bytes,
        }


@dataclass
class PruneResult:
    """The pruned model with before/after statistics. ``layers``: module name -> (units before, units after),
    units being output channels (structured) or non-zero weights (unstructured)."""

    model: nn.Module
    config: PruneConfig
    before: ModelStats
    after: ModelStats
    layers: dict[str, tuple[int, int]]
    protected: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.to_manifest(),
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "layers": {k: list(v) for k, v in self.layers.items()},
            "protected": list(self.protected),
        }


def _check_ratio(value: float, what: str) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 < float(value) < 1.0:
        raise ConfigError(
            f"Invalid value {value!r} for {what}: it must be a fraction strictly between 0 and 1.",
            hint="For example --prune channels:0.3 removes 30% of the channels.",
        )


def parse_prune_spec(spec: str, *, exclude: Sequence[str] = ()) -> PruneConfig:
    """Parse ``METHOD:RATIO[,LAYER=RATIO...]`` (see the module docstring).

    Raises:
        ConfigError: unknown method, a ratio that is not a number in (0, 1), or a malformed layer override.
    """
    match = _SPEC_RE.match(spec)
    if match is None:
        raise ConfigError(
            f"Invalid --prune value '{spec}'.",
            hint="Use METHOD:RATIO[,LAYER=RATIO...], e.g. channels:0.3 or magnitude:0.5,classifier.1=0.2.",
        )
    try:
        method = PruneMethod(match["method"])
    except ValueError:
        raise ConfigError(
            f"Unknown pruning method '{match['method']}' in --prune '{spec}'.",
            hint="Use channels (structured, faster dense model) or magnitude (unstructured, smaller compressed file).",
        ) from None
    parts = [p.strip() for p in match["rest"].split(",")]
    ratio = _parse_ratio(parts[0], spec)
    layer_ratios: dict[str, float] = {}
    for part in parts[1:]:
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"Invalid layer override '{part}' in --prune '{spec}'; write LAYER=RATIO.")
        layer_ratios[name.strip()] = _parse_ratio(value, spec)
    return PruneConfig(method=method, ratio=ratio, layer_ratios=layer_ratios, exclude=tuple(exclude))


def _parse_ratio(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"Invalid ratio '{text}' in --prune '{spec}': expected a number such as 0.3.") from None
    _check_ratio(value, f"--prune '{spec}'")
    return value


# -- statistics -----------------------------------------------------------------------------------


def gzip_size(data: bytes) -> int:
    """Size of ``data`` after gzip at level 9 (what a download or an OTA update costs)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def model_stats(model: nn.Module, example_inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> ModelStats:
    """Count parameters (all and non-zero), MACs of one forward pass, and the serialized size."""
    import torch

    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p).item()) for p in model.parameters())
    macs = None
    if not isinstance(model, torch.jit.ScriptModule):  # MACs are counted by tracing hooks, which need eager mode
        import torch_pruning as tp

        was_training = model.training
        model.eval()
        with torch.no_grad():
            macs, _ = tp.utils.count_ops_and_params(model, example_inputs)
        model.train(was_training)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    data = buffer.getvalue()
    return ModelStats(
        params=int(params),
        nonzero_params=nonzero,
        macs=None if macs is None else int(macs),
        size_bytes=len(data),
        gzip_bytes=gzip_size(data),
    )


# -- pruning --------------------------------------------------------------------------------------


def prune_model(
    model: nn.Module, example_inputs: torch.Tensor | tuple[torch.Tensor, ...], config: PruneConfig
) -> PruneResult:
    """Prune a copy of ``model`` (the original is left untouched, it is the distillation teacher).

    Args:
        model: an eager PyTorch module (not TorchScript).
        example_inputs: one batch of inputs, used to trace the dependency graph and count MACs.
        config: what to prune.

    Returns:
        A :class:`PruneResult` with the pruned model (in eval mode) and before/after statistics.

    Raises:
        ConfigError: a protected or overridden layer does not exist, or nothing is left to prune.
        ModelLoadError: channel pruning of a TorchScript model (its layers cannot be resized).
        MissingDependencyError: torch-pruning is not installed.
    """
    import torch

    if config.method is PruneMethod.CHANNELS and isinstance(model, torch.jit.ScriptModule):
        raise ModelLoadError(
            "Channel pruning needs an eager PyTorch model; the layers of a TorchScript module cannot be resized.",
            hint="Pass the factory that builds the model (my_pkg:build --weights w.pth), or use --prune magnitude:R.",
        )
    try:
        import torch_pruning  # noqa: F401  (checked early so the error names the extra)
    except ImportError as exc:
        raise MissingDependencyError("torch-pruning", extra="convert", purpose="Pruning") from exc
    names = dict(model.named_modules())
    _check_names(config.exclude, names, "--prune-exclude")
    _check_names(tuple(config.layer_ratios), names, "--prune")
    original = model
    model = _copy_module(original).eval()
    before = model_stats(model, example_inputs)
    if config.method is PruneMethod.CHANNELS:
        layers, protected = _prune_channels(model, example_inputs, config)
        if config.round_to is not None and all(b == a for b, a in layers.values()):
            # Layers narrower than a few blocks cannot lose a whole block: prune them exactly instead of not at all.
            log.info("rounding to %d channels left nothing to prune; pruning exact ratios", config.round_to)
            config = dataclasses.replace(config, round_to=None)
            model = _copy_module(original).eval()
            layers, protected = _prune_channels(model, example_inputs, config)
    else:
        layers, protected = _prune_magnitude(model, config)
    model.eval()
    after = model_stats(model, example_inputs)
    log.info("pruned %s: params %d -> %d (non-zero %d -> %d)", config.method, before.params, after.params,
             before.nonzero_params, after.nonzero_params)  # fmt: skip
    return PruneResult(model=model, config=config, before=before, after=after, layers=layers, protected=protected)


def _copy_module(model: nn.Module) -> nn.Module:
    """An independent copy. A ScriptModule goes through save / load: a deep copy shares state that torch.export's
    TorchScript converter then trips over."""
    import torch

    if isinstance(model, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            # The user's input is TorchScript; copying it is not a new use of the deprecated format.
            warnings.filterwarnings(
                "ignore", message=r"`torch\.jit\.(save|load)` is deprecated", category=DeprecationWarning
            )
            torch.jit.save(model, buffer)
            buffer.seek(0)
            loaded: nn.Module = torch.jit.load(buffer)
        return loaded
    return copy.deepcopy(model)


def _check_names(wanted: Sequence[str], names: dict[str, Any], flag: str) -> None:
    missing = [w for w in wanted if w not in names or w == ""]
    if missing:
        available = [n for n in names if n and "." not in n] or [n for n in names if n]
        raise ConfigError(
            f"{flag} names layer(s) {', '.join(repr(m) for m in missing)} that the model does not have.",
            hint=f"Top-level modules are: {', '.join(available[:20])}. Use dotted names for nested ones.",
        )


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _ratio_for(name: str, config: PruneConfig) -> float:
    # The longest matching override wins, so "features=0.2,features.3=0.5" reads naturally.
    best = ""
    for prefix in config.layer_ratios:
        if _under(name, [prefix]) and len(prefix) > len(best):
            best = prefix
    return config.layer_ratios[best] if best else config.ratio


def _prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from torch import nn

    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)]


def _out_channels(module: nn.Module) -> int:
    weight: torch.Tensor = module.weight  # type: ignore[assignment]  # conv / linear: always a tensor
    return int(weight.shape[0])


def _prune_channels(
    model: nn.Module, example_inputs: Any, config: PruneConfig
) -> tuple[dict[str, tuple[int, int]], list[str]]:
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    ignored: list[nn.Module] = []
    protected: list[str] = []
    ratio_dict: dict[nn.Module, float] = {}
    for name, module in _prunable(model):
        if _under(name, config.exclude) or _feeds_output(graph, module):
            ignored.append(module)
            protected.append(name)
            continue
        ratio = _ratio_for(name, config)
        if config.round_to is not None:
            ratio = _rounded_ratio(_out_channels(module), ratio, config.round_to)
        if ratio != config.ratio:
            ratio_dict[module] = ratio
    if len(ignored) == len(_prunable(model)):
        raise ConfigError(
            "Nothing is left to prune: every convolution / linear layer is protected or produces a model output.",
            hint="Remove some --prune-exclude entries.",
        )
    before = {name: _out_channels(m) for name, m in _prunable(model)}
    pruner = tp.pruner.MetaPruner(
        model,
        example_inputs,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=config.ratio,
        pruning_ratio_dict=ratio_dict or None,
        ignored_layers=ignored,
        # Keep at least one channel per layer: a layer with zero channels cannot be exported.
        max_pruning_ratio=0.95,
    )
    pruner.step()
    after = {name: _out_channels(m) for name, m in _prunable(model)}
    return {n: (before[n], after[n]) for n in before}, protected


def _rounded_ratio(channels: int, ratio: float, block: int) -> float:
    """The ratio that keeps the multiple of ``block`` nearest to ``channels * (1 - ratio)`` (at least one block).

    torch-pruning's own ``round_to`` rounds the kept count *down*, which prunes narrow layers far beyond the ratio
    asked for (16 channels at 0.3 keep 8); nearest rounding stays as close to the request as blocks allow.
    """
    kept = min(channels, max(block, round(channels * (1.0 - ratio) / block) * block))
    # torch-pruning keeps int(channels * (1 - ratio)); the half channel absorbs floating-point error.
    return 0.0 if kept >= channels else 1.0 - (kept + 0.5) / channels


def _feeds_output(graph: Any, module: nn.Module) -> bool:
    """Whether removing an output channel of ``module`` would change the shape of a model output."""
    pruner = graph.get_pruner_of_module(module)
    if pruner is None:
        return True
    group = graph.get_pruning_group(module, pruner.prune_out_channels, idxs=[0])
    # A node without consumers produces a model output; it changes only when its *output* channels are cut
    # (a last Linear whose input features shrink still produces the same classes).
    return any(
        len(item.dep.target.outputs) == 0 and getattr(item.dep.handler, "__name__", "") != "prune_in_channels"
        for item in group
    )


def _prune_magnitude(model: nn.Module, config: PruneConfig) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Zero the smallest-magnitude weights in place. Works on parameters directly (not torch.nn.utils.prune's
    re-parametrisation), so TorchScript modules can be pruned too and nothing needs baking in afterwards."""
    import torch

    layers: dict[str, tuple[int, int]] = {}
    protected: list[str] = []
    uniform: list[torch.Tensor] = []
    overridden: list[tuple[torch.Tensor, float]] = []
    weights: dict[str, torch.nn.Parameter] = {}
    for pname, param in model.named_parameters():
        owner, _, leaf = pname.rpartition(".")
        if leaf != "weight" or param.ndim < 2:  # conv / linear kernels; norms and biases are tiny and sensitive
            continue
        if _under(owner, config.exclude):
            protected.append(owner)
            continue
        weights[owner] = param
        layers[owner] = (int(torch.count_nonzero(param).item()), 0)
        ratio = _ratio_for(owner, config)
        if ratio == config.ratio:
            uniform.append(param)
        else:
            overridden.append((param, ratio))
    if not layers:
        raise ConfigError("Nothing is left to prune: every layer is protected.", hint="Remove some --prune-exclude.")
    with torch.no_grad():
        # One global threshold for the shared ratio: small weights go where they matter least, not evenly.
        if uniform:
            _zero_smallest(uniform, config.ratio)
        for kernel, ratio in overridden:
            _zero_smallest([kernel], ratio)
    for owner, weight in weights.items():
        layers[owner] = (layers[owner][0], int(torch.count_nonzero(weight).item()))
    return layers, protected


def _zero_smallest(params: list[torch.Tensor], ratio: float) -> None:
    import torch

    magnitudes = torch.cat([p.detach().abs().flatten() for p in params])
    count = round(ratio * magnitudes.numel())
    if count == 0:
        return
    # kthvalue picks an exact threshold; ties at the threshold are all removed (at most a few extra weights).
    threshold = torch.kthvalue(magnitudes, count).values
    for p in params:
        p.masked_fill_(p.abs() <= threshold, 0.0)
