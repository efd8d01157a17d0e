"""The offline ImageNet-pretrained model on real photos: maps point at the right object."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

import camkit
from tests.conftest import ONE_PASS_METHODS, shared_path

GRADIENT_METHODS = [m for m in ONE_PASS_METHODS if m != "eigencam"]


@pytest.fixture(scope="module")
def both() -> tuple[torch.Tensor, dict[str, list[int]]]:
    image = Image.open(shared_path("images", "both.png")).convert("RGB")
    boxes = json.loads(shared_path("images", "both.json").read_text())["boxes_xyxy"]
    return image, {name: entry["box"] for name, entry in boxes.items()}


def _peak(heatmap: torch.Tensor) -> tuple[int, int]:
    y, x = divmod(int(heatmap.argmax()), heatmap.shape[-1])
    return x, y


@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("cls", ["bull mastiff", "tiger cat"])
def test_peak_lies_in_the_object_box(lite0, both, method, cls) -> None:
    image, boxes = both
    assert image.size == (224, 224)
    # The photo is already 224x224: normalise it without resizing so the boxes keep their pixels.
    x = lite0.preprocessing.normalize(to_tensor(image))
    explanation = camkit.explain(lite0, x, methods=method, target=cls)
    assert explanation.layers == ["_swish"]
    px, py = _peak(explanation[method][0])
    x0, y0, x1, y1 = boxes[cls]
    assert x0 <= px <= x1 and y0 <= py <= y1, (px, py)


def test_dog_and_cat_maps_differ_where_the_objects_are(lite0, both) -> None:
    image, boxes = both
    explanation = camkit.explain(lite0, [image, image], target=["bull mastiff", "tiger cat"])
    dog, cat = explanation["gradcam"]
    x0, y0, x1, y1 = boxes["tiger cat"]
    # Image paths go through Resize(256) + CenterCrop(224): the box scales by 256/224, minus 16.
    scale, shift = 256 / 224, 16
    box = [round(v * scale - shift) for v in (x0, y0, x1, y1)]
    box = [max(0, min(223, v)) for v in box]
    inside_cat = (slice(box[1], box[3] + 1), slice(box[0], box[2] + 1))
    assert cat[inside_cat].mean() > dog[inside_cat].mean()


def test_prediction_on_real_photos(lite0) -> None:
    explanation = camkit.explain(
        lite0, [shared_path("images", "chelsea.png"), shared_path("images", "water-bird.JPEG")]
    )
    assert explanation.labels[0][0] in {"tabby", "tiger cat", "Egyptian cat"}
    assert explanation.labels[1][0] == "spoonbill"
    assert explanation.names == ["chelsea", "water-bird"]
    assert explanation.images.shape == (2, 3, 224, 224)
