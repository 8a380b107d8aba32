"""Recovery fine-tuning after pruning: a user's training callable, or a built-in short distillation loop.

A user callable (``--finetune my_pkg:finetune``) has this signature::

    def finetune(model: torch.nn.Module, data: edgectl.converter.distill.FinetuneData) -> torch.nn.Module:
        ...  # train `model` (the pruned one) and return it; edgectl puts it in eval mode afterwards

``FinetuneData`` holds the inputs the user gave (``--calibration data.npz``, or ``--finetune-data``), the labels
when the file has a ``labels`` array, and the original (unpruned) model as ``teacher``.

Without a callable, :func:`distill` trains the pruned model (the student) to reproduce the original model (the
teacher) on unlabelled inputs: KL divergence between softened logits for classifiers, mean squared error for any
other output; plus cross-entropy when labels are given. Steps are bounded, the seed is fixed, progress is shown.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from edgectl.errors import CalibrationDataError, ConfigError, ModelLoadError

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)


class DistillLoss(StrEnum):
    AUTO = "auto"  # KL for (batch, classes) float outputs, MSE otherwise
    KL = "kl"
    MSE = "mse"


@dataclass(frozen=True, kw_only=True)
class FinetuneData:
    """What a fine-tuning callable receives besides the model.

    ``inputs``: the model's positional inputs, each an array whose first axis is the sample axis.
    ``labels``: integer class labels per sample, or ``None`` when the data is unlabelled.
    ``teacher``: the original model before pruning (eval mode; do not train it).
    """

    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray | None = None
    teacher: nn.Module | None = None

    def __post_init__(self) -> None:
        if not self.inputs:
            raise CalibrationDataError("Fine-tuning data has no input arrays.")
        counts = {len(a) for a in self.inputs}
        if self.labels is not None:
            counts.add(len(self.labels))
        if len(counts) != 1 or 0 in counts:
            raise CalibrationDataError(
                f"Fine-tuning arrays disagree on the number of samples ({sorted(counts)}) or are empty.",
                hint="Every input array (and 'labels') needs the same, non-zero first dimension.",
            )

    def __len__(self) -> int:
        return len(self.inputs[0])

    def batches(self, batch_size: int, *, seed: int) -> Iterator[tuple[tuple[np.ndarray, ...], np.ndarray | None]]:
        """Endless shuffled batches (a new permutation per epoch), deterministic for a given seed."""
        rng = np.random.default_rng(seed)
        n = len(self)
        while True:
            order = rng.permutation(n)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                if len(idx) < min(batch_size, n):
                    break  # a tiny last batch makes BatchNorm statistics noisy; start the next epoch instead
                labels = None if self.labels is None else self.labels[idx]
                yield tuple(a[idx] for a in self.inputs), labels


FinetuneFn = Callable[["nn.Module", FinetuneData], "nn.Module"]


@dataclass(frozen=True, kw_only=True)
class DistillConfig:
    """The built-in recovery loop. ``label_weight`` weighs cross-entropy on labels (when present) against the
    distillation loss; ``temperature`` softens logits for the KL loss."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    temperature: float = 2.0
    loss: DistillLoss = DistillLoss.AUTO
    label_weight: float = 0.5
    seed: int = 0
    show_progress: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"Distillation needs steps ≥ 1 and batch size ≥ 1 (got {self.steps}, {self.batch_size}).")
        if not (self.lr > 0 and self.temperature > 0 and 0 <= self.label_weight <= 1):
            raise ConfigError("Distillation needs lr > 0, temperature > 0 and 0 ≤ label_weight ≤ 1.")


@dataclass
class DistillResult:
    """How the built-in loop went: the loss over the first and the last 10% of the steps."""

    steps: int
    loss: str
    first_loss: float
    last_loss: float
    history: list[float] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "loss": self.loss, "first_loss": self.first_loss, "last_loss": self.last_loss}


def load_finetune_fn(ref: str) -> FinetuneFn:
    """Import ``module:function`` and check that it is callable.

    Raises:
        ConfigError: ``ref`` is not ``module:function``.
        ModelLoadError: the module or attribute cannot be imported, or is not callable.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"Invalid --finetune '{ref}'; write module:function, e.g. my_pkg.train:finetune.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(f"Cannot import module '{module_name}' for --finetune: {exc}.") from exc
    fn: Any = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ModelLoadError(f"Module '{module_name}' has no attribute '{attr}' (from --finetune '{ref}').")
    if not callable(fn):
        raise ModelLoadError(f"--finetune '{ref}' is not callable.")
    return fn


def run_finetune(fn: FinetuneFn, model: nn.Module, data: FinetuneData) -> nn.Module:
    """Call a user's fine-tuning function and check what it returns.

    Raises:
        ModelLoadError: the function did not return an ``nn.Module``.
    """
    from torch import nn

    result = fn(model, data)
    if not isinstance(result, nn.Module):
        raise ModelLoadError(
            f"The --finetune function returned {type(result).__name__}, not a torch.nn.Module.",
            hint="It must return the trained model: def finetune(model, data) -> nn.Module.",
        )
    return result.eval()


def distill(
    student: nn.Module, teacher: nn.Module, data: FinetuneData, config: DistillConfig | None = None
) -> DistillResult:
    """Train ``student`` in place to reproduce ``teacher`` on ``data`` for ``config.steps`` steps.

    Returns:
        A :class:`DistillResult` (the student is left in eval mode).

    Raises:
        CalibrationDataError: the data does not fit the model (the message says which input).
    """
    import torch

    config = config or DistillConfig()
    torch.manual_seed(config.seed)
    teacher.eval()
    student.train()
    optimizer = torch.optim.Adam(student.parameters(), lr=config.lr)
    # Cosine decay ends the run with small steps, so the last weights are not those of one noisy batch.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps))
    )
    batches = data.batches(min(config.batch_size, len(data)), seed=config.seed)
    history: list[float] = []
    chosen = config.loss
    with _progress(config.show_progress, config.steps) as advance:
        for _ in range(config.steps):
            inputs, labels = next(batches)
            tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs)
            try:
                with torch.no_grad():
                    target = _first_output(teacher(*tensors))
                output = _first_output(student(*tensors))
            except (RuntimeError, TypeError, ValueError) as exc:
                raise CalibrationDataError(f"The fine-tuning data does not fit the model: {exc}.") from exc
            if chosen is DistillLoss.AUTO:
                chosen = DistillLoss.KL if output.ndim == 2 and output.shape[1] > 1 else DistillLoss.MSE
            loss = _loss(output, target, chosen, config.temperature)
            if labels is not None and chosen is DistillLoss.KL and config.label_weight > 0:
                ce = torch.nn.functional.cross_entropy(output, torch.from_numpy(labels.astype(np.int64)))
                loss = (1 - config.label_weight) * loss + config.label_weight * ce
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            history.append(float(loss.item()))
            advance(history[-1])
    student.eval()
    tenth = max(1, len(history) // 10)
    result = DistillResult(
        steps=len(history),
        loss=str(chosen),
        first_loss=float(np.mean(history[:tenth])),
        last_loss=float(np.mean(history[-tenth:])),
        history=history,
    )
    log.info("distillation: %d steps, %s loss %.4f -> %.4f", result.steps, result.loss, result.first_loss,
             result.last_loss)  # fmt: skip
    return result


def _first_output(out: Any) -> torch.Tensor:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and out:
        return _first_output(next(iter(out.values())))
    raise CalibrationDataError(f"Cannot distill a model whose output is {type(out).__name__}; expected tensors.")


def _loss(output: torch.Tensor, target: torch.Tensor, kind: DistillLoss, temperature: float) -> torch.Tensor:
    import torch.nn.functional as F

    if kind is DistillLoss.KL:
        t = temperature
        # Hinton et al.: the t² factor keeps gradient magnitudes comparable across temperatures.
        return F.kl_div(F.log_softmax(output / t, dim=1), F.softmax(target / t, dim=1), reduction="batchmean") * t * t
    return F.mse_loss(output, target)


class _progress:
    """A rich progress bar on stderr (or nothing); the context value advances it by one step."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._enabled = enabled
        self._total = total
        self._bar: Any = None

    def __enter__(self) -> Callable[[float], None]:
        if not self._enabled:
            return lambda loss: None
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._bar.start()
        task = self._bar.add_task("recovery distillation", total=self._total)
        return lambda loss: self._bar.update(task, advance=1, description=f"recovery distillation (loss {loss:.4f})")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
