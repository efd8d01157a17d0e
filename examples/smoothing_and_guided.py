"""Smoothing and guided pictures: the offline Lite0 on the dog-and-cat photo, in one grid.

Rows: plain, ``smooth="noise"`` and ``smooth="augment"``. Columns: Grad-CAM++, Smooth Grad-CAM++
(its own noise; it cannot be combined with augmentation, so that panel stays blank), Guided
Backpropagation and Guided Grad-CAM, as pictures, then the overlays. This script makes the
picture of docs/smoothing-and-guided.md:

    python examples/smoothing_and_guided.py ../shared/data/images/both.png \
        --target "bull mastiff" --out docs/smoothing-and-guided.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import camkit
from camkit.overlay import figure_to_png_bytes

METHODS = ["gradcam++", "smoothgradcam++", "guided-backprop", "guided-gradcam"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--target", default=None, help="class name or index; default top class")
    parser.add_argument("--out", default="smoothing-and-guided.png")
    args = parser.parse_args()
    target = int(args.target) if args.target and args.target.isdigit() else args.target

    model = camkit.load_model("efficientnet_lite0")
    rows, names = [], []
    for smooth in (None, "noise", "augment"):
        methods = [m for m in METHODS if not (smooth == "augment" and m == "smoothgradcam++")]
        rows.append(camkit.explain(model, args.image, methods, target=target, smooth=smooth))
        names.append(f"Lite0 · {smooth or 'plain'}")
    figure = camkit.grid(rows, names=names)
    Path(args.out).write_bytes(figure_to_png_bytes(figure))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
