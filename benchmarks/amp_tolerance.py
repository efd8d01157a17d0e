"""How far ``explain(..., amp=...)`` maps are from float32 ones, on real images.

The pretrained offline EfficientNet-Lite0 at its automatic layer and images of
../shared/data/imagenet-sample, each image's top class: for each method, the largest absolute
difference between the mixed-precision and the float32 map (maps are min-max normalised to
[0, 1]), the mean absolute difference, and the smallest Pearson correlation over the images; and the
time of both. Runs bfloat16 on the CPU, and bfloat16 and float16 on CUDA when present.

    .venv/bin/python benchmarks/amp_tolerance.py --images 8
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from perturbation_fidelity import pearson  # the benchmarks folder is on sys.path

import camlens

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"
METHODS = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam", "scorecam"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="images, spread over the sample")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--max-channels", type=int, default=64, help="for scorecam, to keep it short"
    )
    args = parser.parse_args()
    files = sorted(SAMPLE.glob("*.JPEG"))
    if not files:
        raise SystemExit(f"no images in {SAMPLE}")
    files = files[:: max(1, len(files) // args.images)][: args.images]
    loaded = camlens.load_model("efficientnet_lite0", device=args.device)
    precisions = ["bf16"] if args.device == "cpu" else ["bf16", "fp16"]
    print(f"torch {torch.__version__}, {args.device}, {len(files)} images, Lite0 auto layer")
    print("| method | amp | max abs diff | mean abs diff | min r | s fp32 | s amp |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method in METHODS:
        options = {"methods": method, "progress": False}
        if method == "scorecam":
            options["max_channels"] = args.max_channels
        for amp in precisions:
            worst, mean, lowest = 0.0, [], 1.0
            seconds: dict[str, list[float]] = {"fp32": [], "amp": []}
            for file in files:
                start = time.perf_counter()
                full = camlens.explain(loaded, str(file), **options)
                seconds["fp32"].append(time.perf_counter() - start)
                target = int(full.targets[0])  # type: ignore[index]
                start = time.perf_counter()
                mixed = camlens.explain(loaded, str(file), target=target, amp=amp, **options)
                seconds["amp"].append(time.perf_counter() - start)
                key = (full.layers[0], method)
                difference = (mixed.maps[key] - full.maps[key]).abs()
                worst = max(worst, float(difference.max()))
                mean.append(float(difference.mean()))
                lowest = min(lowest, pearson(mixed.maps[key], full.maps[key]))
            print(
                f"| {method} | {amp} | {worst:.3f} | {statistics.mean(mean):.4f} | {lowest:.4f} "
                f"| {statistics.median(seconds['fp32']):.3f} "
                f"| {statistics.median(seconds['amp']):.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
