"""Soak test: thousands of ``explain`` calls in one process; memory must not grow.

Runs 10,000 calls on a small CNN (32x32 inputs) and 500 on ResNet-50 (random weights, 224x224),
cycling through gradient, activation, perturbation, guided and smoothed methods, several targets
(top class, a class index, top-k, a custom score), tensor and PIL inputs, a figure rendered now
and then, and calls that fail (an exception in the model's forward, an unknown layer). After a
warm-up of every kind of call it reads the resident memory (RSS), then again at checkpoints and
at the end, each time after ``gc.collect()`` and glibc's ``malloc_trim`` (each checkpoint also
prints the untrimmed figure). The goal: RSS growth under 20 MB. On CUDA it also checks, after
every call, that the allocated GPU memory is back to its value before the call.

    python benchmarks/soak.py            # 10,000 small-CNN calls + 500 ResNet-50 calls
    python benchmarks/soak.py --quick    # 1,000 + 50
    python benchmarks/soak.py --device cuda

Exit code 1 when a goal is missed or a hook is left on a model.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import itertools
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

import camkit
from camkit.overlay import figure_to_png_bytes

GOAL_MB = 20.0
#: A figure is drawn (matplotlib, PNG bytes) every this many small-CNN calls.
FIGURE_EVERY = 50


class SmallCNN(nn.Module):
    """Two conv stages with in-place ReLUs, pooling, a linear head; optionally failing."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(True))
        self.block = nn.Sequential(
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(True)
        )
        self.head = nn.Linear(32, classes)
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.block(self.stem(x))
        if self.fail:
            raise RuntimeError("forward failed on purpose")
        return self.head(features.mean(dim=(2, 3)))


def trim() -> None:
    """Collect garbage and hand glibc's free heap back to the system.

    Without it RSS also counts memory the allocator keeps for reuse after ResNet-50's large
    buffers are freed, which swings by +-25 MB from one reading to the next and hides the trend.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss_mb() -> float:
    """The process's resident memory now, in MB (``/proc``; peak RSS where there is none)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def _custom_score(output: torch.Tensor) -> torch.Tensor:
    return output[:, 1] - output[:, 0]


def small_cnn_calls(model: SmallCNN) -> tuple[list[Callable[[], object]], Callable[[], object]]:
    """One of each kind of call, which the soak cycles through, and a call drawing a figure."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=generator)
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), np.uint8))
    loaded = camkit.LoadedModel(
        model, camkit.Preprocessing(32, 32), [f"class {i}" for i in range(10)], "small"
    )

    def failing_forward() -> object:
        model.fail = True
        try:
            return camkit.explain(model, x, layers="block")
        except RuntimeError:
            return None
        finally:
            model.fail = False

    def unknown_layer() -> object:
        try:
            return camkit.explain(model, x, layers="blok")
        except ValueError:
            return None

    def with_figure() -> object:
        explanation = camkit.explain(loaded, picture, methods=["gradcam", "layercam"])
        return figure_to_png_bytes(explanation.figure(index=0))

    return [
        lambda: camkit.explain(model, x),
        lambda: camkit.explain(model, x, methods=["gradcam++", "xgradcam"], layers="stem"),
        lambda: camkit.explain(model, x, methods=["eigencam", "layercam"], top_k=3),
        lambda: camkit.explain(model, x, methods="hirescam", target=[3, 7]),
        lambda: camkit.explain(model, x, target=_custom_score, layers=("stem", "block")),
        lambda: camkit.explain(model, x, methods="scorecam", max_channels=4),
        lambda: camkit.explain(model, x, methods="guided-gradcam", layers="block"),
        lambda: camkit.explain(model, x, methods="gradcam", smooth="noise", smooth_samples=2),
        lambda: camkit.explain(loaded, [picture, picture], methods="gradcam", target="class 2"),
        failing_forward,
        unknown_layer,
        lambda: camkit.list_layers(model, input_size=(32, 32)),
    ], with_figure


def resnet_calls(model: nn.Module, device: torch.device) -> list[Callable[[], object]]:
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(device)
    return [
        lambda: camkit.explain(model, x),
        lambda: camkit.explain(model, x, methods=["gradcam", "gradcam++", "layercam"]),
        lambda: camkit.explain(model, x, methods=["hirescam", "eigencam"], top_k=3),
        lambda: camkit.explain(model, x, layers=("layer3", "layer4"), target=281),
        lambda: camkit.explain(model, x, methods="scorecam", max_channels=4),
    ]


def soak(
    name: str,
    calls: list[Callable[[], object]],
    count: int,
    checkpoints: int,
    device: torch.device,
    occasional: Callable[[], object] | None = None,
) -> tuple[int, float]:
    """Run ``count`` calls cycling through ``calls``; return CUDA leaks seen and seconds.

    Every ``FIGURE_EVERY``-th call is ``occasional`` instead, when given.
    """
    cuda_leaks = 0
    start = time.perf_counter()
    every = max(1, count // checkpoints)
    for i, call in zip(range(1, count + 1), itertools.cycle(calls), strict=False):
        before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        result = occasional() if occasional is not None and i % FIGURE_EVERY == 0 else call()
        del result
        if device.type == "cuda" and torch.cuda.memory_allocated(device) != before:
            cuda_leaks += 1
        if i % every == 0 or i == count:
            elapsed = time.perf_counter() - start
            raw = rss_mb()
            trim()
            print(
                f"  {name}: {i:>6} calls  RSS {raw:7.1f} MB, {rss_mb():7.1f} MB trimmed  "
                f"{elapsed:7.1f} s",
                flush=True,
            )
    return cuda_leaks, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 + 50 calls")
    parser.add_argument("--small", type=int, default=None, help="small-CNN calls")
    parser.add_argument("--resnet", type=int, default=None, help="ResNet-50 calls")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    small_count = args.small if args.small is not None else (1000 if args.quick else 10_000)
    resnet_count = args.resnet if args.resnet is not None else (50 if args.quick else 500)
    device = torch.device(args.device)

    torch.manual_seed(0)
    small = SmallCNN().eval().to(device)
    resnet = torchvision.models.resnet50(weights=None).eval().to(device)
    small_kinds, figure = small_cnn_calls(small)
    if device.type != "cpu":  # the PIL and list_layers calls are CPU-side; keep the tensor ones
        x = torch.randn(2, 3, 32, 32, device=device)
        small_kinds = [
            lambda: camkit.explain(small, x),
            lambda: camkit.explain(small, x, methods=["eigencam", "layercam"], top_k=3),
            lambda: camkit.explain(small, x, methods="scorecam", max_channels=4),
            lambda: camkit.explain(small, x, methods="guided-gradcam", layers="block"),
            lambda: camkit.explain(small, x, smooth="noise", smooth_samples=2),
        ]
    resnet_kinds = resnet_calls(resnet, device)

    print(
        f"soak: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, device {device}"
    )
    # Warm-up: every kind of call a few times, so caches, allocators and lazy imports settle.
    for call in small_kinds * 15 + [figure] * 3 + resnet_kinds * 3:
        call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    raw_after_warmup = rss_mb()
    trim()
    after_warmup = rss_mb()
    print(f"RSS after warm-up: {raw_after_warmup:.1f} MB, {after_warmup:.1f} MB trimmed")

    small_leaks, small_seconds = soak("small CNN", small_kinds, small_count, 10, device, figure)
    resnet_leaks, resnet_seconds = soak("ResNet-50", resnet_kinds, resnet_count, 5, device)
    raw_at_end = rss_mb()
    trim()
    at_end = rss_mb()
    growth = at_end - after_warmup
    left = hooks(small) + hooks(resnet)
    print(f"RSS at the end:    {raw_at_end:.1f} MB, {at_end:.1f} MB trimmed")
    print(
        f"RSS growth (trimmed): {growth:+.1f} MB over {small_count:,} small-CNN calls "
        f"({1000 * small_seconds / max(small_count, 1):.1f} ms each) and {resnet_count:,} "
        f"ResNet-50 calls ({1000 * resnet_seconds / max(resnet_count, 1):.0f} ms each); "
        f"goal < {GOAL_MB:.0f} MB: {'met' if growth < GOAL_MB else 'MISSED'}"
    )
    print(f"hooks left on the models: {left}")
    ok = growth < GOAL_MB and left == 0
    if device.type == "cuda":
        leaks = small_leaks + resnet_leaks
        print(f"calls after which CUDA allocated memory differed from before: {leaks}")
        ok = ok and leaks == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
