"""Map warnings: find the heatmaps that would mislead, and say why in one line.

The engine calls these checks on what one pass captured; :func:`camkit.explain` issues each
message as a :class:`camkit.MapWarning` and keeps it in :attr:`camkit.Explanation.warnings`.
Three checks look at one map (one layer, method, picture and class); two look at the model:

- every gradient at the layer is exactly zero (the score does not depend on the layer);
- the map is zero everywhere after the method's ReLU (no positive evidence at this layer);
- the map's range is at float rounding-noise level compared with the terms that were summed
  (min-max scaling would paint that noise at full scale);
- the model's outputs are probabilities (it ends in a softmax);
- the model is in training mode with a module that behaves differently there.

A warned map is drawn flat with its message by :mod:`camkit.figures`.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from camkit._errors import MapWarning

#: A map whose range (max - min) is at most this fraction of the size of the terms summed into
#: it is rounding noise. float32 keeps 24 bits (unit roundoff 6e-8); a sum of n terms is off by
#: about sqrt(n) of those times the sum of the terms' sizes (6e-8 x 45 = 2.7e-6 for the 2048
#: channels of ResNet-50), and the activations and gradients bring their own last-bit errors.
#: Measured: recomputing maps in float64 moves them by at most 1e-6 of that size; the
#: smallest range of a sound map over the sample pictures, the test architectures and every
#: method is far above 1e-5 (see tests/test_map_warnings.py and the README's Warnings section).
NOISE_RATIO = 1e-5

#: Rows whose values all lie in [0, 1] and sum to 1 within this are taken for probabilities.
PROBABILITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Flag:
    """One warning and the maps it makes flat.

    Attributes:
        message: The one-line warning.
        maps: ``(layer, method, row)`` of each map it concerns, with ``row = image * K + rank``;
            empty for a warning about the whole model.
    """

    message: str
    maps: tuple[tuple[str, str, int], ...] = ()


def row_names(
    indices: torch.Tensor | None,
    labels: list[list[str]] | None,
    categories: Sequence[str] | None,
    names: Sequence[str],
) -> list[str]:
    """A name per (image, class) row: "class 'tabby' (281)", with the image when several."""
    batch = len(names)
    classes = int(indices.shape[1]) if indices is not None and indices.ndim == 2 else 1
    result = []
    for image in range(batch):
        for rank in range(classes):
            if indices is None:
                text = "the custom target"
            else:
                index = int(indices[image, rank] if indices.ndim == 2 else indices[image])
                name = labels[image][rank] if labels is not None else None
                if name is None and categories is not None and 0 <= index < len(categories):
                    name = categories[index]
                text = f"class {name!r} ({index})" if name is not None else f"class {index}"
            result.append(f"{text} of {names[image]!r}" if batch > 1 else text)
    return result


# --------------------------------------------------------------------------------------------
# The size of the terms each formula sums, for the rounding-noise check
# --------------------------------------------------------------------------------------------


def _channel_weights(method: str, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor | None:
    """The channel weights w (N, C) of the methods ``ReLU(sum_c w_c A_c)`` of camkit.cam."""
    if method == "gradcam":
        return g.mean(dim=(2, 3))
    if method == "xgradcam":
        sums = a.sum(dim=(2, 3), keepdim=True)
        safe = torch.where(sums != 0, sums, torch.ones_like(sums))
        return torch.where(sums != 0, a * g / safe, 0).sum(dim=(2, 3))
    if method == "gradcam++":
        g2 = g.pow(2)
        denominator = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * (g2 * g)
        alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        return (alpha * torch.relu(g)).sum(dim=(2, 3))
    return None


def term_sizes(method: str, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor | None:
    """``sum_c |term_c|`` at each position (N, h, w): the size of what the formula adds up.

    ``None`` for a method whose terms camkit does not know (perturbation methods, methods
    registered by the user); their noise check compares the range with the map's own peak.
    """
    if method in ("eigencam", "eigengradcam"):
        features = a if method == "eigencam" else (a * g if g is not None else None)
        if features is None:
            return None
        # The projection on a unit direction is at most the centred position's length.
        centred = features - features.mean(dim=(2, 3), keepdim=True)
        return centred.norm(dim=1)
    if g is None:
        return None
    weights = _channel_weights(method, a, g)
    if weights is not None:
        return torch.einsum("nc,nchw->nhw", weights.abs(), a.abs())
    if method == "hirescam":
        return (g * a).abs().sum(dim=1)
    if method == "gradcam-elementwise":
        return torch.relu(g * a).sum(dim=1)
    if method == "layercam":
        return (torch.relu(g) * a.abs()).sum(dim=1)
    return None


# --------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------


def _what_to_do_for_a_layer() -> str:
    return "explain another layer or method, or another class"


def zero_gradient_rows(g: torch.Tensor) -> list[int]:
    """Rows of (R, C, h, w) gradients that are exactly zero everywhere."""
    return [int(r) for r in torch.nonzero(g.flatten(1).abs().amax(dim=1) == 0).flatten()]


def layer_flags(
    layer: str,
    raws: dict[str, torch.Tensor],
    a: torch.Tensor,
    g: torch.Tensor | None,
    gradient_methods: set[str],
    rows: Sequence[str],
) -> list[Flag]:
    """The warnings about one layer's maps.

    Args:
        layer: The layer's name.
        raws: Method -> its raw maps (R, h, w), R = images x classes.
        a: The activations repeated per row, (R, C, h, w), float32.
        g: The gradients (R, C, h, w), or ``None`` when no method needs them.
        gradient_methods: The methods of ``raws`` that read gradients.
        rows: A name per row (:func:`row_names`).
    """
    flags: list[Flag] = []
    zero_rows = set(zero_gradient_rows(g)) if g is not None and gradient_methods else set()
    asked = [m for m in raws if m in gradient_methods]
    for row in sorted(zero_rows):
        flags.append(
            Flag(
                f"layer {layer!r}, {rows[row]}: every gradient of the score at this layer is "
                f"exactly zero, so {', '.join(asked)} ha{'s' if len(asked) == 1 else 've'} "
                "nothing to weigh and the map is blank; the score does not depend on this layer "
                "(an untrained or zero-initialised classifier head, dead ReLUs, a detached path): "
                "check the model's weights, or explain another layer",
                tuple((layer, method, row) for method in asked),
            )
        )
    for method, raw in raws.items():
        sizes = term_sizes(method, a, g) if raw.shape[0] == a.shape[0] else None
        flat = raw.flatten(1).float()
        peak, low = flat.amax(dim=1), flat.amin(dim=1)
        scale = flat.abs().amax(dim=1)
        if sizes is not None:
            scale = torch.maximum(scale, sizes.flatten(1).float().amax(dim=1))
        for row in range(flat.shape[0]):
            if method in gradient_methods and row in zero_rows:
                continue
            where = f"{method} at layer {layer!r}, {rows[row]}"
            span = float(peak[row] - low[row])
            if float(peak[row]) <= 0 and float(low[row]) >= 0 and method.startswith("guided"):
                message = (
                    f"{where}: the gradient image is zero everywhere, so the score does not "
                    "depend on the input's pixels here (drawn flat); check the model's weights"
                )
            elif float(peak[row]) <= 0 and float(low[row]) >= 0:
                message = (
                    f"{where}: the map is zero everywhere after the ReLU, so no position gives "
                    "positive evidence for this class at this layer (drawn flat); "
                    f"{_what_to_do_for_a_layer()}"
                )
            elif span <= NOISE_RATIO * float(scale[row]):
                size = float(scale[row])
                what = (
                    "the map is constant"
                    if span == 0
                    else f"the map's range ({span:.1e}) is {span / size:.0e} of the size of the "
                    f"terms summed into it ({size:.1e}), rounding-noise level (under "
                    f"{NOISE_RATIO:.0e})"
                )
                message = (
                    f"{where}: {what}, so min-max scaling would paint float noise at full scale "
                    f"(drawn flat); {_what_to_do_for_a_layer()}"
                )
            else:
                continue
            flags.append(Flag(message, ((layer, method, row),)))
    return flags


def probability_flag(
    logits: torch.Tensor,
    model_name: str | None,
    rows: Sequence[str],
    indices: torch.Tensor | None,
) -> Flag | None:
    """A warning when every output row is non-negative and sums to 1: the model's softmax.

    Args:
        logits: The model's (B, classes) outputs.
        model_name: For the message.
        rows: The explained rows' names (:func:`row_names`); the first is named.
        indices: (B, K) explained classes, or ``None`` for a custom target.
    """
    if logits.ndim != 2 or logits.shape[1] < 2 or logits.shape[0] == 0:
        return None
    values = logits.detach().double()
    if values.min() < 0 or (values.sum(dim=1) - 1).abs().max() > PROBABILITY_TOLERANCE:
        return None
    name = f"model {model_name!r}" if model_name else "the model"
    explained = rows[0] if rows else "the target"
    if indices is not None and indices.numel():
        explained += f", p = {float(values[0, int(indices.flatten()[0])]):.4g}"
    if len(rows) > 1:
        explained += f" (and {len(rows) - 1} more)"
    return Flag(
        f"{name}, {explained}: every output row is non-negative and sums to 1, so the model "
        "ends in a softmax and camkit explains a probability, whose gradient vanishes as it "
        "nears 1 and mixes in the other classes' scores; explain the logits: remove the final "
        "softmax (for an nn.Sequential, model[:-1])"
    )


#: Modules whose output depends on ``training``; any module whose class name says it drops
#: (timm's DropPath, torchvision's StochasticDepth) is counted too.
_MODE_DEPENDENT: tuple[type[nn.Module], ...] = (
    nn.modules.dropout._DropoutNd,
    nn.modules.batchnorm._BatchNorm,
    nn.RReLU,
)


def _behaves_differently_in_training(module: nn.Module) -> bool:
    if isinstance(module, _MODE_DEPENDENT):
        return True
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return bool(module.track_running_stats)
    if isinstance(module, (nn.MultiheadAttention, nn.RNNBase)):
        return float(module.dropout) > 0
    name = type(module).__name__.lower()
    return "drop" in name or "stochasticdepth" in name


def training_flag(network: nn.Module, model_name: str | None) -> Flag | None:
    """A warning when a module that behaves differently in training is in training mode."""
    for module_name, module in network.named_modules():
        if module.training and _behaves_differently_in_training(module):
            name = f"model {model_name!r}" if model_name else "the model"
            return Flag(
                f"{name} is in training mode ({module_name or 'the model'!r} is a "
                f"{type(module).__name__}, which behaves differently there); camkit explained it "
                "in evaluation mode and left your model as it was; call model.eval() before "
                "explaining and predicting to silence this"
            )
    return None


# --------------------------------------------------------------------------------------------
# Keeping and issuing them
# --------------------------------------------------------------------------------------------


def flagged_maps(flags: Sequence[Flag]) -> dict[tuple[str, str], dict[int, str]]:
    """``(layer, method) -> {row: message}``, the first message of each warned map."""
    result: dict[tuple[str, str], dict[int, str]] = {}
    for flag in flags:
        for layer, method, row in flag.maps:
            result.setdefault((layer, method), {}).setdefault(row, flag.message)
    return result


def messages(flags: Sequence[Flag]) -> tuple[str, ...]:
    """The messages, each once, in order."""
    return tuple(dict.fromkeys(flag.message for flag in flags))


def issue(texts: Sequence[str]) -> None:
    """Issue each message as a :class:`MapWarning`, every time, pointing at the caller's line.

    The filename and line are those of the first frame outside camkit (the user's call), so the
    warning shows the user's own line; the module is camkit's, so filters on ``camkit`` (and
    pytest's ``error::UserWarning:camkit``) apply. A fresh registry per call shows a warning
    each time the call is repeated (a notebook cell run twice), not only the first time.
    """
    if not texts:
        return
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("camkit"):
        frame = frame.f_back
    for text in texts:
        warnings.warn_explicit(
            MapWarning(text),
            MapWarning,
            frame.f_code.co_filename,
            frame.f_lineno,
            module="camkit",
            registry={},
        )
