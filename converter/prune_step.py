"""Pipeline step ``prune`` (between ``data`` and ``export``): ``--prune``, ``--prune-exclude``, ``--finetune``.

Prunes the torch module the export step will trace, recovers accuracy (a user callable, or the built-in
distillation from the original model on the calibration inputs) and hands the pruned module to the export step.
The original model stays the reference: every artifact's accuracy drop in the report is measured against it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from edgectl.errors import ConfigError

from .distill import DistillConfig, FinetuneData, distill, load_finetune_fn, run_finetune
from .prune import PruneMethod, parse_prune_spec, prune_model

if TYPE_CHECKING:
    from .pipeline import ConversionContext


class PruneStep:
    """Replace ``ctx.module`` by its pruned (and recovered) version; record what changed."""

    name = "prune"

    def __init__(self) -> None:
        #: The module before pruning (the report step measures it as the "before" row).
        self.original: Any = None

    def run(self, ctx: ConversionContext) -> None:
        """Raises:
        ConfigError: the input is ONNX, a protected layer does not exist, or recovery has no data.
        ModelLoadError: channel pruning of a model that cannot be resized.
        """
        cfg = ctx.config
        if cfg.prune is None:
            return
        import torch

        from .export_onnx import traceable_module

        loaded = ctx.loaded
        if loaded is None or not loaded.is_torch:
            raise ConfigError(
                f"--prune needs the PyTorch model, but {cfg.source} is an ONNX file: edgectl prunes through "
                "PyTorch's module graph and cannot resize the layers of an ONNX graph.",
                hint="Pass the TorchScript file, the .pt2 program or the module:callable factory instead.",
            )
        names = [s.name for s in ctx.inputs]
        original = ctx.module if ctx.module is not None else traceable_module(loaded, ctx.example, names)
        tensors = tuple(torch.from_numpy(ctx.example[n]) for n in names)
        example: Any = tensors[0] if len(tensors) == 1 else tensors
        spec = parse_prune_spec(cfg.prune, exclude=cfg.prune_exclude)
        if cfg.target is not None:  # prune to the channel width the target's fast kernels use
            from .profiles import get_profile

            spec = dataclasses.replace(spec, round_to=get_profile(cfg.target).channel_block)
        # TorchScript is pruned as the ScriptModule itself (its named modules and parameters are the model's); the
        # graph module torch.export needs is rebuilt from the pruned one. Other inputs are pruned as traced.
        scripted = loaded.kind == "torchscript"
        result = prune_model(loaded.module if scripted else original, example, spec)
        record: dict[str, Any] = result.to_json()
        if spec.method is PruneMethod.CHANNELS and cfg.finetune != "none":
            record["recovery"] = self._recover(ctx, result.model, original, names)
        else:
            record["recovery"] = {"method": "none"}
        pruned = result.model.eval()
        if scripted:
            pruned = traceable_module(dataclasses.replace(loaded, module=pruned), ctx.example, names)
        ctx.module = pruned
        ctx.step_records["prune"] = record
        self.original = original

    def _recover(self, ctx: ConversionContext, pruned: Any, original: Any, names: list[str]) -> dict[str, Any]:
        cfg = ctx.config
        if ctx.calibration is None:
            raise ConfigError(
                "Recovery after channel pruning needs inputs to train on.",
                hint="Pass --calibration data.npz (unlabelled is fine), or --finetune none to skip recovery.",
            )
        data = FinetuneData(
            inputs=tuple(ctx.calibration.arrays[n] for n in names), labels=_calibration_labels(ctx), teacher=original
        )
        start = time.perf_counter()
        if cfg.finetune:
            run_finetune(load_finetune_fn(cfg.finetune), pruned, data)
            return {"method": "callable", "callable": cfg.finetune, "seconds": round(time.perf_counter() - start, 2)}
        settings = DistillConfig(steps=cfg.finetune_steps, seed=cfg.seed, show_progress=not ctx.console.quiet)
        outcome = distill(pruned, original, data, settings)
        return {"method": "distillation", **outcome.to_json(), "seconds": round(time.perf_counter() - start, 2)}


def _calibration_labels(ctx: ConversionContext) -> Any:
    """Labels stored in the calibration .npz (as 'labels'), matched to the samples used; None otherwise."""
    cfg = ctx.config
    if cfg.calibration is None or ctx.calibration is None or cfg.calibration.suffix != ".npz":
        return None
    from .data import read_arrays

    _, labels = read_arrays(cfg.calibration)
    if labels is None or len(labels) < len(ctx.calibration):
        return None
    return labels[: len(ctx.calibration)]
