"""Recovery after pruning: the built-in distillation loop and user fine-tuning callables."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from edgectl.converter.distill import (
    DistillConfig,
    DistillLoss,
    FinetuneData,
    distill,
    load_finetune_fn,
    run_finetune,
)
from edgectl.converter.prune import parse_prune_spec, prune_model
from torch import nn

from edgectl.errors import CalibrationDataError, ConfigError, ModelLoadError


def _teacher() -> nn.Module:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    ).eval()  # fmt: skip
    with torch.no_grad():
        model[-1].weight.mul_(20)  # confident logits, as a trained classifier has (a random one is near-uniform)
    return model


def _kl(student: nn.Module, teacher: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        log_p = torch.log_softmax(student(x), 1)
        return float(torch.nn.functional.kl_div(log_p, torch.softmax(teacher(x), 1), reduction="batchmean"))


def _data(n: int = 64) -> FinetuneData:
    rng = np.random.default_rng(0)
    return FinetuneData(inputs=(rng.standard_normal((n, 1, 8, 8)).astype(np.float32),))


def test_distillation_reduces_the_gap_to_the_teacher_deterministically() -> None:
    teacher = _teacher()
    data = _data()
    pruned = prune_model(teacher, torch.from_numpy(data.inputs[0][:2]), parse_prune_spec("channels:0.5")).model
    x = torch.from_numpy(data.inputs[0])
    gap_before = _kl(pruned, teacher, x)
    twin = prune_model(teacher, torch.from_numpy(data.inputs[0][:2]), parse_prune_spec("channels:0.5")).model
    cfg = DistillConfig(steps=60, batch_size=16, lr=3e-3)
    result = distill(pruned, teacher, data, cfg)
    gap_after = _kl(pruned, teacher, x)
    assert result.loss == "kl"
    assert result.steps == 60
    assert result.last_loss < result.first_loss
    assert gap_after < gap_before / 2
    assert not pruned.training
    # Same seed, same data, same start: the same weights.
    distill(twin, teacher, data, cfg)
    for p, q in zip(pruned.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_labels_add_cross_entropy_and_mse_is_used_for_non_logits() -> None:
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 1)).eval()
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    result = distill(student, teacher, _data(), DistillConfig(steps=40, batch_size=16, lr=1e-2))
    assert result.loss == "mse"
    assert result.last_loss < result.first_loss
    data = _data()
    labelled = FinetuneData(inputs=data.inputs, labels=np.arange(64) % 5)
    res = distill(_teacher().train(), _teacher(), labelled, DistillConfig(steps=5, loss=DistillLoss.KL))
    # Teacher and student are identical at the start, so only the cross-entropy term makes the loss non-zero.
    assert res.first_loss > 0.1


def test_finetune_data_checks_sample_counts() -> None:
    with pytest.raises(CalibrationDataError, match="disagree"):
        FinetuneData(inputs=(np.zeros((4, 3), np.float32),), labels=np.zeros(5))
    with pytest.raises(CalibrationDataError):
        FinetuneData(inputs=())


def test_data_that_does_not_fit_the_model_is_a_calibration_error() -> None:
    bad = FinetuneData(inputs=(np.zeros((8, 3, 8, 8), np.float32),))
    with pytest.raises(CalibrationDataError, match="does not fit"):
        distill(_teacher().train(), _teacher(), bad, DistillConfig(steps=1))


def test_distill_config_rejects_nonsense() -> None:
    with pytest.raises(ConfigError):
        DistillConfig(steps=0)
    with pytest.raises(ConfigError):
        DistillConfig(lr=-1.0)


def test_user_finetune_callable_is_loaded_called_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def finetune(model: nn.Module, data: FinetuneData) -> nn.Module:
        calls.append(len(data))
        model.train()
        return model

    module = types.ModuleType("edgectl_test_finetune")
    module.finetune = finetune  # type: ignore[attr-defined]
    module.broken = lambda model, data: "not a model"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "edgectl_test_finetune", module)
    fn = load_finetune_fn("edgectl_test_finetune:finetune")
    out = run_finetune(fn, _teacher().train(), _data(10))
    assert calls == [10]
    assert not out.training
    with pytest.raises(ModelLoadError, match="returned str"):
        run_finetune(load_finetune_fn("edgectl_test_finetune:broken"), _teacher(), _data(10))
    with pytest.raises(ModelLoadError, match="no attribute"):
        load_finetune_fn("edgectl_test_finetune:missing")
    with pytest.raises(ModelLoadError, match="Cannot import"):
        load_finetune_fn("edgectl_no_such_module_xyz:finetune")
    with pytest.raises(ConfigError):
        load_finetune_fn("no_colon")
