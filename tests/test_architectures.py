"""Every torchvision classifier, the common timm models and Hugging Face models, end to end.

Random weights (``weights=None``) at small inputs. Each model is explained as a batch of two, then
its second image alone; the checks: the automatic layer, maps (B, H, W) in [0, 1] with no NaN,
some gradient map that is not flat (patch tokens reach the score), batch = one by one, exactly
one forward pass per call once the layer is known, and the model left as it was.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

import camkit
from camkit.models import classification_models

#: The built-in methods that share one forward and one backward pass.
METHODS = [
    "gradcam",
    "gradcam++",
    "xgradcam",
    "hirescam",
    "layercam",
    "gradcam-elementwise",
    "eigencam",
    "eigengradcam",
]
GRADIENT_METHODS = [m for m in METHODS if m != "eigencam"]

#: Layer that ``layers="auto"`` picks, by torchvision family (name prefix).
TORCHVISION_AUTO = {
    "alexnet": "features",
    "convnext": "features",
    "densenet": "features",
    "efficientnet": "features",
    "googlenet": "inception5b",
    "inception": "Mixed_7c",
    "maxvit": "blocks.3",
    "mnasnet": "layers",
    "mobilenet": "features",
    "regnet": "trunk_output",
    "resnet": "layer4",
    "resnext": "layer4",
    "wide_resnet": "layer4",
    "shufflenet": "conv5",
    "squeezenet": "classifier.2",
    "swin": "norm",
    "vgg": "features",
    "vit": "encoder.layers.encoder_layer_{last}.ln_1",
}


def _hooks(model: nn.Module) -> list[int]:
    return [
        len(module._forward_hooks)
        + len(module._forward_pre_hooks)
        + len(module._backward_hooks)
        + len(getattr(module, "_backward_pre_hooks", {}))
        for module in model.modules()
    ]


def _agreement(actual: torch.Tensor, expected: torch.Tensor) -> str:
    """The numbers a failed batch-versus-one-by-one comparison needs, in one line."""
    difference = (actual - expected).abs()
    where = divmod(int(difference.argmax()), actual.shape[-1])
    pair = torch.stack([actual.flatten(), expected.flatten()]).double()
    correlation = float(torch.corrcoef(pair)[0, 1]) if pair.std(dim=1).min() > 0 else float("nan")
    return (
        f"max abs diff {float(difference.max()):.3g} at {where} "
        f"({float(actual[where]):.4f} alone vs {float(expected[where]):.4f} in the batch), "
        f"mean abs diff {float(difference.mean()):.3g}, correlation {correlation:.4f}, "
        f"{int((difference > 2e-4).sum())} of {difference.numel()} pixels beyond 2e-4"
    )


def _explain(model: nn.Module, x: torch.Tensor, methods: list[str]) -> camkit.Explanation:
    """``camkit.explain``, allowing only the MapWarning random weights may earn.

    A random classifier can have no positive evidence for a class at a layer: that map is zero
    everywhere after the ReLU, and camkit says so. Every other MapWarning (zero gradients,
    rounding noise, a softmax) fails, and so does a warning on a map that is not all zeros.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", camkit.MapWarning)  # kept in explanation.warnings
        explanation = camkit.explain(model, x, methods=methods)
    for message in explanation.warnings:
        assert "zero everywhere after the ReLU" in message or "training mode" in message, message
    for key, rows in explanation.flagged.items():
        raw = explanation.raw[key].flatten(1)
        assert all(not raw[row].any() for row in rows), (key, rows)
    return explanation


def check_model(
    model: nn.Module, size: tuple[int, int], expected_layer: str, methods: list[str] = METHODS
) -> camkit.Explanation:
    """Run the cross-cutting checks on one model; return the batch explanation."""
    state = {key: value.clone() for key, value in model.state_dict().items()}
    training = [module.training for module in model.modules()]
    requires_grad = [p.requires_grad for p in model.parameters()]
    hooks = _hooks(model)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *size, generator=generator)

    explanation = _explain(model, x, methods)
    assert explanation.layers == [expected_layer]
    for key, value in explanation.maps.items():
        assert value.shape == (2, *size), (key, tuple(value.shape))
        assert torch.isfinite(value).all(), (key, int((~torch.isfinite(value)).sum()), "not finite")
        assert value.min() >= 0 and value.max() <= 1, (key, float(value.min()), float(value.max()))
    # Flat maps everywhere would mean the layer's spatial positions do not reach the score.
    for image in range(2):
        peaks = {
            m: float(explanation.maps[(expected_layer, m)][image].max())
            for m in methods
            if m in GRADIENT_METHODS
        }
        assert any(peak > 0 for peak in peaks.values()), (image, peaks)

    # Batch = one by one, on the second image: its map must not depend on the first one (one
    # single-image call per model keeps the 100 models affordable).
    forwards = []
    handle = model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        single = _explain(model, x[1:], methods)
    finally:
        handle.remove()
    # one forward pass: the automatic layer is cached per model
    assert len(forwards) == 1, f"{len(forwards)} forward passes for one explain call"
    for key, value in single.maps.items():
        if key[1] == "xgradcam":
            # XGrad-CAM divides by channel sums, ~0 after a BatchNorm (DenseNet's norm5): the
            # float summation order of a batch alone moves its map.
            continue
        # Eigen-CAM is held to the same tolerance: its direction and sign are fixed by rules
        # (camkit.cam.eigencam) that float noise cannot flip on these models.
        batch_map = explanation.maps[key][1]
        close = torch.isclose(value[0], batch_map, atol=2e-4, rtol=1e-3)
        assert close.all(), f"{key} alone vs in a batch: {_agreement(value[0], batch_map)}"

    assert _hooks(model) == hooks, "hooks left on the model"
    assert [module.training for module in model.modules()] == training, "train/eval mode changed"
    assert [p.requires_grad for p in model.parameters()] == requires_grad, "requires_grad changed"
    assert all(p.grad is None for p in model.parameters()), "gradients left in .grad"
    after = model.state_dict()
    assert after.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(after[key], value), (key, float((after[key] - value).abs().max()))
    return explanation


def test_eigencam_after_a_layer_norm_is_not_flipped_by_rounding_noise() -> None:
    # A LayerNorm output has a zero channel mean at every position, so "agree with the channel
    # mean" cannot orient the component; the sign used to follow float noise (half the maps of
    # this test flipped). A relative change of 1e-6, like another batch size, must not move it.
    generator = torch.Generator().manual_seed(0)
    tokens = nn.functional.layer_norm(torch.randn(3, 4, 4, 96, generator=generator), (96,))
    activations = tokens.permute(0, 3, 1, 2)
    eigencam = camkit.cam.get_method("eigencam").function
    reference = eigencam(camkit.cam.LayerTensors(activations, None))
    signed = camkit.cam._first_component(activations).flatten(1)
    peaks = signed.gather(1, signed.abs().argmax(dim=1, keepdim=True)).squeeze(1)
    assert (peaks > 0).all(), f"largest-magnitude values {peaks.tolist()} are not all positive"
    for trial in range(10):
        noise = 1e-6 * torch.randn(activations.shape, generator=generator)
        moved = eigencam(camkit.cam.LayerTensors(activations * (1 + noise), None))
        close = torch.isclose(moved, reference, atol=1e-4 * float(reference.max()), rtol=1e-4)
        assert close.all(), f"trial {trial}: {_agreement(moved.flatten(1), reference.flatten(1))}"


def test_eigencam_after_a_relu_agrees_with_the_channel_mean() -> None:
    # Rule 1 of the sign: where the layer is active overall, the component is positive.
    generator = torch.Generator().manual_seed(1)
    activations = torch.relu(torch.randn(4, 32, 6, 6, generator=generator))
    activations[:, :, 1:3, 2:5] += 2.0  # an object: every channel fires there
    signed = camkit.cam._first_component(activations).flatten(1)
    mean_map = activations.mean(dim=1).flatten(1)
    mean_map = mean_map - mean_map.mean(dim=1, keepdim=True)
    agreement = (signed * mean_map).sum(dim=1)
    assert (agreement > 0).all(), agreement.tolist()


def _torchvision_case(name: str) -> tuple[dict[str, int], tuple[int, int], str]:
    family = next(f for f in sorted(TORCHVISION_AUTO, key=len, reverse=True) if name.startswith(f))
    expected = TORCHVISION_AUTO[family]
    if family == "vit":  # fixed image size: a 4x4 patch grid keeps the huge ones fast
        patch = int(name.split("_")[2])
        layers = {"b": 12, "l": 24, "h": 32}[name.split("_")[1]]
        return {"image_size": 4 * patch}, (4 * patch, 4 * patch), expected.format(last=layers - 1)
    if family == "maxvit":  # its 7x7 partitions need 224
        return {}, (224, 224), expected
    if family in ("alexnet", "inception"):  # their last stage collapses to 1x1 below ~100
        return {}, (128, 128), expected
    return {}, (64, 64), expected


@pytest.mark.parametrize("name", classification_models())
def test_torchvision(name: str) -> None:
    kwargs, size, expected = _torchvision_case(name)
    torch.manual_seed(0)
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = False  # the scipy-based init is slow and warns
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    if name.startswith("vit_"):
        # torchvision zero-initialises the ViT head: every gradient would be zero.
        nn.init.normal_(model.heads.head.weight, std=0.02)
    check_model(model, size, expected)


TIMM_AUTO = {
    "resnet50": "layer4",
    "efficientnet_b0": "bn2",
    "mobilenetv3_large_100": "blocks",
    "convnext_tiny": "stages",
    "regnety_008": "s4",
    "rexnet_100": "features",
    "vit_small_patch16_224": "blocks.11.norm1",
    "deit_small_distilled_patch16_224": "blocks.11.norm1",
    "swin_tiny_patch4_window7_224": "norm",
    "maxvit_tiny_tf_224": "stages",
}


@pytest.mark.parametrize("name", sorted(TIMM_AUTO))
def test_timm(name: str) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    transformer = any(key in name for key in ("vit_", "deit", "swin", "maxvit"))
    model = timm.create_model(name, pretrained=False, **({"img_size": 64} if transformer else {}))
    check_model(model, (64, 64), TIMM_AUTO[name])


def test_timm_vit_on_a_non_square_input_keeps_the_grid() -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(
        "deit_tiny_distilled_patch16_224", pretrained=False, img_size=(48, 80)
    )
    explanation = check_model(model, (48, 80), "blocks.11.norm1", ["gradcam", "layercam"])
    assert explanation.raw[("blocks.11.norm1", "gradcam")].shape == (2, 3, 5)


def test_timm_by_name_through_load_model() -> None:
    pytest.importorskip("timm")
    loaded = camkit.load_model("timm:regnety_008", weights=None)
    assert loaded.name == "timm:regnety_008" and loaded.categories[0] == "tench"
    assert loaded.preprocessing.crop_size == 224
    x = torch.randn(1, 3, 64, 64)
    explanation = camkit.explain(loaded, x, layers=["auto", "s3"])
    assert explanation.layers == ["s4", "s3"]
    assert explanation.model_name == "timm:regnety_008"


def test_timm_unknown_name_suggests_close_ones() -> None:
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match="closest: 'timm:resnet18'"):
        camkit.load_model("timm:resnt18", weights=None)


def test_timm_pretrained_offline_is_a_clear_error(monkeypatch) -> None:
    pytest.importorskip("timm")
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # fail at once instead of retrying
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        camkit.load_model("timm:resnet18")
    except ValueError as error:
        assert "cannot fetch timm weights for 'resnet18'" in str(error)
        assert "weights=None" in str(error)
    else:  # pragma: no cover - only with the weights in the local cache
        pytest.skip("timm resnet18 weights are cached locally")


def _hf_models() -> dict[str, tuple[object, str]]:
    transformers = pytest.importorskip("transformers")
    return {
        "vit": (
            transformers.ViTForImageClassification(
                transformers.ViTConfig(
                    image_size=64,
                    patch_size=16,
                    hidden_size=64,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    intermediate_size=128,
                    num_labels=10,
                )
            ),
            "",  # found by name in the test
        ),
        "convnext": (
            transformers.ConvNextForImageClassification(
                transformers.ConvNextConfig(
                    hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=10
                )
            ),
            "convnext.encoder.stages.3",
        ),
        "resnet": (
            transformers.ResNetForImageClassification(
                transformers.ResNetConfig(
                    embedding_size=16,
                    hidden_sizes=[16, 32, 64, 128],
                    depths=[1, 1, 1, 1],
                    num_labels=10,
                )
            ),
            "resnet.encoder.stages.3",
        ),
        "swin": (
            transformers.SwinForImageClassification(
                transformers.SwinConfig(
                    image_size=64,
                    patch_size=4,
                    embed_dim=16,
                    depths=[2, 2],
                    num_heads=[1, 2],
                    window_size=4,
                    num_labels=10,
                )
            ),
            "swin.layernorm",
        ),
    }


@pytest.mark.parametrize("family", ["vit", "convnext", "resnet", "swin"])
def test_hugging_face(family: str) -> None:
    torch.manual_seed(0)
    model, expected = _hf_models()[family]
    if family == "vit":  # the last block's first norm; the block list's name moved in 5.x
        names = [n for n, _ in model.named_modules() if n.endswith("layernorm_before")]
        expected = names[-1]
    check_model(model, (64, 64), expected)


def test_layer_whose_output_is_not_a_tensor_is_named() -> None:
    torch.manual_seed(0)
    model = torchvision.models.get_model("vit_b_32", weights=None, image_size=64)
    with pytest.raises(
        ValueError,
        match=r"layer 'encoder.layers.encoder_layer_11.self_attention' returned a tuple of "
        r"\(tensor \(1, 5, 768\), NoneType\), not a tensor",
    ):
        camkit.explain(
            model,
            torch.randn(1, 3, 64, 64),
            layers="encoder.layers.encoder_layer_11.self_attention",
        )


def test_layer_without_spatial_reading_is_named() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 64, 2))
    with pytest.raises(
        ValueError, match=r"layer '2' output has shape \(1, 2\), not \(N, C, h, w\)"
    ):
        camkit.explain(model, torch.randn(1, 3, 8, 8), layers="2")
    with pytest.raises(
        ValueError,
        match=r"last outputs: '0' AdaptiveAvgPool2d \(1, 3, 1, 1\), '1' Flatten \(1, 3\)",
    ) as error:
        camkit.explain(
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), torch.randn(1, 3, 8, 8)
        )
    assert "found no module with a spatial" in str(error.value)
