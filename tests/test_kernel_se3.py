"""SE3Generator kernel: exponential map against scipy.linalg.expm, and float64 gradient checks."""
import numpy as np
import pytest
from scipy.linalg import expm

from conftest import numeric_grad
from pygeometry.kernels.se3 import SMALL_ANGLE, hat, rodrigues_coefficients, se3_backward, se3_forward


def _axis(rng, n):
    a = rng.normal(size=(n, 3))
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def special_pose_vectors(rng):
    """Rotations chosen on purpose: zero, tiny, both sides of the Taylor threshold, generic, near pi."""
    angles = [0.0, 1e-9, 1e-4, SMALL_ANGLE * (1 - 1e-7), SMALL_ANGLE * (1 + 1e-7), 0.7, 2.0, np.pi - 1e-3]
    w = _axis(rng, len(angles)) * np.array(angles)[:, None]
    t = rng.normal(size=(len(angles), 3))
    return np.concatenate([t, w], axis=1)


@pytest.mark.parametrize("translation", ["direct", "se3_exp"])
def test_matches_scipy_expm(rng, translation):
    xi = special_pose_vectors(rng)
    T = se3_forward(xi, translation)
    for i in range(len(xi)):
        twist = np.zeros((4, 4))
        twist[:3, :3] = hat(xi[i, 3:])
        twist[:3, 3] = xi[i, :3]
        ref = expm(twist)
        np.testing.assert_allclose(T[i, :3, :3], ref[:3, :3], atol=1e-12)
        expected_t = xi[i, :3] if translation == "direct" else ref[:3, 3]
        np.testing.assert_allclose(T[i, :3, 3], expected_t, atol=1e-12)
        np.testing.assert_array_equal(T[i, 3], [0, 0, 0, 1])
        np.testing.assert_allclose(T[i, :3, :3] @ T[i, :3, :3].T, np.eye(3), atol=1e-12)


@pytest.mark.parametrize("translation", ["direct", "se3_exp"])
def test_gradient_float64(rng, translation):
    xi = special_pose_vectors(rng)
    G = rng.normal(size=(len(xi), 4, 4))
    analytic = se3_backward(xi, G, translation)
    numeric = numeric_grad(lambda: np.sum(se3_forward(xi, translation) * G), xi, eps=1e-6)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_finite_and_exact_at_zero():
    xi = np.zeros((1, 6))
    np.testing.assert_array_equal(se3_forward(xi), np.eye(4)[None])
    G = np.arange(16.0).reshape(1, 4, 4)
    g = se3_backward(xi, G, "se3_exp")
    assert np.all(np.isfinite(g))
    # dR/dw_k at 0 is hat(e_k): <G_R, hat(e_k)>; dt/dv = V(0) = I.
    expected_w = [G[0, 2, 1] - G[0, 1, 2], G[0, 0, 2] - G[0, 2, 0], G[0, 1, 0] - G[0, 0, 1]]
    np.testing.assert_allclose(g[0, 3:], expected_w)
    np.testing.assert_allclose(g[0, :3], G[0, :3, 3])


def test_coefficients_continuous_across_threshold():
    s0 = SMALL_ANGLE ** 2
    below = np.array(rodrigues_coefficients(np.array([s0 * (1 - 1e-12)])))
    above = np.array(rodrigues_coefficients(np.array([s0 * (1 + 1e-12)])))
    np.testing.assert_allclose(below, above, rtol=1e-12, atol=1e-14)


def test_keeps_dtype_and_rejects_unknown_translation():
    xi = np.zeros((2, 6), dtype=np.float32)
    assert se3_forward(xi).dtype == np.float32
    assert se3_backward(xi, np.ones((2, 4, 4), np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="translation"):
        se3_forward(xi, "quaternion")
