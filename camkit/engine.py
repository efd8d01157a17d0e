"""The engine: one forward pass, one ``torch.autograd.grad``, every method for every layer.

:func:`run_pass` is the straight path that :func:`camkit.explain` takes:

1. prepare the inputs (:func:`prepare`: a normalised batch on the model's device);
2. capture every asked layer's output in one forward (:mod:`camkit.hooks`; the speed work, a
   forward without autograd up to the layers and channels-last input, is :mod:`camkit._forward`);
3. read the scores of the explained classes (:mod:`camkit._targets`);
4. one gradient call gives d(score)/dA for every layer and class (:func:`camkit.hooks.gradients`);
5. each method is a pure function of (A, dA) (:mod:`camkit.cam`), or, for the perturbation
   methods, of a :class:`PerturbationContext` (they run the model again);
6. maps: bilinear upsampling to the input size and min-max normalisation per map;
7. checks (:mod:`camkit._map_warnings`): maps that would mislead (zero gradients, no positive
   evidence, rounding noise, a softmax output) are listed in ``Explanation.warnings``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camkit._errors import ArgumentTypeError, InputError
from camkit._forward import ForwardOptions, forward_options, forward_with_capture
from camkit._inputs import Batch, Preprocessing, as_sequence, check_model_input, prepare_batch
from camkit._map_warnings import (
    Flag,
    flagged_maps,
    layer_flags,
    messages,
    probability_flag,
    row_names,
)
from camkit._spatial import Reshape, SpatialView, prefix_tokens, spatial_view
from camkit._targets import Targets, resolve_targets
from camkit.cam import LayerTensors, Method, get_method
from camkit.explanation import Explanation
from camkit.hooks import evaluation_mode, gradients, logits_of, model_device, model_float_dtype
from camkit.layers import auto_layer, describe_layer, resolve_layer
from camkit.models import LoadedModel, as_device

TargetSpec = int | str | Sequence[int] | Sequence[str] | Callable[[object], torch.Tensor] | None


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


def upsample_and_normalise(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling to ``size``, then min-max per map; a constant map becomes zeros."""
    maps = F.interpolate(raw.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
    maps = maps.squeeze(1)
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    span = high - low
    return torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1), 0.0)


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


@dataclass
class Request:
    """A checked call of :func:`camkit.explain`: the model, the prepared batch and the options.

    :meth:`run` is the plain one-pass explanation; smoothing (:mod:`camkit.smoothing`) calls it
    on noisy copies of ``x``.
    """

    network: nn.Module
    x: torch.Tensor
    batch: Batch
    methods: list[Method]
    layer_specs: list[Any]
    target: TargetSpec
    top_k: int | None
    categories: list[str] | None
    model_name: str
    pretrained: bool | None = None
    reshape: Reshape | None = None
    batch_size: int | None = None
    max_channels: int | None = None
    progress: bool | None = None
    gradient_options: ForwardOptions = field(default_factory=ForwardOptions)
    perturbation_options: ForwardOptions = field(default_factory=ForwardOptions)

    def run(
        self,
        x: torch.Tensor,
        batch: Batch,
        methods: list[Method],
        layer_specs: list[Any],
        target: TargetSpec,
        top_k: int | None,
    ) -> Explanation:
        """One pass (:func:`run_pass`) on ``x`` with this request's model and options."""
        return run_pass(
            self.network,
            x,
            batch,
            methods,
            layer_specs,
            target,
            top_k,
            self.categories,
            self.model_name,
            reshape=self.reshape,
            batch_size=self.batch_size,
            max_channels=self.max_channels,
            progress=self.progress,
            gradient_options=self.gradient_options,
            perturbation_options=self.perturbation_options,
            pretrained=self.pretrained,
        )


def prepare(
    model: nn.Module | LoadedModel,
    inputs: object,
    methods: list[Method],
    layers: object,
    target: TargetSpec = None,
    top_k: int | None = None,
    device: str | torch.device | None = None,
    reshape: Reshape | None = None,
    batch_size: int | None = None,
    max_channels: int | None = None,
    progress: bool | None = None,
    channels_last: bool | None = None,
    amp: bool | str = False,
) -> Request:
    """Check :func:`camkit.explain`'s arguments and turn the inputs into a batch on the device.

    Raises:
        ValueError: For a bad value.
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
    on = model_device(network)
    run_device = on if device is None else as_device(device)
    if run_device.type != on.type:
        raise InputError(
            f"`device` is {run_device} but the model is on {on}; move the model with "
            f"model.to('{run_device}') or leave `device` unset"
        )
    preprocessing = loaded.preprocessing if loaded is not None else Preprocessing()
    batch = prepare_batch(inputs, preprocessing)
    x = batch.tensor.to(on, dtype=model_float_dtype(network))
    check_model_input(x, batch.tensor, network)
    gradient_options, perturbation_options = (
        forward_options(channels_last, amp, on, gradient=gradient, batch=int(x.shape[0]))
        for gradient in (True, False)
    )
    return Request(
        network,
        x,
        batch,
        methods,
        layer_specs,
        target,
        top_k,
        categories=loaded.categories if loaded is not None else None,
        model_name=(loaded.name if loaded is not None else None) or type(network).__name__,
        pretrained=loaded.pretrained if loaded is not None else None,
        reshape=reshape,
        batch_size=batch_size,
        max_channels=max_channels,
        progress=progress,
        gradient_options=gradient_options,
        perturbation_options=perturbation_options,
    )


def methods_named(methods: str | Sequence[str]) -> list[Method]:
    """The registered methods called ``methods``, each once, in the order asked."""
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


def run_pass(
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
    pretrained: bool | None = None,
) -> Explanation:
    """The plain path: capture, scores and targets, one gradient call, methods, maps."""
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
        output, captured = forward_with_capture(
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
        layer_gradients = (
            [
                view.to_spatial(g)
                for view, g in zip(
                    views, gradients(targets.scores, raw_outputs, unique), strict=True
                )
            ]
            if needs_gradients
            else [None] * len(unique)
        )
        del output
    k = targets.scores.shape[1]
    raw: dict[tuple[str, str], torch.Tensor] = {}
    maps: dict[tuple[str, str], torch.Tensor] = {}
    detached_logits = logits.detach().float().cpu()
    rows = row_names(targets.indices, targets.labels, categories, batch.names)
    softmax_flag = probability_flag(detached_logits, model_name, rows, targets.indices)
    flags: list[Flag] = [softmax_flag] if softmax_flag is not None else []
    gradient_methods = {method.name for method in methods if method.needs_gradients}
    for name, view, activation, gradient in zip(
        unique, views, activations, layer_gradients, strict=True
    ):
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
        flags.extend(
            layer_flags(
                name,
                {method.name: r for method, r in zip(methods, layer_raws, strict=True)},
                a_rows,
                g,
                gradient_methods,
                rows,
            )
        )
        # One upsampling for all methods of the layer; normalisation stays per map.
        normalised = upsample_and_normalise(torch.cat(layer_raws), size).chunk(len(methods))
        shape = (x.shape[0], k) if top_k is not None else (x.shape[0],)
        for method, layer_raw, layer_map in zip(methods, layer_raws, normalised, strict=True):
            raw[(name, method.name)] = layer_raw.reshape(*shape, *layer_raw.shape[1:]).cpu()
            maps[(name, method.name)] = layer_map.reshape(*shape, *size).cpu()
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
        pretrained=pretrained,
        layer_types={name: describe_layer(network, name) for name in unique},
        warnings=messages(flags),
        flagged=flagged_maps(flags),
    )
