"""Grad-CAM++'s alpha where its denominator 2 G^2 + G^3 sum(A) is 0: numbers worked out by hand."""

from __future__ import annotations

import torch

from camkit import cam

# Channel 0 is signed: its activations sum to -2, and with G = 1 everywhere the denominator
# 2 G^2 + G^3 sum(A) = 2 - 2 = 0 while the numerator G^2 = 1 is not (the pole of alpha).
# Channel 1 is ordinary: sum 4, G = 1/2, denominator 2/4 + 4/8 = 1, alpha = 1/4,
# weight 4 positions x 1/4 x 1/2 = 1/2.
A = torch.tensor([[[[-1.0, -1.0], [0.5, -0.5]], [[1.0, 0.0], [0.0, 3.0]]]])
G = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), 0.5)])[None]


def test_denominator_exactly_zero_with_nonzero_gradient_gives_alpha_zero() -> None:
    sums = A.sum(dim=(2, 3), keepdim=True)
    denominator = 2 * G**2 + sums * G**3
    assert torch.equal(denominator[0, 0], torch.zeros(2, 2))  # exactly 0 in float32
    assert torch.equal(denominator[0, 1], torch.ones(2, 2))
    raw = cam.gradcam_plus_plus(cam.LayerTensors(A, G))
    # alpha_0 = 0, so w_0 = 0 and the map is ReLU(1/2 A_1).
    torch.testing.assert_close(raw[0], torch.tensor([[0.5, 0.0], [0.0, 1.5]]))
    # The authors' code divides by 1 instead (alpha_0 = G^2 = 1, w_0 = 4): another map.
    old = torch.relu(4 * A[0, 0] + 0.5 * A[0, 1])
    assert torch.equal(old, torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    assert not torch.allclose(raw[0], old)


def test_next_to_the_pole_alpha_is_large_and_finite() -> None:
    """Shift channel 0's sum by 1e-3 off the pole: alpha = 1 / (2 + G sum) = 1000 there."""
    shifted = A.clone()
    shifted[0, 0, 0, 0] += 1e-3  # sum -1.999, denominator 1e-3 (up to float rounding)
    raw = cam.gradcam_plus_plus(cam.LayerTensors(shifted, G))
    weight_0 = 4 * (1 / (2 - 1.999))  # 4 positions x alpha x G, with G = 1
    expected = torch.relu(weight_0 * shifted[0, 0] + 0.5 * shifted[0, 1])
    torch.testing.assert_close(raw[0], expected, rtol=1e-3, atol=1e-3)
    assert raw.max() > 1000  # the signed channel now dominates the map


def test_zero_gradient_is_zero_over_zero_and_drops_out() -> None:
    gradients = G.clone()
    gradients[0, 0] = 0.0  # channel 0: numerator and denominator both 0 everywhere
    raw = cam.gradcam_plus_plus(cam.LayerTensors(A, gradients))
    assert not torch.isnan(raw).any()
    torch.testing.assert_close(raw[0], torch.tensor([[0.5, 0.0], [0.0, 1.5]]))
