"""Adebayo et al.'s model-parameter randomisation test, cascading from the top layer down."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from camkit._errors import ArgumentTypeError, InputError
from camkit._inputs import Preprocessing
from camkit._metrics import ModelArgument, Scorer, TargetArgument, check_images, resolve_classes
from camkit.api import explain
from camkit.hooks import evaluation_mode
from camkit.hooks import model_device as _model_device
from camkit.models import LoadedModel

#: A method passes when the correlation after the last randomisation step is below this...
PASS_THRESHOLD = 0.5
#: ...and below this fraction of its correlation under a tiny input perturbation.
PASS_FRACTION = 0.5
#: Standard deviation of the "tiny input perturbation", in [0, 1] pixel units.
PERTURBATION_STD = 0.01


def spearman(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each pair of rows, (B,), ties given their average rank.

    A constant row has no ranking; its correlation is 0 (it shares no order with the other).
    """
    a = _average_ranks(first.reshape(first.shape[0], -1).double())
    b = _average_ranks(second.reshape(second.shape[0], -1).double())
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    denominator = a.norm(dim=1) * b.norm(dim=1)
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, (a * b).sum(dim=1) / safe, 0.0).float()


def _average_ranks(rows: torch.Tensor) -> torch.Tensor:
    ranks = torch.empty_like(rows)
    for index, row in enumerate(rows):
        values, inverse, counts = torch.unique(row, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()  # rank (1-based) of the last member of each group
        average = ends - (counts.double() - 1) / 2
        ranks[index] = average[inverse]
        del values
    return ranks


def randomisation_groups(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the model's blocks from the output down, the steps of the cascade.

    Modules holding parameters are found in execution order (one forward of ``example``) and
    grouped by the first name component after a numeric index (``blocks.15.conv`` ->
    ``blocks.15``; ``fc`` -> ``fc``), so a ResNet's steps are ``fc``, ``layer4.2``, ...
    """
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):

            def hook(_m: nn.Module, _a: object, _o: object, name: str = name) -> None:
                if name not in order:
                    order.append(name)

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.inference_mode(), evaluation_mode(model):
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    groups: list[str] = []
    for name in reversed(order):
        parts = name.split(".")
        cut = next((i + 1 for i, part in enumerate(parts) if part.isdigit()), 1)
        group = ".".join(parts[:cut])
        if group not in groups:
            groups.append(group)
    return groups


def _randomise(model: nn.Module, group: str, generator: torch.Generator) -> None:
    """Redraw every parameter under ``group`` from a normal with that tensor's mean and std."""
    prefix = group + "."
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith(prefix) or name == group:
                std = float(parameter.std()) if parameter.numel() > 1 else 0.0
                scale = std if std > 0 else max(abs(float(parameter.mean())), 1e-2)
                noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
                parameter.copy_((noise * scale + float(parameter.mean())).to(parameter))


@dataclass(frozen=True)
class SanityResult:
    """The cascading randomisation test for each method.

    Attributes:
        steps: The randomised blocks, cumulatively, from the output down.
        correlations: ``method -> (S,)`` mean Spearman correlation over images between the map
            of the trained model and of the model randomised up to each step.
        perturbation: ``method ->`` mean Spearman correlation between the maps of the trained
            model on the images and on the images with tiny noise: how similar "the same map"
            looks, the yardstick for the drop.
        passed: ``method ->`` whether the last step's correlation is below ``PASS_THRESHOLD``
            and below ``PASS_FRACTION`` times the perturbation correlation.
        layer: The explained layer.
    """

    steps: list[str]
    correlations: dict[str, torch.Tensor]
    perturbation: dict[str, float]
    passed: dict[str, bool]
    layer: str


def sanity_check(
    model: ModelArgument,
    images: torch.Tensor,
    methods: str | Sequence[str] = ("gradcam",),
    layer: str = "auto",
    targets: TargetArgument = None,
    *,
    steps: int | None = None,
    seed: int = 0,
    preprocessing: Preprocessing | None = None,
    explain_options: Mapping[str, Any] | None = None,
) -> SanityResult:
    """Adebayo et al.'s cascading model-parameter randomisation test.

    Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018,
    https://arxiv.org/abs/1810.03292, section 3.1.
    On a deep copy of the model (the user's model is never changed), the blocks are randomised
    one after another from the output down; after each step the maps are computed again (same
    images, same explained classes, same layer) and compared with the trained model's maps by
    Spearman rank correlation. A method that explains the model, not the image, must lose that
    correlation. Pass criterion (ours; the paper judges by eye): after the last step the mean
    correlation is below 0.5 and below half the correlation between the trained model's maps of
    the images and of the images with Gaussian noise of std 0.01 (the noise floor of "the same
    map"). Departure: parameters are redrawn from a normal with each tensor's own mean and std
    (the paper re-initialises with a truncated normal) so activations keep their scale and the
    unchanged batch-norm statistics stay meaningful.

    Args:
        model: The classifier, or a :class:`LoadedModel`.
        images: (B, 3, H, W) pixels in [0, 1].
        methods: Method names.
        layer: The layer to explain (``"auto"`` is resolved once, on the trained model).
        targets: ``None`` for each image's top prediction on the trained model, one index, or
            one index per image.
        steps: How many blocks to randomise, from the top; by default all.
        seed: Seed of the randomisation and of the perturbation.
        preprocessing: Overrides the model's normalisation.
        explain_options: More keyword arguments of :func:`camkit.explain` (for example
            ``{"max_channels": 64}`` to make Score-CAM affordable).

    Returns:
        The :class:`SanityResult`.
    """
    network = model.model if isinstance(model, LoadedModel) else model
    options = dict(explain_options or {})
    if not isinstance(network, nn.Module):
        raise ArgumentTypeError(
            f"`model` must be a torch.nn.Module or camkit.LoadedModel, got {type(model).__name__}"
        )
    scorer = Scorer(model, preprocessing)
    pixels = check_images(images)
    names = [methods] if isinstance(methods, str) else list(methods)
    classes = resolve_classes(scorer, pixels, targets)
    device = _model_device(network)
    x = scorer.preprocessing.normalize(pixels).to(device)
    trained = explain(network, x, methods=names, layers=layer, target=classes.tolist(), **options)
    chosen_layer = trained.layers[0]
    generator = torch.Generator().manual_seed(seed)
    noisy_pixels = (
        pixels + PERTURBATION_STD * torch.randn(pixels.shape, generator=generator)
    ).clamp(0, 1)
    noisy = explain(
        network,
        scorer.preprocessing.normalize(noisy_pixels).to(device),
        methods=names,
        layers=chosen_layer,
        target=classes.tolist(),
        **options,
    )
    groups = randomisation_groups(network, x[:1])
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or not steps >= 1:
            raise InputError(f"`steps` must be a positive integer, got {steps!r}")
        groups = groups[:steps]
    copy_ = copy.deepcopy(network)
    method_names = trained.methods
    series: dict[str, list[float]] = {name: [] for name in method_names}
    for group in groups:
        _randomise(copy_, group, generator)
        randomised = explain(
            copy_, x, methods=names, layers=chosen_layer, target=classes.tolist(), **options
        )
        for name in method_names:
            correlation = spearman(
                trained.maps[(chosen_layer, name)], randomised.maps[(chosen_layer, name)]
            )
            series[name].append(float(correlation.mean()))
    correlations = {name: torch.tensor(values) for name, values in series.items()}
    perturbation = {
        name: float(
            spearman(trained.maps[(chosen_layer, name)], noisy.maps[(chosen_layer, name)]).mean()
        )
        for name in method_names
    }
    passed = {
        name: bool(
            correlations[name].numel() > 0
            and correlations[name][-1] < PASS_THRESHOLD
            and correlations[name][-1] < PASS_FRACTION * perturbation[name]
        )
        for name in method_names
    }
    return SanityResult(
        steps=groups,
        correlations=correlations,
        perturbation=perturbation,
        passed=passed,
        layer=chosen_layer,
    )
