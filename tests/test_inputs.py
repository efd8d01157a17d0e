"""What users pass as images: paths, PIL images in any mode, arrays, tensors, lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import camkit
from camkit._inputs import Preprocessing, array_to_image, prepare_batch, to_rgb

PRE = Preprocessing(resize_size=32, crop_size=32)


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 128, (128, 128, 128)),
        ("I;16", 65535, (255, 255, 255)),
        ("I;16", 32768, (128, 128, 128)),
        ("RGB", (10, 20, 30), (10, 20, 30)),
        ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
    ],
)
def test_modes_become_rgb(mode, value, expected) -> None:
    image = Image.new(mode, (4, 4), value)
    rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((1, 1)) == expected


def test_transparent_pixels_are_composited_on_white() -> None:
    image = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    image.putpixel((1, 0), (200, 0, 0, 255))
    rgb = to_rgb(image)
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((1, 0)) == (200, 0, 0)


def test_palette_image_keeps_its_colours() -> None:
    image = Image.new("P", (2, 2), 1)
    image.putpalette([0, 0, 0, 250, 10, 20] + [0] * 762)
    assert to_rgb(image).getpixel((0, 0)) == (250, 10, 20)


def test_arrays_of_each_dtype() -> None:
    assert array_to_image(np.full((3, 3), 255, np.uint8)).getpixel((0, 0)) == (255, 255, 255)
    assert array_to_image(np.full((3, 3, 3), 0.5, np.float32)).getpixel((0, 0)) == (128, 128, 128)
    assert array_to_image(np.full((3, 3, 1), 65535, np.uint16)).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ValueError, match=r"shape \(3, 5, 5\).*np.moveaxis"):
        array_to_image(np.zeros((3, 5, 5), np.uint8))
    with pytest.raises(ValueError, match="NaN or Inf"):
        array_to_image(np.full((3, 3), np.nan, np.float32))


def test_paths_pil_and_arrays_give_the_same_batch(tmp_path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    batch = prepare_batch([path, str(path), Image.fromarray(pixels), pixels], PRE)
    assert batch.tensor.shape == (4, 3, 32, 32)
    assert batch.names == ["photo", "photo", "image 2", "image 3"]
    for i in range(1, 4):
        torch.testing.assert_close(batch.tensor[i], batch.tensor[0])
    torch.testing.assert_close(PRE.normalize(batch.images), batch.tensor)
    assert batch.images.min() >= 0 and batch.images.max() <= 1


def test_tensor_inputs_are_used_as_given_and_denormalised_for_drawing() -> None:
    pixels = torch.rand(2, 3, 8, 8)
    batch = prepare_batch(PRE.normalize(pixels), PRE)
    torch.testing.assert_close(batch.images, pixels)
    assert prepare_batch(PRE.normalize(pixels)[0], PRE).tensor.shape == (1, 3, 8, 8)


@pytest.mark.parametrize(
    ("inputs", "error", "match"),
    [
        ("missing.png", ValueError, "not found; check the path"),
        (torch.zeros(3, 3), ValueError, r"pass \(B, C, H, W\)"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), TypeError, "float tensor"),
        (torch.full((1, 3, 4, 4), float("nan")), ValueError, "NaN or Inf"),
        ([], ValueError, "empty list"),
        (42, TypeError, "item 0 is a int"),
    ],
)
def test_bad_inputs_have_clear_errors(inputs, error, match) -> None:
    with pytest.raises(error, match=match):
        prepare_batch(inputs, PRE)


def test_unreadable_file_is_a_clear_error(tmp_path) -> None:
    fake = tmp_path / "notes.jpg"
    fake.write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        prepare_batch(fake, PRE)


def test_explain_accepts_a_grayscale_file(small_cnn, tmp_path) -> None:
    path = tmp_path / "grey.png"
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (64, 1)), mode="L").save(path)
    explanation = camkit.explain(small_cnn, path, layers="block")
    assert explanation.maps[("block", "gradcam")].shape == (1, 224, 224)
    assert explanation.names == ["grey"]
