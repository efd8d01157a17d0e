"""camkit: learn and use Grad-CAM and Grad-CAM++ on PyTorch image classifiers.

The core a lesson opens: :mod:`camkit.hooks` (capture activations and gradients),
:mod:`camkit.cam` (the formulas), :mod:`camkit.layers` (find a layer), :mod:`camkit.overlay`
(colour maps and overlays). :func:`explain` runs them all in one forward and one gradient call.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

# Importing these registers the perturbation methods (the core formulas register in camkit.cam,
# smoothing and the guided methods through camkit.api).
from camkit import ablation, perturbation  # noqa: F401
from camkit._errors import (
    CamkitError,
    LayerNotFoundError,
    MapWarning,
    MethodNotFoundError,
    WeightsUnavailableError,
)
from camkit._inputs import Preprocessing
from camkit.api import explain
from camkit.cam import LayerTensors, list_methods, register_method
from camkit.explanation import Explanation
from camkit.layers import LayerInfo, list_layers
from camkit.models import LoadedModel, load_model

# The function wins over the module of the same name: camkit.overlay(picture, heatmap).
# Its module's other functions: from camkit.overlay import heatmap_image.
from camkit.overlay import overlay
from camkit.samples import sample_boxes, sample_image, sample_image_path

try:
    __version__ = version("camkit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

#: Parts imported on first use, so that ``import camkit`` stays cheap.
_LAZY = {
    "Explorer": ("camkit.widgets", "Explorer"),
    "export_explorer": ("camkit.explorer_page", "export_explorer"),
    "grid": ("camkit.figures", "grid"),
    "metrics": ("camkit.metrics", None),
    "compat": ("camkit.compat", None),
    "exercises": ("camkit.exercises", None),
}


#: Submodules a learner reaches as attributes (``camkit.overlay.overlay(...)``), imported on use.
_SUBMODULES = ("hooks", "cam", "layers", "figures", "engine", "models", "classroom", "samples")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"camkit.{name}")
    if name not in _LAZY:
        raise AttributeError(f"module 'camkit' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


__all__ = [
    "CamkitError",
    "Explanation",
    "Explorer",
    "LayerInfo",
    "LayerNotFoundError",
    "LayerTensors",
    "LoadedModel",
    "MapWarning",
    "MethodNotFoundError",
    "Preprocessing",
    "WeightsUnavailableError",
    "__version__",
    "explain",
    "export_explorer",
    "grid",
    "list_layers",
    "list_methods",
    "load_model",
    "overlay",
    "register_method",
    "sample_boxes",
    "sample_image",
    "sample_image_path",
]
