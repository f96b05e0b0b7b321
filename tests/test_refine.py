"""Photometric refinement: the analytic Jacobian (built from the kernels' backward functions) matches float64
central differences of the residual and the kernel chain's gradient; from a perturbed ground-truth start on a
rendered pair both the photometric error and the pose error decrease."""
import numpy as np
import pytest

from pygeometry.evaluation import pose_metrics
from pygeometry.kernels import (bilinear_backward, bilinear_forward, projection_backward, projection_forward,
                                se3_backward, se3_forward, transform_grid_backward, transform_grid_forward)
from pygeometry.refine import dT_dxi, linearize, pyramid, refine_pose
from pygeometry.render import render_pair


@pytest.fixture(scope="module")
def pair():
    return render_pair(1, 64, 208)


def _inputs(p):
    return (p["src"].astype(np.float64)[None], p["tgt"].astype(np.float64)[None],
            p["tgt_depth"].astype(np.float64)[None], p["K"].astype(np.float64))


def test_dT_dxi_matches_central_differences():
    for xi in (np.zeros(6), np.array([0.1, -0.2, 0.3, 0.2, -0.1, 0.25]), np.array([0, 0, 0, 2.0, 1.0, -1.5])):
        num = np.zeros((3, 4, 6))
        for k in range(6):
            d = np.zeros(6)
            d[k] = 1e-6
            num[..., k] = (se3_forward((xi + d)[None])[0, :3] - se3_forward((xi - d)[None])[0, :3]) / 2e-6
        np.testing.assert_allclose(dT_dxi(xi), num, atol=1e-8)


def test_jacobian_matches_numeric_derivative_of_the_residual(pair):
    src, tgt, depth, K = _inputs(pair)
    xi = pair["xi_gt"] + np.array([0.02, -0.01, 0.03, 0.01, -0.02, 0.005])
    r, J = linearize(src, tgt, depth, K, xi)
    eps = 1e-6
    num = np.zeros_like(J)
    for k in range(6):
        d = np.zeros(6)
        d[k] = eps
        num[:, k] = (linearize(src, tgt, depth, K, xi + d, jacobian=False)[0]
                     - linearize(src, tgt, depth, K, xi - d, jacobian=False)[0]) / (2 * eps)
    # Compare away from the kinks of bilinear interpolation (samples within 1e-3 px of an integer coordinate)
    # and from the clamped border, where the one-sided analytic derivative differs from a central difference.
    T = se3_forward(xi[None])
    coords, _ = projection_forward(transform_grid_forward(depth, T, K), K)
    c = coords[0][:, depth[0, 0] > 0]
    frac = np.abs(c - np.round(c))
    smooth = (frac.min(axis=0) > 1e-3) & (c[0] > 0) & (c[0] < 207) & (c[1] > 0) & (c[1] < 63)
    assert smooth.mean() > 0.7
    np.testing.assert_allclose(J[:, :, smooth], num[:, :, smooth], rtol=1e-4, atol=1e-6)
    assert np.abs(J[:, :, smooth]).max() > 0.1


def test_gauss_newton_gradient_equals_the_kernel_chain_backward(pair):
    """J^T r is the gradient of 0.5 |r|^2, which the chain of backward kernels computes independently."""
    src, tgt, depth, K = _inputs(pair)
    xi = pair["xi_gt"] + 0.01
    r, J = linearize(src, tgt, depth, K, xi)
    T = se3_forward(xi[None])
    points = transform_grid_forward(depth, T, K)
    coords, _ = projection_forward(points, K)
    warped, _ = bilinear_forward(src, coords, padding="border")
    g_warped = (warped - tgt) * (depth > 0)
    _, g_coords = bilinear_backward(src, coords, g_warped, padding="border", need_image=False)
    g_points = projection_backward(points, K, g_coords)
    _, g_T = transform_grid_backward(depth, T, K, g_points, need_depth=False)
    g_xi = se3_backward(xi[None], g_T)[0]
    np.testing.assert_allclose(np.einsum("ckm,cm->k", J, r), g_xi, rtol=1e-9, atol=1e-9)


def test_pyramid_levels_keep_the_geometry(pair):
    src, tgt, depth, K = _inputs(pair)
    levels = pyramid(src, tgt, depth, K, 3)
    assert [lv[0].shape[2:] for lv in levels] == [(64, 208), (32, 104), (16, 52)]
    # The ground-truth pose still aligns the images at the coarse level (the warp is consistent with K / 2).
    s, t, d, k = levels[1]
    for xi, bound in ((pair["xi_gt"], 0.03), (np.zeros(6), None)):
        r, _ = linearize(s, t, d, k, xi, jacobian=False)
        if bound is not None:
            err_gt = np.abs(r).mean()
            assert err_gt < bound
        else:
            assert np.abs(r).mean() > 2 * err_gt


@pytest.mark.parametrize("jitter", [0.0, 0.1])
def test_refinement_reduces_photometric_and_pose_error_from_a_perturbed_start(jitter):
    p = render_pair(4, 64, 208, photometric_jitter=jitter)
    start = p["xi_gt"] + np.array([0.05, -0.04, 0.06, np.radians(2), np.radians(-1.5), np.radians(1)])
    res = refine_pose(p["src"], p["tgt"], p["tgt_depth"], p["K"], start, iterations=8, levels=3)
    before = pose_metrics(start[None], p["src_T_tgt"][None])
    after = pose_metrics(res.xi[None], p["src_T_tgt"][None])
    assert res.photometric_after < 0.8 * res.photometric_before, res
    assert after["translation_m"][0] < 0.3 * before["translation_m"][0], (before, after)
    assert after["rotation_deg"][0] < 0.3 * before["rotation_deg"][0], (before, after)
    assert res.accepted > 0 and res.time_s > 0
    same = refine_pose(p["src"], p["tgt"], p["tgt_depth"], p["K"], start, iterations=0)
    assert np.array_equal(same.xi, start) and same.photometric_after == same.photometric_before
