"""Tests of camkit.exercises: each checker accepts the right answer and names the usual mistakes."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import camkit
from camkit import exercises, hooks


class TwoStage(nn.Module):
    """conv -> BatchNorm -> ReLU -> conv -> ReLU -> pool -> linear: signed and unsigned layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu1(self.bn1(self.conv1(x)))
        b = self.relu2(self.conv2(a))
        return self.head(b.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return TwoStage().eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """Activations (non-negative) and signed gradients, (5, 4, 3), with a zero channel."""
    generator = torch.Generator().manual_seed(2)
    activations = torch.rand(5, 4, 3, generator=generator)
    activations[1] = 0  # a dead channel: alpha's denominator is 0 wherever G is 0
    activations[0, :, 0] += 3  # channel 0 speaks for the class on the left...
    activations[4, :, 2] += 3  # ...channel 4 against it on the right
    gradients = 0.1 * torch.randn(5, 4, 3, generator=generator)
    gradients[0] += 1
    gradients[4] -= 1
    gradients[2, 0, 0] = 0
    return activations, gradients


def _capture(model: nn.Module, x: torch.Tensor, layer: str, class_index: int | None = None):
    with hooks.capture(model, [layer]) as captured:
        logits = model(x)
        grads = None
        if class_index is not None:
            grads = captured.gradients(logits[0, class_index])[layer]
    return captured.activations[layer].detach(), grads


def test_feedback_reads_as_one_line_and_is_a_bool() -> None:
    right = exercises.Feedback(True, "Right: yes")
    assert right and repr(right) == "Right: yes"
    assert not exercises.Feedback(False, "Not yet: no")


# --- lesson 01 -------------------------------------------------------------------------------


def test_activations_right_wrong_and_hook_left(model, x) -> None:
    activations, _ = _capture(model, x, "conv2")
    assert exercises.check_activations(model, x, "conv2", activations)
    assert exercises.check_activations(model, x, "conv2", activations.numpy())  # arrays are fine
    feedback = exercises.check_activations(model, x, "conv2", activations[:, :4])
    assert not feedback and "shape (1, 4, 6, 6), expected (1, 8, 6, 6)" in feedback.message
    feedback = exercises.check_activations(model, x, "conv2", activations + 0.1)
    assert not feedback and "other values" in feedback.message
    handle = model.conv2.register_forward_hook(lambda m, i, o: None)
    try:
        feedback = exercises.check_activations(model, x, "conv2", activations)
    finally:
        handle.remove()
    assert not feedback and "1 hook(s) still on the model" in feedback.message


def test_gradients_right_sign_and_wrong_class(model, x) -> None:
    top = int(model(x).argmax())
    other = (top + 1) % 4
    _, expected = _capture(model, x, "relu1", other)
    assert exercises.check_gradients(model, x, "relu1", other, expected)
    feedback = exercises.check_gradients(model, x, "relu1", other, -expected)
    assert not feedback and "sign is flipped" in feedback.message
    _, top_gradients = _capture(model, x, "relu1", top)
    feedback = exercises.check_gradients(model, x, "relu1", other, top_gradients)
    assert not feedback and f"gradients of the top class ({top})" in feedback.message


# --- lesson 02 -------------------------------------------------------------------------------


def test_channel_weights_counts_the_wrong_channels(tensors) -> None:
    _, gradients = tensors
    weights = gradients.mean(dim=(1, 2))
    assert exercises.check_channel_weights(gradients, weights)
    assert exercises.check_channel_weights(gradients[None], weights[None])  # batch of one
    wrong = weights.clone()
    wrong[[0, 3]] += 1.0
    feedback = exercises.check_channel_weights(gradients, wrong)
    assert not feedback
    assert "differ from the spatial mean of the gradients in 2 of 5 channels" in feedback.message
    feedback = exercises.check_channel_weights(gradients, gradients.sum(dim=(1, 2)))
    assert not feedback and "summed" in feedback.message
    feedback = exercises.check_channel_weights(gradients, weights[:4])
    assert not feedback and "shape (4,), expected (5,)" in feedback.message
    feedback = exercises.check_channel_weights(gradients, "weights")
    assert not feedback and "must be a tensor" in feedback.message


def test_gradcam_map_and_its_usual_mistakes(tensors) -> None:
    activations, gradients = tensors
    weighted_sum = (gradients.mean(dim=(1, 2))[:, None, None] * activations).sum(dim=0)
    assert (weighted_sum < 0).any() and (weighted_sum > 0).any()  # so the ReLU matters
    assert exercises.check_gradcam_map(activations, gradients, torch.relu(weighted_sum))
    feedback = exercises.check_gradcam_map(activations, gradients, weighted_sum)
    assert not feedback and "apply the ReLU" in feedback.message
    per_channel = gradients.mean(dim=(1, 2))[:, None, None] * activations
    feedback = exercises.check_gradcam_map(activations, gradients, per_channel)
    assert not feedback and ".sum(dim=0)" in feedback.message
    feedback = exercises.check_gradcam_map(activations, gradients, torch.relu(weighted_sum) + 1)
    assert not feedback and "differs" in feedback.message


def test_evidence_against(tensors) -> None:
    activations, gradients = tensors
    weighted_sum = (gradients.mean(dim=(1, 2))[:, None, None] * activations).sum(dim=0)
    assert exercises.check_evidence_against(activations, gradients, torch.relu(-weighted_sum))
    feedback = exercises.check_evidence_against(activations, gradients, torch.relu(weighted_sum))
    assert not feedback and "evidence for" in feedback.message
    feedback = exercises.check_evidence_against(activations, gradients, -torch.relu(-weighted_sum))
    assert not feedback and "positive" in feedback.message


# --- lesson 03 -------------------------------------------------------------------------------


def test_alpha_is_eq_19_and_zero_where_the_denominator_is(tensors) -> None:
    activations, gradients = tensors
    sums = activations.sum(dim=(1, 2), keepdim=True)
    with torch.no_grad():
        naive = gradients**2 / (2 * gradients**2 + sums * gradients**3)
    assert torch.isnan(naive).any()  # 0 / 0 at the zero gradient
    right = torch.nan_to_num(naive, nan=0.0)
    assert exercises.check_alpha(activations, gradients, right)
    feedback = exercises.check_alpha(activations, gradients, naive)
    assert not feedback and "NaN" in feedback.message
    whole_sum = gradients**2 / (2 * gradients**2 + activations.sum() * gradients**3)
    feedback = exercises.check_alpha(activations, gradients, torch.nan_to_num(whole_sum))
    assert not feedback and "each channel's grid only" in feedback.message


def test_alpha_checker_agrees_with_camkit_gradcam_plus_plus(tensors) -> None:
    """Weights from the checker's alpha give camkit's Grad-CAM++ map: the two formulas agree."""
    activations, gradients = tensors
    alpha = torch.nan_to_num(
        gradients**2 / (2 * gradients**2 + activations.sum(dim=(1, 2), keepdim=True) * gradients**3)
    )
    weights = (alpha * torch.relu(gradients)).sum(dim=(1, 2))
    assert exercises.check_gradcam_plus_plus_weights(activations, gradients, weights)
    tensors = camkit.cam.LayerTensors(activations[None], gradients[None])
    expected = camkit.cam.gradcam_plus_plus(tensors)
    ours = torch.relu((weights[:, None, None] * activations).sum(dim=0))
    torch.testing.assert_close(ours, expected[0])
    feedback = exercises.check_gradcam_plus_plus_weights(
        activations, gradients, (alpha * gradients).sum(dim=(1, 2))
    )
    assert not feedback and "torch.relu(G)" in feedback.message
    feedback = exercises.check_gradcam_plus_plus_weights(
        activations, gradients, (alpha * torch.relu(gradients)).mean(dim=(1, 2))
    )
    assert not feedback and "averaged" in feedback.message


# --- lesson 04 -------------------------------------------------------------------------------


def test_dotted_name() -> None:
    net = torchvision.models.squeezenet1_1(weights=None)
    name = "features_12_expand3x3_activation"
    assert exercises.check_dotted_name(net, name, "features.12.expand3x3_activation")
    feedback = exercises.check_dotted_name(net, name, name)
    assert not feedback and "dots" in feedback.message
    feedback = exercises.check_dotted_name(net, name, "features.12.expand3x3.activation")
    assert not feedback and "underscores" in feedback.message
    feedback = exercises.check_dotted_name(net, name, "features.12.squeeze")
    assert not feedback and "another module" in feedback.message
    feedback = exercises.check_dotted_name(net, name, 12)
    assert not feedback and "string" in feedback.message


def test_signed_layers(model, x) -> None:
    right = {"conv1": True, "bn1": True, "relu1": False, "relu2": False}
    assert exercises.check_signed_layers(model, x, right)
    feedback = exercises.check_signed_layers(model, x, {**right, "bn1": False, "relu2": True})
    assert not feedback and "bn1, relu2" in feedback.message
    assert not exercises.check_signed_layers(model, x, ["conv1"])
    assert hooks.hook_count(model) == 0


# --- lesson 00 (runs the offline model) ------------------------------------------------------


@pytest.fixture(scope="module")
def lite0() -> camkit.LoadedModel:
    return camkit.load_model("efficientnet_lite0")


def test_coffee_explanation(lite0) -> None:
    coffee = camkit.sample_image("coffee")
    right = camkit.explain(lite0, coffee, methods=["gradcam++"], layers=["_blocks.10"])
    assert exercises.check_coffee_explanation(right)
    wrong_layer = camkit.explain(lite0, coffee, methods=["gradcam++"], layers=["_blocks.4"])
    feedback = exercises.check_coffee_explanation(wrong_layer)
    assert not feedback and "layers=['_blocks.10']" in feedback.message
    other_image = camkit.explain(
        lite0, camkit.sample_image("chelsea"), methods=["gradcam++"], layers=["_blocks.10"]
    )
    feedback = exercises.check_coffee_explanation(other_image)
    assert not feedback and "differs" in feedback.message
    assert not exercises.check_coffee_explanation("coffee")


def test_explained_class(lite0) -> None:
    image = camkit.sample_image("water-bird")
    pelican = camkit.explain(lite0, image, target="pelican")
    assert exercises.check_explained_class(pelican, "pelican")
    feedback = exercises.check_explained_class(camkit.explain(lite0, image), "pelican")
    assert not feedback and "target='pelican'" in feedback.message


# --- lessons 00-02: predict, then verify --------------------------------------------------------

BIRD = (0, 55, 190, 170)  # lesson 00's hand-drawn box around the spoonbill


def _not_answered(feedback: exercises.Feedback) -> bool:
    return not feedback and feedback.message.startswith("Not answered yet")


def test_lessons_00_to_02_checkers_say_not_answered_to_an_ellipsis(model, x, tensors) -> None:
    activations, gradients = tensors
    feedbacks = [
        exercises.check_coffee_explanation(...),
        exercises.check_explained_class(..., "pelican"),
        exercises.check_activations(model, x, "conv2", ...),
        exercises.check_gradients(model, x, "relu1", 1, ...),
        exercises.check_channel_weights(gradients, ...),
        exercises.check_gradcam_map(activations, gradients, ...),
        exercises.check_evidence_against(activations, gradients, ...),
    ]
    assert all(_not_answered(feedback) for feedback in feedbacks), feedbacks


def test_class_map_checks_the_map_and_the_prediction(lite0) -> None:
    image = camkit.sample_image("water-bird")
    pelican = camkit.explain(lite0, image, methods=["gradcam"], target="pelican")
    feedback = exercises.check_class_map(pelican, "pelican", BIRD, True)
    assert feedback and "lies inside the bird's box" in feedback.message
    feedback = exercises.check_class_map(pelican, "pelican", BIRD, False)
    assert not feedback and "your prediction is not" in feedback.message
    top = camkit.explain(lite0, image, methods=["gradcam"])
    feedback = exercises.check_class_map(top, "pelican", BIRD, True)
    assert not feedback and "you explained 'spoonbill'" in feedback.message
    # The right label on another picture is not the right map.
    other = camkit.explain(
        lite0, camkit.sample_image("chelsea"), methods=["gradcam"], target="pelican"
    )
    feedback = exercises.check_class_map(other, "pelican", BIRD, True)
    assert not feedback and "not Lite0's Grad-CAM map" in feedback.message
    assert _not_answered(exercises.check_class_map(..., "pelican", BIRD, True))
    assert _not_answered(exercises.check_class_map(pelican, "pelican", BIRD, ...))
    assert not exercises.check_class_map(pelican, "pelican", BIRD, "yes")


def test_occlusion_prediction(lite0) -> None:
    image = camkit.sample_image("water-bird")
    right = {"bird covered": False, "bird only": True}
    feedback = exercises.check_occlusion_prediction(lite0, image, BIRD, right)
    assert feedback and "spoonbill" in feedback.message
    feedback = exercises.check_occlusion_prediction(
        lite0, image, BIRD, {**right, "bird only": False}
    )
    assert not feedback and "['bird only']" in feedback.message
    assert not exercises.check_occlusion_prediction(lite0, image, BIRD, {"covered": False})
    assert _not_answered(exercises.check_occlusion_prediction(lite0, image, BIRD, ...))


def test_constant_gradient(model, x) -> None:
    # relu2 feeds the average directly: its gradient is the same at every position; conv2's
    # passes through the ReLU first, which blocks it where conv2's output is negative.
    assert exercises.check_constant_gradient(model, x, "relu2", 1, True)
    feedback = exercises.check_constant_gradient(model, x, "relu2", 1, False)
    assert not feedback and "0 of 8 channels" in feedback.message
    assert exercises.check_constant_gradient(model, x, "conv2", 1, False)
    feedback = exercises.check_constant_gradient(model, x, "conv2", 1, True)
    assert not feedback and "varies with position" in feedback.message
    assert _not_answered(exercises.check_constant_gradient(model, x, "conv2", 1, ...))
    assert hooks.hook_count(model) == 0


class Patches(nn.Module):
    """Non-overlapping 32 x 32 patches: each output cell sees only its own patch."""

    def __init__(self) -> None:
        super().__init__()
        self.patchify = nn.Conv2d(3, 4, 32, stride=32)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.patchify(x).mean(dim=(2, 3)))


def test_changed_cells(model) -> None:
    torch.manual_seed(3)
    big = torch.randn(1, 3, 96, 96)
    assert exercises.check_changed_cells(Patches().eval(), big, "patchify", "one")
    assert exercises.check_changed_cells(model, big, "conv2", "some")  # a 7 x 7 receptive field
    small = torch.randn(1, 3, 12, 12)  # the corner covers the whole input
    assert exercises.check_changed_cells(model, small, "conv2", "all")
    feedback = exercises.check_changed_cells(model, big, "conv2", "all")
    assert not feedback and "cells of conv2 changed" in feedback.message
    assert not exercises.check_changed_cells(model, big, "conv2", 3)
    assert _not_answered(exercises.check_changed_cells(model, big, "conv2", ...))


def test_logit_scaling(lite0) -> None:
    image = camkit.sample_image("water-bird")
    feedback = exercises.check_logit_scaling(lite0, image, 10, False)
    assert feedback and "multiplied by 10.00" in feedback.message
    assert not exercises.check_logit_scaling(lite0, image, 100, False)
    feedback = exercises.check_logit_scaling(lite0, image, 10, True)
    assert not feedback and "(m - min) / (max - min)" in feedback.message
    assert _not_answered(exercises.check_logit_scaling(lite0, image, ..., ...))


def test_negated_score(lite0) -> None:
    image = camkit.sample_image("water-bird")
    feedback = exercises.check_negated_score(lite0, image, "flamingo", "against")
    assert feedback and "evidence against" in feedback.message
    feedback = exercises.check_negated_score(lite0, image, "flamingo", "same")
    assert not feedback and "Compare it with the maps of step 3" in feedback.message
    assert not exercises.check_negated_score(lite0, image, "flamingo", "opposite")
    assert _not_answered(exercises.check_negated_score(lite0, image, "flamingo", ...))
