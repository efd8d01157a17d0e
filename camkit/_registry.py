"""The registry of CAM methods by name."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from camkit._errors import InputError, MethodNotFoundError
from camkit._forward import ForwardOptions

if TYPE_CHECKING:
    from camkit._spatial import SpatialView

#: A method maps the captured tensors of one layer (a :class:`LayerTensors`, or a
#: :class:`PerturbationContext` for perturbation methods) to a raw (N, h, w) map.
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
class PerturbationContext:
    """What a perturbation method (Score-CAM, Ablation-CAM) needs to run the model again.

    The engine builds it after the capturing forward pass, once its hooks are removed.

    Attributes:
        model: The model; in eval mode only inside the method (use ``evaluation_mode``).
        inputs: The batch as the model received it, (B, C, H, W).
        layer: The layer's dotted name.
        module: The layer's module.
        activations: The layer's output at its last call, (B, C, h, w), detached.
        scores: The explained scores of the unperturbed batch, (B, K), detached.
        target_indices: (B, K) class indices, or ``None`` when ``target_function`` gives the score.
        target_function: The user's callable target (model output -> one score per row), or
            ``None``.
        batch_size: Perturbed inputs per forward pass; ``None`` picks one by device.
        max_channels: Perturb only this many channels per image (an approximation), or ``None``.
        progress: Show a progress bar: ``None`` when slow and on a terminal, or always/never.
        view: How the layer's raw output maps to ``activations`` (token layers), or ``None``
            when the output already is (B, C, h, w).
        options: Layout and precision of the perturbed forwards; run them with
            ``options.call(model, inputs)``.
    """

    model: nn.Module
    inputs: torch.Tensor
    layer: str
    module: nn.Module
    activations: torch.Tensor
    scores: torch.Tensor
    target_indices: torch.Tensor | None
    target_function: Callable[[object], torch.Tensor] | None
    batch_size: int | None = None
    max_channels: int | None = None
    progress: bool | None = None
    view: SpatialView | None = None
    options: ForwardOptions = field(default_factory=ForwardOptions)


@dataclass(frozen=True)
class Method:
    """A registered CAM method.

    Attributes:
        name: The name users pass to ``explain(methods=...)``.
        function: The function computing the raw map.
        needs_gradients: Whether ``function`` reads ``LayerTensors.gradients``.
        perturbation: Whether ``function`` takes a :class:`PerturbationContext` and runs the
            model on perturbed inputs, returning (B*K, h, w) maps in (image, class) order.
        own_pass: Whether ``explain`` computes the method in passes of its own (the guided
            methods, ``smoothgradcam++``; see ``camkit._smoothing``), never by calling
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
        perturbation: True for methods that take a :class:`PerturbationContext` and run the
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
