"""Guided Backpropagation and Guided Grad-CAM: input-resolution gradient images.

Guided Backpropagation (Springenberg et al., "Striving for Simplicity: The All Convolutional Net",
ICLR 2015 workshop, https://arxiv.org/abs/1412.6806, Sec. 3.4) is the gradient of the class score
with respect to the input pixels, where every ReLU's backward pass keeps a gradient only where
both the ReLU's forward input and the incoming gradient are positive:
``R_l = (f_l > 0) * (R_{l+1} > 0) * R_{l+1}``.

Guided Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017, https://arxiv.org/abs/1610.02391, Sec. 3.1) is the
element-wise product of the guided gradient image and the Grad-CAM map, upsampled bilinearly to
the input resolution.

How the ReLUs are found: during a second forward pass (only when a guided method is asked), a
:class:`torch.overrides.TorchFunctionMode` swaps every call of a ReLU for a guided one. That
catches ``nn.ReLU`` (in-place too), ``F.relu``, ``F.relu_``, ``torch.relu``, ``torch.relu_``,
``Tensor.relu`` and ``Tensor.relu_``, without hooks or changes to the model. ``nn.ReLU6``,
``F.relu6`` and ``F.hardtanh`` / ``F.hardtanh_`` with a lower bound of 0 (a ReLU capped at
``max_val``) get the analogous rule: the gradient passes only where ``0 < x < max_val`` and it is
positive. Every other activation (SiLU, GELU, LeakyReLU, ELU, hardtanh with a negative lower
bound, ``clamp``) keeps its ordinary gradient: Guided Backpropagation is defined for ReLUs only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from camkit._targets import resolve_targets
from camkit.cam import LayerTensors, register_method

__all__ = ["GUIDED_METHODS", "guided_gradients", "guided_mode", "saliency", "scale_by_max"]

#: The method names computed here rather than from a layer's tensors.
GUIDED_METHODS = ("guided-backprop", "guided-gradcam")


class _GuidedClamp(torch.autograd.Function):
    """``clamp(x, low, high)`` whose backward passes only positive gradients where it is open."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, low: float, high: float | None, inplace: bool
    ) -> torch.Tensor:
        if inplace:
            ctx.mark_dirty(x)
            out = x.clamp_(min=low, max=high)
        else:
            out = x.clamp(min=low, max=high)
        # The output tells where the input was inside (low, high): low < out < high exactly there.
        ctx.save_for_backward(out)
        ctx.low, ctx.high = low, high
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:  # type: ignore[override]
        (out,) = ctx.saved_tensors
        passed = (out > ctx.low) & (grad > 0)
        if ctx.high is not None:
            passed &= out < ctx.high
        return torch.where(passed, grad, torch.zeros_like(grad)), None, None, None


def _relu(x: torch.Tensor, inplace: bool = False) -> tuple[torch.Tensor, float, float | None, bool]:
    return x, 0.0, None, inplace


def _relu_inplace(x: torch.Tensor) -> tuple[torch.Tensor, float, float | None, bool]:
    return x, 0.0, None, True


def _relu6(
    x: torch.Tensor, inplace: bool = False
) -> tuple[torch.Tensor, float, float | None, bool]:
    return x, 0.0, 6.0, inplace


def _hardtanh(
    x: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> tuple[torch.Tensor, float, float | None, bool]:
    return x, float(min_val), float(max_val), inplace


def _hardtanh_inplace(
    x: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0
) -> tuple[torch.Tensor, float, float | None, bool]:
    return x, float(min_val), float(max_val), True


#: Each ReLU-like function, with a parser of its arguments into (input, low, high, in place).
_RELU_FORMS: dict[Callable[..., Any], Callable[..., tuple[torch.Tensor, float, float | None, bool]]]
_RELU_FORMS = {
    F.relu: _relu,
    torch.relu: _relu,
    torch.Tensor.relu: _relu,
    torch.relu_: _relu_inplace,
    torch.Tensor.relu_: _relu_inplace,
    F.relu6: _relu6,
    F.hardtanh: _hardtanh,
    torch._C._nn.hardtanh_: _hardtanh_inplace,
}


class guided_mode(TorchFunctionMode):  # noqa: N801 - used as a context manager, like no_grad
    """While active, every ReLU (module or function) computes the guided backward rule.

    Attributes:
        guided: How many ReLU calls were swapped, so a caller can tell a model without ReLUs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.guided = 0

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        parse = _RELU_FORMS.get(func)
        if parse is not None:
            x, low, high, inplace = parse(*args, **kwargs)
            # A hardtanh with a negative lower bound is no ReLU: its gradient stays ordinary.
            if isinstance(x, torch.Tensor) and x.is_floating_point() and low == 0.0:
                self.guided += 1
                return _GuidedClamp.apply(x, low, high, inplace)
        return func(*args, **kwargs)


def guided_gradients(
    network: nn.Module,
    x: torch.Tensor,
    target: object,
    categories: list[str] | None,
    logits_of: Callable[[object], torch.Tensor],
) -> torch.Tensor:
    """Guided Backpropagation of each row's target score to the input, (N, C, H, W).

    Args:
        network: The model, already in eval mode; it is not changed.
        x: (N, C, H, W) inputs.
        target: One class index per row, or the user's callable on the model output.
        categories: The model's class names, for the target lookup.
        logits_of: Finds the class scores in the model's output.

    Returns:
        The guided gradient image of every row, detached.
    """
    inputs = x.detach().requires_grad_(True)
    mode = guided_mode()
    with torch.enable_grad():
        with mode:
            output = network(inputs)
        scores = resolve_targets(target, None, logits_of(output), output, categories).scores
        (gradient,) = torch.autograd.grad(scores.sum(), inputs)
    if mode.guided == 0:
        warnings.warn(
            "guided backpropagation found no ReLU or ReLU6 in the model's forward pass (module "
            "or functional); the guided image is the plain input gradient",
            UserWarning,
            stacklevel=4,
        )
    return gradient.detach()


def saliency(gradient: torch.Tensor) -> torch.Tensor:
    """A one-channel map of a gradient image: max over channels of the absolute value.

    Simonyan et al., "Deep Inside Convolutional Networks", https://arxiv.org/abs/1312.6034,
    Sec. 3.1.
    """
    return gradient.abs().amax(dim=-3)


def scale_by_max(maps: torch.Tensor) -> torch.Tensor:
    """Divide each (H, W) map by its maximum (zeros stay zero); an all-zero map stays zero."""
    peak = maps.amax(dim=(-2, -1), keepdim=True)
    return torch.where(peak > 0, maps / torch.where(peak > 0, peak, 1), 0.0)


def _needs_explain() -> RuntimeError:
    return RuntimeError(
        "guided methods need their own pass to the input; compute them with camkit.explain"
    )


@register_method("guided-backprop", own_pass=True)
def guided_backprop(tensors: LayerTensors) -> torch.Tensor:
    """Guided Backpropagation: the input gradient through ReLUs that pass only positive signal.

    Springenberg et al., "Striving for Simplicity: The All Convolutional Net", 2015,
    https://arxiv.org/abs/1412.6806: ``R_l = (f_l > 0) * (R_{l+1} > 0) * R_{l+1}`` at every ReLU.
    :func:`camkit.explain` computes it with a second forward and backward pass to the input (no
    layer tensors are needed): ``Explanation.guided`` holds the signed (3, H, W) gradient image and
    ``Explanation.maps`` its saliency, ``max_c |R_c|`` min-max normalised. The same image is
    stored under every layer asked.
    """
    raise _needs_explain()


@register_method("guided-gradcam", own_pass=True)
def guided_gradcam(tensors: LayerTensors) -> torch.Tensor:
    """Guided Grad-CAM: Guided Backpropagation times the upsampled Grad-CAM map.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", ICCV 2017, https://arxiv.org/abs/1610.02391, Sec. 3.1:
    ``R * upsample(L_Grad-CAM)``. Departure: the bilinearly upsampled Grad-CAM map is divided by its
    maximum first (the paper leaves the scale open; this keeps the gradient image's units). Computed
    by :func:`camkit.explain`, like :func:`guided_backprop`.
    """
    raise _needs_explain()
