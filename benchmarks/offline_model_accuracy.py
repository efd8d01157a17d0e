"""Top-1 accuracy of the offline EfficientNet-Lite0 on ../shared/data/imagenet-sample.

Compares camkit's preprocessing for it (pixels scaled as (x - 127) / 128, as the model was
trained on TensorFlow) with ImageNet's mean and standard deviation.

    python benchmarks/offline_model_accuracy.py
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

import camkit
from camkit._inputs import Preprocessing, load_image

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def main() -> None:
    rows = list(csv.DictReader((SAMPLE / "labels.csv").open()))
    loaded = camkit.load_model("efficientnet_lite0")
    images = [load_image(SAMPLE / row["file"]) for row in rows]
    labels = torch.tensor([int(row["class_index"]) for row in rows])
    for name, preprocessing in [
        ("camkit (x - 127) / 128", loaded.preprocessing),
        ("ImageNet mean/std", Preprocessing()),
    ]:
        x = torch.stack([preprocessing(image) for image in images])
        with torch.no_grad():
            predicted = loaded.model(x).argmax(dim=1)
        accuracy = (predicted == labels).float().mean().item()
        print(f"{name}: top-1 {accuracy:.0%} on {len(rows)} images")


if __name__ == "__main__":
    main()
