"""The benchmark scripts' harness: each library gets the same model, layer and targets.

A tiny model whose target layer is followed by more convolutions (so the gradients vary over the
positions and the methods differ) is explained by camkit and by each installed peer through the
runners of benchmarks/compare_libraries.py; where a peer's method has camkit's definition, the
maps must agree. A peer that is not installed skips its case.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def scripts() -> tuple[object, object]:
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import each other by their file names
    try:
        return importlib.import_module("compare_libraries"), importlib.import_module("tutorial_job")
    finally:
        sys.path.remove(str(BENCHMARKS))


class Tiny(nn.Module):
    """features.1 is explained; features.2-3 and the classifier come after it."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(6, 8, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor, list[int]]:
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        second_best = model(x).argsort(dim=1, descending=True)[:, 1].tolist()
    return model, x, second_best  # not the top class: the runners must pass the target on


def test_normalised_maps_by_hand(scripts) -> None:
    compare, _ = scripts
    cams = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[5.0, 5.0], [5.0, 5.0]]])
    maps = compare.normalised_maps(cams, (2, 2))
    assert torch.allclose(maps[0], torch.tensor([[0.0, 1 / 3], [2 / 3, 1.0]]))
    assert torch.equal(maps[1], torch.zeros(2, 2))  # a constant map becomes zeros, as in camkit


SAME_DEFINITION = [
    ("pytorch_grad_cam", "grad_cam_runner", method)
    for method in ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam")
] + [("torchcam", "torch_cam_runner", method) for method in ("gradcam", "xgradcam", "layercam")]


@pytest.mark.parametrize(("package", "runner", "method"), SAME_DEFINITION)
def test_peer_maps_agree_with_camkit(scripts, tiny, package, runner, method) -> None:
    pytest.importorskip(package)
    compare, _ = scripts
    model, x, targets = tiny
    ours = compare.camkit_runner(model, x, "features.1", targets, method)()
    theirs = getattr(compare, runner)(model, x, "features.1", targets, method)()
    assert ours.shape == theirs.shape == (2, 16, 16)
    for image in range(2):
        a, b = ours[image], compare.normalised_maps(theirs, (16, 16))[image]
        assert a.std() > 0.05  # a real map, not a constant that would agree with anything
        assert compare.pearson(a, b) > 0.99


def test_captum_and_pytorch_gradcam_agree_with_camkit(scripts, tiny) -> None:
    pytest.importorskip("captum")
    pytest.importorskip("gradcam")
    compare, _ = scripts
    model, x, targets = tiny
    ours = compare.camkit_runner(model, x, "features.1", targets, "gradcam")()
    for theirs in (
        compare.captum_runner(model, x, "features.1", targets, find_top=False)(),
        compare.pytorch_gradcam_runner(model, x, "features.1", targets, "gradcam")(),
    ):
        for image in range(2):
            assert compare.pearson(ours[image], theirs[image]) > 0.99
    with torch.no_grad():
        top = model(x).argmax(dim=1).tolist()
    ours_top = compare.camkit_runner(model, x, "features.1", top, "gradcam")()
    theirs_top = compare.captum_runner(model, x, "features.1", targets, find_top=True)()
    for image in range(2):
        assert compare.pearson(ours_top[image], theirs_top[image]) > 0.99
        assert compare.pearson(ours_top[image], ours[image]) < 0.99  # the target mattered


def test_peak_rss_growth_sees_an_allocation() -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs")
    # In a fresh interpreter, as the benchmark measures: in this one, memory freed by earlier
    # tests may still be resident and serve the allocation without any growth.
    code = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); import compare_libraries as c; "
        "print(c.peak_rss_growth(lambda: torch.ones(16 * 2**20).sum()))"  # 64 MiB, then freed
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(BENCHMARKS)], capture_output=True, text=True, check=True
    )
    growth = float(result.stdout.strip().splitlines()[-1])
    assert 60 < growth < 200


@pytest.mark.filterwarnings("ignore")  # pytorch-gradcam 0.2.1's F.upsample and backward hooks
def test_tutorial_job_sides_agree_on_gradcam(scripts) -> None:
    pytest.importorskip("gradcam")
    _, job = scripts
    torch.manual_seed(0)
    model = Tiny().eval()
    picture = torch.rand(3, 16, 16)
    normed = (picture[None] - 0.5) / 0.25
    layers = ("features_3", "features_1")  # pytorch-gradcam's "alexnet" names: features[i]
    theirs = job.tutorial_side(model, "alexnet", layers)(picture, normed)
    ours = job.camkit_side(model, layers)(picture, normed)
    assert set(theirs) == set(ours) == {(n, m) for n in layers for m in job.METHODS}
    for layer in layers:
        assert ours[(layer, "gradcam")].std() > 0.05
        assert job.pearson(theirs[(layer, "gradcam")], ours[(layer, "gradcam")]) > 0.99


def test_bench_layout_measures_both_layouts_and_prints_the_rule(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        bench_layout = importlib.import_module("bench_layout")
    finally:
        sys.path.remove(str(BENCHMARKS))
    threads = torch.get_num_threads()
    argv = ["bench_layout", "--models", "squeezenet1_1", "--batches", "1", "2", "--repeats", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        bench_layout.main()
    finally:
        torch.set_num_threads(threads)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| squeeze")]
    assert len(rows) == 2
    for row, picked in zip(rows, ["NCHW", "channels-last"], strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        nchw, last, ratio = float(cells[2]), float(cells[3]), float(cells[4])
        assert nchw > 0 and last > 0
        assert ratio == pytest.approx(last / nchw, rel=0.03, abs=0.006)  # times are printed rounded
        assert cells[5] == picked
