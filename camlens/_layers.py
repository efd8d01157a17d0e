"""Finding layers: dotted and underscore names, modules, and the automatic choice."""

from __future__ import annotations

import difflib
import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from camlens._errors import ArgumentTypeError, LayerNotFoundError

#: Modules whose spatial output is a pooled summary, never the layer a user means by "auto".
_POOLING_HEADS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

_AUTO_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], str]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class LayerInfo:
    """One module seen during a probe forward pass.

    Attributes:
        name: Dotted name from ``model.named_modules()``.
        type_name: The module's class name.
        output_shape: Shape of its output at its last call, or ``None`` when not a tensor.
        is_auto: Whether ``layers="auto"`` picks this module.
        calls: How many times the module ran in one forward pass.
    """

    name: str
    type_name: str
    output_shape: tuple[int, ...] | None
    is_auto: bool = False
    calls: int = 1


def _from_underscore(model: nn.Module, name: str) -> str | None:
    """Translate a pytorch-gradcam style name ("features_12_expand3x3_activation") to a dotted one.

    At each level the longest run of underscore-separated tokens naming a child wins, so child
    names that contain underscores still resolve; "bottleneck0" means child "0" when that child
    is a ``Bottleneck`` (pytorch-gradcam's ResNet names).
    """
    tokens = name.split("_")
    module, path, i = model, [], 0
    while i < len(tokens):
        children = dict(module.named_children())
        for j in range(len(tokens), i, -1):
            key = "_".join(tokens[i:j])
            if key in children:
                module, i = children[key], j
                path.append(key)
                break
            match = re.fullmatch(r"([a-z]+)(\d+)", key) if j == i + 1 else None
            if match and match[2] in children:
                child = children[match[2]]
                if type(child).__name__.lower() == match[1]:
                    module, i = child, j
                    path.append(match[2])
                    break
        else:
            return None
    return ".".join(path)


def resolve_layer(
    model: nn.Module, spec: nn.Module | str, modules: dict[str, nn.Module] | None = None
) -> str:
    """Return the dotted name of the layer ``spec`` designates (not "auto").

    Args:
        model: The model the layer belongs to.
        spec: A submodule, a dotted name ("features.11") or a pytorch-gradcam name ("features_11").
        modules: ``dict(model.named_modules())``, when the caller has it already.

    Raises:
        ValueError: If no module matches; the message lists the closest names.
        TypeError: If ``spec`` is neither a module nor a string.
    """
    names = modules if modules is not None else dict(model.named_modules())
    if isinstance(spec, nn.Module):
        for name, module in names.items():
            if module is spec and name:
                return name
        raise LayerNotFoundError(
            f"`layers` got a {type(spec).__name__} module that is not a submodule of the model; "
            "pass a module taken from this model, or its name (see camlens.list_layers(model))"
        )
    if not isinstance(spec, str):
        raise ArgumentTypeError(
            f"`layers` entries must be module names or nn.Module objects, got {type(spec).__name__}"
        )
    if spec and spec in names:
        return spec
    dotted = _from_underscore(model, spec) if spec else None
    if dotted:
        return dotted
    candidates = [n for n in names if n]
    # Compare in the user's own style, and at the same depth first: "layer5" should suggest
    # "layer4" before "layer3.5", and "features_111" should suggest "features.11".
    underscored = "." not in spec and "_" in spec
    styled = {(n.replace(".", "_") if underscored else n): n for n in candidates}
    depth = spec.count("_" if underscored else ".")
    same_depth = [k for k in styled if k.count("_" if underscored else ".") == depth]
    close = difflib.get_close_matches(spec, same_depth, n=3, cutoff=0.6)
    close += [
        c for c in difflib.get_close_matches(spec, list(styled), n=3, cutoff=0.6) if c not in close
    ]
    close = [styled[c] for c in close[:3]]
    hint = f" closest: {', '.join(repr(c) for c in close)}." if close else ""
    raise LayerNotFoundError(
        f"`layers` {spec!r} not found in {type(model).__name__};{hint} "
        "List the layers with camlens.list_layers(model) or `camlens layers --model NAME`."
    )


@contextmanager
def _recording(
    model: nn.Module,
) -> Iterator[tuple[dict[str, None], dict[str, tuple[int, ...] | None], dict[str, int]]]:
    """Record, for every submodule, the start order of its last call, its output and call count.

    A module that runs several times is placed at its last call, where camlens explains it.
    """
    started: dict[str, None] = {}  # an ordered set
    outputs: dict[str, tuple[int, ...] | None] = {}
    calls: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def pre_hook(_module: nn.Module, _args: object, name: str = name) -> None:
            started.pop(name, None)
            started[name] = None
            calls[name] = calls.get(name, 0) + 1

        def hook(_module: nn.Module, _args: object, output: object, name: str = name) -> None:
            # Keep only the shape: holding the tensors would keep a whole forward pass alive.
            outputs.pop(name, None)
            outputs[name] = tuple(output.shape) if isinstance(output, torch.Tensor) else None

        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(hook))
    try:
        yield started, outputs, calls
    finally:
        for handle in handles:
            handle.remove()


def probe(model: nn.Module, inputs: torch.Tensor) -> list[LayerInfo]:
    """Run one forward pass without gradients and describe every module, in execution order.

    A module called several times is listed at its last call.

    The model must already be in the mode the caller wants (the engine sets eval mode).
    """
    sample = inputs[:1]
    with torch.no_grad(), _recording(model) as (started, outputs, calls):
        model(sample)
    finish_order = list(outputs)  # dict order = order of each module's last completion
    auto = None
    modules = dict(model.named_modules())
    for name in reversed(finish_order):
        shape = outputs[name]
        if (
            shape is not None
            and len(shape) == 4
            and shape[0] == 1
            and shape[2] * shape[3] > 1
            and not isinstance(modules[name], _POOLING_HEADS)
        ):
            auto = name
            break
    return [
        LayerInfo(
            name=name,
            type_name=type(modules[name]).__name__,
            output_shape=outputs.get(name),
            is_auto=name == auto,
            calls=calls[name],
        )
        for name in started
    ]


def auto_layer(
    model: nn.Module, inputs: torch.Tensor, modules: dict[str, nn.Module] | None = None
) -> str:
    """The dotted name of the last module with a spatial (N, C, h, w) output, h*w > 1.

    Pooling heads (adaptive pooling) are skipped. The choice is cached per model and input shape,
    so repeated calls cost no probe.

    Raises:
        ValueError: If no module of the model has a spatial output.
    """
    key = tuple(inputs.shape[1:])
    cached = _AUTO_CACHE.get(model, {}).get(key)
    names = modules if modules is not None else dict(model.named_modules())
    if cached is not None and cached in names:
        return cached
    layers = probe(model, inputs)
    chosen = next((info.name for info in layers if info.is_auto), None)
    if chosen is None:
        raise LayerNotFoundError(
            f"`layers='auto'` found no module with a spatial (N, C, h, w) output in "
            f"{type(model).__name__} for inputs of shape {tuple(inputs.shape)}; pass `layers=` "
            "with a convolutional layer's name, or a larger input"
        )
    _AUTO_CACHE.setdefault(model, {})[key] = chosen
    return chosen
