"""Tests of the exercise checkers of lessons 06-08: right answers pass, usual mistakes get hints."""

from __future__ import annotations

import pytest
import torch

import camkit
from camkit import cam, exercises


@pytest.fixture(scope="module")
def heatmap() -> torch.Tensor:
    """A 6 x 8 map whose single maximum is at (x, y) = (5, 2), with mass in a corner too."""
    heat = torch.zeros(6, 8)
    heat[2, 5] = 1.0
    heat[0:2, 0:2] = 0.5
    heat[4, 1] = 0.25
    return heat


# Lesson 06 -----------------------------------------------------------------------------------


def test_check_peak_accepts_x_then_y(heatmap: torch.Tensor) -> None:
    feedback = exercises.check_peak(heatmap, (5, 2))
    assert feedback.correct and feedback.message.startswith("Right")
    assert "(5, 2)" in feedback.message


def test_check_peak_names_the_usual_mistakes(heatmap: torch.Tensor) -> None:
    swapped = exercises.check_peak(heatmap, (2, 5))
    assert not swapped and "(row, column)" in swapped.message
    flat = exercises.check_peak(heatmap, int(heatmap.argmax()))
    assert not flat and "divmod" in flat.message
    elsewhere = exercises.check_peak(heatmap, (0, 0))
    assert not elsewhere and "0.500" in elsewhere.message and "1.000" in elsewhere.message
    outside = exercises.check_peak(heatmap, (8, 0))
    assert not outside and "outside" in outside.message
    assert not exercises.check_peak(heatmap, "here")


def test_check_box_share(heatmap: torch.Tensor) -> None:
    total = float(heatmap.sum())  # 1 + 4 * 0.5 + 0.25 = 3.25
    box = (0, 0, 1, 1)  # the 2 x 2 corner, corners included: 2.0 of the map
    assert exercises.check_box_share(heatmap, box, 2.0 / total)
    assert exercises.check_box_share(heatmap, box, torch.tensor(2.0 / total))
    exclusive = exercises.check_box_share(heatmap, box, 0.5 / total)  # heat[0:1, 0:1]
    assert not exclusive and "last row and column" in exclusive.message
    not_divided = exercises.check_box_share(heatmap, box, 2.0)
    assert not not_divided and "between 0 and 1" in not_divided.message
    # Rows are y: a box over x 4..5, y 1..2 holds the peak; its transpose does not.
    tall = (4, 1, 5, 2)
    swapped = exercises.check_box_share(heatmap, tall, float(heatmap[4:6, 1:3].sum()) / total)
    assert not swapped and "rows are y" in swapped.message
    assert not exercises.check_box_share(heatmap, box, [0.1, 0.2])


def _explanation(peaks: list[tuple[int, int]]) -> camkit.Explanation:
    """A stand-in explain result for one image, one map per class with its peak at ``peaks``."""
    k = len(peaks)
    maps = torch.zeros(1, k, 20, 20)
    for rank, (x, y) in enumerate(peaks):
        maps[0, rank, y, x] = 1.0
    labels = [f"class {rank}" for rank in range(k)]
    return camkit.Explanation(
        maps={("layer", "gradcam"): maps},
        raw={("layer", "gradcam"): maps},
        logits=torch.zeros(1, k),
        probs=torch.full((1, k), 1 / k),
        targets=torch.arange(k)[None],
        labels=[labels],
        categories=labels,
        layers=["layer"],
        methods=["gradcam"],
        images=torch.zeros(1, 3, 20, 20),
        names=["image 0"],
    )


def test_check_class_in_box() -> None:
    box = (10, 10, 19, 19)
    peaks = [(1, 1), (2, 2), (15, 15), (3, 3), (12, 18), (0, 0), (1, 0), (0, 1), (2, 0), (0, 2)]
    exp = _explanation(peaks)
    right = exercises.check_class_in_box(exp, box, "class 2")
    assert right and "rank 3" in right.message
    later = exercises.check_class_in_box(exp, box, "class 4")
    assert not later and "more probable" in later.message
    outside = exercises.check_class_in_box(exp, box, "class 0")
    assert not outside and "(1, 1)" in outside.message
    assert "class name" in exercises.check_class_in_box(exp, box, 2).message
    assert not exercises.check_class_in_box(exp, box, "zebra")
    too_few = exercises.check_class_in_box(_explanation(peaks[:5]), box, "class 2")
    assert not too_few and "top_k=10" in too_few.message
    assert not exercises.check_class_in_box("not an explanation", box, "class 2")


# Lesson 07 -----------------------------------------------------------------------------------


def test_check_auc() -> None:
    xs = torch.tensor([0.0, 0.25, 0.5, 1.0])
    ys = torch.tensor([1.0, 0.5, 0.25, 0.0])
    expected = 0.25 * 0.75 + 0.25 * 0.375 + 0.5 * 0.125  # 0.34375 by hand
    assert exercises.check_auc(xs, ys, expected)
    assert not exercises.check_auc(xs, ys, expected + 0.01)
    left = exercises.check_auc(xs, ys, 0.25 * 1 + 0.25 * 0.5 + 0.5 * 0.25)
    assert not left and "left rectangle" in left.message
    mean = exercises.check_auc(xs, ys, float(ys.mean()))
    assert not mean and "step widths" in mean.message


def test_check_average_drop() -> None:
    y = torch.tensor([0.8, 0.5, 0.4])
    o = torch.tensor([0.4, 0.5, 0.6])  # drops 50 %, 0 %, and an increase that counts as 0
    assert exercises.check_average_drop(y, o, 100 * 0.5 / 3)
    fraction = exercises.check_average_drop(y, o, 0.5 / 3)
    assert not fraction and "percent" in fraction.message
    unclamped = exercises.check_average_drop(y, o, 100 * (0.5 + 0 - 0.5) / 3)
    assert not unclamped and "clamp" in unclamped.message
    absolute = exercises.check_average_drop(y, o, 100 * 0.4 / 3)
    assert not absolute and "relative" in absolute.message
    assert not exercises.check_average_drop(y, o, "16.7")


def test_check_first_step_below() -> None:
    steps = ["_fc", "_bn1", "_conv_head", "_blocks.15"]
    correlations = torch.tensor([0.9, 0.6, 0.45, 0.2])
    right = exercises.check_first_step_below(steps, correlations, "_conv_head")
    assert right and "step 3" in right.message
    later = exercises.check_first_step_below(steps, correlations, "_blocks.15")
    assert not later and "earlier" in later.message
    above = exercises.check_first_step_below(steps, correlations, "_bn1")
    assert not above and "0.60" in above.message
    assert "name" in exercises.check_first_step_below(steps, correlations, 2).message
    assert not exercises.check_first_step_below(steps, correlations, "layer4")
    never = exercises.check_first_step_below(steps, torch.ones(4), "_fc")
    assert not never and "never" in never.message


# Lesson 08 -----------------------------------------------------------------------------------


def test_check_ablation_weights() -> None:
    y = 4.0
    ablated = torch.tensor([3.0, 4.0, 5.0])
    assert exercises.check_ablation_weights(y, ablated, torch.tensor([0.25, 0.0, -0.25]))
    flipped = exercises.check_ablation_weights(y, ablated, torch.tensor([-0.25, 0.0, 0.25]))
    assert not flipped and "sign" in flipped.message
    absolute = exercises.check_ablation_weights(y, ablated, torch.tensor([1.0, 0.0, -1.0]))
    assert not absolute and "divide by y" in absolute.message
    shape = exercises.check_ablation_weights(y, ablated, torch.zeros(4))
    assert not shape and "shape" in shape.message


def test_check_layercam() -> None:
    generator = torch.Generator().manual_seed(0)
    activations = torch.rand(1, 3, 4, 5, generator=generator)
    gradients = torch.randn(1, 3, 4, 5, generator=generator)
    right = torch.relu((torch.relu(gradients) * activations).sum(dim=1))[0]
    assert torch.allclose(right, cam.layercam(cam.LayerTensors(activations, gradients))[0])
    assert exercises.check_layercam(activations, gradients, right)
    assert exercises.check_layercam(activations, gradients, right[None])  # a batch of one is fine
    signed = torch.relu((gradients * activations).sum(dim=1))[0]
    assert not torch.allclose(signed, right)
    feedback = exercises.check_layercam(activations, gradients, signed)
    assert not feedback and "positive gradients" in feedback.message
    gradcam = cam.gradcam(cam.LayerTensors(activations, gradients))[0]
    feedback = exercises.check_layercam(activations, gradients, gradcam)
    assert not feedback and "Grad-CAM" in feedback.message


def test_check_tokens_to_grid() -> None:
    tokens = torch.randn(2, 1 + 9, 4, generator=torch.Generator().manual_seed(0))
    grid = tokens[:, 1:].reshape(2, 3, 3, 4).permute(0, 3, 1, 2)
    right = exercises.check_tokens_to_grid(tokens, grid)
    assert right and "3 x 3" in right.message
    plain = exercises.check_tokens_to_grid(tokens, tokens[:, 1:].reshape(2, 4, 3, 3))
    assert not plain and "permute" in plain.message
    with_class = tokens[:, :-1].reshape(2, 3, 3, 4).permute(0, 3, 1, 2)
    feedback = exercises.check_tokens_to_grid(tokens, with_class)
    assert not feedback and "class token" in feedback.message
    shape = exercises.check_tokens_to_grid(tokens, tokens)
    assert not shape and "shape" in shape.message


# Lessons 06 and 07: the predict-then-verify checkers -----------------------------------------


def test_check_box_prediction_computes_the_class_map_itself(lite0: camkit.LoadedModel) -> None:
    image = camkit.sample_image("both")
    boxes = {item["label"]: item["box"] for item in camkit.sample_boxes("both")}
    named = {"dog": boxes["bull mastiff"], "cat": boxes["tabby"]}
    assert exercises.check_box_prediction(image, "Egyptian cat", named, "cat")
    wrong = exercises.check_box_prediction(image, "Egyptian cat", named, "dog")
    assert not wrong and "peaks elsewhere" in wrong.message
    assert not exercises.check_box_prediction(image, "Egyptian cat", named, "sofa")
    assert "Not answered yet" in exercises.check_box_prediction(image, "tabby", named, ...).message


def test_check_class_correlations_judges_each_band(lite0: camkit.LoadedModel) -> None:
    image = camkit.sample_image("both")
    right = {"American Staffordshire terrier": "high", "Egyptian cat": "low"}
    assert exercises.check_class_correlations(image, "bull mastiff", right)
    swapped = {"American Staffordshire terrier": "low", "Egyptian cat": "high"}
    feedback = exercises.check_class_correlations(image, "bull mastiff", swapped)
    assert not feedback and "2 of 2" in feedback.message
    assert not exercises.check_class_correlations(image, "bull mastiff", {"boxer": "very"})
    assert not exercises.check_class_correlations(image, "bull mastiff", "high")
    assert "Not answered yet" in exercises.check_class_correlations(image, "x", ...).message


def test_check_survival_prediction_judges_the_band() -> None:
    generator = torch.Generator().manual_seed(0)
    sums = torch.rand(2, 8, 8, generator=generator)
    alike = sums + 0.01 * torch.rand(3, 2, 8, 8, generator=generator)
    assert exercises.check_survival_prediction(alike, sums, 0.95)
    assert not exercises.check_survival_prediction(alike, sums, 0.3)
    unlike = torch.rand(3, 2, 8, 8, generator=generator)
    assert exercises.check_survival_prediction(unlike, sums, 0.1)
    assert not exercises.check_survival_prediction(unlike, sums, "high")
    assert "Not answered yet" in exercises.check_survival_prediction(unlike, sums, ...).message


def test_check_eigencam_prediction_runs_the_first_step(lite0: camkit.LoadedModel) -> None:
    pixels = camkit.explain(lite0, camkit.sample_image("chelsea")).images
    right = exercises.check_eigencam_prediction(lite0, pixels, 1.0)
    assert right and "1.00" in right.message
    assert not exercises.check_eigencam_prediction(lite0, pixels, 0.2)
    assert "Not answered yet" in exercises.check_eigencam_prediction(lite0, pixels, ...).message


def test_check_squared_map_prediction_computes_both_scores(lite0: camkit.LoadedModel) -> None:
    exp = camkit.explain(lite0, camkit.sample_image("both"), methods=["gradcam"])
    args = (lite0, exp.images, exp["gradcam"], exp.targets[:, 0])
    right = exercises.check_squared_map_prediction(
        *args, {"deletion AUC": "same", "Average Drop": "higher"}
    )
    assert right and "Average Drop" in right.message
    wrong_drop = exercises.check_squared_map_prediction(
        *args, {"deletion AUC": "same", "Average Drop": "lower"}
    )
    assert not wrong_drop and "multiplies" in wrong_drop.message
    assert "order" not in wrong_drop.message
    wrong_auc = exercises.check_squared_map_prediction(
        *args, {"deletion AUC": "lower", "Average Drop": "higher"}
    )
    assert not wrong_auc and "order" in wrong_auc.message
    assert not exercises.check_squared_map_prediction(*args, {"deletion AUC": "same"})
    assert not exercises.check_squared_map_prediction(
        *args, {"deletion AUC": "same", "Average Drop": "up"}
    )
    assert "Not answered yet" in exercises.check_squared_map_prediction(*args, ...).message
