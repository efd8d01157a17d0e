"""ROAD: remove pixels and fill them by noisy linear imputation, then ask the model again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from camkit._errors import InputError
from camkit._inputs import Preprocessing
from camkit._metrics import (
    ModelArgument,
    Scorer,
    TargetArgument,
    check_images,
    check_maps,
    resolve_classes,
    saliency_ranks,
)

#: The percentages of pixels removed in the ROAD paper's figures.
ROAD_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
#: Standard deviation of the noise added to imputed pixels, in [0, 1] pixel units.
ROAD_NOISE = 0.01
# (dy, dx, weight): the 4 edge neighbours weigh 1/6, the 4 diagonal ones 1/12 (Rong et al.).
_NEIGHBOURS = (
    (-1, 0, 1 / 6),
    (1, 0, 1 / 6),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (-1, -1, 1 / 12),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (1, 1, 1 / 12),
)


def _sparse() -> Any:
    try:
        import scipy.sparse
        import scipy.sparse.linalg
    except ImportError:
        raise InputError(
            "ROAD solves a sparse linear system with scipy, which is not installed; "
            "run `pip install camkit[metrics]`"
        ) from None
    return scipy.sparse


def linear_imputation(
    image: torch.Tensor,
    removed: torch.Tensor,
    noise: float = ROAD_NOISE,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill the removed pixels of one image by noisy linear imputation (ROAD).

    Each removed pixel equals the weighted mean of its (up to 8) neighbours inside the image,
    weights 1/6 for edge neighbours and 1/12 for diagonal ones; neighbours that are removed too
    are unknowns, so all removed pixels are one sparse linear system, solved exactly for the 3
    channels at once. Gaussian noise of standard deviation ``noise`` is then added to the
    imputed pixels only. A removed region with no kept pixel around it gets the mean of the kept
    pixels (the system would be singular there).

    Args:
        image: (C, H, W) pixels.
        removed: (H, W) boolean mask of the pixels to impute.
        noise: Standard deviation of the added noise (0 for the plain linear imputation).
        generator: Random generator of the noise.

    Returns:
        The imputed (C, H, W) image.
    """
    sparse = _sparse()
    pixels = image.detach().double().cpu().numpy()
    mask = removed.detach().bool().cpu().numpy()
    channels, height, width = pixels.shape
    ys, xs = np.nonzero(mask)
    count = ys.shape[0]
    if count == 0:
        return image.clone()
    if count == height * width:
        raise InputError("ROAD cannot impute an image with every pixel removed; keep some pixels")
    index = np.full((height, width), -1, dtype=np.int64)
    index[ys, xs] = np.arange(count)
    diagonal = np.zeros(count)
    rhs = np.zeros((count, channels))
    rows, cols, values = [np.arange(count)], [np.arange(count)], []
    for dy, dx, weight in _NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        source = np.nonzero(inside)[0]
        ny, nx = ny[inside], nx[inside]
        diagonal[source] += weight
        neighbour = index[ny, nx]
        unknown = neighbour >= 0
        rows.append(source[unknown])
        cols.append(neighbour[unknown])
        values.append(np.full(int(unknown.sum()), -weight))
        known = ~unknown
        np.add.at(rhs, source[known], weight * pixels[:, ny[known], nx[known]].T)
    matrix = sparse.csc_matrix(
        (np.concatenate([diagonal, *values]), (np.concatenate(rows), np.concatenate(cols))),
        shape=(count, count),
    )
    # Each connected removed region touches a kept pixel, except regions walled in by nothing:
    # those make the matrix singular. Pin them to the mean of the kept pixels.
    isolated = _regions_without_kept_neighbours(mask)
    if isolated.any():
        fill = pixels[:, ~mask].mean(axis=1)
        pinned = index[isolated]
        matrix = matrix.tolil()
        matrix[pinned, :] = 0
        matrix[pinned, pinned] = 1
        rhs[pinned] = fill
        matrix = matrix.tocsc()
    solution = sparse.linalg.spsolve(matrix, rhs).reshape(count, channels)
    filled = pixels.copy()
    filled[:, ys, xs] = solution.T
    result = torch.from_numpy(filled).to(image.dtype)
    if noise > 0:
        jitter = torch.randn(channels, count, generator=generator, dtype=torch.float64) * noise
        result[:, torch.from_numpy(ys), torch.from_numpy(xs)] += jitter.to(image.dtype)
    return result


def _regions_without_kept_neighbours(mask: np.ndarray) -> np.ndarray:
    """Removed pixels whose 8-connected removed region touches no kept pixel."""
    import scipy.ndimage

    labels, regions = scipy.ndimage.label(mask, structure=np.ones((3, 3)))
    if regions == 0:
        return np.zeros_like(mask)
    near_kept = scipy.ndimage.binary_dilation(~mask, structure=np.ones((3, 3))) & mask
    touching = np.unique(labels[near_kept])
    return mask & ~np.isin(labels, touching)


@dataclass(frozen=True)
class RoadResult:
    """ROAD scores.

    Attributes:
        percentages: (P,) percent of pixels removed.
        morf: (B, P) probability of the explained class after removing the most relevant
            pixels first (lower is better).
        lerf: (B, P) the same removing the least relevant first (higher is better).
        classes: (B,) the explained classes.
    """

    percentages: torch.Tensor
    morf: torch.Tensor
    lerf: torch.Tensor
    classes: torch.Tensor


def road(
    model: ModelArgument,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: TargetArgument = None,
    *,
    percentages: Sequence[float] = ROAD_PERCENTAGES,
    noise: float = ROAD_NOISE,
    seed: int = 0,
    preprocessing: Preprocessing | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> RoadResult:
    """ROAD, Remove And Debias: MoRF and LeRF scores with noisy linear imputation.

    Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods",
    ICML 2022, https://arxiv.org/abs/2202.00449.
    For each percentage ``p``, the ``p`` % most salient pixels (MoRF) or least salient pixels
    (LeRF) are removed and filled by :func:`linear_imputation`, which hides the shape of the
    removed region from the model; the score is the softmax probability of the explained class.
    Departures: the paper reports accuracy over a dataset, we report the probability per image
    (its mean over images tracks the same thing without needing labels); imputation is done on
    [0, 1] pixels before normalisation, with noise std ``noise`` in those units.

    Args:
        model: The classifier, or a :class:`LoadedModel` (brings its preprocessing).
        images: (B, 3, H, W) pixels in [0, 1], e.g. ``Explanation.images``.
        maps: (B, H, W) heatmaps at the image size.
        targets: ``None`` for each image's top prediction, one index, or one index per image.
        percentages: Percent of pixels removed, each in (0, 100).
        noise: Standard deviation of the imputation noise.
        seed: Seed of the noise.
        preprocessing: Overrides the model's normalisation.
        batch_size: Most images per forward pass.
        device: Where to run; by default the model's device.

    Returns:
        The :class:`RoadResult`.

    Raises:
        ValueError: For a percentage outside (0, 100), or when scipy is missing.
    """
    _sparse()
    steps = [float(p) for p in percentages]
    if not steps or any(not 0 < p < 100 for p in steps):
        raise InputError(
            f"`percentages` must be values in (0, 100), got {list(percentages)!r}; "
            "e.g. (10, 50, 90)"
        )
    scorer = Scorer(model, preprocessing, batch_size, device)
    pixels = check_images(images)
    heat = check_maps(maps, pixels)
    classes = resolve_classes(scorer, pixels, targets)
    batch, _, height, width = pixels.shape
    ranks = saliency_ranks(heat)
    total = height * width
    generator = torch.Generator().manual_seed(seed)
    imputed = []
    for row in range(batch):
        for order in ("morf", "lerf"):
            for percent in steps:
                count = round(total * percent / 100)
                rank = ranks[row] if order == "morf" else total - 1 - ranks[row]
                removed = (rank < count).reshape(height, width)
                filled = linear_imputation(pixels[row], removed, noise, generator)
                imputed.append(filled.clamp(0, 1))
    stack = torch.stack(imputed)
    per_image = 2 * len(steps)
    scores = scorer.scores(
        stack.shape[0],
        lambda start, stop: (stack[start:stop], classes[torch.arange(start, stop) // per_image]),
    ).reshape(batch, 2, len(steps))
    return RoadResult(
        percentages=torch.tensor(steps),
        morf=scores[:, 0],
        lerf=scores[:, 1],
        classes=classes,
    )
