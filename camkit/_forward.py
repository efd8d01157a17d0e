"""How camkit runs the user's model: memory format and mixed precision, never touching the model.

Channels-last input: a (B, C, H, W) batch laid out as (B, H, W, C) in memory makes the CPU
(oneDNN) convolutions pick their faster kernels. Measured by ``benchmarks/bench_perturbation.py``
on 2 CPU cores at 32 images per no-grad forward (its NCHW and channels-last floors): ResNet-18
1.4x, ResNet-50 1.5x, EfficientNet-Lite0 1.5x faster. Only the input's layout changes (the
weights keep theirs), so the model is untouched and the values are those of the same
convolutions summed in another order. For the gradient pass (which runs without autograd up to
the explained layer) ``benchmarks/bench_layout.py`` measured channels-last faster on the CPU for
all 8 models it tries at batch 8 (0.53x to 0.91x the NCHW time) but slower for ResNet-50 at
batch 1 (1.05x), so the gradient pass uses it on the CPU from 2 images up.

No autograd before the layers: the gradient with respect to a layer's output depends only on
what is computed from that output, so the forward runs under ``torch.no_grad()`` and autograd is
switched on when the explained layers run (at their last call; see :func:`forward_with_capture`).
The layers before cost what a plain inference forward costs.

Mixed precision: ``torch.autocast`` around the forward (bfloat16 where the device supports it,
else float16 on CUDA). Captured activations and gradients are turned to float32 before any
method reads them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from camkit._errors import ArgumentTypeError, InputError
from camkit.hooks import Capture, capturing

Result = TypeVar("Result")

_AMP_NAMES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16}
_AMP_NAMES["float16"] = torch.float16


def amp_dtype(amp: bool | str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype asked for by ``explain(amp=...)``, or ``None`` for full precision.

    Raises:
        ValueError: For an unknown name, or float16 on the CPU.
        TypeError: For a value that is neither a bool nor a string.
    """
    if amp is None or amp is False:
        return None
    if amp is True:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    if not isinstance(amp, str):
        raise ArgumentTypeError(f"`amp` must be True, False, 'bf16' or 'fp16', got {amp!r}")
    dtype = _AMP_NAMES.get(amp.strip().lower())
    if dtype is None:
        raise InputError(f"`amp` must be True, False, 'bf16' or 'fp16', got {amp!r}")
    if dtype is torch.float16 and device.type == "cpu":
        raise InputError("`amp='fp16'` needs a CUDA device; use amp='bf16' on the CPU")
    return dtype


@dataclass
class ForwardOptions:
    """How to call the model.

    Attributes:
        channels_last: Hand 4-D inputs to the model in channels-last layout. Set to ``False`` by
            :meth:`call` when the model rejects that layout (a ``.view`` that needs NCHW strides).
        autocast: The ``torch.autocast`` dtype, or ``None``.
        device_type: ``"cpu"`` or ``"cuda"``, for autocast.
    """

    channels_last: bool = False
    autocast: torch.dtype | None = None
    device_type: str = "cpu"

    @contextmanager
    def precision(self) -> Iterator[None]:
        """Autocast for the forward, when asked."""
        context: AbstractContextManager[object] = nullcontext()
        if self.autocast is not None:
            context = torch.autocast(self.device_type, dtype=self.autocast)
        with context:
            yield

    def call(
        self,
        run: Callable[[torch.Tensor], Result],
        inputs: torch.Tensor,
        *,
        fallback: bool = True,
    ) -> Result:
        """``run(inputs)`` with the chosen layout and precision.

        A model that fails on a channels-last input is run again on the contiguous one (and
        channels-last is not tried again); with ``fallback=False`` the failure is raised.
        """
        with self.precision():
            if self.channels_last and inputs.dim() == 4 and inputs.is_floating_point():
                try:
                    return run(inputs.contiguous(memory_format=torch.channels_last))
                except RuntimeError:
                    if not fallback:
                        raise
                    self.channels_last = False
            return run(inputs)


#: From this many images up, the gradient pass on the CPU takes channels-last input by default.
CPU_CHANNELS_LAST_FROM = 2


def forward_options(
    channels_last: bool | None,
    amp: bool | str | None,
    device: torch.device,
    *,
    gradient: bool,
    batch: int = 1,
) -> ForwardOptions:
    """The options of one kind of pass: the gradient pass or the batched no-grad forwards.

    ``channels_last=None`` (auto) uses channels-last for the batched no-grad forwards of the
    perturbation methods on the CPU, for the gradient pass on the CPU when it has ``batch`` of
    at least :data:`CPU_CHANNELS_LAST_FROM` images, and for both on CUDA under autocast.
    """
    if channels_last is not None and not isinstance(channels_last, bool):
        raise ArgumentTypeError(
            f"`channels_last` must be True, False or None, got {channels_last!r}"
        )
    dtype = amp_dtype(amp, device)
    if channels_last is None:
        on_cpu = device.type == "cpu" and (not gradient or batch >= CPU_CHANNELS_LAST_FROM)
        use = on_cpu or dtype is not None
    else:
        use = channels_last
    return ForwardOptions(use, dtype, device.type)


#: Per model, how many times each hooked layer ran in its last forward.
_CALLS: weakref.WeakKeyDictionary[nn.Module, dict[str, int]] = weakref.WeakKeyDictionary()


def forward_with_capture(
    network: nn.Module,
    x: torch.Tensor,
    modules: dict[str, nn.Module],
    names: list[str],
    options: ForwardOptions,
    needs_gradients: bool,
) -> tuple[object, Capture]:
    """The capturing forward; with gradients, autograd only from the layers' last calls on.

    A module the model calls several times (EfficientNet's shared activation, at the stem and at
    the head) is explained at its last call; the call counts of the model's previous forward
    say which call that is. When a layer ran fewer times than last time, autograd came on too
    late: the forward runs again with autograd from the start.
    """

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
