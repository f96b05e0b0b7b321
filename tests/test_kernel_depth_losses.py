"""The depth-learning losses' kernels: MinReprojectionLoss (per-pixel minimum over sources, auto-masking) and
EdgeAwareSmoothness (mean-normalised disparity, edge-aware), against hand-computed values, their references
(PhotometricLoss per source; numpy finite differences), and float64 central-difference gradient checks."""
import numpy as np
import pytest

from conftest import numeric_grad
from pygeometry.kernels.min_reprojection import (min_reprojection_backward, min_reprojection_forward,
                                                 min_reprojection_reference)
from pygeometry.kernels.photometric import photometric_forward
from pygeometry.kernels.smoothness import (EXP_FAST_LIMIT, _exp_neg, smoothness_backward, smoothness_backward_into,
                                           smoothness_forward, smoothness_forward_into)


def _views(rng, sources=2, n=2, c=3, h=6, w=7):
    target = rng.uniform(size=(n, c, h, w))
    warped = [np.clip(target + rng.normal(scale=0.3, size=target.shape), 0, 1) for _ in range(sources)]
    identity = [np.clip(target + rng.normal(scale=0.3, size=target.shape), 0, 1) for _ in range(sources)]
    return target, warped, identity


def _fast(target, warped, identity, alpha):
    loss, state = min_reprojection_forward(target, warped, identity, alpha)
    grads = [np.empty_like(x) for x in warped]
    min_reprojection_backward(target, warped, alpha, state, 1.0, grads)
    return loss, grads, state


@pytest.mark.parametrize("alpha", [0.0, 0.85])
@pytest.mark.parametrize("automask", [False, True])
def test_min_reprojection_gradient(rng, alpha, automask):
    target, warped, identity = _views(rng)
    identity = identity if automask else None
    _, grads, state = _fast(target, warped, identity, alpha)
    if automask:
        assert 0 < state.reprojected.mean() < 1  # both branches are exercised
    for s in range(len(warped)):
        expected = numeric_grad(lambda: min_reprojection_forward(target, warped, identity, alpha)[0], warped[s])
        np.testing.assert_allclose(grads[s], expected, rtol=1e-6, atol=1e-9)
        assert np.abs(grads[s]).max() > 0


@pytest.mark.parametrize("alpha", [0.0, 0.85])
def test_min_reprojection_fast_equals_reference(rng, alpha):
    target, warped, identity = _views(rng, sources=3)
    loss, grads, state = _fast(target, warped, identity, alpha)
    ref_loss, ref_grads, ref_reprojected = min_reprojection_reference(target, warped, identity, alpha)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-14)
    np.testing.assert_array_equal(state.reprojected, ref_reprojected)


def test_min_reprojection_values_by_hand(rng):
    """One source: the loss is PhotometricLoss's; two sources: the per-pixel minimum of the two, and a source that
    is worse everywhere gets no gradient; auto-masking: a pixel whose unwarped source matches exactly adds 0."""
    target, warped, identity = _views(rng)
    for alpha in (0.0, 0.85):
        assert min_reprojection_forward(target, warped[:1], None, alpha)[0] == pytest.approx(
            photometric_forward(warped[0], target, None, alpha), rel=1e-12)
    worse = np.clip(target + 0.5, 0, 1) * 0 + 1.0 - target  # |1 - 2 t| mostly larger than the noise
    good = target + 0.01
    loss, grads, state = _fast(target, [worse, good], None, 0.0)
    assert loss == pytest.approx(0.01, rel=1e-9)
    assert np.all(grads[0] == 0) and np.abs(grads[1]).sum() > 0
    identity = [target.copy()]  # the unwarped source equals the target from row 3 on (a static region) ...
    identity[0][:, :, :3] = 0.5  # ... and differs above it
    loss, state = min_reprojection_forward(target, warped[:1], identity, 0.0)
    assert np.all(state.reprojected[:, :, 3:] == 0) and np.any(state.reprojected[:, :, :3] == 1)
    rows = np.minimum(np.abs(warped[0] - target).mean(axis=1), np.abs(identity[0] - target).mean(axis=1))
    assert loss == pytest.approx(rows.mean(), rel=1e-12)


def test_min_reprojection_ties_go_to_the_reprojection(rng):
    """A pose network started at the identity warps the source onto itself: the tie must keep the gradient."""
    target, warped, _ = _views(rng, sources=1)
    loss, grads, state = _fast(target, warped, [warped[0].copy()], 0.85)
    assert np.all(state.reprojected == 1) and np.abs(grads[0]).sum() > 0


def test_min_reprojection_float32_matches_float64(rng):
    target, warped, identity = _views(rng)
    loss64, grads64, _ = _fast(target, warped, identity, 0.85)
    f32 = [a.astype(np.float32) for a in [target] + warped + identity]
    loss32, grads32, _ = _fast(f32[0], f32[1:3], f32[3:], 0.85)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for g32, g64 in zip(grads32, grads64):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-6)


def _disp_image(rng, n=2, h=5, w=6):
    disp = rng.uniform(0.2, 1.0, size=(n, 1, h, w))
    image = rng.uniform(size=(n, 3, h, w))
    return disp, image


def test_smoothness_value_by_hand():
    """A horizontal ramp in a flat image: only the x term, |step| / mean each; an edge in the image between two
    columns scales that column pair's term by exp(-|edge|)."""
    disp = np.tile(np.arange(1.0, 5.0), (1, 1, 3, 1))  # (1, 1, 3, 4), mean 2.5
    image = np.zeros((1, 3, 3, 4))
    assert smoothness_forward(disp, image) == pytest.approx(1 / 2.5, rel=1e-6)
    image[..., 2:] = 0.7
    expected = (2 + np.exp(-0.7)) / 3 / 2.5
    assert smoothness_forward(disp, image) == pytest.approx(expected, rel=1e-6)
    assert smoothness_forward(disp * 10, image) == pytest.approx(expected, rel=1e-6)  # scale-free


def test_smoothness_gradient(rng):
    disp, image = _disp_image(rng)
    grad = smoothness_backward(disp, image)
    np.testing.assert_allclose(grad, numeric_grad(lambda: smoothness_forward(disp, image), disp), rtol=1e-6,
                               atol=1e-9)
    assert grad.dtype == disp.dtype and np.abs(grad).max() > 0
    # the normalisation's term: the gradient is orthogonal to disp (the loss is invariant to scaling disp)
    assert float((grad * disp).sum(axis=(1, 2, 3)).max()) == pytest.approx(0, abs=1e-7)


def test_smoothness_constant_disparity_is_zero_and_finite():
    disp = np.full((1, 1, 4, 5), 0.3, np.float32)
    image = np.random.default_rng(0).uniform(size=(1, 3, 4, 5)).astype(np.float32)
    assert smoothness_forward(disp, image) == 0.0
    grad = smoothness_backward(disp, image)
    assert np.all(np.isfinite(grad)) and np.all(grad == 0)


def test_both_losses_equal_monodepth2s_formulas_in_torch(rng):
    """An independent reference: Monodepth2's formulas written in PyTorch (pygeometry.torch_reference), float64,
    forward values and autograd gradients."""
    import torch  # installed by make test (a test and benchmark dependency only)

    from pygeometry import torch_reference as TR

    target, warped, identity = _views(rng, sources=2, h=7, w=9)
    t = lambda a: torch.from_numpy(a.copy()).requires_grad_(True)  # noqa: E731
    tw = [t(w) for w in warped]
    ref = TR.min_reprojection_loss(tw, torch.from_numpy(target), [torch.from_numpy(u) for u in identity])
    ref.backward()
    loss, grads, _ = _fast(target, warped, identity, 0.85)
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    for g, w in zip(grads, tw):
        np.testing.assert_allclose(g, w.grad.numpy(), rtol=1e-9, atol=1e-15)
    disp, image = _disp_image(rng)
    td = t(disp)
    ref = TR.edge_aware_smoothness(td, torch.from_numpy(image))
    ref.backward()
    assert smoothness_forward(disp, image) == pytest.approx(ref.item(), rel=1e-9)
    np.testing.assert_allclose(smoothness_backward(disp, image), td.grad.numpy(), rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_smoothness_fast_kernels_equal_the_reference(rng, dtype):
    disp, image = (a.astype(dtype) for a in _disp_image(rng, n=3, h=6, w=9))
    assert smoothness_forward_into(disp, image) == pytest.approx(smoothness_forward(disp, image), rel=1e-6)
    grad = np.empty_like(disp)
    smoothness_backward_into(disp, image, 0.7, grad)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, 0.7 * smoothness_backward(disp, image), rtol=1e-5 if dtype == np.float32 else 1e-10,
                               atol=1e-9)


def test_fast_exponential_matches_numpy():
    """The polynomial exp(-u) the fast kernel vectorises, over its whole range, to 1e-13 relative."""
    u = np.concatenate([[0.0], np.geomspace(1e-12, EXP_FAST_LIMIT * (1 - 1e-12), 5000)])
    np.testing.assert_allclose([_exp_neg(v) for v in u], np.exp(-u), rtol=1e-13, atol=0)


def test_smoothness_fast_kernels_on_images_outside_unit_range(rng):
    """Images in [0, 255]: most edge weights take the libm exponential (beyond the polynomial's range)."""
    disp, image = _disp_image(rng, n=2, h=5, w=8)
    image = image * 255  # channel-mean steps of 0..255: a mix of both paths
    assert ((np.abs(np.diff(image, axis=3)).mean(axis=1) >= EXP_FAST_LIMIT).any()
            and (np.abs(np.diff(image, axis=3)).mean(axis=1) < EXP_FAST_LIMIT).any())
    assert smoothness_forward_into(disp, image) == pytest.approx(smoothness_forward(disp, image), rel=1e-12)
    grad = np.empty_like(disp)
    smoothness_backward_into(disp, image, 1.0, grad)
    np.testing.assert_allclose(grad, smoothness_backward(disp, image), rtol=1e-10, atol=1e-15)


def test_smoothness_fast_gradient(rng):
    disp, image = _disp_image(rng)
    grad = np.empty_like(disp)
    smoothness_backward_into(disp, image, 1.0, grad)
    np.testing.assert_allclose(grad, numeric_grad(lambda: smoothness_forward_into(disp, image), disp), rtol=1e-6,
                               atol=1e-9)
