"""The engine: one forward pass, one ``torch.autograd.grad``, every method for every layer."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camkit._errors import ArgumentTypeError, InputError
from camkit._explanation import Explanation
from camkit._forward import ForwardOptions, forward_options
from camkit._inputs import Batch, Preprocessing, as_sequence, check_model_input, prepare_batch
from camkit.layers import auto_layer, resolve_layer
from camkit._locks import serialised
from camkit._models import LoadedModel, _device
from camkit._registry import LayerTensors, Method, PerturbationContext, get_method
from camkit._spatial import Reshape, SpatialView, prefix_tokens, spatial_view
from camkit._targets import Targets, resolve_targets

TargetSpec = int | str | Sequence[int] | Sequence[str] | Callable[[object], torch.Tensor] | None


def logits_of(output: object) -> torch.Tensor:
    """The class scores in a model's output: a tensor, a tuple's first item, or ``logits``.

    Raises:
        TypeError: When the output holds no tensor of scores.
    """
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)  # Hugging Face ModelOutput and similar objects
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, dict):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"]
        tensors = [value for value in output.values() if isinstance(value, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ArgumentTypeError(
        f"the model returned a {type(output).__name__} with no class scores camkit can find; "
        "return a tensor, a tuple whose first item is the logits, or a dict with 'logits', or "
        "pass `target=` a callable that takes the output and returns one score per image"
    )


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode for the call and restore each flag afterwards.

    Holds the model's lock (:mod:`camkit._locks`): another thread's call cannot restore the
    flags while this one runs.
    """
    with serialised(model):
        # Only the modules in training mode are touched: a model in eval mode costs nothing.
        switched = [module for module in model.modules() if module.training]
        for module in switched:
            module.training = False
        try:
            yield
        finally:
            for module in switched:
                module.training = True


#: Per model, how many times each hooked layer ran in the last forward (see :func:`capturing`).
_CALLS: weakref.WeakKeyDictionary[nn.Module, dict[str, int]] = weakref.WeakKeyDictionary()


@dataclass
class Capture:
    """What :func:`capturing` saw: each layer's output at its last call, and the call counts."""

    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    #: Whether autograd was on when each layer's kept output was taken.
    recorded: dict[str, bool] = field(default_factory=dict)

    def get(self, name: str) -> torch.Tensor | None:
        return self.outputs.get(name)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.outputs[name]


@contextmanager
def capturing(
    modules: dict[str, nn.Module],
    names: Sequence[str],
    *,
    grad_from: dict[str, int] | None = None,
) -> Iterator[Capture]:
    """Hook the named modules; yield a :class:`Capture` of each one's output at its last call.

    ``modules`` maps every name of the model to its module.

    The hook hands the rest of the network a copy of the output, so that a later in-place
    operation (``ReLU(inplace=True)`` after the layer) cannot change the captured tensor.
    When the output does not require gradients (a frozen model, or a forward run without
    autograd up to the layer), the captured tensor is made a leaf that does, so the gradient can
    still be taken with respect to it.

    ``grad_from`` (layer name -> call index) turns autograd on for the rest of the forward when a
    layer reaches that call: run the forward under ``torch.no_grad()`` and only the network after
    the layers records a graph. The gradient with respect to a layer's output depends only on
    what is computed from that output, so it is unchanged, and the layers before cost what a plain
    inference forward costs. A module the model calls several times (EfficientNet's shared
    activation, at the stem and at the head) is explained at its last call, so the index should
    be that of the last call: the caller checks ``recorded`` and runs again when it came too late.
    """
    capture = Capture()
    handles = []

    def make_hook(name: str) -> Callable[[nn.Module, object, object], object]:
        def hook(_module: nn.Module, _args: object, output: object) -> object:
            if not isinstance(output, torch.Tensor):
                raise InputError(
                    f"layer {name!r} returned {_describe(output)}, not a tensor; pick a layer "
                    "whose output is an (N, C, h, w), (N, h, w, C) or (N, tokens, C) tensor, such "
                    "as one of its submodules (see camkit.list_layers(model))"
                )
            call = capture.calls.get(name, 0)
            capture.calls[name] = call + 1
            if grad_from is not None and call >= grad_from.get(name, 0):
                torch.set_grad_enabled(True)  # undone when the caller's no_grad() block ends
            if torch.is_grad_enabled() and not output.requires_grad:
                output = output.detach().requires_grad_(True)
            capture.outputs[name] = output
            capture.recorded[name] = torch.is_grad_enabled()
            # Also without autograd: an in-place ReLU after the layer must not edit the capture.
            return output.clone()

        return hook

    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        yield capture
    finally:
        for handle in handles:
            handle.remove()


def _forward_with_capture(
    network: nn.Module,
    x: torch.Tensor,
    modules: dict[str, nn.Module],
    names: list[str],
    options: ForwardOptions,
    needs_gradients: bool,
) -> tuple[object, Capture]:
    """The capturing forward; with gradients, autograd only from the layers' last calls on."""

    def forward(inputs: torch.Tensor) -> object:
        with torch.no_grad():
            return network(inputs)

    if not needs_gradients:  # Eigen-CAM, Score-CAM...: no autograd graph at all
        with capturing(modules, names) as capture:
            return options.call(forward, x), capture
    known = _CALLS.get(network, {})
    plan = {name: max(0, known.get(name, 1) - 1) for name in names}
    with capturing(modules, names, grad_from=plan) as capture:
        output = options.call(forward, x)
    if not all(capture.recorded.get(name, True) for name in names):
        # A layer ran fewer times than last time: autograd came on after its last call.
        with capturing(modules, names, grad_from={}) as capture:
            output = options.call(forward, x)
    _CALLS.setdefault(network, {}).update(capture.calls)
    return output, capture


def _model_device(model: nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def _model_float_dtype(model: nn.Module) -> torch.dtype:
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _upsample_and_normalise(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling to ``size``, then min-max per map; a constant map becomes zeros."""
    maps = F.interpolate(raw.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
    maps = maps.squeeze(1)
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    span = high - low
    return torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1), 0.0)


def _gradients(
    scores: torch.Tensor, activations: list[torch.Tensor], names: list[str]
) -> list[torch.Tensor]:
    """d(score)/d(activation) for every layer at once, (B*K, ...) each, rows ordered (b, k).

    The activations are the raw captured outputs, so each gradient has its layer's raw layout.

    Images are independent in eval mode, so summing over the batch gives each image its own
    gradient; the K explained classes are one batched backward (``is_grads_batched``).
    """
    batch, k = scores.shape
    if not scores.requires_grad:
        raise InputError(
            "the explained score does not depend on the chosen layers; pick layers that the "
            "model's output is computed from"
        )
    if k == 1:
        grads = torch.autograd.grad(scores.sum(), activations, allow_unused=True)
    else:
        basis = torch.eye(k, dtype=scores.dtype, device=scores.device)
        grad_outputs = basis[:, None, :].expand(k, batch, k)
        try:
            grads = torch.autograd.grad(
                scores,
                activations,
                grad_outputs=grad_outputs,
                is_grads_batched=True,
                allow_unused=True,
            )
        except RuntimeError:  # an operator without a batching rule: fall back to a loop
            per_class = [
                torch.autograd.grad(
                    scores[:, i].sum(), activations, retain_graph=i < k - 1, allow_unused=True
                )
                for i in range(k)
            ]
            grads = tuple(
                None if per_class[0][j] is None else torch.stack([g[j] for g in per_class])  # type: ignore[misc]
                for j in range(len(activations))
            )
    result = []
    for name, grad in zip(names, grads, strict=True):
        if grad is None:
            raise InputError(
                f"layer {name!r} does not influence the explained score; pick a layer on the path "
                "from the input to the output"
            )
        if k > 1:  # (K, B, ...) -> (B*K, ...)
            grad = grad.transpose(0, 1).reshape(batch * k, *grad.shape[2:])
        result.append(grad)
    return result


def _describe(output: object) -> str:
    """A short account of a non-tensor layer output: its type and the tensors inside."""
    items = list(output.values()) if isinstance(output, dict) else output
    if isinstance(items, (tuple, list)):
        shapes = [
            f"tensor {tuple(item.shape)}" if isinstance(item, torch.Tensor) else type(item).__name__
            for item in items[:4]
        ]
        return f"a {type(output).__name__} of ({', '.join(shapes)})"
    return f"a {type(output).__name__}"


def _check_spatial(
    name: str,
    activation: torch.Tensor | None,
    batch: int,
    input_size: tuple[int, int],
    module: nn.Module,
    prefix: int | None,
    reshape: Reshape | None,
) -> SpatialView:
    """How the layer's raw output is seen as (N, C, h, w); raises naming the layer otherwise."""
    if activation is None:
        raise InputError(
            f"layer {name!r} did not run during the forward pass; pick a layer the model uses "
            "(see camkit.list_layers(model))"
        )
    if activation.dim() < 3 or activation.shape[0] != batch:
        raise InputError(
            f"layer {name!r} output has shape {tuple(activation.shape)}, not (N, C, h, w), "
            "(N, h, w, C) or (N, tokens, C) with N images; pick a convolutional or transformer "
            "block layer (see camkit.list_layers(model))"
        )
    view = spatial_view(name, activation, input_size, module, prefix, reshape)
    if view.grid[0] * view.grid[1] <= 1:
        raise InputError(
            f"layer {name!r} output has shape {tuple(activation.shape)}, a 1x1 grid whose map "
            "would be flat; pick an earlier layer (see camkit.list_layers(model)) or a larger "
            "input"
        )
    return view


def explain(
    model: nn.Module | LoadedModel,
    inputs: object,
    methods: str | Sequence[str] = ("gradcam",),
    layers: str | nn.Module | Sequence[str | nn.Module] = ("auto",),
    target: TargetSpec = None,
    top_k: int | None = None,
    device: str | torch.device | None = None,
    reshape: Reshape | None = None,
    batch_size: int | None = None,
    max_channels: int | None = None,
    progress: bool | None = None,
    smooth: str | None = None,
    smooth_samples: int | None = None,
    smooth_sigma: float | None = None,
    seed: int = 0,
    channels_last: bool | None = None,
    amp: bool | str = False,
) -> Explanation:
    """Explain a classifier's decision with CAM heatmaps.

    Gradient and activation methods share one forward and one backward pass; perturbation
    methods (Score-CAM, Ablation-CAM), smoothing and the guided methods add passes of their own.

    The model is left as found (hooks, training flags, gradients, weights), also when the call
    raises. Calls from several threads on the same model object run one at a time; give each
    thread its own copy to run them in parallel (docs/reliability.md).

    Args:
        model: A classifier, or a :class:`LoadedModel` from :func:`load_model` (which brings its
            preprocessing and class names).
        inputs: A normalised (B, C, H, W) tensor, or a path, PIL image or numpy array, or a list
            of them (preprocessed with the model's transforms, else ImageNet's at 224).
        methods: Names from :func:`list_methods`.
        layers: ``"auto"``, dotted names (``"layer4"``), pytorch-gradcam names (``"features_11"``)
            or submodules.
        target: ``None`` for each image's top class; a class index; one index per image; a class
            name; or a callable taking the model output and returning one score per image.
        top_k: Explain each image's ``top_k`` best classes (overrides ``target``).
        device: Where to run; by default the model's device. The model is never moved.
        reshape: A function mapping each explained layer's raw output to (N, C, h, w), for
            layouts camkit cannot read itself. By default (N, C, h, w) outputs are used as they
            are, (N, h, w, C) and (N, tokens, C) ones (vision transformers, Swin) are mapped
            automatically, class/distillation/register tokens dropped.
        batch_size: Perturbation methods (``scorecam``, ``ablationcam``...): perturbed inputs
            per forward pass; by default 32 on CPU, 128 on CUDA.
        max_channels: Perturbation methods: perturb only each image's ``max_channels``
            channels of largest activation mass (an approximation; exact when ``None``).
        progress: Perturbation methods: ``None`` shows a progress bar when the forwards take
            over a second and stderr is a terminal; ``False`` never, ``True`` also off a terminal.
        smooth: ``"noise"`` averages every map over noisy copies of the input (SmoothGrad);
            ``"augment"`` over flipped and rescaled copies, each mapped back first. The targets
            stay the clean image's. See docs/smoothing-and-guided.md.
        smooth_samples: Noisy copies per image (default 16), for ``"noise"`` and smoothgradcam++.
        smooth_sigma: Noise standard deviation as a fraction of each image's value range
            (default 0.15), for ``"noise"`` and smoothgradcam++.
        seed: Seed of the noise generator; the same call gives the same maps.
        channels_last: Hand the model its input in channels-last memory layout (the model is
            not changed). ``None``: on the CPU for the batched forwards of the perturbation
            methods (1.4-1.5x faster there) and for the gradient pass from 2 images up (faster on
            every model measured at batch 8; ResNet-50 is 5 % slower with it at batch 1), and on
            CUDA under ``amp``. If the model cannot take that layout, camkit falls back to the
            usual one.
        amp: Run the forward passes under ``torch.autocast``: ``True`` picks bfloat16 where the
            device supports it (else float16), or name ``"bf16"``/``"fp16"``. Maps differ from
            float32 ones by the tolerance measured in the README (speed options).

    Returns:
        The :class:`Explanation`.

    Raises:
        ValueError: For a bad value (unknown layer, method or class, unreadable image).
        TypeError: For an argument of the wrong type.
    """
    loaded = model if isinstance(model, LoadedModel) else None
    network = loaded.model if loaded is not None else model
    if not isinstance(network, nn.Module):
        raise ArgumentTypeError(
            f"`model` must be a torch.nn.Module or camkit.LoadedModel, got {type(model).__name__}"
        )
    if isinstance(network, torch.jit.ScriptModule):
        raise ArgumentTypeError(
            "`model` is a TorchScript module, whose layers cannot be hooked; explain the eager "
            "model instead: camkit.load_model('ARCH', weights='state_dict.pth')"
        )
    preprocessing = loaded.preprocessing if loaded is not None else Preprocessing()
    categories = loaded.categories if loaded is not None else None
    chosen_methods = _methods(methods)
    from camkit._smoothing import explain_extended, smoothing_options

    smoothing = smoothing_options(
        smooth,
        smooth_samples,
        smooth_sigma,
        seed,
        any(method.name == "smoothgradcam++" for method in chosen_methods),
    )
    layer_specs: list[Any] = list(as_sequence(layers))
    if not layer_specs:
        raise InputError("`layers` is empty; pass 'auto' or at least one layer name")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InputError(f"`top_k` must be a positive integer, got {top_k!r}")
    for option, value in (("batch_size", batch_size), ("max_channels", max_channels)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ArgumentTypeError(f"`{option}` must be a positive integer or None, got {value!r}")
        if value is not None and value < 1:
            raise InputError(f"`{option}` must be a positive integer, got {value}")
    if progress is not None and not isinstance(progress, bool):
        raise ArgumentTypeError(f"`progress` must be True, False or None, got {progress!r}")

    model_device = _model_device(network)
    run_device = model_device if device is None else _device(device)
    if run_device.type != model_device.type:
        raise InputError(
            f"`device` is {run_device} but the model is on {model_device}; move the model with "
            f"model.to('{run_device}') or leave `device` unset"
        )
    batch = prepare_batch(inputs, preprocessing)
    x = batch.tensor.to(model_device, dtype=_model_float_dtype(network))
    check_model_input(x, batch.tensor, network)
    options = {
        gradient: forward_options(
            channels_last, amp, model_device, gradient=gradient, batch=int(x.shape[0])
        )
        for gradient in (True, False)
    }
    run = functools.partial(
        _run,
        network,
        categories=categories,
        model_name=loaded.name if loaded is not None else type(network).__name__,
        reshape=reshape,
        batch_size=batch_size,
        max_channels=max_channels,
        progress=progress,
        gradient_options=options[True],
        perturbation_options=options[False],
    )
    # One call at a time per model object: concurrent calls would share its hooks and flags.
    with serialised(network):
        if smoothing is None and not any(method.own_pass for method in chosen_methods):
            return run(x, batch, chosen_methods, layer_specs, target, top_k)
        # Smoothing, smoothgradcam++ and the guided methods need passes of their own.
        return explain_extended(
            run,
            network,
            x,
            batch,
            chosen_methods,
            layer_specs,
            target,
            top_k,
            categories,
            smoothing,
        )


def _methods(methods: str | Sequence[str]) -> list[Method]:
    if not isinstance(methods, (str, Iterable)):
        raise ArgumentTypeError(
            f"`methods` must be a method name or a list of names, got {type(methods).__name__}"
        )
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise InputError("`methods` is empty; pass at least one name from camkit.list_methods()")
    chosen: dict[str, Method] = {}
    for name in names:
        method = get_method(name)
        chosen.setdefault(method.name, method)
    return list(chosen.values())


def _run(
    network: nn.Module,
    x: torch.Tensor,
    batch: Batch,
    methods: list[Method],
    layer_specs: list[str | nn.Module],
    target: TargetSpec,
    top_k: int | None,
    categories: list[str] | None,
    model_name: str | None,
    reshape: Reshape | None = None,
    batch_size: int | None = None,
    max_channels: int | None = None,
    progress: bool | None = None,
    gradient_options: ForwardOptions | None = None,
    perturbation_options: ForwardOptions | None = None,
) -> Explanation:
    size = (int(x.shape[-2]), int(x.shape[-1]))
    gradient_options = gradient_options or ForwardOptions()
    modules = dict(network.named_modules())
    with evaluation_mode(network), torch.enable_grad():
        names = [
            auto_layer(network, x, modules)
            if isinstance(spec, str) and spec == "auto"
            else resolve_layer(network, spec, modules)
            for spec in layer_specs
        ]
        unique = list(dict.fromkeys(names))
        needs_gradients = any(method.needs_gradients for method in methods)
        output, captured = _forward_with_capture(
            network, x, modules, unique, gradient_options, needs_gradients
        )
        logits = logits_of(output)
        # Gradients are taken w.r.t. the raw outputs (in the graph); methods see spatial views.
        # Prefix tokens matter to (B, tokens, C) outputs alone: no parameter walk for CNNs.
        three_d = any(o is not None and o.dim() == 3 for o in captured.outputs.values())
        prefix = prefix_tokens(network) if three_d else None
        views = [
            _check_spatial(n, captured.get(n), x.shape[0], size, modules[n], prefix, reshape)
            for n in unique
        ]
        raw_outputs = [captured[n] for n in unique]
        activations = [view.to_spatial(a) for view, a in zip(views, raw_outputs, strict=True)]
        targets: Targets = resolve_targets(target, top_k, logits, output, categories)
        gradients = (
            [
                view.to_spatial(g)
                for view, g in zip(
                    views, _gradients(targets.scores, raw_outputs, unique), strict=True
                )
            ]
            if needs_gradients
            else [None] * len(unique)
        )
        del output
    k = targets.scores.shape[1]
    raw: dict[tuple[str, str], torch.Tensor] = {}
    maps: dict[tuple[str, str], torch.Tensor] = {}
    for name, view, activation, gradient in zip(unique, views, activations, gradients, strict=True):
        a = activation.detach().float()
        g = gradient.detach().float() if gradient is not None else None
        a_rows = a.repeat_interleave(k, dim=0) if k > 1 else a
        layer_raws = []
        for method in methods:
            if method.perturbation:  # runs the model again, after the capture hooks are gone
                layer_raw = method.function(
                    PerturbationContext(
                        network,
                        x,
                        name,
                        modules[name],
                        activation.detach(),
                        targets.scores.detach(),
                        targets.indices,
                        target if targets.indices is None else None,  # type: ignore[arg-type]
                        batch_size=batch_size,
                        max_channels=max_channels,
                        progress=progress,
                        view=view,
                        options=perturbation_options or ForwardOptions(),
                    )
                )
            elif method.needs_gradients:
                layer_raw = method.function(LayerTensors(a_rows, g))
            else:
                layer_raw = method.function(LayerTensors(a, None))
                layer_raw = layer_raw.repeat_interleave(k, dim=0) if k > 1 else layer_raw
            if not torch.isfinite(layer_raw).all():
                raise InputError(
                    f"{method.name} at layer {name!r} is not finite: the model produced NaN or Inf "
                    "activations or gradients; check the input and the model's weights"
                )
            layer_raws.append(layer_raw)
        # One upsampling for all methods of the layer; normalisation stays per map.
        normalised = _upsample_and_normalise(torch.cat(layer_raws), size).chunk(len(methods))
        shape = (x.shape[0], k) if top_k is not None else (x.shape[0],)
        for method, layer_raw, layer_map in zip(methods, layer_raws, normalised, strict=True):
            raw[(name, method.name)] = layer_raw.reshape(*shape, *layer_raw.shape[1:]).cpu()
            maps[(name, method.name)] = layer_map.reshape(*shape, *size).cpu()
    detached_logits = logits.detach().float().cpu()
    return Explanation(
        maps=maps,
        raw=raw,
        logits=detached_logits,
        probs=torch.softmax(detached_logits, dim=1),
        targets=targets.indices,
        labels=targets.labels,
        categories=categories,
        layers=unique,
        methods=[method.name for method in methods],
        images=batch.images,
        names=batch.names,
        model_name=model_name,
    )
