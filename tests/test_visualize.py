"""Tests of camkit.overlay and camkit.figures: overlay values, colormaps, labelled figures."""

from __future__ import annotations

import io
import itertools
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from camkit.figures import explanation_figure, grid
from camkit.overlay import (
    COLUMNS,
    NOTEBOOK_DPI,
    PANEL_INCHES,
    TITLE_POINTS,
    _wrap,
    figure_to_png_bytes,
    heatmap_image,
    overlay,
    text_points,
)

JET = matplotlib.colormaps["jet"]


def colour(cmap_value: tuple[float, ...]) -> tuple[int, int, int]:
    """The uint8 RGB of a colormap entry, rounded the way overlay rounds."""
    return tuple(int(np.rint(channel * 255)) for channel in cmap_value[:3])  # type: ignore[return-value]


def fake_explanation(
    batch: int = 2,
    layers: tuple[str, ...] = ("features.6", "features.3"),
    methods: tuple[str, ...] = ("gradcam", "gradcam++"),
    classes: int | None = None,
    size: int = 32,
    map_size: int = 7,
    model_name: str | None = "tinynet",
    with_labels: bool = True,
    with_targets: bool = True,
) -> SimpleNamespace:
    """A stand-in with the attributes of the contract's Explanation, with known probabilities."""
    generator = torch.Generator().manual_seed(0)
    shape = (batch, map_size, map_size) if classes is None else (batch, classes, map_size, map_size)
    k = 1 if classes is None else classes
    maps = {
        (layer, method): torch.rand(shape, generator=generator)
        for layer in layers
        for method in methods
    }
    probs = torch.full((batch, 10), 0.01)
    targets = torch.tensor([[(i + r) % 10 for r in range(k)] for i in range(batch)])
    for i in range(batch):
        probs[i, targets[i, 0]] = 0.5
        probs[i, (i + 1) % 10] = 0.25
    names = [f"animal{c}" for c in range(10)]
    return SimpleNamespace(
        images=torch.rand((batch, 3, size, size), generator=generator),
        maps=maps,
        raw=maps,
        layers=list(layers),
        methods=list(methods),
        targets=targets if with_targets else None,
        labels=[[names[int(t)] for t in row] for row in targets]
        if with_labels and with_targets
        else None,
        categories=names if with_labels else None,
        probs=probs,
        logits=probs.log(),
        model_name=model_name,
    )


def panels(figure: Figure) -> list:
    """The picture panels: every axes but the colour bar."""
    return [ax for ax in figure.axes if ax.get_label() != "<colorbar>"]


def titles(figure: Figure) -> list[str]:
    return [ax.get_title() for ax in panels(figure)]


def row_titles(figure: Figure, row: int, columns: int) -> str:
    return "\n".join(titles(figure)[row * columns : (row + 1) * columns])


# --------------------------------------------------------------------------------------------
# overlay and heatmap_image
# --------------------------------------------------------------------------------------------


@pytest.fixture
def picture() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)


def test_alpha_zero_returns_the_image(picture: np.ndarray) -> None:
    heat = torch.rand(30, 40)
    as_tensor = torch.from_numpy(picture).permute(2, 0, 1) / 255.0
    for image in (picture, Image.fromarray(picture), as_tensor):
        result = overlay(image, heat, alpha=0.0)
        assert isinstance(result, Image.Image)
        assert result.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(result), picture)


def test_alpha_one_returns_the_colormap_colour(picture: np.ndarray) -> None:
    cold = np.asarray(overlay(picture, torch.zeros(30, 40), alpha=1.0))
    hot = np.asarray(overlay(picture, torch.ones(30, 40), alpha=1.0))
    assert tuple(cold[0, 0]) == colour(JET(0.0)) == (0, 0, 128)  # jet at 0 is (0, 0, 0.5)
    assert tuple(hot[0, 0]) == colour(JET(1.0)) == (128, 0, 0)  # jet at 1 is (0.5, 0, 0)
    assert (cold == cold[0, 0]).all() and (hot == hot[0, 0]).all()
    heat = torch.rand(30, 40)
    np.testing.assert_array_equal(
        np.asarray(overlay(picture, heat, alpha=1.0)), np.asarray(heatmap_image(heat))
    )


def test_overlay_blends_linearly() -> None:
    picture = np.full((4, 4, 3), 200, dtype=np.uint8)
    result = np.asarray(overlay(picture, np.zeros((4, 4)), colormap="viridis", alpha=0.25))
    viridis_at_0 = np.array(matplotlib.colormaps["viridis"](0.0)[:3])
    expected = np.rint((0.75 * 200 / 255 + 0.25 * viridis_at_0) * 255)
    np.testing.assert_array_equal(result[0, 0], expected.astype(np.uint8))


def test_heatmap_is_resized_to_the_image(picture: np.ndarray) -> None:
    constant = overlay(picture, torch.full((7, 7), 0.5), alpha=1.0)
    assert constant.size == (40, 30)
    assert (np.asarray(constant) == colour(JET(0.5))).all()
    ramp = torch.linspace(0, 1, 5).repeat(5, 1)  # cold on the left, hot on the right
    result = np.asarray(overlay(Image.fromarray(picture), ramp, alpha=1.0))
    assert result.shape == (30, 40, 3)
    assert tuple(result[15, 0]) == colour(JET(0.0)) or result[15, 0, 2] > result[15, 0, 0]
    assert result[15, -1, 0] > result[15, -1, 2]


def test_heatmap_image_colours_each_value() -> None:
    image = heatmap_image(np.array([[0.0, 1.0], [0.5, np.nan]]), colormap="gray")
    assert image.size == (2, 2) and image.mode == "RGB"
    array = np.asarray(image)
    assert tuple(array[0, 0]) == (0, 0, 0)
    assert tuple(array[0, 1]) == (255, 255, 255)
    assert tuple(array[1, 1]) == (0, 0, 0)  # NaN draws as 0


def test_unknown_colormap_names_close_valid_ones(picture: np.ndarray) -> None:
    with pytest.raises(ValueError, match="'jet'"):
        overlay(picture, torch.zeros(30, 40), colormap="jett")
    with pytest.raises(ValueError, match="'viridis'"):
        heatmap_image(torch.zeros(3, 3), colormap="Viridis")
    with pytest.raises(TypeError, match="colormap"):
        overlay(picture, torch.zeros(30, 40), colormap=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_alpha_outside_unit_interval_is_an_error(picture: np.ndarray, alpha: float) -> None:
    with pytest.raises(ValueError, match=r"`alpha` must be in \[0, 1\]"):
        overlay(picture, torch.zeros(30, 40), alpha=alpha)


def test_alpha_of_wrong_type_is_a_type_error(picture: np.ndarray) -> None:
    with pytest.raises(TypeError, match="alpha"):
        overlay(picture, torch.zeros(30, 40), alpha="0.5")  # type: ignore[arg-type]


def test_normalised_tensor_is_rejected_with_the_fix() -> None:
    with pytest.raises(ValueError, match="un-normalised"):
        overlay(torch.randn(3, 8, 8) * 3, torch.zeros(8, 8))


def test_wrong_shapes_are_rejected(picture: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        overlay(picture, torch.zeros(2, 30, 40))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        overlay(torch.rand(2, 3, 8, 8), torch.zeros(8, 8))
    with pytest.raises(TypeError, match="image"):
        overlay([[0.0]], torch.zeros(8, 8))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def test_explanation_figure_has_one_row_per_image_layer_class_and_method() -> None:
    exp = fake_explanation(batch=2)
    figure = explanation_figure(exp)
    assert isinstance(figure, Figure)
    # 2 pictures x 2 layers x 2 methods rows of picture | heatmap | overlay.
    assert len(panels(figure)) == 2 * 2 * 2 * COLUMNS
    assert all(not ax.axison for ax in panels(figure))
    first = row_titles(figure, 0, COLUMNS)
    expected = ("tinynet", "features.6", "gradcam heatmap", "gradcam overlay", "animal0", "50.0%")
    for text in expected:
        assert text in first
    assert "gradcam++" not in first
    second = row_titles(figure, 1, COLUMNS)
    assert "gradcam++ heatmap" in second and "gradcam++ overlay" in second
    assert "features.6" in second and "animal0" in second
    assert "features.3" in row_titles(figure, 2, COLUMNS)
    last = row_titles(figure, 7, COLUMNS)
    assert "animal1" in last and "features.3" in last and "image 1" in last
    assert "gradcam++" in last


def test_explanation_figure_index_picks_one_image() -> None:
    figure = explanation_figure(fake_explanation(batch=3), index=2)
    assert len(panels(figure)) == 2 * 2 * COLUMNS
    assert "animal2" in "".join(titles(figure))
    with pytest.raises(ValueError, match="out of range"):
        explanation_figure(fake_explanation(batch=3), index=3)


def test_explanation_figure_draws_each_of_top_k_classes() -> None:
    exp = fake_explanation(batch=1, layers=("layer4",), methods=("gradcam",), classes=3)
    figure = explanation_figure(exp)
    assert len(panels(figure)) == 3 * COLUMNS
    joined = "\n".join(titles(figure))
    for name in ("animal0", "animal1", "animal2"):
        assert name in joined
    assert "50.0%" in joined and "25.0%" in joined and "1.0%" in joined


def test_explanation_figure_without_names_or_targets() -> None:
    no_names = explanation_figure(fake_explanation(batch=1, with_labels=False, model_name=None))
    assert "class 0" in titles(no_names)[0]
    no_targets = explanation_figure(fake_explanation(batch=1, with_targets=False))
    assert "custom target" in titles(no_targets)[0]


def test_explanation_figure_checks_drawing_arguments() -> None:
    with pytest.raises(ValueError, match="colormap"):
        explanation_figure(fake_explanation(), colormap="nope")
    with pytest.raises(ValueError, match="alpha"):
        explanation_figure(fake_explanation(), alpha=2)


def test_grid_rows_per_explanation_layer_and_method() -> None:
    models = [fake_explanation(model_name=f"net{n}") for n in range(5)]
    figure = grid(models)
    assert len(panels(figure)) == 5 * 2 * 2 * COLUMNS
    for n in range(5):
        for j, layer in enumerate(("features.6", "features.3")):
            for k, method in enumerate(("gradcam", "gradcam++")):
                row = row_titles(figure, 4 * n + 2 * j + k, COLUMNS)
                assert f"net{n}" in row and layer in row and f"{method} overlay" in row
                assert "animal0" in row and "50.0%" in row
    width, height = figure.get_size_inches()
    assert width == pytest.approx(COLUMNS * PANEL_INCHES)
    assert height / 20 >= PANEL_INCHES


def test_grid_names_index_and_missing_methods() -> None:
    a = fake_explanation(layers=("layer4",), methods=("gradcam",))
    b = fake_explanation(layers=("features.8",), methods=("gradcam++",))
    figure = grid([a, b], names=["resnet", "effnet"], index=1)
    # A method an explanation lacks has no row: one row each, no blank panels.
    assert len(panels(figure)) == 2 * COLUMNS
    assert titles(figure)[0].startswith("resnet") and titles(figure)[3].startswith("effnet")
    assert "animal1" in titles(figure)[0]
    assert "gradcam heatmap" in titles(figure)[1] and "gradcam++ heatmap" in titles(figure)[4]
    assert all(titles(figure))
    single = grid(a)
    assert len(panels(single)) == 3


def test_grid_errors() -> None:
    with pytest.raises(ValueError, match="names"):
        grid([fake_explanation(), fake_explanation()], names=["one"])
    with pytest.raises(ValueError, match="empty"):
        grid([])
    with pytest.raises(ValueError, match="out of range"):
        grid(fake_explanation(batch=2), index=5)


def test_figure_to_png_bytes_renders_and_frees_the_figure() -> None:
    figure = grid(fake_explanation(batch=1, layers=("layer4",), methods=("gradcam",)))
    width, height = figure.get_size_inches()
    data = figure_to_png_bytes(figure, dpi=50)
    assert data.startswith(b"\x89PNG")
    assert not figure.axes
    with Image.open(io.BytesIO(data)) as image:
        # Within a pixel: the height is not a whole number of pixels, and Agg truncates.
        assert image.size[0] == pytest.approx(width * 50, abs=1)
        assert image.size[1] == pytest.approx(height * 50, abs=1)
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 10  # pictures were drawn, not a blank canvas


def test_no_pyplot_figures_are_created() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    for _ in range(3):
        figure_to_png_bytes(explanation_figure(fake_explanation(batch=1)), dpi=20)
        grid([fake_explanation(batch=1)] * 2)
    assert plt.get_fignums() == before


def test_figure_of_a_real_explanation() -> None:
    camkit = pytest.importorskip("camkit")
    if not hasattr(camkit, "explain"):
        pytest.skip("camkit.explain is not available yet")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()
    exp = camkit.explain(
        model, torch.randn(2, 3, 16, 16), methods=("gradcam", "gradcam++"), layers=("2", "0")
    )
    figure = explanation_figure(exp, index=1)
    assert len(panels(figure)) == 2 * 2 * COLUMNS
    assert "gradcam++" in "".join(titles(figure))
    assert figure_to_png_bytes(figure).startswith(b"\x89PNG")
    overview = grid([exp, exp], names=["first", "second"])
    assert len(panels(overview)) == 2 * 2 * 2 * COLUMNS


def colour_bar(figure: Figure):
    bars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1
    return bars[0]


def test_figures_have_a_numeric_colour_bar_saying_each_map_is_scaled_on_its_own() -> None:
    bar = colour_bar(explanation_figure(fake_explanation(batch=1)))
    labels = [tick.get_text() for tick in bar.get_xticklabels()]
    # After min-max scaling 0 is the map's own minimum, not "no evidence" (issue 20, item 8).
    assert labels[0].startswith("0: its") and "minimum" in labels[0]
    assert labels[-1].startswith("1: its") and "maximum" in labels[-1]
    assert "0.5" in labels and not any("evidence" in label for label in labels)
    assert "min-max scaled on its own" in bar.get_xlabel()
    assert "MapWarning" not in bar.get_xlabel()  # no warned map, no word about them


def warned_explanation() -> SimpleNamespace:
    exp = fake_explanation(batch=1, layers=("layer4",))
    message = "layer 'layer4', class 0: gradcam's map is at rounding-noise level"
    exp.flagged = {("layer4", "gradcam"): {0: message}}
    return exp


def test_the_colour_bar_says_when_a_panel_is_flat_because_of_a_warning() -> None:
    # The bar's "each map min-max scaled" is untrue of a map drawn flat: the label says so.
    exp = warned_explanation()
    for figure in (explanation_figure(exp), grid([exp, fake_explanation(batch=1)])):
        label = colour_bar(figure).get_xlabel()
        assert "min-max scaled on its own" in label
        assert "MapWarning" in label and "flat" in label and "no scaled map" in label
        assert any("gradcam: MapWarning" in title for title in titles(figure))


def rendered_texts(figure: Figure) -> list:
    """Every title, tick label and axis label of a drawn figure, with its fontsize."""
    texts = []
    for ax in figure.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        texts += [*ax.get_xticklabels(), *ax.get_yticklabels()]
    return [t for t in texts if t.get_visible() and t.get_text()]


def displayed_points(figure: Figure, fontsize: float, column_px: int = 1000) -> float:
    """The size text of ``fontsize`` shows at in a notebook column ``column_px`` wide.

    Jupyter shows a picture at its pixel width, shrunk to the column when wider.
    """
    width_px = figure.get_size_inches()[0] * NOTEBOOK_DPI
    return fontsize * min(1.0, column_px / width_px)


@pytest.mark.parametrize("methods", [1, 2, 4])
def test_figure_text_is_readable_on_a_projector(methods: int) -> None:
    names = ("gradcam", "gradcam++", "layercam", "xgradcam")[:methods]
    exp = fake_explanation(batch=1, methods=names)
    for figure in (explanation_figure(exp), grid([exp] * 5)):
        sizes = {t.get_fontsize() for t in rendered_texts(figure)}
        assert min(sizes) >= 9, sorted(sizes)
        # The figure fits a notebook column (JupyterLab about 1000 px, GitHub about 900 px)
        # whatever the number of methods, so nothing shrinks its 9 pt below 9 pt.
        width_px = figure.get_size_inches()[0] * NOTEBOOK_DPI
        assert width_px <= 940
        assert displayed_points(figure, min(sizes), column_px=940) >= 9
    assert NOTEBOOK_DPI >= 120
    with Image.open(io.BytesIO(figure._repr_jpeg_())) as image:
        width, _ = image.size
    assert width >= figure.get_size_inches()[0] * 120 - 1


def test_figures_display_as_pictures_in_jupyter_without_magic() -> None:
    figure = grid(fake_explanation(batch=1))
    jpeg = figure._repr_jpeg_()  # what IPython's display calls on a non-pyplot figure
    assert jpeg.startswith(b"\xff\xd8\xff")
    assert not hasattr(figure, "_repr_png_"), "a second format would store the figure twice"
    assert figure.axes, "showing a figure must not clear it"
    with Image.open(io.BytesIO(jpeg)) as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10, "the JPEG holds a drawing, not a blank canvas"


def test_long_class_names_are_wrapped_not_clipped() -> None:
    exp = fake_explanation(batch=1, layers=("layer4",), methods=("gradcam",))
    exp.labels = [["American Staffordshire terrier and a very long suffix"]]
    for title in titles(explanation_figure(exp)):
        assert max(text_points(line) for line in title.splitlines()) <= TITLE_POINTS, title
    assert "American Staffordshire" in titles(explanation_figure(exp))[0]


LONG_LAYERS = (
    "encoder.layers.encoder_layer_11.ln_1",  # torchvision's ViT
    "_blocks.15._depthwise_conv",  # EfficientNet-Lite
    "model.backbone.stages_3.blocks_2.attention_projection_out",
    "a_layer_name_with_no_dots_that_is_far_too_long_for_any_panel_to_hold",
)


@pytest.mark.parametrize("layer", LONG_LAYERS)
def test_long_layer_names_break_at_dots_and_underscores(layer: str) -> None:
    text = f"{layer} (LayerNorm, late)"
    lines = _wrap(text, max_lines=4).splitlines()
    assert len(lines) >= 2 and all(text_points(line) <= TITLE_POINTS for line in lines), lines
    # Nothing is lost: the lines are the text, cut at its spaces or between characters.
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    position = 0
    for line in lines[:-1]:
        position = text.index(line, position) + len(line)
        before, after = text[position - 1], text[position]
        assert before in "._" or after == " ", (line, lines)  # a joint of the name, or a space
    assert _wrap(text, max_lines=1).endswith("...")


@pytest.mark.parametrize("layer", LONG_LAYERS[:2])
def test_titles_never_run_into_their_neighbours(layer: str) -> None:
    exp = fake_explanation(batch=1, layers=(layer,), methods=("gradcam", "gradcam++"))
    exp.maps = {key: value for key, value in exp.maps.items()}
    exp.layer_types = {layer: "Conv2dStaticSamePadding, head"}
    exp.flagged = {(layer, "gradcam++"): {0: "x: gradcam++'s map is at rounding-noise level"}}
    figure = explanation_figure(exp)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    bounds = figure.bbox
    for row in range(len(panels(figure)) // COLUMNS):
        boxes = [
            ax.title.get_window_extent(renderer)
            for ax in panels(figure)[row * COLUMNS : (row + 1) * COLUMNS]
        ]
        for left, right in itertools.pairwise(boxes):
            assert left.x1 < right.x0, (left, right)  # side by side, never overlapping
        for box in boxes:  # inside the figure: nothing cut at an edge
            assert bounds.x0 <= box.x0 and box.x1 <= bounds.x1
            assert bounds.y0 <= box.y0 and box.y1 <= bounds.y1
        picture_box = panels(figure)[row * COLUMNS].get_window_extent(renderer)
        assert picture_box.width >= 0.9 * PANEL_INCHES * figure.dpi  # titles did not shrink it
    assert layer.split(".")[-1] in "".join(titles(figure)).replace("\n", "")


def test_random_weights_are_named_in_every_figure() -> None:
    exp = fake_explanation(batch=1, layers=("layer4",), methods=("gradcam",))
    exp.pretrained = False
    assert "random weights" in titles(explanation_figure(exp))[0]
    assert "random weights" in titles(grid([exp], names=["resnet50"]))[0]
    exp.pretrained = True
    assert "random weights" not in "".join(titles(explanation_figure(exp)))


def test_layer_titles_say_type_and_place() -> None:
    exp = fake_explanation(batch=1, layers=("layer4",), methods=("gradcam",))
    exp.layer_types = {"layer4": "Sequential, late"}
    assert "layer4 (Sequential, late)" in titles(explanation_figure(exp))[0].replace("\n", " ")
