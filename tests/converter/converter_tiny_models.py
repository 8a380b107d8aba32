"""Tiny models for the converter tests, importable as factories ('converter_tiny_models:build_cnn')."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Conv-BN-ReLU x2, global average pool, linear: a 3x16x16 image classifier with 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


class TinyMLP(nn.Module):
    """16 features -> 32 -> 5 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class OutlierFeature(nn.Module):
    """A linear layer fed one huge constant feature beside the real ones (the activation-outlier pattern of large
    transformers): per-tensor dynamic int8 spends its whole range on the outlier and loses the real features."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(17, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([x, torch.full_like(x[:, :1], 1000.0)], dim=1))


class Unsupported(nn.Module):
    """Uses an SVD, which has no ONNX translation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svd(x).S


def build_cnn() -> TinyCNN:
    torch.manual_seed(0)
    model = TinyCNN()
    with torch.no_grad():  # untrained, but spread its decisions over the classes so accuracy means something
        model.fc.weight.mul_(8.0)
        model.fc.bias.zero_()
    return model.eval()


def build_mlp() -> TinyMLP:
    torch.manual_seed(1)
    return TinyMLP().eval()


def build_outlier_feature() -> OutlierFeature:
    torch.manual_seed(2)
    model = OutlierFeature()
    with torch.no_grad():
        model.fc.weight[:, 16] = 1.0e-3  # the outlier adds the same small amount to every class
    return model.eval()


def build_unsupported() -> Unsupported:
    return Unsupported().eval()


def build_not_a_module() -> str:
    return "not a module"
