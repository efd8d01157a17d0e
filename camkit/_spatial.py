"""Spatial views of layer outputs: token and channels-last layouts seen as (B, C, h, w) maps.

CAM methods work on (B, C, h, w) activations. Vision transformers emit (B, N, C) tokens (with a
class token, a distillation token or register tokens before the patch tokens), Swin and some timm
models emit channels-last (B, h, w, C) tensors. A :class:`SpatialView` is a pure index mapping
from such a raw output to (B, C, h, w) and back, decided once per layer from the output's shape,
the module that produced it, the input size and the prefix tokens the model declares; nothing is
guessed from sizes alone when two readings fit (the error then suggests ``reshape=``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from camkit._errors import ArgumentTypeError, InputError

#: A user's mapping from a layer's raw output to a (B, C, h, w) tensor.
Reshape = Callable[[torch.Tensor], torch.Tensor]

#: Parameter names under which models keep tokens placed before the patch tokens.
_PREFIX_TOKEN_PARAMETERS = frozenset(
    {
        "cls_token",
        "class_token",
        "class_embedding",
        "dist_token",
        "distillation_token",
        "reg_token",
        "register_tokens",
    }
)

#: Modules whose output is channels-first by construction.
_CHANNELS_FIRST_MODULES = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
)

_HINT = (
    "pass `reshape=` a function mapping the layer's output to (B, C, h, w), or pick another layer "
    "(see camkit.list_layers(model))"
)


@dataclass(frozen=True)
class SpatialView:
    """How one layer's raw output is seen as a (B, C, h, w) map.

    Attributes:
        layout: ``"channels_first"`` (B, C, h, w), ``"channels_last"`` (B, h, w, C), ``"tokens"``
            (B, N, C) or ``"custom"`` (the user's ``reshape``).
        grid: (h, w) of the spatial map.
        prefix_tokens: Tokens before the patch tokens (class, distillation, register), dropped.
        reshape: The user's function, for the ``"custom"`` layout.
    """

    layout: str
    grid: tuple[int, int]
    prefix_tokens: int = 0
    reshape: Reshape | None = None

    def to_spatial(self, raw: torch.Tensor) -> torch.Tensor:
        """The (B, C, h, w) view of ``raw``: index selection only, so gradients flow through it."""
        if self.layout == "channels_first":
            return raw
        if self.layout == "channels_last":
            return raw.permute(0, 3, 1, 2)
        if self.layout == "tokens":
            return raw[:, self.prefix_tokens :, :].unflatten(1, self.grid).permute(0, 3, 1, 2)
        assert self.reshape is not None
        return self.reshape(raw)

    def from_spatial(self, spatial: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """``raw`` with the entries seen by :meth:`to_spatial` replaced by ``spatial``.

        Prefix tokens (and anything else a custom view does not select) keep their raw values.

        Raises:
            ValueError: If a custom ``reshape`` is not an index selection (each raw entry used at
                most once, unchanged), so that it cannot be inverted.
        """
        if self.layout == "channels_first":
            return spatial
        if self.layout == "channels_last":
            return spatial.permute(0, 2, 3, 1)
        if self.layout == "tokens":
            patches = spatial.permute(0, 2, 3, 1).flatten(1, 2)
            return torch.cat([raw[:, : self.prefix_tokens, :].to(patches.dtype), patches], dim=1)
        return self._custom_inverse(spatial, raw)

    def _custom_inverse(self, spatial: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        # For an index selection S, S^T (the vector-Jacobian product) scatters values back; the
        # entries S selects are replaced and the others kept: raw - S^T S raw + S^T spatial.
        assert self.reshape is not None
        with torch.enable_grad():
            source = raw.detach().requires_grad_(True)
            selected = self.reshape(source)
            if selected.shape != spatial.shape:
                raise InputError(
                    f"`reshape` returned shape {tuple(selected.shape)}, but the spatial tensor has "
                    f"shape {tuple(spatial.shape)}"
                )
            (scattered,) = torch.autograd.grad(
                selected,
                source,
                grad_outputs=spatial.detach().to(selected.dtype),
                retain_graph=True,
            )
            (kept,) = torch.autograd.grad(selected, source, grad_outputs=selected.detach())
        result = raw.detach() - kept + scattered
        if not torch.allclose(self.reshape(result), spatial, rtol=1e-5, atol=1e-6):
            raise InputError(
                "`reshape` is not an index selection (reshape, permute, slicing), so camkit "
                "cannot write a spatial tensor back into the layer's layout for ablationcam; use "
                "a reshape made of indexing, reshape and permute only, or other methods"
            )
        return result


def prefix_tokens(model: nn.Module) -> int | None:
    """Tokens the model places before its patch tokens, or ``None`` if it declares none.

    timm's ``num_prefix_tokens`` wins; otherwise the parameters named like class, distillation
    and register tokens are counted (torchvision ``class_token``, Hugging Face ``cls_token``,
    ``distillation_token``, ``register_tokens``, CLIP ``class_embedding``).
    """
    declared = getattr(model, "num_prefix_tokens", None)
    if isinstance(declared, int) and not isinstance(declared, bool):
        return declared
    count = 0
    for name, parameter in model.named_parameters():
        if name.rsplit(".", 1)[-1] in _PREFIX_TOKEN_PARAMETERS:
            count += parameter.numel() // parameter.shape[-1] if parameter.dim() else 0
    return count or None


def fits_input(grid: tuple[int, int], input_size: tuple[int, int]) -> bool:
    """Whether an (h, w) grid can come from an (H, W) input by one downsampling factor.

    Each side may be off by one cell (padding, kernel borders): some s >= 1 gives
    |h - H/s| <= 1 and |w - W/s| <= 1, and the grid is no larger than the input.
    """
    (h, w), (big_h, big_w) = grid, input_size
    if not (1 <= h <= big_h and 1 <= w <= big_w):
        return False
    low, high = 1.0, float("inf")
    for cells, pixels in ((h, big_h), (w, big_w)):
        low = max(low, pixels / (cells + 1))
        if cells > 1:
            high = min(high, pixels / (cells - 1))
    return low <= high


def _patch_grid(grid: tuple[int, int], input_size: tuple[int, int]) -> bool:
    """Whether one integer patch stride s turns (H, W) into (h, w), rounding either way."""
    cells, pixels = grid[0], input_size[0]
    if cells < 1:
        return False
    # cells is pixels // s or ceil(pixels / s) only for pixels/(cells+1) < s < pixels/(cells-1):
    # try those strides alone (a handful) rather than every stride up to the input's size.
    low = max(1, pixels // (cells + 1))
    high = pixels // (cells - 1) + 1 if cells > 1 else max(input_size)
    return any(
        all(n in (size // s, -(-size // s)) for n, size in zip(grid, input_size, strict=True))
        for s in range(low, min(high, max(input_size)) + 1)
    )


def _token_grids(tokens: int, input_size: tuple[int, int]) -> list[tuple[int, int]]:
    return [
        (h, tokens // h)
        for h in range(1, tokens + 1)
        if tokens % h == 0 and _patch_grid((h, tokens // h), input_size)
    ]


def _four_d_layout(shape: tuple[int, ...], module: nn.Module | None) -> str | None:
    """The layout the module type implies for a 4-D output, or ``None`` when it says nothing."""
    if module is None:
        return None
    name = type(module).__name__
    if isinstance(module, _CHANNELS_FIRST_MODULES) or name.endswith("2d"):
        return "channels_first"  # includes LayerNorm2d / BatchNorm2d / Conv2dSame variants
    if isinstance(module, nn.LayerNorm) and tuple(module.normalized_shape) == (shape[-1],):
        return "channels_last"
    if isinstance(module, nn.Linear) and module.out_features == shape[-1]:
        return "channels_last"
    return None


def _may_be_channels_last(module: nn.Module | None) -> bool:
    """Whether a module could emit (B, h, w, C): only blocks with a last-axis LayerNorm or Linear.

    PyTorch's convention is channels-first; a channels-last tensor comes out of blocks that
    normalise or project over the last axis (Swin, ConvNeXt and MaxViT blocks, permutes).
    """
    if module is None:
        return True
    return any(
        isinstance(sub, (nn.LayerNorm, nn.Linear)) or "permute" in type(sub).__name__.lower()
        for sub in module.modules()
    )


def infer_view(
    output: torch.Tensor,
    input_size: tuple[int, int],
    module: nn.Module | None = None,
    prefix: int | None = None,
) -> SpatialView | str:
    """The spatial view of a layer's output, or a sentence saying why there is none.

    Args:
        output: The layer's raw output.
        input_size: (H, W) of the model's input.
        module: The module that produced it; its type settles channels-first vs channels-last.
        prefix: Prefix tokens the model declares (:func:`prefix_tokens`).
    """
    shape = tuple(output.shape)
    if output.dim() == 4:
        # Channels-last tensors come from patch-based models: their grid must be an exact patch
        # grid; channels-first ones may be off by a cell or more (padding-free convolutions).
        first = fits_input((shape[2], shape[3]), input_size)
        last = _patch_grid((shape[1], shape[2]), input_size)
        by_type = _four_d_layout(shape, module)
        if by_type == "channels_first" or (by_type is None and first and not last):
            return SpatialView("channels_first", (shape[2], shape[3]))
        if by_type == "channels_last" or (by_type is None and last and not first):
            return SpatialView("channels_last", (shape[1], shape[2]))
        if first and last and not _may_be_channels_last(module):
            return SpatialView("channels_first", (shape[2], shape[3]))
        if first and last:
            return (
                f"shape {shape} reads as (B, C, h, w) and as (B, h, w, C) for a "
                f"{input_size[0]}x{input_size[1]} input"
            )
        return f"shape {shape} has no (h, w) grid that fits a {input_size[0]}x{input_size[1]} input"
    if output.dim() == 3:
        tokens = shape[1]
        for dropped in dict.fromkeys([prefix or 0, 0]):
            grids = _token_grids(tokens - dropped, input_size) if tokens > dropped else []
            if len(grids) == 1:
                return SpatialView("tokens", grids[0], dropped)
            if len(grids) > 1:
                return (
                    f"{tokens - dropped} tokens of shape {shape} fit several grids "
                    f"({', '.join(f'{h}x{w}' for h, w in grids)})"
                )
        declared = f" after {prefix} prefix tokens" if prefix else ""
        return (
            f"{tokens} tokens of shape {shape}{declared} form no (h, w) grid that fits a "
            f"{input_size[0]}x{input_size[1]} input"
        )
    return f"shape {shape} is neither (B, C, h, w), (B, h, w, C) nor (B, N, C) tokens"


def spatial_view(
    name: str,
    output: torch.Tensor,
    input_size: tuple[int, int],
    module: nn.Module | None = None,
    prefix: int | None = None,
    reshape: Reshape | None = None,
) -> SpatialView:
    """:func:`infer_view` for an explained layer, or the user's ``reshape``, checked.

    Raises:
        ValueError: If the output has no spatial reading, or two; the message names the layer.
        TypeError: If ``reshape`` is not callable or returns no tensor.
    """
    batch = output.shape[0] if output.dim() else 0
    if reshape is not None:
        if not callable(reshape):
            raise ArgumentTypeError(
                f"`reshape` must be a function of the layer output, got {type(reshape).__name__}"
            )
        mapped = reshape(output)
        if not isinstance(mapped, torch.Tensor):
            raise ArgumentTypeError(
                f"`reshape` returned a {type(mapped).__name__} for layer {name!r}; return a "
                "(B, C, h, w) tensor"
            )
        if mapped.dim() != 4 or mapped.shape[0] != batch:
            raise InputError(
                f"`reshape` mapped layer {name!r} output {tuple(output.shape)} to shape "
                f"{tuple(mapped.shape)}, not (B, C, h, w) with B = {batch}"
            )
        return SpatialView("custom", (int(mapped.shape[2]), int(mapped.shape[3])), 0, reshape)
    view = infer_view(output, input_size, module, prefix)
    if isinstance(view, str):
        raise InputError(f"layer {name!r} output cannot be seen as a spatial map: {view}; {_HINT}")
    return view
