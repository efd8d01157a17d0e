"""The tutorial that started camkit: models x layers x Grad-CAM / Grad-CAM++ in one grid.

The original notebook loads five torchvision classifiers, picks a deep and a shallow layer in
each by its pytorch-gradcam name, and compares Grad-CAM and Grad-CAM++ over a photo of a water
bird. With camkit that is one ``explain`` call per model and one ``grid``:

    # five models, pretrained (torchvision downloads the weights)
    python examples/tutorial_comparison.py IMAGE --out tutorial.png
    # five models, random weights (offline)
    python examples/tutorial_comparison.py IMAGE --weights none --out t.png
    # the offline pretrained model at three depths (the README's picture)
    python examples/tutorial_comparison.py IMAGE --offline-model --out t.png
"""

from __future__ import annotations

import argparse

import camkit

# The tutorial's models with (deep, shallow) layers, in pytorch-gradcam's names.
TUTORIAL = {
    "alexnet": ("features_11", "features_0"),
    "vgg16": ("features_29", "features_0"),
    "resnet101": ("layer4", "layer1"),
    "densenet161": ("features_norm5", "features_norm0"),
    "squeezenet1_1": ("features_12_expand3x3_activation", "features_3_expand3x3_activation"),
}
# The offline EfficientNet-Lite0, deep to shallow: head (7x7), block 10 (14x14), block 4 (28x28).
OFFLINE_LAYERS = ("auto", "_blocks.10", "_blocks.4")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--out", default="tutorial-comparison.png")
    parser.add_argument("--weights", default="DEFAULT", help="'DEFAULT' (downloads) or 'none'")
    parser.add_argument("--offline-model", action="store_true", help="use efficientnet_lite0 only")
    args = parser.parse_args()

    methods = ("gradcam", "gradcam++")
    explanations, names = [], []
    if args.offline_model:
        loaded = camkit.load_model("efficientnet_lite0")
        explanations.append(
            camkit.explain(loaded, args.image, methods=methods, layers=OFFLINE_LAYERS)
        )
        names.append("efficientnet_lite0")
    else:
        weights = None if args.weights.lower() == "none" else args.weights
        for name, layers in TUTORIAL.items():
            loaded = camkit.load_model(name, weights=weights)
            explanations.append(camkit.explain(loaded, args.image, methods=methods, layers=layers))
            names.append(name)
    figure = camkit.grid(explanations, names=names)
    figure.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
