"""Drop-in stand-ins for the API of the old ``pytorch-gradcam`` package (version 0.2.1).

Code written for ``pytorch-gradcam`` runs on camkit once its import lines change::

    # from gradcam.utils import visualize_cam
    # from gradcam import GradCAM, GradCAMpp
    from camkit.compat import GradCAM, GradCAMpp, visualize_cam

    gradcam = GradCAM.from_config(model_type="resnet", arch=resnet, layer_name="layer4")
    mask, logit = gradcam(normed_img)           # mask: (1, 1, H, W) in [0, 1]
    heatmap, result = visualize_cam(mask, img)  # both (3, H, W), RGB, floats in [0, 1]

Every map is computed by :func:`camkit.explain`; this module only adapts arguments and shapes.
It registers no hooks of its own, and none is left on the model after a call.

What is the same as in 0.2.1:
    * ``GradCAM.from_config(arch=..., model_type=..., layer_name=...)``, ``GradCAM(arch,
      target_layer)``, ``obj(input, class_idx=None, retain_graph=False) -> (mask, logit)``,
      ``obj.forward(...)``, ``obj.saliency_map_size(*input_size)`` and ``obj.model_arch``.
    * The layer names of 0.2.1 ("features_11", "layer4", "layer1_bottleneck0",
      "features_norm5", "features_12_expand3x3_activation", ...), which camkit resolves.
    * ``mask``: float32, shape (1, 1, H, W) (the input's size), values in [0, 1], no autograd
      history, on the input's device. ``logit``: the model's output, (1, num_classes), on the
      input's device. ``class_idx=None`` explains the top-scoring class.
    * ``visualize_cam(mask, img, alpha=1.0) -> (heatmap, result)``: the mask is scaled to 0..255 and
      truncated to an integer, looked up in the jet colormap; ``heatmap`` is (3, H, W) float32, RGB
      channel order, values ``k / 255`` times ``alpha``, on the CPU; ``result`` is
      ``heatmap + img`` divided by its maximum, so its maximum is 1.
    * ``normalize``, ``denormalize`` and ``Normalize`` of ``gradcam.utils``.

Where camkit differs from 0.2.1 (camkit's behaviour is kept on purpose):
    * Grad-CAM++ formula. 0.2.1 computes ``alpha = G^2 / (2 G^2 + sum_ab A_ab G_ab^3 + 1e-7)``, with
      the third power of the gradient taken at each summed position ``ab``. camkit follows Eq. 19
      of the paper: ``alpha_ij = G_ij^2 / (2 G_ij^2 + G_ij^3 sum_ab A_ab)``, with no epsilon. 0.2.1
      also multiplies the weights by ``exp(score)``, a positive factor that normalisation cancels;
      camkit drops it (in 0.2.1 it overflows to ``inf``, hence NaN maps, for scores above ~88).
      Grad-CAM++ masks therefore differ from 0.2.1's.
    * Normalisation. Both upsample the ReLU'd map bilinearly to the input size and rescale it with
      ``(x - min) / (max - min)``; 0.2.1 takes min and max over the whole batch and gives NaN
      everywhere when the map is constant (e.g. all zero), camkit takes them per image and gives
      zeros. Otherwise Grad-CAM masks equal 0.2.1's up to float rounding.
    * Layers whose output is later changed in place. 0.2.1 kept a reference to the layer's output,
      so when the network then modified it in place it read the modified tensor: with the
      tutorial's DenseNet layer "features_norm5" (followed by ``F.relu(..., inplace=True)``), or a
      Conv2d followed by ``ReLU(inplace=True)``, it combined ReLU'd activations with the gradient
      of the un-ReLU'd output. camkit uses the layer's true output, so those masks differ too.
    * Model mode. camkit runs the model in eval mode for the call (restoring each module's flag
      afterwards); 0.2.1 ran it in whatever mode it was in. The input is moved to the model's device
      and dtype. ``logit`` is float32 whatever the model's dtype.
    * ``logit`` is detached: it carries no autograd graph, so ``retain_graph`` is accepted and
      ignored, and the model's parameters may not keep the ``.grad`` values 0.2.1 left on them.
    * Batches. 0.2.1 fails for more than one image; here an input of shape (B, 3, H, W) gives a
      mask of shape (B, 1, H, W) and logits (B, num_classes), each image explained for its own top
      class (or for ``class_idx``, which may also be a sequence of B class indices), and
      ``visualize_cam`` then returns (B, 3, H, W) tensors, each image divided by its own maximum.
    * Colours. The jet colormap is matplotlib's (``matplotlib.colormaps["jet"]``), not OpenCV's;
      both go from dark blue (0, 0, 0.5) through cyan, yellow and red to dark red (0.5, 0, 0), but
      they place their transitions slightly differently, so intermediate colours are close, not
      equal. Entries are rounded to ``k / 255`` as OpenCV's are. OpenCV is not needed.
    * ``model_type`` matches case-insensitively and by family ("resnet101" means "resnet"); it only
      checks the name, since camkit resolves layer names the same way for every model. An unknown
      ``model_type`` raises :class:`ValueError` (0.2.1 raised ``KeyError``), and a layer name that
      matches no module raises :class:`camkit.LayerNotFoundError` (a ``ValueError``) when the
      object is built (0.2.1 raised ``KeyError``, ``IndexError`` or ``AttributeError``).
    * Like the GitHub version of the package, the constructor also takes a ``model_dict``
      (``GradCAM(dict(type=..., arch=..., layer_name=..., input_size=(224, 224)), verbose=True)``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import matplotlib
import numpy as np
import torch
from torch import nn

import camkit
from camkit._errors import ArgumentTypeError, InputError
from camkit.layers import resolve_layer

__all__ = [
    "MODEL_TYPES",
    "GradCAM",
    "GradCAMpp",
    "Normalize",
    "denormalize",
    "normalize",
    "visualize_cam",
]

#: The ``model_type`` families pytorch-gradcam 0.2.1 knew, and the offline EfficientNet-Lite
#: (camkit's addition: the tutorial's loop runs unchanged on the models available offline).
MODEL_TYPES: tuple[str, ...] = (
    "alexnet",
    "vgg",
    "resnet",
    "densenet",
    "squeezenet",
    "efficientnet",
)

LayerSpec = nn.Module | str


def _model_family(model_type: Any) -> str:
    """Return the family in :data:`MODEL_TYPES` that ``model_type`` names.

    Raises:
        ValueError: If ``model_type`` names none of them.
    """
    if isinstance(model_type, str):
        key = model_type.strip().lower()
        for family in MODEL_TYPES:
            if key == family or key.startswith(family):
                return family
    raise InputError(
        f"unknown model_type {model_type!r}; use one of {', '.join(MODEL_TYPES)}, "
        "or pass the module itself: GradCAM(model, target_layer)"
    )


def _as_class_index(class_idx: Any) -> Any:
    """Turn an integer-like ``class_idx`` (int, NumPy integer, 0-d tensor) into an ``int``."""
    if class_idx is None or isinstance(class_idx, bool):
        return class_idx
    if isinstance(class_idx, numbers.Integral):
        return int(class_idx)
    if isinstance(class_idx, torch.Tensor) and class_idx.ndim == 0:
        return int(class_idx.item())
    if isinstance(class_idx, np.ndarray) and class_idx.ndim == 0:
        return int(class_idx)
    if isinstance(class_idx, torch.Tensor | np.ndarray | Sequence) and not isinstance(
        class_idx, str
    ):
        return [int(c) for c in class_idx]
    raise ArgumentTypeError(
        f"class_idx must be an int, a sequence of ints or None, got {type(class_idx).__name__}"
    )


class GradCAM:
    """Grad-CAM with the interface of ``gradcam.GradCAM`` from pytorch-gradcam 0.2.1.

    Example:
        >>> cam = GradCAM.from_config(model_type="resnet", arch=resnet, layer_name="layer4")
        >>> mask, logit = cam(normed_img)  # (1, 1, H, W) in [0, 1], (1, 1000)

    Attributes:
        model_arch: The model.
        target_layer: The layer explained: a module or a layer name camkit resolves.
        model_type: The ``model_type`` of :meth:`from_config` or of a ``model_dict``, else None.
        method: The :func:`camkit.explain` method name.
    """

    method: ClassVar[str] = "gradcam"

    def __init__(
        self,
        arch: nn.Module | Mapping[str, Any],
        target_layer: LayerSpec | bool | None = None,
        verbose: bool = False,
        *,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """Wrap ``arch`` to explain ``target_layer``.

        Args:
            arch: The model, or (as in the GitHub version of the package) a ``model_dict`` with keys
                ``"type"``, ``"arch"``, ``"layer_name"`` and optionally ``"input_size"``.
            target_layer: The layer to explain: a submodule of ``arch`` or a layer name such as
                ``"layer4"``, ``"features_11"`` or ``"features.11"``. Omit it with a ``model_dict``;
                a bool here is read as ``verbose`` (the GitHub version's second argument).
            verbose: Print the size of the saliency map for ``input_size`` (needs ``input_size``).
            input_size: (H, W) used by ``verbose``; a ``model_dict`` may give it instead.

        Raises:
            TypeError: If ``arch`` is not a module or a mapping, or a layer is missing.
            ValueError: If a ``model_dict`` lacks a key or names an unknown ``type``, or the layer
                matches no module of ``arch`` (:class:`camkit.LayerNotFoundError`).
        """
        if isinstance(target_layer, bool):
            verbose, target_layer = target_layer, None
        self.model_type: str | None = None
        if isinstance(arch, Mapping):
            if target_layer is not None:
                raise ArgumentTypeError(
                    "target_layer must be omitted when a model_dict is passed; put it in "
                    "model_dict['layer_name']"
                )
            missing = [key for key in ("arch", "layer_name") if key not in arch]
            if missing:
                raise InputError(
                    f"model_dict lacks {', '.join(repr(k) for k in missing)}; pass "
                    "dict(type='resnet', arch=model, layer_name='layer4')"
                )
            model_type = arch.get("type", arch.get("model_type"))
            if model_type is not None:
                _model_family(model_type)
                self.model_type = model_type
            target_layer = arch["layer_name"]
            input_size = input_size if input_size is not None else arch.get("input_size")
            arch = arch["arch"]
        if not isinstance(arch, nn.Module):
            raise ArgumentTypeError(
                f"arch must be a torch.nn.Module or a model_dict, got {type(arch).__name__}"
            )
        if target_layer is None:
            raise ArgumentTypeError(
                "target_layer is missing; pass the layer, e.g. GradCAM(model, model.layer4), or "
                "use GradCAM.from_config(arch=model, model_type='resnet', layer_name='layer4')"
            )
        if not isinstance(target_layer, nn.Module | str):
            raise ArgumentTypeError(
                "target_layer must be a submodule of arch or a layer name, got "
                f"{type(target_layer).__name__}"
            )
        resolve_layer(arch, target_layer)  # fail now, as 0.2.1 did, if the layer does not exist
        self.model_arch: nn.Module = arch
        self.target_layer: LayerSpec = target_layer
        if verbose:
            if input_size is None:
                print("pass input_size=(H, W) (or model_dict['input_size']) to print the map size")
            else:
                print("saliency_map size :", self.saliency_map_size(*input_size))

    @classmethod
    def from_config(
        cls, arch: nn.Module, model_type: str, layer_name: str, **kwargs: Any
    ) -> GradCAM:
        """Build from a torchvision model, its family and a pytorch-gradcam layer name.

        Args:
            arch: The model, e.g. ``torchvision.models.resnet101()``.
            model_type: One of :data:`MODEL_TYPES` ("alexnet", "vgg", "resnet", "densenet",
                "squeezenet", "efficientnet"); case-insensitive, and "resnet101" counts as "resnet".
            layer_name: The layer in pytorch-gradcam's style, e.g. "layer4", "features_29",
                "features_norm5", "features_12_expand3x3_activation" (dotted names work too).
            **kwargs: Passed to the constructor (``verbose``, ``input_size``).

        Returns:
            The new instance.

        Raises:
            ValueError: If ``model_type`` is unknown or ``layer_name`` matches no module.
            TypeError: If ``layer_name`` is not a string.
        """
        _model_family(model_type)
        if not isinstance(layer_name, str):
            raise ArgumentTypeError(
                f"layer_name must be a string such as 'layer4', got {type(layer_name).__name__}"
            )
        instance = cls(arch, layer_name, **kwargs)
        instance.model_type = model_type
        return instance

    def _explain(self, input: torch.Tensor, class_idx: Any = None) -> camkit.Explanation:
        return camkit.explain(
            self.model_arch,
            input,
            methods=(self.method,),
            layers=(self.target_layer,),
            target=_as_class_index(class_idx),
        )

    def forward(
        self, input: torch.Tensor, class_idx: Any = None, retain_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the saliency mask of ``input``.

        Args:
            input: Normalised images, (1, 3, H, W) (or (B, 3, H, W)).
            class_idx: The class to explain; None for the top-scoring class of each image. An int
                applies to every image; a sequence gives one class per image.
            retain_graph: Accepted for compatibility and ignored (camkit runs its own backward).

        Returns:
            ``(mask, logit)``: ``mask`` float32 (B, 1, H, W) in [0, 1] and ``logit``
            (B, num_classes), both detached and on ``input``'s device.

        Raises:
            TypeError: If ``input`` is not a tensor.
            ValueError: If ``input`` is not 4-D.
        """
        del retain_graph  # camkit frees its graph itself; there is nothing to retain
        if not isinstance(input, torch.Tensor):
            raise ArgumentTypeError(
                f"input must be a (1, 3, H, W) tensor, got {type(input).__name__}; "
                "convert with transforms.ToTensor() and add [None]"
            )
        if input.ndim != 4:
            raise InputError(
                f"input must have shape (1, 3, H, W), got {tuple(input.shape)}; "
                "add a batch dimension with input[None]"
            )
        explanation = self._explain(input, class_idx)
        saliency = explanation.maps[(explanation.layers[0], self.method)]
        mask = saliency.unsqueeze(1).to(device=input.device, dtype=torch.float32)
        logit = explanation.logits.to(input.device)
        return mask, logit

    def __call__(
        self, input: torch.Tensor, class_idx: Any = None, retain_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as :meth:`forward`."""
        return self.forward(input, class_idx, retain_graph)

    def saliency_map_size(self, *input_size: int) -> torch.Size:
        """Return the (h, w) size of the layer's map for an input of size ``input_size``.

        Args:
            *input_size: H and W of the input, e.g. ``saliency_map_size(224, 224)``.

        Returns:
            The spatial size of the raw map, before upsampling.

        Raises:
            ValueError: If ``input_size`` is not two positive integers.
        """
        if len(input_size) != 2 or not all(
            isinstance(s, numbers.Integral) and s > 0 for s in input_size
        ):
            raise InputError(
                f"input_size must be two positive ints (H, W), got {input_size!r}; "
                "call saliency_map_size(224, 224)"
            )
        parameter = next(self.model_arch.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        explanation = self._explain(torch.zeros(1, 3, *input_size, device=device))
        return explanation.raw[(explanation.layers[0], self.method)].shape[-2:]

    def __repr__(self) -> str:
        layer = (
            self.target_layer
            if isinstance(self.target_layer, str)
            else type(self.target_layer).__name__
        )
        return f"{type(self).__name__}(model={type(self.model_arch).__name__}, layer={layer!r})"


class GradCAMpp(GradCAM):
    """Grad-CAM++ with the interface of ``gradcam.GradCAMpp`` from pytorch-gradcam 0.2.1.

    The map is camkit's ``"gradcam++"`` (Eq. 19 of the paper), which differs from 0.2.1's; see
    the module documentation.
    """

    method: ClassVar[str] = "gradcam++"


def _jet_table() -> torch.Tensor:
    """The 256 colours of matplotlib's jet as a (256, 3) uint8 RGB tensor."""
    colours = matplotlib.colormaps["jet"].resampled(256)(np.arange(256))[:, :3]
    # Rounded like OpenCV's table (matplotlib's bytes=True truncates: 0.5 would give 127, not 128).
    return torch.from_numpy(np.rint(colours * 255).astype(np.uint8))


def visualize_cam(
    mask: torch.Tensor | np.ndarray, img: torch.Tensor | np.ndarray, alpha: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour a mask with jet and blend it with the image, like pytorch-gradcam 0.2.1.

    Args:
        mask: Values in [0, 1], shape (1, 1, H, W) as returned by :class:`GradCAM`; (H, W),
            (B, H, W) and (B, 1, H, W) are accepted too. NaN counts as 0.
        img: The un-normalised image, values in [0, 1], shape (3, H, W) or (1, 3, H, W)
            (or (B, 3, H, W) with a batch of masks).
        alpha: Factor applied to the heatmap before blending.

    Returns:
        ``(heatmap, result)`` on the CPU. ``heatmap``: float32 (3, H, W) RGB, the jet colour of
        ``floor(255 * mask)`` with channel values ``k / 255``, times ``alpha``. ``result``:
        ``heatmap + img`` divided by its maximum, of the same shape. For a batch of B > 1 masks
        both are (B, 3, H, W) and each image of ``result`` is divided by its own maximum.

    Raises:
        ValueError: If the shapes of ``mask`` and ``img`` do not fit together.
    """
    masks = torch.as_tensor(mask).detach().cpu()
    single = masks.ndim == 2 or (masks.ndim in (3, 4) and masks.shape[0] == 1)
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    elif masks.ndim == 2:
        masks = masks[None]
    elif masks.ndim != 3:
        raise InputError(
            f"mask must have shape (1, 1, H, W) or (H, W), got {tuple(masks.shape)}; "
            "pass the mask returned by GradCAM"
        )
    scaled = torch.nan_to_num(255 * masks.float(), nan=0.0).clamp(0, 255)
    indices = scaled.to(torch.uint8).long()  # truncates, as 0.2.1's uint8 cast did
    heatmap = _jet_table()[indices].permute(0, 3, 1, 2).float().div(255) * alpha

    image = torch.as_tensor(img).detach().cpu()
    if image.ndim == 3:
        image = image[None]
    batch_fits = image.ndim == 4 and image.shape[0] in (1, heatmap.shape[0])
    if not batch_fits or image.shape[1:] != heatmap.shape[1:]:
        raise InputError(
            f"img of shape {tuple(torch.as_tensor(img).shape)} does not fit mask of shape "
            f"{tuple(torch.as_tensor(mask).shape)}; pass img as (3, H, W) with the mask's H and W"
        )
    result = heatmap + image
    peak = result.amax(dim=(1, 2, 3), keepdim=True)
    result = torch.where(peak != 0, result / torch.where(peak != 0, peak, 1), result)
    if single:
        return heatmap[0], result[0]
    return heatmap, result


def normalize(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Return ``(tensor - mean) / std`` per channel for a (B, 3, H, W) tensor.

    Raises:
        TypeError: If ``tensor`` is not 4-D.
    """
    mean_t, std_t = _channel_stats(tensor, mean, std)
    return (tensor - mean_t) / std_t


def denormalize(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Return ``tensor * std + mean`` per channel for a (B, 3, H, W) tensor (undoes normalize).

    Raises:
        TypeError: If ``tensor`` is not 4-D.
    """
    mean_t, std_t = _channel_stats(tensor, mean, std)
    return tensor * std_t + mean_t


def _channel_stats(
    tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 4:
        raise ArgumentTypeError(
            "tensor must be a 4-D (B, C, H, W) tensor; add a batch dimension with tensor[None]"
        )
    dtype = tensor.dtype if tensor.is_floating_point() else torch.float32
    mean_t = torch.as_tensor(mean, dtype=dtype, device=tensor.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=dtype, device=tensor.device).view(1, -1, 1, 1)
    return mean_t, std_t


class Normalize:
    """Callable per-channel normalisation with an ``undo``, like ``gradcam.utils.Normalize``.

    Args:
        mean: Per-channel means, e.g. (0.485, 0.456, 0.406).
        std: Per-channel standard deviations, e.g. (0.229, 0.224, 0.225).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = mean
        self.std = std

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`do`."""
        return self.do(tensor)

    def do(self, tensor: torch.Tensor) -> torch.Tensor:
        """Normalise a (B, C, H, W) tensor."""
        return normalize(tensor, self.mean, self.std)

    def undo(self, tensor: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`do` on a (B, C, H, W) tensor."""
        return denormalize(tensor, self.mean, self.std)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"
