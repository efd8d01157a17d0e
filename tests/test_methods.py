"""Each method against numbers worked out by hand on a model whose gradients are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camkit
from tests.conftest import MaskedLinear

A0 = [[1.0, 2.0], [3.0, 4.0]]
A1 = [[4.0, 0.0], [0.0, 1.0]]
# Class 0 weights (1, -1); the mask M = [[1, 0], [0, 2]], so G_0 = M and G_1 = -M.
WEIGHT = torch.tensor([[1.0, -1.0], [0.5, 0.5]])
MASK = torch.tensor([[1.0, 0.0], [0.0, 2.0]])

# Worked out on paper (see the derivations in each comment).
GOLDEN_RAW = {
    # w = mean(G) = (0.75, -0.75); ReLU(0.75 (A0 - A1)) = ReLU([[-2.25, 1.5], [2.25, 2.25]])
    "gradcam": [[0.0, 1.5], [2.25, 2.25]],
    # sum_k G_k A_k = [[1, 0], [0, 8]] + [[-4, 0], [0, -2]] = [[-3, 0], [0, 6]]
    "hirescam": [[0.0, 0.0], [0.0, 6.0]],
    # sum_k ReLU(G_k A_k) = [[1, 0], [0, 8]] + 0
    "gradcam-elementwise": [[1.0, 0.0], [0.0, 8.0]],
    # ReLU(sum_k ReLU(G_k) A_k) = ReLU(M * A0)
    "layercam": [[1.0, 0.0], [0.0, 8.0]],
    # w_0 = (1*1 + 4*2) / 10 = 0.9, w_1 = (4*-1 + 1*-2) / 5 = -1.2; ReLU(0.9 A0 - 1.2 A1)
    "xgradcam": [[0.0, 1.8], [2.7, 2.4]],
    # alpha_0 = G^2 / (2G^2 + 10 G^3): 1/12 at G=1, 4/88 at G=2, 0 where G=0;
    # channel 1 has ReLU(G_1) = 0 everywhere, so w_1 = 0.
    # w_0 = 1/12 * 1 + 1/22 * 2 = 0.1742424; map = w_0 * A0
    "gradcam++": [[0.1742424, 0.3484848], [0.5227273, 0.6969697]],
    # Positions as samples (1,4), (2,0), (3,0), (4,1); centred; first eigenvector of the scatter
    # [[5, -4.5], [-4.5, 10.75]] is (0.48042, -0.87705); projections (-3.1325, 0.8561, 1.3365,
    # 0.9399) correlate negatively with the channel mean, so the sign flips; ReLU keeps one.
    "eigencam": [[3.1325, 0.0], [0.0, 0.0]],
}


@pytest.fixture
def masked_model() -> MaskedLinear:
    return MaskedLinear(WEIGHT, MASK).eval()


@pytest.fixture
def activations() -> torch.Tensor:
    return torch.tensor([[A0, A1]])


def test_every_builtin_method_is_registered() -> None:
    assert camkit.list_methods() == sorted(
        [
            "gradcam",
            "gradcam++",
            "xgradcam",
            "hirescam",
            "layercam",
            "gradcam-elementwise",
            "eigencam",
            "eigengradcam",
            "scorecam",
            "sscam",
            "iscam",
            "ablationcam",
            "smoothgradcam++",
            "guided-backprop",
            "guided-gradcam",
        ]
    )


@pytest.mark.parametrize("method", sorted(GOLDEN_RAW))
def test_raw_map_matches_hand_computation(masked_model, activations, method) -> None:
    explanation = camkit.explain(
        masked_model, activations, methods=method, layers="features", target=0
    )
    raw = explanation.raw[("features", method)]
    assert raw.shape == (1, 2, 2)
    torch.testing.assert_close(raw[0], torch.tensor(GOLDEN_RAW[method]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", sorted(GOLDEN_RAW))
def test_maps_are_the_raw_maps_min_max_normalised(masked_model, activations, method) -> None:
    explanation = camkit.explain(
        masked_model, activations, methods=method, layers="features", target=0
    )
    expected = torch.tensor(GOLDEN_RAW[method])
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    torch.testing.assert_close(
        explanation.maps[("features", method)][0], expected, atol=1e-4, rtol=1e-4
    )


def _numpy_first_component(features: np.ndarray) -> np.ndarray:
    """Independent reference: numpy SVD of the centred (positions x channels) matrix."""
    c, h, w = features.shape
    samples = features.reshape(c, h * w).T
    centred = samples - samples.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projection = centred @ vt[0]
    reference = samples.mean(axis=1) - samples.mean()
    if projection @ reference < 0:
        projection = -projection
    return np.maximum(projection, 0).reshape(h, w)


def test_eigen_methods_match_numpy_svd_on_random_activations() -> None:
    torch.manual_seed(1)
    weight = torch.randn(3, 6)
    mask = torch.rand(5, 4)
    model = MaskedLinear(weight, mask).eval()
    activations = torch.rand(2, 6, 5, 4)
    explanation = camkit.explain(
        model, activations, methods=["eigencam", "eigengradcam"], layers="features", target=[1, 2]
    )
    for b, target in enumerate([1, 2]):
        a = activations[b].double().numpy()
        grads = (weight[target][:, None, None] * mask).double().numpy()
        expected_eigen = _numpy_first_component(a)
        expected_eigengrad = _numpy_first_component(a * grads)
        np.testing.assert_allclose(
            explanation.raw[("features", "eigencam")][b].numpy(), expected_eigen, atol=1e-4
        )
        np.testing.assert_allclose(
            explanation.raw[("features", "eigengradcam")][b].numpy(), expected_eigengrad, atol=1e-4
        )


def test_eigencam_uses_the_gram_matrix_when_positions_are_fewer_than_channels() -> None:
    torch.manual_seed(2)
    model = MaskedLinear(torch.randn(2, 40), torch.ones(3, 3)).eval()
    activations = torch.rand(1, 40, 3, 3)
    explanation = camkit.explain(
        model, activations, methods="eigencam", layers="features", target=0
    )
    expected = _numpy_first_component(activations[0].double().numpy())
    np.testing.assert_allclose(
        explanation.raw[("features", "eigencam")][0].numpy(), expected, atol=1e-4
    )


def test_zero_denominators_give_zeros_not_nan(masked_model) -> None:
    zeros = torch.zeros(1, 2, 2, 2)
    # Guided methods are left out: the input gradient of this linear model is W * M, not zero.
    methods = [m for m in camkit.list_methods() if not m.startswith("guided")]
    with pytest.warns(camkit.MapWarning, match="zero"):  # every map blank, and camkit says so
        explanation = camkit.explain(
            masked_model, zeros, methods=methods, layers="features", target=0
        )
    for key, value in explanation.maps.items():
        assert torch.equal(value, torch.zeros_like(value)), key
        assert explanation.warning_for(key[1]) is not None, key
        assert not torch.isnan(explanation.raw[key]).any(), key


def test_register_method_rejects_duplicates_and_adds_new_methods() -> None:
    with pytest.raises(ValueError, match="already registered"):
        camkit.register_method("gradcam")(lambda tensors: tensors.activations.sum(1))


def test_unknown_method_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match="closest: 'gradcam'"):
        camkit.explain(torch.nn.Conv2d(3, 3, 1), torch.zeros(1, 3, 4, 4), methods="gradcamm")


def test_eigencam_recomputes_near_ties_in_float64_and_agrees_batch_and_single() -> None:
    """float32 unless the top two eigenvalues nearly tie; those images go to float64."""
    from camkit.cam import _first_component, _top_component

    generator = torch.Generator().manual_seed(3)
    # Two orthogonal patterns of equal strength (a near tie), plus a little noise.
    base = torch.zeros(2, 16, 16)  # (image, channel, position)
    base[:, 0, 0:4], base[:, 0, 4:8] = 1.0, -1.0
    base[:, 1, 8:12], base[:, 1, 12:16] = 1.0, -1.0
    base = base.reshape(2, 16, 4, 4)
    tied = base + 1e-5 * torch.randn(2, 16, 4, 4, generator=generator)
    clear = torch.randn(1, 16, 4, 4, generator=generator)
    batch = torch.cat([tied[:1], clear, tied[1:]])
    samples = batch.reshape(3, 16, 16).transpose(1, 2)
    assert _top_component(samples.float())[2].tolist() == [True, False, True]
    maps = _first_component(batch)
    for i in range(3):
        alone = _first_component(batch[i : i + 1])[0]
        diff = (maps[i] - alone).abs().max().item()
        assert diff < 1e-6, f"image {i}: batch and single differ by {diff:.3g}"
    # The near-tie images equal a float64 computation to float64 precision.
    exact = _first_component(batch[:1].double())[0].float()
    diff = (maps[0] - exact).abs().max().item()
    assert diff < 1e-6, f"near tie: float32 result is {diff:.3g} from the float64 one"
