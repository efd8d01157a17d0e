"""The gradient-based and activation-based CAM methods, each a pure function of captured tensors.

Every function takes the :class:`LayerTensors` of one layer, with activations
``A`` and gradients ``G`` of shape (N, C, h, w), and returns a raw map of shape (N, h, w), after the
final ReLU and before upsampling and normalisation (the engine does both).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from camkit._errors import InputError, MethodNotFoundError

__all__ = [
    "LayerTensors",
    "Method",
    "eigencam",
    "eigengradcam",
    "get_method",
    "gradcam",
    "gradcam_elementwise",
    "gradcam_plus_plus",
    "hirescam",
    "layercam",
    "list_methods",
    "register_method",
    "xgradcam",
]


# --------------------------------------------------------------------------------------------
# The registry: methods by name
# --------------------------------------------------------------------------------------------

#: A method maps the captured tensors of one layer (a :class:`LayerTensors`, or a
#: :class:`camkit.engine.PerturbationContext` for perturbation methods) to a raw (N, h, w) map.
MethodFunction = Callable[[Any], torch.Tensor]


@dataclass(frozen=True)
class LayerTensors:
    """What one forward and one backward pass captured at one layer.

    Attributes:
        activations: The layer's output, (N, C, h, w).
        gradients: d(score)/d(activations), (N, C, h, w); ``None`` for gradient-free methods.
    """

    activations: torch.Tensor
    gradients: torch.Tensor | None


@dataclass(frozen=True)
class Method:
    """A registered CAM method.

    Attributes:
        name: The name users pass to ``explain(methods=...)``.
        function: The function computing the raw map.
        needs_gradients: Whether ``function`` reads ``LayerTensors.gradients``.
        perturbation: Whether ``function`` takes a
            :class:`camkit.engine.PerturbationContext` and runs the
            model on perturbed inputs, returning (B*K, h, w) maps in (image, class) order.
        own_pass: Whether ``explain`` computes the method in passes of its own (the guided
            methods, ``smoothgradcam++``; see :mod:`camkit.smoothing`), never by calling
            ``function`` on one layer's tensors.
    """

    name: str
    function: MethodFunction
    needs_gradients: bool
    perturbation: bool = False
    own_pass: bool = False


_METHODS: dict[str, Method] = {}


def register_method(
    name: str, *, needs_gradients: bool = True, perturbation: bool = False, own_pass: bool = False
) -> Callable[[MethodFunction], MethodFunction]:
    """Register a CAM method under ``name`` (a decorator).

    Args:
        name: Lower-case name, unique among registered methods.
        needs_gradients: False for methods that only read activations.
        perturbation: True for methods that take a
            :class:`camkit.engine.PerturbationContext` and run the
            model again (they never need gradients).
        own_pass: True for methods ``explain`` computes in passes of its own.

    Returns:
        The decorator, which returns the function unchanged.

    Raises:
        ValueError: If ``name`` is already registered.
    """

    def decorator(function: MethodFunction) -> MethodFunction:
        if name in _METHODS:
            raise InputError(f"method {name!r} is already registered; pick another name")
        _METHODS[name] = Method(
            name, function, needs_gradients and not perturbation, perturbation, own_pass
        )
        return function

    return decorator


def list_methods() -> list[str]:
    """Return the names of all registered CAM methods, sorted."""
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    """Return the registered method called ``name`` (case-insensitive).

    Raises:
        ValueError: If no method has that name; the message lists the closest names.
    """
    if not isinstance(name, str):
        raise MethodNotFoundError(f"`methods` entries must be strings, got {type(name).__name__}")
    key = name.strip().lower()
    if key in _METHODS:
        return _METHODS[key]
    close = difflib.get_close_matches(key, list(_METHODS), n=3, cutoff=0.5)
    hint = f" closest: {', '.join(repr(c) for c in close)}." if close else ""
    raise MethodNotFoundError(
        f"unknown method {name!r};{hint} Known methods: {', '.join(list_methods())}."
    )


# --------------------------------------------------------------------------------------------
# The formulas
# --------------------------------------------------------------------------------------------

# Added to denominators that are zero only when the map is zero anyway.
_EPS = 1e-7


def _gradients(tensors: LayerTensors) -> torch.Tensor:
    if tensors.gradients is None:  # pragma: no cover - the engine always passes them
        raise RuntimeError("this method needs gradients; the engine did not capture any")
    return tensors.gradients


def _weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_k w_k A_k) for channel weights (N, C)."""
    return torch.relu(torch.einsum("nc,nchw->nhw", weights, activations))


@register_method("gradcam")
def gradcam(tensors: LayerTensors) -> torch.Tensor:
    """Grad-CAM: channel weights are the spatially averaged gradients.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", ICCV 2017, https://arxiv.org/abs/1610.02391.
    ``L = ReLU(sum_k w_k A_k)`` with ``w_k = mean_ij dy/dA_k,ij``.
    """
    weights = _gradients(tensors).mean(dim=(2, 3))
    return _weighted_sum(weights, tensors.activations)


@register_method("gradcam++")
def gradcam_plus_plus(tensors: LayerTensors) -> torch.Tensor:
    """Grad-CAM++: pixel-wise weighting of positive gradients.

    Chattopadhay et al., "Grad-CAM++: Improved Visual Explanations for Deep Convolutional
    Networks", WACV 2018, https://arxiv.org/abs/1710.11063, Eq. 19. The paper explains
    ``Y = exp(S)``, with ``S`` the class's pre-softmax score, so that the higher derivatives of
    ``Y`` are powers of the first one of ``S``. With ``G = dS/dA``:
    ``alpha = G^2 / (2 G^2 + sum_ab A_ab G^3)``, ``w_k = sum_ij alpha_ij ReLU(G_ij)``,
    ``L = ReLU(sum_k w_k A_k)``.
    The common factor ``exp(S)`` of ``w_k`` is dropped: it does not change the normalised map.

    Where the denominator is 0, alpha is 0. Where ``G = 0`` the numerator is 0 too (0 / 0); the
    choice does not matter there, since the position's term ``alpha ReLU(G)`` is 0. Where
    ``2 + G sum_ab A_ab = 0`` with ``G != 0``, alpha has a pole: no finite value is right (it
    tends to plus or minus infinity on either side). Where ``G < 0`` this does not matter
    (``ReLU(G) = 0``); where ``G > 0`` it needs ``sum_ab A_ab < 0``, a signed layer such as a
    BatchNorm's output. Departure: the authors' code
    (https://github.com/adityac94/Grad_CAM_plus_plus, ``misc/utils.py``) replaces such a
    denominator by 1, giving ``alpha = exp(S) G^2``, a number that depends on the units of the
    score and means nothing; we set alpha to 0 there too, so that the position drops out of the
    weight instead of deciding it. Near the pole alpha is still huge: explain a layer after its
    activation function, where ``sum_ab A_ab >= 0`` and alpha lies in (0, 1/2] wherever ``G > 0``.
    """
    grads = _gradients(tensors)
    activations = tensors.activations
    grads_2 = grads.pow(2)
    grads_3 = grads_2 * grads
    sum_activations = activations.sum(dim=(2, 3), keepdim=True)
    denominator = 2 * grads_2 + sum_activations * grads_3
    nonzero = denominator != 0
    safe = torch.where(nonzero, denominator, torch.ones_like(denominator))
    alpha = torch.where(nonzero, grads_2 / safe, torch.zeros_like(grads_2))
    weights = (alpha * torch.relu(grads)).sum(dim=(2, 3))
    return _weighted_sum(weights, activations)


@register_method("xgradcam")
def xgradcam(tensors: LayerTensors) -> torch.Tensor:
    """XGrad-CAM: gradients weighted by the normalised activation map.

    Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs",
    BMVC 2020, https://arxiv.org/abs/2008.02312, Eq. 13:
    ``w_k = sum_ij (A_k,ij / sum_ab A_k,ab) dy/dA_k,ij``, ``L = ReLU(sum_k w_k A_k)``.
    A channel whose activations sum to 0 gets weight 0.
    """
    grads = _gradients(tensors)
    activations = tensors.activations
    sums = activations.sum(dim=(2, 3), keepdim=True)
    safe_sums = torch.where(sums != 0, sums, torch.ones_like(sums))
    weights = torch.where(sums != 0, activations * grads / safe_sums, 0).sum(dim=(2, 3))
    return _weighted_sum(weights, activations)


@register_method("hirescam")
def hirescam(tensors: LayerTensors) -> torch.Tensor:
    """HiResCAM: element-wise product of gradients and activations, summed over channels.

    Draelos and Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
    convolutional neural networks", 2020, https://arxiv.org/abs/2011.08891:
    ``L = sum_k G_k * A_k``. Departure: we apply Grad-CAM's final ReLU so that, like every
    other camkit map, it shows the evidence for the class (the sign is kept in no method).
    """
    return torch.relu((_gradients(tensors) * tensors.activations).sum(dim=1))


@register_method("gradcam-elementwise")
def gradcam_elementwise(tensors: LayerTensors) -> torch.Tensor:
    """Element-wise Grad-CAM: ReLU of each gradient-activation product, then summed.

    The variant of HiResCAM (Draelos and Carin 2020, https://arxiv.org/abs/2011.08891) that
    pytorch-grad-cam calls GradCAMElementWise: ``L = sum_k ReLU(G_k * A_k)``, so negative
    contributions of one channel cannot cancel positive ones of another.
    """
    return torch.relu(_gradients(tensors) * tensors.activations).sum(dim=1)


@register_method("layercam")
def layercam(tensors: LayerTensors) -> torch.Tensor:
    """LayerCAM: activations weighted pixel by pixel by their positive gradients.

    Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
    IEEE TIP 2021, https://doi.org/10.1109/TIP.2021.3089943:
    ``L = ReLU(sum_k ReLU(G_k) * A_k)``.
    """
    return torch.relu((torch.relu(_gradients(tensors)) * tensors.activations).sum(dim=1))


#: Relative gap between the top two eigenvalues below which Eigen-CAM recomputes in float64.
_NEAR_TIE = 1e-3


def _top_component(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first principal component of each image's positions.

    Returns:
        The centred samples (N, hw, C), their projection on the first principal direction
        (N, hw), and which images have a top eigenvalue within :data:`_NEAR_TIE` of the second.
    """
    centred = samples - samples.mean(dim=1, keepdim=True)
    hw, c = samples.shape[1:]
    if hw <= c:
        # The hw x hw Gram matrix is the smaller one: its top eigenvector u gives M v = s u.
        values, vectors = torch.linalg.eigh(centred @ centred.transpose(1, 2))
        projection = vectors[..., -1] * values[..., -1:].clamp_min(0).sqrt()
    else:
        values, vectors = torch.linalg.eigh(centred.transpose(1, 2) @ centred)
        projection = (centred @ vectors[..., -1:]).squeeze(-1)
    top = values[..., -1]
    second = values[..., -2] if values.shape[-1] > 1 else torch.zeros_like(top)
    close = (top - second) <= _NEAR_TIE * top.abs()
    return centred, projection, close


def _first_component(features: torch.Tensor) -> torch.Tensor:
    """Projection of each position onto the first principal component, with a sign rule.

    A principal direction has no sign of its own; two rules give it one, so that the same
    activations always give the same map:

    1. The map correlates positively with the channel-mean map (where the layer is active overall).
    2. Where that map is rounding noise, the position farthest from the mean is made positive.
       A LayerNorm output (transformers' ``norm`` layers) has a zero channel mean at every
       position, so rule 1 would pick the sign from float noise: a batch and a single image
       could then give opposite maps.

    Args:
        features: (N, C, h, w); each of the h*w positions is a sample with C features.

    Returns:
        (N, h, w), in the dtype of ``features``.
    """
    n, c, h, w = features.shape
    samples = features.reshape(n, c, h * w).transpose(1, 2)  # (N, hw, C)
    centred, projection, close = _top_component(samples.float())
    if close.any() and features.device.type != "mps":  # MPS has no float64
        # A top eigenvalue close to the second: float32's rounding could turn the direction, and
        # a batch and a single image could disagree. float64 settles it for those images.
        exact = _top_component(samples[close].double())
        centred, projection = centred.double(), projection.double()
        centred[close], projection[close] = exact[0], exact[1]
    # Rule 1 is decisive when the centred channel-mean map is well above rounding noise (about
    # 1e-7 of the scale a structureless layer would give it: norm(centred) / C) and not
    # orthogonal to the projection; ReLU and BatchNorm layers give ratios of 0.1 to 10.
    tolerance = 1e-4
    reference = centred.mean(dim=2)
    reference_norm = reference.norm(dim=1, keepdim=True)
    agreement = (projection * reference).sum(dim=1, keepdim=True)
    decisive = (reference_norm > tolerance * centred.flatten(1).norm(dim=1, keepdim=True) / c) & (
        agreement.abs() > tolerance * reference_norm * projection.norm(dim=1, keepdim=True)
    )
    peak = projection.gather(1, projection.abs().argmax(dim=1, keepdim=True))
    sign = torch.where(decisive, agreement.sign(), peak.sign())
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)  # an all-zero map stays zero
    return (projection * sign).reshape(n, h, w).to(features.dtype)


@register_method("eigencam", needs_gradients=False)
def eigencam(tensors: LayerTensors) -> torch.Tensor:
    """Eigen-CAM: the first principal component of the activations (no gradients).

    Muhammad and Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020,
    https://arxiv.org/abs/2008.00299: each spatial position is a sample of C channel values, and the
    map is its projection on the first principal direction. Departures: the positions are centred
    first (a principal component proper), and since a principal direction has no sign, we orient
    it to agree with the mean activation over channels (or, after a LayerNorm, where that mean is
    zero, so that its largest value is positive) before the ReLU.

    Where the result is not determined by the activations: when the top two eigenvalues are
    equal (or within float rounding of each other), any direction in their plane is a first
    principal component, and when two positions tie for the largest value with opposite signs, the
    sign rule is a coin toss. Then a tiny change of the activations (another batch size, another
    thread count) can change the map completely. With float64 and the rules above this needs an
    exact tie; it does not happen with the architectures in ``tests/test_architectures.py``.
    """
    return torch.relu(_first_component(tensors.activations))


@register_method("eigengradcam")
def eigengradcam(tensors: LayerTensors) -> torch.Tensor:
    """Eigen-Grad-CAM: Eigen-CAM on the gradient-activation products, so it is class specific.

    The class-discriminative variant of Eigen-CAM (Muhammad and Yeasin 2020,
    https://arxiv.org/abs/2008.00299) introduced by pytorch-grad-cam: the first principal component
    of ``G * A``, oriented and clipped as in :func:`eigencam` (with the same limits).
    """
    return torch.relu(_first_component(_gradients(tensors) * tensors.activations))
