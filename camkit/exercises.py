"""Checkers for the notebooks' exercises: each says right or wrong, with a hint.

A ``check_*`` function compares a learner's answer with what camkit computes itself and returns a
:class:`Feedback`, shown in a notebook as one line starting with "Right" or "Not yet". One small
function per exercise; the lesson that uses it is named in its docstring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch import nn

import camkit
from camkit import cam, hooks, layers


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer.

    Attributes:
        correct: Whether the answer is right.
        message: One line: what is right, or what differs and a hint.
    """

    correct: bool
    message: str

    def __bool__(self) -> bool:
        return self.correct

    def __repr__(self) -> str:
        return self.message


def _right(message: str) -> Feedback:
    return Feedback(True, f"Right: {message}")


def _wrong(message: str) -> Feedback:
    return Feedback(False, f"Not yet: {message}")


def unanswered(answer: Any) -> bool:
    """Whether an exercise's answer is still the ``...`` placeholder of a student copy."""
    return answer is ...


def _not_answered(hint: str) -> Feedback:
    """The feedback for an answer not written yet: no traceback, a hint instead."""
    return Feedback(
        False,
        "Not answered yet: replace the `...` in the cell above with your answer and run it, "
        f"then run this cell again. Hint: {hint}",
    )


def _tensor(answer: Any, name: str) -> torch.Tensor | Feedback:
    """The answer as a detached float CPU tensor, or the feedback that it is not one."""
    if isinstance(answer, torch.Tensor):
        return answer.detach().cpu().float()
    try:
        return torch.as_tensor(answer, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        return _wrong(f"`{name}` must be a tensor, got {type(answer).__name__}")


def _close(answer: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Element-wise closeness, with a tolerance relative to the expected values' scale."""
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    return torch.isclose(answer, expected, rtol=1e-4, atol=1e-5 * scale + 1e-12)


def _compare(answer: Any, expected: torch.Tensor, name: str) -> torch.Tensor | Feedback:
    """The answer as a tensor of the expected shape, or the feedback on its type or shape."""
    tensor = _tensor(answer, name)
    if isinstance(tensor, Feedback):
        return tensor
    if tensor.shape != expected.shape and tensor.squeeze().shape == expected.squeeze().shape:
        tensor = tensor.reshape(expected.shape)  # a batch dimension of 1 more or less is fine
    if tensor.shape != expected.shape:
        return _wrong(f"`{name}` has shape {tuple(tensor.shape)}, expected {tuple(expected.shape)}")
    return tensor


def _per_image(tensor: torch.Tensor) -> torch.Tensor:
    """Drop a leading batch dimension of 1: (1, C, h, w) -> (C, h, w)."""
    tensor = tensor.detach().cpu().float()
    return tensor[0] if tensor.dim() == 4 and tensor.shape[0] == 1 else tensor


def _label(explanation: camkit.Explanation) -> str:
    """The name of the first class explained for the first picture, or its index."""
    if explanation.labels is not None and explanation.labels[0][0] is not None:
        return str(explanation.labels[0][0])
    if explanation.targets is None:
        return "a custom score"
    return f"class {int(explanation.targets.flatten()[0])}"


@cache
def _lite0() -> camkit.LoadedModel:
    return camkit.load_model("efficientnet_lite0")


def _capture(
    model: nn.Module, x: torch.Tensor, layer: str, class_index: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The layer's activations for ``x``, and the gradients of one class score if asked."""
    with hooks.evaluation_mode(model), hooks.capture(model, [layer]) as captured:
        logits = hooks.logits_of(model(x))
        gradients = None
        if class_index is not None:
            gradients = captured.gradients(logits[0, class_index])[layer].detach()
    return captured.activations[layer].detach(), gradients


def check_coffee_explanation(explanation: Any) -> Feedback:
    """Lesson 00: coffee.png explained with Grad-CAM++ on EfficientNet-Lite0 at "_blocks.10"."""
    if unanswered(explanation):
        return _not_answered(
            "call camkit.explain with the model, the coffee photo, and the method and layer the "
            "exercise names"
        )
    if not isinstance(explanation, camkit.Explanation):
        return _wrong(f"pass the result of camkit.explain, got {type(explanation).__name__}")
    if "gradcam++" not in explanation.methods:
        return _wrong(f"methods are {explanation.methods}; pass methods=['gradcam++']")
    if "_blocks.10" not in explanation.layers:
        return _wrong(f"layers are {explanation.layers}; pass layers=['_blocks.10']")
    expected = camkit.explain(
        _lite0(), camkit.sample_image("coffee"), methods=["gradcam++"], layers=["_blocks.10"]
    )
    answer = explanation.maps[("_blocks.10", "gradcam++")]
    reference = expected.maps[("_blocks.10", "gradcam++")]
    if answer.shape != reference.shape or not torch.allclose(answer, reference, atol=1e-4):
        return _wrong(
            "the map differs from camkit's for coffee.png: explain camkit.sample_image('coffee') "
            "with the Lite0 model from camkit.load_model('efficientnet_lite0'), top class"
        )
    return _right(f"Grad-CAM++ at _blocks.10 for {_label(expected)!r}")


def check_explained_class(explanation: Any, class_name: str) -> Feedback:
    """Lesson 00: an explanation of the class ``class_name`` rather than the top class."""
    if unanswered(explanation):
        return _not_answered("camkit.explain explains the top class unless told otherwise")
    if not isinstance(explanation, camkit.Explanation):
        return _wrong(f"pass the result of camkit.explain, got {type(explanation).__name__}")
    explained = _label(explanation)
    if explained != class_name:
        return _wrong(f"you explained {explained!r}; pass target={class_name!r} to camkit.explain")
    return _right(f"the map shows the evidence for {class_name!r}")


def _box_share(heatmap: torch.Tensor, box: Any) -> float:
    """The fraction of a (H, W) heatmap's total inside ``box`` = (x0, y0, x1, y1), end excluded."""
    x0, y0, x1, y1 = (int(v) for v in box)
    total = float(heatmap.sum())
    return float(heatmap[y0:y1, x0:x1].sum()) / total if total > 0 else 0.0


def check_class_map(explanation: Any, class_name: str, box: Any, on_object: Any) -> Feedback:
    """Lesson 00: Lite0's Grad-CAM of the water-bird photo for ``class_name``, and a prediction.

    The prediction ``on_object`` says whether more than half of that map lies inside ``box``
    (x0, y0, x1, y1 in the model's 224 x 224 picture). The map itself is compared with camkit's,
    so explaining the top class, another photo or another model does not pass.
    """
    hint = (
        "think about what the last layer's channels respond to in this photo, and whether a "
        "runner-up class would use other channels in other places; then look at the `target` "
        "argument of camkit.explain"
    )
    if unanswered(explanation) or unanswered(on_object):
        return _not_answered(hint)
    if not isinstance(on_object, bool):
        return _wrong(f"the prediction must be True or False, got {on_object!r}")
    if not isinstance(explanation, camkit.Explanation):
        return _wrong(f"pass the result of camkit.explain, got {type(explanation).__name__}")
    explained = _label(explanation)
    if explained != class_name:
        return _wrong(
            f"you explained {explained!r}, not {class_name!r}: camkit.explain explains the top "
            "class unless told otherwise"
        )
    if "gradcam" not in explanation.methods:
        return _wrong(f"methods are {explanation.methods}; this exercise asks for Grad-CAM")
    reference = camkit.explain(
        _lite0(), camkit.sample_image("water-bird"), methods=["gradcam"], target=class_name
    )
    layer = reference.layers[0]
    if layer not in explanation.layers:
        return _wrong(f"layers are {explanation.layers}; keep the default layer ({layer!r})")
    answer = _per_image(explanation.maps[(layer, "gradcam")])
    expected = _per_image(reference.maps[(layer, "gradcam")])
    if answer.shape != expected.shape or not torch.allclose(answer, expected, atol=1e-4):
        return _wrong(
            f"this is not Lite0's Grad-CAM map for {class_name!r} on the water-bird photo: "
            "explain `image` with the model `lite0`"
        )
    share = _box_share(expected[0], box)
    x0, y0, x1, y1 = (int(v) for v in box)
    area = (x1 - x0) * (y1 - y0) / (expected.shape[-1] * expected.shape[-2])
    where = "inside" if share > 0.5 else "outside"
    if on_object != (share > 0.5):
        return _wrong(
            f"your map is right, your prediction is not: {share:.0%} of the {class_name!r} map "
            f"lies in the box (which covers {area:.0%} of the picture). Compare it with the "
            "spoonbill map: what do the two have in common?"
        )
    return _right(
        f"{share:.0%} of the {class_name!r} map lies {where} the bird's box ({area:.0%} of the "
        "picture): a runner-up class's map can sit on the same object as the top class's"
    )


def check_occlusion_prediction(
    loaded: camkit.LoadedModel, image: Any, box: Any, prediction: Any
) -> Feedback:
    """Lesson 00: predict whether the top class survives covering the box, or all but the box.

    ``prediction`` maps "bird covered" and "bird only" to True (still the top class) or False.
    Covered pixels get the model's mean colour, 0 after normalisation.
    """
    keys = ("bird covered", "bird only")
    if unanswered(prediction):
        return _not_answered(
            "the heatmap says where the evidence is strongest; ask whether the rest of the "
            "picture could carry the class on its own, and whether the box alone could"
        )
    if not isinstance(prediction, Mapping) or set(prediction) != set(keys):
        return _wrong(f"write a dict with the keys {list(keys)}, each True or False")
    if not all(isinstance(prediction[key], bool) for key in keys):
        return _wrong("each prediction must be True or False")
    x = loaded.preprocessing(image)[None]
    x0, y0, x1, y1 = (int(v) for v in box)
    covered = x.clone()
    covered[..., y0:y1, x0:x1] = 0
    only = torch.zeros_like(x)
    only[..., y0:y1, x0:x1] = x[..., y0:y1, x0:x1]
    with torch.no_grad(), hooks.evaluation_mode(loaded.model):
        probs = hooks.logits_of(loaded.model(torch.cat([x, covered, only]))).softmax(dim=1)
    top = int(probs[0].argmax())
    name = loaded.categories[top] if loaded.categories else f"class {top}"
    truth = {
        "bird covered": int(probs[1].argmax()) == top,
        "bird only": int(probs[2].argmax()) == top,
    }
    measured = (
        f"{name} {probs[0, top]:.1%} on the photo, {probs[1, top]:.1%} with the bird covered, "
        f"{probs[2, top]:.1%} with only the bird"
    )
    wrong = [key for key in keys if prediction[key] != truth[key]]
    if wrong:
        return _wrong(f"{measured}: your prediction for {wrong} did not hold")
    if truth["bird only"] and not truth["bird covered"]:
        return _right(f"{measured}: the model needs what is in the box, where the map is hot")
    return _right(f"{measured}: the picture outside the box carries the class too")


def check_activations(model: nn.Module, x: torch.Tensor, layer: str, activations: Any) -> Feedback:
    """Lesson 01: the output of ``layer`` for the input ``x``, taken with a forward hook."""
    if unanswered(activations):
        return _not_answered(
            "register a forward hook on the layer, run the model, keep what the hook receives, "
            "then remove the hook"
        )
    left = hooks.hook_count(model)
    if left:
        return _wrong(f"{left} hook(s) still on the model: call handle.remove() on yours")
    expected, _ = _capture(model, x, layer)
    answer = _compare(activations, expected, "my_activations")
    if isinstance(answer, Feedback):
        return Feedback(False, f"{answer.message}: did you hook model.{layer}?")
    if not _close(answer, expected).all():
        return _wrong(f"right shape, other values: keep {layer}'s output for the input `x`")
    return _right(f"{layer}'s output, shape {tuple(expected.shape)}; no hook left")


def check_gradients(
    model: nn.Module, x: torch.Tensor, layer: str, class_index: int, gradients: Any
) -> Feedback:
    """Lesson 01: d(score of ``class_index``)/d(output of ``layer``) for the input ``x``."""
    if unanswered(gradients):
        return _not_answered(
            "keep the layer's output during a forward pass, then differentiate the class's "
            "score with respect to it"
        )
    _, expected = _capture(model, x, layer, class_index)
    assert expected is not None
    answer = _compare(gradients, expected, "my_gradients")
    if isinstance(answer, Feedback):
        return answer
    if _close(answer, expected).all():
        return _right(f"the gradients of class {class_index} at {layer}")
    if _close(-answer, expected).all():
        return _wrong("the sign is flipped: take the gradient of the score, not of minus it")
    with torch.no_grad():
        top = int(hooks.logits_of(model(x))[0].argmax())
    if top != class_index:
        _, top_gradients = _capture(model, x, layer, top)
        if top_gradients is not None and _close(answer, top_gradients).all():
            return _wrong(
                f"these are the gradients of the top class ({top}); use logits[0, {class_index}]"
            )
    return _wrong(f"the gradients differ: take logits[0, {class_index}] of this forward pass")


def check_constant_gradient(
    model: nn.Module, x: torch.Tensor, layer: str, class_index: int, answer: Any
) -> Feedback:
    """Lesson 01: predict whether d(score)/d(layer) is the same at every position of a channel."""
    if unanswered(answer):
        return _not_answered(
            "list the steps between this layer and the average pooling, and ask of each one "
            "whether it treats every position of a channel the same way"
        )
    if not isinstance(answer, bool):
        return _wrong(f"answer True or False, got {answer!r}")
    _, gradients = _capture(model, x, layer, class_index)
    assert gradients is not None
    grads = _per_image(gradients)
    varying = ~(grads == grads[:, :1, :1]).all(dim=(1, 2))
    count, total = int(varying.sum()), grads.shape[0]
    truth = count == 0
    zeros = float((grads == 0).float().mean())
    measured = (
        f"at {layer}, {count} of {total} channels have a gradient that varies with position, "
        f"and {zeros:.0%} of the gradient values are exactly 0"
    )
    if answer != truth:
        return _wrong(
            f"{measured}. Which step after {layer} can pass a gradient at one "
            "position and block it at another?"
        )
    if truth:
        return _right(f"{measured}: every position counts the same")
    return _right(
        f"{measured}: the ReLU6 passes the gradient only where its input lies between 0 and 6, "
        "so positions differ"
    )


def check_changed_cells(model: nn.Module, x: torch.Tensor, layer: str, answer: Any) -> Feedback:
    """Lesson 01: predict how many cells of ``layer``'s map change when a 32 x 32 corner changes.

    The top-left 32 x 32 pixels of ``x`` are set to 0 (the model's mean colour); a cell changes
    when any of its channels moves by more than 1e-4.
    """
    choices = ("one", "some", "all")
    if unanswered(answer):
        return _not_answered(
            "the cells are 32 pixels apart; how far does each one see? Recall the receptive "
            "field measured in this lesson"
        )
    if answer not in choices:
        return _wrong(f"answer one of {choices}, got {answer!r}")
    painted = x.clone()
    painted[..., :32, :32] = 0
    before, _ = _capture(model, x, layer)
    after, _ = _capture(model, painted, layer)
    changed = ((after - before).abs() > 1e-4).any(dim=1)[0]
    count, total = int(changed.sum()), changed.numel()
    truth = "one" if count == 1 else "all" if count == total else "some"
    measured = f"{count} of the {total} cells of {layer} changed"
    if answer != truth:
        return _wrong(
            f"{measured}. How many pixels does the corner cell's value depend on, "
            "and the centre cell's?"
        )
    if truth == "one":
        return _right(f"{measured}: each cell sees only its own patch")
    return _right(f"{measured}: a cell sees far beyond its own 32 x 32 patch")


def check_channel_weights(gradients: torch.Tensor, weights: Any) -> Feedback:
    """Lesson 02: Grad-CAM's channel weights, the spatial mean of each channel's gradients."""
    if unanswered(weights):
        return _not_answered("step 1 of this lesson: one number per channel, from its gradients")
    grads = _per_image(gradients)
    expected = grads.mean(dim=(-2, -1))
    answer = _compare(weights, expected, "my_weights")
    if isinstance(answer, Feedback):
        return answer
    close = _close(answer, expected)
    if close.all():
        return _right(f"{expected.numel()} channel weights, the mean gradient of each channel")
    if _close(answer, grads.sum(dim=(-2, -1))).all():
        return _wrong("you summed the gradients; Grad-CAM averages them over the grid (mean)")
    wrong = int((~close).sum())
    return _wrong(
        f"your channel weights differ from the spatial mean of the gradients in {wrong} of "
        f"{expected.numel()} channels; average over the last two dimensions, dim=(1, 2)"
    )


def check_gradcam_map(activations: torch.Tensor, gradients: torch.Tensor, cam_map: Any) -> Feedback:
    """Lesson 02: Grad-CAM's raw map (h, w): ReLU of the weighted sum of the channels."""
    if unanswered(cam_map):
        return _not_answered("steps 1 to 3 of this lesson, on the tensors the exercise gives")
    acts, grads = _per_image(activations), _per_image(gradients)
    expected = cam.gradcam(cam.LayerTensors(acts[None], grads[None]))[0]
    answer = _compare(cam_map, expected, "my_map")
    if isinstance(answer, Feedback):
        if isinstance(cam_map, torch.Tensor) and tuple(cam_map.shape) == tuple(acts.shape):
            return _wrong("one map per channel: add the weighted channels up, .sum(dim=0)")
        return answer
    if _close(answer, expected).all():
        return _right("the Grad-CAM map, before upsampling")
    weighted_sum = (grads.mean(dim=(1, 2))[:, None, None] * acts).sum(dim=0)
    if _close(answer, weighted_sum).all():
        return _wrong("the map has negative values: apply the ReLU, torch.relu(...)")
    if float(answer.min()) < 0:
        return _wrong("a Grad-CAM map has no negative values: apply the ReLU last")
    return _wrong(
        "the map differs: weight each channel of the activations by its mean gradient, add "
        "them up, then the ReLU"
    )


def check_evidence_against(
    activations: torch.Tensor, gradients: torch.Tensor, against: Any
) -> Feedback:
    """Lesson 02: what Grad-CAM's ReLU removes, ReLU(-sum_k w_k A_k), as a positive map."""
    if unanswered(against):
        return _not_answered("look at what the ReLU of step 3 throws away")
    acts, grads = _per_image(activations), _per_image(gradients)
    weighted_sum = (grads.mean(dim=(1, 2))[:, None, None] * acts).sum(dim=0)
    expected = torch.relu(-weighted_sum)
    answer = _compare(against, expected, "my_against")
    if isinstance(answer, Feedback):
        return answer
    if _close(answer, expected).all():
        return _right("the evidence against the class, where the weighted sum is negative")
    if _close(answer, torch.relu(weighted_sum)).all():
        return _wrong("that is the evidence for the class; take the ReLU of minus the sum")
    if _close(answer, -expected).all() or float(answer.min()) < 0:
        return _wrong("the map should be positive: torch.relu(-weighted_sum)")
    return _wrong("the map differs: ReLU of minus the weighted sum of the channels")


def _gradcam_of_score(
    loaded: camkit.LoadedModel, image: Any, score: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM's raw map and heatmap of one image for a callable ``score`` of the logits."""
    explanation = camkit.explain(loaded, image, methods=["gradcam"], target=score)
    layer = explanation.layers[0]
    return (
        _per_image(explanation.raw[(layer, "gradcam")])[0],
        _per_image(explanation.maps[(layer, "gradcam")])[0],
    )


def check_logit_scaling(
    loaded: camkit.LoadedModel, image: Any, raw_factor: Any, heatmap_changes: Any
) -> Feedback:
    """Lesson 02: predict what multiplying the logits by 10 does to the raw map and the heatmap."""
    if unanswered(raw_factor) or unanswered(heatmap_changes):
        return _not_answered(
            "follow the factor through the four steps: the gradient, the channel weights, the "
            "weighted sum, the ReLU, then the min-max scaling"
        )
    factor = _number(raw_factor, "raw_factor")
    if isinstance(factor, Feedback):
        return factor
    if not isinstance(heatmap_changes, bool):
        return _wrong(f"`heatmap_changes` must be True or False, got {heatmap_changes!r}")
    x = loaded.preprocessing(image)[None]
    with torch.no_grad(), hooks.evaluation_mode(loaded.model):
        top = int(hooks.logits_of(loaded.model(x))[0].argmax())
    raw, heat = _gradcam_of_score(loaded, image, lambda logits: logits[:, top])
    raw10, heat10 = _gradcam_of_score(loaded, image, lambda logits: 10 * logits[:, top])
    measured_factor = float(raw10.max() / raw.max())
    changed = float((heat10 - heat).abs().max())
    moved = (
        "did not change (no pixel moved by 1e-4)"
        if changed <= 1e-4
        else f"changed by up to {changed:.2f}"
    )
    measured = f"the raw map was multiplied by {measured_factor:.2f}, and the heatmap {moved}"
    if abs(factor - measured_factor) > 0.01 * measured_factor:
        return _wrong(f"{measured}. Which of the four steps scale with the score, and which not?")
    if heatmap_changes != (changed > 1e-4):
        return _wrong(f"{measured}. What does (m - min) / (max - min) do to a map multiplied by k?")
    return _right(
        f"{measured}: every step up to the ReLU scales with the score, and min-max scaling "
        "cancels the factor, so the heatmap cannot show it"
    )


def check_negated_score(
    loaded: camkit.LoadedModel, image: Any, class_name: str, answer: Any
) -> Feedback:
    """Lesson 02: predict Grad-CAM's map for minus a class score ("same", "zero" or "against")."""
    choices = ("same", "zero", "against")
    if unanswered(answer):
        return _not_answered(
            "the gradient of -y is minus the gradient of y; follow the sign through the channel "
            "weights and the weighted sum to the ReLU"
        )
    if answer not in choices:
        return _wrong(f"answer one of {choices}, got {answer!r}")
    index = list(loaded.categories or []).index(class_name)
    plain, _ = _gradcam_of_score(loaded, image, lambda logits: logits[:, index])
    minus, _ = _gradcam_of_score(loaded, image, lambda logits: -logits[:, index])
    x = loaded.preprocessing(image)[None]
    layer = camkit.explain(loaded, image, methods=["gradcam"]).layers[0]
    activations, gradients = _capture(loaded.model, x, layer, index)
    assert gradients is not None
    acts, grads = _per_image(activations), _per_image(gradients)
    weighted_sum = (grads.mean(dim=(1, 2))[:, None, None] * acts).sum(dim=0)
    scale = float(weighted_sum.abs().max())
    if float(minus.abs().max()) <= 1e-6 * scale:
        truth = "zero"
    elif torch.allclose(minus, torch.relu(-weighted_sum), atol=1e-5 * scale):
        truth = "against"
    elif torch.allclose(minus, plain, atol=1e-5 * scale):
        truth = "same"
    else:
        truth = "none of these"
    cells = int((minus > 0).sum())
    measured = f"the map of -{class_name} is non-zero in {cells} of {minus.numel()} cells"
    if answer != truth:
        return _wrong(f"{measured}. Compare it with the maps of step 3 for {class_name!r}.")
    if truth != "against":
        return _right(measured)
    return _right(
        f"{measured}: minus the score flips every channel weight, so the ReLU keeps what it "
        "removed before, the evidence against the class"
    )


def _alpha(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++'s alpha, Eq. 19 of Chattopadhay et al. 2018, 0 where the denominator is 0."""
    squared = gradients**2
    denominator = 2 * squared + activations.sum(dim=(-2, -1), keepdim=True) * gradients**3
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator != 0, squared / safe, torch.zeros_like(denominator))


def check_alpha(activations: torch.Tensor, gradients: torch.Tensor, alpha: Any) -> Feedback:
    """Lesson 03: Grad-CAM++'s alpha coefficients (Eq. 19, the exponential-score form)."""
    if unanswered(alpha):
        return _not_answered("Eq. 19: G^2 over 2 G^2 plus G^3 times the channel's sum of A")
    acts, grads = _per_image(activations), _per_image(gradients)
    expected = _alpha(acts, grads)
    answer = _compare(alpha, expected, "my_alpha")
    if isinstance(answer, Feedback):
        return answer
    if torch.isnan(answer).any():
        return _wrong(
            f"{int(torch.isnan(answer).sum())} values are NaN: where the denominator is 0, "
            "alpha is 0 (torch.where or torch.nan_to_num)"
        )
    close = _close(answer, expected)
    if close.all():
        return _right("alpha = G^2 / (2 G^2 + sum_ab A_ab G^3), 0 where the denominator is 0")
    wrong = int((~close).sum())
    return _wrong(
        f"alpha differs in {wrong} of {expected.numel()} positions: the sum of A runs over "
        "each channel's grid only, dim=(1, 2) with keepdim=True"
    )


def check_gradcam_plus_plus_weights(
    activations: torch.Tensor, gradients: torch.Tensor, weights: Any
) -> Feedback:
    """Lesson 03: Grad-CAM++'s channel weights, sum_ij alpha_ij ReLU(G_ij)."""
    if unanswered(weights):
        return _not_answered("alpha times the positive part of the gradient, summed over the grid")
    acts, grads = _per_image(activations), _per_image(gradients)
    alpha = _alpha(acts, grads)
    expected = (alpha * torch.relu(grads)).sum(dim=(1, 2))
    answer = _compare(weights, expected, "my_weights")
    if isinstance(answer, Feedback):
        return answer
    close = _close(answer, expected)
    if close.all():
        return _right("the Grad-CAM++ weights, alpha times the positive gradients, summed")
    if _close(answer, (alpha * grads).sum(dim=(1, 2))).all():
        return _wrong("only positive gradients count: multiply alpha by torch.relu(G)")
    if _close(answer, (alpha * torch.relu(grads)).mean(dim=(1, 2))).all():
        return _wrong("Grad-CAM++ sums over the grid; you averaged")
    return _wrong(
        f"the weights differ in {int((~close).sum())} of {expected.numel()} channels: "
        "sum alpha * ReLU(G) over dim=(1, 2)"
    )


def _min_max(heatmap: torch.Tensor) -> torch.Tensor:
    """A map scaled to [0, 1] as the engine does (a constant map becomes zeros)."""
    low, high = heatmap.min(), heatmap.max()
    return (heatmap - low) / (high - low) if high > low else torch.zeros_like(heatmap)


def _amount(value: float, rounding: float = 1e-4) -> str:
    """A difference for a message: two digits, or "< rounding" (machine-dependent digits)."""
    return f"< {rounding:g}" if value < rounding else f"{value:.2g}"


def _plus_plus_raw(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """The raw (h, w) map of :func:`camkit.cam.gradcam_plus_plus` for (C, h, w) tensors."""
    return cam.gradcam_plus_plus(cam.LayerTensors(activations[None], gradients[None]))[0]


def check_where_alpha_is_smallest(
    activations: torch.Tensor, gradients: torch.Tensor, answer: Any
) -> Feedback:
    """Lesson 03: within a channel, is alpha smallest where G is largest or smallest (G > 0)?

    The answer is a prediction, "largest" or "smallest"; the checker measures it on every channel
    with a positive activation sum and at least two different positive gradients.
    """
    hint = "for G > 0, cancel G^2 in Eq. 19; how does what is left change as G grows?"
    if unanswered(answer):
        return _not_answered(hint)
    words = str(answer).lower()
    said = "largest" if "larg" in words else "smallest" if "small" in words else None
    if not isinstance(answer, str) or said is None:
        return _wrong("`my_prediction` must be the string 'largest' or 'smallest'")
    acts, grads = _per_image(activations), _per_image(gradients)
    alpha = _alpha(acts, grads)
    agree = total = 0
    for k in range(acts.shape[0]):
        positive = grads[k] > 0
        if acts[k].sum() <= 0 or grads[k][positive].unique().numel() < 2:
            continue
        total += 1
        at_largest_gradient = alpha[k][positive][grads[k][positive].argmax()]
        agree += int(bool(torch.isclose(at_largest_gradient, alpha[k][positive].min())))
    if total == 0:
        return _wrong("no channel here has two different positive gradients; use A15 and G15")
    truth = "largest" if agree > total / 2 else "smallest"
    measured = f"in {agree} of {total} channels the smallest alpha sits where G is largest"
    if said != truth:
        return _wrong(f"measured: {measured}. Hint: {hint}")
    return _right(f"{measured}: alpha = 1 / (2 + G sum A) falls as G grows, since sum A > 0")


def check_plus_plus_logit_scaling(
    activations: torch.Tensor, gradients: torch.Tensor, answer: Any, factor: float = 10.0
) -> Feedback:
    """Lesson 03: does multiplying the logit by ``factor`` change each method's normalised map?

    ``answer`` is a prediction ``{"gradcam": bool, "gradcam++": bool}`` (True: the map changes).
    The checker computes both maps with the gradients ``G`` and ``factor * G`` and calls a map
    changed when the two min-max scaled maps differ by more than 1e-3 anywhere.
    """
    hint = f"put {factor:g} G in place of G in each method's weights: which ones just scale?"
    if unanswered(answer):
        return _not_answered(hint)
    methods = {"gradcam": cam.gradcam, "gradcam++": cam.gradcam_plus_plus}
    if not isinstance(answer, Mapping) or set(answer) != set(methods):
        return _wrong(
            '`my_scaling_prediction` must be a dict {"gradcam": True/False, "gradcam++": ...}'
        )
    if not all(isinstance(value, bool) for value in answer.values()):
        return _wrong("each prediction is True (the map changes) or False (it does not)")
    acts, grads = _per_image(activations)[None], _per_image(gradients)[None]
    moved = {}
    for name, method in methods.items():
        before = _min_max(method(cam.LayerTensors(acts, grads))[0])
        after = _min_max(method(cam.LayerTensors(acts, factor * grads))[0])
        moved[name] = float((before - after).abs().max())
    measured = ", ".join(f"{name}'s map moves by {_amount(value)}" for name, value in moved.items())
    wrong = [name for name in methods if answer[name] != (moved[name] > 1e-3)]
    if wrong:
        return _wrong(f"{', '.join(wrong)}: measured, {measured}. Hint: {hint}")
    return _right(
        f"{measured}. Grad-CAM's weights all grow {factor:g} times, which min-max scaling "
        f"removes; Grad-CAM++'s alpha = 1 / (2 + {factor:g} G sum A) shrinks more where G sum A "
        "is large, so the channels' relative weights change"
    )


def check_plus_plus_limit_weights(
    activations: torch.Tensor, gradients: torch.Tensor, answer: Any
) -> Feedback:
    """Lesson 03: Grad-CAM++'s channel weights when the score is multiplied by a huge factor.

    At a layer whose gradient is one value ``g_k`` per channel, ``f`` times the score gives
    ``w_k = hw f g_k / (2 + f g_k sum A_k)``, which tends to ``hw / sum A_k`` where ``g_k > 0``
    and is 0 where ``g_k <= 0``. Weights proportional to that are right (a common positive
    factor does not change the normalised map); channels whose activations are all 0 are not
    compared (they add nothing to the map).
    """
    hint = "divide the numerator and the denominator of w_k by f, then let f grow"
    if unanswered(answer):
        return _not_answered(hint)
    acts, grads = _per_image(activations), _per_image(gradients)
    g = grads.flatten(1)[:, 0]
    if not torch.equal(grads, g[:, None, None].expand_as(grads)):
        return _wrong("use a layer whose gradient is one value per channel (`_swish`, A and G)")
    sums = acts.sum(dim=(1, 2))
    live = sums > 0
    expected = torch.where((g > 0) & live, 1 / torch.where(live, sums, 1), 0.0)
    tensor = _compare(answer, expected, "my_limit_weights")
    if isinstance(tensor, Feedback):
        return tensor
    if not torch.isfinite(tensor[live]).all():
        return _wrong("some weights of live channels are not finite; the limit is finite")
    if bool((tensor[live & (g <= 0)] != 0).any()):
        return _wrong("a channel with g_k <= 0 keeps weight 0 at every scale: ReLU(f g_k) = 0")
    top = float(tensor[live].abs().max())
    if top == 0:
        return _wrong(f"all your weights are 0. Hint: {hint}")
    scale = float(expected.max()) / top
    if not torch.allclose(tensor[live] * scale, expected[live], rtol=1e-3, atol=1e-6 * scale):
        return _wrong(f"the weights are not proportional to the limit. Hint: {hint}")
    limit = _min_max(torch.relu((expected[:, None, None] * acts).sum(dim=0)))
    gaps = {
        scale: float((_min_max(_plus_plus_raw(acts, scale * grads)) - limit).abs().max())
        for scale in (1.0, 1e8)
    }
    return _right(
        f"w_k -> hw / sum A_k where g_k > 0: only the gradient's sign is left. The heatmap of "
        f"the score itself differs from the limit's by up to {gaps[1.0]:.2f}; that of 10^8 "
        f"times the score by {_amount(gaps[1e8], 0.01)}"
    )


def check_dotted_name(model: nn.Module, tutorial_name: str, dotted_name: Any) -> Feedback:
    """Lesson 04: the dotted module name a pytorch-gradcam layer name stands for."""
    hint = "each part between dots must be the name of a child of the module before it"
    if unanswered(dotted_name):
        return _not_answered(hint)
    expected = layers.resolve_layer(model, tutorial_name)
    if not isinstance(dotted_name, str):
        return _wrong(f"`my_dotted_name` must be a string, got {type(dotted_name).__name__}")
    if dotted_name == expected:
        return _right(f"{tutorial_name!r} is model.get_submodule({expected!r})")
    if dotted_name == tutorial_name:
        return _wrong("that is the pytorch-gradcam name; PyTorch joins the parts with dots")
    if dotted_name.replace("_", ".") == expected.replace("_", "."):
        return _wrong("keep the underscores inside a child's name, e.g. 'expand3x3_activation'")
    if dotted_name not in dict(model.named_modules()):
        return _wrong(f"the model has no module {dotted_name!r}; {hint}")
    return _wrong(f"{dotted_name!r} is another module; {hint}")


def check_signed_layers(
    model: nn.Module, x: torch.Tensor, answer: Any, candidates: Any = None
) -> Feedback:
    """Lesson 04: for each layer, the prediction whether its output has negative values.

    Args:
        model: The network.
        x: Its input.
        answer: ``{layer name: True or False}``, True for a signed output.
        candidates: The layers the exercise asks about; when given, every one of them must be
            answered (a dict naming only some of them is not an answer).
    """
    hint = "think of the last operation each module applies: which of them can output x < 0?"
    if unanswered(answer):
        return _not_answered(hint)
    if not isinstance(answer, Mapping) or not answer:
        return _wrong("`my_signed` must be a dict {layer name: True or False}")
    names = list(answer)
    if candidates is not None and set(names) != set(candidates):
        missing = [name for name in candidates if name not in answer]
        extra = [name for name in names if name not in candidates]
        return _wrong(
            f"answer for exactly the layers asked: missing {missing or 'none'}, "
            f"not asked {extra or 'none'}"
        )
    if not all(isinstance(answer[name], bool) for name in names):
        return _wrong("each value is True (the output can be negative) or False")
    modules = dict(model.named_modules())
    unknown = [name for name in names if name not in modules]
    if unknown:
        return _wrong(f"the model has no module {', '.join(map(repr, unknown))}")
    with hooks.evaluation_mode(model), hooks.capture(model, names) as captured, torch.no_grad():
        model(x)
    signed = {name: bool(captured.activations[name].min() < 0) for name in names}
    wrong = [name for name in names if answer[name] != signed[name]]
    if wrong:
        return _wrong(f"{', '.join(wrong)}: look again. Hint: {hint}")
    which = ", ".join(name for name in names if signed[name]) or "none"
    return _right(f"{sum(signed.values())} of {len(names)} layers are signed: {which}")


def check_same_map_after_linear_layer(
    loaded: Any,
    image: Any,
    answer: Any,
    before: str = "_blocks.15",
    after: str = "_conv_head",
    methods: tuple[str, ...] = ("gradcam++", "xgradcam", "hirescam"),
) -> Feedback:
    """Lesson 04: which methods give the same map before and after a 1x1 convolution.

    ``answer`` is a prediction ``{method: True or False}`` for each of ``methods`` (True: the
    maps at ``before`` and ``after`` are the same). The checker explains ``image`` at both
    layers and calls two maps the same when their min-max scaled values differ by less than
    1e-4 everywhere (Grad-CAM's differ by rounding, below 1e-5, on Lite0).
    """
    hint = (
        "write the gradient at the first layer with the 1x1 convolution's matrix M (G = M^T G'), "
        "and follow it through each method's formula: which ones stay linear in G?"
    )
    if unanswered(answer):
        return _not_answered(hint)
    if not isinstance(answer, Mapping) or set(answer) != set(methods):
        return _wrong(f"`my_same` must be a dict with one True/False for each of {list(methods)}")
    if not all(isinstance(value, bool) for value in answer.values()):
        return _wrong("each prediction is True (the same map) or False (a different map)")
    result = camkit.explain(loaded, image, methods=list(methods), layers=[before, after])
    gaps = {
        method: float((result[(before, method)] - result[(after, method)]).abs().max())
        for method in methods
    }
    measured = ", ".join(f"{method} {_amount(gap)}" for method, gap in gaps.items())
    wrong = [method for method in methods if answer[method] != (gaps[method] < 1e-4)]
    if wrong:
        return _wrong(f"{', '.join(wrong)}: measured largest differences {measured}. Hint: {hint}")
    return _right(
        f"largest differences between {before} and {after}: {measured}. A method whose map is "
        "linear in G at each position and sums G A over channels carries M through unchanged; "
        "one that divides by channel sums or keeps only positive gradients does not"
    )


# --------------------------------------------------------------------------------------------
# Lessons 06-08
# --------------------------------------------------------------------------------------------


def _number(answer: Any, name: str) -> float | Feedback:
    """The answer as a Python float, or the feedback that it is not one number."""
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        return float(answer)
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return float(answer)
    return _wrong(f"`{name}` must be one number, got {type(answer).__name__}")


def _peak_of(heatmap: torch.Tensor) -> tuple[int, int]:
    """(x, y) of a map's maximum, the first in raster order on ties."""
    row, column = divmod(int(heatmap.argmax()), heatmap.shape[-1])
    return column, row


def _inside(point: tuple[int, int], box: Any) -> bool:
    x0, y0, x1, y1 = box
    return x0 <= point[0] <= x1 and y0 <= point[1] <= y1


def check_peak(heatmap: torch.Tensor, answer: Any) -> Feedback:
    """Lesson 06: the ``(x, y)`` pixel where the (H, W) map is largest."""
    if unanswered(answer):
        return _not_answered("find the largest value with argmax, then turn its index into (x, y)")
    heat = heatmap.detach().cpu().float().squeeze()
    height, width = heat.shape
    if isinstance(answer, int) and not isinstance(answer, bool):
        return _wrong(
            f"{answer} is a flat index; turn it into (x, y) with divmod(index, {width}), "
            "which gives (row, column) = (y, x)"
        )
    try:
        x, y = (int(value) for value in answer)
    except (TypeError, ValueError):
        return _wrong(f"`my_peak` must be a pair (x, y), got {answer!r}")
    if not (0 <= x < width and 0 <= y < height):
        return _wrong(f"({x}, {y}) lies outside the {width} x {height} map")
    if heat[y, x] == heat.max():
        return _right(f"the map peaks at (x, y) = ({x}, {y})")
    if 0 <= y < width and 0 <= x < height and heat[x, y] == heat.max():
        return _wrong("you gave (row, column); the answer is (x, y) = (column, row)")
    return _wrong(
        f"the map is {float(heat[y, x]):.3f} at ({x}, {y}) but its maximum is "
        f"{float(heat.max()):.3f}; find it with heatmap.argmax()"
    )


def _explorer_class(explorer: Any) -> str:
    categories = explorer.loaded.categories
    return categories[explorer.target] if categories else f"class {explorer.target}"


def check_explorer_peak(explorer: Any, box: Any, answer: Any, on_bird: Any) -> Feedback:
    """Lesson 05: where the explorer's ``_blocks.10`` Grad-CAM++ map peaks; is it on the bird."""
    if unanswered(answer) or unanswered(on_bird):
        return _not_answered(
            "set the view with explorer.show(layer=..., method=..., target=...), then turn "
            "explorer.current_map.argmax() into (x, y) and compare it with the box's corners"
        )
    asked = ("_blocks.10", "gradcam++", "spoonbill")
    shown = (explorer.layer, explorer.method, _explorer_class(explorer))
    if shown != asked:
        return _wrong(
            f"the explorer shows {shown[1]} at {shown[0]!r} for {shown[2]!r}; the exercise asks "
            f"for {asked[1]} at {asked[0]!r} for {asked[2]!r}"
        )
    peak = check_peak(explorer.current_map, answer)
    if not peak:
        return peak
    if not isinstance(on_bird, bool):
        return _wrong(f"`peak_on_bird` must be True or False, got {on_bird!r}")
    inside = _inside(_peak_of(explorer.current_map.squeeze()), box)
    if on_bird != inside:
        x0, y0, x1, y1 = box
        return _wrong(
            f"the box runs from x = {x0} to {x1} and y = {y0} to {y1}: is your (x, y) between?"
        )
    where = "inside" if inside else "outside"
    return _right(f"the map peaks at (x, y) = {tuple(answer)}, {where} the bird's box")


def _explorer_correlation(
    explorer: Any, layer: str, first: tuple[str, str], second: tuple[str, str]
) -> float:
    """Pearson correlation of two (method, class) maps of the explorer's picture at one layer."""
    loaded = explorer.loaded
    maps = []
    for method, class_name in (first, second):
        exp = camkit.explain(
            loaded,
            explorer.image,
            methods=[method],
            layers=[layer],
            target=loaded.categories.index(class_name),
        )
        maps.append(exp.maps[(layer, method)][0].flatten().double())
    return float(torch.corrcoef(torch.stack(maps))[0, 1])


def _correlations(
    answer: Any, layers_asked: tuple[str, ...], name: str
) -> dict[str, float] | Feedback:
    if not isinstance(answer, Mapping) or set(answer) != set(layers_asked):
        keys = ", ".join(repr(layer) for layer in layers_asked)
        return _wrong(f"`{name}` must be a dict with the keys {keys}, one correlation each")
    values = {}
    for layer in layers_asked:
        value = _number(answer[layer], f"{name}[{layer!r}]")
        if isinstance(value, Feedback):
            return value
        values[layer] = value
    return values


def check_methods_differ(explorer: Any, answer: Any, correlations: Any) -> Feedback:
    """Lesson 05: predict at which layer Grad-CAM and Grad-CAM++ differ more, then measure.

    ``answer`` is the layer predicted ("_swish" or "_blocks.10"), ``correlations`` the measured
    Pearson correlation of the two methods' spoonbill maps at each of the two layers.
    """
    asked = ("_swish", "_blocks.10")
    if unanswered(answer) or unanswered(correlations):
        return _not_answered(
            "write your prediction first; then show each method at each layer and correlate "
            "the two maps with torch.corrcoef"
        )
    if answer not in asked:
        return _wrong(f"`differ_more` must be '_swish' or '_blocks.10', got {answer!r}")
    values = _correlations(correlations, asked, "correlations")
    if isinstance(values, Feedback):
        return values
    actual = {
        layer: _explorer_correlation(
            explorer, layer, ("gradcam", "spoonbill"), ("gradcam++", "spoonbill")
        )
        for layer in asked
    }
    off = [layer for layer in asked if abs(values[layer] - actual[layer]) > 0.02]
    if off:
        return _wrong(
            f"your correlation at {', '.join(off)} differs from what the maps give; correlate the "
            "flattened Grad-CAM and Grad-CAM++ maps of 'spoonbill' at that layer"
        )
    measured = ", ".join(f"{layer} {value:.2f}" for layer, value in actual.items())
    if answer != min(asked, key=lambda layer: actual[layer]):
        return _wrong(
            f"your measurements are right ({measured}) and they disagree with your prediction: "
            "how does one channel's gradient vary over the positions of the last layer, which "
            "global average pooling feeds, and what does that leave Grad-CAM++'s alphas to do?"
        )
    return _right(f"the methods differ more at {answer} (correlations {measured})")


def check_pelican_band(explorer: Any, answer: Any, correlation: Any) -> Feedback:
    """Lesson 05: predict, then measure, how alike the head's Grad-CAM maps of two classes are.

    ``answer`` is "low" (< 0.3), "middle" or "high" (>= 0.7), ``correlation`` the measured Pearson
    correlation of the 'pelican' and 'spoonbill' Grad-CAM maps at ``_swish``.
    """
    if unanswered(answer) or unanswered(correlation):
        return _not_answered(
            "predict the band first; then show both classes at the head and correlate the maps"
        )
    if answer not in ("low", "middle", "high"):
        return _wrong(f"`pelican_band` must be 'low', 'middle' or 'high', got {answer!r}")
    value = _number(correlation, "pelican_correlation")
    if isinstance(value, Feedback):
        return value
    actual = _explorer_correlation(
        explorer, "_swish", ("gradcam", "spoonbill"), ("gradcam", "pelican")
    )
    if abs(value - actual) > 0.02:
        return _wrong(
            f"your correlation {value:.2f} differs from what the maps give; correlate the "
            "flattened Grad-CAM maps of 'spoonbill' and 'pelican' at '_swish'"
        )
    band = _band(actual, 0.3, 0.7)
    if answer != band:
        return _wrong(
            f"your measurement is right ({actual:.2f}) and it falls in another band than your "
            "prediction: which pixels of this photo would any wading-bird class draw on?"
        )
    return _right(f"correlation {actual:.2f}, in the {band!r} band")


def check_box_share(heatmap: torch.Tensor, box: Any, answer: Any) -> Feedback:
    """Lesson 06: the share of the map's total inside the box (energy-based pointing game)."""
    if unanswered(answer):
        return _not_answered(
            "sum the map inside the box (rows y, columns x) and divide by its total"
        )
    value = _number(answer, "my_share")
    if isinstance(value, Feedback):
        return value
    heat = heatmap.detach().cpu().double().squeeze()
    x0, y0, x1, y1 = (int(v) for v in box)
    total = float(heat.sum())
    expected = float(heat[y0 : y1 + 1, x0 : x1 + 1].sum()) / total
    if abs(value - expected) <= 1e-4:
        return _right(f"{expected:.1%} of the map lies in the box")
    if abs(value - float(heat[y0:y1, x0:x1].sum()) / total) <= 1e-4:
        return _wrong("the box includes its last row and column: slice up to y1 + 1 and x1 + 1")
    swapped = heat[x0 : x1 + 1, y0 : y1 + 1]
    if abs(value - float(swapped.sum()) / total) <= 1e-4:
        return _wrong("rows are y and columns are x: heatmap[y0:y1 + 1, x0:x1 + 1]")
    if value > 1:
        return _wrong("a share lies between 0 and 1: divide by the whole map's sum")
    return _wrong(f"{value:.4f} is not the share; sum the map inside the box, divide by its total")


def check_class_in_box(explanation: Any, box: Any, answer: Any) -> Feedback:
    """Lesson 06: the most probable of the explained classes whose map peaks in ``box``."""
    if unanswered(answer) or unanswered(explanation):
        return _not_answered(
            "explain top_k=10 classes, then walk down the ranks until a peak is in the box"
        )
    if not isinstance(explanation, camkit.Explanation) or explanation.labels is None:
        return _wrong("`top10` must be the result of camkit.explain(..., top_k=10)")
    layer, method = explanation.layers[0], explanation.methods[0]
    maps = explanation.maps[(layer, method)]
    if maps.dim() != 4 or maps.shape[1] < 10:
        return _wrong("explain the ten best classes: camkit.explain(lite0, image, top_k=10)")
    labels = explanation.labels[0]
    inside = [rank for rank in range(maps.shape[1]) if _inside(_peak_of(maps[0, rank]), box)]
    if not inside:
        return _wrong("no map of these classes peaks in the box; did you pass the right box?")
    expected = labels[inside[0]]
    if isinstance(answer, int) and not isinstance(answer, bool):
        return _wrong(f"give the class name, e.g. lite0.categories[{answer}]")
    if answer == expected:
        return _right(f"{expected!r} (rank {inside[0] + 1}) is the first class peaking in the box")
    if answer in labels:
        rank = labels.index(answer)
        point = _peak_of(maps[0, rank])
        if rank in inside:
            return _wrong(f"{answer!r} peaks in the box, but a more probable class does too")
        return _wrong(f"the map of {answer!r} peaks at {point}, outside the box")
    return _wrong(f"{answer!r} is not among the ten explained classes")


def check_box_prediction(
    image: Any, class_name: str, boxes: Mapping[str, Any], answer: Any
) -> Feedback:
    """Lesson 06: which box (a key of ``boxes``) the Grad-CAM map of ``class_name`` peaks in.

    The map is computed here, on EfficientNet-Lite0 at its auto layer, so the answer is judged
    against the class's own map, not against a map passed in.
    """
    if unanswered(answer):
        return _not_answered(
            "the map follows the gradient of the class's own score, however small its probability"
        )
    if answer not in boxes:
        return _wrong(f"answer with one of {sorted(boxes)}, got {answer!r}")
    heat = camkit.explain(_lite0(), image, methods=["gradcam"], target=class_name)["gradcam"][0]
    point = _peak_of(heat)
    inside = [name for name, box in boxes.items() if _inside(point, box)]
    if answer in inside and len(inside) == 1:
        return _right(f"the {class_name!r} map peaks at {point}, in the {answer} box only")
    if answer in inside:
        return _right(f"the {class_name!r} map peaks at {point}, in the boxes {inside}")
    return _wrong(
        f"the {class_name!r} map peaks elsewhere; a class's map looks for that class's evidence, "
        "even when the model gives it little probability"
    )


def _band(value: float, low: float = 0.5, high: float = 0.9) -> str:
    return "low" if value < low else "middle" if value < high else "high"


def check_class_correlations(image: Any, reference: str, answer: Any) -> Feedback:
    """Lesson 06: predicted correlation bands between the map of ``reference`` and others.

    Bands of the Spearman correlation: "low" < 0.3 <= "middle" < 0.7 <= "high". The maps are
    computed here on EfficientNet-Lite0 at its auto layer.
    """
    if unanswered(answer):
        return _not_answered(
            "ask yourself whether the model looks at different pixels for two dog breeds"
        )
    if not isinstance(answer, Mapping) or not answer:
        return _wrong('give a dict such as {"boxer": "high", "tabby": "low"}')
    bad = {name: band for name, band in answer.items() if band not in ("low", "middle", "high")}
    if bad:
        return _wrong(f"each prediction is 'low', 'middle' or 'high', got {bad}")
    names = [reference, *answer]
    exp = camkit.explain(_lite0(), [image] * len(names), methods=["gradcam"], target=names)
    maps = exp["gradcam"]
    rho = _spearman(maps[:1].expand(len(names) - 1, -1, -1), maps[1:])
    actual = {name: float(value) for name, value in zip(answer, rho, strict=True)}
    wrong = [name for name in answer if answer[name] != _band(actual[name], 0.3, 0.7)]
    measured = ", ".join(f"{name} {value:.2f}" for name, value in actual.items())
    if not wrong:
        return _right(f"correlations with {reference!r}: {measured}")
    return _wrong(
        f"{len(wrong)} of {len(answer)} bands differ ({', '.join(wrong)}); think about what the "
        "weights of two classes that look alike have in common, and of two that do not"
    )


def _spearman(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of each pair of maps (imported late: metrics loads scipy parts)."""
    from camkit.metrics import spearman

    return spearman(first, second)


def check_auc(fractions: torch.Tensor, scores: torch.Tensor, answer: Any) -> Feedback:
    """Lesson 07: the area under a curve by the trapezoid rule."""
    if unanswered(answer):
        return _not_answered("each step adds its width times the mean of its two heights")
    value = _number(answer, "my_auc")
    if isinstance(value, Feedback):
        return value
    xs, ys = fractions.detach().cpu().double(), scores.detach().cpu().double()
    expected = float(torch.trapezoid(ys, xs))
    if abs(value - expected) <= 1e-5:
        return _right(f"AUC = {expected:.4f}")
    widths = xs[1:] - xs[:-1]
    if abs(value - float((widths * ys[:-1]).sum())) <= 1e-5:
        return _wrong("that is the left rectangle rule; a trapezoid uses both ends: (y0 + y1) / 2")
    if abs(value - float(ys.mean())) <= 1e-5:
        return _wrong("the mean score ignores the step widths; multiply by the x differences")
    return _wrong(
        f"{value:.4f} differs from the trapezoid rule's {expected:.4f}: sum dx * (y0 + y1) / 2"
    )


def check_average_drop(original: torch.Tensor, masked: torch.Tensor, answer: Any) -> Feedback:
    """Lesson 07: Average Drop %, ``100 * mean(max(0, Y - O) / Y)``."""
    if unanswered(answer):
        return _not_answered(
            "a drop is relative to Y, an increase counts as no drop, and it is in %"
        )
    value = _number(answer, "my_drop")
    if isinstance(value, Feedback):
        return value
    y, o = original.detach().cpu().double(), masked.detach().cpu().double()
    expected = float(100 * (torch.clamp(y - o, min=0) / y).mean())
    if abs(value - expected) <= 1e-3:
        return _right(f"Average Drop = {expected:.2f} %")
    if abs(value - expected / 100) <= 1e-5:
        return _wrong("right as a fraction; Average Drop is in percent (times 100)")
    if abs(value - float(100 * ((y - o) / y).mean())) <= 1e-3:
        return _wrong("an increase is not a negative drop: clamp Y - O at 0 first")
    if abs(value - float(100 * (torch.clamp(y - o, min=0)).mean())) <= 1e-3:
        return _wrong("the drop is relative: divide Y - O by Y")
    return _wrong(f"{value:.2f} is not 100 * mean(max(0, Y - O) / Y)")


def check_first_step_below(
    steps: Any, correlations: torch.Tensor, answer: Any, threshold: float = 0.5
) -> Feedback:
    """Lesson 07: the first randomised block after which the correlation is below ``threshold``."""
    if unanswered(answer):
        return _not_answered("walk through `sanity.steps` in order and compare each correlation")
    names = list(steps)
    values = [float(v) for v in correlations]
    below = [name for name, value in zip(names, values, strict=True) if value < threshold]
    if not below:
        return _wrong(f"the correlation never falls below {threshold}; check the method's row")
    expected = below[0]
    if isinstance(answer, int) and not isinstance(answer, bool):
        return _wrong(f"give the block's name, e.g. steps[{answer}]")
    if answer == expected:
        step = names.index(expected) + 1
        return _right(f"after {expected!r}, step {step}: {values[step - 1]:.2f} < {threshold}")
    if answer not in names:
        return _wrong(f"{answer!r} is not one of the randomised blocks in `sanity.steps`")
    value = values[names.index(answer)]
    if value >= threshold:
        return _wrong(f"after {answer!r} the correlation is still {value:.2f}")
    return _wrong(f"below {threshold} after {answer!r}, yes, but already after an earlier block")


def check_survival_prediction(
    random_maps: torch.Tensor, activation_sums: torch.Tensor, answer: Any
) -> Feedback:
    """Lesson 07: the predicted band of Grad-CAM++'s likeness to the plain channel sum.

    The mean Spearman correlation between Grad-CAM++'s maps under random classifiers
    (D, B, H, W) and the plain channel sums (B, H, W). Bands: below 0.5, 0.5 to 0.9, 0.9 and
    above; the answer is one number.
    """
    if unanswered(answer):
        return _not_answered(
            "which channels get a positive weight from a random classifier, and what sign do "
            "the activations have?"
        )
    value = _number(answer, "my_guess")
    if isinstance(value, Feedback):
        return value
    maps = random_maps.detach().cpu().float()
    sums = activation_sums.detach().cpu().float().expand_as(maps)
    actual = float(
        _spearman(maps.reshape(-1, *maps.shape[-2:]), sums.reshape(-1, *sums.shape[-2:])).mean()
    )
    if _band(value) == _band(actual):
        return _right(f"the mean correlation is {actual:.2f}; you predicted {value:.2f}")
    return _wrong(
        f"your {value:.2f} is in another band than the measured value; think about a positive "
        "mix of hundreds of non-negative maps: whose pixels can it make large?"
    )


def check_eigencam_prediction(model: Any, images: torch.Tensor, answer: Any) -> Feedback:
    """Lesson 07: Eigen-CAM's predicted correlation after the classifier is randomised.

    The mean Spearman correlation of the maps before and after the sanity check's first step,
    within 0.05.
    """
    if unanswered(answer):
        return _not_answered("what does Eigen-CAM read from the model, and does `_fc` change it?")
    value = _number(answer, "my_eigencam")
    if isinstance(value, Feedback):
        return value
    from camkit.metrics import sanity_check

    result = sanity_check(model, images, ["eigencam"], steps=1)
    actual = float(result.correlations["eigencam"][0])
    if abs(value - actual) <= 0.05:
        return _right(
            f"after randomising {result.steps[0]!r} Eigen-CAM's correlation is {actual:.2f}: "
            f"{result.reasons['eigencam']}"
        )
    return _wrong(
        f"{value:.2f} is not it; Eigen-CAM uses only the activations of the explained layer: "
        "does randomising a layer after it change them?"
    )


def _direction(before: float, after: float, tolerance: float) -> str:
    return "same" if abs(after - before) <= tolerance else "higher" if after > before else "lower"


def check_squared_map_prediction(
    model: Any, images: torch.Tensor, maps: torch.Tensor, targets: Any, answer: Any
) -> Feedback:
    """Lesson 07: what squaring the maps does to their deletion AUC and their Average Drop.

    The answer is a dict ``{"deletion AUC": d, "Average Drop": a}`` with each of ``d`` and ``a``
    one of "lower", "same" or "higher". Both scores are computed here, for ``maps`` and for
    ``maps ** 2`` (a sharper map with the same order of pixels); "same" means within 0.005 of
    deletion AUC or 1 percentage point of Average Drop.
    """
    if unanswered(answer):
        return _not_answered(
            "which score reads only the order of the pixels, and which multiplies the picture "
            "by the map's values?"
        )
    keys = ("deletion AUC", "Average Drop")
    if not isinstance(answer, Mapping) or set(answer) != set(keys):
        return _wrong(f"give a dict with the keys {list(keys)}, each 'lower', 'same' or 'higher'")
    bad = {key: value for key, value in answer.items() if value not in ("lower", "same", "higher")}
    if bad:
        return _wrong(f"each prediction is 'lower', 'same' or 'higher', got {bad}")
    from camkit.metrics import average_drop, deletion

    heat = maps.detach()
    squared = heat**2
    # Small batches: faster on a CPU, same numbers.
    auc = [
        float(deletion(model, images, m, targets, batch_size=4).mean_auc) for m in (heat, squared)
    ]
    drop = [float(average_drop(model, images, m, targets).average_drop) for m in (heat, squared)]
    actual = {
        "deletion AUC": _direction(auc[0], auc[1], 0.005),
        "Average Drop": _direction(drop[0], drop[1], 1.0),
    }
    measured = (
        f"deletion AUC {auc[0]:.3f} -> {auc[1]:.3f}, "
        f"Average Drop {drop[0]:.1f} % -> {drop[1]:.1f} %"
    )
    if all(answer[key] == actual[key] for key in keys):
        return _right(f"squared maps: {measured}")
    hints = []
    if answer["deletion AUC"] != actual["deletion AUC"]:
        hints.append("deletion removes pixels in the map's order: does squaring change the order?")
    if answer["Average Drop"] != actual["Average Drop"]:
        hints.append(
            "Average Drop multiplies the picture by the map: what does squaring do to values "
            "between 0 and 1?"
        )
    return _wrong("; ".join(hints))


def check_ablation_weights(score: Any, ablated: torch.Tensor, answer: Any) -> Feedback:
    """Lesson 08: Ablation-CAM's channel weights ``(y - y_k) / y``."""
    if unanswered(answer):
        return _not_answered("the weight is the drop of the score, relative to the score")
    y = float(score)
    y_k = torch.as_tensor(ablated).detach().cpu().float()
    expected = (y - y_k) / y
    weights = _compare(answer, expected, "my_weights")
    if isinstance(weights, Feedback):
        return weights
    if _close(weights, expected).all():
        return _right(f"{expected.numel()} weights, the relative drop of the score")
    if _close(weights, -expected).all():
        return _wrong("the sign is flipped: a channel whose removal lowers the score counts for")
    if _close(weights, y - y_k).all():
        return _wrong("the drop is relative: divide by y")
    return _wrong("the weights differ: (y - y_ablated) / y, one per channel")


def check_layercam(activations: torch.Tensor, gradients: torch.Tensor, answer: Any) -> Feedback:
    """Lesson 08: LayerCAM's raw map ``ReLU(sum_k ReLU(G_k) * A_k)``, shape (h, w)."""
    if unanswered(answer):
        return _not_answered("each activation is weighted by the positive gradient at its place")
    acts, grads = _per_image(activations), _per_image(gradients)
    expected = cam.layercam(cam.LayerTensors(acts[None], grads[None]))[0]
    layer_map = _compare(answer, expected, "my_layercam")
    if isinstance(layer_map, Feedback):
        return layer_map
    if _close(layer_map, expected).all():
        return _right("the LayerCAM map: positive gradients weight each activation in place")
    if _close(layer_map, torch.relu((grads * acts).sum(dim=0))).all():
        return _wrong("only positive gradients count: torch.relu(G) before multiplying")
    if _close(layer_map, cam.gradcam(cam.LayerTensors(acts[None], grads[None]))[0]).all():
        return _wrong("that is Grad-CAM (one weight per channel); LayerCAM keeps G per position")
    return _wrong("the map differs: ReLU of the channel sum of ReLU(G) * A")


def check_tokens_to_grid(tokens: torch.Tensor, answer: Any) -> Feedback:
    """Lesson 08: (N, 1 + h*w, C) transformer tokens laid out as an (N, C, h, w) grid."""
    if unanswered(answer):
        return _not_answered("token 0 is the class token; the other tokens are patches, row by row")
    t = tokens.detach().cpu().float()
    side = int((t.shape[1] - 1) ** 0.5)
    expected = t[:, 1:].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)
    grid = _compare(answer, expected, "my_grid")
    if isinstance(grid, Feedback):
        return Feedback(False, f"{grid.message}: drop token 0, reshape, put channels second")
    if _close(grid, expected).all():
        return _right(f"{t.shape[1] - 1} patch tokens on a {side} x {side} grid, channels second")
    if _close(grid, t[:, 1:].reshape(expected.shape)).all():
        return _wrong(
            "a plain reshape to (N, C, 14, 14) mixes tokens and channels; reshape to "
            "(N, 14, 14, C) first, then .permute(0, 3, 1, 2)"
        )
    if _close(grid, t[:, :-1].reshape(t.shape[0], side, side, -1).permute(0, 3, 1, 2)).all():
        return _wrong("the class token is the first token, t[:, 0]; keep t[:, 1:]")
    return _wrong("the grid differs: t[:, 1:].reshape(N, 14, 14, C).permute(0, 3, 1, 2)")


def _choice(answer: Any, options: str, name: str) -> str | Feedback:
    """One option letter from an answer such as "b", " B ", "(b)", or the feedback on it."""
    if isinstance(answer, str):
        letter = answer.strip().strip("()").strip().lower()
        if len(letter) == 1 and letter in options:
            return letter
    return _wrong(f"`{name}` must be one of the letters {', '.join(repr(o) for o in options)}")


def check_ablation_prediction(
    score: Any,
    ablated: torch.Tensor,
    activations: torch.Tensor,
    gradients: torch.Tensor,
    channels: Any,
    answer: Any,
) -> Feedback:
    """Lesson 08: which rule gives Ablation-CAM's drops ``y - y_k`` at the last layer.

    The options: (a) ``w_k``, Grad-CAM's weight (the mean gradient of channel k); (b) ``w_k`` times
    the sum of ``A_k`` over the positions; (c) ``w_k`` times its mean; (d) no simple rule. The rule
    that holds is found from the numbers: the drops measured by ablation against each candidate.
    """
    if unanswered(answer):
        return _not_answered(
            "write the logit as what the layers after `_swish` do to its channels, then take one "
            "channel's term away"
        )
    letter = _choice(answer, "abcd", "my_rule")
    if isinstance(letter, Feedback):
        return letter
    y = float(score)
    drops = y - torch.as_tensor(ablated).detach().cpu().double()
    index = torch.as_tensor(channels).flatten().long().cpu()
    acts = _per_image(activations).double()[index]
    weights = _per_image(gradients).double()[index].mean(dim=(1, 2))
    candidates = {
        "a": weights,
        "b": weights * acts.sum(dim=(1, 2)),
        "c": weights * acts.mean(dim=(1, 2)),
    }
    scale = float(drops.abs().max()) or 1.0
    error = {key: float((value - drops).abs().max()) for key, value in candidates.items()}
    holds = [key for key, value in error.items() if value < 1e-3 * scale]
    truth = holds[0] if holds else "d"
    if letter == truth:
        if truth == "d":
            return _right("no candidate matches the measured drops")
        return _right(
            f"for all {len(drops)} channels the measured drop equals rule ({truth}) to within "
            f"{error[truth]:.1e}: after `_swish` the network is linear, so Ablation-CAM here is "
            "Grad-CAM with each channel's weight multiplied by its total activation"
        )
    if letter == "d":
        return _wrong(
            "look at what follows `_swish` in `lite0.model`: is anything after it non-linear?"
        )
    return _wrong(
        f"rule ({letter}) misses the measured drops by up to {error[letter]:.3g} (the drops are "
        f"{float(drops.abs().min()):.3g} to {float(drops.abs().max()):.3g}); write the average "
        "pooling as a sum over the 49 positions, then see what the gradient at one position is"
    )


def check_last_layer_layercam(
    activations: torch.Tensor, gradients: torch.Tensor, answer: Any
) -> Feedback:
    """Lesson 08: what LayerCAM becomes at a layer followed by global average pooling.

    The options: (a) the same map as Grad-CAM; (b) neither, since LayerCAM keeps a weight per
    position; (c) Grad-CAM with the negative channel weights set to 0 first. Decided from the maps
    computed on the given tensors.
    """
    if unanswered(answer):
        return _not_answered(
            "look at the gradient of one channel across its 7 x 7 positions: what does the "
            "average pooling that follows `_swish` do to it?"
        )
    letter = _choice(answer, "abc", "my_layercam_rule")
    if isinstance(letter, Feedback):
        return letter
    acts = _per_image(activations).double()
    grads = _per_image(gradients).double()
    layer_map = cam.layercam(cam.LayerTensors(acts[None], grads[None]))[0]
    weights = grads.mean(dim=(1, 2))
    candidates = {
        "a": torch.relu((weights[:, None, None] * acts).sum(dim=0)),
        "c": torch.relu((torch.relu(weights)[:, None, None] * acts).sum(dim=0)),
    }
    scale = float(layer_map.abs().max()) or 1.0
    error = {
        key: float((value - layer_map).abs().max()) / scale for key, value in candidates.items()
    }
    holds = [key for key, value in error.items() if value < 1e-4]
    truth = holds[0] if holds else "b"
    spread = float(grads.std(dim=(1, 2)).max())
    if letter == truth == "b":
        return _right(
            f"here the gradient of a channel varies over its positions (spread up to "
            f"{spread:.2g}), so LayerCAM is neither of the two Grad-CAM variants"
        )
    if letter == truth:
        return _right(
            f"the gradient of each channel is the same at every position here (largest spread "
            f"{spread:.1e}), so LayerCAM's per-position weight is one weight per channel, kept "
            f"only where positive; the maps agree to {error[truth]:.1e} of the peak"
        )
    hint = (
        "Print gradients[0, k].std() for a few channels k, then write LayerCAM's sum with that "
        "gradient and compare it term by term with Grad-CAM's"
    )
    if letter == "b":
        return _wrong(f"at this layer LayerCAM does equal one of the other two maps. {hint}")
    return _wrong(f"rule ({letter}) is off by {error[letter]:.0%} of the map's peak. {hint}")


def check_reshape_prediction(tokens: torch.Tensor, answer: Any) -> Feedback:
    """Lesson 08: which reshapes of ViT tokens give the patch grid (several may).

    The options, for tokens ``t`` of shape (N, 1 + 196, C): (a) ``t[:, 1:].reshape(N, C, 14, 14)``;
    (b) ``t[:, 1:].reshape(N, 14, 14, C).permute(0, 3, 1, 2)``; (c)
    ``t[:, 1:].transpose(1, 2).reshape(N, C, 14, 14)``. The reference puts patch token
    ``1 + 14 * row + column`` at ``(row, column)`` by indexing, with no reshape.
    """
    if unanswered(answer):
        return _not_answered(
            "a reshape never moves numbers in memory, it only regroups them in order; follow "
            "where the first channel of the second patch lands in each option"
        )
    if isinstance(answer, str):
        answer = answer.replace(",", " ").split() if len(answer.strip()) > 1 else [answer]
    try:
        letters = {str(item).strip().strip("()").lower() for item in answer}
    except TypeError:
        letters = set()
    if not letters or not letters <= {"a", "b", "c"}:
        return _wrong('`my_grid_options` must be a set of letters, e.g. {"a"} or {"a", "c"}')
    t = tokens.detach().cpu().float()
    batch, count, channels = t.shape
    side = round((count - 1) ** 0.5)
    where = 1 + torch.arange(side * side).reshape(side, side)  # token of (row, column)
    reference = t[:, where].permute(0, 3, 1, 2)  # (N, C, side, side), by indexing
    options = {
        "a": t[:, 1:].reshape(batch, channels, side, side),
        "b": t[:, 1:].reshape(batch, side, side, channels).permute(0, 3, 1, 2),
        "c": t[:, 1:].transpose(1, 2).reshape(batch, channels, side, side),
    }
    truth = {key for key, value in options.items() if torch.equal(value, reference)}
    if letters == truth:
        return _right(
            f"options {', '.join(sorted(truth))} put patch token 1 + {side} * row + column at "
            "(row, column) with its channels second; a plain reshape to (N, C, h, w) reads "
            "channels as positions"
        )
    # Say what kind of mistake, not which letter: naming it would hand over the answer.
    said = []
    if letters - truth:
        said.append("an option you chose scrambles the grid")
    if truth - letters:
        said.append("an option you left out gives the grid too")
    return _wrong(
        f"{' and '.join(said)}. Token 2's first channel is number {channels} in memory: where "
        "does each option put it?"
    )


# --------------------------------------------------------------------------------------------
# Lesson 09
# --------------------------------------------------------------------------------------------


def check_softmax_shrink(
    logit_weights: torch.Tensor, probability_weights: torch.Tensor, answer: Any
) -> Feedback:
    """Lesson 09: how many times smaller Grad-CAM's channel weights are for p than for the logit.

    The measured factor is ``|w_logit| / |w_probability|`` (vector norms over the channels); a
    prediction within a factor of two of it is right.
    """
    hint = (
        "write p = softmax(z)_c and differentiate it with respect to z_c; what does that "
        "derivative become when p is close to 1?"
    )
    if unanswered(answer):
        return _not_answered(hint)
    value = _number(answer, "my_factor")
    if isinstance(value, Feedback):
        return value
    if value <= 0:
        return _wrong("give how many times smaller the weights get: a positive number")
    logit = logit_weights.detach().cpu().double().flatten()
    probability = probability_weights.detach().cpu().double().flatten()
    factor = float(logit.norm() / probability.norm())
    if 0.5 <= value / factor <= 2:
        return _right(
            f"the weights shrink {factor:.0f} times: dp/dz_c = p (1 - p), and the other "
            "classes take away a little more; min-max scaling hides all of it"
        )
    if 0.5 <= value * factor <= 2:
        return _wrong("that is the ratio probability / logit; the question asks for its inverse")
    direction = "more" if value < factor else "less"
    return _wrong(f"the weights shrink {direction} than {value:g} times. Hint: {hint}")


#: Lesson 09's options for the raw Grad-CAM sum of a probability that float32 rounds to 1.
SATURATED_OPTIONS = {
    "a": "the logit's map, only smaller",
    "b": "zero everywhere",
    "c": "the logit's map upside down",
}


def check_saturated_softmax_map(
    logit_map: torch.Tensor, probability_map: torch.Tensor, answer: Any
) -> Feedback:
    """Lesson 09: what Grad-CAM's raw sum S becomes when the explained probability is 1.0.

    The options are :data:`SATURATED_OPTIONS`; the checker reads the answer off the two (h, w)
    maps before the ReLU: all zeros (b), correlation with the logit's map above 0.9 (a), below
    -0.5 (c).
    """
    hint = (
        "write dp_c/dA = p_c (dz_c/dA - sum_j p_j dz_j/dA); float32 stores p_c as exactly 1.0: "
        "which terms survive?"
    )
    if unanswered(answer):
        return _not_answered(hint)
    letter = str(answer).strip().strip("()").lower()
    if letter not in SATURATED_OPTIONS:
        return _wrong('`my_option` must be one letter: "a", "b" or "c"')
    logit = logit_map.detach().cpu().double().flatten()
    probability = probability_map.detach().cpu().double().flatten()
    truth = "b"
    if not bool((probability == 0).all()):
        correlation = float(torch.corrcoef(torch.stack([logit, probability]))[0, 1])
        if -0.5 <= correlation <= 0.9:
            return _wrong(f"these maps fit no option (correlation {correlation:.2f})")
        truth = "a" if correlation > 0.9 else "c"
    if letter == truth:
        why = {
            "a": "p_c is below 1, so the class's own term p_c (1 - p_c) dz_c/dA still leads",
            "b": "no term survives: the other classes' probabilities are zero too",
            "c": "the class's own term p_c (1 - p_c) is 0, and what is left is minus the other "
            "classes' evidence",
        }
        return _right(f"({truth}) {SATURATED_OPTIONS[truth]}: {why[truth]}")
    return _wrong(f"the map is not {SATURATED_OPTIONS[letter]}. Hint: {hint}")


def check_training_mode_prediction(
    model: nn.Module, x: torch.Tensor, layer: str, class_index: int, answer: Any
) -> Feedback:
    """Lesson 09: only the batch norms in training mode: two predictions about two runs.

    ``answer`` is ``{"same_map_twice": bool, "class_kept": bool}``: whether two runs on the same
    picture give the same Grad-CAM map, and whether ``class_index`` stays the top class. The
    checker runs a copy of ``model`` (the model itself is not touched) and reads both off it.
    """
    hint = (
        "training mode makes two changes, random ones (dropout, drop connect) and statistics; "
        "only one is left here: what does a batch norm compute from a batch of one picture, and "
        "what did the layers after it learn to receive?"
    )
    if unanswered(answer):
        return _not_answered(hint)
    keys = {"same_map_twice", "class_kept"}
    if not isinstance(answer, Mapping) or set(answer) != keys:
        return _wrong(f"`my_prediction` must be a dict with the keys {sorted(keys)}")
    if not all(isinstance(value, bool) for value in answer.values()):
        return _wrong("each prediction is True or False")
    import copy

    network = copy.deepcopy(model).eval()
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train()
    maps, tops = [], []
    for _ in range(2):
        with hooks.capture(network, [layer]) as captured:
            logits = hooks.logits_of(network(x))
            gradient = captured.gradients(logits[0, class_index])[layer].detach()
        activation = captured.activations[layer].detach()
        maps.append(cam.gradcam(cam.LayerTensors(activation, gradient))[0])
        tops.append(int(logits[0].argmax()))
    truth = {
        "same_map_twice": bool(torch.equal(maps[0], maps[1])),
        "class_kept": all(top == class_index for top in tops),
    }
    wrong = [key for key in sorted(keys) if answer[key] != truth[key]]
    if not wrong:
        return _right(
            f"same map twice: {truth['same_map_twice']}, class kept: {truth['class_kept']}. "
            "A batch norm in training mode uses the mean and variance of this one picture: "
            f"{'the same numbers each run' if truth['same_map_twice'] else 'they varied here'}"
            f", and {'close to' if truth['class_kept'] else 'not'} what the model learnt with"
        )
    return _wrong(f"{', '.join(wrong)} is not what happens. Hint: {hint}")
