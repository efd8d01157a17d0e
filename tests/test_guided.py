"""Guided Backpropagation and Guided Grad-CAM against the masked chain rule worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import camkit
from camkit.guided import guided_mode
from camkit.overlay import guided_image
from tests.conftest import shared_path

SIZE = 8  # input side: the layer 'conv2' output is (N, 5, 8, 8), unambiguous


def _relu_form(form: str):
    """A ReLU written the way `form` says, as a function of one tensor."""
    forms = {
        "module": nn.ReLU(),
        "module-inplace": nn.ReLU(inplace=True),
        "F.relu": F.relu,
        "F.relu-inplace": lambda t: F.relu(t, inplace=True),
        "F.relu_": F.relu_,
        "torch.relu": torch.relu,
        "torch.relu_": torch.relu_,
        "Tensor.relu": lambda t: t.relu(),
        "Tensor.relu_": lambda t: t.relu_(),
        "relu6-module": nn.ReLU6(),
        "relu6-module-inplace": nn.ReLU6(inplace=True),
        "F.relu6": F.relu6,
        "F.hardtanh": lambda t: F.hardtanh(t, 0.0, 6.0),
        "F.hardtanh_": lambda t: F.hardtanh_(t, 0.0, 6.0),
    }
    return forms[form]


RELU_FORMS = [
    "module",
    "module-inplace",
    "F.relu",
    "F.relu-inplace",
    "F.relu_",
    "torch.relu",
    "torch.relu_",
    "Tensor.relu",
    "Tensor.relu_",
]
RELU6_FORMS = ["relu6-module", "relu6-module-inplace", "F.relu6", "F.hardtanh", "F.hardtanh_"]


class TinyReLUNet(nn.Module):
    """conv3x3 -> act -> conv1x1 -> act -> global mean -> linear, with the act in any form."""

    def __init__(self, form: str) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 5, 1)
        self.head = nn.Linear(5, 3)
        # Big weights so that a ReLU6 also clips some values at 6.
        with torch.no_grad():
            self.conv1.weight.mul_(6.0)
        act = _relu_form(form)
        if isinstance(act, nn.Module):
            self.act1 = act
            self.act2 = type(act)(**({"inplace": True} if "inplace" in form else {}))
        else:
            self.act_function = act

    def act(self, number: int, t: torch.Tensor) -> torch.Tensor:
        module = getattr(self, f"act{number}", None)
        return module(t) if module is not None else self.act_function(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(1, self.conv1(x))
        b = self.act(2, self.conv2(a))
        return self.head(b.mean(dim=(2, 3)))


def _hand_guided(
    model: TinyReLUNet, x: torch.Tensor, target: int, high: float | None
) -> torch.Tensor:
    """The guided chain rule written out, no autograd: mask by forward input and by sign."""
    with torch.no_grad():
        z1 = model.conv1(x)
        a1 = z1.clamp(0, high)
        z2 = model.conv2(a1)
        h, w = z2.shape[-2:]

        def open_(z: torch.Tensor) -> torch.Tensor:
            return (z > 0) & (z < high) if high is not None else z > 0

        g2 = model.head.weight[target][None, :, None, None].expand_as(z2) / (h * w)
        r2 = torch.where(open_(z2) & (g2 > 0), g2, 0.0)
        g1 = torch.einsum("ck,nchw->nkhw", model.conv2.weight[:, :, 0, 0], r2)
        r1 = torch.where(open_(z1) & (g1 > 0), g1, 0.0)
        return F.conv_transpose2d(r1, model.conv1.weight, padding=1)


@pytest.fixture(scope="module")
def tiny_input() -> torch.Tensor:
    torch.manual_seed(11)
    return torch.randn(2, 3, SIZE, SIZE)


@pytest.mark.parametrize("form", RELU_FORMS + RELU6_FORMS)
def test_guided_backprop_is_the_masked_chain_rule(form: str, tiny_input: torch.Tensor) -> None:
    model = TinyReLUNet(form).eval()
    high = 6.0 if form in RELU6_FORMS else None
    for target in (0, 2):
        exp = camkit.explain(model, tiny_input, "guided-backprop", layers="conv2", target=target)
        got = exp.guided[("conv2", "guided-backprop")]
        expected = _hand_guided(model, tiny_input, target, high)
        assert got.shape == (2, 3, SIZE, SIZE)
        inputs = tiny_input.clone().requires_grad_(True)
        (plain,) = torch.autograd.grad(model(inputs)[:, target].sum(), inputs)
        assert not torch.allclose(plain, expected, rtol=0.1, atol=0)  # the guided masks matter
        scale = float(expected.abs().max())
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6 * scale)
        # The map is the saliency max_c |g|, min-max normalised.
        saliency = expected.abs().amax(dim=1)
        low = saliency.amin(dim=(1, 2), keepdim=True)
        high_ = saliency.amax(dim=(1, 2), keepdim=True)
        torch.testing.assert_close(exp["guided-backprop"], (saliency - low) / (high_ - low))


def test_relu6_rule_clips_at_six(tiny_input: torch.Tensor) -> None:
    """The ReLU6 rule differs from the ReLU rule exactly where the forward input exceeds 6."""
    model = TinyReLUNet("relu6-module").eval()
    with torch.no_grad():
        assert (model.conv1(tiny_input) > 6).any()
    exp = camkit.explain(model, tiny_input, "guided-backprop", layers="conv2", target=0)
    got = exp.guided[("conv2", "guided-backprop")]
    assert not torch.allclose(got, _hand_guided(model, tiny_input, 0, None))


def test_guided_gradcam_is_the_product(tiny_input: torch.Tensor) -> None:
    model = TinyReLUNet("module-inplace").eval()
    exp = camkit.explain(
        model, tiny_input, ["guided-gradcam", "guided-backprop"], layers="conv1", target=1
    )
    assert exp.methods == ["guided-gradcam", "guided-backprop"]  # gradcam used, not returned
    gradcam = camkit.explain(model, tiny_input, "gradcam", layers="conv1", target=1)
    up = F.interpolate(
        gradcam.raw[("conv1", "gradcam")][:, None], size=(SIZE, SIZE), mode="bilinear"
    )
    up = up / up.amax(dim=(2, 3), keepdim=True)
    expected = exp.guided[("conv1", "guided-backprop")] * up
    torch.testing.assert_close(exp.guided[("conv1", "guided-gradcam")], expected)


def test_top_k_and_batch_equal_one_by_one(tiny_input: torch.Tensor) -> None:
    model = TinyReLUNet("F.relu").eval()
    methods = ["gradcam", "guided-backprop", "guided-gradcam"]
    exp = camkit.explain(model, tiny_input, methods, layers="conv2", top_k=2)
    assert exp.guided[("conv2", "guided-gradcam")].shape == (2, 2, 3, SIZE, SIZE)
    for i in range(2):
        for rank in range(2):
            cls = int(exp.targets[i, rank])
            one = camkit.explain(model, tiny_input[i : i + 1], methods, layers="conv2", target=cls)
            for method in methods[1:]:
                torch.testing.assert_close(
                    exp.guided[("conv2", method)][i, rank], one.guided[("conv2", method)][0]
                )
                torch.testing.assert_close(exp.maps[("conv2", method)][i, rank], one[method][0])
            torch.testing.assert_close(exp.maps[("conv2", "gradcam")][i, rank], one["gradcam"][0])


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
    }


def _assert_unchanged(model: nn.Module, before: dict[str, object]) -> None:
    after = _snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    for key, value in before["state"].items():  # type: ignore[union-attr]
        assert torch.equal(after["state"][key], value)  # type: ignore[index]
    for parameter in model.parameters():
        assert parameter.grad is None
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks
    assert not torch._C._is_torch_function_mode_enabled()


def _relu_is_plain() -> bool:
    """A negative upstream gradient passes a plain ReLU; the guided rule would drop it."""
    t = torch.tensor([1.0, 2.0], requires_grad=True)
    (grad,) = torch.autograd.grad(torch.relu(t), t, grad_outputs=torch.tensor([-1.0, 1.0]))
    return bool(grad[0] == -1.0)


def test_model_unchanged_after_success_and_after_an_error(
    small_cnn: nn.Module, tiny_input: torch.Tensor
) -> None:
    small_cnn.train()  # explain must restore training mode
    before = _snapshot(small_cnn)
    x = torch.randn(1, 3, 12, 12)
    camkit.explain(small_cnn, x, ["guided-gradcam", "guided-backprop"], layers="block")
    _assert_unchanged(small_cnn, before)
    assert _relu_is_plain()

    calls = []

    def target(output: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:  # the guided pass's call, inside explain
            raise ValueError("boom")
        return output[:, 0]

    with pytest.raises(ValueError, match="boom"):
        camkit.explain(small_cnn, x, "guided-backprop", layers="block", target=target)
    assert len(calls) == 2
    _assert_unchanged(small_cnn, before)
    assert _relu_is_plain()


def test_other_activations_keep_their_gradient() -> None:
    """SiLU is not guided: the image is the plain input gradient, and a warning says so."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.SiLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).eval()
    x = torch.randn(1, 3, 6, 6)
    with pytest.warns(UserWarning, match="no ReLU"):
        exp = camkit.explain(model, x, "guided-backprop", layers="0", target=1)
    inputs = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(model(inputs)[0, 1], inputs)
    torch.testing.assert_close(exp.guided[("0", "guided-backprop")], plain)


def test_hardtanh_with_negative_bound_is_not_guided() -> None:
    mode = guided_mode()
    t = torch.tensor([-0.5, 0.5], requires_grad=True)
    with mode:
        out = F.hardtanh(t, -1.0, 1.0)
        relu = torch.relu(t)
    assert mode.guided == 1  # only the relu
    (grad,) = torch.autograd.grad(out, t, grad_outputs=torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(grad, torch.tensor([-1.0, -1.0]))
    (grad,) = torch.autograd.grad(relu, t, grad_outputs=torch.tensor([3.0, -1.0]))
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0]))


def test_guided_image_drawing_by_hand() -> None:
    gradient = torch.tensor([[[1.0, -1.0]], [[3.0, -3.0]], [[0.0, 0.0]]])  # (3, 1, 2)
    mean, std = 0.0, float(np.sqrt((1 + 1 + 9 + 9) / 6))
    expected = np.clip((gradient.numpy() - mean) / std * 0.1 + 0.5, 0, 1)
    expected = np.rint(np.moveaxis(expected, 0, -1) * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(guided_image(gradient)), expected)
    flat = np.asarray(guided_image(torch.zeros(1, 2, 2)))
    assert (flat == 128).all()


def test_pictures_draw_the_gradient_image(tiny_input: torch.Tensor) -> None:
    model = TinyReLUNet("module").eval()
    exp = camkit.explain(model, tiny_input, ["gradcam", "guided-gradcam"], layers="conv2")
    picture = exp.overlay("guided-gradcam", index=1)
    expected = guided_image(exp.guided[("conv2", "guided-gradcam")][1])
    assert np.array_equal(np.asarray(picture), np.asarray(expected))
    figure = exp.figure(index=0)
    titles = [ax.get_title() for ax in figure.axes]
    assert any(title.startswith("guided-gradcam image") for title in titles)
    assert any(title.startswith("gradcam heatmap") for title in titles)
    panel = next(ax for ax in figure.axes if ax.get_title().startswith("guided-gradcam image"))
    drawn = panel.get_images()[0].get_array()
    assert np.array_equal(
        np.asarray(drawn), np.asarray(guided_image(exp.guided[("conv2", "guided-gradcam")][0]))
    )
    assert isinstance(camkit.grid([exp, exp]).axes[0], object)


def test_lite0_guided_gradcam_lands_on_each_animal(lite0: camkit.LoadedModel) -> None:
    image = shared_path("images", "both.png")
    boxes = json.loads(shared_path("images", "both.json").read_text())["boxes_xyxy"]
    # The 224x224 picture as the model's input, without the resize and crop, so the boxes hold.
    pixels = torch.from_numpy(np.asarray(Image.open(image).convert("RGB"), dtype=np.float32))
    picture = lite0.preprocessing.normalize(pixels.permute(2, 0, 1)[None] / 255.0)
    for name in ("bull mastiff", "tiger cat"):
        entry = boxes[name]
        exp = camkit.explain(lite0, picture, "guided-gradcam", target=entry["class_index"])
        energy = exp.raw[(exp.layers[0], "guided-gradcam")][0]
        assert torch.isfinite(exp.guided[(exp.layers[0], "guided-gradcam")]).all()
        x0, y0, x1, y1 = entry["box"]
        inside = energy[y0 : y1 + 1, x0 : x1 + 1].sum() / energy.sum()
        area = (x1 - x0 + 1) * (y1 - y0 + 1) / energy.numel()
        assert inside > 1.8 * area, (name, float(inside), area)
        row, column = divmod(int(energy.argmax()), energy.shape[1])
        assert y0 <= row <= y1 and x0 <= column <= x1, (name, row, column)
