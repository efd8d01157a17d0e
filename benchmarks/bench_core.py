"""How close camkit gets to the floor: one forward plus one gradient to the layer.

Prints a Markdown table of median times and their ratio to the floor, measured side by side in
one run, the cases interleaved so that machine noise hits all of them alike.

    python benchmarks/bench_core.py            # ResNet-50, 224x224, batch 1 and 8
    python benchmarks/bench_core.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torchvision

import camkit

#: The methods computed from the one shared forward and backward pass (the perturbation methods
#: and those with passes of their own, guided and smoothgradcam++, are benchmarked elsewhere).
METHODS = [
    name
    for name in camkit.list_methods()
    if not camkit.cam.get_method(name).perturbation
    and not camkit.cam.get_method(name).own_pass
]


def floor(model: torch.nn.Module, x: torch.Tensor, layers: list[str]) -> Callable[[], None]:
    """Forward with the layer outputs captured, one autograd.grad to them: the least work."""
    modules = dict(model.named_modules())

    def run() -> None:
        captured: list[torch.Tensor] = []
        handles = [
            modules[n].register_forward_hook(lambda m, i, o: captured.append(o)) for n in layers
        ]
        try:
            logits = model(x)
        finally:
            for handle in handles:
                handle.remove()
        score = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
        torch.autograd.grad(score, captured)

    return run


def forward_only(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            model(x)

    return run


def measure(
    cases: dict[str, Callable[[], None]], repeats: int, warmup: int, device: torch.device
) -> dict[str, float]:
    def sync() -> None:
        if device.type == "cuda":  # CUDA runs asynchronously: wait before reading the clock
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        for run in cases.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():  # interleaved: every case sees the same machine state
            sync()
            start = time.perf_counter()
            run()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    repeats, warmup = (5, 1) if args.quick else (21, 3)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval().to(device)
    print(
        f"ResNet-50 (weights=None), 224x224, {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"median of {repeats} interleaved runs\n"
    )
    print("| batch | case | median s | ratio to floor |")
    print("|---|---|---|---|")
    for batch in args.batches:
        x = torch.randn(batch, 3, 224, 224, device=device)
        camkit.explain(model, x)  # caches the auto layer, as in any second call
        cases = {
            "forward only (no grad)": forward_only(model, x),
            "floor: forward + grad to layer4": floor(model, x, ["layer4"]),
            "floor: forward + grad to layer4 and layer3": floor(model, x, ["layer4", "layer3"]),
            "camkit gradcam, layer4": lambda x=x: camkit.explain(model, x, layers="layer4"),
            "camkit gradcam, auto layer (cached)": lambda x=x: camkit.explain(model, x),
            f"camkit {len(METHODS)} methods x layer4": lambda x=x: camkit.explain(
                model, x, methods=METHODS, layers="layer4"
            ),
            f"camkit {len(METHODS)} methods x layer4 + layer3": lambda x=x: camkit.explain(
                model, x, methods=METHODS, layers=("layer4", "layer3")
            ),
        }
        medians = measure(cases, repeats, warmup, device)
        one = medians["floor: forward + grad to layer4"]
        two = medians["floor: forward + grad to layer4 and layer3"]
        for name, value in medians.items():
            ratio = f"{value / one:.3f}"
            if name.endswith("layer4 + layer3"):
                ratio += f" ({value / two:.3f} to the two-layer floor)"
            print(f"| {batch} | {name} | {value:.4f} | {ratio} |")


if __name__ == "__main__":
    main()
