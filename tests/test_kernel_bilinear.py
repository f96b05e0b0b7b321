"""BilinearWarp kernel: against cv2.remap, and float64 gradient checks away from the integer kinks, at
borders and out of range, for both padding modes and for coords and flow input."""
import cv2
import numpy as np
import pytest

from conftest import numeric_grad
from pygeometry.kernels import bilinear_backward, bilinear_forward

CV_BORDER = {"zeros": cv2.BORDER_CONSTANT, "border": cv2.BORDER_REPLICATE}


def _coords_off_kinks(rng, n, h, w, hs, ws, margin=1.5):
    """Sample positions with fractional parts in [0.1, 0.9] (away from kinks), some outside the image."""
    base_x = rng.integers(-2, ws + 1, size=(n, h, w)).astype(float)
    base_y = rng.integers(-2, hs + 1, size=(n, h, w)).astype(float)
    frac = rng.uniform(0.1, 0.9, size=(2, n, h, w))
    return np.stack([base_x + frac[0], base_y + frac[1]], axis=1)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_matches_cv2_remap(rng, padding):
    image = rng.uniform(size=(2, 3, 9, 11)).astype(np.float32)
    # cv2.remap quantises positions to 1/32 pixel: sample on that lattice so both are exact.
    coords = (rng.integers(-64, 13 * 32, size=(2, 2, 6, 8)) / 32.0).astype(np.float32)
    warped, valid = bilinear_forward(image, coords, padding)
    for i in range(2):
        hwc = np.ascontiguousarray(image[i].transpose(1, 2, 0))
        ref = cv2.remap(hwc, coords[i, 0], coords[i, 1], cv2.INTER_LINEAR, borderMode=CV_BORDER[padding],
                        borderValue=0)
        np.testing.assert_allclose(warped[i], ref.transpose(2, 0, 1), atol=1e-5)
    inside = (coords[:, 0] >= 0) & (coords[:, 0] <= 10) & (coords[:, 1] >= 0) & (coords[:, 1] <= 8)
    np.testing.assert_array_equal(valid[:, 0] > 0, inside)


def test_integer_coords_sample_pixels_exactly(rng):
    image = rng.uniform(size=(1, 2, 4, 5))
    ys, xs = np.mgrid[0:4, 0:5]
    coords = np.stack([xs, ys])[None].astype(float)
    warped, valid = bilinear_forward(image, coords)
    np.testing.assert_array_equal(warped, image)
    assert valid.min() == 1


@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("input_kind", ["coords", "flow"])
def test_gradients(rng, padding, input_kind):
    n, c, hs, ws, h, w = 2, 3, 5, 6, 4, 5
    image = rng.uniform(size=(n, c, hs, ws))
    coords = _coords_off_kinks(rng, n, h, w, hs, ws)
    if input_kind == "flow":
        ys, xs = np.mgrid[0:h, 0:w]
        coords = coords - np.stack([xs, ys])[None]
    G = rng.normal(size=(n, c, h, w))
    f = lambda: np.sum(bilinear_forward(image, coords, padding, input_kind)[0] * G)  # noqa: E731
    g_image, g_coords = bilinear_backward(image, coords, G, padding, input_kind)
    np.testing.assert_allclose(g_image, numeric_grad(f, image), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(g_coords, numeric_grad(f, coords), rtol=1e-6, atol=1e-8)


def test_last_row_and_column_use_inside_derivative():
    image = np.arange(12.0).reshape(1, 1, 3, 4)  # I = 4 y + x: dI/dx = 1, dI/dy = 4 everywhere inside
    coords = np.array([3.0, 2.0]).reshape(1, 2, 1, 1)
    out, valid = bilinear_forward(image, coords)
    assert out[0, 0, 0, 0] == 11.0 and valid[0, 0, 0, 0] == 1
    _, g = bilinear_backward(image, coords, np.ones((1, 1, 1, 1)))
    np.testing.assert_allclose(g.ravel(), [1.0, 4.0])


def test_far_outside_and_huge_coords_are_finite(rng):
    image = rng.uniform(size=(1, 2, 3, 3)).astype(np.float32)
    coords = np.array([[-1e6, 1e30], [5e8, -3e7]], dtype=np.float32).reshape(1, 2, 1, 2)
    for padding in ("zeros", "border"):
        out, valid = bilinear_forward(image, coords, padding)
        gi, gc = bilinear_backward(image, coords, np.ones((1, 2, 1, 2), np.float32), padding)
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(gi)) and np.all(np.isfinite(gc))
        assert valid.max() == 0
    out, _ = bilinear_forward(image, coords, "zeros")
    assert np.all(out == 0)


def test_works_for_feature_maps_and_different_output_size(rng):
    feat = rng.uniform(size=(2, 17, 6, 8)).astype(np.float32)
    coords = rng.uniform(0, 5, size=(2, 2, 3, 4)).astype(np.float32)
    out, _ = bilinear_forward(feat, coords)
    assert out.shape == (2, 17, 3, 4) and out.dtype == np.float32


def test_rejects_unknown_modes(rng):
    with pytest.raises(ValueError, match="padding"):
        bilinear_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 2, 2, 2)), padding="reflect")
    with pytest.raises(ValueError, match="input"):
        bilinear_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 2, 2, 2)), input_kind="pixels")
