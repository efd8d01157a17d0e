"""Channels-last against NCHW input for explain's gradient pass, per model and batch size.

``camkit.explain(..., channels_last=None)`` picks the input layout of its gradient pass by a rule
(see ``camkit/_forward.py``); this script measures both layouts side by side so the rule rests on
numbers: Grad-CAM at the automatic layer, ``weights=None`` torchvision models and the offline
EfficientNet-Lite0, 224x224, CPU, median over interleaved runs, CPU time of the process.

    .venv/bin/python benchmarks/bench_layout.py                  # the default models, batch 1 and 8
    .venv/bin/python benchmarks/bench_layout.py --models resnet18 --batches 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torchvision

import camkit
from camkit._forward import forward_options

MODELS = [
    "lite0",
    "resnet18",
    "resnet50",
    "vgg16",
    "densenet121",
    "mobilenet_v3_large",
    "squeezenet1_1",
    "alexnet",
]


def load(name: str) -> torch.nn.Module:
    if name == "lite0":
        return camkit.load_model().model
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f}; Grad-CAM at the auto layer; median CPU ms of "
        f"{args.repeats} interleaved runs\n"
    )
    print("| model | batch | NCHW ms | channels-last ms | channels-last / NCHW | auto picks |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        model = load(name)
        for batch in args.batches:
            torch.manual_seed(1)
            x = torch.randn(batch, 3, 224, 224)
            times: dict[bool, list[float]] = {False: [], True: []}

            def run(layout: bool | None, model: torch.nn.Module = model, x: torch.Tensor = x):
                return camkit.explain(model, x, methods="gradcam", channels_last=layout)

            for layout in times:  # warm-up: the auto layer's probe, oneDNN's kernels
                run(layout)
                run(layout)
            for _ in range(args.repeats):
                for layout in times:
                    began = time.process_time()
                    run(layout)
                    times[layout].append((time.process_time() - began) * 1000)
            nchw, last = (statistics.median(times[k]) for k in (False, True))
            picked = forward_options(None, False, x.device, gradient=True, batch=batch)
            print(
                f"| {name} | {batch} | {nchw:.1f} | {last:.1f} | {last / nchw:.2f} | "
                f"{'channels-last' if picked.channels_last else 'NCHW'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
