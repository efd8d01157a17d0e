"""Spatial views: token and channels-last outputs read as (B, C, h, w), and written back."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camkit
from camkit._spatial import SpatialView, fits_input, infer_view, prefix_tokens, spatial_view


def tokens_from(spatial: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, P + h*w, C): the prefix tokens, then patches in row-major order."""
    return torch.cat([prefix, spatial.flatten(2).transpose(1, 2)], dim=1)


class TokenNet(nn.Module):
    """A tiny ViT-like model: patch embedding, class (and optional distillation) token, a norm.

    The head reads the class token and the mean of the patch tokens, so patches reach the score.
    """

    def __init__(self, distilled: bool = False, channels: int = 6, patch: int = 4) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, channels, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, channels))
        if distilled:
            self.dist_token = nn.Parameter(torch.randn(1, 1, channels))
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        prefix = [self.cls_token] + ([self.dist_token] if hasattr(self, "dist_token") else [])
        tokens = torch.cat([p.expand(x.shape[0], -1, -1) for p in prefix] + [patches], dim=1)
        tokens = self.norm(tokens)
        return self.head(tokens[:, 0] + tokens[:, len(prefix) :].mean(dim=1))


def test_class_token_is_dropped_and_the_grid_comes_from_the_input() -> None:
    spatial = torch.randn(2, 5, 4, 4)
    raw = tokens_from(spatial, torch.full((2, 1, 5), 99.0))
    view = infer_view(raw, (64, 64), nn.LayerNorm(5), prefix=1)
    assert view == SpatialView("tokens", (4, 4), 1)
    assert torch.equal(view.to_spatial(raw), spatial)


def test_distillation_and_register_tokens_are_counted_from_the_model() -> None:
    assert prefix_tokens(TokenNet()) == 1
    assert prefix_tokens(TokenNet(distilled=True)) == 2
    registers = TokenNet()
    registers.register_tokens = nn.Parameter(torch.zeros(1, 4, 6))
    assert prefix_tokens(registers) == 5
    declared = nn.Linear(2, 2)
    declared.num_prefix_tokens = 3  # timm declares it, registers included
    assert prefix_tokens(declared) == 3
    assert prefix_tokens(nn.Conv2d(3, 3, 1)) is None

    spatial = torch.randn(1, 6, 2, 3)
    raw = tokens_from(spatial, torch.randn(1, 5, 6))
    view = infer_view(raw, (32, 48), nn.LayerNorm(6), prefix=5)
    assert view == SpatialView("tokens", (2, 3), 5)
    assert torch.equal(view.to_spatial(raw), spatial)


def test_non_square_inputs_keep_rows_and_columns_apart() -> None:
    spatial = torch.arange(2 * 3 * 5.0).reshape(1, 2, 3, 5)
    raw = tokens_from(spatial, torch.zeros(1, 2, 2))
    assert infer_view(raw, (48, 80), prefix=2) == SpatialView("tokens", (3, 5), 2)
    assert infer_view(raw, (80, 48), prefix=2) == SpatialView("tokens", (5, 3), 2)
    # 15 patches cannot tile a square 64x64 input: no reading, and a reason.
    reason = infer_view(raw, (64, 64), prefix=2)
    assert isinstance(reason, str) and "form no (h, w) grid" in reason


def test_prefix_tokens_are_not_guessed_from_sizes() -> None:
    # 17 tokens: 1 class token + 4x4 patches, but the model declares no class token.
    raw = torch.randn(1, 17, 8)
    assert isinstance(infer_view(raw, (64, 64)), str)
    with pytest.raises(ValueError, match=r"layer 'blocks' output cannot be seen.*`reshape=`"):
        spatial_view("blocks", raw, (64, 64))


def test_channels_last_is_recognised_by_grid_and_by_module() -> None:
    spatial = torch.randn(1, 96, 8, 8)
    raw = spatial.permute(0, 2, 3, 1)  # Swin's (B, h, w, C)
    view = infer_view(raw, (64, 64))
    assert view == SpatialView("channels_last", (8, 8))
    assert torch.equal(view.to_spatial(raw), spatial)
    assert infer_view(spatial, (64, 64)) == SpatialView("channels_first", (8, 8))
    # 8 channels on an 8x8 grid read both ways: the module settles it...
    both = torch.randn(1, 8, 8, 8)
    assert infer_view(both, (64, 64), nn.LayerNorm(8)).layout == "channels_last"
    assert infer_view(both, (64, 64), nn.Conv2d(8, 8, 1)).layout == "channels_first"
    assert infer_view(both, (64, 64), nn.BatchNorm2d(8)).layout == "channels_first"
    # ... a block with nothing that works on the last axis follows PyTorch's channels-first ...
    assert infer_view(both, (64, 64), nn.GELU()).layout == "channels_first"
    # ... and a block that could emit either is an error that suggests reshape=.
    with pytest.raises(
        ValueError, match=r"reads as \(B, C, h, w\) and as \(B, h, w, C\).*reshape="
    ):
        spatial_view("act", both, (64, 64), nn.Sequential(nn.Linear(8, 8), nn.GELU()))


def test_grids_fit_the_input_by_one_downsampling_factor() -> None:
    assert fits_input((7, 7), (224, 224))
    assert fits_input((8, 8), (299, 299))  # Inception's padding-free stem
    assert fits_input((6, 6), (8, 8))  # an unpadded 3x3 convolution
    assert fits_input((3, 5), (48, 80))
    assert not fits_input((5, 3), (48, 80))
    assert not fits_input((7, 768), (224, 224))
    assert not fits_input((56, 96), (224, 224))


def test_from_spatial_round_trip_keeps_prefix_tokens() -> None:
    spatial = torch.randn(2, 4, 3, 2)
    prefix = torch.randn(2, 2, 4)
    raw = tokens_from(spatial, prefix)
    view = SpatialView("tokens", (3, 2), 2)
    assert torch.equal(view.from_spatial(view.to_spatial(raw), raw), raw)
    ablated = spatial.clone()
    ablated[:, 1] = 0
    written = view.from_spatial(ablated, raw)
    assert torch.equal(written[:, :2], prefix)
    assert torch.equal(view.to_spatial(written), ablated)

    last = SpatialView("channels_last", (3, 2))
    channels_last = spatial.permute(0, 2, 3, 1)
    assert torch.equal(last.from_spatial(ablated, channels_last), ablated.permute(0, 2, 3, 1))


def test_user_reshape_is_inverted_when_it_selects_indices() -> None:
    spatial = torch.randn(2, 4, 3, 2)
    raw = tokens_from(spatial, torch.randn(2, 1, 4))

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 1:].transpose(1, 2).unflatten(2, (3, 2))

    view = spatial_view("blocks.0", raw, (12, 8), reshape=reshape)
    assert view.layout == "custom" and view.grid == (3, 2)
    ablated = spatial.clone()
    ablated[:, 2] = 0
    expected = SpatialView("tokens", (3, 2), 1).from_spatial(ablated, raw)
    torch.testing.assert_close(view.from_spatial(ablated, raw), expected)

    doubled = spatial_view("blocks.0", raw, (12, 8), reshape=lambda t: 2 * reshape(t))
    with pytest.raises(ValueError, match="not an index selection"):
        doubled.from_spatial(ablated, raw)


def test_user_reshape_errors_name_the_argument() -> None:
    raw = torch.randn(2, 5, 4)
    with pytest.raises(TypeError, match="`reshape` must be a function"):
        spatial_view("x", raw, (8, 8), reshape="tokens")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`reshape` mapped layer 'x' output \(2, 5, 4\)"):
        spatial_view("x", raw, (8, 8), reshape=lambda t: t[:, 1:])


def _grad_cam_by_hand(model: TokenNet, x: torch.Tensor, prefix: int, grid: tuple[int, int]):
    """Grad-CAM at ``norm`` from autograd directly: relu(sum_c mean_hw(dy/dA) A)."""
    captured = {}
    handle = model.norm.register_forward_hook(lambda _m, _i, out: captured.setdefault("a", out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    top = logits.argmax(dim=1)
    (grad,) = torch.autograd.grad(logits.gather(1, top[:, None]).sum(), captured["a"])

    def spatial(t: torch.Tensor) -> torch.Tensor:
        return t[:, prefix:].reshape(t.shape[0], *grid, -1).permute(0, 3, 1, 2)

    a, g = spatial(captured["a"].detach()), spatial(grad)
    return torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1))


@pytest.mark.parametrize("distilled", [False, True])
def test_token_model_end_to_end_matches_a_hand_computed_grad_cam(distilled: bool) -> None:
    torch.manual_seed(0)
    model = TokenNet(distilled=distilled).eval()
    x = torch.randn(2, 3, 12, 20)  # non-square: a 3x5 patch grid
    explanation = camkit.explain(model, x, methods="gradcam")
    assert explanation.layers == ["norm"]  # the patch embedding is earlier; the norm is last
    expected = _grad_cam_by_hand(model, x, 2 if distilled else 1, (3, 5))
    torch.testing.assert_close(explanation.raw[("norm", "gradcam")], expected)

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, -15:].unflatten(1, (3, 5)).permute(0, 3, 1, 2)

    custom = camkit.explain(model, x, methods="gradcam", layers="norm", reshape=reshape)
    torch.testing.assert_close(custom.raw[("norm", "gradcam")], expected)


def test_vit_last_norm_is_skipped_when_the_head_reads_only_the_class_token() -> None:
    class ClassTokenHead(TokenNet):
        def __init__(self) -> None:
            super().__init__()
            self.block_norm = nn.LayerNorm(6)
            self.mix = nn.Linear(6, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            patches = self.patch_embed(x).flatten(2).transpose(1, 2)
            tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), patches], dim=1)
            normed = self.block_norm(tokens)
            # Attention-like mixing: the class token gathers the patch tokens.
            tokens = tokens + self.mix(normed).softmax(dim=1) * normed.sum(dim=1, keepdim=True)
            return self.head(self.norm(tokens)[:, 0])

    torch.manual_seed(0)
    model = ClassTokenHead().eval()
    x = torch.randn(1, 3, 16, 16)
    layers = camkit.list_layers(model, input_size=(16, 16))
    assert [info.name for info in layers if info.is_auto] == ["block_norm"]
    # At the final norm only the class token gets a gradient: a flat, all-zero Grad-CAM.
    with pytest.warns(camkit.MapWarning, match="every gradient"):
        final = camkit.explain(model, x, layers="norm", methods="gradcam")
    assert final.raw[("norm", "gradcam")].abs().max() == 0
    chosen = camkit.explain(model, x, methods="gradcam")
    assert chosen.raw[("block_norm", "gradcam")].abs().max() > 0


def test_patch_grid_tries_only_the_strides_that_can_fit() -> None:
    """The narrowed search agrees with trying every stride, on every small grid and input."""
    from camkit._spatial import _patch_grid

    def every_stride(grid: tuple[int, int], size: tuple[int, int]) -> bool:
        return any(
            all(c in (p // s, -(-p // s)) for c, p in zip(grid, size, strict=True))
            for s in range(1, max(size) + 1)
        )

    checked = 0
    for big_h in range(1, 60):
        for big_w in (1, 2, 5, 17, 33, 59, 64):
            for h in range(1, big_h + 3):
                for w in (1, 2, 3, 7, 16, 40, 70):
                    assert _patch_grid((h, w), (big_h, big_w)) == every_stride(
                        (h, w), (big_h, big_w)
                    ), (h, w, big_h, big_w)
                    checked += 1
    assert checked > 10_000
    assert _patch_grid((14, 14), (224, 224)) and not _patch_grid((15, 13), (224, 224))
