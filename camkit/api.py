"""``camkit.explain``: the one call most users make.

It checks the arguments and prepares the batch (:func:`camkit.engine.prepare`), then takes the
plain one-pass path (:meth:`camkit.engine.Request.run`), or, when smoothing or a method with
passes of its own (guided, ``smoothgradcam++``) is asked, the smoothing path
(:func:`camkit.smoothing.explain_extended`), which calls the same one-pass path on its copies.

Reliability
-----------

camkit is meant to run unattended: in loops over datasets, inside training loops, in notebooks
left open for days and in web services. This page says what it promises, how each promise is
tested, and what it answers to every bad input we tried.

## The model is left exactly as found

However a call ends (success, an exception in the model's forward, an exception in a custom
`target` callable, an unknown layer), and whether or not it runs under `torch.no_grad()`,
afterwards:

- no camkit hook is left on any module, and the user's own hooks are still there and still run;
- every module's `training` flag is what it was (camkit runs in eval mode and restores each
  flag, including mixed train/eval models);
- every parameter's `requires_grad` and `.grad` are unchanged (camkit takes gradients with
  `torch.autograd.grad`, never `.backward()`), so is the `state_dict` (batch-norm running
  statistics included), and no module is added or replaced;
- the caller's grad mode is unchanged; `explain` works inside `torch.no_grad()` and gives the
  same maps there.

`tests/test_hardening.py::test_model_state_is_unchanged_however_the_call_ends` checks all of this
from one table: 5 kinds of call (Grad-CAM, Eigen-CAM, Score-CAM, guided Grad-CAM, SmoothGrad
noise on two methods) x 2 models (a small CNN, a tiny vision transformer with a class token)
x 4 ways to end x grad enabled / `no_grad`, 80 cases, each on a model in mixed train/eval mode
with an existing `.grad`, a frozen parameter and a user hook.

## Threads

Calls that share one model object are serialised: `explain` and `list_layers` hold a per-model
re-entrant lock (kept in a `WeakKeyDictionary`, so it goes away with the model) for the whole
call. Without it two calls interleaved on one model would read each other's activations through
the hooks they put on the same modules, and one would restore the `training` flags while the
other still runs. So:

- two threads explaining different images with the same model get exactly the maps they would
  get one after the other (`test_two_threads_on_one_model_get_the_sequential_maps` checks this
  bit for bit, and that no two forwards ever overlapped);
- `test_without_the_lock_one_call_reads_the_others_activations` removes the lock and shows the
  leak it prevents;
- calls on different model objects run in parallel (`test_different_model_objects_run_in_parallel`).
  For parallel explanations in a service, give each worker thread its own copy
  (`copy.deepcopy(model)`), or batch the images into one call, which is faster anyway.

Using the same model object for training in another thread while camkit explains it is not
protected: camkit cannot lock the user's own forward passes.

## Determinism

On the CPU the same input gives bit-identical maps and raw maps across calls, for every one-pass
method, the perturbation methods (Score-CAM, Ablation-CAM), the guided methods, SmoothGrad
(`seed=` fixes the noise) and `top_k` (`test_same_input_gives_bit_identical_maps_on_cpu`, with a
call on another input in between to show nothing carries over).

On a GPU (not measured here: these notes are from PyTorch's documented behaviour) results can
vary in the last bits between runs, and more between machines:

- cuDNN may pick a different convolution algorithm from run to run when
  `torch.backends.cudnn.benchmark = True`, and some backward kernels (convolution backward with
  some algorithms, adaptive pooling and interpolation backward) add with atomics in an order that
  changes between runs; `torch.use_deterministic_algorithms(True)` (which also makes cuDNN
  convolutions deterministic; keep `cudnn.benchmark` off) with `CUBLAS_WORKSPACE_CONFIG=:4096:8` in the environment makes
  them repeatable, at some cost in speed, or raises naming an operator that has no
  deterministic version;
- TF32 matrix multiplies and convolutions (`torch.backends.cuda.matmul.allow_tf32`,
  `torch.backends.cudnn.allow_tf32`) change values compared with the CPU's float32;
- `amp=` (bfloat16/float16 autocast) changes values by design;
- perturbation methods sum the same numbers in another order when `batch_size` changes.

Min-max normalisation rescales each map, so where a map is nearly flat these last-bit
differences can show as visible ones; compare raw maps (`Explanation.raw`) with a tolerance.

## Memory over long runs

`benchmarks/soak.py` runs 10,000 `explain` calls on a small CNN (32x32 inputs) and 500 on
ResNet-50 (random weights, 224x224) in one process, cycling through gradient, activation,
perturbation, guided and smoothed methods, several kinds of target, tensor and PIL inputs,
`list_layers`, a rendered figure every 50 calls, and calls that fail on purpose. It reads the
resident memory (RSS, from `/proc/self/status`) after a warm-up and at the end; the goal is
growth under 20 MB. On CUDA it also checks that the allocated GPU memory is back to its value
before each call.

Resident memory is read after `gc.collect()` and glibc's `malloc_trim(0)`, which hands the
allocator's free heap back to the system: untrimmed, the readings swing by up to 25 MB from one
checkpoint to the next during the ResNet-50 phase (the allocator keeping its large freed buffers
for reuse), which would hide a trend; each checkpoint prints both.

Measured with the full `OMP_NUM_THREADS=1 python benchmarks/soak.py` (10,000 small-CNN + 500
ResNet-50 calls, CPU, one thread, while other jobs shared the 2 cores, so the times are only
indicative; output in [benchmarks/soak_cpu.txt](benchmarks/soak_cpu.txt)):

| | RSS, trimmed | RSS, untrimmed |
|---|---|---|
| after warm-up | 846.4 MB | 977.5 MB |
| after 1,000 small-CNN calls | 852.1 MB | 871.9 MB |
| after 10,000 small-CNN calls | 852.7 MB | 872.0 MB |
| after 500 ResNet-50 calls | 852.7 MB | 983.5 MB |
| end | 852.7 MB | 852.7 MB |
| growth | **+6.3 MB** (goal < 20 MB: met) | |

The trimmed reading settles within the first 1,000 calls (+5.7 MB, allocator and cache warm-up)
and then moves by at most 0.6 MB over the remaining 9,000 small-CNN and 500 ResNet-50 calls; no
hook was left on either model. Calls took 28 ms (small CNN) and 910 ms (ResNet-50) each. The
`--quick` run (1,000 + 50 calls) grew by -0.1 MB. The CUDA check (allocated memory back to its
value after each call) is in the script but has not been run here, for lack of a GPU.

## Bad inputs

Each gives a one-line message that names the argument and the fix. The library raises
`ValueError` (`camkit.CamkitError` subclass `InputError`) for a wrong value and `TypeError`
for a wrong type; the CLI prints `error: <message>` on stderr and exits with code 2, without a
traceback. Tested in `tests/test_bad_inputs.py` (library and CLI) unless another file is named.

| Input | What camkit says |
|---|---|
| zero-byte file | `cannot read image 'x.jpg': the file is empty (0 bytes); pass a PNG, JPEG or other image file` |
| truncated JPEG | `cannot read image 'x.jpg': the file is truncated or corrupt (image file is truncated (...)); re-export or re-download it` |
| text file named `.jpg` | `cannot read image 'notes.jpg': not an image file PIL can identify; pass a PNG, JPEG or other image file` |
| decompression bomb (header claiming 10,000 x 10,000 pixels) | `image 'bomb.png' is 10000x10000 = 100,000,000 pixels, over the limit of 89,478,485 (a decompression bomb?); downscale it first, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file`, read from the header before any pixel is decoded; past PIL's own hard stop (2x the limit) the message is `... is refused as a possible decompression bomb (...)` |
| 1x1 pixel image (file, PIL image or array) | `image 'tiny.png' is 1x1 pixels, too small to explain; pass a picture at least 8x8 pixels` |
| 4-channel tensor to a 3-channel model | `` `inputs` has 4 channels but the model's first convolution takes 3; drop the alpha channel with x[:, :3], or pass the image itself (path, PIL image or array) to let camkit convert it `` |
| 1-channel tensor to a 3-channel model | `... takes 3; repeat the grey channel with x.expand(-1, 3, -1, -1), or pass the image itself ...` |
| NaN or Inf in the input tensor | `` `inputs` contains NaN or Inf; clean the tensor before explaining `` |
| float64 values that overflow the model's float32 | `` `inputs` has values too large for the model's torch.float32 (they become Inf); pass normalised values `` |
| uint8 (or int64, bool) tensor | `TypeError`: `` `inputs` tensor has dtype torch.uint8; pass a normalised float tensor (for 0-255 pixels: loaded.preprocessing.normalize(x.float() / 255)), or the image itself ... `` |
| float16, bfloat16, float64 tensor | accepted: converted to the model's dtype; the maps equal those of the same values in float32 |
| a layer whose output is not spatial (`fc`) | `layer 'fc' output has shape (1, 5), not (N, C, h, w), (N, h, w, C) or (N, tokens, C) with N images; pick a convolutional or transformer block layer (see camkit.list_layers(model))` (tests/test_engine.py) |
| a layer whose output is a 1x1 grid (`pool`, `avgpool`) | `layer 'pool' output has shape (1, 16, 1, 1), a 1x1 grid whose map would be flat; pick an earlier layer (see camkit.list_layers(model)) or a larger input` |
| a layer that returns a tuple / that never runs | `layer 'split' returned a tuple of (tensor (...), tensor ()), not a tensor; pick a layer whose output is ...` / `layer 'inner.dropout' did not run during the forward pass; pick a layer the model uses ...` |
| class index out of range | `` `target` class index 5 is out of range for a model with 5 classes; use 0 to 4 `` (CLI: `--target 5000 is out of range; pass a class index from 0 to 999 or a class name`) |
| target name that matches nothing | `` `target` class 'zebra' not found among the model's 5 classes; Pass an exact class name or index. `` with `did you mean ...?` when a name is close |
| model or weights file that pickles arbitrary objects | `cannot load 'evil.pt' as weights (UnpicklingError); camkit only reads state dicts and TorchScript files, never pickled objects: save with torch.save(model.state_dict(), path) or ...`; the file is read with `weights_only=True`, so its code never runs (tests/test_models.py, CLI `--model` and `--weights` here) |
| output folder that cannot be written | `output folder 'out' is not writable; pass a writable folder with --out`; a file in the way: `--out 'x' is a file; pass a folder`; cannot be created: `cannot create output folder ...` (tests/test_cli.py) |
| `inputs=None`, an empty path, a folder | `TypeError`: `` `inputs` is None; pass a file path, ... `` / `image path is an empty string; pass the path of an image file` / `'photos' is a folder, not an image file; pass image files (or list them, e.g. sorted(Path(folder).glob('*.jpg')))` (CLI: `'photos' is not a file; pass image files, not folders`) |
| a tensor with a zero-sized side | `` `inputs` tensor has shape (1, 3, 16, 0), with no channels or pixels; pass at least one channel and one pixel a side `` |
| `methods=None` | `TypeError`: `` `methods` must be a method name or a list of names, got NoneType `` |
| a float, 2-D or bool tensor/array as `target` | `TypeError`: `` `target` Tensor has shape (1, 2) and dtype torch.int64; pass integer class indices, one per image or one for all `` |
| an output PNG that exists already | `output 'out/cat-camkit.png' already exists; pass --overwrite to replace it, or choose another --out` |
| any tensor shape and dtype (hypothesis, 60 examples: batch 1-2, 1-4 channels, 1-20 pixels a side, six dtypes, NaN/Inf injected) | either finite maps in [0, 1] of the input's size, or one of the errors above; never another exception. The only refusal not listed above: an input too small for any spatial layer (`layers='auto'` found no module with a spatial ... output ...; pass ... or a larger input) |
| float image array (or list item) with values outside [0, 1] | `image array has values up to 255: pass pixels in [0, 1] (divide 0-255 values by 255) or a uint8 array; camkit applies the model's own normalisation`; below 0: `... looks normalised already: pass pixels in [0, 1] ...` (before, they were clipped: a 0-255 picture became white) |
| numpy arrays of 7 shapes x 6 dtypes (hypothesis) | converted, or `image array has shape (12, 10, 5); pass (H, W), (H, W, 3) or (H, W, 4) ...` / `image array has dtype int32; pass uint8 (0-255), uint16 or float (0-1)` |

A numpy integer (`np.int64`, as `argmax` returns) is accepted as a class index like an `int`,
and a numpy array of indices or of class names like a list.

The channel check compares the input with the model's first registered `nn.Conv2d`; a model
whose first registered convolution is not the one that reads the image (rare) would be refused
wrongly. The size limit is PIL's `Image.MAX_IMAGE_PIXELS` (89,478,485 pixels by default), so
raising it there raises it for camkit too.

## The CLI loses nothing

- An input image is never written over, even with `--overwrite`: an output whose name would hit
  an input (or another output of the run) is numbered (`cat-camkit-2.png`).
- An existing output is not replaced unless `--overwrite` is given (`explain`, `demo`;
  `evaluate` also accepts `--resume`); the check runs before the model loads.
- Each PNG is written to a hidden temporary name beside it (`.name.png.partial`, removed on
  any error or Ctrl-C) and renamed into place, so a run stopped halfway leaves no half-written
  output, and the outputs already written stay intact.
- `camkit explain` on several images goes on past an image that fails, prints
  `error: <image>: <reason>` for it, and ends with
  `error: 1 of 3 images failed (b.jpg); the others were written; fix those inputs (reasons above)
  and run them again`, exit code 2. A mistake every image would repeat (an unknown layer or
  method) stops the run at once.

Tested in `tests/test_hardening.py` (the CLI section).

## Running the checks

```bash
.venv/bin/python -m pytest -q tests/test_hardening.py tests/test_bad_inputs.py
python benchmarks/soak.py --quick     # 1,000 + 50 calls, about 2 minutes on 2 CPU cores
python benchmarks/soak.py             # 10,000 + 500 calls
```
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from camkit._locks import serialised
from camkit._map_warnings import (
    Flag,
    flagged_maps,
    issue,
    layer_flags,
    messages,
    row_names,
    training_flag,
)
from camkit._spatial import Reshape
from camkit.engine import TargetSpec, methods_named, prepare
from camkit.explanation import Explanation
from camkit.models import LoadedModel
from camkit.smoothing import explain_extended, smoothing_options


def explain(
    model: nn.Module | LoadedModel,
    inputs: object,
    methods: str | Sequence[str] = ("gradcam",),
    layers: str | nn.Module | Sequence[str | nn.Module] = ("auto",),
    target: TargetSpec = None,
    top_k: int | None = None,
    device: str | torch.device | None = None,
    reshape: Reshape | None = None,
    batch_size: int | None = None,
    max_channels: int | None = None,
    progress: bool | None = None,
    smooth: str | None = None,
    smooth_samples: int | None = None,
    smooth_sigma: float | None = None,
    seed: int = 0,
    channels_last: bool | None = None,
    amp: bool | str = False,
) -> Explanation:
    """Explain a classifier's decision with CAM heatmaps.

    Gradient and activation methods share one forward and one backward pass; perturbation
    methods (Score-CAM, Ablation-CAM), smoothing and the guided methods add passes of their own.

    The model is left as found (hooks, training flags, gradients, weights), also when the call
    raises. Calls from several threads on the same model object run one at a time; give each
    thread its own copy to run them in parallel (see the README's reliability notes).

    Args:
        model: A classifier, or a :class:`LoadedModel` from :func:`load_model` (which brings its
            preprocessing and class names).
        inputs: A normalised (B, C, H, W) tensor, or a path, PIL image or numpy array, or a list
            of them (preprocessed with the model's transforms, else ImageNet's at 224).
        methods: Names from :func:`list_methods`.
        layers: ``"auto"``, dotted names (``"layer4"``), pytorch-gradcam names (``"features_11"``)
            or submodules.
        target: ``None`` for each image's top class; a class index; one index per image; a class
            name; or a callable taking the model output and returning one score per image.
        top_k: Explain each image's ``top_k`` best classes (overrides ``target``).
        device: Where to run; by default the model's device. The model is never moved.
        reshape: A function mapping each explained layer's raw output to (N, C, h, w), for
            layouts camkit cannot read itself. By default (N, C, h, w) outputs are used as they
            are, (N, h, w, C) and (N, tokens, C) ones (vision transformers, Swin) are mapped
            automatically, class/distillation/register tokens dropped.
        batch_size: Perturbation methods (``scorecam``, ``ablationcam``...): perturbed inputs
            per forward pass; by default 32 on CPU, 128 on CUDA.
        max_channels: Perturbation methods: perturb only each image's ``max_channels``
            channels of largest activation mass (an approximation; exact when ``None``).
        progress: Perturbation methods: ``None`` shows a progress bar when the forwards take
            over a second and stderr is a terminal; ``False`` never, ``True`` also off a terminal.
        smooth: ``"noise"`` averages every map over noisy copies of the input (SmoothGrad);
            ``"augment"`` over flipped and rescaled copies, each mapped back first. The targets
            stay the clean image's. See lesson 08 (notebooks/08_beyond.ipynb).
        smooth_samples: Noisy copies per image (default 16), for ``"noise"`` and smoothgradcam++.
        smooth_sigma: Noise standard deviation as a fraction of each image's value range
            (default 0.15), for ``"noise"`` and smoothgradcam++.
        seed: Seed of the noise generator; the same call gives the same maps.
        channels_last: Hand the model its input in channels-last memory layout (the model is
            not changed). ``None``: on the CPU for the batched forwards of the perturbation
            methods (1.4-1.5x faster there) and for the gradient pass from 2 images up (faster on
            every model measured at batch 8; ResNet-50 is 5 % slower with it at batch 1), and on
            CUDA under ``amp``. If the model cannot take that layout, camkit falls back to the
            usual one.
        amp: Run the forward passes under ``torch.autocast``: ``True`` picks bfloat16 where the
            device supports it (else float16), or name ``"bf16"``/``"fp16"``. Maps differ from
            float32 ones by the tolerance measured in the README (speed options).

    Returns:
        The :class:`Explanation`.

    Warns:
        MapWarning: One line per map that would mislead (every gradient at the layer zero; the
            map zero everywhere after the ReLU; its range at rounding-noise level), when the
            model's outputs are probabilities (a final softmax), and when the model is in
            training mode (it is explained in evaluation mode, and left as it was). The messages
            stay in :attr:`Explanation.warnings`; figures draw warned maps flat.

    Raises:
        ValueError: For a bad value (unknown layer, method or class, unreadable image).
        TypeError: For an argument of the wrong type.
    """
    chosen_methods = methods_named(methods)
    smoothing = smoothing_options(
        smooth,
        smooth_samples,
        smooth_sigma,
        seed,
        any(method.name == "smoothgradcam++" for method in chosen_methods),
    )
    request = prepare(
        model,
        inputs,
        chosen_methods,
        layers,
        target,
        top_k,
        device,
        reshape,
        batch_size,
        max_channels,
        progress,
        channels_last,
        amp,
    )
    # One call at a time per model object: concurrent calls would share its hooks and flags.
    with serialised(request.network):
        # Read before the engine switches the model to evaluation mode for the call.
        training = training_flag(request.network, request.model_name)
        if smoothing is None and not any(method.own_pass for method in chosen_methods):
            explanation = request.run(
                request.x, request.batch, chosen_methods, request.layer_specs, target, top_k
            )
        else:
            # Smoothing, smoothgradcam++ and the guided methods need passes of their own.
            smoothed = smoothing is not None and smoothing.mode is not None
            explanation = _recheck(explain_extended(request, smoothing), smoothed)
    if training is not None:
        explanation = dataclasses.replace(
            explanation, warnings=(training.message, *explanation.warnings)
        )
    issue(explanation.warnings)
    return explanation


def _recheck(explanation: Explanation, smoothed: bool) -> Explanation:
    """The warnings of an explanation made of several passes, for the maps it returns.

    The clean pass's warnings hold for the maps it computed (not smoothed); the others (smoothed
    averages, guided images, smoothgradcam++) are checked on their raw maps alone, with no
    gradients at hand: zero everywhere, or a range at rounding-noise level of their peak.
    """
    kept = {
        key: rows
        for key, rows in explanation.flagged.items()
        if key in explanation.maps and not smoothed
    }
    map_messages = {m for rows in explanation.flagged.values() for m in rows.values()}
    model_messages = [m for m in explanation.warnings if m not in map_messages]
    rows = row_names(
        explanation.targets,
        explanation.labels,
        explanation.categories,
        explanation.names,
    )
    flags = [Flag(m) for m in model_messages]
    for key, found in kept.items():
        flags.extend(Flag(message, ((key[0], key[1], row),)) for row, message in found.items())
    for (layer, method), raw in explanation.raw.items():
        if (layer, method) in kept:
            continue
        flat = raw.reshape(-1, *raw.shape[-2:])
        activations = torch.zeros(flat.shape[0], 1, *flat.shape[-2:])
        flags.extend(layer_flags(layer, {method: flat}, activations, None, set(), rows))
    return dataclasses.replace(explanation, warnings=messages(flags), flagged=flagged_maps(flags))
