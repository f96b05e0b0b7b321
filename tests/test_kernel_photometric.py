"""PhotometricLoss kernel: L1 and SSIM+L1 values against hand computation and scikit-image's SSIM, float64
gradient checks (warped and target), masks, and the all-invalid batch; the fast kernels (the layer's) against the
reference and by their own gradient check."""
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from conftest import numeric_grad
from pygeometry.kernels.photometric import (box3, box3_adjoint, photometric_backward, photometric_backward_into,
                                            photometric_forward, photometric_forward_into, ssim_map)


def _pair(rng, n=2, c=3, h=6, w=7):
    x = rng.uniform(size=(n, c, h, w))
    y = np.clip(x + rng.normal(scale=0.2, size=x.shape), 0, 1)
    return x, y


def test_l1_value_with_mask(rng):
    x, y = _pair(rng)
    mask = (rng.uniform(size=(2, 1, 6, 7)) > 0.3).astype(float)
    expected = (np.abs(x - y).mean(axis=1, keepdims=True) * mask).sum() / mask.sum()
    assert photometric_forward(x, y, mask) == pytest.approx(expected, rel=1e-12)
    assert photometric_forward(x, y) == pytest.approx(np.abs(x - y).mean(), rel=1e-12)


def test_ssim_matches_skimage_in_the_interior(rng):
    x, y = _pair(rng, n=1, c=1, h=12, w=13)
    _, ref = structural_similarity(x[0, 0], y[0, 0], win_size=3, gaussian_weights=False,
                                   use_sample_covariance=False, data_range=1.0, full=True)
    ours = ssim_map(x, y)[0, 0]
    np.testing.assert_allclose(ours[1:-1, 1:-1], ref[1:-1, 1:-1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ssim_map(x, x), 1.0, atol=1e-12)


def test_box3_adjoint_is_the_transpose(rng):
    a, b = rng.normal(size=(2, 3, 5, 6)), rng.normal(size=(2, 3, 5, 6))
    assert np.sum(box3(a) * b) == pytest.approx(np.sum(a * box3_adjoint(b)), rel=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.85, 1.0])
@pytest.mark.parametrize("with_mask", [False, True])
def test_gradients(rng, alpha, with_mask):
    x, y = _pair(rng, n=2, c=2, h=5, w=6)
    mask = rng.uniform(size=(2, 1, 5, 6)) if with_mask else None
    g_x, g_y = photometric_backward(x, y, mask, alpha, need_target=True)
    np.testing.assert_allclose(g_x, numeric_grad(lambda: photometric_forward(x, y, mask, alpha), x),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(g_y, numeric_grad(lambda: photometric_forward(x, y, mask, alpha), y),
                               rtol=1e-6, atol=1e-9)


def test_no_valid_pixel_gives_zero_loss_and_zero_gradient(rng):
    x, y = _pair(rng)
    mask = np.zeros((2, 1, 6, 7))
    for alpha in (0.0, 0.85):
        assert photometric_forward(x, y, mask, alpha) == 0.0
        g_x, g_y = photometric_backward(x, y, mask, alpha, need_target=True)
        assert np.all(g_x == 0) and np.all(g_y == 0)


def test_identical_images_give_zero_loss_and_finite_gradients(rng):
    x = rng.uniform(size=(1, 3, 5, 5))
    flat = np.full((1, 3, 5, 5), 0.5)
    for img in (x, flat):
        assert photometric_forward(img, img.copy(), alpha=0.85) == pytest.approx(0.0, abs=1e-12)
        g, _ = photometric_backward(img, img.copy(), alpha=0.85)
        assert np.all(np.isfinite(g))


# ---------------------------------------------------------------------------------- the fast kernels (the layer's)
def _fast(x, y, mask, alpha, scale=1.0, target=False):
    """loss and the gradient w.r.t. x (and, with target, w.r.t. y as well, from the 4-row coef)."""
    coef = np.empty((4 if target else 3,) + x.shape, x.dtype)
    loss, total = photometric_forward_into(x, y, mask, alpha, coef)
    grad = np.full_like(x, np.nan)  # every element must be written
    grad_y = np.full_like(y, np.nan) if target else None
    photometric_backward_into(x, y, mask, alpha, coef, total, scale, grad, grad_y)
    return (loss, grad, grad_y) if target else (loss, grad)


@pytest.mark.parametrize("alpha", [0.0, 0.85, 1.0])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 6, 7), (1, 2, 2, 2), (2, 1, 3, 2), (1, 3, 9, 5)])
def test_fast_kernels_equal_the_reference(rng, alpha, with_mask, shape):
    """float64: the same function to rounding, including the smallest images (H or W = 2, 3: every pixel a border
    pixel of the reflected window) and soft masks; the top diff scales the gradient."""
    x, y = _pair(rng, *shape)
    mask = rng.uniform(size=(shape[0], 1) + shape[2:]) if with_mask else None
    loss, grad = _fast(x, y, mask, alpha, scale=-2.5)
    assert loss == pytest.approx(photometric_forward(x, y, mask, alpha), rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(grad, -2.5 * photometric_backward(x, y, mask, alpha)[0], rtol=1e-9, atol=1e-14)
    _, grad_both, grad_y = _fast(x, y, mask, alpha, scale=-2.5, target=True)
    ref_x, ref_y = photometric_backward(x, y, mask, alpha, need_target=True)
    np.testing.assert_allclose(grad_both, -2.5 * ref_x, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(grad_y, -2.5 * ref_y, rtol=1e-9, atol=1e-14)


def test_fast_kernels_float32_at_the_nets_size(rng):
    """float32 images at the default net's size: the fast kernel sums in float64, so it is as close to the float64
    reference as the float32 inputs allow."""
    x, y = _pair(rng, n=2, c=3, h=64, w=208)
    mask = (rng.uniform(size=(2, 1, 64, 208)) > 0.2).astype(np.float32)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    loss, grad = _fast(x32, y32, mask, 0.85)
    ref_grad = photometric_backward(x32.astype(np.float64), y32.astype(np.float64), mask, 0.85)[0]
    assert loss == pytest.approx(photometric_forward(x32.astype(np.float64), y32.astype(np.float64), mask, 0.85),
                                 rel=1e-6)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=1e-5 * np.abs(ref_grad).max())


@pytest.mark.parametrize("alpha", [0.0, 0.85])
def test_fast_gradients(rng, alpha):
    x, y = _pair(rng, n=2, c=2, h=5, w=6)
    mask = rng.uniform(size=(2, 1, 5, 6))
    _, grad = _fast(x, y, mask, alpha)
    np.testing.assert_allclose(grad, numeric_grad(lambda: photometric_forward_into(x, y, mask, alpha)[0], x),
                               rtol=1e-6, atol=1e-9)
    _, _, grad_y = _fast(x, y, mask, alpha, target=True)
    np.testing.assert_allclose(grad_y, numeric_grad(lambda: photometric_forward_into(x, y, mask, alpha)[0], y),
                               rtol=1e-6, atol=1e-9)
    assert np.abs(grad_y).max() > 1e-3


def test_fast_target_gradient_needs_the_four_row_coefficients(rng):
    x, y = _pair(rng)
    coef = np.empty((3,) + x.shape)
    _, total = photometric_forward_into(x, y, None, 0.85, coef)
    with pytest.raises(ValueError, match="4-row coef"):
        photometric_backward_into(x, y, None, 0.85, coef, total, 1.0, np.empty_like(x), np.empty_like(y))


def test_fast_kernels_without_valid_pixels(rng):
    x, y = _pair(rng)
    loss, grad = _fast(x, y, np.zeros((2, 1, 6, 7)), 0.85)
    assert loss == 0.0 and np.all(grad == 0)
