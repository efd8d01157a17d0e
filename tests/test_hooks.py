"""camkit.hooks: activations and gradients captured, hooks always removed, the model unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camkit import hooks
from camkit.layers import describe_layer, list_layers


def tiny() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    ).eval()


def test_capture_gives_the_layer_output_and_its_gradient() -> None:
    model, x = tiny(), torch.randn(2, 3, 6, 6)
    with hooks.capture(model, ["0", "2"]) as seen:
        logits = model(x)
    assert hooks.hook_count(model) == 0
    grads = seen.gradients(logits[:, 1].sum())
    # Independent reference: the same tensors recomputed by hand, gradient by autograd.
    a0 = model[0](x).detach().requires_grad_(True)
    a2 = model[2](torch.relu(a0))
    score = model[5](model[4](model[3](a2)))[:, 1].sum()
    g0, g2 = torch.autograd.grad(score, [a0, a2])
    torch.testing.assert_close(seen.activations["0"], a0.detach(), msg="activations of layer 0")
    torch.testing.assert_close(grads["0"], g0, msg="gradient at layer 0")
    torch.testing.assert_close(grads["2"], g2, msg="gradient at layer 2")
    # Global average pooling then a linear layer: dy/dA2 is w_c / (h*w) everywhere.
    expected = (model[5].weight[1] / 36)[None, :, None, None].expand(2, 5, 6, 6)
    torch.testing.assert_close(grads["2"], expected)


def test_an_in_place_relu_after_the_layer_does_not_change_the_capture() -> None:
    model, x = tiny(), torch.randn(1, 3, 6, 6)
    with hooks.capture(model, "0") as seen:
        model(x)
    assert (seen.activations["0"] < 0).any(), "the ReLU(inplace=True) after it must not clip it"


def test_hooks_are_removed_when_the_forward_raises() -> None:
    model = tiny()
    with pytest.raises(RuntimeError), hooks.capture(model, ["0", "2"]):
        model(torch.randn(1, 5, 6, 6))  # wrong channel count
    assert hooks.hook_count(model) == 0


def test_a_shared_module_is_captured_at_its_last_call() -> None:
    shared = nn.ReLU()
    model = nn.Sequential(nn.Conv2d(3, 3, 1), shared, nn.Conv2d(3, 3, 1), shared)
    x = torch.randn(1, 3, 4, 4)
    with hooks.capture(model, "1") as seen:
        out = model(x)
    assert seen.calls["1"] == 2
    torch.testing.assert_close(seen.activations["1"], out)


def test_unknown_layer_is_a_clear_error() -> None:
    with (
        pytest.raises(ValueError, match="not a module of this model"),
        hooks.capture(tiny(), "features.9"),
    ):
        pass


def test_evaluation_mode_restores_each_flag() -> None:
    model = tiny().train()
    model[0].eval()
    with hooks.evaluation_mode(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [True, False, True, True, True, True, True]


def test_describe_layer_names_type_and_place() -> None:
    model = tiny()
    assert describe_layer(model, "0") == "Conv2d, stem"
    assert describe_layer(model, "5") == "Linear, head"
    names = [info.name for info in list_layers(model, input_size=(6, 6))]
    assert names[:3] == ["0", "1", "2"]
