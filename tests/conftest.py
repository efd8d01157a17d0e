"""Shared fixtures: tiny hand-built models, the offline pretrained model, the shared images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import camkit

#: Methods computed from explain's one shared forward and backward pass: everything except the
#: perturbation methods (Score-CAM, Ablation-CAM, ...) and those with passes of their own (guided).
ONE_PASS_METHODS = [
    name
    for name in camkit.list_methods()
    if not camkit.cam.get_method(name).perturbation
    and not camkit.cam.get_method(name).own_pass
]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A file in ../shared/data, or skip the test when the folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


class MaskedLinear(nn.Module):
    """y_c = sum_k W_ck sum_ij M_ij A_k,ij, with A the input itself (captured at ``features``).

    Its gradients are known on paper: dy_c/dA_k,ij = W_ck M_ij.
    """

    def __init__(self, weight: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.register_buffer("mask", mask)
        self.head = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.head.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x)
        return self.head((a * self.mask).sum(dim=(2, 3)))


class SmallCNN(nn.Module):
    """A small real CNN: two conv stages with in-place ReLUs, global pooling, a linear head."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True)
        )
        self.block = nn.Sequential(
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.stem(x))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


@pytest.fixture
def small_cnn() -> SmallCNN:
    torch.manual_seed(0)
    model = SmallCNN()
    # Non-trivial batch-norm statistics, so eval and train mode differ.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def lite0() -> camkit.LoadedModel:
    return camkit.load_model("efficientnet_lite0")
