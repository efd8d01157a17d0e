"""Turning what users pass (paths, PIL images, arrays, tensors) into a normalised batch."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from camkit._errors import ArgumentTypeError, InputError, MapWarning

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Shortest side, in pixels, of a picture camkit explains: below it a heatmap says nothing.
MIN_IMAGE_SIDE = 8


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its images: resize the short side, centre-crop, normalise.

    Attributes:
        resize_size: Length the shorter side is resized to.
        crop_size: Side of the square centre crop.
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel standard deviation divided by.
        interpolation: Resampling used by the resize.
    """

    resize_size: int = 256
    crop_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    #: A torchvision ``InterpolationMode`` or its name ("bilinear", "bicubic"...).
    interpolation: str = "bilinear"

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """Resize and crop an RGB image; return (3, crop, crop) floats in [0, 1]."""
        # torchvision is imported on first use: it costs as much to import as torch itself.
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        interpolation = InterpolationMode(self.interpolation)
        image = TF.resize(image, [self.resize_size], interpolation=interpolation)
        image = TF.center_crop(image, [self.crop_size])
        return TF.to_tensor(image)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Apply the mean and standard deviation to (..., 3, H, W) pixels in [0, 1].

        Warns:
            MapWarning: When a value exceeds 2, so the pixels are surely not in [0, 1] (0-255
                values, say): the model would see a white, saturated picture.
        """
        high = float(pixels.detach().amax()) if pixels.numel() else 0.0
        if high > 2:
            warnings.warn(
                MapWarning(
                    f"`pixels` has values up to {high:.4g}: pass pixels in [0, 1] (divide 0-255 "
                    "values by 255); normalize applies the model's mean and standard deviation"
                ),
                stacklevel=2,
            )
        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device)[:, None, None]
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device)[:, None, None]
        return (pixels - mean) / std

    def denormalize(self, tensor: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`normalize` and clip to [0, 1], for drawing."""
        mean = torch.tensor(self.mean, dtype=tensor.dtype, device=tensor.device)[:, None, None]
        std = torch.tensor(self.std, dtype=tensor.dtype, device=tensor.device)[:, None, None]
        return (tensor * std + mean).clamp(0, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Preprocess one RGB PIL image into a normalised (3, crop, crop) tensor."""
        return self.normalize(self.pixels(image))


@dataclass(frozen=True)
class Batch:
    """A prepared batch.

    Attributes:
        tensor: Normalised model input (B, C, H, W).
        images: The same pictures as (B, 3, H, W) floats in [0, 1], for drawing.
        names: A name per image (file stem, or "image 0", ...).
    """

    tensor: torch.Tensor
    images: torch.Tensor
    names: list[str]


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL image (grayscale, 16-bit, palette, RGBA, CMYK) to 8-bit RGB.

    Transparent pixels are composited on white, and 16-bit or 32-bit integer images are scaled
    by their bit depth rather than clipped.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        scaled = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        peak = 1.0 if array.max() <= 1.0 else 255.0
        scaled = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file and return it as RGB.

    The size is read from the header first, so a decompression bomb (a small file that decodes
    to billions of pixels) is refused before any pixel is decoded.

    Raises:
        ValueError: If the file is missing, empty, not an image, truncated, too large or too
            small.
    """
    if not str(path).strip():
        raise InputError("image path is an empty string; pass the path of an image file")
    path = Path(path)
    if path.is_dir():
        raise InputError(
            f"{str(path)!r} is a folder, not an image file; pass image files (or list them, "
            "e.g. sorted(Path(folder).glob('*.jpg')))"
        )
    if not path.is_file():
        raise InputError(f"image file {str(path)!r} not found; check the path")
    if path.stat().st_size == 0:
        raise InputError(
            f"cannot read image {str(path)!r}: the file is empty (0 bytes); pass a PNG, JPEG or "
            "other image file"
        )
    try:
        with warnings.catch_warnings():  # PIL warns below its own hard limit; we check below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_image_size(image.size, repr(str(path)))
                image.load()
                return to_rgb(image)
    except UnidentifiedImageError:
        raise InputError(
            f"cannot read image {str(path)!r}: not an image file PIL can identify; pass a PNG, "
            "JPEG or other image file"
        ) from None
    except Image.DecompressionBombError as error:  # PIL's own check, when it comes first
        raise InputError(
            f"image {str(path)!r} is refused as a possible decompression bomb ({error}); "
            "downscale it first, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        reason = " ".join(str(error).split()) or type(error).__name__
        raise InputError(
            f"cannot read image {str(path)!r}: the file is truncated or corrupt ({reason}); "
            "re-export or re-download it"
        ) from None


def check_image_size(size: tuple[int, int], what: str) -> None:
    """Refuse pictures too large to decode safely or too small to explain.

    Args:
        size: (width, height) in pixels.
        what: How to name the picture in the message.

    Raises:
        ValueError: Over ``PIL.Image.MAX_IMAGE_PIXELS`` pixels, or under ``MIN_IMAGE_SIDE``
            on a side.
    """
    width, height = size
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise InputError(
            f"image {what} is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{limit:,} (a decompression bomb?); downscale it first, or raise "
            "PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(
            f"image {what} is {width}x{height} pixels, too small to explain; pass a picture at "
            f"least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels"
        )


#: How far float pixels may stray outside [0, 1] (resampling overshoot, rounding) and still
#: count as pixels in [0, 1].
PIXEL_TOLERANCE = 1e-3


def check_pixel_range(low: float, high: float, what: str) -> None:
    """Refuse float pixels outside [0, 1] where camkit applies the model's normalisation.

    Clipping them would turn a 0-255 picture white and an already normalised one into a
    different picture, and the model would see neither.

    Raises:
        ValueError: When ``low`` or ``high`` lies outside [0, 1] (beyond the tolerance).
    """
    if low < -PIXEL_TOLERANCE:
        raise InputError(
            f"{what} has values down to {low:.4g}, so it looks normalised already: pass pixels "
            "in [0, 1] (camkit applies the model's own normalisation), or the normalised "
            "(B, 3, H, W) tensor itself"
        )
    if high > 1 + PIXEL_TOLERANCE:
        raise InputError(
            f"{what} has values up to {high:.4g}: pass pixels in [0, 1] (divide 0-255 values "
            "by 255) or a uint8 array; camkit applies the model's own normalisation"
        )


def array_to_image(array: np.ndarray) -> Image.Image:
    """Convert an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array to an RGB PIL image.

    uint8 arrays are taken as 0-255, uint16 as 0-65535, floats as 0-1.
    """
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InputError(
            f"image array has shape {array.shape}; pass (H, W), (H, W, 3) or (H, W, 4) "
            "(move the channel axis last with np.moveaxis(array, 0, -1))"
        )
    if array.dtype == np.uint8:
        data = array
    elif array.dtype == np.uint16:
        data = (array.astype(np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InputError("image array contains NaN or Inf; clean it before explaining")
        check_pixel_range(float(array.min()), float(array.max()), "image array")
        data = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise InputError(
            f"image array has dtype {array.dtype}; pass uint8 (0-255), uint16 or float (0-1)"
        )
    return to_rgb(Image.fromarray(data))


def _one_image(item: object, position: int) -> tuple[Image.Image, str]:
    if isinstance(item, (str, os.PathLike)):
        return load_image(item), Path(item).stem
    if isinstance(item, Image.Image):
        check_image_size(item.size, f"{position} of `inputs`")
        return to_rgb(item), f"image {position}"
    if isinstance(item, np.ndarray):
        image = array_to_image(item)
        check_image_size(image.size, f"{position} of `inputs`")
        return image, f"image {position}"
    raise ArgumentTypeError(
        f"`inputs` item {position} is a {type(item).__name__}; pass a file path, a PIL image, "
        "a numpy array, or one normalised (B, 3, H, W) tensor"
    )


def prepare_batch(inputs: object, preprocessing: Preprocessing) -> Batch:
    """Build the model input and the drawable pictures from any supported ``inputs``.

    Args:
        inputs: A normalised (B, C, H, W) or (C, H, W) float tensor; or a path, PIL image or numpy
            array, or a list or tuple of them.
        preprocessing: Used for images, and to un-normalise tensors for drawing.

    Raises:
        TypeError: For an unsupported type.
        ValueError: For unreadable files, wrong shapes, or non-finite values.
    """
    if inputs is None:
        raise ArgumentTypeError(
            "`inputs` is None; pass a file path, a PIL image, a numpy array, a list of them, or "
            "a normalised (B, 3, H, W) tensor"
        )
    if isinstance(inputs, torch.Tensor):
        tensor = inputs.unsqueeze(0) if inputs.dim() == 3 else inputs
        if tensor.dim() != 4:
            raise InputError(
                f"`inputs` tensor has shape {tuple(inputs.shape)}; pass (B, C, H, W) or (C, H, W)"
            )
        if tensor.shape[0] > 0 and 0 in tensor.shape[1:]:
            raise InputError(
                f"`inputs` tensor has shape {tuple(inputs.shape)}, with no channels or pixels; "
                "pass at least one channel and one pixel a side"
            )
        if not tensor.is_floating_point():
            raise ArgumentTypeError(
                f"`inputs` tensor has dtype {tensor.dtype}; pass a normalised float tensor "
                "(for 0-255 pixels: loaded.preprocessing.normalize(x.float() / 255)), or the "
                "image itself (PIL image, numpy array or path) to let camkit preprocess it"
            )
        if tensor.shape[0] == 0:
            raise InputError("`inputs` is an empty batch; pass at least one image")
        if not all_finite(tensor):
            raise InputError("`inputs` contains NaN or Inf; clean the tensor before explaining")
        detached = tensor.detach()
        # Un-normalised where the tensor is (on CUDA no CPU work), then one copy to the CPU.
        if detached.shape[1] == 3:
            images = preprocessing.denormalize(detached.float()).cpu()
        else:
            images = _grey_for_drawing(detached.float()).cpu()
        return Batch(tensor.detach(), images, [f"image {i}" for i in range(tensor.shape[0])])
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise InputError("`inputs` is an empty list; pass at least one image")
    pictures, names = [], []
    for position, item in enumerate(items):
        image, name = _one_image(item, position)
        pictures.append(preprocessing.pixels(image))
        names.append(name)
    images = torch.stack(pictures)
    return Batch(preprocessing.normalize(images), images, names)


def check_model_input(x: torch.Tensor, given: torch.Tensor, model: torch.nn.Module) -> None:
    """Check the batch as the model will get it, before the forward pass.

    Args:
        x: The batch on the model's device, in the model's floating dtype.
        given: The batch as prepared, before that conversion.
        model: The network.

    Raises:
        ValueError: When the channels differ from what the model's first convolution takes, or
            the conversion to the model's dtype overflowed.
    """
    expected = _input_channels(model)
    channels = int(x.shape[1])
    if expected is not None and channels != expected:
        if channels == 4 and expected == 3:
            fix = "drop the alpha channel with x[:, :3]"
        elif channels == 1 and expected == 3:
            fix = "repeat the grey channel with x.expand(-1, 3, -1, -1)"
        else:
            fix = f"pass a tensor with {expected} channels"
        raise InputError(
            f"`inputs` has {channels} channels but the model's first convolution takes "
            f"{expected}; {fix}, or pass the image itself (path, PIL image or array) to let "
            "camkit convert it"
        )
    if x.dtype != given.dtype and not all_finite(x):
        raise InputError(
            f"`inputs` has values too large for the model's {x.dtype} (they become Inf); "
            "pass normalised values"
        )


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether no value is NaN or Inf; one sum first, which any NaN or Inf makes non-finite."""
    # The sum reads the tensor once without a boolean copy (5x faster on the CPU); only when it
    # is not finite (a NaN or Inf, or finite values overflowing) are the values checked one by one.
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def _input_channels(model: torch.nn.Module) -> int | None:
    """The channels the model's first registered convolution takes, or ``None`` without one."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            return int(module.in_channels)
    return None


def _grey_for_drawing(tensor: torch.Tensor) -> torch.Tensor:
    """A drawable (B, 3, H, W) picture for inputs that do not have 3 channels."""
    mean = tensor.mean(dim=1, keepdim=True)
    low = mean.amin(dim=(2, 3), keepdim=True)
    high = mean.amax(dim=(2, 3), keepdim=True)
    scaled = (mean - low) / torch.where(high > low, high - low, torch.ones_like(high))
    return scaled.expand(-1, 3, -1, -1).contiguous()


def as_sequence(value: object) -> Sequence[object]:
    """Wrap a single str or module in a tuple; pass sequences through."""
    if isinstance(value, (str, torch.nn.Module)) or not isinstance(value, (list, tuple)):
        return (value,)
    return value
