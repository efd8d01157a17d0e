"""camlens: why did the classifier decide that? Grad-CAM-family heatmaps for any PyTorch model."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# Importing these registers the built-in, perturbation, smoothing and guided methods.
from camlens import _ablation, _methods, _perturbation, _smoothing  # noqa: F401
from camlens import metrics as metrics  # the submodule: camlens.metrics.deletion(...)
from camlens._engine import explain
from camlens._errors import CamlensError, LayerNotFoundError, MethodNotFoundError
from camlens._explanation import Explanation
from camlens._inputs import Preprocessing
from camlens._inspect import list_layers
from camlens._layers import LayerInfo
from camlens._models import LoadedModel, load_model
from camlens._registry import LayerTensors, list_methods, register_method
from camlens._visualize import grid, overlay

try:
    __version__ = version("camlens")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "CamlensError",
    "Explanation",
    "LayerInfo",
    "LayerNotFoundError",
    "LayerTensors",
    "LoadedModel",
    "MethodNotFoundError",
    "Preprocessing",
    "__version__",
    "explain",
    "grid",
    "list_layers",
    "list_methods",
    "load_model",
    "overlay",
    "register_method",
]
