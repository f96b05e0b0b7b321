"""BilinearWarp kernel: against cv2.remap, and float64 gradient checks away from the integer kinks, at
borders and out of range, for both padding modes and for coords and flow input."""
import cv2
import numpy as np
import pytest

from conftest import numeric_grad
from pygeometry.kernels import bilinear_backward, bilinear_forward
from pygeometry.kernels.bilinear_reference import warp_backward, warp_forward
from pygeometry.kernels.bilinear import (warp_backward_coords_from_jacobian, warp_backward_into,
                                         warp_forward_into)

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


@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("hs,ws", [(1, 1), (1, 5), (4, 1), (2, 2), (3, 7)])
def test_tiny_images_match_reference(rng, padding, hs, ws):
    """Images with a single row or column have no pixel whose four taps are all inside (the kernels' general
    path only): values and valid mask still follow the formula, gradients are finite."""
    image = rng.uniform(size=(2, 3, hs, ws))
    coords = np.stack([rng.uniform(-3, ws + 2, (2, 4, 5)), rng.uniform(-3, hs + 2, (2, 4, 5))], axis=1)
    coords[0, :, 0, :3] = [[0, ws - 1, ws - 0.5], [0, hs - 1, hs - 1]]  # corners and the last row/column exactly
    warped, valid = bilinear_forward(image, coords, padding)
    np.testing.assert_allclose(warped, warp_forward(image, coords, padding)[0], atol=1e-12)
    inside = (coords[:, 0] >= 0) & (coords[:, 0] <= ws - 1) & (coords[:, 1] >= 0) & (coords[:, 1] <= hs - 1)
    np.testing.assert_array_equal(valid[:, 0] > 0, inside)
    gi, gc = bilinear_backward(image, coords, rng.normal(size=warped.shape), padding)
    assert np.all(np.isfinite(gi)) and np.all(np.isfinite(gc))


@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("input_kind", ["coords", "flow"])
def test_float32_agrees_with_float64(rng, padding, input_kind):
    """The kernels compute in the input dtype: float32 results match float64 ones to float32 precision, on
    inputs that cover every pixel kind (inside, straddling the border, far outside, clamped)."""
    image = rng.uniform(size=(2, 3, 12, 17))
    coords = np.stack([rng.uniform(-6, 22, (2, 9, 11)), rng.uniform(-6, 17, (2, 9, 11))], axis=1)
    coords[:, :, 0, 0] = -1e6  # the projection's invalid sentinel
    coords = np.round(coords * 64) / 64 + 1 / 128  # off the integer kinks, where float32 could round across one
    if input_kind == "flow":
        ys, xs = np.mgrid[0:9, 0:11]
        coords = coords - np.stack([xs, ys])[None]
    grad = rng.normal(size=(2, 3, 9, 11))
    f64 = bilinear_forward(image, coords, padding, input_kind)
    f32 = bilinear_forward(image.astype(np.float32), coords.astype(np.float32), padding, input_kind)
    assert f32[0].dtype == np.float32 and f32[1].dtype == np.float32
    np.testing.assert_allclose(f32[0], f64[0], atol=2e-6)
    np.testing.assert_array_equal(f32[1], f64[1])
    b64 = bilinear_backward(image, coords, grad, padding, input_kind)
    b32 = bilinear_backward(image.astype(np.float32), coords.astype(np.float32), grad.astype(np.float32),
                            padding, input_kind)
    for g32, g64 in zip(b32, b64):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, atol=2e-5)
    # Each gradient alone (the coordinate-only path runs rows in parallel, the image path one sample per task).
    _, gc = bilinear_backward(image.astype(np.float32), coords.astype(np.float32), grad.astype(np.float32), padding,
                              input_kind, need_image=False)
    gi, none = bilinear_backward(image.astype(np.float32), coords.astype(np.float32), grad.astype(np.float32),
                                 padding, input_kind, need_coords=False)
    assert none is None
    np.testing.assert_array_equal(gc, b32[1])
    np.testing.assert_array_equal(gi, b32[0])


def test_into_functions_count_nonfinite_and_write_in_place(rng):
    image = rng.uniform(size=(2, 2, 6, 7)).astype(np.float32)
    coords = rng.uniform(-1, 7, size=(2, 2, 4, 5)).astype(np.float32)
    out = np.zeros((2, 2, 4, 5), np.float32)
    assert warp_forward_into(image, coords, "zeros", "coords", out) == (0, 0)  # valid=None: no mask written
    np.testing.assert_array_equal(out, bilinear_forward(image, coords)[0])
    coords[1, 0, 2, 3], coords[0, 1, 0, 0] = np.nan, np.inf
    image[1, 1, 5, 6] = np.nan
    valid = np.empty((2, 1, 4, 5), np.float32)
    assert warp_forward_into(image, coords, "zeros", "coords", out, valid) == (2, 1)
    assert valid[1, 0, 2, 3] == 0 and valid[0, 0, 0, 0] == 0  # NaN/inf positions are never valid
    grad = rng.normal(size=out.shape).astype(np.float32)
    grad[0, 1, 3, 4] = -np.inf
    gc = np.empty(coords.shape, np.float32)
    gi = np.empty(image.shape, np.float32)
    assert warp_backward_into(image, coords, grad, "border", "coords", grad_coords=gc) == 1
    assert warp_backward_into(image, coords, grad, "border", "coords", grad_image=gi, grad_coords=gc) == 1
    assert warp_backward_into(image, coords, grad, "border", "coords") == 1
    # A non-contiguous output still receives the result.
    out_t = np.zeros((2, 2, 5, 4), np.float32).transpose(0, 1, 3, 2)
    warp_forward_into(image[:, :, :, ::-1], coords, "zeros", "coords", out_t)
    np.testing.assert_array_equal(out_t, bilinear_forward(np.ascontiguousarray(image[:, :, :, ::-1]), coords)[0])


@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("input_kind", ["coords", "flow"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [3, 1])
def test_coordinate_gradient_from_the_forward_jacobian(rng, padding, input_kind, dtype, channels):
    """The training path: the forward keeps d warped / d coords, the backward only sums it against dL/dwarped.
    Same values as sampling again, at pixels inside, straddling the border, far outside and clamped."""
    image = rng.uniform(size=(2, channels, 7, 9)).astype(dtype)
    coords = np.stack([rng.uniform(-4, 12, (2, 5, 6)), rng.uniform(-4, 10, (2, 5, 6))], axis=1)
    coords[1, :, 0, 0] = -1e6
    coords[0, :, 1, 1] = [8, 6]  # the last column and row exactly
    if input_kind == "flow":
        ys, xs = np.mgrid[0:5, 0:6]
        coords = coords - np.stack([xs, ys])[None]
    coords = coords.astype(dtype)
    grad = rng.normal(size=(2, channels, 5, 6)).astype(dtype)
    out = np.empty((2, channels, 5, 6), dtype)
    jacobian = (np.empty_like(out), np.empty_like(out))
    assert warp_forward_into(image, coords, padding, input_kind, out, None, jacobian) == (0, 0)
    np.testing.assert_array_equal(out, bilinear_forward(image, coords, padding, input_kind)[0])
    gc = np.empty(coords.shape, dtype)
    grad[0, -1, 4, 5] = np.nan
    assert warp_backward_coords_from_jacobian(jacobian, grad, gc) == 1
    grad[0, -1, 4, 5] = 0.5
    assert warp_backward_coords_from_jacobian(jacobian, grad, gc) == 0
    _, expected = bilinear_backward(image, coords, grad, padding, input_kind, need_image=False)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gc, expected, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="jacobian"):
        warp_forward_into(image, coords, padding, input_kind, out, None, (jacobian[0], jacobian[1][:1]))


def test_coordinate_gradient_from_the_jacobian_of_no_channels():
    """C = 0: nothing depends on the coordinates, so their gradient is 0 (not left uninitialised)."""
    empty = np.empty((2, 0, 3, 4), np.float32)
    gc = np.full((2, 2, 3, 4), np.nan, np.float32)
    assert warp_backward_coords_from_jacobian((empty, empty.copy()), empty.copy(), gc) == 0
    np.testing.assert_array_equal(gc, 0)


# --------------------------------------------------------------------------- the fast kernels against the reference
@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("input_kind", ["coords", "flow"])
@pytest.mark.parametrize("hs,ws", [(2, 2), (5, 7), (6, 3)])
def test_fast_kernels_equal_the_readable_reference(rng, padding, input_kind, hs, ws):
    """bilinear.py's numba kernels and bilinear_reference.py's loops: values, valid mask and both gradients, on
    samples inside, across the border and far outside, on integer positions and on the last row and column."""
    image = rng.uniform(size=(2, 3, hs, ws))
    coords = np.stack([rng.uniform(-2, ws + 1, (2, 6, 7)), rng.uniform(-2, hs + 1, (2, 6, 7))], axis=1)
    coords[0, :, 0, :5] = [[0, ws - 1, ws - 1, 1, -0.5], [0, hs - 1, 0.5, 1, hs - 1]]  # corners, integers, edges
    coords[1, :, 1, :] = np.round(coords[1, :, 1, :])  # a row of integer positions (kinks)
    if input_kind == "flow":
        grid = np.stack(np.meshgrid(np.arange(7.0), np.arange(6.0)))
        coords = coords - grid[None]
    g = rng.normal(size=(2, 3, 6, 7))
    warped, valid = bilinear_forward(image, coords, padding, input_kind)
    ref_warped, ref_valid = warp_forward(image, coords, padding, input_kind)
    np.testing.assert_allclose(warped, ref_warped, atol=1e-12)
    np.testing.assert_array_equal(valid, ref_valid)
    gi, gc = bilinear_backward(image, coords, g, padding, input_kind)
    ref_gi, ref_gc = warp_backward(image, coords, g, padding, input_kind)
    np.testing.assert_allclose(gi, ref_gi, atol=1e-12)
    np.testing.assert_allclose(gc, ref_gc, atol=1e-12)
