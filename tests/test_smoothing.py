"""Noise and augmentation smoothing, and Smooth Grad-CAM++, against direct computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from torch import nn

import camkit
from camkit import smoothing as _smoothing
from camkit.cli import main
from tests.conftest import shared_path

METHODS = ["gradcam", "gradcam++", "layercam"]


def _input(batch: int = 2, side: int = 20, seed: int = 5) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(batch, 3, side, side)


def _noise(x: torch.Tensor, samples: int, sigma: float, seed: int) -> torch.Tensor:
    """The documented recipe: the same (samples, C, H, W) draws for every image, times its range."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randn((samples, *x.shape[1:]), generator=generator)
    spread = sigma * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))
    return draws[:, None] * spread[None, :, None, None, None]


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    low = maps.amin(dim=(-2, -1), keepdim=True)
    high = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - low) / (high - low)


def _up(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(raw[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def test_noise_is_the_mean_of_one_noisy_input_at_a_time(small_cnn: nn.Module) -> None:
    x = _input()
    exp = camkit.explain(
        small_cnn, x, METHODS, layers="block", smooth="noise", smooth_samples=5, smooth_sigma=0.2
    )
    clean = camkit.explain(small_cnn, x, METHODS, layers="block")
    torch.testing.assert_close(exp.logits, clean.logits)
    assert torch.equal(exp.targets, clean.targets)
    noise = _noise(x, 5, 0.2, 0)
    for method in METHODS:
        total = torch.zeros(2, 20, 20)
        for s in range(5):
            for i in range(2):  # one noisy input at a time, for the clean image's class
                one = camkit.explain(
                    small_cnn,
                    x[i : i + 1] + noise[s, i : i + 1],
                    method,
                    layers="block",
                    target=int(clean.targets[i, 0]),
                )
                total[i] += _up(one.raw[("block", method)], (20, 20))[0]
        mean = total / 5
        torch.testing.assert_close(exp.raw[("block", method)], mean, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(exp[method], _minmax(mean), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(exp[method], clean[method], atol=1e-3)  # the noise mattered


def test_noise_is_deterministic_and_seeded(small_cnn: nn.Module) -> None:
    x = _input(1)
    first = camkit.explain(small_cnn, x, "gradcam", layers="block", smooth="noise")
    again = camkit.explain(small_cnn, x, "gradcam", layers="block", smooth="noise")
    other = camkit.explain(small_cnn, x, "gradcam", layers="block", smooth="noise", seed=1)
    assert torch.equal(first["gradcam"], again["gradcam"])
    assert not torch.allclose(first["gradcam"], other["gradcam"], atol=1e-3)


def test_zero_noise_is_the_plain_map(small_cnn: nn.Module) -> None:
    """sigma 0 (and a constant image, whose range is 0) give copies equal to the clean input."""
    x = _input()
    plain = camkit.explain(small_cnn, x, METHODS, layers="block")
    flat = torch.full((1, 3, 20, 20), 0.3)
    for inputs, kwargs in ((x, {"smooth_sigma": 0.0}), (flat, {})):
        exp = camkit.explain(
            small_cnn, inputs, METHODS, layers="block", smooth="noise", smooth_samples=3, **kwargs
        )
        reference = plain if inputs is x else camkit.explain(small_cnn, flat, METHODS, "block")
        for method in METHODS:
            assert torch.isfinite(exp[method]).all()
            torch.testing.assert_close(exp[method], reference[method], rtol=1e-4, atol=1e-5)


def test_batch_and_top_k_equal_one_by_one(small_cnn: nn.Module) -> None:
    x = _input()
    methods = ["gradcam", "guided-backprop"]
    exp = camkit.explain(
        small_cnn, x, methods, layers="block", smooth="noise", smooth_samples=3, top_k=2
    )
    assert exp["gradcam"].shape == (2, 2, 20, 20)
    for i in range(2):
        for rank in range(2):
            one = camkit.explain(
                small_cnn,
                x[i : i + 1],
                methods,
                layers="block",
                smooth="noise",
                smooth_samples=3,
                target=int(exp.targets[i, rank]),
            )
            torch.testing.assert_close(exp["gradcam"][i, rank], one["gradcam"][0])
            torch.testing.assert_close(
                exp.guided[("block", "guided-backprop")][i, rank],
                one.guided[("block", "guided-backprop")][0],
            )


class SymmetricCNN(nn.Module):
    """Convolutions with left-right symmetric kernels and global pooling: flip-equivariant maps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.features = nn.Conv2d(6, 8, 3, padding=1)
        with torch.no_grad():
            for conv in (self.conv, self.features):
                conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.features(torch.relu(self.conv(x))))
        return self.head(a.mean(dim=(2, 3)))


def test_augment_flip_of_an_equivariant_model_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_smoothing, "AUGMENT_SCALES", (1.0,))
    model = SymmetricCNN().eval()
    x = _input(2, 12)
    plain = camkit.explain(model, x, METHODS, layers="features")
    exp = camkit.explain(model, x, METHODS, layers="features", smooth="augment")
    for method in METHODS:
        torch.testing.assert_close(exp[method], plain[method], rtol=1e-4, atol=1e-5)
    # An asymmetric image: the flipped copy's map, flipped back, is the same map.
    assert not torch.allclose(plain["gradcam"], plain["gradcam"].flip(-1), atol=1e-3)


class PooledLinear(nn.Module):
    """y = W mean_ij(A), A the input itself: Grad-CAM is ReLU(sum_k W_tk A_k) / (h w)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.head = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, -0.5, 0.25], [-1.0, 2.0, 0.5]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def test_augment_by_hand() -> None:
    """Six views (3 scales x flip), each map resized back and un-flipped, averaged, normalised."""
    model = PooledLinear().eval()
    x = _input(1, 16, seed=9)
    exp = camkit.explain(model, x, "gradcam", layers="features", target=1, smooth="augment")
    weight = model.head.weight[1]
    total = torch.zeros(1, 16, 16)
    for scale in (1.0, 0.875, 1.125):
        side = round(16 * scale)
        scaled = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        for flip in (False, True):
            view = scaled.flip(-1) if flip else scaled
            cam = torch.relu(torch.einsum("k,nkhw->nhw", weight, view)) / (side * side)
            back = _up(cam, (16, 16))
            total += back.flip(-1) if flip else back
    mean = total / 6
    torch.testing.assert_close(exp.raw[("features", "gradcam")], mean, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(exp["gradcam"], _minmax(mean), rtol=1e-4, atol=1e-5)
    assert int(exp.targets[0, 0]) == 1


def test_smoothgradcam_plus_plus_formula(small_cnn: nn.Module) -> None:
    x = _input()
    exp = camkit.explain(
        small_cnn, x, "smoothgradcam++", layers="block", smooth_samples=4, smooth_sigma=0.1, seed=3
    )
    targets = exp.targets[:, 0]
    noise = _noise(x, 4, 0.1, 3)

    def features(inputs: torch.Tensor) -> torch.Tensor:
        return small_cnn.block(small_cnn.stem(inputs))

    def head(a: torch.Tensor) -> torch.Tensor:
        return small_cnn.fc(torch.flatten(small_cnn.pool(a), 1))

    moments = [torch.zeros(2, 16, 10, 10) for _ in range(3)]
    with torch.enable_grad():
        for s in range(4):
            a = features(x + noise[s]).detach().requires_grad_(True)
            score = head(a).gather(1, targets[:, None]).sum()
            (g,) = torch.autograd.grad(score, a)
            for power in range(3):
                moments[power] += g ** (power + 1) / 4
    d1, d2, d3 = moments
    with torch.no_grad():
        a = features(x)
    denominator = 2 * d2 + a.sum(dim=(2, 3), keepdim=True) * d3
    alpha = torch.where(denominator != 0, d2 / denominator, 0.0)
    weights = (alpha * torch.relu(d1)).sum(dim=(2, 3))
    raw = torch.relu(torch.einsum("nc,nchw->nhw", weights, a))
    assert raw.amax() > 0
    torch.testing.assert_close(exp.raw[("block", "smoothgradcam++")], raw, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        exp["smoothgradcam++"], _minmax(_up(raw, (20, 20))), atol=1e-5, rtol=1e-4
    )
    # With one sample and no noise it is Grad-CAM++ itself.
    one = camkit.explain(
        small_cnn, x, ["smoothgradcam++", "gradcam++"], "block", smooth_samples=1, smooth_sigma=0
    )
    torch.testing.assert_close(one["smoothgradcam++"], one["gradcam++"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"smooth": "blur"}, ValueError, "`smooth` 'blur' is unknown"),
        ({"smooth": 3}, TypeError, "`smooth` must be"),
        ({"smooth": "noise", "smooth_samples": 0}, ValueError, "at least 1"),
        ({"smooth": "noise", "smooth_samples": 2.5}, TypeError, "`smooth_samples` must be an int"),
        ({"smooth": "noise", "smooth_sigma": -0.1}, ValueError, "`smooth_sigma` must be"),
        ({"smooth_samples": 4}, ValueError, "only applies to smooth='noise'"),
        ({"smooth": "augment", "smooth_sigma": 0.1}, ValueError, "only applies"),
        ({"smooth": "noise", "seed": "x"}, TypeError, "`seed` must be an int"),
    ],
)
def test_argument_errors(small_cnn: nn.Module, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        camkit.explain(small_cnn, _input(1), "gradcam", layers="block", **kwargs)


def test_augment_with_smoothgradcam_plus_plus_is_an_error(small_cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match="smoothgradcam\\+\\+ averages over noisy copies"):
        camkit.explain(small_cnn, _input(1), "smoothgradcam++", "block", smooth="augment")


def test_model_unchanged_and_no_hooks_after_success_and_error(small_cnn: nn.Module) -> None:
    small_cnn.train()
    state = {k: v.clone() for k, v in small_cnn.state_dict().items()}

    def check() -> None:
        assert all(m.training for m in small_cnn.modules())
        for key, value in state.items():
            assert torch.equal(small_cnn.state_dict()[key], value)
        for module in small_cnn.modules():
            assert not module._forward_hooks and not module._forward_pre_hooks
        assert all(p.grad is None and p.requires_grad for p in small_cnn.parameters())

    x = _input(1)
    camkit.explain(small_cnn, x, ["gradcam", "smoothgradcam++"], "block", smooth="noise")
    check()
    calls = []

    def target(output: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:  # inside the noisy pass
            raise ValueError("boom")
        return output[:, 0]

    with pytest.raises(ValueError, match="boom"):
        camkit.explain(small_cnn, x, ["gradcam", "smoothgradcam++"], "block", target=target)
    check()


def test_lite0_smoothed_maps_find_the_dog(lite0: camkit.LoadedModel) -> None:
    image = shared_path("images", "both.png")
    box = json.loads(shared_path("images", "both.json").read_text())["boxes_xyxy"]["bull mastiff"]
    pixels = torch.from_numpy(np.asarray(Image.open(image).convert("RGB"), dtype=np.float32))
    picture = lite0.preprocessing.normalize(pixels.permute(2, 0, 1)[None] / 255.0)
    x0, y0, x1, y1 = box["box"]
    for kwargs in ({"smooth": "noise", "smooth_samples": 3}, {"smooth": "augment"}):
        exp = camkit.explain(lite0, picture, "gradcam", target=box["class_index"], **kwargs)
        heat = exp["gradcam"][0]
        assert torch.isfinite(heat).all()
        row, column = divmod(int(heat.argmax()), heat.shape[1])
        assert y0 <= row <= y1 and x0 <= column <= x1, (kwargs, row, column)


def test_cli_smoothing_and_guided_pictures(tmp_path) -> None:
    image = shared_path("images", "both.png")
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "explain",
            str(image),
            "--method",
            "guided-gradcam",
            "--smooth",
            "augment",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "both-camkit.png").is_file()
    assert "guided-gradcam" in result.output
    for args, message in (
        (["--smooth", "blur"], "error: --smooth 'blur' is unknown"),
        (["--smooth-samples", "3"], "error: --smooth-samples only applies to --smooth noise"),
        (["--smooth", "noise", "--smooth-sigma", "-1"], "error: --smooth-sigma must be"),
        (["--method", "smoothgradcam++", "--smooth", "augment"], "error: smoothgradcam++"),
    ):
        result = runner.invoke(main, ["explain", str(image), "--out", str(tmp_path), *args])
        assert result.exit_code == 2
        assert result.output.startswith(message), result.output
        assert result.output.count("\n") == 1
