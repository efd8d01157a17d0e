"""Drawing: colour heatmaps, blend them over pictures, and lay out labelled figures.

Nothing here computes a CAM: everything takes maps and pictures (tensors, arrays, PIL images);
:mod:`camkit.figures` lays out an :class:`~camkit.Explanation` with these pieces. Figures are
built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through ``pyplot``, so a
loop that draws thousands of figures keeps no global state and leaks none; they still show as
pictures in Jupyter (:class:`NotebookFigure`).
"""

from __future__ import annotations

import difflib
import io
import numbers
import os
import re
from collections.abc import Sequence
from contextlib import suppress
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath
from PIL import Image

from camkit._errors import ArgumentTypeError, InputError
from camkit._inputs import to_rgb

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "NotebookFigure",
    "add_colorbar",
    "draw_row",
    "draw_warning",
    "figure_to_jpeg_bytes",
    "figure_to_png_bytes",
    "fit_rows",
    "get_colormap",
    "guided_image",
    "heatmap_image",
    "new_figure",
    "overlay",
    "text_points",
]

#: Inches per panel. Every figure has three columns (picture | heatmap | overlay), so it is
#: 3 x 2.6 = 7.8 in wide: 936 px at 120 dpi, which a notebook column (JupyterLab about 1000 px,
#: GitHub about 900 px) shows at (almost) full size, so 10 pt titles stay at least 9 pt on screen.
PANEL_INCHES = 2.6
#: Columns of every figure: the picture, one method's heatmap, the same method's overlay.
COLUMNS = 3
#: Title font size, in points, of every panel.
TITLE_FONTSIZE = 10
#: Widest title line, in points: a little less than a panel, so neighbouring titles never touch.
TITLE_POINTS = 0.92 * PANEL_INCHES * 72
#: Widest line, in points, and lines at most, of a warning written over a panel (on a box).
WARNING_POINTS = 0.85 * PANEL_INCHES * 72
WARNING_LINES = 10
#: Height, in inches, of the horizontal colour bar under the panels with its ticks and a
#: one-line label; each further label line adds :data:`TITLE_FONTSIZE` x 1.2 points.
COLORBAR_INCHES = 0.75
#: Resolution of the PNGs written by :func:`figure_to_png_bytes`.
DEFAULT_DPI = 120
#: Resolution of figures shown in a notebook: 120 dpi is sharp on a projector.
NOTEBOOK_DPI = 120
#: JPEG quality of figures shown in a notebook: text stays crisp, photos small.
JPEG_QUALITY = 85


# --------------------------------------------------------------------------------------------
# Checking arguments
# --------------------------------------------------------------------------------------------


def get_colormap(colormap: str | Colormap) -> Colormap:
    """Return the matplotlib colormap called ``colormap``.

    Args:
        colormap: A name registered in ``matplotlib.colormaps`` ("jet", "viridis", ...) or a
            ``Colormap`` object, returned as is.

    Returns:
        The colormap.

    Raises:
        ValueError: If no colormap has that name; the message lists the closest names.
        TypeError: If ``colormap`` is neither a string nor a ``Colormap``.
    """
    if isinstance(colormap, Colormap):
        return colormap
    if not isinstance(colormap, str):
        raise ArgumentTypeError(
            f"`colormap` must be a colormap name such as 'jet', got {type(colormap).__name__}"
        )
    try:
        return matplotlib.colormaps[colormap]
    except KeyError:
        pass
    names = list(matplotlib.colormaps)
    lowered = {name.lower(): name for name in names}
    if colormap.lower() in lowered:
        close = [lowered[colormap.lower()]]
    else:
        close = difflib.get_close_matches(colormap, names, n=3, cutoff=0.6)
    hint = f"closest: {', '.join(repr(c) for c in close)}" if close else "e.g. 'jet', 'viridis'"
    raise InputError(
        f"unknown colormap {colormap!r}; use a matplotlib colormap name ({hint}); "
        "list them with `list(matplotlib.colormaps)`"
    )


def _check_alpha(alpha: float) -> float:
    """Return ``alpha`` as a float after checking it lies in [0, 1]."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise ArgumentTypeError(f"`alpha` must be a number in [0, 1], got {type(alpha).__name__}")
    value = float(alpha)
    if not 0.0 <= value <= 1.0:
        raise InputError(
            f"`alpha` must be in [0, 1] (0 shows only the picture, 1 only the heatmap), got {alpha}"
        )
    return value


def _image_to_array(image: Image.Image | torch.Tensor | np.ndarray) -> np.ndarray:
    """Return a picture as a float64 (H, W, 3) array in [0, 1]."""
    if isinstance(image, Image.Image):  # same conversion as explain's inputs (16-bit, alpha)
        return np.asarray(to_rgb(image), dtype=np.float64) / 255.0
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.ndim == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
            raise InputError(
                f"`image` tensor must have shape (3, H, W), got {tuple(image.shape)}; "
                "pass one picture of Explanation.images, e.g. `exp.images[0]`"
            )
        if tensor.dtype == torch.uint8:
            array = tensor.numpy().astype(np.float64) / 255.0
        else:
            array = tensor.double().numpy()
        array = np.moveaxis(array, 0, -1)
    elif isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[-1] == 4:
            array = array[..., :3]  # drop the alpha channel of RGBA arrays
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3 or array.shape[-1] not in (1, 3):
            raise InputError(
                f"`image` array must have shape (H, W, 3), got {image.shape}; "
                "for a (3, H, W) array pass a torch tensor instead"
            )
        if array.dtype == np.uint8:
            array = array.astype(np.float64) / 255.0
        elif np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float64)
        else:
            raise ArgumentTypeError(
                f"`image` array must be uint8 in [0, 255] or float in [0, 1], got {array.dtype}"
            )
    else:
        raise ArgumentTypeError(
            "`image` must be a PIL image, a (3, H, W) float tensor in [0, 1] or a (H, W, 3) "
            f"uint8 array, got {type(image).__name__}"
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if not np.isfinite(array).all() or array.min() < -1e-3 or array.max() > 1 + 1e-3:
        raise InputError(
            f"`image` values must be in [0, 1], got [{np.nanmin(array):.3g}, "
            f"{np.nanmax(array):.3g}]; pass the un-normalised picture (Explanation.images), "
            "not the normalised model input"
        )
    return np.clip(array, 0.0, 1.0)


def _heatmap_to_array(
    heatmap: torch.Tensor | np.ndarray, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Return a heatmap as a float64 (H, W) array in [0, 1], resized to ``size`` (H, W) if given.

    NaN becomes 0 and values outside [0, 1] are clipped, so a raw map draws without surprises.
    """
    if isinstance(heatmap, np.ndarray):
        tensor = torch.from_numpy(np.asarray(heatmap, dtype=np.float32))
    elif isinstance(heatmap, torch.Tensor):
        tensor = heatmap.detach().cpu().float()
    else:
        raise ArgumentTypeError(
            f"`heatmap` must be a (H, W) tensor or array in [0, 1], got {type(heatmap).__name__}"
        )
    while tensor.ndim > 2 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 2:
        raise InputError(
            f"`heatmap` must have shape (H, W), got {tuple(heatmap.shape)}; pick one map, "
            "e.g. `exp.maps[layer, method][0]` for the first picture"
        )
    tensor = torch.nan_to_num(tensor, nan=0.0).clamp(0.0, 1.0)
    if size is not None and tuple(tensor.shape) != tuple(size):
        tensor = F.interpolate(
            tensor[None, None], size=size, mode="bilinear", align_corners=False, antialias=True
        )[0, 0].clamp(0.0, 1.0)
    return tensor.double().numpy()


def _to_uint8(array: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------


def heatmap_image(
    heatmap: torch.Tensor | np.ndarray, colormap: str | Colormap = "jet"
) -> Image.Image:
    """Colour a heatmap.

    Args:
        heatmap: A (H, W) map in [0, 1]; values outside are clipped, NaN counts as 0.
        colormap: A matplotlib colormap name or object.

    Returns:
        An RGB image of size (W, H).

    Raises:
        ValueError: If the colormap is unknown or the heatmap is not two-dimensional.
        TypeError: If an argument has the wrong type.
    """
    cmap = get_colormap(colormap)
    heat = _heatmap_to_array(heatmap)
    return Image.fromarray(_to_uint8(cmap(heat)[..., :3]), mode="RGB")


def guided_image(gradient: torch.Tensor | np.ndarray) -> Image.Image:
    """Draw a signed gradient image (guided backpropagation) as a picture, not a colormap.

    The usual display of the Grad-CAM and Guided Backpropagation papers' code: over all channels
    and pixels of the image, ``(g - mean) / std * 0.1 + 0.5``, clipped to [0, 1], so 0 is mid
    grey and the strongest positive and negative gradients are light and dark. A one-channel
    gradient is drawn in grey; an all-constant one is plain grey.

    Args:
        gradient: A (C, H, W) gradient, C = 1 or 3 (one of ``Explanation.guided``'s images).

    Returns:
        An RGB image of size (W, H).

    Raises:
        ValueError: If the gradient is not (1, H, W) or (3, H, W).
        TypeError: If it is not a tensor or array.
    """
    if isinstance(gradient, np.ndarray):
        tensor = torch.from_numpy(np.asarray(gradient, dtype=np.float64))
    elif isinstance(gradient, torch.Tensor):
        tensor = gradient.detach().cpu().double()
    else:
        raise ArgumentTypeError(
            f"`gradient` must be a (3, H, W) tensor or array, got {type(gradient).__name__}"
        )
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise InputError(
            f"`gradient` must have shape (3, H, W) or (1, H, W), got {tuple(tensor.shape)}; "
            "pick one image, e.g. `exp.guided[layer, 'guided-backprop'][0]`"
        )
    tensor = torch.nan_to_num(tensor, nan=0.0)
    std = tensor.std(unbiased=False)
    scaled = (tensor - tensor.mean()) / std * 0.1 + 0.5 if std > 0 else torch.full_like(tensor, 0.5)
    array = np.moveaxis(scaled.numpy(), 0, -1)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return Image.fromarray(_to_uint8(array), mode="RGB")


def overlay(
    image: Image.Image | torch.Tensor | np.ndarray,
    heatmap: torch.Tensor | np.ndarray,
    colormap: str | Colormap = "jet",
    alpha: float = 0.5,
) -> Image.Image:
    """Blend a coloured heatmap over a picture: ``(1 - alpha) * image + alpha * colour``.

    Args:
        image: A PIL image, a (3, H, W) float tensor in [0, 1] (one of ``Explanation.images``)
            or a (H, W, 3) uint8 array.
        heatmap: A (H, W) map in [0, 1]; resized bilinearly to the picture when sizes differ.
        colormap: A matplotlib colormap name or object.
        alpha: Weight of the heatmap colour: 0 returns the picture, 1 the coloured heatmap.

    Returns:
        An RGB image the size of ``image``.

    Raises:
        ValueError: If ``alpha`` is outside [0, 1], the colormap is unknown, or a shape is wrong.
        TypeError: If an argument has the wrong type.
    """
    weight = _check_alpha(alpha)
    cmap = get_colormap(colormap)
    picture = _image_to_array(image)
    heat = _heatmap_to_array(heatmap, size=picture.shape[:2])
    colour = cmap(heat)[..., :3]
    return Image.fromarray(_to_uint8((1.0 - weight) * picture + weight * colour), mode="RGB")


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


class NotebookFigure(Figure):
    """A matplotlib figure that shows itself as a picture in Jupyter and Colab, with no magic.

    camkit's figures live on the Agg canvas, outside pyplot (no global state, no leak in a loop),
    so Jupyter's inline backend never sees them and would print ``<Figure size ...>``. Jupyter
    asks an object for ``_repr_jpeg_`` when it displays it: this class answers with a JPEG at
    :data:`NOTEBOOK_DPI`, once per display, so there is no duplicate either. JPEG, not PNG:
    the panels are photographs, and a five-panel figure at 120 dpi takes about 100 kB as a JPEG
    against 460 kB as a PNG, which would push a lesson past 1.5 MB.
    """

    def _repr_jpeg_(self) -> bytes:
        return figure_to_jpeg_bytes(self, dpi=NOTEBOOK_DPI, clear=False)


def new_figure(rows: int, title_lines: int = 4) -> tuple[Figure, np.ndarray]:
    """Return an Agg figure with a (rows, 3) array of axes: picture | heatmap | overlay.

    The width is fixed (:data:`COLUMNS` x :data:`PANEL_INCHES`, under 1000 px at 120 dpi) and
    each row is as tall as a panel plus ``title_lines`` lines of title; :func:`fit_rows` adjusts
    the height once the titles are known. One method per row, not one row per picture with every
    method side by side: a long row is shrunk by the notebook to its column width, text and all.
    """
    figure = NotebookFigure(figsize=(COLUMNS * PANEL_INCHES, 1.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, COLUMNS, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    fit_rows(figure, rows, title_lines)
    return figure, axes


def fit_rows(figure: Figure, rows: int, title_lines: int, colorbar_lines: int = 1) -> None:
    """Set the figure's height to fit ``rows`` rows of panels and the colour bar.

    Each row has room for a panel and ``title_lines`` lines of title, the colour bar for
    ``colorbar_lines`` lines of label, so the panels keep their full width instead of
    shrinking to fit the titles.
    """
    # A square picture is a little narrower than its panel (the layout's pads); title lines
    # are 1.2 x the font size apart, plus the title's pad and a gap between rows.
    picture_inches = PANEL_INCHES - 0.08
    title_inches = (title_lines * 1.2 * TITLE_FONTSIZE + 12) / 72
    colorbar_inches = COLORBAR_INCHES + (colorbar_lines - 1) * 1.2 * TITLE_FONTSIZE / 72
    figure.set_figheight(rows * (picture_inches + title_inches) + colorbar_inches)


def _title(*lines: str) -> str:
    return "\n".join(line for line in lines if line)


def draw_row(
    axes: Sequence[Axes],
    picture: torch.Tensor,
    method: str,
    heatmap: torch.Tensor,
    *,
    heading: str,
    layer: str,
    class_text: str,
    colormap: Colormap,
    alpha: float,
    gradient: torch.Tensor | None = None,
    warning: str | None = None,
) -> int:
    """Draw one method's row: the picture | its heatmap | its overlay, each panel titled.

    The picture's title names the model (``heading``), the layer and the class with its
    probability; the two map panels name the method, the layer and the class. A guided method's
    heatmap panel shows its gradient image (:func:`guided_image`) instead. A map with a
    ``warning`` is drawn flat (all zeros: the colour map's low end) with the warning's text on
    its heatmap panel, never in full-scale colour.

    Returns:
        The number of lines of the tallest title, for :func:`fit_rows`.
    """
    image = _image_to_array(picture)
    size = image.shape[:2]
    layer_lines = _wrap(layer, max_lines=3)
    class_lines = _wrap(class_text)
    heat_axes, overlay_axes = axes[1], axes[2]
    axes[0].imshow(_to_uint8(image))
    titles = [_title(_wrap(heading), layer_lines, class_lines)]
    if warning is not None:
        flat = np.zeros(size)
        heat_axes.imshow(heatmap_image(flat, colormap))
        draw_warning(heat_axes, warning)
        titles.append(_title(_wrap(f"{method}: MapWarning"), layer_lines, class_lines))
        overlay_axes.imshow(overlay(image, flat, colormap, alpha))
        titles.append(_title(_wrap(f"{method} overlay (flat)"), layer_lines, class_lines))
    else:
        if gradient is not None:
            heat_axes.imshow(guided_image(gradient))
            titles.append(_title(_wrap(f"{method} image"), layer_lines, class_lines))
        else:
            heat_axes.imshow(heatmap_image(_heatmap_to_array(heatmap, size=size), colormap))
            titles.append(_title(_wrap(f"{method} heatmap"), layer_lines, class_lines))
        overlay_axes.imshow(overlay(image, heatmap, colormap, alpha))
        titles.append(_title(_wrap(f"{method} overlay"), layer_lines, class_lines))
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=TITLE_FONTSIZE)
    return max(title.count("\n") + 1 for title in titles)


def draw_warning(axes: Axes, message: str) -> None:
    """Write a :class:`camkit.MapWarning`'s message over a panel, on a light box.

    The layer and class the message starts with are in the panel's title already, so only what
    follows the first ": " is written (wrapped to the panel, at most :data:`WARNING_LINES` lines).
    """
    reason = message.split(": ", 1)[-1]
    text = _wrap(reason, max_lines=WARNING_LINES, points=WARNING_POINTS)
    written = axes.text(
        0.5,
        0.5,
        text,
        transform=axes.transAxes,
        ha="center",
        va="center",
        fontsize=TITLE_FONTSIZE,
        bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 2},
    )
    written.set_in_layout(False)  # inside the panel: the layout must not shrink it to fit


@lru_cache(maxsize=4096)
def text_points(text: str, fontsize: float = TITLE_FONTSIZE) -> float:
    """Width of one line of ``text`` in points, in matplotlib's default font at ``fontsize``."""
    width, _, _ = _TEXT_TO_PATH.get_text_width_height_descent(
        text, FontProperties(size=fontsize), ismath=False
    )
    return float(width)


_TEXT_TO_PATH = TextToPath()
#: A piece of a title that may end a line: up to and including a run of dots or underscores
#: (the joints of a layer name such as ``encoder.layers.encoder_layer_1.ln_1``) or spaces.
_PIECE = re.compile(r".*?(?:[._]+|\s+|$)")


def _wrap(text: str, max_lines: int = 2, points: float = TITLE_POINTS) -> str:
    """Break a title line so it fits a panel: at spaces, dots and underscores, never mid-word.

    Lines are measured in points (:func:`text_points`), not counted in characters, so a title
    never runs into its neighbour's. A piece wider than a panel on its own is cut where it
    fills the line; past ``max_lines`` lines the last one ends with "...".
    """
    lines: list[str] = []
    line = ""
    for piece in (p for p in _PIECE.findall(text) if p):
        if not line or text_points((line + piece).rstrip()) <= points:
            line += piece
        else:
            lines.append(line.rstrip())
            line = piece.lstrip()
        while text_points(line.rstrip()) > points:  # one piece wider than the panel: cut it
            cut = len(line) - 1
            while cut > 1 and text_points(line[:cut]) > points:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
    if line.strip():
        lines.append(line.rstrip())
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and text_points(last + "...") > points:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last.rstrip() + "..."]
    return "\n".join(lines) or text


def add_colorbar(
    figure: Figure, axes: np.ndarray, colormap: Colormap, warned: bool = False
) -> None:
    """A numeric colour bar under the panels: each map is min-max scaled on its own.

    0 is each map's own minimum and 1 its own maximum, not "no evidence" and "strong evidence":
    two maps' colours compare places within each map, never magnitudes between maps. With
    ``warned`` (some map was drawn flat because of a :class:`camkit.MapWarning`), the label also
    says that those flat panels carry a warning instead of a scaled map.
    """
    mappable = ScalarMappable(norm=Normalize(0, 1), cmap=colormap)
    bar = figure.colorbar(
        mappable,
        ax=list(axes.flat),
        location="bottom",
        shrink=0.8,
        aspect=40,
        pad=0.01,
    )
    bar.set_ticks(
        [0, 0.25, 0.5, 0.75, 1],
        labels=["0: its minimum", "0.25", "0.5", "0.75", "1: its maximum"],
    )
    label = "colour: each map min-max scaled on its own"
    if warned:
        label += (
            "\npanels marked MapWarning hold no scaled map: drawn flat, the reason written on them"
        )
    bar.set_label(label, fontsize=TITLE_FONTSIZE)
    bar.ax.tick_params(labelsize=TITLE_FONTSIZE)


def figure_to_png_bytes(figure: Figure, dpi: int = DEFAULT_DPI) -> bytes:
    """Render a figure to PNG bytes, then clear it so its memory is freed at once.

    Args:
        figure: A figure from :func:`explanation_figure` or :func:`grid`; unusable afterwards.
        dpi: Resolution in dots per inch.

    Returns:
        The PNG file's bytes.
    """
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi)
    finally:
        figure.clear()
    return buffer.getvalue()


def figure_to_jpeg_bytes(figure: Figure, dpi: int = NOTEBOOK_DPI, clear: bool = True) -> bytes:
    """Render a figure to JPEG bytes (quality :data:`JPEG_QUALITY`), for notebooks and pages.

    Args:
        figure: A figure from :func:`explanation_figure` or :func:`grid`.
        dpi: Resolution in dots per inch.
        clear: Clear the figure afterwards, freeing its memory (it is then unusable).

    Returns:
        The JPEG file's bytes.
    """
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="jpeg", dpi=dpi, pil_kwargs={"quality": JPEG_QUALITY})
    finally:
        if clear:
            figure.clear()
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename: never a half file.

    A failure (a full disk, Ctrl-C) leaves ``path`` as it was and no temporary file behind.

    Raises:
        OSError: When the file cannot be written.
    """
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except BaseException:
        with suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
