"""How close ``max_channels=N`` Score-CAM is to exact Score-CAM on real images.

For images of ../shared/data/imagenet-sample, the pretrained offline EfficientNet-Lite0 at its
last layer (the automatic one), each image's top class: the Pearson correlation between the
exact map and the map from the N channels of largest activation mass, and the forwards saved.

    .venv/bin/python benchmarks/perturbation_fidelity.py --images 6 --channels 16 64 256
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import camkit

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two maps (flattened); 1.0 for two identical constant maps."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    denominator = a.norm() * b.norm()
    if denominator == 0:
        return 1.0 if torch.equal(a, b) else 0.0
    return float((a @ b) / denominator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="images, spread over the sample")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    files = sorted(SAMPLE.glob("*.JPEG"))
    if not files:
        raise SystemExit(f"no images in {SAMPLE}")
    step = max(1, len(files) // args.images)
    files = files[::step][: args.images]
    model = camkit.load_model("efficientnet_lite0")
    options = {"methods": "scorecam", "batch_size": args.batch_size, "progress": False}
    correlations: dict[int, list[float]] = {n: [] for n in args.channels}
    seconds: dict[int | None, list[float]] = {n: [] for n in [None, *args.channels]}
    for file in files:
        start = time.perf_counter()
        exact = camkit.explain(model, str(file), **options)
        seconds[None].append(time.perf_counter() - start)
        layer = exact.layers[0]
        target = int(exact.targets[0, 0])  # type: ignore[index]
        exact_map = exact.maps[(layer, "scorecam")][0]
        row = [f"{file.name[:40]:40s}"]
        for n in args.channels:
            start = time.perf_counter()
            approx = camkit.explain(model, str(file), target=target, max_channels=n, **options)
            seconds[n].append(time.perf_counter() - start)
            correlations[n].append(pearson(approx.maps[(layer, "scorecam")][0], exact_map))
            row.append(f"N={n}: r={correlations[n][-1]:.3f}")
        print("  ".join(row), flush=True)
    print(f"\nEfficientNet-Lite0, layer {layer}, {len(files)} images of imagenet-sample")
    print("| max_channels | Pearson r mean | min | seconds / image (median) |")
    print("| --- | --- | --- | --- |")
    print(f"| exact | 1 | 1 | {statistics.median(seconds[None]):.1f} |")
    for n in args.channels:
        values = correlations[n]
        print(
            f"| {n} | {statistics.mean(values):.3f} | {min(values):.3f} | "
            f"{statistics.median(seconds[n]):.1f} |"
        )


if __name__ == "__main__":
    main()
