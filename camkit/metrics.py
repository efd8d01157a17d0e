"""Faithfulness metrics for heatmaps, each following its paper's protocol.

Every metric takes the model (or :class:`camkit.LoadedModel`), the pictures as (B, 3, H, W)
pixels in [0, 1] (``Explanation.images``), the maps as (B, H, W) (``Explanation.maps``) and the
explained classes, and runs batched on the model's device (CPU or CUDA)::

    exp = camkit.explain(loaded, images, methods=["gradcam"])
    curve = camkit.metrics.deletion(loaded, exp.images, exp["gradcam"], exp.targets[:, 0])
    curve.mean_auc

Measuring how faithful a heatmap is: `camkit.metrics` and `camkit evaluate`
---------------------------------------------------------------------------

A heatmap that looks plausible can still be wrong. `camkit.metrics` scores maps with the protocols
the papers use; `camkit evaluate` runs them all on a folder of images and writes a table, per-image
CSV files and the mean curves.

```python
import camkit
from camkit import metrics

loaded = camkit.load_model()                       # offline EfficientNet-Lite0
exp = camkit.explain(loaded, ["cat.jpg", "dog.jpg"], methods=["gradcam", "layercam"])
classes = exp.targets[:, 0]                         # the explained class of each image
curve = metrics.deletion(loaded, exp.images, exp["gradcam"], classes)
curve.mean_auc, curve.scores                        # AUC and the (B, 29) curve
metrics.insertion(loaded, exp.images, exp["gradcam"], classes).mean_auc
metrics.average_drop(loaded, exp.images, exp["gradcam"], classes).average_drop
metrics.road(loaded, exp.images, exp["gradcam"], classes, percentages=(10, 50, 90)).morf
metrics.sanity_check(loaded, exp.images, ["gradcam", "eigencam"]).passed
```

Common conventions:

- `images` are **pixels in [0, 1]**, `(B, 3, H, W)`, exactly `Explanation.images`; every metric
  normalises them with the model's preprocessing (`LoadedModel.preprocessing`, ImageNet's for a bare
  `nn.Module`, or `preprocessing=`) just before each forward pass. A normalised tensor is refused.
- `maps` are `(B, H, W)` at the image size (`Explanation.maps`, `exp["gradcam"]`).
- `targets`: `None` (each image's top prediction), one class index, or one per image.
- The **score** is the softmax probability of the explained class.
- Batched: all perturbed images of all curves go through the model in chunks of `batch_size`
  (default 64); the forward passes run on the model's device (CPU or CUDA, `device=` to choose).
  The model is never changed (eval mode only for the call, flags restored).

## Average Drop % and Increase in Confidence %

Chattopadhay et al., *Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks*,
WACV 2018, [arXiv 1710.11063](https://arxiv.org/abs/1710.11063), section 5.1.

`Y` = score on the image, `O` = score on the image multiplied by its map.
Average Drop = `100 · mean(max(0, Y − O) / Y)` (lower is better); Increase in Confidence =
`100 · mean(O > Y)` (higher is better). `metrics.average_drop(...)` returns both, and `Y`, `O` per
image.

Exactly what is multiplied: the [0, 1] pixels, **before** the mean/std normalisation, by the map
min-max scaled to [0, 1] (explain's maps already are); the product is then normalised. So a pixel
with map 0 becomes black (not the dataset mean), as in the paper's "explanation map" `E = L ∘ I`.

## Deletion and insertion

Petsiuk et al., *RISE: Randomized Input Sampling for Explanation of Black-box Models*, BMVC 2018,
[arXiv 1806.07421](https://arxiv.org/abs/1806.07421), section 4.1.

Pixels are taken in decreasing saliency, **224 × 8 pixels per step at 224 × 224** (28 steps, 29
points; the same 1/28 of the pixels at other sizes; `step=` to change).

- **Deletion** (lower AUC is better): removed pixels become the dataset mean — the preprocessing's
  `mean`, i.e. exactly zero after normalisation (`baseline=` to change).
- **Insertion** (higher AUC is better): starts from a Gaussian blur of the image (kernel 11, sigma
  5, reflected borders, as RISE's code) and puts the original pixels back.
- AUC by the trapezoid rule over the fraction of pixels (0 to 1).

Departure: ties in saliency (the zeros after a CAM's ReLU) are taken in raster order (a stable sort)
so the result does not depend on the sort algorithm; RISE's `argsort` leaves that order unspecified.

## ROAD (MoRF and LeRF)

Rong et al., *A Consistent and Efficient Evaluation Strategy for Attribution Methods*, ICML 2022,
[arXiv 2202.00449](https://arxiv.org/abs/2202.00449).

For each percentage (default 10, 20, …, 90) the most relevant (MoRF, lower is better) or least
relevant (LeRF, higher is better) pixels are removed and **imputed**: every removed pixel is the
weighted mean of its 8 neighbours (1/6 for edges, 1/12 for diagonals; neighbours outside the image
left out), all removed pixels solved together as one sparse linear system (`scipy.sparse`, one
factorisation for the 3 channels), then Gaussian noise (std `noise=0.01`) is added to the imputed
pixels. The imputation hides the removed region's shape from the model, which plain deletion leaks.
`metrics.linear_imputation(image, removed)` exposes the imputer.

Departures: scores are the explained class's probability per image (the paper reports accuracy
over a dataset; the mean probability tracks the same without labels); imputation is done on [0, 1]
pixels and clipped to [0, 1]; a removed region that touches no kept pixel (which makes the system
singular) gets the mean of the kept pixels.

Needs scipy: `pip install camkit[metrics]` (the error says so when it is missing).

## Pointing game

Zhang et al., *Top-down Neural Attention by Excitation Backprop*, ECCV 2016 / IJCV 2018,
[arXiv 1608.00507](https://arxiv.org/abs/1608.00507).

`metrics.pointing_game(maps, regions, tolerance=15)`: a hit when the map's maximum is within 15
pixels of the object; `regions` holds one box `(x0, y0, x1, y1)` in pixels, inclusive (the format of
`../shared/data/images/both.json`), a list of boxes, or an `(H, W)` boolean mask per map. A constant
map has no maximum and counts as a miss; ties take the first maximum in raster order.
Accuracy = hits / images. (`camkit evaluate` does not run it: ImageNet folders carry no boxes.)

## Sanity check: cascading model-parameter randomisation

Adebayo et al., *Sanity Checks for Saliency Maps*, NeurIPS 2018,
[arXiv 1810.03292](https://arxiv.org/abs/1810.03292), section 3.1.

`metrics.sanity_check(model, images, methods, layer="auto", steps=None)` works on a **deep copy** of
the model. Its parameter-holding modules are found in execution order and grouped into blocks (the
name up to its first numeric index: `_blocks.15`, `layer4.2`, `fc`); the blocks are randomised one
after another from the output down, and after each step the maps (same images, classes and layer)
are compared with the trained model's by **Spearman rank correlation** (ties get average ranks; a
constant map correlates 0). As a yardstick, the same correlation is computed between the trained
model's maps of the images and of the images plus Gaussian noise of std 0.01 (in [0, 1] pixels).

**Pass criterion** (ours; the paper judges by eye): the mean correlation after the **first**
step (the block nearest the output: a CNN's classifier) **and** after the last step is below 0.5
and below half the tiny-noise correlation. The first step is where dependence on the model
matters: a map that survives a random classifier is not explaining the classifier, however much
it changes once the feature blocks are random too (then almost any image-dependent map changes).
`SanityResult` keeps every step's value (`correlations`), the first step below 0.5
(`first_below`), one line per method saying why it passed or failed (`reasons`) and a Markdown
table of it all (`table()`).

Departure: each parameter tensor is redrawn from a normal with its own mean and std (the paper
re-initialises with a truncated normal), so activations keep their scale and the batch-norm
statistics, left as trained, stay meaningful.

## Reference maps: `center` and `random`

`metrics.reference_maps("center" | "random", batch, height, width, seed=0)`:

- `center`: a centred Gaussian, sigma a quarter of the shorter side (photos put objects in the
  middle);
- `random`: uniform noise on a grid 32 times coarser than the image (7 × 7 at 224, a stride-32 CAM's
  resolution), upsampled bilinearly; reproducible from the seed (`camkit evaluate` seeds each image
  from its file name).

A method that does not beat both knows nothing the model does not already tell by chance. They live
here, not in the `explain` registry, because they read nothing from the model: registered methods
are functions of a layer's activations and gradients, every one goes through the engine's
cross-method tests (batch equals one by one, hooks removed, model unchanged), and `list_methods()`
would suggest they explain something.

## `camkit evaluate`

```
camkit evaluate PATH [--model NAME] [--method M ...] [--layer L ...] [--limit N] [--out DIR]
                      [--road-percent 10,50,90|none] [--batch-size 64] [--max-channels N]
                      [--sanity N] [--resume] [--overwrite] [--device auto|cpu|cuda]
```

- **Images**: PATH and one level of subfolders (`.jpg .jpeg .png .bmp .gif .webp .tif .tiff`).
- **Labels**, in order: a `labels.csv` with `file` and `class_index` columns; a WordNet id starting
  the file name (`n01440764_tench.JPEG`, for 1000-class ImageNet models; the ids sorted give the
  class index); an ImageFolder layout whose subfolder is a WordNet id, a class index or a class name;
  otherwise the model's own prediction is explained. The CSV records the source of each label.
- **Methods**: by default every registered method **except the per-channel ones** (`scorecam`,
  `sscam`, `iscam`, `ablationcam`: one forward pass per channel, 1,280 at Lite0's auto layer —
  minutes per image on a CPU), plus `center` and `random`; name them with `--method` to include them.
  `--max-channels N` runs them on each image's N channels of largest activation mass (an
  approximation, see the camkit.perturbation module docstring); their rows are then named `scorecam (max_channels=N)`.
- **Metrics**: Average Drop, Increase in Confidence, deletion and insertion AUC (full RISE protocol),
  ROAD MoRF and LeRF at `--road-percent` (default 10, 50, 90: three of the paper's nine, for time;
  `none` to skip) and the time `explain` took per image.
- **Sanity check** (`--sanity N`, off by default): `metrics.sanity_check` on the first N images
  for every method (not the reference maps), at the first `--layer`; `sanity.csv` and
  `sanity.md` hold every step's correlation, the first step below 0.5 and the verdict of the
  rule above, which the command also prints.
- **Output** (`--out`, default `camkit-evaluation/`): `per_image.csv` (one row per image and
  method), `curves.csv` (every deletion and insertion curve), `summary.csv` and `summary.md` (means
  per method) and `curves.png` (mean deletion and insertion curves per method). Rows are written
  after each batch of 4 images, so `--resume` continues an interrupted run; `--resume` with other
  methods adds their rows to the same files and the summary covers them all (or merge separate
  folders with `camkit._evaluate.write_summary([csv files...], [curve files...], out)`). Existing
  outputs are replaced only with `--overwrite`.
- Errors (missing, empty or image-less folder, an `--out` that is a file or cannot be created or
  written, an unknown method, bad percentages) print one line and exit 2.

Cost: each (image, method) costs 2 + 29 + 29 + 2 × (ROAD percentages) forward passes, 66 by
default; on a 2-core CPU EfficientNet-Lite0 runs about 25–40 images per second, so 13 methods on 100
images take about 45 minutes when the machine is otherwise idle. On CUDA the same is a few minutes.

## Reading the results (EfficientNet-Lite0, `../shared/data/imagenet-sample`)

The table, the curves and the sanity check are in [evaluation/](evaluation/README.md). What they
showed on the images finished when this was written (the numbers there are the reference):

- **Average Drop and Increase in Confidence measure the map's coverage as much as its ranking.**
  They multiply the image by the map, so a sparse map (Guided Backprop's edges) blacks out nearly
  the whole image and loses ~99% of the confidence, while `center` and even `random`, nowhere
  zero, lose only about 20% (the CAM methods about 11%). Read them with deletion, insertion and ROAD, never alone.
- **Deletion is fooled by thin maps; ROAD is not.** Guided Backprop and Guided Grad-CAM have by far
  the best deletion AUC (their maps pick edges, and replacing a few thousand edge pixels by grey
  breaks the image in a way the model never saw), yet the worst ROAD MoRF of the real methods:
  once the removed pixels are imputed from their neighbours, removing them hurts the model much
  less. This is the leak ROAD was designed to close.
- **The sanity check passes only the methods whose map follows the classifier.** On 10 images
  (`benchmarks/evaluation/sanity.csv`, the columns "head" and "last"), Grad-CAM, HiResCAM and
  XGrad-CAM lose their map as soon as the classifier `_fc` is random (Spearman 0.26: their
  weights come straight from the classifier's gradient), and so does exact Ablation-CAM (0.28);
  these four pass. Grad-CAM++, LayerCAM, element-wise Grad-CAM and SmoothGrad-CAM++, which keep
  only positive gradients, still correlate 0.96 after a random classifier; Score-CAM (0.82),
  SS-CAM (0.98), IS-CAM (0.83), Eigen-Grad-CAM (0.63) and Guided Grad-CAM (0.56) keep most of
  their map too; Eigen-CAM (1.00) reads only activations; Guided Backprop (1.00, still 0.88 after
  8 blocks) draws edges whatever the model, as Adebayo et al. found. All of these fail.
  (Lesson 07 shows why Grad-CAM++ survives: at Lite0's last layer each channel's gradient is
  constant over positions and its alphas nearly uniform, so its map is a positive mix of
  non-negative activation maps, close to their plain sum, whichever channels a random
  classifier favours.)
"""

from __future__ import annotations

from camkit._metrics import (
    REFERENCE_MAPS,
    ConfidenceResult,
    Curve,
    PointingResult,
    average_drop,
    deletion,
    insertion,
    pointing_game,
    reference_maps,
)
from camkit._metrics_road import RoadResult, linear_imputation, road
from camkit._metrics_sanity import SanityResult, sanity_check, spearman

__all__ = [
    "REFERENCE_MAPS",
    "ConfidenceResult",
    "Curve",
    "PointingResult",
    "RoadResult",
    "SanityResult",
    "average_drop",
    "deletion",
    "insertion",
    "linear_imputation",
    "pointing_game",
    "reference_maps",
    "road",
    "sanity_check",
    "spearman",
]
