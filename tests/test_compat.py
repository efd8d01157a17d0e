"""Tests of camkit.compat, the stand-in for the pytorch-gradcam 0.2.1 API."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn
from torchvision import models, transforms
from torchvision.utils import make_grid

import camkit
from camkit.compat import (
    MODEL_TYPES,
    GradCAM,
    GradCAMpp,
    Normalize,
    denormalize,
    normalize,
    visualize_cam,
)

# Random weights: some maps have no positive evidence, and camkit says so (a MapWarning).
pytestmark = pytest.mark.filterwarnings("ignore::camkit.MapWarning")

SIZE = 64  # the smallest convenient size every tutorial architecture accepts (AlexNet needs > 32)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
METHODS = {GradCAM: "gradcam", GradCAMpp: "gradcam++"}


def _jet(index: int) -> torch.Tensor:
    """matplotlib's jet colour number ``index`` of 256, as (r, g, b) multiples of 1/255."""
    rgb = matplotlib.colormaps["jet"](index)[:3]
    return torch.tensor(np.rint(np.array(rgb) * 255) / 255, dtype=torch.float32)


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(module._forward_hooks)
        + len(module._forward_pre_hooks)
        + len(module._backward_hooks)
        + len(module._backward_pre_hooks)
        for module in model.modules()
    )


@pytest.fixture(scope="module")
def torch_img() -> torch.Tensor:
    return torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def normed_torch_img(torch_img: torch.Tensor) -> torch.Tensor:
    return transforms.Normalize(MEAN, STD)(torch_img)[None]


@pytest.fixture(scope="module")
def configs() -> list[dict]:
    """The tutorial's five models and layers (random weights: no download)."""
    torch.manual_seed(0)
    alexnet = models.alexnet(weights=None)
    vgg = models.vgg16(weights=None)
    resnet = models.resnet101(weights=None)
    densenet = models.densenet161(weights=None)
    squeezenet = models.squeezenet1_1(weights=None)
    return [
        dict(model_type="alexnet", arch=alexnet, layer_name="features_11"),
        dict(model_type="vgg", arch=vgg, layer_name="features_29"),
        dict(model_type="resnet", arch=resnet, layer_name="layer4"),
        dict(model_type="densenet", arch=densenet, layer_name="features_norm5"),
        dict(
            model_type="squeezenet",
            arch=squeezenet,
            layer_name="features_12_expand3x3_activation",
        ),
    ]


@pytest.fixture(scope="module")
def tutorial(configs, torch_img, normed_torch_img) -> dict:
    """Run the tutorial's code unchanged but for its imports; keep what it computed."""
    device = "cpu"
    masks = []
    # --- tutorial code ---
    for config in configs:
        config["arch"].to(device).eval()
    cams = [[cls.from_config(**config) for cls in (GradCAM, GradCAMpp)] for config in configs]
    images = []
    for gradcam, gradcam_pp in cams:
        mask, _ = gradcam(normed_torch_img)
        heatmap, result = visualize_cam(mask, torch_img)
        mask_pp, _ = gradcam_pp(normed_torch_img)
        heatmap_pp, result_pp = visualize_cam(mask_pp, torch_img)
        images.extend([torch_img.cpu(), heatmap, heatmap_pp, result, result_pp])
        masks.append((mask, mask_pp))
    grid_image = make_grid(images, nrow=5)
    # --- end of tutorial code ---
    return dict(cams=cams, images=images, grid=grid_image, masks=masks)


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return models.resnet18(weights=None).eval()


def test_tutorial_runs_and_builds_the_grid(tutorial) -> None:
    assert tutorial["grid"].shape == (3, 5 * (SIZE + 2) + 2, 5 * (SIZE + 2) + 2)
    for image in tutorial["images"]:
        assert image.shape == (3, SIZE, SIZE)
        assert image.dtype == torch.float32
        assert image.device.type == "cpu"
        assert image.min() >= 0 and image.max() <= 1


@pytest.mark.parametrize("index", range(5), ids=MODEL_TYPES[:5])
@pytest.mark.parametrize("cls", [GradCAM, GradCAMpp], ids=["gradcam", "gradcam++"])
def test_tutorial_masks_equal_camkit_maps(tutorial, configs, normed_torch_img, index, cls):
    config = configs[index]
    mask = tutorial["masks"][index][cls is GradCAMpp]
    assert mask.shape == (1, 1, SIZE, SIZE)
    assert mask.dtype == torch.float32
    assert not mask.requires_grad
    assert mask.min() == 0 and mask.max() == 1  # in [0, 1], and not a constant map
    explanation = camkit.explain(
        config["arch"], normed_torch_img, methods=(METHODS[cls],), layers=(config["layer_name"],)
    )
    expected = explanation.maps[(explanation.layers[0], METHODS[cls])]
    torch.testing.assert_close(mask[:, 0], expected, atol=1e-6, rtol=0)
    assert _hook_count(config["arch"]) == 0


def test_tutorial_layer_names_resolve_to_the_modules_0_2_1_used(tutorial) -> None:
    expected = [
        "features.11",
        "features.29",
        "layer4",
        "features.norm5",
        "features.12.expand3x3_activation",
    ]
    for (gradcam, _), name in zip(tutorial["cams"], expected, strict=True):
        explanation = gradcam._explain(torch.zeros(1, 3, SIZE, SIZE))
        assert explanation.layers == [name]


def test_logit_is_the_model_output(resnet18, normed_torch_img) -> None:
    mask, logit = GradCAM.from_config(model_type="resnet", arch=resnet18, layer_name="layer4")(
        normed_torch_img
    )
    with torch.no_grad():
        expected = resnet18(normed_torch_img)
    assert logit.shape == (1, 1000)
    torch.testing.assert_close(logit, expected, atol=1e-5, rtol=1e-5)
    assert mask.device == normed_torch_img.device


def test_class_idx_is_honoured(resnet18, normed_torch_img) -> None:
    cam = GradCAM.from_config(model_type="resnet", arch=resnet18, layer_name="layer1_basicblock0")
    top, _ = cam(normed_torch_img)
    explanation = camkit.explain(
        resnet18, normed_torch_img, methods=("gradcam",), layers=("layer1.0",), target=None
    )
    torch.testing.assert_close(
        top[:, 0], explanation.maps[("layer1.0", "gradcam")], atol=1e-6, rtol=0
    )
    others = [c for c in range(5) if c != int(explanation.targets[0, 0])]
    differs = False
    for class_idx in others[:3]:
        explanation = camkit.explain(
            resnet18, normed_torch_img, methods=("gradcam",), layers=("layer1.0",), target=class_idx
        )
        expected = explanation.maps[("layer1.0", "gradcam")]
        assert int(explanation.targets[0, 0]) == class_idx
        for index in (class_idx, np.int64(class_idx), torch.tensor(class_idx)):
            mask, _ = cam(normed_torch_img, class_idx=index)
            torch.testing.assert_close(mask[:, 0], expected, atol=1e-6, rtol=0)
        differs |= not torch.allclose(mask, top, atol=1e-3)
    assert differs, "the map of another class should differ from the top class's"


def test_no_hooks_left_on_the_model(resnet18, normed_torch_img) -> None:
    assert _hook_count(resnet18) == 0
    for cls in (GradCAM, GradCAMpp):
        cam = cls.from_config(model_type="resnet", arch=resnet18, layer_name="layer4")
        assert _hook_count(resnet18) == 0
        cam(normed_torch_img, class_idx=1)
        cam.saliency_map_size(SIZE, SIZE)
        assert _hook_count(resnet18) == 0


def test_constructor_forms_agree(resnet18, normed_torch_img, capsys) -> None:
    reference, _ = GradCAMpp.from_config(model_type="ResNet18", arch=resnet18, layer_name="layer4")(
        normed_torch_img
    )
    model_dict = dict(type="resnet", arch=resnet18, layer_name="layer4", input_size=(SIZE, SIZE))
    for cam in (
        GradCAMpp(resnet18, resnet18.layer4),  # 0.2.1
        GradCAMpp(resnet18, "layer4"),
        GradCAMpp(model_dict),  # the GitHub version
        GradCAMpp(model_dict, verbose=True),
        GradCAMpp(model_dict, True),
    ):
        mask, _ = cam(normed_torch_img)
        torch.testing.assert_close(mask, reference, atol=1e-6, rtol=0)
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["saliency_map size : torch.Size([2, 2])"] * 2
    assert GradCAM(resnet18, "layer4").saliency_map_size(SIZE, SIZE) == (2, 2)


def test_batch_gives_one_mask_per_image(resnet18, normed_torch_img) -> None:
    batch = torch.cat([normed_torch_img, normed_torch_img.flip(-1)])
    cam = GradCAM.from_config(model_type="resnet", arch=resnet18, layer_name="layer3")
    mask, logit = cam(batch)
    assert mask.shape == (2, 1, SIZE, SIZE) and logit.shape == (2, 1000)
    single, _ = cam(batch[1:])
    # Batches of 2+ run channels-last on the CPU: summation order differs from one image alone.
    torch.testing.assert_close(mask[1:], single, atol=1e-5, rtol=0)
    mask, _ = cam(batch, class_idx=[3, 7])
    explanation = camkit.explain(resnet18, batch, layers=("layer3",), target=[3, 7])
    assert explanation.targets[:, 0].tolist() == [3, 7]
    torch.testing.assert_close(
        mask[:, 0], explanation.maps[("layer3", "gradcam")], atol=1e-6, rtol=0
    )
    heatmap, result = visualize_cam(mask, batch * 0 + 0.5)
    assert heatmap.shape == result.shape == (2, 3, SIZE, SIZE)
    assert result.amax(dim=(1, 2, 3)).tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        (dict(model_type="inception", layer_name="layer4"), ValueError, "unknown model_type"),
        (dict(model_type="resnet", layer_name="layer9"), ValueError, "layer9"),
        (dict(model_type="resnet", layer_name=4), TypeError, "layer_name"),
    ],
)
def test_from_config_errors_are_one_line(resnet18, kwargs, error, words) -> None:
    with pytest.raises(error, match=words) as info:
        GradCAM.from_config(arch=resnet18, **kwargs)
    assert isinstance(info.value, camkit.CamkitError)
    assert "\n" not in str(info.value)


def test_call_errors(resnet18, torch_img) -> None:
    cam = GradCAM.from_config(model_type="resnet", arch=resnet18, layer_name="layer4")
    with pytest.raises(ValueError, match=r"\[None\]"):
        cam(torch_img)
    with pytest.raises(TypeError, match="class_idx"):
        cam(torch_img[None], class_idx="cat")
    with pytest.raises(TypeError, match="target_layer"):
        GradCAM(resnet18)
    with pytest.raises(ValueError, match="unknown model_type"):
        GradCAM(dict(type="lenet", arch=resnet18, layer_name="layer4"))


# --- visualize_cam ----------------------------------------------------------------------------


def test_zero_mask_is_dark_blue_in_rgb_order() -> None:
    heatmap, result = visualize_cam(torch.zeros(1, 1, 4, 5), torch.zeros(3, 4, 5))
    assert heatmap.shape == result.shape == (3, 4, 5)
    assert heatmap.dtype == result.dtype == torch.float32
    blue = torch.tensor([0, 0, 128 / 255])
    torch.testing.assert_close(heatmap, blue[:, None, None].expand(3, 4, 5))
    torch.testing.assert_close(
        heatmap[:, 0, 0], torch.tensor([0.0, 0.0, 0.5]), atol=1 / 255, rtol=0
    )
    torch.testing.assert_close(result, torch.tensor([0.0, 0.0, 1.0])[:, None, None].expand(3, 4, 5))


def test_full_mask_is_dark_red_and_nan_counts_as_zero() -> None:
    mask = torch.ones(1, 1, 2, 2)
    mask[..., 0, 0] = float("nan")
    heatmap, _ = visualize_cam(mask, torch.zeros(3, 2, 2))
    torch.testing.assert_close(heatmap[:, 1, 1], torch.tensor([128 / 255, 0, 0]))
    torch.testing.assert_close(heatmap[:, 0, 0], torch.tensor([0, 0, 128 / 255]))


def test_heatmap_truncates_like_a_uint8_cast_and_blends() -> None:
    generator = torch.Generator().manual_seed(1)
    mask = torch.rand(1, 1, 6, 7, generator=generator)
    mask[..., 0, :4] = torch.tensor([0.5, 1 / 255 - 1e-4, 254.999 / 255, 0.3])
    img = torch.rand(1, 3, 6, 7, generator=generator)
    heatmap, result = visualize_cam(mask, img)
    indices = (mask[0, 0] * 255).to(torch.uint8)
    assert indices[0, :4].tolist() == [127, 0, 254, 76]
    expected = torch.stack([_jet(int(i)) for i in indices.flatten()]).T.reshape(3, 6, 7)
    torch.testing.assert_close(heatmap, expected, atol=1e-7, rtol=0)
    blended = heatmap + img[0]
    torch.testing.assert_close(result, blended / blended.max(), atol=1e-6, rtol=0)
    assert result.max() == 1
    # Along jet, blue dominates low values, green the middle, red high values.
    ramp, _ = visualize_cam(torch.tensor([[0.05, 0.5, 0.95]]), torch.zeros(3, 1, 3))
    assert ramp.argmax(dim=0)[0].tolist() == [2, 1, 0]


def test_alpha_scales_the_heatmap() -> None:
    mask = torch.linspace(0, 1, 12).reshape(1, 1, 3, 4)
    img = torch.full((3, 3, 4), 0.25)
    heatmap, _ = visualize_cam(mask, img)
    half, result = visualize_cam(mask, img, alpha=0.5)
    torch.testing.assert_close(half, heatmap * 0.5)
    torch.testing.assert_close(result, (half + img) / (half + img).max())


def test_visualize_cam_shape_errors() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        visualize_cam(torch.zeros(1, 1, 4, 4), torch.zeros(3, 5, 5))
    with pytest.raises(ValueError, match="mask must have shape"):
        visualize_cam(torch.zeros(1, 2, 4, 4), torch.zeros(3, 4, 4))


def test_normalize_helpers_round_trip(normed_torch_img, torch_img) -> None:
    normalizer = Normalize(MEAN, STD)
    torch.testing.assert_close(normalizer(torch_img[None]), normed_torch_img)
    torch.testing.assert_close(normalizer.undo(normalizer.do(torch_img[None])), torch_img[None])
    torch.testing.assert_close(
        denormalize(normalize(torch_img[None], MEAN, STD), MEAN, STD), torch_img[None]
    )
    with pytest.raises(TypeError, match="4-D"):
        normalize(torch_img, MEAN, STD)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_mask_stays_on_the_input_device(normed_torch_img, torch_img) -> None:
    torch.manual_seed(0)
    model = models.resnet18(weights=None).cuda().eval()
    cam = GradCAMpp.from_config(model_type="resnet", arch=model, layer_name="layer4")
    mask, logit = cam(normed_torch_img.cuda())
    assert mask.device.type == logit.device.type == "cuda"
    assert mask.shape == (1, 1, SIZE, SIZE)
    heatmap, result = visualize_cam(mask, torch_img.cuda())
    assert heatmap.device.type == result.device.type == "cpu"
    assert _hook_count(model) == 0


def test_the_tutorial_loop_runs_on_the_offline_lite_models() -> None:
    """Offline, lesson 0 runs the tutorial's from_config loop unchanged on EfficientNet-Lite."""
    lite = camkit.load_model("efficientnet_lite0")
    config = dict(model_type="efficientnet", arch=lite.model, layer_name="_blocks_15")
    x = lite.preprocessing.normalize(
        lite.preprocessing.pixels(camkit.sample_image("water-bird"))
    )[None]
    mask, logit = GradCAM.from_config(**config)(x)
    expected = camkit.explain(lite, x, layers="_blocks.15").maps[("_blocks.15", "gradcam")]
    torch.testing.assert_close(mask[:, 0], expected, atol=1e-5, rtol=0)
    assert camkit.load_model().categories[int(logit.argmax())] == "spoonbill"
