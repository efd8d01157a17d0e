"""Listing a model's candidate layers."""

from __future__ import annotations

import torch
from torch import nn

from camkit._engine import _model_device, _model_float_dtype, evaluation_mode
from camkit._errors import ArgumentTypeError
from camkit.layers import LayerInfo, probe
from camkit._models import LoadedModel


def list_layers(
    model: nn.Module | LoadedModel, input_size: tuple[int, int] | None = None
) -> list[LayerInfo]:
    """Every module of the model in execution order, with its output shape.

    One forward pass on a zero image finds the shapes; the layer that ``layers="auto"`` picks is
    marked ``is_auto``. The model's training flags are restored afterwards.

    Args:
        model: A module or a :class:`LoadedModel`.
        input_size: (H, W) of the probe image; defaults to the model's crop size, else 224.
    """
    loaded = model if isinstance(model, LoadedModel) else None
    network: nn.Module = loaded.model if loaded is not None else model  # type: ignore[assignment]
    if isinstance(network, torch.jit.ScriptModule):
        raise ArgumentTypeError(
            "`model` is a TorchScript module, whose layers cannot be hooked; load the eager model"
        )
    if input_size is None:
        side = loaded.preprocessing.crop_size if loaded is not None else 224
        input_size = (side, side)
    x = torch.zeros(
        1, 3, *input_size, device=_model_device(network), dtype=_model_float_dtype(network)
    )
    with evaluation_mode(network):
        return probe(network, x)
