"""camkit: why did the classifier decide that? Grad-CAM-family heatmaps for any PyTorch model."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# Importing these registers the built-in, perturbation, smoothing and guided methods.
from camkit import _ablation, _perturbation, _smoothing, cam  # noqa: F401
from camkit import metrics as metrics  # the submodule: camkit.metrics.deletion(...)
from camkit._engine import explain
from camkit._errors import CamkitError, LayerNotFoundError, MethodNotFoundError
from camkit._explanation import Explanation
from camkit._inputs import Preprocessing
from camkit._inspect import list_layers
from camkit.layers import LayerInfo
from camkit._models import LoadedModel, load_model
from camkit._registry import LayerTensors, list_methods, register_method
from camkit.overlay import grid, overlay

try:
    __version__ = version("camkit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "CamkitError",
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
