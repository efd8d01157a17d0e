"""The registry of CAM methods by name."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from camlens._errors import InputError, MethodNotFoundError

#: A method maps the captured tensors of one layer to a raw (N, h, w) map.
MethodFunction = Callable[["LayerTensors"], torch.Tensor]


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
        function: The pure function computing the raw map.
        needs_gradients: Whether ``function`` reads ``LayerTensors.gradients``.
    """

    name: str
    function: MethodFunction
    needs_gradients: bool


_METHODS: dict[str, Method] = {}


def register_method(
    name: str, *, needs_gradients: bool = True
) -> Callable[[MethodFunction], MethodFunction]:
    """Register a CAM method under ``name`` (a decorator).

    Args:
        name: Lower-case name, unique among registered methods.
        needs_gradients: False for methods that only read activations.

    Returns:
        The decorator, which returns the function unchanged.

    Raises:
        ValueError: If ``name`` is already registered.
    """

    def decorator(function: MethodFunction) -> MethodFunction:
        if name in _METHODS:
            raise InputError(f"method {name!r} is already registered; pick another name")
        _METHODS[name] = Method(name, function, needs_gradients)
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
