"""The result of :func:`camkit.explain`.

It depends on the drawing modules, never the other way: :mod:`camkit.figures` and
:mod:`camkit.overlay` take any object with an explanation's attributes and import nothing from
here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from camkit.figures import (
    _check_index,
    _guided_of,
    _map_of,
    explanation_figure,
    map_warning,
    warned_heatmap,
)
from camkit.overlay import (
    figure_to_jpeg_bytes,
    figure_to_png_bytes,
    guided_image,
    overlay,
    write_atomically,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Explanation:
    """Heatmaps for every (layer, method) asked, with the prediction they explain.

    Attributes:
        maps: ``(layer, method) -> (B, H, W)`` maps at the input resolution, min-max normalised per
            image to [0, 1] (a constant map is all zeros); ``(B, K, H, W)`` when ``top_k=K``.
        raw: The same keys, ``(B, h, w)`` (or ``(B, K, h, w)``) at the layer's resolution, before
            upsampling and normalisation.
        logits: ``(B, classes)`` model scores.
        probs: ``(B, classes)`` softmax of the logits.
        targets: ``(B, K)`` class index explained per image and rank; ``None`` for a custom score.
        labels: Class names of ``targets``, when the model's categories are known.
        categories: All class names of the model, when known.
        layers: Resolved dotted layer names, in the order asked ("auto" replaced by its choice).
        methods: Method names, in the order asked.
        images: ``(B, 3, H, W)`` pictures in [0, 1] the maps lie over (the preprocessed input).
        names: One name per image (its file name stem, or "image i").
        model_name: The model's name, for titles.
        pretrained: ``False`` when the model has random weights (titles then say so), ``True``
            for trained ones, ``None`` when unknown (a model passed as a plain ``nn.Module``).
        layer_types: Layer -> its module type and place in the model, e.g. "Swish, head".
        guided: ``(layer, method) -> (B, 3, H, W)`` signed gradient images of the guided methods
            (``guided-backprop``, ``guided-gradcam``), ``(B, K, 3, H, W)`` with ``top_k``; their
            ``maps`` entry is the saliency ``max_c |image_c|``, min-max normalised.
        warnings: The :class:`camkit.MapWarning` messages of this explanation, one line each,
            kept even when warnings are filtered or ignored.
        flagged: ``(layer, method) -> {row: message}`` for each warned map, ``row = index * K +
            rank``; :meth:`warning_for` reads it. Figures draw these maps flat with the message;
            ``maps`` and ``raw`` keep what was computed.
    """

    maps: dict[tuple[str, str], torch.Tensor]
    raw: dict[tuple[str, str], torch.Tensor]
    logits: torch.Tensor
    probs: torch.Tensor
    targets: torch.Tensor | None
    labels: list[list[str]] | None
    categories: list[str] | None
    layers: list[str]
    methods: list[str]
    images: torch.Tensor
    names: list[str]
    model_name: str | None = None
    pretrained: bool | None = None
    layer_types: dict[str, str] = field(default_factory=dict)
    guided: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    flagged: dict[tuple[str, str], dict[int, str]] = field(default_factory=dict)

    def _key(self, key: str | tuple[str, str]) -> tuple[str, str]:
        if isinstance(key, tuple):
            if key in self.maps:
                return key
            raise KeyError(
                f"{key!r} was not computed; available: {', '.join(map(repr, self.maps))}"
            )
        if len(self.layers) != 1:
            raise KeyError(
                f"several layers were explained ({', '.join(self.layers)}); index with "
                f"(layer, method), e.g. exp[({self.layers[0]!r}, {key!r})]"
            )
        if (self.layers[0], key) not in self.maps:
            raise KeyError(f"method {key!r} was not computed; available: {', '.join(self.methods)}")
        return (self.layers[0], key)

    def __getitem__(self, key: str | tuple[str, str]) -> torch.Tensor:
        """The normalised maps for ``"method"`` (one layer asked) or ``(layer, method)``."""
        return self.maps[self._key(key)]

    def warning_for(
        self, method: str | None = None, layer: str | None = None, index: int = 0, rank: int = 0
    ) -> str | None:
        """The warning that makes one map misleading, or ``None`` for a sound map.

        Args:
            method: Defaults to the first method asked.
            layer: Defaults to the first layer asked.
            index: Which image of the batch.
            rank: Which explained class, with ``top_k``.
        """
        chosen_layer, chosen_method = self._key(
            (layer or self.layers[0], method or self.methods[0])
        )
        index = _check_index(index, self.images.shape[0])
        return map_warning(self, chosen_layer, chosen_method, index, rank)

    def overlay(
        self,
        method: str | None = None,
        layer: str | None = None,
        index: int = 0,
        rank: int = 0,
        colormap: str = "jet",
        alpha: float = 0.5,
    ) -> Image.Image:
        """The heatmap of image ``index`` blended over it, as a PIL image.

        A warned map (:meth:`warning_for`) is blended flat, at the colour map's low end.
        For a guided method (``guided-backprop``, ``guided-gradcam``) the gradient image itself,
        drawn by :func:`camkit.overlay.guided_image`; ``colormap`` and ``alpha`` do not apply.

        Args:
            method: Defaults to the first method asked.
            layer: Defaults to the first layer asked.
            index: Which image of the batch.
            rank: Which explained class, with ``top_k``.
            colormap: Any matplotlib colormap name.
            alpha: Weight of the heatmap colour, 0 to 1.
        """
        chosen_layer, chosen_method = self._key(
            (layer or self.layers[0], method or self.methods[0])
        )
        index = _check_index(index, self.images.shape[0])
        gradient = _guided_of(self, chosen_layer, chosen_method, index, rank)
        if gradient is not None:
            return guided_image(gradient)
        heatmap = _map_of(self, chosen_layer, chosen_method, index, rank)
        assert heatmap is not None  # _key checked that the map was computed
        if map_warning(self, chosen_layer, chosen_method, index, rank) is not None:
            heatmap = warned_heatmap(heatmap)
        return overlay(self.images[index], heatmap, colormap=colormap, alpha=alpha)

    def figure(self, index: int | None = None, colormap: str = "jet", alpha: float = 0.5) -> Figure:
        """A labelled matplotlib figure: original, heatmaps and overlays per layer and class."""
        return explanation_figure(self, index=index, colormap=colormap, alpha=alpha)

    def save(
        self,
        path: str | os.PathLike[str],
        index: int | None = None,
        colormap: str = "jet",
        alpha: float = 0.5,
    ) -> Path:
        """Write the labelled figure of :meth:`figure` as a PNG file and return its path.

        The file is written under a temporary name and renamed into place, so a failure never
        leaves a half-written PNG.
        """
        target = Path(path)
        png = figure_to_png_bytes(self.figure(index=index, colormap=colormap, alpha=alpha))
        write_atomically(target, png)
        return target

    def _repr_jpeg_(self) -> bytes:
        """The labelled figure as a JPEG, which Jupyter shows when the explanation is displayed."""
        return figure_to_jpeg_bytes(self.figure())

    def __repr__(self) -> str:
        """A one-line summary instead of the tensors."""
        batch = self.logits.shape[0]
        warned = f", warnings={len(self.warnings)}" if self.warnings else ""
        return (
            f"Explanation(model={self.model_name!r}, images={batch}, layers={self.layers}, "
            f"methods={self.methods}{warned})"
        )
