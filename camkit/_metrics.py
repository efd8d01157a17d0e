"""Faithfulness metrics that score a heatmap by how the model's confidence reacts to it.

Every metric here works on pictures in pixel space, ``(B, 3, H, W)`` floats in [0, 1] (what
:attr:`camkit.Explanation.images` holds), and normalises them with the model's preprocessing
just before each forward pass, so "remove a pixel" and "multiply by the map" mean the same
thing for every model. Scores are softmax probabilities of the explained class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from camkit._errors import ArgumentTypeError, InputError
from camkit._inputs import Preprocessing
from camkit.hooks import evaluation_mode, logits_of
from camkit.hooks import model_device as _model_device
from camkit.hooks import model_float_dtype as _model_float_dtype
from camkit.models import LoadedModel
from camkit.models import as_device as _device

#: RISE removes 224 * 8 pixels per step of a 224 x 224 image: 1/28 of the pixels.
STEP_FRACTION = 8 / 224
#: RISE's insertion baseline: a Gaussian blur with this kernel size and sigma.
BLUR_KERNEL = 11
BLUR_SIGMA = 5.0
#: Pointing game tolerance, in pixels (Zhang et al.).
POINTING_TOLERANCE = 15

TargetArgument = int | Sequence[int] | torch.Tensor | None
ModelArgument = nn.Module | LoadedModel


class Scorer:
    """Softmax probability of given classes for batches of pixel images, in chunks.

    Args:
        model: The classifier (or :class:`LoadedModel`, which brings its preprocessing).
        preprocessing: Overrides the model's preprocessing (ImageNet's by default).
        batch_size: Most images per forward pass.
        device: Where to run; by default the model's device (the model is never moved).
    """

    def __init__(
        self,
        model: ModelArgument,
        preprocessing: Preprocessing | None = None,
        batch_size: int = 64,
        device: str | torch.device | None = None,
    ) -> None:
        network = model.model if isinstance(model, LoadedModel) else model
        if not isinstance(network, nn.Module):
            raise ArgumentTypeError(
                f"`model` must be a torch.nn.Module or camkit.LoadedModel, "
                f"got {type(model).__name__}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"`batch_size` must be a positive integer, got {batch_size!r}")
        if preprocessing is None:
            preprocessing = (
                model.preprocessing if isinstance(model, LoadedModel) else Preprocessing()
            )
        self.network = network
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        model_device = _model_device(network)
        self.device = model_device if device is None else _device(device)
        if self.device.type != model_device.type:
            raise InputError(
                f"`device` is {self.device} but the model is on {model_device}; move the model "
                f"with model.to('{self.device}') or leave `device` unset"
            )
        self.dtype = _model_float_dtype(network)
        self.forwards = 0

    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """Softmax of the model on one chunk of (N, 3, H, W) pixel images, (N, classes)."""
        x = self.preprocessing.normalize(pixels.to(self.device, self.dtype))
        with torch.inference_mode(), evaluation_mode(self.network):
            logits = logits_of(self.network(x))
        self.forwards += x.shape[0]
        return torch.softmax(logits.float(), dim=1)

    def scores(
        self,
        count: int,
        build: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        """Scores of ``count`` generated images, built ``batch_size`` at a time.

        ``build(start, stop)`` returns the pixels of items ``start:stop`` and their classes.
        """
        out = torch.empty(count)
        for start in range(0, count, self.batch_size):
            stop = min(count, start + self.batch_size)
            pixels, classes = build(start, stop)
            probs = self.probabilities(pixels)
            out[start:stop] = probs.gather(1, classes.to(probs.device)[:, None])[:, 0].cpu()
        return out

    def top_classes(self, pixels: torch.Tensor) -> torch.Tensor:
        """Each image's most probable class, (B,)."""
        out = []
        for start in range(0, pixels.shape[0], self.batch_size):
            out.append(self.probabilities(pixels[start : start + self.batch_size]).argmax(1))
        return torch.cat(out).cpu()


def check_images(images: object) -> torch.Tensor:
    """Return ``images`` as a float (B, 3, H, W) tensor of pixels, after checking it."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise ArgumentTypeError(
            "`images` must be a float tensor of (B, 3, H, W) pixels in [0, 1] (for example "
            f"Explanation.images), got {type(images).__name__}"
        )
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[0] == 0:
        raise InputError(
            f"`images` has shape {tuple(images.shape)}; pass (B, C, H, W) pixels in [0, 1]"
        )
    if not torch.isfinite(images).all():
        raise InputError("`images` contains NaN or Inf; clean it first")
    if images.min() < -1e-6 or images.max() > 1 + 1e-6:
        raise InputError(
            "`images` is outside [0, 1]: metrics take pixels, not normalised tensors; pass "
            "Explanation.images or un-normalise with Preprocessing.denormalize"
        )
    return images.detach().float().cpu()


def check_maps(maps: object, images: torch.Tensor) -> torch.Tensor:
    """Return ``maps`` as a float (B, H, W) tensor matching ``images``, after checking it."""
    if not isinstance(maps, torch.Tensor):
        raise ArgumentTypeError(
            f"`maps` must be a (B, H, W) tensor (for example explanation['gradcam']), "
            f"got {type(maps).__name__}"
        )
    if maps.dim() == 2:
        maps = maps.unsqueeze(0)
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    batch, _, height, width = images.shape
    if maps.dim() != 3 or maps.shape[0] != batch or tuple(maps.shape[1:]) != (height, width):
        raise InputError(
            f"`maps` has shape {tuple(maps.shape)} but `images` is {tuple(images.shape)}; pass "
            f"one ({height}, {width}) map per image (Explanation.maps are at the input size)"
        )
    maps = maps.detach().float().cpu()
    if not torch.isfinite(maps).all():
        raise InputError("`maps` contains NaN or Inf; clean it first")
    return maps


def resolve_classes(scorer: Scorer, images: torch.Tensor, targets: TargetArgument) -> torch.Tensor:
    """The explained class of each image, (B,): given, or the model's top prediction."""
    batch = images.shape[0]
    if targets is None:
        return scorer.top_classes(images)
    if isinstance(targets, bool):
        raise ArgumentTypeError("`targets` must be a class index or one per image, got a bool")
    if isinstance(targets, int):
        return torch.full((batch,), targets, dtype=torch.long)
    classes = torch.as_tensor(targets).reshape(-1).long().cpu()
    if classes.shape[0] != batch:
        raise InputError(
            f"`targets` has {classes.shape[0]} classes for {batch} images; pass one per image"
        )
    return classes


def scale_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max scale each map to [0, 1]; a constant map becomes zeros (as the engine does)."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    span = high - low
    return torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1), 0.0)


# --------------------------------------------------------------------------------------------
# Average Drop and Increase in Confidence
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfidenceResult:
    """Average Drop % and Increase in Confidence % over a set of images.

    Attributes:
        average_drop: ``100 * mean(max(0, Y - O) / Y)`` (lower is better).
        increase_in_confidence: ``100 * mean(O > Y)`` (higher is better).
        original: ``Y``, (B,) probability of the explained class on each image.
        masked: ``O``, (B,) the same on the image multiplied by its map.
        classes: (B,) the explained classes.
    """

    average_drop: float
    increase_in_confidence: float
    original: torch.Tensor
    masked: torch.Tensor
    classes: torch.Tensor


def average_drop(
    model: ModelArgument,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: TargetArgument = None,
    *,
    preprocessing: Preprocessing | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> ConfidenceResult:
    """Average Drop % and Increase in Confidence % of a set of maps.

    Chattopadhay et al., "Grad-CAM++: Improved Visual Explanations for Deep Convolutional
    Networks", WACV 2018, https://arxiv.org/abs/1710.11063, section 5.1.
    ``Y`` is the softmax probability of the explained class on the image, ``O`` the same on the
    image multiplied by its map, pixel by pixel; Average Drop = ``100 * mean(max(0, Y-O) / Y)``,
    Increase in Confidence = ``100 * mean(O > Y)``.

    Exactly what is multiplied: the [0, 1] pixels (before the model's mean/std normalisation) by
    the map scaled to [0, 1] (min-max per image, as :attr:`Explanation.maps` already are); the
    product is then normalised as usual. A pixel with map 0 becomes black, not the dataset mean.

    Args:
        model: The classifier, or a :class:`LoadedModel` (brings its preprocessing).
        images: (B, 3, H, W) pixels in [0, 1], e.g. ``Explanation.images``.
        maps: (B, H, W) heatmaps at the image size.
        targets: The explained class: ``None`` for each image's top prediction, one index, or one
            index per image (e.g. ``Explanation.targets[:, 0]``).
        preprocessing: Overrides the model's normalisation (ImageNet's for a bare module).
        batch_size: Most images per forward pass.
        device: Where to run; by default the model's device.

    Returns:
        The :class:`ConfidenceResult`.
    """
    scorer = Scorer(model, preprocessing, batch_size, device)
    pixels = check_images(images)
    heat = scale_maps(check_maps(maps, pixels))
    classes = resolve_classes(scorer, pixels, targets)
    batch = pixels.shape[0]

    def build(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(start, stop)
        rows = index % batch
        masked = index >= batch  # items 0..B-1: originals; B..2B-1: masked
        chosen = pixels[rows]
        chosen = torch.where(masked[:, None, None, None], chosen * heat[rows][:, None], chosen)
        return chosen, classes[rows]

    scores = scorer.scores(2 * batch, build)
    original, masked = scores[:batch], scores[batch:]
    drop = torch.clamp(original - masked, min=0) / original.clamp_min(1e-12)
    return ConfidenceResult(
        average_drop=float(100 * drop.mean()),
        increase_in_confidence=float(100 * (masked > original).float().mean()),
        original=original,
        masked=masked,
        classes=classes,
    )


# --------------------------------------------------------------------------------------------
# Deletion and insertion
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve per image.

    Attributes:
        fractions: (S,) fraction of pixels removed (deletion) or put back (insertion), 0 to 1.
        scores: (B, S) probability of the explained class at each step.
        auc: (B,) area under each curve by the trapezoid rule over ``fractions``.
        classes: (B,) the explained classes.
    """

    fractions: torch.Tensor
    scores: torch.Tensor
    auc: torch.Tensor
    classes: torch.Tensor

    @property
    def mean_auc(self) -> float:
        """The AUC averaged over images."""
        return float(self.auc.mean())


def pixels_per_step(height: int, width: int, step: int | None = None) -> int:
    """RISE's step: 224 * 8 pixels at 224 x 224, the same fraction (1/28) of other sizes."""
    if step is None:
        return max(1, round(height * width * STEP_FRACTION))
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise InputError(f"`step` must be a positive number of pixels, got {step!r}")
    return step


def saliency_ranks(maps: torch.Tensor) -> torch.Tensor:
    """(B, H*W) rank of each pixel in decreasing saliency (0 = most salient).

    Ties keep raster order (a stable sort), so the result does not depend on the sort algorithm.
    """
    flat = maps.reshape(maps.shape[0], -1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(flat.shape[1]).expand_as(order)
    ranks.scatter_(1, order, positions)
    return ranks


def blur(pixels: torch.Tensor) -> torch.Tensor:
    """RISE's insertion start: Gaussian blur, kernel 11, sigma 5 (reflected borders)."""
    return gaussian_blur(pixels, [BLUR_KERNEL, BLUR_KERNEL], [BLUR_SIGMA, BLUR_SIGMA])


def _curve(
    mode: str,
    model: ModelArgument,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: TargetArgument,
    step: int | None,
    preprocessing: Preprocessing | None,
    batch_size: int,
    device: str | torch.device | None,
    baseline: torch.Tensor | None,
) -> Curve:
    scorer = Scorer(model, preprocessing, batch_size, device)
    pixels = check_images(images)
    heat = check_maps(maps, pixels)
    classes = resolve_classes(scorer, pixels, targets)
    batch, _, height, width = pixels.shape
    total = height * width
    per_step = pixels_per_step(height, width, step)
    points = math.ceil(total / per_step) + 1
    counts = torch.clamp(torch.arange(points) * per_step, max=total)
    ranks = saliency_ranks(heat)
    if baseline is None:
        if mode == "deletion":  # the dataset mean: zero after normalisation
            mean = torch.tensor(scorer.preprocessing.mean, dtype=pixels.dtype)
            baseline = mean[None, :, None, None].expand_as(pixels)
        else:
            baseline = blur(pixels)
    elif baseline.shape != pixels.shape:
        raise InputError(
            f"`baseline` has shape {tuple(baseline.shape)}; pass one like `images` "
            f"{tuple(pixels.shape)}"
        )
    # Perturbed images are built where the model runs: on CUDA nothing big crosses the bus.
    device = scorer.device
    original, baseline = pixels.to(device), baseline.to(device)
    start_from, end_at = (original, baseline) if mode == "deletion" else (baseline, original)
    ranks, counts = ranks.to(device), counts.to(device)

    def build(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(start, stop, device=device)
        rows, steps = index // points, index % points
        changed = ranks[rows] < counts[steps][:, None]  # (n, H*W): pixels swapped so far
        changed = changed.reshape(-1, 1, height, width)
        return torch.where(changed, end_at[rows], start_from[rows]), classes[rows.cpu()]

    scores = scorer.scores(batch * points, build).reshape(batch, points)
    fractions = counts.cpu().float() / total  # scores come back on the CPU
    auc = torch.trapezoid(scores, fractions, dim=1)
    return Curve(fractions=fractions, scores=scores, auc=auc, classes=classes)


def deletion(
    model: ModelArgument,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: TargetArgument = None,
    *,
    step: int | None = None,
    baseline: torch.Tensor | None = None,
    preprocessing: Preprocessing | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> Curve:
    """The deletion curve and its AUC (lower is better).

    Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box Models",
    BMVC 2018, https://arxiv.org/abs/1806.07421, section 4.1.
    Pixels are removed in order of decreasing saliency, ``step`` at a time (224 * 8 at
    224 x 224, the same 1/28 of the pixels at other sizes), and replaced by the dataset mean
    (the preprocessing's ``mean``, i.e. zero after normalisation); the score is the softmax
    probability of the explained class; the AUC is the trapezoid rule over the fraction removed.
    Curves of all images are built in one stream of ``batch_size`` batches. Ties in saliency are
    removed in raster order.

    Args:
        model: The classifier, or a :class:`LoadedModel` (brings its preprocessing).
        images: (B, 3, H, W) pixels in [0, 1], e.g. ``Explanation.images``.
        maps: (B, H, W) heatmaps at the image size.
        targets: ``None`` for each image's top prediction, one index, or one index per image.
        step: Pixels per step; by default RISE's.
        baseline: (B, 3, H, W) pixels replacing the removed ones; default the dataset mean.
        preprocessing: Overrides the model's normalisation.
        batch_size: Most images per forward pass.
        device: Where to run; by default the model's device.

    Returns:
        The :class:`Curve`; ``scores[:, 0]`` is the original image.
    """
    return _curve(
        "deletion",
        model,
        images,
        maps,
        targets,
        step,
        preprocessing,
        batch_size,
        device,
        baseline,
    )


def insertion(
    model: ModelArgument,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: TargetArgument = None,
    *,
    step: int | None = None,
    baseline: torch.Tensor | None = None,
    preprocessing: Preprocessing | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> Curve:
    """The insertion curve and its AUC (higher is better).

    Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box Models",
    BMVC 2018, https://arxiv.org/abs/1806.07421, section 4.1.
    Starts from a blurred copy of the image (Gaussian, kernel 11, sigma 5, as RISE's code) and
    puts the original pixels back in order of decreasing saliency, ``step`` at a time; the
    score is the softmax probability of the explained class; the AUC is the trapezoid rule over
    the fraction of pixels put back. Options as :func:`deletion`; ``baseline`` replaces the
    blurred start.

    Args:
        model: The classifier, or a :class:`LoadedModel` (brings its preprocessing).
        images: (B, 3, H, W) pixels in [0, 1], e.g. ``Explanation.images``.
        maps: (B, H, W) heatmaps at the image size.
        targets: ``None`` for each image's top prediction, one index, or one index per image.
        step: Pixels per step; by default RISE's.
        baseline: (B, 3, H, W) starting pixels; default the blurred image.
        preprocessing: Overrides the model's normalisation.
        batch_size: Most images per forward pass.
        device: Where to run; by default the model's device.

    Returns:
        The :class:`Curve`; ``scores[:, -1]`` is the original image.
    """
    return _curve(
        "insertion",
        model,
        images,
        maps,
        targets,
        step,
        preprocessing,
        batch_size,
        device,
        baseline,
    )


# --------------------------------------------------------------------------------------------
# Pointing game
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointingResult:
    """Pointing game hits.

    Attributes:
        hits: (B,) whether each map's maximum lies within the tolerance of the object.
        accuracy: Fraction of hits, 0 to 1.
        points: (B, 2) the (y, x) of each map's maximum.
    """

    hits: torch.Tensor
    accuracy: float
    points: torch.Tensor


Box = tuple[float, float, float, float]


def _region_mask(region: object, height: int, width: int, position: int) -> torch.Tensor:
    """A boolean (H, W) mask from a box (x0, y0, x1, y1 inclusive), a list of boxes or a mask."""
    if isinstance(region, torch.Tensor) and region.dim() == 2:
        if tuple(region.shape) != (height, width):
            raise InputError(
                f"`regions` item {position} is a mask of shape {tuple(region.shape)}; "
                f"pass ({height}, {width}) like the maps"
            )
        return region.bool().cpu()
    try:
        boxes = torch.as_tensor(region, dtype=torch.float64).reshape(-1, 4)
    except (TypeError, ValueError, RuntimeError):
        boxes = torch.empty(0, 4)
    if boxes.shape[0] == 0:
        raise InputError(
            f"`regions` item {position} is not a box (x0, y0, x1, y1), a list of boxes or an "
            "(H, W) mask; pass one of those"
        )
    ys = torch.arange(height, dtype=torch.float64)[:, None]
    xs = torch.arange(width, dtype=torch.float64)[None, :]
    mask = torch.zeros(height, width, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes.tolist():
        mask |= (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    return mask


def pointing_game(
    maps: torch.Tensor,
    regions: Sequence[object],
    tolerance: float = POINTING_TOLERANCE,
) -> PointingResult:
    """The pointing game: is each map's maximum on (or near) the object?

    Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016 / IJCV 2018,
    https://arxiv.org/abs/1608.00507, section 5.1.
    A hit when the map's maximum lies within ``tolerance`` pixels (15 in the paper) of the
    object's box or mask; accuracy = hits / images. A constant map has no maximum and counts as
    a miss; when several pixels share the maximum, the first in raster order is taken.

    Args:
        maps: (B, H, W) heatmaps.
        regions: One per map: a box ``(x0, y0, x1, y1)`` in pixels, inclusive (the format of
            ``../shared/data/images/both.json``), a list of boxes (any one counts), or an
            (H, W) boolean mask.
        tolerance: Largest distance in pixels from the maximum to the object.

    Returns:
        The :class:`PointingResult`.
    """
    if not isinstance(maps, torch.Tensor) or maps.dim() not in (2, 3):
        raise ArgumentTypeError("`maps` must be a (B, H, W) tensor of heatmaps")
    heat = maps.detach().float().cpu()
    heat = heat.unsqueeze(0) if heat.dim() == 2 else heat
    batch, height, width = heat.shape
    if len(regions) != batch:
        raise InputError(f"`regions` has {len(regions)} items for {batch} maps; pass one per map")
    flat = heat.reshape(batch, -1)
    peaks = flat.argmax(dim=1)
    points = torch.stack([peaks // width, peaks % width], dim=1)
    hits = torch.zeros(batch, dtype=torch.bool)
    for position, region in enumerate(regions):
        if flat[position].max() == flat[position].min():
            continue
        mask = _region_mask(region, height, width, position)
        inside = mask.nonzero().double()
        if inside.shape[0] == 0:
            continue
        distance = (inside - points[position].double()).norm(dim=1).min()
        hits[position] = bool(distance <= tolerance)
    return PointingResult(hits=hits, accuracy=float(hits.float().mean()), points=points)


# --------------------------------------------------------------------------------------------
# Reference maps
# --------------------------------------------------------------------------------------------

#: Names of the maps that know nothing about the model, to compare methods against.
REFERENCE_MAPS = ("center", "random")
#: ``random`` draws noise on a grid this much coarser than the image (a stride-32 CAM's grid).
RANDOM_GRID_STRIDE = 32


def reference_maps(
    kind: str, batch: int, height: int, width: int, seed: int | Sequence[int] = 0
) -> torch.Tensor:
    """Heatmaps that know nothing about the model, (B, H, W) in [0, 1].

    ``"center"``: a centred Gaussian with sigma a quarter of the shorter side (photos tend to
    put the object in the middle). ``"random"``: uniform noise on a grid 32 times coarser than
    the image (the resolution of a CAM at a stride-32 layer; at least 2 x 2), upsampled
    bilinearly and min-max
    scaled; reproducible from ``seed`` (one seed, or one per image so that an image's map does
    not depend on its batch).

    Args:
        kind: ``"center"`` or ``"random"``.
        batch: Number of maps.
        height: Map height.
        width: Map width.
        seed: Seed of ``random``.

    Returns:
        The maps.
    """
    if kind == "center":
        sigma = min(height, width) / 4
        ys = torch.arange(height, dtype=torch.float32)[:, None] - (height - 1) / 2
        xs = torch.arange(width, dtype=torch.float32)[None, :] - (width - 1) / 2
        gaussian = torch.exp(-(ys**2 + xs**2) / (2 * sigma**2))
        return scale_maps(gaussian.expand(batch, height, width).contiguous())
    if kind == "random":
        seeds = [seed] * batch if isinstance(seed, int) else list(seed)
        if len(seeds) != batch:
            raise InputError(f"`seed` has {len(seeds)} values for {batch} maps; pass one per map")
        grid = (
            max(2, math.ceil(height / RANDOM_GRID_STRIDE)),
            max(2, math.ceil(width / RANDOM_GRID_STRIDE)),
        )
        noise = torch.stack(
            [torch.rand(grid, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        )
        upsampled = F.interpolate(noise[:, None], size=(height, width), mode="bilinear")
        return scale_maps(upsampled[:, 0])
    raise InputError(f"unknown reference map {kind!r}; use one of {', '.join(REFERENCE_MAPS)}")
