"""Adebayo et al.'s model-parameter randomisation test, cascading from the top layer down."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from camkit._errors import ArgumentTypeError, InputError, MapWarning
from camkit._inputs import Preprocessing
from camkit._metrics import ModelArgument, Scorer, TargetArgument, check_images, resolve_classes
from camkit.api import explain
from camkit.hooks import evaluation_mode
from camkit.hooks import model_device as _model_device
from camkit.models import LoadedModel

#: A method passes when its correlation after the first step (the classifier randomised) and
#: after the last step are both below this...
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
        passed: ``method ->`` whether the map lost its likeness to the trained map both after
            the first step (the block nearest the output: the classifier) and after the last:
            each correlation below ``PASS_THRESHOLD`` and below ``PASS_FRACTION`` times the
            perturbation correlation. A map that survives a random classifier is not
            explaining the classifier, however much it changes further down.
        first_below: ``method ->`` the first step whose correlation is below
            ``PASS_THRESHOLD``, or ``None`` when none is.
        reasons: ``method ->`` one line saying why it passed or failed, with the numbers.
        layer: The explained layer.
    """

    steps: list[str]
    correlations: dict[str, torch.Tensor]
    perturbation: dict[str, float]
    passed: dict[str, bool]
    layer: str
    first_below: dict[str, str | None] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def table(self) -> str:
        """A Markdown table of every step's correlation, the first step below 0.5, the verdict."""
        names = list(self.correlations)
        lines = [
            "| step | " + " | ".join(names) + " |",
            "| --- | " + " | ".join("---:" for _ in names) + " |",
            "| image + faint noise (yardstick) | "
            + " | ".join(f"{self.perturbation[name]:.2f}" for name in names)
            + " |",
        ]
        for index, step in enumerate(self.steps):
            values = [f"{float(self.correlations[name][index]):.2f}" for name in names]
            lines.append(f"| {index + 1}. {step} | " + " | ".join(values) + " |")
        lines.append(
            f"| first below {PASS_THRESHOLD} | "
            + " | ".join(self.first_below.get(name) or "never" for name in names)
            + " |"
        )
        lines.append(
            "| passes | "
            + " | ".join("yes" if self.passed[name] else "no" for name in names)
            + " |"
        )
        return "\n".join(lines)


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
    correlation. Pass criterion (ours; the paper judges by eye): the mean correlation after the
    **first** step (the block nearest the output, a CNN's classifier) and after the **last**
    step are each below 0.5 and below half the correlation between the trained model's maps of
    the images and of the images with Gaussian noise of std 0.01 (how alike "the same map"
    looks). The first step matters most: a map that survives a random classifier shows the
    image, not what the classifier uses, even if randomising the blocks below changes it in the
    end (almost any image-dependent map changes once the features are random). Every step's
    value is kept (``correlations``), and the first step below 0.5 (``first_below``).
    Departure: parameters are redrawn from a normal with each tensor's own mean and std (the
    paper re-initialises with a truncated normal) so activations keep their scale and the
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
        with warnings.catch_warnings():  # a randomised model's flat or noisy map is expected
            warnings.simplefilter("ignore", MapWarning)
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
    verdicts = {
        name: judge(groups, correlations[name], perturbation[name]) for name in method_names
    }
    return SanityResult(
        steps=groups,
        correlations=correlations,
        perturbation=perturbation,
        passed={name: verdict[0] for name, verdict in verdicts.items()},
        layer=chosen_layer,
        first_below={name: verdict[1] for name, verdict in verdicts.items()},
        reasons={name: verdict[2] for name, verdict in verdicts.items()},
    )


def judge(
    steps: Sequence[str], correlations: torch.Tensor | Sequence[float], perturbation: float
) -> tuple[bool, str | None, str]:
    """The pass rule of :func:`sanity_check` on one method's series.

    Args:
        steps: The randomised blocks, from the output down.
        correlations: The mean correlation after each step.
        perturbation: The correlation under a tiny input perturbation (the yardstick).

    Returns:
        Whether it passes, the first step below ``PASS_THRESHOLD`` (or ``None``) and one line
        saying why.
    """
    values = [float(value) for value in correlations]
    first_below = next(
        (step for step, value in zip(steps, values, strict=True) if value < PASS_THRESHOLD), None
    )
    if not values:
        return False, None, "no step was randomised"
    bound = min(PASS_THRESHOLD, PASS_FRACTION * perturbation)
    where = (
        f"first below {PASS_THRESHOLD} after {first_below!r}"
        if first_below
        else (f"never below {PASS_THRESHOLD}")
    )
    if values[0] >= bound:
        return (
            False,
            first_below,
            (
                f"fails: the map survives randomising {steps[0]!r} (correlation {values[0]:.2f}, "
                f"needs < {bound:.2f}); {where}"
            ),
        )
    if values[-1] >= bound:
        return (
            False,
            first_below,
            (
                f"fails: after all {len(values)} steps the correlation is still {values[-1]:.2f} "
                f"(needs < {bound:.2f})"
            ),
        )
    return (
        True,
        first_below,
        (
            f"passes: {values[0]:.2f} after {steps[0]!r} and {values[-1]:.2f} after step "
            f"{len(values)}, both < {bound:.2f}"
        ),
    )
