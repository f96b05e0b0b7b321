"""Transform3DGrid and PinholeProjection kernels: references (plain numpy, cv2.projectPoints) and float64
gradient checks, including invalid depth and points behind the camera."""
import cv2
import numpy as np
import pytest

from conftest import numeric_grad
from pygeometry.kernels import (INVALID_COORD, projection_backward, projection_forward, se3_forward,
                                transform_grid_backward, transform_grid_forward)
from pygeometry.kernels.projection import projection_backward_into, projection_forward_into
from pygeometry.kernels.transform_grid import transform_grid_backward_into, transform_grid_forward_into

K = np.array([7.0, 6.0, 4.2, 2.9])


def _depth(rng, n=2, h=5, w=7):
    d = rng.uniform(1.0, 4.0, size=(n, 1, h, w))
    d[0, 0, 1, 2] = 0.0   # invalid pixels
    d[1, 0, 4, 6] = -1.0
    return d


def _pose(rng, n=2):
    return se3_forward(np.concatenate([rng.normal(size=(n, 3)) * 0.3, rng.normal(size=(n, 3)) * 0.2], axis=1))


def test_transform_grid_matches_reference(rng):
    depth, T = _depth(rng), _pose(rng)
    points = transform_grid_forward(depth, T, K)
    n, _, h, w = depth.shape
    ys, xs = np.mgrid[0:h, 0:w]
    for i in range(n):
        rays = np.stack([(xs - K[2]) / K[0], (ys - K[3]) / K[1], np.ones_like(xs, float)])
        P = rays * depth[i]
        ref = np.einsum("ij,jhw->ihw", T[i, :3, :3], P) + T[i, :3, 3, None, None]
        ref[:, depth[i, 0] <= 0] = 0
        np.testing.assert_allclose(points[i], ref, atol=1e-12)


def test_transform_grid_per_sample_K(rng):
    depth, T = _depth(rng), _pose(rng)
    K2 = np.stack([K, K * [1.5, 1.2, 1.0, 0.8]])
    out = transform_grid_forward(depth, T, K2)
    np.testing.assert_allclose(out[1], transform_grid_forward(depth[1:], T[1:], K2[1])[0])


def test_transform_grid_gradients(rng):
    depth, T = _depth(rng), _pose(rng)
    G = rng.normal(size=(2, 3, 5, 7))
    g_depth, g_T = transform_grid_backward(depth, T, K, G)
    num_T = numeric_grad(lambda: np.sum(transform_grid_forward(depth, T, K) * G), T)
    np.testing.assert_allclose(g_T, num_T, rtol=1e-7, atol=1e-8)
    valid = depth > 0
    num_d = numeric_grad(lambda: np.sum(transform_grid_forward(depth, T, K) * G), depth)
    np.testing.assert_allclose(g_depth[valid], num_d[valid], rtol=1e-7, atol=1e-8)
    assert np.all(g_depth[~valid] == 0)
    only_T = transform_grid_backward(depth, T, K, G, need_depth=False)
    assert only_T[0] is None and np.allclose(only_T[1], g_T)


def _points(rng, n=2, h=4, w=6):
    p = rng.normal(size=(n, 3, h, w))
    p[:, 2] = rng.uniform(0.5, 3.0, size=(n, h, w))
    p[0, 2, 0, 0] = -1.0    # behind the camera
    p[1, 2, 3, 5] = 0.0     # on the camera plane
    p[1, 2, 2, 2] = 5e-4    # closer than eps
    return p


def test_projection_matches_cv2(rng):
    points = _points(rng)
    coords, valid = projection_forward(points, K)
    cam = np.array([[K[0], 0, K[2]], [0, K[1], K[3]], [0, 0, 1]])
    for i in range(points.shape[0]):
        pts = points[i].reshape(3, -1).T
        ref, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), cam, None)
        ref = ref.reshape(-1, 2).T.reshape(2, *points.shape[2:])
        ok = valid[i, 0] > 0
        np.testing.assert_allclose(coords[i][:, ok], ref[:, ok], rtol=1e-10, atol=1e-9)
    assert valid[0, 0, 0, 0] == 0 and valid[1, 0, 3, 5] == 0 and valid[1, 0, 2, 2] == 0
    assert valid.sum() == valid.size - 3
    assert np.all(np.moveaxis(coords, 1, -1)[valid[:, 0] == 0] == INVALID_COORD)


def test_projection_flow_is_coords_minus_grid(rng):
    points = _points(rng)
    coords, _ = projection_forward(points, K)
    flow, _ = projection_forward(points, K, output="flow")
    ys, xs = np.mgrid[0:4, 0:6]
    np.testing.assert_allclose(flow[:, 0], coords[:, 0] - xs)
    np.testing.assert_allclose(flow[:, 1], coords[:, 1] - ys)


@pytest.mark.parametrize("output", ["coords", "flow"])
def test_projection_gradients(rng, output):
    points = _points(rng)
    G = rng.normal(size=(2, 2, 4, 6))
    analytic = projection_backward(points, K, G)
    valid1 = projection_forward(points, K)[1] > 0
    # Only valid pixels enter the objective: the sentinel -1e6 would drown the differences in round-off.
    numeric = numeric_grad(lambda: np.sum(projection_forward(points, K, output=output)[0] * G * valid1),
                           points)
    valid = np.broadcast_to(valid1, points.shape)
    np.testing.assert_allclose(analytic[valid], numeric[valid], rtol=1e-6, atol=1e-7)
    assert np.all(analytic[~valid] == 0) and np.all(np.isfinite(analytic))


def test_float32_agrees_with_float64(rng):
    """The kernels compute in the input dtype; float32 matches float64 to float32 precision."""
    depth, T = _depth(rng), _pose(rng)
    G = rng.normal(size=(2, 3, 5, 7))
    p64 = transform_grid_forward(depth, T, K)
    p32 = transform_grid_forward(depth.astype(np.float32), T.astype(np.float32), K.astype(np.float32))
    assert p32.dtype == np.float32
    np.testing.assert_allclose(p32, p64, rtol=1e-5, atol=1e-5)
    f32 = [a.astype(np.float32) for a in (depth, T, G)]
    for g32, g64 in zip(transform_grid_backward(f32[0], f32[1], K, f32[2]), transform_grid_backward(depth, T, K, G)):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-5, atol=1e-4)
    points = _points(rng)
    Gc = rng.normal(size=(2, 2, 4, 6))
    for output in ("coords", "flow"):
        c64, v64 = projection_forward(points, K, output=output)
        c32, v32 = projection_forward(points.astype(np.float32), K, output=output)
        assert c32.dtype == np.float32 and v32.dtype == np.float32
        np.testing.assert_allclose(c32, c64, rtol=1e-6, atol=1e-4)
        np.testing.assert_array_equal(v32, v64)
    b32 = projection_backward(points.astype(np.float32), K, Gc.astype(np.float32))
    np.testing.assert_allclose(b32, projection_backward(points, K, Gc), rtol=1e-5, atol=1e-5)


def test_into_functions_count_nonfinite(rng):
    depth, T = _depth(rng).astype(np.float32), _pose(rng).astype(np.float32)
    points = np.empty((2, 3, 5, 7), np.float32)
    assert transform_grid_forward_into(depth, T, K, points) == 0
    depth[1, 0, 2, 2] = np.nan
    assert transform_grid_forward_into(depth, T, K, points) == 1
    assert np.all(points[1, :, 2, 2] == 0)  # a NaN depth is not > 0: an invalid pixel
    G = rng.normal(size=points.shape).astype(np.float32)
    G[0, 2, 1, 1], G[1, 0, 0, 0] = np.inf, np.nan
    grad_T, bad = transform_grid_backward_into(depth, T, K, G, np.empty_like(depth))
    assert bad == 2 and grad_T.shape == (2, 4, 4)
    assert transform_grid_backward_into(depth, T, K, G, None, need_T=False) == (None, 2)
    p = _points(rng).astype(np.float32)
    coords = np.empty((2, 2, 4, 6), np.float32)
    assert projection_forward_into(p, K, 1e-3, "coords", coords) == 0  # valid=None: no mask
    p[0, 1, 1, 1] = np.inf
    assert projection_forward_into(p, K, 1e-3, "coords", coords) == 1
    Gc = rng.normal(size=coords.shape).astype(np.float32)
    Gc[1, 1, 3, 5] = np.nan
    assert projection_backward_into(p, K, Gc, 1e-3, np.empty_like(p)) == 1


def test_point_at_exactly_eps_in_float32_is_valid():
    """z > eps compares exactly: float32(1e-3) is slightly above 1e-3."""
    p = np.array([0.0, 0.0, 1e-3], np.float32).reshape(1, 3, 1, 1)
    assert projection_forward(p, K, eps=1e-3)[1][0, 0, 0, 0] == 1
    assert projection_forward(np.array([0.0, 0.0, 1e-3]).reshape(1, 3, 1, 1), K, eps=1e-3)[1].max() == 0
