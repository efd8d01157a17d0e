"""The sample pictures: names, files, boxes and the one-line error for an unknown name."""

from __future__ import annotations

import pytest

import camkit


def test_every_sample_opens_as_rgb() -> None:
    sizes = {name: camkit.sample_image(name).size for name in camkit.samples.SAMPLES}
    assert sizes == {
        "water-bird": (500, 375),
        "both": (224, 224),
        "chelsea": (451, 300),
        "coffee": (600, 400),
    }
    assert camkit.sample_image("Water_Bird").mode == "RGB"  # case and underscores forgiven


def test_boxes_of_both_hold_the_dog_and_the_cat() -> None:
    boxes = {box["label"]: box for box in camkit.sample_boxes("both")}
    assert boxes["bull mastiff"]["class_index"] == 243
    assert boxes["tiger cat"]["box"] == [45, 118, 212, 224]
    with pytest.raises(ValueError, match="only 'both' has them"):
        camkit.sample_boxes("coffee")


def test_unknown_sample_names_the_closest_and_the_known_ones() -> None:
    with pytest.raises(ValueError) as caught:
        camkit.sample_image("waterbird")
    message = str(caught.value)
    assert message.startswith("no sample image 'waterbird'; closest: 'water-bird'; known samples")
    assert "\n" not in message
