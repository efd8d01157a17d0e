"""Finding layers: dotted and underscore names, modules, and the automatic choice."""

from __future__ import annotations

import difflib
import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from camkit._errors import ArgumentTypeError, LayerNotFoundError
from camkit._spatial import SpatialView, infer_view, prefix_tokens
from camkit.hooks import evaluation_mode, logits_of, model_device, model_float_dtype

#: Modules whose spatial output is a pooled summary, never the layer a user means by "auto".
_POOLING_HEADS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

#: Modules whose output is their input passed on, never a new activation to explain.
_PASS_THROUGH = (nn.Identity, nn.modules.dropout._DropoutNd, nn.Flatten, nn.Unflatten)
_PASS_THROUGH_NAMES = frozenset({"Permute", "DropPath", "StochasticDepth", "Identity"})

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
            "pass a module taken from this model, or its name (see camkit.list_layers(model))"
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
    raise _layer_not_found(model, spec, [n for n in names if n])


def _layer_not_found(model: nn.Module, spec: str, candidates: list[str]) -> LayerNotFoundError:
    """The error for an unknown layer name: the closest names, else the top-level modules."""
    # Compare in the user's own style ("features_11" or "features.11"), ignoring leading
    # underscores ("blocks.3" finds Lite0's "_blocks.3"), and at the same depth first: "layer5"
    # should suggest "layer4" before "layer3.5", and "features_111" "features.11".
    underscored = "." not in spec and "_" in spec.strip("_")
    separator = "_" if underscored else "."
    styled: dict[str, str] = {}
    for name in candidates:
        plain = ".".join(part.lstrip("_") for part in name.split("."))
        styled.setdefault(plain.replace(".", "_") if underscored else plain, name)
    wanted = ".".join(part.lstrip("_") for part in spec.split("."))
    same_depth = [k for k in styled if k.count(separator) == wanted.count(separator)]
    close: list[str] = []
    for pool in (same_depth, list(styled)):
        matches = difflib.get_close_matches(wanted, pool, n=3, cutoff=0.6)
        close += [c for c in matches if c not in close]
    if not close:  # nothing alike ("layer4" in an EfficientNet): a looser match
        close = difflib.get_close_matches(wanted, list(styled), n=3, cutoff=0.4)
    if close:
        hint = "closest: " + ", ".join(repr(styled[c]) for c in close[:3])
    else:
        top = [n for n in candidates if "." not in n]
        hint = "no similar name; its top-level modules: " + ", ".join(map(repr, top[:12]))
    return LayerNotFoundError(
        f"`layers` {spec!r} not found in {type(model).__name__}; {hint}; list the layers with "
        "camkit.list_layers(model) or `camkit layers --model NAME`"
    )


@contextmanager
def _recording(
    model: nn.Module,
) -> Iterator[
    tuple[dict[str, None], dict[str, torch.Tensor | None], dict[str, int], dict[str, object]]
]:
    """Record, for every submodule, the start order of its last call, its output and call count.

    A module that runs several times is placed at its last call, where camkit explains it.
    ``first_inputs`` keeps each module's first positional argument at that call.
    """
    started: dict[str, None] = {}  # an ordered set
    outputs: dict[str, torch.Tensor | None] = {}
    calls: dict[str, int] = {}
    first_inputs: dict[str, object] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def pre_hook(_module: nn.Module, args: tuple[object, ...], name: str = name) -> None:
            started.pop(name, None)
            started[name] = None
            first_inputs[name] = args[0] if args else None
            calls[name] = calls.get(name, 0) + 1

        def hook(_module: nn.Module, _args: object, output: object, name: str = name) -> None:
            outputs.pop(name, None)
            outputs[name] = output if isinstance(output, torch.Tensor) else None

        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(hook))
    try:
        yield started, outputs, calls, first_inputs
    finally:
        for handle in handles:
            handle.remove()


def _passes_input_on(module: nn.Module) -> bool:
    """Modules whose output is their input unchanged or re-laid out (in eval mode)."""
    return isinstance(module, _PASS_THROUGH) or type(module).__name__ in _PASS_THROUGH_NAMES


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)) or type(
        module
    ).__name__.endswith(("Norm", "LayerNorm2d", "RMSNorm"))


def _candidate(
    module: nn.Module, output: torch.Tensor | None, size: tuple[int, int], prefix: int | None
) -> SpatialView | None:
    """The spatial view of a module's probe output if ``layers="auto"`` may pick the module."""
    if (
        output is None
        or output.dim() not in (3, 4)
        or output.shape[0] != 1
        or isinstance(module, _POOLING_HEADS)
        or _passes_input_on(module)
    ):
        return None
    view = infer_view(output, size, module, prefix)
    if isinstance(view, str) or view.grid[0] * view.grid[1] <= 1:
        return None
    # Token layers: only normalisation layers, the residual stream as the next block reads it
    # (never q/k/v projections, whose patch tokens mix query and key roles).
    if view.layout == "tokens" and not _is_norm(module):
        return None
    return view


def _influential(
    scores: list[torch.Tensor], candidates: dict[str, tuple[SpatialView, torch.Tensor]]
) -> set[str]:
    """Names of the candidates whose spatial positions the first informative score depends on.

    A ViT's head reads only the class token after the final norm: the patch tokens of the last
    block's output and of the final norm get exactly zero gradient, so those layers are dropped.
    A score no candidate influences (a zero-initialised head, as torchvision's ViT has with
    random weights) says nothing, and the next score is tried.
    """
    names = [name for name, (_, output) in candidates.items() if output.requires_grad]
    for score in scores:
        if not score.requires_grad:
            continue
        grads = torch.autograd.grad(
            score, [candidates[name][1] for name in names], allow_unused=True, retain_graph=True
        )
        keep = {
            name
            for name, grad in zip(names, grads, strict=True)
            if grad is not None and bool(candidates[name][0].to_spatial(grad).ne(0).any())
        }
        if keep:
            return keep
    return set(candidates)


def _probe_scores(model_output: object, head_input: object) -> list[torch.Tensor]:
    """The top class score, then a fixed random projection of what the last module reads."""
    scores = []
    with suppress(TypeError):
        scores.append(logits_of(model_output)[0].max())
    if isinstance(head_input, torch.Tensor) and head_input.is_floating_point():
        generator = torch.Generator().manual_seed(0)
        weights = torch.randn(head_input.shape, generator=generator).to(head_input)
        scores.append((head_input * weights).sum())
    return scores


def probe(model: nn.Module, inputs: torch.Tensor) -> list[LayerInfo]:
    """Run one forward pass on the first image and describe every module, in execution order.

    A module called several times is listed at its last call. The automatic layer is the last
    module whose output has a spatial reading (:mod:`camkit._spatial`) with h*w > 1, skipping
    pooling heads and modules that pass their input on (Identity, Dropout, Permute); for token
    outputs only normalisation layers count. When that module's output is tokens or
    channels-last, one backward pass drops the candidates whose spatial positions do not
    influence the top score (a ViT's final norm, whose patch tokens the head never reads).

    The model must already be in the mode the caller wants (the engine sets eval mode).
    """
    sample = inputs[:1].detach().requires_grad_(inputs.is_floating_point())
    size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
    modules = dict(model.named_modules())
    prefix = prefix_tokens(model)
    with torch.enable_grad(), _recording(model) as (started, outputs, calls, first_inputs):
        model_output = model(sample)
    finish_order = list(outputs)  # dict order = order of each module's last completion
    candidates: dict[str, tuple[SpatialView, torch.Tensor]] = {}
    for name in finish_order:
        output = outputs[name]
        view = _candidate(modules[name], output, size, prefix)
        if view is not None and output is not None:
            candidates[name] = (view, output)
    auto = next(reversed(candidates), None)
    if auto is not None and candidates[auto][0].layout != "channels_first":
        leaves = [name for name in finish_order if not any(modules[name].children())]
        head_input = first_inputs.get(leaves[-1]) if leaves else None
        with torch.enable_grad():
            keep = _influential(_probe_scores(model_output, head_input), candidates)
        auto = next((name for name in reversed(candidates) if name in keep), None)
    del model_output, candidates, first_inputs
    shapes = {
        name: tuple(output.shape) if output is not None else None
        for name, output in outputs.items()
    }
    return [
        LayerInfo(
            name=name,
            type_name=type(modules[name]).__name__,
            output_shape=shapes.get(name),
            is_auto=name == auto,
            calls=calls[name],
        )
        for name in started
    ]


def _found(layers: list[LayerInfo]) -> str:
    """The last few module outputs of a probe, for an error message."""
    seen = [info for info in layers if info.output_shape is not None][-3:]
    return ", ".join(f"{info.name!r} {info.type_name} {info.output_shape}" for info in seen)


def auto_layer(
    model: nn.Module, inputs: torch.Tensor, modules: dict[str, nn.Module] | None = None
) -> str:
    """The dotted name of the layer ``layers="auto"`` picks (see :func:`probe`).

    The choice is cached per model and input shape, so repeated calls cost no probe.

    Raises:
        ValueError: If no module of the model has a spatial output; the message lists the last
            outputs found.
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
            f"`layers='auto'` found no module with a spatial (N, C, h, w), (N, h, w, C) or "
            f"(N, tokens, C) output in {type(model).__name__} for inputs of shape "
            f"{tuple(inputs.shape)} (last outputs: {_found(layers) or 'none'}); pass `layers=` "
            "with a convolutional layer's name, `reshape=` for another layout, or a larger input"
        )
    _AUTO_CACHE.setdefault(model, {})[key] = chosen
    return chosen


def list_layers(
    model: nn.Module | Any, input_size: tuple[int, int] | None = None
) -> list[LayerInfo]:
    """Every module of the model in execution order, with its output shape.

    One forward pass on a zero image finds the shapes; the layer that ``layers="auto"`` picks is
    marked ``is_auto``. The model's training flags are restored afterwards.

    Args:
        model: A module, or a :class:`camkit.LoadedModel` (its crop size sets the probe's size).
        input_size: (H, W) of the probe image; defaults to the model's crop size, else 224.
    """
    preprocessing = getattr(model, "preprocessing", None)
    network = getattr(model, "model", model) if not isinstance(model, nn.Module) else model
    if not isinstance(network, nn.Module):
        raise ArgumentTypeError(
            f"`model` must be a torch.nn.Module or camkit.LoadedModel, got {type(model).__name__}"
        )
    if isinstance(network, torch.jit.ScriptModule):
        raise ArgumentTypeError(
            "`model` is a TorchScript module, whose layers cannot be hooked; load the eager model"
        )
    if input_size is None:
        side = preprocessing.crop_size if preprocessing is not None else 224
        input_size = (side, side)
    device, dtype = model_device(network), model_float_dtype(network)
    x = torch.zeros(1, 3, *input_size, device=device, dtype=dtype)
    with evaluation_mode(network):
        return probe(network, x)


def describe_layer(model: nn.Module, name: str) -> str:
    """A layer's module type and place, e.g. ``"ReLU6, head"``: what ``_swish`` means to a learner.

    The place is read from where the module and its submodules sit in ``model.named_modules()``
    order (the middle of that span): the first tenth is the stem, the last tenth the head, the
    rest early, middle or late.
    """
    names = [n for n, _ in model.named_modules() if n]
    module = model.get_submodule(name) if name else model
    if name not in names:
        return type(module).__name__
    first = names.index(name)
    last = max(
        i for i in range(first, len(names)) if names[i] == name or names[i].startswith(f"{name}.")
    )
    depth = (first + last) / 2 / max(1, len(names) - 1)
    places = ((0.1, "stem"), (0.4, "early"), (0.7, "middle"), (0.9, "late"), (1.01, "head"))
    place = next(label for limit, label in places if depth < limit)
    return f"{type(module).__name__}, {place}"
