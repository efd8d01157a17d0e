"""camkit.metrics against values worked out by hand on toy models and maps."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import camkit
from camkit import metrics
from camkit._metrics_sanity import randomisation_groups

from .conftest import shared_path

IDENTITY = camkit.Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def sigmoid(value: float) -> float:
    return 1 / (1 + math.exp(-value))


class RegionBrightness(nn.Module):
    """logits = (gain * mean brightness inside ``region``, 0): p(class 0) = sigmoid of it."""

    def __init__(self, region: torch.Tensor, gain: float) -> None:
        super().__init__()
        self.register_buffer("region", region.float())
        self.gain = nn.Parameter(torch.tensor(gain))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = (x.mean(dim=1) * self.region).sum(dim=(1, 2)) / self.region.sum()
        return torch.stack([self.gain * inside, torch.zeros_like(inside)], dim=1)


def corner_model(gain: float = 4.0) -> RegionBrightness:
    region = torch.zeros(4, 4)
    region[:2, :2] = 1  # the top-left 2 x 2 block
    return RegionBrightness(region, gain).eval()


def corner_first_map() -> torch.Tensor:
    """A 4 x 4 map whose 4 most salient pixels are the top-left block, all values distinct."""
    saliency = torch.arange(16, dtype=torch.float32).flip(0).reshape(4, 4)  # 15 ... 0 in rows
    saliency[:2, :2] += 100
    return saliency[None]


# ------------------------------------------------------------------------------------------
# Deletion and insertion
# ------------------------------------------------------------------------------------------


def test_deletion_curve_of_a_region_brightness_model() -> None:
    model = corner_model(gain=4.0)
    image = torch.ones(1, 3, 4, 4)
    curve = metrics.deletion(
        model, image, corner_first_map(), targets=0, step=2, preprocessing=IDENTITY
    )
    # Order: (0,0) (0,1) (1,0) (1,1) [the block, row-major by the +100 values], then the rest.
    # Removing 2 pixels per step replaces them by the mean 0: region means 1, 1/2, 0, 0, ...
    expected = [sigmoid(4.0), sigmoid(2.0)] + [0.5] * 7
    assert curve.fractions.tolist() == pytest.approx([i / 8 for i in range(9)])
    assert curve.scores[0].tolist() == pytest.approx(expected, abs=1e-6)
    trapezoid = sum((a + b) / 2 * (1 / 8) for a, b in itertools.pairwise(expected))
    assert float(curve.auc[0]) == pytest.approx(trapezoid, abs=1e-6)


def test_deletion_replaces_pixels_by_the_dataset_mean() -> None:
    # With ImageNet-style normalisation the removed pixels become exactly zero model input.
    region = torch.ones(4, 4)
    model = RegionBrightness(region, gain=1.0).eval()
    preprocessing = camkit.Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    image = torch.full((1, 3, 4, 4), 0.75)  # normalised value (0.75 - 0.5) / 0.25 = 1
    curve = metrics.deletion(
        model, image, corner_first_map(), targets=0, step=16, preprocessing=preprocessing
    )
    assert curve.scores[0].tolist() == pytest.approx([sigmoid(1.0), 0.5], abs=1e-6)


def test_default_step_is_rises_224_times_8_pixels() -> None:
    model = RegionBrightness(torch.ones(224, 224), gain=1.0).eval()
    image = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    heat = torch.rand(1, 224, 224, generator=torch.Generator().manual_seed(1))
    curve = metrics.deletion(model, image, heat, targets=0, preprocessing=IDENTITY)
    assert curve.fractions.shape[0] == 224 * 224 // (224 * 8) + 1 == 29
    assert float(curve.fractions[1]) == pytest.approx(224 * 8 / (224 * 224))


def test_insertion_curve_with_a_black_start() -> None:
    model = corner_model(gain=4.0)
    image = torch.ones(1, 3, 4, 4)
    curve = metrics.insertion(
        model,
        image,
        corner_first_map(),
        targets=0,
        step=2,
        baseline=torch.zeros(1, 3, 4, 4),
        preprocessing=IDENTITY,
    )
    expected = [0.5, sigmoid(2.0)] + [sigmoid(4.0)] * 7
    assert curve.scores[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_insertion_starts_from_a_gaussian_blur_kernel_11_sigma_5() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 16, 16, generator=generator)
    region = torch.zeros(16, 16)
    region[3, 5] = 1  # the model reads one pixel: p = sigmoid(mean over channels there)
    model = RegionBrightness(region, gain=1.0).eval()
    curve = metrics.insertion(
        model, image, torch.rand(1, 16, 16, generator=generator), targets=0, step=256,
        preprocessing=IDENTITY,
    )  # fmt: skip
    # An independent blur: separable normalised Gaussian taps, reflected borders.
    taps = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 5.0**2))
    taps /= taps.sum()
    padded = np.pad(image[0].numpy().astype(np.float64), ((0, 0), (5, 5), (5, 5)), mode="reflect")
    rows = sum(taps[i] * padded[:, i : i + 16, :] for i in range(11))
    blurred = sum(taps[i] * rows[:, :, i : i + 16] for i in range(11))
    start = sigmoid(float(blurred[:, 3, 5].mean()))
    end = sigmoid(float(image[0, :, 3, 5].mean()))
    assert curve.scores[0].tolist() == pytest.approx([start, end], abs=1e-5)


def test_curves_do_not_depend_on_the_batch_size(small_cnn: nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 16, 16, generator=generator)
    heat = torch.rand(3, 16, 16, generator=generator)
    whole = metrics.deletion(small_cnn, images, heat, step=32, batch_size=64)
    pieces = metrics.deletion(small_cnn, images, heat, step=32, batch_size=5)
    assert torch.allclose(whole.scores, pieces.scores, atol=1e-5)
    alone = metrics.insertion(small_cnn, images[1:2], heat[1:2], step=32)
    together = metrics.insertion(small_cnn, images, heat, step=32)
    assert torch.allclose(alone.scores[0], together.scores[1], atol=1e-5)


def test_targets_default_to_the_top_prediction(small_cnn: nn.Module) -> None:
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    heat = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(3))
    curve = metrics.deletion(small_cnn, images, heat, step=64)
    expected = small_cnn(camkit.Preprocessing().normalize(images)).argmax(1)
    assert curve.classes.tolist() == expected.tolist()


# ------------------------------------------------------------------------------------------
# Average Drop and Increase in Confidence
# ------------------------------------------------------------------------------------------


def test_average_drop_and_increase_by_hand() -> None:
    model = RegionBrightness(torch.ones(4, 4), gain=2.0).eval()
    images = torch.ones(2, 3, 4, 4)
    heat = torch.zeros(2, 4, 4)
    heat[:, :, :2] = 1.0  # left half kept, right half multiplied by 0: brightness 1 -> 1/2
    result = metrics.average_drop(model, images, heat, targets=[0, 1], preprocessing=IDENTITY)
    y0, o0 = sigmoid(2.0), sigmoid(1.0)  # class 0 loses confidence
    y1, o1 = 1 - sigmoid(2.0), 1 - sigmoid(1.0)  # class 1 gains it
    assert result.original.tolist() == pytest.approx([y0, y1], abs=1e-6)
    assert result.masked.tolist() == pytest.approx([o0, o1], abs=1e-6)
    assert result.average_drop == pytest.approx(100 * ((y0 - o0) / y0 + 0) / 2, abs=1e-4)
    assert result.increase_in_confidence == pytest.approx(50.0)


def test_average_drop_multiplies_pixels_before_normalisation() -> None:
    model = RegionBrightness(torch.ones(2, 2), gain=1.0).eval()
    preprocessing = camkit.Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    image = torch.ones(1, 3, 2, 2)
    heat = torch.tensor([[[0.0, 1.0], [1.0, 0.5]]])
    result = metrics.average_drop(model, image, heat, targets=0, preprocessing=preprocessing)
    # pixels 0, 1, 1, 0.5 -> normalised -1, 1, 1, 0 -> mean 0.25
    assert float(result.masked[0]) == pytest.approx(sigmoid(0.25), abs=1e-6)
    assert float(result.original[0]) == pytest.approx(sigmoid(1.0), abs=1e-6)


# ------------------------------------------------------------------------------------------
# ROAD
# ------------------------------------------------------------------------------------------


def dense_imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Each removed pixel = weighted mean of its in-image neighbours, one dense solve."""
    _, height, width = image.shape
    unknown = [(y, x) for y in range(height) for x in range(width) if removed[y, x]]
    position = {pixel: i for i, pixel in enumerate(unknown)}
    matrix = np.zeros((len(unknown), len(unknown)))
    rhs = np.zeros((len(unknown), image.shape[0]))
    for i, (y, x) in enumerate(unknown):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                if (dy, dx) == (0, 0) or not (0 <= ny < height and 0 <= nx < width):
                    continue
                weight = 1 / 12 if dy and dx else 1 / 6
                matrix[i, i] += weight
                if removed[ny, nx]:
                    matrix[i, position[(ny, nx)]] -= weight
                else:
                    rhs[i] += weight * image[:, ny, nx]
    solution = np.linalg.solve(matrix, rhs)
    out = image.copy()
    for i, (y, x) in enumerate(unknown):
        out[:, y, x] = solution[i]
    return out


def test_linear_imputation_matches_a_dense_solve() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, 7, 9, generator=generator, dtype=torch.float64)
    removed = torch.rand(7, 9, generator=generator) < 0.5
    removed[0, 0] = removed[6, 8] = True  # corners: neighbours outside the image
    imputed = metrics.linear_imputation(image, removed, noise=0.0)
    expected = dense_imputation(image.numpy(), removed.numpy())
    assert np.allclose(imputed.numpy(), expected, atol=1e-10)
    assert torch.equal(imputed[:, ~removed], image[:, ~removed])


def test_imputation_noise_touches_only_removed_pixels() -> None:
    image = torch.full((3, 20, 20), 0.5, dtype=torch.float64)
    removed = torch.zeros(20, 20, dtype=torch.bool)
    removed[5:15, 5:15] = True
    noisy = metrics.linear_imputation(
        image, removed, noise=0.05, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(noisy[:, ~removed], image[:, ~removed])
    # A constant image imputes to the constant, so what is left is the noise itself.
    assert float((noisy[:, removed] - 0.5).std()) == pytest.approx(0.05, rel=0.1)


def test_road_on_a_constant_image_hides_the_removal() -> None:
    # Linear imputation reproduces a constant image exactly, so no percentage changes the score.
    model = corner_model(gain=3.0)
    image = torch.full((1, 3, 4, 4), 0.8)
    result = metrics.road(
        model,
        image,
        corner_first_map(),
        targets=0,
        percentages=(25, 50, 75),
        noise=0.0,
        preprocessing=IDENTITY,
    )
    assert result.morf[0].tolist() == pytest.approx([sigmoid(3 * 0.8)] * 3, abs=1e-6)
    assert result.lerf[0].tolist() == pytest.approx([sigmoid(3 * 0.8)] * 3, abs=1e-6)


def test_road_morf_removes_the_most_salient_pixels_first() -> None:
    # Bright block in a dark image; the model reads the block. MoRF at 25% removes exactly the
    # block (filled from its dark surroundings), LeRF at 25% removes 4 dark pixels far away.
    model = corner_model(gain=3.0)
    image = torch.zeros(1, 3, 4, 4)
    image[:, :, :2, :2] = 1.0
    result = metrics.road(
        model, image, corner_first_map(), targets=0, percentages=(25,), noise=0.0,
        preprocessing=IDENTITY,
    )  # fmt: skip
    expected = dense_imputation(image[0].double().numpy(), (corner_first_map()[0] >= 100).numpy())
    assert float(result.morf[0, 0]) == pytest.approx(
        sigmoid(3 * float(expected[:, :2, :2].mean())), abs=1e-5
    )
    assert float(result.lerf[0, 0]) == pytest.approx(sigmoid(3.0), abs=1e-6)


def test_road_rejects_bad_percentages() -> None:
    with pytest.raises(ValueError, match="percentages"):
        metrics.road(corner_model(), torch.ones(1, 3, 4, 4), corner_first_map(), percentages=(0,))


# ------------------------------------------------------------------------------------------
# Pointing game
# ------------------------------------------------------------------------------------------


def peak_map(y: int, x: int, size: int = 64) -> torch.Tensor:
    heat = torch.zeros(size, size)
    heat[y, x] = 1
    return heat


def test_pointing_game_tolerance_is_15_pixels() -> None:
    box = (20, 20, 30, 30)  # x0, y0, x1, y1 inclusive
    maps = torch.stack(
        [
            peak_map(25, 25),  # inside
            peak_map(25, 45),  # 15 px right of x1: hit
            peak_map(25, 46),  # 16 px: miss
            peak_map(42, 42),  # diagonal sqrt(12^2 + 12^2) = 16.97 px: miss
            peak_map(40, 39),  # sqrt(10^2 + 9^2) = 13.45 px: hit
            torch.zeros(64, 64),  # constant: no maximum, a miss
        ]
    )
    result = metrics.pointing_game(maps, [box] * 6)
    assert result.hits.tolist() == [True, True, False, False, True, False]
    assert result.accuracy == pytest.approx(3 / 6)
    assert result.points[1].tolist() == [25, 45]


def test_pointing_game_with_masks_and_several_boxes() -> None:
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[50:, 50:] = True
    result = metrics.pointing_game(
        torch.stack([peak_map(40, 50), peak_map(5, 5), peak_map(5, 5)]),
        [mask, [(40, 40, 45, 45), (0, 0, 2, 2)], (40, 40, 45, 45)],
        tolerance=10,
    )
    assert result.hits.tolist() == [True, True, False]


def test_pointing_game_on_the_shared_two_object_image(lite0: camkit.LoadedModel) -> None:
    import json

    boxes = json.loads(shared_path("images", "both.json").read_text())["boxes_xyxy"]
    dog, cat = boxes["bull mastiff"], boxes["tiger cat"]
    exp = camkit.explain(
        lite0,
        [str(shared_path("images", "both.png"))] * 2,
        target=[dog["class_index"], cat["class_index"]],
    )
    result = metrics.pointing_game(exp["gradcam"], [dog["box"], cat["box"]])
    assert result.hits.tolist() == [True, True]


# ------------------------------------------------------------------------------------------
# Reference maps and Spearman
# ------------------------------------------------------------------------------------------


def test_center_map_is_a_centred_gaussian() -> None:
    heat = metrics.reference_maps("center", 2, 9, 9)
    assert float(heat[0, 4, 4]) == 1.0 and float(heat[1].min()) == 0.0
    sigma = 9 / 4
    corner, edge = math.exp(-(4**2 + 4**2) / (2 * sigma**2)), math.exp(-(4**2) / (2 * sigma**2))
    assert float(heat[0, 4, 0]) == pytest.approx((edge - corner) / (1 - corner), abs=1e-6)


def test_random_map_is_seeded_and_coarse() -> None:
    first = metrics.reference_maps("random", 2, 64, 64, seed=[1, 2])
    again = metrics.reference_maps("random", 1, 64, 64, seed=2)
    assert torch.equal(first[1], again[0])
    assert not torch.equal(first[0], first[1])
    assert float(first.amin()) == 0.0 and float(first.amax()) == 1.0
    with pytest.raises(ValueError, match="center, random"):
        metrics.reference_maps("uniform", 1, 8, 8)


def test_spearman_matches_scipy_with_ties() -> None:
    from scipy.stats import spearmanr

    generator = torch.Generator().manual_seed(0)
    first = torch.randint(0, 5, (3, 40), generator=generator).float()
    second = torch.randint(0, 7, (3, 40), generator=generator).float()
    ours = metrics.spearman(first, second)
    for row in range(3):
        expected = spearmanr(first[row].numpy(), second[row].numpy()).statistic
        assert float(ours[row]) == pytest.approx(float(expected), abs=1e-5)
    assert float(metrics.spearman(torch.ones(1, 5), first[:1, :5])[0]) == 0.0


# ------------------------------------------------------------------------------------------
# Sanity check
# ------------------------------------------------------------------------------------------


def test_randomisation_groups_go_from_the_output_down(small_cnn: nn.Module) -> None:
    groups = randomisation_groups(small_cnn, torch.rand(1, 3, 16, 16))
    assert groups == ["fc", "block.1", "block.0", "stem.1", "stem.0"]


def test_sanity_check_on_lite0_gradcam_loses_its_map(lite0: camkit.LoadedModel) -> None:
    images = [str(shared_path("images", name)) for name in ("chelsea.png", "coffee.png")]
    pixels = camkit.explain(lite0, images).images
    before = copy.deepcopy(lite0.model.state_dict())
    result = metrics.sanity_check(lite0, pixels, ["gradcam"], steps=4)
    assert result.steps == ["_fc", "_bn1", "_conv_head", "_blocks.15"]
    correlations = result.correlations["gradcam"]
    assert result.perturbation["gradcam"] > 0.9
    assert float(correlations[-1]) < 0.3 < result.perturbation["gradcam"] - 0.5
    assert result.passed["gradcam"]
    assert result.first_below["gradcam"] == "_fc"  # its weights are the classifier's gradient
    assert result.reasons["gradcam"].startswith("passes")
    after = lite0.model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_sanity_check_fails_maps_that_survive_a_random_classifier(
    lite0: camkit.LoadedModel,
) -> None:
    """Grad-CAM++ (positive gradients, near-uniform alphas) and Eigen-CAM (activations only)
    keep their map when `_fc` is random: they fail, whatever the later steps do."""
    images = [str(shared_path("images", name)) for name in ("chelsea.png", "coffee.png")]
    pixels = camkit.explain(lite0, images).images
    result = metrics.sanity_check(lite0, pixels, ["gradcam", "gradcam++", "eigencam"], steps=2)
    first = {name: float(values[0]) for name, values in result.correlations.items()}
    assert first["eigencam"] == pytest.approx(1.0, abs=1e-6)  # _fc is after the layer it reads
    assert first["gradcam++"] > 0.5 > first["gradcam"]
    assert result.passed == {"gradcam": True, "gradcam++": False, "eigencam": False}
    assert "survives randomising '_fc'" in result.reasons["gradcam++"]
    assert result.first_below["eigencam"] is None
    table = result.table()
    assert "| 1. _fc |" in table and "| passes | yes | no | no |" in table


@pytest.mark.parametrize(
    ("series", "yardstick", "verdict", "first"),
    [
        ([0.2, 0.1, 0.0], 0.99, True, "a"),  # lost at once, and stays lost
        ([0.9, 0.4, 0.1], 0.99, False, "b"),  # survives the first step: fails however it ends
        ([0.2, 0.6, 0.7], 0.99, False, "a"),  # comes back by the last step
        ([0.3, 0.2, 0.1], 0.5, False, "a"),  # below 0.5 but not below half the yardstick
        ([0.6, 0.7, 0.8], 0.99, False, None),  # never below 0.5
    ],
)
def test_sanity_rule_judges_the_first_and_the_last_step(
    series: list[float], yardstick: float, verdict: bool, first: str | None
) -> None:
    from camkit._metrics_sanity import judge

    passed, first_below, reason = judge(["a", "b", "c"], torch.tensor(series), yardstick)
    assert (passed, first_below) == (verdict, first)
    assert reason.startswith("passes" if verdict else "fails")


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


def test_metrics_refuse_normalised_tensors_and_mismatched_maps() -> None:
    model = corner_model()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.deletion(model, torch.full((1, 3, 4, 4), -2.0), corner_first_map())
    with pytest.raises(ValueError, match="one \\(4, 4\\) map per image"):
        metrics.insertion(model, torch.ones(1, 3, 4, 4), torch.ones(1, 2, 2))
    with pytest.raises(TypeError, match="float tensor"):
        metrics.average_drop(model, np.ones((1, 3, 4, 4)), corner_first_map())
    with pytest.raises(ValueError, match="one per image"):
        metrics.deletion(model, torch.ones(1, 3, 4, 4), corner_first_map(), targets=[0, 1])


def test_pointing_game_takes_tensor_boxes_and_refuses_bad_regions() -> None:
    result = metrics.pointing_game(peak_map(5, 5)[None], [torch.tensor([0, 0, 9, 9])])
    assert result.hits.tolist() == [True]
    with pytest.raises(ValueError, match="not a box"):
        metrics.pointing_game(peak_map(5, 5)[None], [(1, 2, 3)])
