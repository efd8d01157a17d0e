"""The Explanation object: indexing, overlay, saved figure, notebook display."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

import camkit


@pytest.fixture
def explanation(small_cnn) -> camkit.Explanation:
    torch.manual_seed(3)
    pixels = torch.rand(2, 3, 32, 32)
    x = camkit.Preprocessing().normalize(pixels)
    return camkit.explain(small_cnn, x, methods=["gradcam", "layercam"], layers="block", top_k=2)


def test_overlay_blends_the_map_over_the_picture(explanation) -> None:
    picture = (explanation.images[1].permute(1, 2, 0).numpy() * 255).round()
    plain = np.asarray(explanation.overlay(index=1, alpha=0.0), dtype=np.float64)
    np.testing.assert_allclose(plain, picture, atol=1)
    heat = explanation.maps[("block", "layercam")][1, 1].numpy()
    colours = matplotlib.colormaps["viridis"](heat)[..., :3] * 255
    full = np.asarray(
        explanation.overlay("layercam", index=1, rank=1, colormap="viridis", alpha=1.0), np.float64
    )
    np.testing.assert_allclose(full, colours, atol=1.5)


def test_save_writes_a_labelled_png_and_the_notebook_shows_a_jpeg(explanation, tmp_path) -> None:
    path = explanation.save(tmp_path / "figure.png")
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.width > 400 and saved.height > 400
    assert not hasattr(explanation, "_repr_png_")  # one picture per display, not two
    jpeg = explanation._repr_jpeg_()
    with Image.open(io.BytesIO(jpeg)) as shown:
        assert shown.format == "JPEG" and shown.size[0] > 400


def test_repr_is_one_line_summary(explanation) -> None:
    assert repr(explanation) == (
        "Explanation(model='SmallCNN', images=2, layers=['block'], methods=['gradcam', 'layercam'])"
    )


def test_overlay_rejects_a_bad_index(explanation) -> None:
    with pytest.raises(ValueError, match="`index` 5 is out of range for a batch of 2"):
        explanation.overlay(index=5)
