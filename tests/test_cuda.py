"""On a CUDA device, every method and metric gives the CPU's values (skipped without a GPU).

CI has no GPU; these run where one is lent (see README, "GPU"). Convolutions on CUDA may use
TF32, so values are compared with tolerances, not bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torchvision import models

import camkit
from camkit import cli, metrics

from .conftest import shared_path

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double().cpu(), b.flatten().double().cpu()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.resnet18(weights=None).eval()


def test_every_method_matches_the_cpu(resnet: torch.nn.Module) -> None:
    x = torch.rand(2, 3, 96, 96)
    names = camkit.list_methods()
    options = {"max_channels": 16, "target": [1, 2], "progress": False}
    on_cpu = camkit.explain(resnet, x, methods=names, layers="layer4", **options)
    gpu_model = resnet.cuda()
    try:
        on_gpu = camkit.explain(gpu_model, x.cuda(), methods=names, layers="layer4", **options)
        for name in names:
            got = on_gpu[name]
            assert got.device.type == "cpu", name  # maps always come back on the CPU
            assert pearson(got, on_cpu[name]) > 0.98, name
        assert next(gpu_model.parameters()).device.type == "cuda"  # the model stays put
    finally:
        resnet.cpu()


def test_amp_maps_stay_close_to_float32(resnet: torch.nn.Module) -> None:
    x = torch.rand(2, 3, 128, 128, device="cuda")
    model = resnet.cuda()
    try:
        exact = camkit.explain(model, x, methods="gradcam", layers="layer4", target=[3, 4])
        for amp in (True, "fp16"):
            rounded = camkit.explain(
                model, x, methods="gradcam", layers="layer4", target=[3, 4], amp=amp
            )
            assert rounded["gradcam"].dtype == torch.float32
            assert (rounded["gradcam"] - exact["gradcam"]).abs().max() < 0.05, amp
    finally:
        resnet.cpu()


def test_metrics_on_cuda_match_the_cpu(resnet: torch.nn.Module) -> None:
    torch.manual_seed(1)
    images = torch.rand(2, 3, 64, 64)
    maps = torch.rand(2, 64, 64)
    targets = [5, 6]
    prep = camkit.Preprocessing()
    results = {}
    for device in ("cpu", "cuda"):
        model = resnet.to(device)
        results[device] = (
            metrics.average_drop(model, images, maps, targets, preprocessing=prep).masked,
            metrics.deletion(model, images, maps, targets, preprocessing=prep).auc,
            metrics.insertion(model, images, maps, targets, preprocessing=prep).auc,
            metrics.road(
                model, images, maps, targets, percentages=(20, 80), preprocessing=prep
            ).morf,
        )
    resnet.cpu()
    for cpu_value, gpu_value in zip(results["cpu"], results["cuda"], strict=True):
        assert gpu_value.device.type == "cpu"  # results always come back on the CPU
        torch.testing.assert_close(gpu_value, cpu_value, atol=2e-3, rtol=2e-2)


def test_evaluate_command_on_cuda(tmp_path: Path) -> None:
    sample = shared_path("imagenet-sample")
    out = tmp_path / "scores"
    result = CliRunner().invoke(
        cli.main,
        [
            "evaluate", str(sample), "--limit", "2", "--method", "gradcam", "--method",
            "scorecam", "--max-channels", "8", "--device", "cuda", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = (out / "summary.md").read_text()
    assert "| gradcam | _swish | 2 |" in summary
    assert "scorecam (max_channels=8)" in summary
