"""Gradient-free CAMs that run the model on perturbed inputs: the Score-CAM family.

Each method takes a :class:`~camkit.cam.PerturbationContext` and returns raw maps of
shape (B*K, h, w), rows in (image, class) order, after the final ReLU (the engine upsamples and
normalises). What makes them fast while exact:

- no autograd (``torch.inference_mode``), masked inputs batched ``batch_size`` at a time and
  built chunk by chunk, never all at once;
- channels whose normalised masks are identical are forwarded once and share the score: the
  low-resolution maps are min-max normalised, then deduplicated by exact equality (a mask is a
  function of its normalised low-resolution map, so equal rows give equal masks);
- a constant channel (all zero after a ReLU, or saturated) has the all-zero mask, whose masked
  input is the zero image for every image of the batch: one forward serves them all;
- one forward gives the scores of all K explained classes (``top_k``).

Ablation-CAM lives in :mod:`camkit.ablation`.

Gradient-free CAMs: Score-CAM, SS-CAM, IS-CAM, Ablation-CAM
-----------------------------------------------------------

These methods never take a gradient: they run the model again on perturbed inputs and weigh each
channel of the layer by what the perturbation does to the explained score. They are slower than
Grad-CAM (one forward per distinct channel instead of one backward), faithful where gradients are
noisy or saturated, and in camkit exact to their papers and as fast as the hardware allows.

```python
import camkit

model = camkit.load_model("efficientnet_lite0")
explanation = camkit.explain(model, "dog.png", methods=["scorecam", "ablationcam"])
explanation = camkit.explain(model, "dog.png", methods="scorecam", top_k=3, batch_size=64)
explanation = camkit.explain(model, "dog.png", methods="scorecam", max_channels=256)  # approx.
```

```
camkit explain dog.png --method scorecam --batch-size 64 --no-progress
camkit explain dog.png --method ablationcam --max-channels 256
```

Every option of `explain` works with them: several layers, `top_k` (all K classes come out of the
same masked forwards), a class name or index per image, a callable `target` (it is called on the
output of each batch of perturbed images and must score every row on its own, e.g.
`lambda out: out[:, 3]`), token layers of vision transformers (the maps are read through the same
spatial view as the gradient methods).

## Methods

Notation: `A_k` the k-th channel of the layer (h x w), `Up` bilinear upsampling to the input size
(`align_corners=False`), `s` min-max normalisation to [0, 1] (a constant map gives 0), `X` the
input, `f_c` the explained score: the target class's **pre-softmax logit**, or the callable
target's value. Every map is `L = ReLU(sum_k w_k A_k)`, then upsampled and normalised by the
engine like every other method.

| name | paper | channel weight `w_k` |
| --- | --- | --- |
| `scorecam` | Wang et al., *Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks*, CVPRW 2020, [arXiv:1910.01279](https://arxiv.org/abs/1910.01279), Algorithm 1 | `softmax_k(f_c(X * M_k))`, `M_k = s(Up(A_k))` |
| `sscam` | Wang, Naidu et al., *SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization*, 2020, [arXiv:2006.14255](https://arxiv.org/abs/2006.14255) | `softmax_k((1/N) sum_i f_c(X * (M_k + delta_i)))`, `delta_i ~ N(0, 2^2)`, N = 10 |
| `iscam` | Naidu et al., *IS-CAM: Integrated Score-CAM for axiomatic-based explanations*, 2020, [arXiv:2010.03023](https://arxiv.org/abs/2010.03023) | `softmax_k((1/N) sum_i f_c(X * c_i M_k))`, `c_i = sum_{j<=i} j/N`, N = 10 |
| `ablationcam` | Desai and Ramaswamy, *Ablation-CAM: Visual Explanations for Deep Convolutional Network via Gradient-free Localization*, WACV 2020 | `(y - y_k) / max(abs(y), 1e-7)`, `y_k` the score with channel k zeroed |

Choices and departures, each also in the function's docstring:

- **Which score.** Score-CAM's Algorithm 1 uses the logit `f_c` and a softmax over channels; the
  baseline term `f_c(X_b)` is the same for every channel and cancels in the softmax, so no
  baseline forward is run. (The authors' public code instead weights each channel by the class's softmax probability of the masked input; we follow the paper, as pytorch-grad-cam and torch-cam do: the benchmark's r = 1.000 with them.) SS-CAM and IS-CAM use the same score.
- **Constant channels.** `s` of a constant map is 0/0 in the paper; we use the all-zero mask, so the
  channel scores the all-zero input (the mean colour, for a mean-normalised model input).
- **SS-CAM noise.** The N noise fields are drawn from a fixed seed once per call and shared by all
  channels and images (common random numbers): the map is reproducible, channels are compared
  under the same noise, and identical masks still need one set of forwards.
- **IS-CAM steps.** The mask is accumulated (`M <- M + (i/N) M_k`), so step i uses `c_i M_k`
  with `c_i = sum_{j<=i} j/N` = 0.1, 0.3, ..., 5.5 for N = 10, applied as `X * c_i M_k` (no
  baseline). What this rests on: the paper's PDF text of Algorithm 1 could not be read from this
  project's machines; the accumulation, the `X * M` form and N = 10 match the IS-CAM notebook in
  the authors' repository (`ankitaghosh9/Variations-on-Score-CAM`, `Resnet18_trial_visualize.ipynb`,
  class `IS_CAM`) and torch-cam's `ISCAM`. Where that notebook differs from camkit: it scores each
  step with the class's softmax probability, averages the ten probabilities and uses the average as
  the channel weight directly (no softmax over channels), skips constant channels, and sums the
  upsampled activations before the ReLU. camkit keeps the Score-CAM paper's logit and channel
  softmax for the whole family (as torch-cam does), so its IS-CAM map can differ from the
  notebook's; we have not measured by how much.
- **Ablation-CAM with a negative score.** The paper divides by `y`. When the explained logit is
  negative, that flips the sign of every weight and the map shows the channels whose removal
  *raises* the score (pytorch-grad-cam's AblationCAM has this sign swap). We divide by
  `max(|y|, 1e-7)`: for `y > 0` it is the paper's formula; for `y <= 0` a channel whose removal
  lowers the score still counts *for* the class. Since the map is min-max normalised afterwards,
  the positive scale changes nothing else. `tests/test_perturbation.py` checks this on a model
  whose target logit is -8.

## Speed, while exact

- Masked inputs are built chunk by chunk, `batch_size` per forward (default 32 on CPU, 128 on
  CUDA), never all B x C at once, and run under `torch.inference_mode` (Ablation-CAM: `no_grad`).
- **Distinct masks only.** Each channel's low-resolution map is min-max normalised; channels with
  exactly equal normalised maps have equal masks (the mask is computed from the normalised map:
  `s(Up(s(A))) = s(Up(A))`), so they are forwarded once and share the score. A constant channel
  (all zero after a ReLU, or saturated at 6 after a ReLU6) has the zero mask, whose masked input is
  the zero image for *every* image of the batch: one forward in total. On the pretrained
  EfficientNet-Lite0's last layer, 27-60 % of the 1,280 channels are constant for a given image.
- **One forward, all classes.** With `top_k=K` each masked forward gives the K scores.
- **Channels-last input.** On the CPU the masked batches are handed to the model in channels-last
  memory layout (`(B, H, W, C)` in memory, same shape), where oneDNN's convolutions are faster:
  at 32 images per no-grad forward on 2 cores, ResNet-18 1.4x (151.4 against 110.6 ms per
  image), ResNet-50 1.5x (94.9 against 64.0 ms) and Lite0 1.5x (37.0 against 24.6 ms), from the
  NCHW and channels-last floors of `benchmarks/bench_perturbation.py` (outputs in
  [benchmarks/](benchmarks/)). Only the
  input's layout changes, never the model; a model that cannot take it (a `.view` that needs NCHW
  strides) is run again on the usual layout, once, and camkit keeps to it for the call.
  `channels_last=False` turns it off, `True` also uses it for the gradient pass (see the README's
  speed options).
- **Ablation-CAM** skips all-zero channels (zeroing them changes nothing, `y_k = y`) and, where the
  network allows it, runs the image once up to the layer and the ablated copies only after it (the
  hook hands the rest of the network a batch of copies). The first chunk checks this against the
  plain way (the image repeated, each copy ablated) and falls back to the plain way when the
  network cannot take it, e.g. EfficientNet-Lite0, whose head reshapes with the input's batch size,
  or a layer whose output is concatenated with an earlier tensor.
- A tqdm progress bar appears when the forwards of a call are estimated to take over a second and
  stderr is a terminal; `progress=False` (CLI `--no-progress`) turns it off, `progress=True` shows
  it off a terminal too.

Options of `explain` (and the CLI):

| option | CLI | meaning |
| --- | --- | --- |
| `batch_size=N` | `--batch-size N` | perturbed images per forward (memory vs. speed) |
| `max_channels=N` | `--max-channels N` | approximation: only each image's N channels of largest activation mass (sum over positions) are masked or ablated; the others get weight 0 (for the Score-CAM family the softmax runs over the N) |
| `progress=None/False/True` | `--progress/--no-progress` | progress bar when slow and on a terminal / never / also off a terminal |
| `channels_last=None/False/True` | - | channels-last input for the masked forwards on CPU (default) / never / also for the gradient pass |
| `amp=False/True/"bf16"/"fp16"` | - | run the forwards under `torch.autocast` (see the README's speed options for the measured tolerance) |

## Measured speed

`python benchmarks/bench_perturbation.py` (ResNet-50 at layer4 with random weights and the
pretrained Lite0 at its last layer; `--quick` swaps in ResNet-18; `--skip WORD` leaves out
runners, `--repeats N`), batch 1, one real image, its top class, every library on the same model,
input, target and layer, interleaved with the floors. The results, with the machine's load and
the reading of each goal, are in the README's speed section; the raw outputs are in
[benchmarks/](benchmarks/) (`bench_perturbation_*_cpu.txt`).

Two things to know when reading them:

- pytorch-grad-cam does not compute the same map on Lite0: the model calls its `_swish` module
  twice (after the stem and at the head), and pytorch-grad-cam keeps the first call's activation,
  so it explains the 32-channel stem instead of the last layer (33 rows, r = 0.37). camkit and
  torch-cam explain the last call. Its AblationCAM crashes there: it swaps the `_swish` module
  for its ablation layer, which Lite0 also calls after the stem, and leaves it swapped (the
  benchmark puts the module back).
- On random-weight ResNets almost every channel is distinct, so Score-CAM runs as many forwards
  as the peers; camkit's lead there comes from the channels-last input (less CPU time per
  forward), not from skipping work.

## `max_channels` fidelity

Command: `.venv/bin/python benchmarks/perturbation_fidelity.py --images 3 --channels 32 128 256`
(pretrained EfficientNet-Lite0, last layer `_swish`, each image's top class, three images spread
over `../shared/data/imagenet-sample`: tench, wood rabbit, mobile home; exact Score-CAM runs
700-ish forwards per image, so a larger sample did not fit the busy 2-core machine; rerun with
`--images 100` for the whole sample). `r` is the Pearson correlation between the `max_channels`
map and the exact map, both at 224 x 224 after upsampling and normalisation.

| max_channels | Pearson r, mean | r, min | seconds / image (median, busy machine) |
| --- | --- | --- | --- |
| exact (all 1,280) | 1 | 1 | 359.9 |
| 32 | 0.998 | 0.996 | 17.6 |
| 128 | 1.000 | 0.999 | 79.4 |
| 256 | 1.000 | 1.000 | 168.2 |

On this model the few channels with the most activation carry the map: `max_channels=32` is
20x faster and visually the same map (r >= 0.996). The approximation is opt-in because nothing
guarantees this on another model or layer; measure it there with the same script.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from camkit._errors import ArgumentTypeError, InputError
from camkit.cam import register_method
from camkit.engine import PerturbationContext
from camkit.hooks import evaluation_mode, logits_of

#: Perturbed inputs per forward pass when the caller does not choose.
DEFAULT_BATCH_SIZE = {"cpu": 32, "cuda": 128}
#: A call whose forwards are estimated to take longer than this shows a progress bar.
PROGRESS_AFTER_SECONDS = 1.0
#: SS-CAM's samples and noise level (the paper's N = 10, sigma = 2 on the [0, 1] mask).
SSCAM_SAMPLES = 10
SSCAM_SIGMA = 2.0
#: IS-CAM's integration steps (the paper's N = 10).
ISCAM_STEPS = 10


def batch_size_of(context: PerturbationContext) -> int:
    """The number of perturbed inputs per forward: the caller's, else a default by device."""
    if context.batch_size is not None:
        return context.batch_size
    return DEFAULT_BATCH_SIZE.get(context.inputs.device.type, 32)


def normalised_rows(activations: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each channel's low-resolution map: (B, C, h, w) -> (B, C, h*w) float32.

    A constant channel becomes all zeros (its mask is zero, as Score-CAM's ``s(.)`` gives 0/0).
    """
    rows = activations.detach().float().flatten(2)
    low = rows.amin(dim=2, keepdim=True)
    span = rows.amax(dim=2, keepdim=True) - low
    return torch.where(span > 0, (rows - low) / torch.where(span > 0, span, 1), 0.0)


def selected_channels(activations: torch.Tensor, max_channels: int | None) -> torch.Tensor:
    """(B, C) bool: every channel, or each image's ``max_channels`` largest by activation mass."""
    batch, channels = activations.shape[:2]
    if max_channels is None or max_channels >= channels:
        return torch.ones(batch, channels, dtype=torch.bool, device=activations.device)
    mass = activations.detach().float().sum(dim=(2, 3))
    chosen = torch.zeros(batch, channels, dtype=torch.bool, device=activations.device)
    return chosen.scatter_(1, mass.topk(max_channels, dim=1).indices, True)


def upsampled_masks(rows: torch.Tensor, low_size: tuple[int, int], size: tuple[int, int]):
    """Score-CAM masks ``s(Up(A_k))`` from normalised rows (n, h*w): (n, 1, H, W) in [0, 1].

    ``s(Up(s(A))) = s(Up(A))`` since bilinear upsampling commutes with the affine ``s``; starting
    from the normalised rows makes equal rows give bit-identical masks.
    """
    maps = F.interpolate(
        rows.reshape(-1, 1, *low_size), size=size, mode="bilinear", align_corners=False
    )
    low = maps.amin(dim=(2, 3), keepdim=True)
    span = maps.amax(dim=(2, 3), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1), 0.0)


class Scorer:
    """Reads the explained scores of a batch of perturbed inputs from the model output."""

    def __init__(self, context: PerturbationContext) -> None:
        self.function = context.target_function
        self.indices = (
            None
            if context.target_indices is None
            else context.target_indices.to(context.inputs.device)
        )
        self.batch = int(context.inputs.shape[0])

    def __call__(
        self, output: object, images: torch.Tensor, shared_row: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores of n perturbed inputs, row i explained for image ``images[i]``.

        Args:
            output: The model output for the n inputs.
            images: (n,) the image each row belongs to.
            shared_row: A row that stands for every image of the batch (the zero image).

        Returns:
            (n, K) scores, and (B, K) scores of ``shared_row`` for each image (or ``None``).
        """
        if self.indices is None:
            custom = self._custom(output, len(images))[:, None]
            shared = None if shared_row is None else custom[shared_row].expand(self.batch, 1)
            return custom, shared
        logits = logits_of(output).float()
        scores = logits.gather(1, self.indices[images])
        shared = None if shared_row is None else logits[shared_row][self.indices]
        return scores, shared

    def _custom(self, output: object, rows: int) -> torch.Tensor:
        assert self.function is not None
        score = self.function(output)
        if not isinstance(score, torch.Tensor):
            raise ArgumentTypeError(
                f"`target` callable returned a {type(score).__name__}; return a tensor with one "
                "score per row of the model output"
            )
        if score.numel() != rows:
            raise InputError(
                f"`target` callable returned {score.numel()} scores for {rows} perturbed inputs; "
                "perturbation methods call it on batches of masked images, so it must score each "
                "row of the output on its own"
            )
        return score.float().reshape(-1)


class Progress:
    """A tqdm bar that appears once the work is estimated to take over a second.

    ``setting`` ``None``: only when stderr is a terminal; ``True``: always (still only when slow);
    ``False``: never.
    """

    def __init__(self, setting: bool | None, total: int, description: str) -> None:
        self.setting = setting
        self.total = total
        self.description = description
        self.done = 0
        self.bar: Any = None
        self.start = time.perf_counter()

    def step(self) -> None:
        """Count one finished forward pass."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            return
        if self.setting is False or self.done >= self.total:
            return
        elapsed = time.perf_counter() - self.start
        estimate = elapsed / self.done * self.total
        wanted = self.setting is True or sys.stderr.isatty()
        if wanted and estimate > PROGRESS_AFTER_SECONDS:
            # tqdm.auto draws a widget bar in Jupyter and text elsewhere; imported on first use.
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=self.done,
                desc=self.description,
                unit="batch",
                leave=False,
                file=sys.stderr,
            )

    def close(self) -> None:
        """Remove the bar, if one was shown."""
        if self.bar is not None:
            self.bar.close()


@dataclass(frozen=True)
class Variants:
    """How each mask is applied: ``input * (scale_v * mask + noise_v)``, scores averaged over v.

    Attributes:
        scales: (V,) multipliers of the mask.
        noise: (V, 1, H, W) added to the mask, or ``None``.
    """

    scales: torch.Tensor
    noise: torch.Tensor | None = None


def distinct_masks(context: PerturbationContext) -> tuple[int, int]:
    """(distinct non-constant masks over the batch, 1 if some channel is constant else 0).

    The number of forwards plain Score-CAM needs, for benchmarks and reports.
    """
    rows = normalised_rows(context.activations)
    chosen = selected_channels(context.activations, context.max_channels)
    distinct, constant = 0, 0
    for image in range(rows.shape[0]):
        unique = torch.unique(rows[image][chosen[image]], dim=0)
        zero = (unique == 0).all(dim=1)
        distinct += int((~zero).sum())
        constant = max(constant, int(zero.any()))
    return distinct, constant


def score_cam_family(context: PerturbationContext, variants: Variants, name: str) -> torch.Tensor:
    """Channel scores from masked forwards, softmax over channels, ReLU of the weighted sum.

    Returns:
        (B*K, h, w) raw maps, rows in (image, class) order.
    """
    x = context.inputs
    activations = context.activations
    if activations.dim() != 4:
        raise InputError(
            f"{name} needs an (N, C, h, w) layer output, got {tuple(activations.shape)}; "
            "pick a convolutional layer"
        )
    batch, channels, height, width = activations.shape
    device = x.device
    rows = normalised_rows(activations)
    chosen = selected_channels(activations, context.max_channels)
    # The zero mask gives the zero image whatever the scale: one forward for every image.
    zero_shortcut = variants.noise is None
    unique_rows, owners, inverse = [], [], torch.full((batch, channels), -1, dtype=torch.long)
    is_zero = torch.zeros(batch, channels, dtype=torch.bool)
    offset = 0
    for image in range(batch):
        channel_index = chosen[image].nonzero().squeeze(1).cpu()
        unique, where = torch.unique(rows[image][chosen[image]], dim=0, return_inverse=True)
        where = where.cpu()
        if zero_shortcut:
            zero = (unique == 0).all(dim=1).cpu()
            is_zero[image, channel_index] = zero[where]
            # Renumber the non-zero masks 0..U-1; zero-mask channels get -1.
            new_index = torch.cumsum(~zero, 0) - 1
            where = torch.where(zero[where], -1 - offset, new_index[where])
            unique = unique[~zero.to(unique.device)]
        inverse[image, channel_index] = where + offset  # zero-mask channels: -1
        unique_rows.append(unique)
        owners.append(torch.full((len(unique),), image, dtype=torch.long))
        offset += len(unique)
    all_rows = torch.cat(unique_rows)
    owner = torch.cat(owners)
    count = len(all_rows)
    n_variants = len(variants.scales)
    job_mask = torch.arange(count).repeat_interleave(n_variants)
    job_variant = torch.arange(n_variants).repeat(count)
    needs_zero = bool(is_zero.any())
    if needs_zero:  # the zero image: job -1, first in line
        job_mask = torch.cat([torch.tensor([-1]), job_mask])
        job_variant = torch.cat([torch.tensor([0]), job_variant])
    job_image = owner[job_mask.clamp_min(0)] if count else torch.zeros_like(job_mask)
    jobs = len(job_mask)

    scorer = Scorer(context)
    k = int(context.scores.shape[1])
    job_scores = torch.zeros(jobs, k, device=device)
    zero_scores = torch.zeros(batch, k, device=device)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    scales = variants.scales.to(device=device, dtype=torch.float32)
    noise = None if variants.noise is None else variants.noise.to(device, torch.float32)
    rows_on_device = all_rows.to(device)
    step = batch_size_of(context)
    progress = Progress(context.progress, -(-jobs // step), f"{name} {context.layer}")
    try:
        with evaluation_mode(context.model), torch.inference_mode():
            for start in range(0, jobs, step):
                stop = min(start + step, jobs)
                mask_index = job_mask[start:stop].to(device)
                variant = job_variant[start:stop].to(device)
                chunk_images = job_image[start:stop].to(device)
                if count:
                    low = rows_on_device[mask_index.clamp_min(0)]
                    low = torch.where((mask_index >= 0)[:, None], low, 0.0)
                else:  # every channel constant: only the zero image
                    low = torch.zeros(stop - start, height * width, device=device)
                masks = upsampled_masks(low, (height, width), size)
                masks = masks * scales[variant].view(-1, 1, 1, 1)
                if noise is not None:
                    masks = masks + noise[variant]
                output = context.options.call(context.model, x[chunk_images] * masks.to(x.dtype))
                shared_row = 0 if start == 0 and needs_zero else None
                scores, shared = scorer(output, chunk_images, shared_row)
                job_scores[start:stop] = scores
                if shared is not None:
                    zero_scores = shared.clone()
                del output
                progress.step()
    finally:
        progress.close()

    first_real = 1 if needs_zero else 0
    mask_scores = job_scores[first_real:].reshape(count, n_variants, k).mean(dim=1)
    inverse = inverse.to(device)
    channel_scores = mask_scores[inverse.clamp_min(0)] if count else None
    zero_per_channel = zero_scores[:, None, :].expand(batch, channels, k)
    if channel_scores is None:
        channel_scores = zero_per_channel
    channel_scores = torch.where(is_zero.to(device)[..., None], zero_per_channel, channel_scores)
    # Channels left out by max_channels take no part in the softmax.
    channel_scores = torch.where(chosen.to(device)[..., None], channel_scores, -torch.inf)
    weights = torch.softmax(channel_scores, dim=1)  # (B, C, K)
    maps = torch.einsum("bck,bchw->bkhw", weights, activations.float())
    return torch.relu(maps).reshape(batch * k, height, width)


@register_method("scorecam", perturbation=True)
def scorecam(context: PerturbationContext) -> torch.Tensor:
    """Score-CAM: each channel weighted by the score of the input masked by that channel.

    Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
    Networks", CVPR Workshops 2020, https://arxiv.org/abs/1910.01279, Algorithm 1:
    ``M_k = s(Up(A_k))`` (bilinear upsampling to the input size, then min-max to [0, 1]),
    ``S_k = f_c(X * M_k) - f_c(X_b)``, ``w = softmax_k(S_k)``, ``L = ReLU(sum_k w_k A_k)``.

    The score ``f_c`` is the pre-softmax logit of the target class with a softmax over channels,
    as in Algorithm 1 (the authors' public code instead weights each channel by the class's
    softmax probability of the masked input; we follow the paper, as pytorch-grad-cam and
    torch-cam do, whose maps ours match). The baseline term ``f_c(X_b)`` is the
    same for every channel, so it cancels in the softmax and no baseline forward is needed. A
    constant channel has the all-zero mask (``s`` of a constant is 0 here, where the paper's
    formula is 0/0): it scores the zero image. With a callable ``target``, ``f_c`` is its score.
    """
    return score_cam_family(context, Variants(torch.ones(1)), "scorecam")


@register_method("sscam", perturbation=True)
def sscam(context: PerturbationContext) -> torch.Tensor:
    """SS-CAM: Score-CAM with each channel's score averaged over noisy copies of its mask.

    Wang, Naidu et al., "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization",
    2020, https://arxiv.org/abs/2006.14255, smoothing on the mask:
    ``S_k = (1/N) sum_i f_c(X * (M_k + delta_i))``, ``delta_i ~ N(0, sigma^2)`` per pixel,
    ``w = softmax_k(S_k)``, ``L = ReLU(sum_k w_k A_k)``, with the paper's N = 10, sigma = 2.

    Departure: the N noise fields are drawn once per call from a fixed seed and shared by all
    channels and images (common random numbers), so that the map is reproducible, channels are
    compared under the same noise, and identical masks still need one set of forwards.
    """
    generator = torch.Generator().manual_seed(0)
    size = tuple(int(v) for v in context.inputs.shape[-2:])
    noise = torch.randn(SSCAM_SAMPLES, 1, *size, generator=generator) * SSCAM_SIGMA
    return score_cam_family(context, Variants(torch.ones(SSCAM_SAMPLES), noise), "sscam")


@register_method("iscam", perturbation=True)
def iscam(context: PerturbationContext) -> torch.Tensor:
    """IS-CAM: Score-CAM with each channel's score integrated over growing copies of its mask.

    Naidu et al., "IS-CAM: Integrated Score-CAM for axiomatic-based explanations", 2020,
    https://arxiv.org/abs/2010.03023, Algorithm 1: the mask is accumulated step by step,
    ``M_k^(i) = M_k^(i-1) + (i/N) M_k``, so ``M_k^(i) = c_i M_k`` with ``c_i = sum_{j<=i} j/N``;
    ``S_k = (1/N) sum_i f_c(X * M_k^(i))``, ``w = softmax_k(S_k)``, ``L = ReLU(sum_k w_k A_k)``,
    with N = 10. The score is the target logit, as for :func:`scorecam`.
    """
    steps = torch.arange(1, ISCAM_STEPS + 1, dtype=torch.float32) / ISCAM_STEPS
    return score_cam_family(context, Variants(torch.cumsum(steps, 0)), "iscam")
