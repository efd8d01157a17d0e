"""Lesson 08's prediction checkers: each verdict comes from the numbers; wrong answers fail."""

from __future__ import annotations

import torch
from torch import nn

from camkit import exercises


def _gap_linear(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, nn.Linear]:
    """Non-negative activations (1, 6, 3, 3) followed by average pooling and a linear layer."""
    generator = torch.Generator().manual_seed(seed)
    activations = torch.rand(1, 6, 3, 3, generator=generator) * 2
    linear = nn.Linear(6, 4)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(4, 6, generator=generator))
    return activations, generator, linear


def _drops(activations: torch.Tensor, linear: nn.Linear, c: int, channels: list[int]):
    a = activations.clone().requires_grad_(True)
    y = linear(a.mean(dim=(2, 3)))[0, c]
    (gradients,) = torch.autograd.grad(y, a)
    y = y.detach()
    ablated = []
    with torch.no_grad():
        for k in channels:
            b = activations.clone()
            b[:, k] = 0
            ablated.append(float(linear(b.mean(dim=(2, 3)))[0, c]))
    return float(y), torch.tensor(ablated), gradients


def test_ablation_prediction_is_judged_by_the_measured_drops() -> None:
    activations, _, linear = _gap_linear()
    y, ablated, gradients = _drops(activations, linear, 2, [0, 3, 5])
    check = exercises.check_ablation_prediction
    assert check(y, ablated, activations, gradients, [0, 3, 5], "b")
    assert check(y, ablated, activations, gradients, [0, 3, 5], " (B) ")
    for wrong in ("a", "c", "d"):
        feedback = check(y, ablated, activations, gradients, [0, 3, 5], wrong)
        assert not feedback and feedback.message.startswith("Not yet")
    # A network that is not linear after the layer: no rule holds, and (d) is right.
    bent = torch.tensor([y - 5.0, y - 0.1, y + 3.0])
    assert check(y, bent, activations, gradients, [0, 3, 5], "d")
    assert not check(y, bent, activations, gradients, [0, 3, 5], "b")
    assert "letters" in check(y, ablated, activations, gradients, [0, 3, 5], "b and c").message
    unanswered = check(y, ablated, activations, gradients, [0, 3, 5], ...)
    assert unanswered.message.startswith("Not answered yet") and "(b)" not in unanswered.message


def test_last_layer_layercam_prediction() -> None:
    activations, _, linear = _gap_linear(1)
    _, _, gradients = _drops(activations, linear, 1, [0])
    assert exercises.check_last_layer_layercam(activations, gradients, "c")
    assert not exercises.check_last_layer_layercam(activations, gradients, "a")
    assert not exercises.check_last_layer_layercam(activations, gradients, "b")
    # Gradients that vary by position: LayerCAM is neither, and (b) is the right answer.
    varying = torch.randn(1, 6, 3, 3, generator=torch.Generator().manual_seed(3))
    assert exercises.check_last_layer_layercam(activations, varying, "b")
    assert not exercises.check_last_layer_layercam(activations, varying, "c")
    assert exercises.check_last_layer_layercam(activations, gradients, ...).message.startswith(
        "Not answered yet"
    )


def test_reshape_prediction() -> None:
    tokens = torch.randn(1, 1 + 16, 5)  # a 4 x 4 grid of 5 channels
    assert exercises.check_reshape_prediction(tokens, {"b", "c"})
    assert exercises.check_reshape_prediction(tokens, ["C", "b"])
    for wrong in ({"b"}, {"a", "b", "c"}, {"a"}, {"c"}):
        assert not exercises.check_reshape_prediction(tokens, wrong)
    assert not exercises.check_reshape_prediction(tokens, {"z"})
    assert exercises.check_reshape_prediction(tokens, ...).message.startswith("Not answered yet")
