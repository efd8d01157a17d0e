"""The tutorial's whole job, end to end: camkit against its package, pytorch-gradcam 0.2.1.

The tutorial explains one picture (water-bird.JPEG) with Grad-CAM and Grad-CAM++ on five
torchvision models and draws each heatmap over the picture. Here each model is explained at the
tutorial's layer ("deep") and at an earlier one ("shallow"), so the job is 5 models x 2 methods x
2 layers = 20 maps and 20 overlay pictures, on random weights (``weights=None``: nothing is
downloaded; the speed does not depend on the weights).

What one run of the job includes, for both sides: reading and decoding the JPEG, the tutorial's
preprocessing (``Resize((224, 224))``, ``ToTensor``, ``Normalize``), then per model:

* pytorch-gradcam 0.2.1, written as the tutorial writes it: four objects per model (GradCAM and
  GradCAMpp at each layer), built once beforehand as the tutorial does (not timed), all hooked on
  the same model; per map one ``mask, _ = cam(normed_img)`` (a forward and a full backward) and
  one ``heatmap, result = visualize_cam(mask, img)``.
* camkit, written as its README writes it: one ``camkit.explain(model, normed_img,
  methods=("gradcam", "gradcam++"), layers=(deep, shallow))`` per model (one forward, one
  gradient to both layers), then ``camkit.overlay(img, map)`` for each of the four maps.

Not included on either side: building the models and the tutorial's final ``make_grid``. The
top class is found by each side's own forward pass. The two sides run on separate copies of each
model with the same weights, because pytorch-gradcam's hooks can never be removed; the sides
alternate within each repeat so that machine noise hits both alike. ``r`` is the Pearson
correlation of each pytorch-gradcam mask with camkit's map (both already upsampled to 224x224
and min-max normalised).

    .venv/bin/python benchmarks/tutorial_job.py            # 5 repeats after 1 warm-up
    .venv/bin/python benchmarks/tutorial_job.py --quick    # AlexNet and SqueezeNet, 2 repeats
    .venv/bin/python benchmarks/tutorial_job.py --threads 1 --clock cpu  # on a shared machine
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from bench_perturbation import pearson
from compare_libraries import limit_threads
from PIL import Image
from torch import nn
from torchvision import transforms

import camkit

IMAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "water-bird.JPEG"
#: (torchvision builder, pytorch-gradcam model_type, the tutorial's layer, an earlier layer).
MODELS = (
    ("alexnet", "alexnet", "features_11", "features_4"),
    ("vgg16", "vgg", "features_29", "features_15"),
    ("resnet101", "resnet", "layer4", "layer2"),
    ("densenet161", "densenet", "features_norm5", "features_denseblock2"),
    ("squeezenet1_1", "squeezenet", "features_12_expand3x3_activation", "features_7"),
)
METHODS = ("gradcam", "gradcam++")
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

Maps = dict[tuple[str, str], torch.Tensor]


def preprocess(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The tutorial's preprocessing: the [0, 1] picture (3, 224, 224) and the normalised batch."""
    picture = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor()])(
        Image.open(path)
    )
    return picture, transforms.Normalize(MEAN, STD)(picture)[None]


def tutorial_side(
    model: nn.Module, model_type: str, layers: tuple[str, str]
) -> Callable[[torch.Tensor, torch.Tensor], Maps]:
    """pytorch-gradcam 0.2.1 as the tutorial uses it; the objects are built here, once."""
    from gradcam import GradCAM, GradCAMpp

    kinds = {"gradcam": GradCAM, "gradcam++": GradCAMpp}
    cams = {
        (layer, method): kinds[method].from_config(
            arch=model, model_type=model_type, layer_name=layer
        )
        for layer in layers
        for method in METHODS
    }

    def run(picture: torch.Tensor, normed: torch.Tensor) -> Maps:
        from gradcam.utils import visualize_cam

        maps = {}
        for key, cam in cams.items():
            mask, _ = cam(normed)
            visualize_cam(mask, picture)  # the heatmap and the blended picture
            maps[key] = mask[0, 0]
        return maps

    return run


def camkit_side(
    model: nn.Module, layers: tuple[str, str]
) -> Callable[[torch.Tensor, torch.Tensor], Maps]:
    """camkit: one call for both methods and both layers, then one overlay per map."""

    def run(picture: torch.Tensor, normed: torch.Tensor) -> Maps:
        explanation = camkit.explain(model, normed, methods=METHODS, layers=layers)
        maps = {}
        for resolved, spec in zip(explanation.layers, layers, strict=True):
            for method in METHODS:
                heatmap = explanation.maps[(resolved, method)][0]
                camkit.overlay(picture, heatmap)
                maps[(spec, method)] = heatmap
        return maps

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="AlexNet and SqueezeNet, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [all cores]")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or the process's CPU time (all threads; for a shared machine)",
    )
    args = parser.parse_args()
    if args.threads:
        limit_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    repeats = args.repeats or (2 if args.quick else 5)
    chosen = [m for m in MODELS if not args.quick or m[0] in ("alexnet", "squeezenet1_1")]
    warnings.simplefilter("ignore")  # pytorch-gradcam's deprecated F.upsample and backward hooks
    sides: dict[str, list[Callable[[torch.Tensor, torch.Tensor], Maps]]] = {
        "pytorch-gradcam": [],
        "camkit": [],
    }
    for builder, model_type, deep, shallow in chosen:
        torch.manual_seed(0)
        model = getattr(torchvision.models, builder)(weights=None).eval()
        sides["pytorch-gradcam"].append(tutorial_side(model, model_type, (deep, shallow)))
        sides["camkit"].append(camkit_side(copy.deepcopy(model), (deep, shallow)))

    def job(side: str) -> tuple[list[float], list[Maps]]:
        """One run of the job: seconds of preprocessing, then of each model; the maps."""
        start = clock()
        picture, normed = preprocess(IMAGE)
        seconds = [clock() - start]
        maps = []
        for run in sides[side]:
            start = clock()
            maps.append(run(picture, normed))
            seconds.append(clock() - start)
        return seconds, maps

    times: dict[str, list[list[float]]] = {side: [] for side in sides}
    maps: dict[str, list[Maps]] = {}
    for repeat in range(repeats + 1):  # the first run warms up and is not counted
        order = list(sides) if repeat % 2 == 0 else list(sides)[::-1]
        for side in order:
            seconds, maps[side] = job(side)
            if repeat:
                times[side].append(seconds)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.1f}; "
        f"{IMAGE.name}; {args.clock} clock, median of {repeats} runs, the two sides alternating, "
        "after 1 warm-up run each\n"
    )
    print("| step | pytorch-gradcam 0.2.1 s | camkit s | speed-up |")
    print("|---|---|---|---|")
    steps = ["read + preprocess the picture"] + [
        f"{builder}: {deep} + {shallow}, 2 methods" for builder, _, deep, shallow in chosen
    ]
    for index, step in enumerate(steps):
        theirs = statistics.median(run[index] for run in times["pytorch-gradcam"])
        ours = statistics.median(run[index] for run in times["camkit"])
        print(f"| {step} | {theirs:.3f} | {ours:.3f} | {theirs / ours:.2f}x |")
    theirs = statistics.median(sum(run) for run in times["pytorch-gradcam"])
    ours = statistics.median(sum(run) for run in times["camkit"])
    count = 4 * len(chosen)
    print(
        f"| **whole job ({count} maps + {count} pictures)** | {theirs:.3f} | {ours:.3f} "
        f"| {theirs / ours:.2f}x |"
    )

    print("\nAgreement of the masks (Pearson r, pytorch-gradcam vs camkit):\n")
    print("| model | layer | gradcam | gradcam++ |")
    print("|---|---|---|---|")
    for index, (builder, _, deep, shallow) in enumerate(chosen):
        for layer in (deep, shallow):
            values = [
                pearson(
                    maps["pytorch-gradcam"][index][(layer, m)], maps["camkit"][index][(layer, m)]
                )
                for m in METHODS
            ]
            print(f"| {builder} | {layer} | {values[0]:.3f} | {values[1]:.3f} |")


if __name__ == "__main__":
    main()
