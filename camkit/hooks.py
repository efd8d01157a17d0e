"""Hooks: capture a layer's activations, and the gradients of a score with respect to them.

Grad-CAM needs two tensors per layer, both taken from one forward pass:

- the activations ``A``, the layer's output, caught by a *forward hook*: a function PyTorch calls
  with ``(module, inputs, output)`` every time the module runs;
- the gradients ``dy/dA`` of the class score ``y`` with respect to ``A``, from one call of
  :func:`torch.autograd.grad` once the forward has given ``y``.

A learner's use::

    with camkit.hooks.capture(model, ["features.6"]) as seen:
        logits = model(x)
    activations = seen.activations["features.6"]                 # (N, C, h, w)
    gradients = seen.gradients(logits[:, 285].sum())["features.6"]  # same shape
    assert camkit.hooks.hook_count(model) == 0                   # the hooks are gone

The hooks are removed when the ``with`` block ends, also when the forward raises, so the user's
model is left as it was found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from camkit._errors import ArgumentTypeError, InputError
from camkit._locks import serialised

__all__ = [
    "Capture",
    "capture",
    "capturing",
    "evaluation_mode",
    "gradients",
    "hook_count",
    "logits_of",
    "model_device",
    "model_float_dtype",
]


@dataclass
class Capture:
    """What :func:`capturing` saw: each layer's output at its last call, and the call counts.

    Attributes:
        outputs: Layer name -> the output of its last call (what :attr:`activations` returns).
        calls: Layer name -> how many times the layer ran.
        recorded: Layer name -> whether autograd was on when its kept output was taken.
    """

    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    recorded: dict[str, bool] = field(default_factory=dict)

    @property
    def activations(self) -> dict[str, torch.Tensor]:
        """Layer name -> its output ``A`` (the same tensors as :attr:`outputs`)."""
        return self.outputs

    def get(self, name: str) -> torch.Tensor | None:
        """The output of layer ``name``, or ``None`` when it did not run."""
        return self.outputs.get(name)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.outputs[name]

    def gradients(self, score: torch.Tensor) -> dict[str, torch.Tensor]:
        """``d(score)/dA`` for every captured layer, from one :func:`torch.autograd.grad` call.

        Args:
            score: A scalar computed from the forward run inside the block, such as
                ``logits[:, class_index].sum()`` (the sum gives each image its own gradient,
                since images do not interact in eval mode).

        Raises:
            ValueError: When the score does not depend on a captured layer.
        """
        names = list(self.outputs)
        grads = gradients(score.reshape(-1, 1), [self.outputs[n] for n in names], names)
        return dict(zip(names, grads, strict=True))


@contextmanager
def capturing(
    modules: dict[str, nn.Module],
    names: Sequence[str],
    *,
    grad_from: dict[str, int] | None = None,
) -> Iterator[Capture]:
    """Hook the named modules; yield a :class:`Capture` of each one's output at its last call.

    Args:
        modules: Every name of the model -> its module (``dict(model.named_modules())``).
        names: The layers to capture.
        grad_from: Layer name -> call index from which autograd is turned on for the rest of the
            forward (run the forward under ``torch.no_grad()``: only the network after the
            layers records a graph; the speed work of :mod:`camkit._forward`).

    Yields:
        The capture, filled in as the forward runs.
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
                # A frozen layer: make its output a leaf that records, so dy/dA still exists.
                output = output.detach().requires_grad_(True)
            # A module the model calls twice (a shared activation) is explained at its last
            # call: each call overwrites the one before.
            capture.outputs[name] = output
            capture.recorded[name] = torch.is_grad_enabled()
            # The rest of the network gets a copy: an in-place ReLU after the layer would
            # otherwise overwrite the captured activations.
            return output.clone()

        return hook

    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        yield capture
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture(
    model: nn.Module, layers: str | nn.Module | Sequence[str | nn.Module]
) -> Iterator[Capture]:
    """Capture the activations of ``layers`` during the forward passes run inside the block.

    Args:
        model: Any ``nn.Module``; it is not changed (the hooks go when the block ends).
        layers: Dotted names from ``model.named_modules()`` (``"layer4"``, ``"features.6"``), or
            submodules of ``model``. :func:`camkit.layers.resolve_layer` also reads
            pytorch-gradcam's underscore names.

    Yields:
        A :class:`Capture`: ``.activations[name]`` after the forward, ``.gradients(score)``.

    Raises:
        ValueError: For a name the model does not have.
    """
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    by_module = {id(module): name for name, module in modules.items()}
    items = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
    names = []
    for item in items:
        name = by_module.get(id(item)) if isinstance(item, nn.Module) else item
        if name is None or name not in modules:
            raise InputError(
                f"`layers` {item if isinstance(item, str) else type(item).__name__!r} is not a "
                "module of this model; pass a dotted name from model.named_modules()"
            )
        names.append(name)
    with capturing(modules, names) as seen:
        yield seen


def hook_count(model: nn.Module) -> int:
    """How many forward and forward-pre hooks the model's modules carry (0 for a clean model)."""
    return sum(
        len(module._forward_hooks) + len(module._forward_pre_hooks) for module in model.modules()
    )


def gradients(
    scores: torch.Tensor, activations: list[torch.Tensor], names: list[str]
) -> list[torch.Tensor]:
    """``d(score)/dA`` for every layer at once: (B*K, ...) each, rows ordered (image, class).

    ``scores`` is (B, K): K explained classes per image. Images are independent in eval mode, so
    summing over the batch gives each image its own gradient; the K classes are one batched
    backward (``is_grads_batched``), with a loop as the fallback.

    Raises:
        ValueError: When the score does not depend on a layer.
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


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode for the block and restore each flag afterwards.

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


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for a model with neither)."""
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def model_float_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (float32 when none)."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


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
