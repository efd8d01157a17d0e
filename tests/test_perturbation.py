"""Score-CAM, SS-CAM, IS-CAM and Ablation-CAM against plain per-channel loops of their formulas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import camkit
from camkit import cli
from tests.conftest import SmallCNN, shared_path

SCORE_METHODS = ("scorecam", "sscam", "iscam")
ALL_METHODS = (*SCORE_METHODS, "ablationcam")


class Duplicates(nn.Module):
    """A conv layer whose channels are: random, a scaled copy, all zero, constant, random x12.

    Channel 1 is 2 x channel 0 before the ReLU, so both normalise to the same mask; channel 2 is
    zero everywhere after the ReLU; channel 3 is the constant 0.5; the head is nonlinear in the
    input, so each mask changes the score differently.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        conv = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        with torch.no_grad():
            conv.weight[1] = 2 * conv.weight[0]
            conv.bias[1] = 2 * conv.bias[0]
            conv.weight[2] = 0
            conv.bias[2] = -1
            conv.weight[3] = 0
            conv.bias[3] = 0.5
        self.features = nn.Sequential(conv, nn.ReLU())
        self.mix = nn.Conv2d(16, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.tanh(self.mix(self.features(x)))
        return self.head(a.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def duplicates() -> Duplicates:
    return Duplicates().eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(2)
    return torch.randn(2, 3, 12, 12)


def _layer_output(model: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[-1]


def _variants(method: str, size: tuple[int, int]) -> list[tuple[float, torch.Tensor | float]]:
    """(scale, noise) pairs: the masked input is x * (scale * mask + noise), scores averaged."""
    if method == "scorecam":
        return [(1.0, 0.0)]
    if method == "iscam":  # the accumulated mask of IS-CAM's Algorithm 1, N = 10
        return [(sum(j / 10 for j in range(1, i + 1)), 0.0) for i in range(1, 11)]
    noise = torch.randn(10, 1, *size, generator=torch.Generator().manual_seed(0)) * 2.0
    return [(1.0, noise[i]) for i in range(10)]


def reference_score_cam(
    model: nn.Module, module: nn.Module, x: torch.Tensor, target: int, method: str
) -> torch.Tensor:
    """The formula, one channel and one forward at a time: (h, w) for one image (1, 3, H, W)."""
    activations = _layer_output(model, module, x)[0]
    size = x.shape[-2:]
    scores = []
    for channel in activations:
        mask = F.interpolate(channel[None, None], size=size, mode="bilinear", align_corners=False)
        span = mask.max() - mask.min()
        mask = (mask - mask.min()) / span if span > 0 else torch.zeros_like(mask)
        with torch.no_grad():
            values = [
                model(x * (scale * mask + noise))[0, target]
                for scale, noise in _variants(method, size)
            ]
        scores.append(torch.stack(values).mean())
    weights = torch.softmax(torch.stack(scores), dim=0)
    return torch.relu((weights[:, None, None] * activations).sum(dim=0))


def reference_ablation_cam(
    model: nn.Module, module: nn.Module, x: torch.Tensor, target: int
) -> torch.Tensor:
    """Ablation-CAM with w_k = (y - y_k) / |y|, one ablated forward per channel."""
    activations = _layer_output(model, module, x)
    with torch.no_grad():
        y = model(x)[0, target]
    weights = []
    for k in range(activations.shape[1]):
        ablated = activations.clone()
        ablated[:, k] = 0
        handle = module.register_forward_hook(lambda _m, _i, _o, a=ablated: a)
        with torch.no_grad():
            y_k = model(x)[0, target]
        handle.remove()
        weights.append((y - y_k) / y.abs())
    weights_tensor = torch.stack(weights)
    return torch.relu((weights_tensor[:, None, None] * activations[0]).sum(dim=0))


def _raw(explanation: camkit.Explanation, method: str) -> torch.Tensor:
    return explanation.raw[(explanation.layers[0], method)]


def _reference(method: str, model: nn.Module, module: nn.Module, x: torch.Tensor, target: int):
    if method == "ablationcam":
        return reference_ablation_cam(model, module, x, target)
    return reference_score_cam(model, module, x, target, method)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_matches_the_plain_loop_with_zero_constant_and_duplicate_channels(
    method: str, duplicates: Duplicates, images: torch.Tensor
) -> None:
    activations = _layer_output(duplicates, duplicates.features, images)
    # The fixture has what the deduplication must get right.
    assert torch.equal(activations[:, 2], torch.zeros_like(activations[:, 2]))
    assert torch.equal(activations[:, 3], torch.full_like(activations[:, 3], 0.5))
    assert torch.allclose(activations[:, 1], 2 * activations[:, 0])
    explanation = camkit.explain(
        duplicates, images, methods=method, layers="features", target=[2, 3], batch_size=4
    )
    raw = _raw(explanation, method)
    for image, target in enumerate([2, 3]):
        expected = _reference(
            method, duplicates, duplicates.features, images[image : image + 1], target
        )
        assert expected.abs().max() > 0
        torch.testing.assert_close(raw[image], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.filterwarnings("ignore::camkit.MapWarning")  # some second classes have no evidence
def test_batch_size_batching_and_top_k_do_not_change_the_maps(
    method: str, duplicates: Duplicates, images: torch.Tensor
) -> None:
    def run(x: torch.Tensor, **options: object) -> torch.Tensor:
        return _raw(
            camkit.explain(duplicates, x, methods=method, layers="features", **options), method
        )

    both = run(images, top_k=2, batch_size=3)
    assert both.shape == (2, 2, 6, 6)
    for batch_size in (5, 1000):
        torch.testing.assert_close(
            run(images, top_k=2, batch_size=batch_size), both, atol=1e-5, rtol=1e-5
        )
    explanation = camkit.explain(duplicates, images, methods="gradcam", top_k=2, layers="features")
    assert explanation.targets is not None
    for image in range(2):
        for rank in range(2):
            target = int(explanation.targets[image, rank])
            alone = run(images[image : image + 1], target=target)
            torch.testing.assert_close(alone[0], both[image, rank], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_a_callable_target_scores_each_masked_row(
    method: str, duplicates: Duplicates, images: torch.Tensor
) -> None:
    by_index = camkit.explain(duplicates, images, methods=method, layers="features", target=2)
    by_callable = camkit.explain(
        duplicates, images, methods=method, layers="features", target=lambda out: out[:, 2]
    )
    torch.testing.assert_close(_raw(by_callable, method), _raw(by_index, method))


class SignedHalves(nn.Module):
    """y = sum(A_0) - sum(A_1) - 10 with A = the input: channel 0 lives in the left half, 1 right.

    The target logit is negative; channel 0 raises it, so the map must show the left half.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(2, 2, 1, bias=False)  # the identity, as a conv layer
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(2)[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x)
        y = a[:, 0].sum(dim=(1, 2)) - a[:, 1].sum(dim=(1, 2)) - 10
        return torch.stack([y, -y], dim=1)


def test_ablation_keeps_the_sign_when_the_score_is_negative() -> None:
    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, :, :2] = torch.tensor([[1.0, 2.0], [1.0, 1.0], [2.0, 1.0], [1.0, 1.0]])
    x[0, 1, :, 2:] = 1.0
    model = SignedHalves()
    assert model(x)[0, 0] < 0
    raw = _raw(
        camkit.explain(model, x, methods="ablationcam", layers="features", target=0), "ablationcam"
    )
    # y = 10 - 8 - 10 = -8; w_0 = (y - (y - 10)) / 8 = 1.25; w_1 = (y - (y + 8)) / 8 = -1.
    expected = torch.relu(1.25 * x[0, 0] - 1.0 * x[0, 1])
    torch.testing.assert_close(raw[0], expected)
    assert raw[0, :, :2].min() > 0 and raw[0, :, 2:].max() == 0


class Flat(nn.Module):
    """A layer whose output is all zeros (``value`` 0) or constant, then a head with a bias."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.features = nn.Identity()
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(torch.zeros_like(x) + self.value + 0 * x)
        return self.head(a.mean(dim=(2, 3)) + x.mean(dim=(2, 3)))


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("value", [0.0, 3.0])
def test_no_nan_on_zero_or_constant_activations(method: str, value: float) -> None:
    torch.manual_seed(0)
    with pytest.warns(camkit.MapWarning):  # a zero or constant map: camkit says it is flat
        explanation = camkit.explain(
            Flat(value).eval(), torch.randn(2, 3, 8, 8), methods=method, layers="features"
        )
    layer_map = explanation.maps[("features", method)]
    assert torch.isfinite(layer_map).all()
    assert torch.equal(layer_map, torch.zeros_like(layer_map))  # a flat map normalises to zeros


def test_max_channels_is_score_cam_over_the_largest_channels(
    duplicates: Duplicates, images: torch.Tensor
) -> None:
    x = images[:1]
    activations = _layer_output(duplicates, duplicates.features, x)[0]
    keep = activations.sum(dim=(1, 2)).topk(2).indices
    full = _raw(
        camkit.explain(duplicates, x, methods="scorecam", layers="features", target=0), "scorecam"
    )
    same = camkit.explain(
        duplicates, x, methods="scorecam", layers="features", target=0, max_channels=16
    )
    torch.testing.assert_close(_raw(same, "scorecam"), full)
    approx = _raw(
        camkit.explain(
            duplicates, x, methods="scorecam", layers="features", target=0, max_channels=2
        ),
        "scorecam",
    )
    scores = []
    for channel in activations[keep]:
        mask = F.interpolate(
            channel[None, None], size=(12, 12), mode="bilinear", align_corners=False
        )
        span = mask.max() - mask.min()
        mask = (mask - mask.min()) / span if span > 0 else torch.zeros_like(mask)
        with torch.no_grad():
            scores.append(duplicates(x * mask)[0, 0])
    weights = torch.softmax(torch.stack(scores), dim=0)
    expected = torch.relu((weights[:, None, None] * activations[keep]).sum(dim=0))
    torch.testing.assert_close(approx[0], expected, atol=1e-5, rtol=1e-5)


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize("method", ALL_METHODS)
def test_model_unchanged_and_no_hooks_after_success_and_error(method: str) -> None:
    torch.manual_seed(0)
    model = SmallCNN().train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    x = torch.randn(2, 3, 16, 16)
    camkit.explain(model, x, methods=method, layers="block", batch_size=1000)
    with pytest.raises(ValueError, match="target"):
        # One score for the whole output: fine for the batch of 2, wrong for masked batches.
        camkit.explain(
            model,
            x,
            methods=method,
            layers="block",
            target=lambda out: out[:2, 0].sum() + out[:2, 1],
        )
    assert _hooks(model) == 0
    assert all(module.training for module in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_options_are_checked() -> None:
    model = SmallCNN().eval()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="batch_size"):
        camkit.explain(model, x, methods="scorecam", batch_size=0)
    with pytest.raises(TypeError, match="max_channels"):
        camkit.explain(model, x, methods="scorecam", max_channels=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress"):
        camkit.explain(model, x, methods="scorecam", progress="yes")  # type: ignore[arg-type]


def test_score_cam_finds_the_dog_and_the_cat(lite0: camkit.LoadedModel) -> None:
    image = shared_path("images", "both.png")
    boxes = json.loads(shared_path("images", "both.json").read_text())["boxes_xyxy"]
    # One call: the masked forwards give every explained class's score at once. The 64
    # channels of largest mass keep the test fast (exact Score-CAM takes minutes on 2 busy cores;
    # exactness is tested against the formula above).
    explanation = camkit.explain(
        lite0, str(image), methods="scorecam", top_k=5, batch_size=64, max_channels=64
    )
    assert explanation.labels is not None
    labels = explanation.labels[0]
    layer_map = explanation.maps[(explanation.layers[0], "scorecam")][0]
    for name in ("bull mastiff", "tiger cat"):
        heat = layer_map[labels.index(name)]
        row, column = divmod(int(heat.argmax()), heat.shape[1])
        x0, y0, x1, y1 = boxes[name]["box"]
        assert x0 <= column <= x1 and y0 <= row <= y1, (name, column, row)


class Concatenated(nn.Module):
    """The layer's output is concatenated with an earlier tensor, so copies cannot skip the stem."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.features = nn.Conv2d(4, 16, 3, padding=1)
        self.head = nn.Linear(20, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = torch.relu(self.stem(x))
        both = torch.cat([torch.relu(self.features(stem)), stem], dim=1)
        return self.head(both.mean(dim=(2, 3)))


def test_ablation_falls_back_when_the_network_mixes_batch_sizes(images: torch.Tensor) -> None:
    model = Concatenated().eval()
    raw = _raw(
        camkit.explain(model, images[:1], methods="ablationcam", layers="features", target=1),
        "ablationcam",
    )
    expected = reference_ablation_cam(model, model.features, images[:1], 1)
    assert expected.abs().max() > 0
    torch.testing.assert_close(raw[0], expected, atol=1e-5, rtol=1e-5)


def test_cli_passes_the_perturbation_options(
    lite0: camkit.LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(camkit, "load_model", lambda *_args, **_kwargs: lite0)
    sample = camkit.sample_image_path("chelsea")
    options = ["--max-channels", "4", "--batch-size", "4", "--no-progress", "--out", tmp_path]
    args = ["explain", sample, "--method", "scorecam", *options]
    result = CliRunner().invoke(cli.main, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "chelsea-camkit.png").is_file()
    assert result.stderr == ""
    bad = CliRunner().invoke(cli.main, ["explain", str(sample), "--batch-size", "0"])
    assert bad.exit_code == 2 and "--batch-size" in bad.output


@pytest.mark.parametrize(("setting", "shown"), [(None, False), (False, False), (True, True)])
def test_progress_bar_only_when_slow_and_wanted(
    setting: bool | None, shown: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    from camkit.perturbation import Progress

    progress = Progress(setting, total=4, description="scorecam layer4")
    progress.start -= 10.0  # as if the first forward took 10 s: the estimate is over a second
    progress.step()
    progress.step()
    progress.close()
    assert (progress.bar is not None) == shown  # pytest's stderr is not a terminal
    assert ("scorecam layer4" in capsys.readouterr().err) == shown
