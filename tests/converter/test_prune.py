"""Pruning: structured channel removal keeps coupled layers consistent; magnitude pruning zeroes weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from edgectl.converter.prune import PruneConfig, PruneMethod, model_stats, parse_prune_spec, prune_model
from torch import nn

from edgectl.errors import ConfigError, ModelLoadError


class Coupled(nn.Module):
    """Depthwise conv, BatchNorm, a residual add and a concatenation: the couplings channel pruning must respect."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.branch_a = nn.Conv2d(16, 8, 3, padding=1)
        self.branch_b = nn.Conv2d(16, 8, 1)
        self.head = nn.Conv2d(16, 24, 1)
        self.classifier = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        y = y + self.pw(torch.relu(self.dw(y)))  # residual
        y = torch.cat([self.branch_a(y), self.branch_b(y)], dim=1)  # concatenation
        y = torch.relu(self.head(y)).mean(dim=(2, 3))
        return self.classifier(y)


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return Coupled().eval()


EXAMPLE = torch.randn(2, 1, 12, 12)


def test_parse_spec_reads_method_ratio_and_layer_overrides() -> None:
    cfg = parse_prune_spec("channels:0.3,head=0.5, branch_a=0.1", exclude=("classifier",))
    assert cfg.method is PruneMethod.CHANNELS
    assert cfg.ratio == pytest.approx(0.3)
    assert cfg.layer_ratios == {"head": 0.5, "branch_a": 0.1}
    assert cfg.exclude == ("classifier",)
    assert parse_prune_spec("magnitude:.5").method is PruneMethod.MAGNITUDE


@pytest.mark.parametrize(
    "spec",
    [
        "channels:0",
        "channels:1",
        "channels:1.5",
        "channels:-0.2",
        "magnitude:abc",
        "channels:0.3,head=1",
        "channels",
        "prune:0.3",
        "channels:0.3,head",
    ],
)
def test_bad_specs_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_prune_spec(spec)


def test_channel_pruning_shrinks_a_dense_model_and_keeps_it_runnable(model: nn.Module) -> None:
    # Exact ratios: this test is about coupling; rounding to channel blocks has its own test.
    result = prune_model(model, EXAMPLE, dataclasses.replace(parse_prune_spec("channels:0.5"), round_to=None))
    pruned = result.model
    assert result.after.params < 0.6 * result.before.params
    assert result.after.macs is not None and result.before.macs is not None
    assert result.after.macs < 0.6 * result.before.macs
    assert result.after.size_bytes < result.before.size_bytes
    # Coupled layers stay consistent: BatchNorm follows the stem, depthwise groups follow their channels,
    # both sides of the residual add agree.
    stem_out = pruned.stem[0].out_channels
    assert pruned.stem[1].num_features == stem_out
    assert pruned.dw.groups == pruned.dw.in_channels == pruned.dw.out_channels == stem_out
    assert pruned.pw.out_channels == stem_out < 16
    assert pruned.head.in_channels == pruned.branch_a.out_channels + pruned.branch_b.out_channels
    # The classifier's classes are model outputs: never removed.
    assert pruned.classifier.out_features == 10
    assert "classifier" in result.protected
    assert pruned(EXAMPLE).shape == (2, 10)
    # The original model (the distillation teacher) is untouched.
    assert model.stem[0].out_channels == 16


def test_protected_and_per_layer_ratios_are_respected(model: nn.Module) -> None:
    cfg = dataclasses.replace(parse_prune_spec("channels:0.5,branch_a=0.25", exclude=("head",)), round_to=None)
    result = prune_model(model, EXAMPLE, cfg)
    assert result.model.head.out_channels == 24
    assert result.layers["head"] == (24, 24)
    assert result.model.branch_a.out_channels == 6
    assert result.model.branch_b.out_channels == 4


def test_channel_counts_are_rounded_to_fast_kernel_blocks() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.Flatten(), nn.Linear(1024, 4))
    exact = prune_model(model, torch.randn(2, 1, 8, 8), dataclasses.replace(parse_prune_spec("channels:0.3"),
                                                                           round_to=None))  # fmt: skip
    rounded = prune_model(model, torch.randn(2, 1, 8, 8), parse_prune_spec("channels:0.3"))
    assert exact.layers["0"][1] % 8 != 0  # 32 * 0.7 = 22.4: not a block multiple
    assert all(after % 16 == 0 for name, (_, after) in rounded.layers.items() if name != "4")
    assert rounded.layers["0"] == (32, 16) and rounded.layers["2"] == (64, 48)  # nearest multiples of 16
    assert rounded.config.to_manifest()["round_to"] == 16


def test_layers_too_narrow_for_rounding_are_pruned_exactly() -> None:
    # 8-channel layers cannot lose a whole block of 16: rounding would prune nothing at all.
    torch.manual_seed(0)
    narrow = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(128, 4))
    result = prune_model(narrow, torch.randn(2, 1, 8, 8), parse_prune_spec("channels:0.3"))
    assert result.config.round_to is None
    assert result.layers["0"][1] < 8 and result.layers["2"][1] < 8


def test_unknown_protected_layer_is_a_config_error(model: nn.Module) -> None:
    with pytest.raises(ConfigError, match="'clasifier'"):
        prune_model(model, EXAMPLE, parse_prune_spec("channels:0.3", exclude=("clasifier",)))
    with pytest.raises(ConfigError, match="'nope'"):
        prune_model(model, EXAMPLE, parse_prune_spec("channels:0.3,nope=0.2"))


def test_magnitude_pruning_zeroes_weights_keeps_shapes_and_shrinks_gzip(model: nn.Module) -> None:
    result = prune_model(model, EXAMPLE, PruneConfig(method=PruneMethod.MAGNITUDE, ratio=0.6, exclude=("stem",)))
    assert result.after.params == result.before.params  # dense shapes unchanged
    assert result.after.macs == result.before.macs
    kernels = sum(n for n, _ in result.layers.values())
    zeroed = kernels - sum(n for _, n in result.layers.values())
    assert zeroed == pytest.approx(0.6 * kernels, abs=2)
    assert "stem.0" in result.protected and "stem.0" not in result.layers
    assert torch.count_nonzero(result.model.stem[0].weight) == model.stem[0].weight.numel()
    assert result.after.gzip_bytes < 0.8 * result.before.gzip_bytes
    assert result.model(EXAMPLE).shape == (2, 10)


# Users still ship TorchScript files (`model.pt`); scripting one here is how the test makes such a file.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_magnitude_pruning_works_on_torchscript(model: nn.Module) -> None:
    scripted = torch.jit.script(model)
    result = prune_model(scripted, EXAMPLE, parse_prune_spec("magnitude:0.5"))
    assert result.after.nonzero_params < result.before.nonzero_params
    assert result.after.macs is None
    with pytest.raises(ModelLoadError, match="TorchScript"):
        prune_model(scripted, EXAMPLE, parse_prune_spec("channels:0.5"))


def test_model_stats_counts_macs_of_a_linear_layer() -> None:
    stats = model_stats(nn.Linear(8, 4, bias=False), torch.randn(1, 8))
    assert stats.params == 32
    assert stats.macs == 32
