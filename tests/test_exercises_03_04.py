"""The predict-then-verify checkers of lessons 03 and 04: right predictions pass, wrong ones and
copies of the cells above do not, and the hints do not give the answer away."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camkit
from camkit import exercises, hooks


def _channel_constant_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative activations (6, 3, 4) and one gradient per channel, some negative."""
    generator = torch.Generator().manual_seed(5)
    activations = torch.rand(6, 3, 4, generator=generator)
    activations[5] = 0  # a dead channel
    g = torch.tensor([0.5, 0.05, -0.2, 1.0, 0.0, 0.3])
    return activations, g[:, None, None].expand(6, 3, 4).clone()


def _varying_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative activations and gradients that vary over positions, mostly positive."""
    generator = torch.Generator().manual_seed(6)
    activations = torch.rand(4, 3, 3, generator=generator)
    gradients = torch.rand(4, 3, 3, generator=generator) - 0.2
    return activations, gradients


# --- lesson 03 -------------------------------------------------------------------------------


def test_where_alpha_is_smallest() -> None:
    activations, gradients = _varying_tensors()
    right = exercises.check_where_alpha_is_smallest(activations, gradients, "largest")
    assert right and "4 of 4 channels" in right.message
    wrong = exercises.check_where_alpha_is_smallest(activations, gradients, "smallest")
    assert not wrong and "measured" in wrong.message
    assert not exercises.check_where_alpha_is_smallest(activations, gradients, "the middle")
    pending = exercises.check_where_alpha_is_smallest(activations, gradients, ...)
    assert not pending and pending.message.startswith("Not answered yet")


def test_plus_plus_logit_scaling_is_measured() -> None:
    activations, gradients = _channel_constant_tensors()
    right = {"gradcam": False, "gradcam++": True}
    assert exercises.check_plus_plus_logit_scaling(activations, gradients, right)
    both_change = exercises.check_plus_plus_logit_scaling(
        activations, gradients, {"gradcam": True, "gradcam++": True}
    )
    assert not both_change and both_change.message.startswith("Not yet: gradcam:")
    assert not exercises.check_plus_plus_logit_scaling(activations, gradients, {"gradcam++": True})
    assert not exercises.check_plus_plus_logit_scaling(
        activations, gradients, {"gradcam": "no", "gradcam++": "yes"}
    )
    # With a factor of 1, nothing changes: the checker measures, it does not know the answer.
    same = {"gradcam": False, "gradcam++": False}
    assert exercises.check_plus_plus_logit_scaling(activations, gradients, same, factor=1.0)


def test_plus_plus_limit_weights() -> None:
    activations, gradients = _channel_constant_tensors()
    g, sums = gradients[:, 0, 0], activations.sum(dim=(1, 2))
    limit = torch.where((g > 0) & (sums > 0), 1 / sums.clamp_min(1e-12), 0.0)
    assert exercises.check_plus_plus_limit_weights(activations, gradients, limit)
    assert exercises.check_plus_plus_limit_weights(activations, gradients, 12 * limit)
    # The weights at the original scale (a copy of the lesson's weights) are not the limit.
    alpha = 1 / (2 + g * sums)
    at_scale_one = 12 * alpha * torch.relu(g)
    feedback = exercises.check_plus_plus_limit_weights(activations, gradients, at_scale_one)
    assert not feedback and "proportional" in feedback.message
    negative_kept = torch.where(sums > 0, 1 / sums.clamp_min(1e-12), 0.0)
    feedback = exercises.check_plus_plus_limit_weights(activations, gradients, negative_kept)
    assert not feedback and "g_k <= 0" in feedback.message
    varying_a, varying_g = _varying_tensors()
    assert not exercises.check_plus_plus_limit_weights(varying_a, varying_g, limit[:4])


# --- lesson 04 -------------------------------------------------------------------------------


class Mixer(nn.Module):
    """conv 3x3 -> BatchNorm -> a 1x1 convolution without bias -> ReLU -> pool -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.bn = nn.BatchNorm2d(5)
        self.mix = nn.Conv2d(5, 7, 1, bias=False)
        self.relu = nn.ReLU()
        self.head = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.mix(self.bn(self.conv(x)))).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def mixer() -> nn.Module:
    torch.manual_seed(0)
    net = Mixer()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.bias.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def picture() -> torch.Tensor:
    return torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(7))


def test_signed_layers_need_every_candidate_and_hide_the_answer(mixer, picture) -> None:
    candidates = ["conv", "bn", "mix", "relu"]
    right = {"conv": True, "bn": True, "mix": True, "relu": False}
    assert exercises.check_signed_layers(mixer, picture, right, candidates)
    partial = exercises.check_signed_layers(mixer, picture, {"relu": False}, candidates)
    assert not partial and "missing" in partial.message
    feedback = exercises.check_signed_layers(mixer, picture, {**right, "relu": True}, candidates)
    assert not feedback and feedback.message.startswith("Not yet: relu:")
    assert "ReLU" not in feedback.message and "BatchNorm" not in feedback.message
    strings = {name: "yes" for name in candidates}
    assert not exercises.check_signed_layers(mixer, picture, strings, candidates)
    assert not exercises.check_signed_layers(mixer, picture, {"nope": True})
    assert hooks.hook_count(mixer) == 0


def test_same_map_after_a_linear_channel_mix(mixer, picture) -> None:
    explanation = camkit.explain(mixer, picture, methods=["gradcam"], layers=["bn", "mix"])
    gap = (explanation[("bn", "gradcam")] - explanation[("mix", "gradcam")]).abs().max()
    assert gap < 1e-5  # the fact the exercise builds on
    right = {"gradcam++": False, "xgradcam": False, "hirescam": True}
    feedback = exercises.check_same_map_after_linear_layer(
        mixer, picture, right, before="bn", after="mix"
    )
    assert feedback, feedback.message
    all_same = {"gradcam++": True, "xgradcam": True, "hirescam": True}
    feedback = exercises.check_same_map_after_linear_layer(
        mixer, picture, all_same, before="bn", after="mix"
    )
    assert not feedback and feedback.message.startswith("Not yet: gradcam++, xgradcam:")
    assert not exercises.check_same_map_after_linear_layer(
        mixer, picture, {"hirescam": True}, before="bn", after="mix"
    )
    pending = exercises.check_same_map_after_linear_layer(mixer, picture, ...)
    assert pending.message.startswith("Not answered yet")
