"""Figures of explanations: one labelled row per (picture, layer, class, method), and model grids.

Every figure has three columns, the picture, the method's heatmap and its overlay, so it is
7.8 in (936 px at 120 dpi) wide however many methods there are: a notebook column shows it at
full size and its 10 pt titles stay readable on a projector. Methods are stacked, not lined up.

Titles name the model, the layer, the method, the class explained and the model's probability
for it. The drawing pieces (colour maps, overlays, panels) are :mod:`camkit.overlay`'s. A map
with a :class:`camkit.MapWarning` is drawn flat, at the colour map's low end, with the warning's
text (:func:`map_warning`, :func:`warned_heatmap`).

This module takes any object with an explanation's attributes (:class:`ExplanationLike`) and
imports nothing from :mod:`camkit.explanation`, which imports it: the dependency goes one way.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Protocol, cast

import torch
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

from camkit._errors import ArgumentTypeError, InputError
from camkit.overlay import (
    _check_alpha,
    add_colorbar,
    draw_row,
    fit_rows,
    get_colormap,
    new_figure,
)

__all__ = [
    "ExplanationLike",
    "explanation_figure",
    "grid",
    "is_warned",
    "map_warning",
    "warned_heatmap",
]


class ExplanationLike(Protocol):
    """What the figures read of a :class:`camkit.Explanation`.

    The optional attributes (``targets``, ``labels``, ``categories``, ``probs``, ``names``,
    ``model_name``, ``pretrained``, ``layer_types``, ``guided``, ``flagged``) are read with
    ``getattr`` and a default, so a minimal object draws too.
    """

    maps: dict[tuple[str, str], torch.Tensor]
    layers: list[str]
    methods: list[str]
    images: torch.Tensor


def _check_index(index: int, batch: int, name: str = "index") -> int:
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise ArgumentTypeError(f"`{name}` must be an int, got {type(index).__name__}")
    if not -batch <= index < batch:
        raise InputError(
            f"`{name}` {index} is out of range for a batch of {batch} image(s); "
            f"use 0 to {batch - 1}"
        )
    return int(index) % batch


def _batch_size(exp: ExplanationLike) -> int:
    return int(exp.images.shape[0])


def _classes_per_image(exp: ExplanationLike) -> int:
    """Return K, the number of classes explained per picture."""
    targets = getattr(exp, "targets", None)
    if targets is not None:
        return int(targets.shape[1]) if targets.ndim == 2 else 1
    first = next(iter(exp.maps.values()))
    return int(first.shape[1]) if first.ndim == 4 else 1


def _map_of(
    exp: ExplanationLike, layer: str, method: str, index: int, rank: int
) -> torch.Tensor | None:
    """Return the (H, W) map of one picture and one explained class, or None if not computed."""
    maps = exp.maps.get((layer, method))
    if maps is None:
        return None
    return maps[index, rank] if maps.ndim == 4 else maps[index]


def _guided_of(
    exp: ExplanationLike, layer: str, method: str, index: int, rank: int
) -> torch.Tensor | None:
    """Return the (C, H, W) gradient image of a guided method, or None for other methods."""
    images = getattr(exp, "guided", {}).get((layer, method))
    if images is None:
        return None
    return images[index, rank] if images.ndim == 5 else images[index]


def map_warning(
    exp: ExplanationLike, layer: str, method: str, index: int = 0, rank: int = 0
) -> str | None:
    """The :class:`camkit.MapWarning` message of one map, or ``None`` when it has none.

    Draw a warned map flat (:func:`warned_heatmap`) with this text, never in full-scale colour.

    Args:
        exp: The explanation.
        layer: The layer's name, one of ``exp.layers``.
        method: The method's name, one of ``exp.methods``.
        index: Which picture of the batch.
        rank: Which explained class, with ``top_k``.
    """
    flagged = getattr(exp, "flagged", None) or {}
    rows = flagged.get((layer, method))
    if not rows:
        return None
    return cast("str | None", rows.get(index * _classes_per_image(exp) + rank))


def is_warned(exp: ExplanationLike, layer: str, method: str, index: int = 0, rank: int = 0) -> bool:
    """Whether one map has a :class:`camkit.MapWarning` (see :func:`map_warning`)."""
    return map_warning(exp, layer, method, index, rank) is not None


def warned_heatmap(heatmap: torch.Tensor) -> torch.Tensor:
    """What a warned map is drawn as: flat, all zeros, the colour map's low end."""
    return torch.zeros_like(heatmap)


def _class_text(exp: ExplanationLike, index: int, rank: int) -> str:
    """Return "tabby 54.3%" for the class explained at (index, rank), or the best we know."""
    targets = getattr(exp, "targets", None)
    if targets is None:
        return "custom target"
    target = targets[index, rank] if targets.ndim == 2 else targets[index]
    class_index = int(target)
    labels = getattr(exp, "labels", None)
    name = None
    if labels is not None:
        name = labels[index][rank]
    if name is None:
        categories = getattr(exp, "categories", None)
        if categories is not None and 0 <= class_index < len(categories):
            name = categories[class_index]
    text = f"{name} ({class_index})" if name is not None else f"class {class_index}"
    probs = getattr(exp, "probs", None)
    if probs is not None and 0 <= class_index < probs.shape[-1]:
        text += f" {float(probs[index, class_index]):.1%}"
    return text


def _model_text(exp: ExplanationLike, name: str | None = None) -> str:
    """The model's name, and "random weights" when they are."""
    model = name or getattr(exp, "model_name", None) or "model"
    return f"{model} (random weights)" if getattr(exp, "pretrained", None) is False else model


def _layer_text(exp: ExplanationLike, layer: str) -> str:
    """The layer's name with its type and place, e.g. "_swish (Swish, head)"."""
    about = getattr(exp, "layer_types", {}).get(layer)
    return f"{layer} ({about})" if about else layer


def explanation_figure(
    exp: ExplanationLike,
    index: int | None = None,
    colormap: str | Colormap = "jet",
    alpha: float = 0.5,
) -> Figure:
    """Draw an explanation: one row per (picture, layer, explained class, method).

    Columns: the picture, the method's heatmap, the method's overlay; the rows of one picture,
    layer and class follow each other, one per method. Titles name the model, the layer, the
    method, the class explained and the model's probability for it. The figure is 7.8 in wide
    whatever the number of methods, so a notebook shows it at full size.

    Args:
        exp: The explanation to draw.
        index: Which picture of the batch to draw; ``None`` draws them all.
        colormap: A matplotlib colormap name or object.
        alpha: Weight of the heatmap colour in the overlays, in [0, 1].

    Returns:
        A figure on the Agg canvas, not registered with pyplot; save it with ``savefig`` or
        :func:`figure_to_png_bytes`.

    Raises:
        ValueError: If ``index`` is out of range, ``alpha`` outside [0, 1] or the colormap unknown.
    """
    weight = _check_alpha(alpha)
    cmap = get_colormap(colormap)
    batch = _batch_size(exp)
    indices = range(batch) if index is None else [_check_index(index, batch)]
    classes = _classes_per_image(exp)
    rows = [
        (i, layer, rank, method)
        for i in indices
        for layer in exp.layers
        for rank in range(classes)
        for method in exp.methods
        if _map_of(exp, layer, method, i, rank) is not None
    ]
    figure, axes = new_figure(max(len(rows), 1))
    model = _model_text(exp)
    names = getattr(exp, "names", None)
    lines, warned = 1, False
    for row, (i, layer, rank, method) in enumerate(rows):
        picture = names[i] if names else f"image {i}"
        # A single picture's default name ("image 0") says nothing, so it is left out.
        heading = f"{model} · {picture}" if batch > 1 or picture != f"image {i}" else model
        warning = map_warning(exp, layer, method, i, rank)
        warned = warned or warning is not None
        lines = max(
            lines,
            draw_row(
                axes[row],
                exp.images[i],
                method,
                cast("torch.Tensor", _map_of(exp, layer, method, i, rank)),
                heading=heading,
                layer=_layer_text(exp, layer),
                class_text=_class_text(exp, i, rank),
                colormap=cmap,
                alpha=weight,
                gradient=_guided_of(exp, layer, method, i, rank),
                warning=warning,
            ),
        )
    fit_rows(figure, max(len(rows), 1), lines, colorbar_lines=2 if warned else 1)
    add_colorbar(figure, axes, cmap, warned=warned)
    return figure


def grid(
    explanations: ExplanationLike | Sequence[ExplanationLike],
    names: Sequence[str] | None = None,
    index: int = 0,
    colormap: str | Colormap = "jet",
    alpha: float = 0.5,
) -> Figure:
    """Compare explanations side by side, e.g. one per model, in one labelled figure.

    One row per (explanation, layer, method); columns: the picture, the method's heatmap, its
    overlay (a method missing from an explanation has no row for it). The first explained class
    of picture ``index`` is drawn. Titles name the model, the layer, the method, the class and
    its probability.

    Args:
        explanations: One explanation or a list of them.
        names: Row labels, one per explanation; default each explanation's ``model_name``.
        index: Which picture of each batch to draw.
        colormap: A matplotlib colormap name or object.
        alpha: Weight of the heatmap colour in the overlays, in [0, 1].

    Returns:
        A figure on the Agg canvas, not registered with pyplot.

    Raises:
        ValueError: If the list is empty, ``names`` has the wrong length, ``index`` is out of
            range, ``alpha`` is outside [0, 1] or the colormap unknown.
    """
    weight = _check_alpha(alpha)
    cmap = get_colormap(colormap)
    items: list[ExplanationLike] = (
        [cast("ExplanationLike", explanations)]
        if hasattr(explanations, "maps")
        else list(cast("Sequence[ExplanationLike]", explanations))
    )
    if not items:
        raise InputError("`explanations` is empty; pass at least one Explanation")
    if names is None:
        labels = [getattr(exp, "model_name", None) or f"model {n}" for n, exp in enumerate(items)]
    else:
        if isinstance(names, str):
            names = [names]
        labels = [str(name) for name in names]
        if len(labels) != len(items):
            raise InputError(
                f"`names` has {len(labels)} entries for {len(items)} explanation(s); "
                "give one name per explanation or leave it out"
            )
    indices = [_check_index(index, _batch_size(exp)) for exp in items]
    methods: list[str] = []
    for exp in items:
        methods.extend(m for m in exp.methods if m not in methods)
    rows = [
        (n, layer, method)
        for n, exp in enumerate(items)
        for layer in exp.layers
        for method in methods
        if _map_of(exp, layer, method, indices[n], 0) is not None
    ]
    figure, axes = new_figure(max(len(rows), 1))
    lines, warned = 1, False
    for row, (n, layer, method) in enumerate(rows):
        exp, i = items[n], indices[n]
        warning = map_warning(exp, layer, method, i, 0)
        warned = warned or warning is not None
        lines = max(
            lines,
            draw_row(
                axes[row],
                exp.images[i],
                method,
                cast("torch.Tensor", _map_of(exp, layer, method, i, 0)),
                heading=_model_text(exp, labels[n]),
                layer=_layer_text(exp, layer),
                class_text=_class_text(exp, i, 0),
                colormap=cmap,
                alpha=weight,
                gradient=_guided_of(exp, layer, method, i, 0),
                warning=warning,
            ),
        )
    fit_rows(figure, max(len(rows), 1), lines, colorbar_lines=2 if warned else 1)
    add_colorbar(figure, axes, cmap, warned=warned)
    return figure
