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
    if not isinstance(explanation, camkit.Explanation):
        return _wrong(f"pass the result of camkit.explain, got {type(explanation).__name__}")
    explained = _label(explanation)
    if explained != class_name:
        return _wrong(f"you explained {explained!r}; pass target={class_name!r} to camkit.explain")
    return _right(f"the map shows the evidence for {class_name!r}")


def check_activations(model: nn.Module, x: torch.Tensor, layer: str, activations: Any) -> Feedback:
    """Lesson 01: the output of ``layer`` for the input ``x``, taken with a forward hook."""
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


def check_channel_weights(gradients: torch.Tensor, weights: Any) -> Feedback:
    """Lesson 02: Grad-CAM's channel weights, the spatial mean of each channel's gradients."""
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


def _alpha(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++'s alpha, Eq. 19 of Chattopadhay et al. 2018, 0 where the denominator is 0."""
    squared = gradients**2
    denominator = 2 * squared + activations.sum(dim=(-2, -1), keepdim=True) * gradients**3
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator != 0, squared / safe, torch.zeros_like(denominator))


def check_alpha(activations: torch.Tensor, gradients: torch.Tensor, alpha: Any) -> Feedback:
    """Lesson 03: Grad-CAM++'s alpha coefficients (Eq. 19, the exponential-score form)."""
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


def check_dotted_name(model: nn.Module, tutorial_name: str, dotted_name: Any) -> Feedback:
    """Lesson 04: the dotted module name a pytorch-gradcam layer name stands for."""
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
        return _wrong(f"the model has no module {dotted_name!r}; try layers.resolve_layer")
    return _wrong(f"{dotted_name!r} is another module; try layers.resolve_layer")


def check_signed_layers(model: nn.Module, x: torch.Tensor, answer: Any) -> Feedback:
    """Lesson 04: for each layer named in ``answer``, whether its output has negative values."""
    if not isinstance(answer, Mapping) or not answer:
        return _wrong("`my_signed` must be a dict {layer name: True or False}")
    names = list(answer)
    with hooks.evaluation_mode(model), hooks.capture(model, names) as captured, torch.no_grad():
        model(x)
    wrong = [
        name for name in names if bool(answer[name]) != bool(captured.activations[name].min() < 0)
    ]
    if wrong:
        return _wrong(
            f"{', '.join(wrong)}: look again; a convolution's or a BatchNorm's output can be "
            "negative, a ReLU's or ReLU6's cannot"
        )
    return _right(f"{sum(bool(v) for v in answer.values())} of {len(names)} layers are signed")


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


def check_box_share(heatmap: torch.Tensor, box: Any, answer: Any) -> Feedback:
    """Lesson 06: the share of the map's total inside the box (energy-based pointing game)."""
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


def check_auc(fractions: torch.Tensor, scores: torch.Tensor, answer: Any) -> Feedback:
    """Lesson 07: the area under a curve by the trapezoid rule."""
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


def check_ablation_weights(score: Any, ablated: torch.Tensor, answer: Any) -> Feedback:
    """Lesson 08: Ablation-CAM's channel weights ``(y - y_k) / y``."""
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
