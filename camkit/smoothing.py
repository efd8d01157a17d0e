"""Smoothing (noise, test-time augmentation), Smooth Grad-CAM++ and the guided methods' passes.

:func:`explain_extended` runs whatever one plain engine pass cannot: maps averaged over noisy or
augmented copies of the input, ``smoothgradcam++`` and the guided methods (:mod:`camkit.guided`).

Where averaging happens: each copy's raw map (the method's output at the layer, before
normalisation) is upsampled bilinearly to the *original* input resolution and mapped back to the
original geometry (un-flipped); these un-normalised maps are averaged over the copies, and only
the average is min-max normalised. Raw layer maps cannot be averaged directly, since a scaled copy
gives a layer map of another size. For noise alone the result is the same as averaging the raw
layer maps and upsampling the mean (bilinear upsampling is linear).

Targets are always resolved on the clean input: the Explanation's logits, targets and labels are
the clean image's, and every copy is explained for the clean image's class.

Smoothing, Smooth Grad-CAM++ and guided pictures
------------------------------------------------

Lesson 08 (``notebooks/08_beyond.ipynb``) draws these maps on the sample pictures.

```python
import camkit

model = camkit.load_model("efficientnet_lite0")
exp = camkit.explain(model, "dog.png", ["gradcam", "guided-gradcam"], smooth="noise")
exp["gradcam"]                           # (B, H, W) smoothed map in [0, 1]
exp.guided[exp.layers[0], "guided-gradcam"]  # (B, 3, H, W) signed gradient image
exp.overlay("guided-gradcam")            # the gradient image as a PIL picture
exp = camkit.explain(model, "dog.png", "smoothgradcam++", smooth_samples=32)
```

```sh
camkit explain dog.png --method gradcam --method guided-gradcam --smooth augment
camkit explain dog.png --method smoothgradcam++ --smooth-samples 32 --smooth-sigma 0.2
```

## Smoothing any method: `smooth="noise"` and `smooth="augment"`

`explain(..., smooth=...)` works with every method (gradient, activation, perturbation and guided).

| option | default | meaning |
| --- | --- | --- |
| `smooth` | `None` | `"noise"` or `"augment"` |
| `smooth_samples` | 16 | noisy copies per image (`"noise"` and `smoothgradcam++`) |
| `smooth_sigma` | 0.15 | noise standard deviation as a fraction of the image's value range |
| `seed` | 0 | seed of the noise generator |

- **noise** (SmoothGrad: Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017,
  <https://arxiv.org/abs/1706.03825>): copy `s` of image `x` is
  `x + sigma * (max(x) - min(x)) * n_s`, with `n_s ~ N(0, 1)` of the input's shape; the paper finds
  10-20% of the range best. The draws come from `torch.Generator().manual_seed(seed)` on the CPU
  in float32, `(samples, C, H, W)` at once, and every image of the batch gets the same draws
  (scaled by its own range): the same call gives the same maps on any device, and an image's maps
  do not depend on the other images of its batch.
- **augment** (test-time augmentation): six copies, the image at scales 1, 0.875 and 1.125
  (bilinear resize of the model input) each unflipped and flipped horizontally.

**Where the averaging happens.** Each copy's raw map (the method's output at the layer, before
any normalisation) is upsampled bilinearly straight to the original input size and un-flipped;
these maps are averaged, and only the average is min-max normalised to [0, 1]. Raw layer maps of
different scales have different sizes, so they cannot be averaged at the layer. For noise alone
this equals averaging the layer maps first (bilinear upsampling is linear). Raw maps are averaged
un-normalised, as SmoothGrad averages raw gradients, so a copy with a stronger map weighs more.
With smoothing, `Explanation.raw` holds that average at the input resolution (not the layer's).

**Targets stay the clean image's.** One clean forward and backward gives the logits, the targets
and the labels the Explanation reports; every copy is then explained for that class (a custom
`target=` callable is applied to each copy's output). A copy classified otherwise still explains
the clean image's class.

**Cost.** Copies run through the engine in passes of up to 32 (one forward and one backward each):
`smooth="noise"` costs about `samples` times a plain call, `"augment"` about 6 times, plus the
clean pass. The guided methods add one guided pass per chunk.

## `smoothgradcam++`

Omeiza et al., "Smooth Grad-CAM++: An Enhanced Inference Level Visualization Technique for Deep
Convolutional Neural Network Models", 2019, <https://arxiv.org/abs/1908.01224>. With `G_t = dy/dA`
at the layer for the t-th of n noisy copies (noise as above):

```
D1 = mean_t G_t,  D2 = mean_t G_t^2,  D3 = mean_t G_t^3
alpha = D2 / (2 D2 + sum_ab A_ab D3)        (0 where the denominator is 0)
w_k = sum_ij alpha_ij ReLU(D1_ij),   L = ReLU(sum_k w_k A_k)
```

`A` is the clean image's activation: only the derivatives are smoothed, the map explains the clean
image. With one sample and `smooth_sigma=0` it is Grad-CAM++ exactly (a test checks this). It uses
`smooth_samples`, `smooth_sigma` and `seed`; `smooth="noise"` leaves it as it is (it is already
noise-smoothed) and `smooth="augment"` with it is an error. It reads the layer's activations
itself, so it needs a layer with an (N, C, h, w) output.

## `guided-backprop` and `guided-gradcam`

- **Guided Backpropagation** (Springenberg et al., "Striving for Simplicity: The All
  Convolutional Net", 2015, <https://arxiv.org/abs/1412.6806>): the gradient of the target score
  with respect to the input, where every ReLU's backward keeps a gradient only where its forward
  input was positive *and* the gradient is positive: `R_l = (f_l > 0)(R_{l+1} > 0) R_{l+1}`.
- **Guided Grad-CAM** (Selvaraju et al., "Grad-CAM", 2017, <https://arxiv.org/abs/1610.02391>):
  the guided image times the Grad-CAM map of the layer, upsampled bilinearly to the input and
  divided by its maximum (the scale is ours; it keeps the gradient's units and zeros).

They need a second forward and backward pass, to the input, only when asked. During it a
`torch.overrides.TorchFunctionMode` swaps each ReLU call for one with the guided backward. No
hooks, flags or gradients are left on the model, also when the call fails.

| activation in the model | guided? |
| --- | --- |
| `nn.ReLU`, `nn.ReLU(inplace=True)`, `F.relu` (also `inplace=True`), `F.relu_`, `torch.relu`, `torch.relu_`, `Tensor.relu`, `Tensor.relu_` | yes |
| `nn.ReLU6` (the offline Lite0), `F.relu6`, `F.hardtanh(x, 0, m)`, `F.hardtanh_(x, 0, m)` | yes, the analogous rule: the gradient passes where `0 < x < m` and it is positive |
| SiLU/Swish, GELU, LeakyReLU, ELU, `hardtanh` with a negative lower bound, `clamp`, `torch.ops.aten.relu` | no: ordinary gradient (guided backpropagation is defined for ReLUs) |

When no ReLU is found at all, camkit warns that the picture is the plain input gradient.

**What the Explanation holds.** `exp.guided[(layer, method)]` is the signed gradient image,
`(B, 3, H, W)` (`(B, K, 3, H, W)` with `top_k`); guided-backprop's is the same for every layer.
`exp[method]` / `exp.maps` hold its saliency `max_c |g_c|` (Simonyan et al. 2013), min-max
normalised, so code that expects a heatmap still gets one; `exp.raw` holds the saliency before
normalisation. `exp["gradcam"]` and the other methods are unchanged.

**Pictures.** Guided images are drawn as pictures, not colormaps: per image, over all channels,
`(g - mean) / std * 0.1 + 0.5` clipped to [0, 1] (the usual display of the papers' code), so 0 is
mid grey. `exp.overlay(method)` returns that picture for a guided method (`colormap` and `alpha`
do not apply); in `exp.figure()`, `exp.save()`, `camkit.grid()` and the CLI's PNGs the
"heatmap" panel of a guided method is this picture and its "overlay" panel the saliency over the
photo.

## Checked by the tests

`tests/test_smoothing.py` and `tests/test_guided.py`: noise smoothing equals the mean of maps
computed one noisy input at a time with the same noise; a flip-equivariant model's augmented map
equals the plain one; augmentation by hand on a pooled linear model; Smooth Grad-CAM++ against its
formula; guided backpropagation against the masked chain rule written out by hand for every ReLU
form above and for ReLU6; Guided Grad-CAM equals the product; batch and `top_k` equal one call per
image and class; the model unchanged and no hooks or function modes left after success and after
an error; on the offline Lite0 and `both.png`, Guided Grad-CAM's peak lies in the dog's and the
cat's box with more than 1.8 times their area share of the energy, and the smoothed Grad-CAM
peaks in the dog's box.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from camkit._errors import ArgumentTypeError, InputError
from camkit._forward import ForwardOptions
from camkit._forward import forward_with_capture as _forward_with_capture
from camkit._inputs import Batch
from camkit._targets import resolve_targets
from camkit.cam import LayerTensors, Method, get_method, register_method
from camkit.engine import Request
from camkit.engine import upsample_and_normalise as _upsample_and_normalise
from camkit.explanation import Explanation
from camkit.guided import GUIDED_METHODS, guided_gradients, saliency, scale_by_max
from camkit.hooks import capturing, evaluation_mode, logits_of
from camkit.hooks import gradients as _gradients

__all__ = [
    "AUGMENT_SCALES",
    "CHUNK_ROWS",
    "DEFAULT_SAMPLES",
    "DEFAULT_SEED",
    "DEFAULT_SIGMA",
    "Smoothing",
    "explain_extended",
    "noise",
    "smoothing_options",
]

#: Noisy copies per image for ``smooth="noise"`` and ``smoothgradcam++``.
DEFAULT_SAMPLES = 16
#: Noise standard deviation as a fraction of each image's value range (max - min); SmoothGrad's
#: paper finds 10-20% works best.
DEFAULT_SIGMA = 0.15
#: Seed of the noise generator, so the same call gives the same maps.
DEFAULT_SEED = 0
#: Input scales of ``smooth="augment"``; each is used unflipped and flipped horizontally.
AUGMENT_SCALES = (1.0, 0.875, 1.125)
#: Copies per forward and backward pass; more are split into several passes.
CHUNK_ROWS = 32

SMOOTHGRADCAM_PP = "smoothgradcam++"

#: The engine's one pass: (x, batch, methods, layers, target, top_k) -> Explanation.
Run = Callable[[torch.Tensor, Batch, list[Method], list[Any], Any, int | None], Explanation]


@dataclass(frozen=True)
class Smoothing:
    """Validated smoothing options.

    Attributes:
        mode: ``"noise"`` or ``"augment"``; ``None`` for no smoothing of the ordinary methods.
        samples: Noisy copies per image.
        sigma: Noise standard deviation as a fraction of the image's value range.
        seed: Seed of the ``torch.Generator`` that draws the noise.
    """

    mode: str | None
    samples: int
    sigma: float
    seed: int


def smoothing_options(
    smooth: str | None,
    samples: int | None,
    sigma: float | None,
    seed: int,
    noisy_method: bool,
) -> Smoothing | None:
    """Check the smoothing arguments of :func:`camkit.explain`.

    Args:
        smooth: ``None``, ``"noise"`` or ``"augment"``.
        samples: Copies per image, or ``None`` for the default.
        sigma: Noise level, or ``None`` for the default.
        seed: Noise seed.
        noisy_method: Whether ``smoothgradcam++`` was asked (it uses the noise options).

    Returns:
        The options, or ``None`` when nothing is smoothed.

    Raises:
        ValueError: For an unknown mode, a non-positive count or a negative noise level, or noise
            options without noise.
        TypeError: For arguments of the wrong type.
    """
    if smooth is not None and not isinstance(smooth, str):
        raise ArgumentTypeError(
            f"`smooth` must be 'noise', 'augment' or None, got {type(smooth).__name__}"
        )
    mode = smooth.strip().lower() if smooth is not None else None
    if mode not in (None, "noise", "augment"):
        raise InputError(f"`smooth` {smooth!r} is unknown; pass 'noise', 'augment' or None")
    if mode == "augment" and noisy_method:
        raise InputError(
            "smoothgradcam++ averages over noisy copies already; leave `smooth` unset or pass "
            "smooth='noise' with it"
        )
    uses_noise = mode == "noise" or noisy_method
    for name, value in (("smooth_samples", samples), ("smooth_sigma", sigma)):
        if value is not None and not uses_noise:
            raise InputError(
                f"`{name}` only applies to smooth='noise' and smoothgradcam++; pass "
                "smooth='noise' or leave it out"
            )
    if samples is None:
        samples = DEFAULT_SAMPLES
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral):
        raise ArgumentTypeError(f"`smooth_samples` must be an int, got {type(samples).__name__}")
    if samples < 1:
        raise InputError(f"`smooth_samples` must be at least 1, got {samples}")
    if sigma is None:
        sigma = DEFAULT_SIGMA
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise ArgumentTypeError(f"`smooth_sigma` must be a number, got {type(sigma).__name__}")
    if not 0.0 <= float(sigma) < float("inf"):
        raise InputError(
            f"`smooth_sigma` must be a finite number >= 0 (a fraction of the image's value "
            f"range, e.g. 0.15), got {sigma}"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ArgumentTypeError(f"`seed` must be an int, got {type(seed).__name__}")
    if mode is None and not noisy_method:
        return None
    return Smoothing(mode, int(samples), float(sigma), int(seed))


def noise(x: torch.Tensor, samples: int, sigma: float, seed: int) -> torch.Tensor:
    """The noise added to each image: (samples, B, C, H, W).

    Every image gets the same ``samples`` standard normal draws of shape (C, H, W), drawn in
    float32 on the CPU from ``torch.Generator().manual_seed(seed)`` (so the result is the same on
    every device and for every batch it is part of), times ``sigma * (max - min)`` of that image.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    draws = torch.randn((samples, *x.shape[1:]), generator=generator, dtype=torch.float32)
    spread = sigma * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))  # (B,)
    draws = draws.to(device=x.device, dtype=x.dtype)
    return draws[:, None] * spread[None, :, None, None, None]


@dataclass(frozen=True)
class _View:
    """One transformed copy of the batch and the way back to the original geometry."""

    apply: Callable[[torch.Tensor], torch.Tensor]
    flip: bool = False

    def back(self, maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Resize (N, C, h, w) to ``size`` bilinearly, then undo the flip."""
        if tuple(maps.shape[-2:]) != size:
            maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        return maps.flip(-1) if self.flip else maps


def _views(x: torch.Tensor, options: Smoothing) -> list[_View]:
    if options.mode == "augment":
        height, width = int(x.shape[-2]), int(x.shape[-1])
        views = []
        for scale in AUGMENT_SCALES:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            for flip in (False, True):
                views.append(_View(_augment(size, flip), flip))
        return views
    drawn = noise(x, options.samples, options.sigma, options.seed)
    return [_View(functools.partial(torch.add, other=d)) for d in drawn]


def _augment(size: tuple[int, int], flip: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    def apply(images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return images.flip(-1) if flip else images

    return apply


def _chunks(
    x: torch.Tensor, views: list[_View], classes: int
) -> Iterator[tuple[torch.Tensor, list[int], list[_View]]]:
    """Copies in passes of at most :data:`CHUNK_ROWS`, only copies of one size per pass.

    Yields (inputs, row of each copy in (image, class) order, view of each copy).
    """
    rows = x.shape[0] * classes
    by_size: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for number, view in enumerate(views):
        size = tuple(view.apply(x[:1]).shape[-2:])
        by_size.setdefault(size, []).extend((number, row) for row in range(rows))
    for pairs in by_size.values():
        for start in range(0, len(pairs), CHUNK_ROWS):
            part = pairs[start : start + CHUNK_ROWS]
            transformed: dict[int, torch.Tensor] = {}
            copies = []
            for number, row in part:
                if number not in transformed:
                    transformed[number] = views[number].apply(x)
                copies.append(transformed[number][row // classes])
            yield torch.stack(copies), [row for _, row in part], [views[n] for n, _ in part]


def _map_back(maps: torch.Tensor, views: list[_View], size: tuple[int, int]) -> torch.Tensor:
    """Bring each copy's (N, C, h, w) map back to the original geometry, copy by copy's view."""
    result = torch.empty((maps.shape[0], maps.shape[1], *size), dtype=maps.dtype)
    start = 0
    while start < len(views):
        end = start
        while end < len(views) and views[end] is views[start]:
            end += 1
        result[start:end] = views[start].back(maps[start:end], size).cpu()
        start = end
    return result


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    """Min-max per (H, W) map; a constant map becomes zeros (as the engine does)."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    high = maps.amax(dim=(-2, -1), keepdim=True)
    span = high - low
    return torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1), 0.0)


def _upsample(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(raw.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]


@register_method(SMOOTHGRADCAM_PP, own_pass=True)
def smoothgradcam_plus_plus(tensors: LayerTensors) -> torch.Tensor:
    """Smooth Grad-CAM++: Grad-CAM++ weights from gradients averaged over noisy inputs.

    Omeiza et al., "Smooth Grad-CAM++: An Enhanced Inference Level Visualization Technique for
    Deep Convolutional Neural Network Models", 2019, https://arxiv.org/abs/1908.01224, Sec. 3:
    with ``G_t = dy/dA`` at the t-th of n noisy copies ``x + N(0, sigma^2)``,
    ``D1 = mean_t G_t``, ``D2 = mean_t G_t^2``, ``D3 = mean_t G_t^3``,
    ``alpha = D2 / (2 D2 + sum_ab A_ab D3)``, ``w_k = sum_ij alpha_ij ReLU(D1_ij)``,
    ``L = ReLU(sum_k w_k A_k)``. ``A`` is the clean image's activation (the map explains the
    clean image; only the derivatives are smoothed). sigma is a fraction of the image's value
    range, as in SmoothGrad; ``explain``'s ``smooth_samples``, ``smooth_sigma`` and ``seed`` set
    n, sigma and the noise. As in camkit' Grad-CAM++, alpha is 0 where its denominator is 0.

    This method needs its own passes over the noisy copies, which :func:`camkit.explain` runs;
    ``tensors.gradients`` here must already hold the stacked moments (D1, D2, D3).
    """
    if tensors.gradients is None or tensors.gradients.dim() != 5:
        raise RuntimeError(
            "smoothgradcam++ needs the noisy-gradient moments; compute it with camkit.explain"
        )
    first, second, third = tensors.gradients.unbind(0)
    activations = tensors.activations
    denominator = 2 * second + activations.sum(dim=(2, 3), keepdim=True) * third
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    alpha = torch.where(denominator != 0, second / safe, torch.zeros_like(second))
    weights = (alpha * torch.relu(first)).sum(dim=(2, 3))
    return torch.relu(torch.einsum("nc,nchw->nhw", weights, activations))


def _noisy_moments(
    network: nn.Module,
    copies: torch.Tensor,
    names: list[str],
    target: object,
    categories: list[str] | None,
) -> list[torch.Tensor]:
    """(3, N, C, h, w) first, second and third powers of each layer's gradient for each copy."""
    with torch.enable_grad():
        modules = dict(network.named_modules())
        # Autograd only after the layers, as in explain's own pass.
        output, captured = _forward_with_capture(
            network, copies, modules, names, ForwardOptions(), needs_gradients=True
        )
        scores = resolve_targets(target, None, logits_of(output), output, categories).scores
        activations = [captured[name] for name in names]
        gradients = _gradients(scores, activations, names)
    return [torch.stack([g, g * g, g * g * g]).detach().float() for g in gradients]


def _clean_activations(network: nn.Module, x: torch.Tensor, names: list[str]) -> list[torch.Tensor]:
    with torch.no_grad(), capturing(dict(network.named_modules()), names) as captured:
        network(x)
    for name in names:
        if captured[name].dim() != 4:
            raise InputError(
                f"smoothgradcam++ needs a layer with (N, C, h, w) output; layer {name!r} gives "
                f"{tuple(captured[name].shape)}; pick a convolutional layer"
            )
    return [captured[name].detach().float() for name in names]


def explain_extended(request: Request, options: Smoothing | None) -> Explanation:
    """Explain with smoothing, ``smoothgradcam++`` or guided methods.

    Args:
        request: The checked call (:func:`camkit.engine.prepare`); its ``run`` is the engine's
            one pass, called here on the clean input and on the noisy or augmented copies.
        options: Smoothing options, or ``None``.

    Returns:
        The Explanation; ``guided`` holds the gradient images of the guided methods.
    """
    run, network, x, batch = request.run, request.network, request.x, request.batch
    methods, layer_specs = request.methods, request.layer_specs
    target, top_k, categories = request.target, request.top_k, request.categories
    names = [method.name for method in methods]
    smoothed = options is not None and options.mode is not None
    plain = [m for m in methods if not m.own_pass]
    gradcam = get_method("gradcam")
    if "guided-gradcam" in names and "gradcam" not in names:
        plain.append(gradcam)  # guided-gradcam multiplies by it; left out of the result
    size = (int(x.shape[-2]), int(x.shape[-1]))
    guided_wanted = any(name in GUIDED_METHODS for name in names)
    with evaluation_mode(network):
        # The clean pass: logits, targets and layer names; all the maps when nothing is smoothed.
        clean_methods = [gradcam] if smoothed or not plain else plain
        clean = run(x, batch, clean_methods, layer_specs, target, top_k)
        rows = _Rows(clean.targets, target)
        upsampled: dict[tuple[str, str], torch.Tensor] = {}
        gradient: torch.Tensor | None = None
        if smoothed and options is not None:
            upsampled, gradient = _smoothed_passes(
                run,
                network,
                x,
                _views(x, options),
                plain,
                clean.layers,
                rows,
                guided_wanted,
                categories,
            )
        else:
            for key, raw in clean.raw.items():
                upsampled[key] = _upsample(raw.reshape(-1, *raw.shape[-2:]), size)
            if guided_wanted:
                copies = x.repeat_interleave(rows.classes, dim=0)
                gradient = guided_gradients(network, copies, rows.target(), categories, logits_of)
                gradient = gradient.float().cpu()
        smooth_pp = (
            _smoothgradcam_pp(network, x, clean.layers, rows, categories, options)
            if SMOOTHGRADCAM_PP in names and options is not None
            else {}
        )
    shape = (x.shape[0], rows.classes) if top_k is not None else (x.shape[0],)
    maps: dict[tuple[str, str], torch.Tensor] = {}
    raws: dict[tuple[str, str], torch.Tensor] = {}
    guided: dict[tuple[str, str], torch.Tensor] = {}
    for layer in clean.layers:
        for name in names:
            key = (layer, name)
            if name in GUIDED_METHODS:
                assert gradient is not None
                image = gradient
                if name == "guided-gradcam":
                    image = image * scale_by_max(upsampled[(layer, "gradcam")])[:, None]
                guided[key] = image.reshape(*shape, *image.shape[1:])
                raw = saliency(image)
                raws[key] = raw.reshape(*shape, *size)
                maps[key] = _normalise(raw).reshape(*shape, *size)
            elif name == SMOOTHGRADCAM_PP:
                raw = smooth_pp[layer]
                raws[key] = raw.reshape(*shape, *raw.shape[-2:])
                maps[key] = _upsample_and_normalise(raw, size).reshape(*shape, *size)
            elif smoothed:
                raws[key] = upsampled[key].reshape(*shape, *size)
                maps[key] = _normalise(upsampled[key]).reshape(*shape, *size)
            else:
                raws[key] = clean.raw[key]
                maps[key] = clean.maps[key]
    return dataclasses.replace(clean, maps=maps, raw=raws, methods=names, guided=guided)


class _Rows:
    """The rows of the copies: one per (image, explained class), each with its clean target."""

    def __init__(self, indices: torch.Tensor | None, target: Any) -> None:
        self.indices = indices.reshape(-1).tolist() if indices is not None else None
        self.classes = int(indices.shape[1]) if indices is not None else 1
        self.custom = target  # the user's callable when ``indices`` is None

    def target(self, row_ids: Sequence[int] | None = None) -> Any:
        """The target of the given rows (all by default): class indices, or the callable."""
        if self.indices is None:
            return self.custom
        return self.indices if row_ids is None else [self.indices[r] for r in row_ids]


def _smoothed_passes(
    run: Run,
    network: nn.Module,
    x: torch.Tensor,
    views: list[_View],
    plain: list[Method],
    layers: list[str],
    rows: _Rows,
    guided_wanted: bool,
    categories: list[str] | None,
) -> tuple[dict[tuple[str, str], torch.Tensor], torch.Tensor | None]:
    """Average over the copies: each plain map upsampled and mapped back, and the guided image.

    Returns:
        ``(layer, method) -> (B*K, H, W)`` mean maps, and the (B*K, C, H, W) mean guided image.
    """
    size = (int(x.shape[-2]), int(x.shape[-1]))
    count = x.shape[0] * rows.classes
    sums: dict[tuple[str, str], torch.Tensor] = {}
    gradient_sum: torch.Tensor | None = None
    for copies, row_ids, row_views in _chunks(x, views, rows.classes):
        ids = torch.tensor(row_ids)
        if plain:
            names = [f"copy {r}" for r in row_ids]
            part = run(
                copies, Batch(copies, copies, names), plain, layers, rows.target(row_ids), None
            )
            for key, raw in part.raw.items():
                back = _map_back(_upsample(raw, size)[:, None], row_views, size)[:, 0]
                sums.setdefault(key, torch.zeros((count, *size))).index_add_(0, ids, back.float())
        if guided_wanted:
            gradient = guided_gradients(
                network, copies, rows.target(row_ids), categories, logits_of
            )
            back = _map_back(gradient, row_views, size).float()
            if gradient_sum is None:
                gradient_sum = torch.zeros((count, *back.shape[1:]))
            gradient_sum.index_add_(0, ids, back)
    means = {key: total / len(views) for key, total in sums.items()}
    return means, gradient_sum / len(views) if gradient_sum is not None else None


def _smoothgradcam_pp(
    network: nn.Module,
    x: torch.Tensor,
    layers: Sequence[str],
    rows: _Rows,
    categories: list[str] | None,
    options: Smoothing,
) -> dict[str, torch.Tensor]:
    """The raw (B*K, h, w) Smooth Grad-CAM++ map of each layer."""
    names = list(layers)
    views = _views(x, dataclasses.replace(options, mode="noise"))
    count = x.shape[0] * rows.classes
    moments: list[torch.Tensor] | None = None
    for copies, row_ids, _ in _chunks(x, views, rows.classes):
        ids = torch.tensor(row_ids)
        part = _noisy_moments(network, copies, names, rows.target(row_ids), categories)
        if moments is None:
            moments = [torch.zeros((3, count, *p.shape[2:])) for p in part]
        for total, p in zip(moments, part, strict=True):
            total.index_add_(1, ids, p.cpu())
    assert moments is not None
    activations = _clean_activations(network, x, names)
    result = {}
    for name, total, activation in zip(names, moments, activations, strict=True):
        a = activation.cpu()
        a = a.repeat_interleave(rows.classes, dim=0)
        raw = smoothgradcam_plus_plus(LayerTensors(a, total / len(views)))
        if not torch.isfinite(raw).all():
            raise InputError(
                f"smoothgradcam++ at layer {name!r} is not finite: the model produced NaN or Inf "
                "gradients; check the input and the model's weights"
            )
        result[name] = raw
    return result
