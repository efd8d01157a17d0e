"""Ablation-CAM: each channel weighted by the score drop when it is zeroed at the layer.

The ablated layer outputs go into the model through a forward hook that replaces the layer's
output; no gradients, several ablated copies per forward, all-zero channels skipped (zeroing
them changes nothing). Speed: the model runs the image once up to the layer and the ablated
copies only after it ("shared prefix"), by handing the rest of the network a batch of copies;
the first call checks that this gives the scores of the plain way (the image repeated, each
copy ablated) and falls back to the plain way for models where it does not (a layer whose
output is mixed with earlier tensors of another batch size, for instance).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn

from camkit._errors import InputError
from camkit.cam import register_method
from camkit.engine import PerturbationContext
from camkit.hooks import evaluation_mode
from camkit.perturbation import Progress, Scorer, batch_size_of, selected_channels

# Floor of |y| in the denominator, so that a zero score gives finite weights.
_EPS = 1e-7


@contextmanager
def replacing_output(context: PerturbationContext, copies: torch.Tensor, call_index: int):
    """Hand the network the ablated ``copies`` (n, C, h, w) instead of the layer's output.

    Only at call ``call_index`` of the module (the call the engine captured). For a token layer
    the copies are written back into the raw layout through the engine's spatial view.
    """
    calls = 0
    view = context.view

    def hook(_module: nn.Module, _args: object, output: object) -> object:
        nonlocal calls
        calls += 1
        if calls - 1 != call_index:
            return None
        if not isinstance(output, torch.Tensor):
            raise InputError(
                f"ablationcam needs layer {context.layer!r} to output a tensor, got "
                f"{type(output).__name__}; pick another layer"
            )
        if view is not None:
            raw = output.expand(len(copies), *output.shape[1:])
            return view.from_spatial(copies.to(output.dtype), raw)
        if output.shape[1:] != copies.shape[1:]:
            raise InputError(
                f"ablationcam needs layer {context.layer!r} to output an (N, C, h, w) tensor, got "
                f"{tuple(output.shape)}; pick a convolutional layer"
            )
        return copies

    handle = context.module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _count_calls(module: nn.Module, run: Callable[[], object]) -> tuple[object, int]:
    calls = 0

    def hook(_module: nn.Module, _args: object, _output: object) -> None:
        nonlocal calls
        calls += 1

    handle = module.register_forward_hook(hook)
    try:
        output = run()
    finally:
        handle.remove()
    return output, calls


@register_method("ablationcam", perturbation=True)
def ablationcam(context: PerturbationContext) -> torch.Tensor:
    """Ablation-CAM: channel weights are the relative drop of the score when the channel is zeroed.

    Desai and Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
    Gradient-free Localization", WACV 2020,
    https://openaccess.thecvf.com/content_WACV_2020/html/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.html:
    ``w_k = (y - y_k) / y`` with ``y`` the target score (pre-softmax logit, or the callable
    ``target``'s score) and ``y_k`` the score with channel k of the layer set to zero;
    ``L = ReLU(sum_k w_k A_k)``.

    Departure: we divide by ``max(|y|, 1e-7)`` instead of ``y``. For ``y > 0`` this is the paper's
    formula; for a negative score, dividing by ``y`` would flip every weight, so the map would
    show the channels whose removal *raises* the score (pytorch-grad-cam's AblationCAM has this
    sign swap). With ``|y|`` a channel whose removal lowers the score always counts for the
    class, and since the map is min-max normalised afterwards, the positive scale changes nothing
    else. An all-zero channel has ``y_k = y`` exactly and contributes nothing: it is not run.
    """
    x = context.inputs
    activations = context.activations
    if activations.dim() != 4:  # pragma: no cover - the engine hands (N, C, h, w) views
        raise InputError(
            f"ablationcam needs an (N, C, h, w) output at layer {context.layer!r}, got "
            f"{tuple(activations.shape)}; pick a convolutional layer"
        )
    batch, channels, height, width = activations.shape
    active = activations.flatten(2).ne(0).any(dim=2)
    active &= selected_channels(activations, context.max_channels)
    scorer = Scorer(context)
    step = batch_size_of(context)
    model, module = context.model, context.module
    images = torch.arange(batch, device=x.device)
    work = [active[image].nonzero().squeeze(1) for image in range(batch)]
    chunks = sum(-(-len(channel_list) // step) for channel_list in work)
    progress = Progress(context.progress, chunks, f"ablationcam {context.layer}")
    try:
        # no_grad, not inference_mode: a custom `reshape` view is inverted with autograd.
        with evaluation_mode(model), torch.no_grad():
            # One plain forward: the base scores y in the same numerics as the ablated ones,
            # and the call whose output the engine captured (the layer's last).
            output, calls = context.options.call(
                lambda inputs: _count_calls(module, lambda: model(inputs)), x
            )
            base, _ = scorer(output, images)
            del output
            ablated = base[:, None, :].repeat(1, channels, 1)  # y_k = y for skipped channels
            shared_prefix: bool | None = None
            for image, channel_list in enumerate(work):
                for start in range(0, len(channel_list), step):
                    chosen = channel_list[start : start + step]
                    copies = activations[image : image + 1].repeat(len(chosen), 1, 1, 1)
                    copies[torch.arange(len(chosen), device=copies.device), chosen] = 0
                    if shared_prefix is None:
                        shared_prefix = _shared_prefix_agrees(context, scorer, image, copies, calls)
                    scores = None
                    if shared_prefix:
                        scores = _ablated_scores(
                            context, scorer, image, copies, calls, repeat=False
                        )
                    if scores is None:
                        scores = _ablated_scores(context, scorer, image, copies, calls, repeat=True)
                    assert scores is not None
                    ablated[image, chosen] = scores
                    progress.step()
    finally:
        progress.close()
    weights = (base[:, None, :] - ablated) / base.abs().clamp_min(_EPS)[:, None, :]
    maps = torch.einsum("bck,bchw->bkhw", weights, activations.float())
    k = int(base.shape[1])
    return torch.relu(maps).reshape(batch * k, height, width)


def _ablated_scores(
    context: PerturbationContext,
    scorer: Scorer,
    image: int,
    copies: torch.Tensor,
    calls: int,
    *,
    repeat: bool,
) -> torch.Tensor | None:
    """(n, K) scores of the ablated ``copies`` of one image.

    With ``repeat`` the image is repeated once per copy (the plain way); without, it runs once
    and the copies enter at the layer, which returns ``None`` when the network cannot take that.
    """
    x = context.inputs[image : image + 1]
    rows = torch.full((len(copies),), image, device=x.device)

    def run(inputs: torch.Tensor) -> object:
        with replacing_output(context, copies, calls - 1):
            return context.model(inputs)

    if repeat:
        return scorer(context.options.call(run, x.expand(len(copies), *x.shape[1:])), rows)[0]
    try:
        # A wrong number of output rows fails here (gather, or the callable's count check).
        return scorer(context.options.call(run, x, fallback=False), rows)[0]
    except (RuntimeError, InputError):
        return None


def _shared_prefix_agrees(
    context: PerturbationContext, scorer: Scorer, image: int, copies: torch.Tensor, calls: int
) -> bool:
    """Whether the shared-prefix run gives the plain run's scores on two ablated copies."""
    sample = copies[:2]
    fast = _ablated_scores(context, scorer, image, sample, calls, repeat=False)
    if fast is None:
        return False
    plain = _ablated_scores(context, scorer, image, sample, calls, repeat=True)
    assert plain is not None
    scale = max(1.0, float(plain.abs().max()))
    return bool(torch.allclose(fast, plain, rtol=1e-4, atol=1e-5 * scale))
