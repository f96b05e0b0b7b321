"""SE(3) generator: pose vectors xi = [t, w] to 4x4 rigid transforms, and the analytic backward.

Convention:
    xi (N, 6) = [tx, ty, tz, wx, wy, wz]: translation first, then the rotation as an axis-angle (so(3))
    vector w in radians. R = exp(hat(w)) by Rodrigues:

        R = I + A(s) W + B(s) W^2,   W = hat(w), s = theta^2 = |w|^2,
        A = sin(theta) / theta,   B = (1 - cos(theta)) / theta^2.

    Translation "direct" (default): t = [tx, ty, tz].
    Translation "se3_exp": the full SE(3) exponential, t = V(w) v with V = I + B W + C W^2,
        C = (theta - sin(theta)) / theta^3, v = [tx, ty, tz].
    T = [[R, t], [0, 0, 0, 1]] (column vectors). Used as src_T_tgt by the pose networks.

    The coefficients A, B, C and their derivatives with respect to s are evaluated by Taylor series for
    theta < SMALL_ANGLE (finite in value and gradient at w = 0, and accurate to ~1e-13 on both
    sides of the threshold) and by the closed forms above it. Everything is computed in float64 and cast
    back to the input dtype (N is small; this costs nothing and keeps float32 layers exact), in numba loops
    over the samples with the 3x3 algebra written out (numpy's batched 3x3 products cost ~0.3 ms per
    forward+backward in call overhead alone, more than the whole kernel).
"""
from __future__ import annotations

import numba
import numpy as np

SMALL_ANGLE = 0.3
TRANSLATIONS = ("direct", "se3_exp")

def hat(w: np.ndarray) -> np.ndarray:
    """Skew-symmetric matrices: w (..., 3) -> hat(w) (..., 3, 3) with hat(w) @ v = cross(w, v)."""
    W = np.zeros(w.shape[:-1] + (3, 3), dtype=w.dtype)
    W[..., 0, 1], W[..., 0, 2] = -w[..., 2], w[..., 1]
    W[..., 1, 0], W[..., 1, 2] = w[..., 2], -w[..., 0]
    W[..., 2, 0], W[..., 2, 1] = -w[..., 1], w[..., 0]
    return W


@numba.njit(cache=True)
def _coefficients(s):
    """A, B, C and dA/ds, dB/ds, dC/ds at one s = theta^2 >= 0 (float64)."""
    if s < SMALL_ANGLE ** 2:
        # Taylor series in s (truncation error < 1e-15 for s < 0.09).
        A = 1 - s / 6 + s ** 2 / 120 - s ** 3 / 5040 + s ** 4 / 362880 - s ** 5 / 39916800
        B = 0.5 - s / 24 + s ** 2 / 720 - s ** 3 / 40320 + s ** 4 / 3628800 - s ** 5 / 479001600
        C = 1 / 6 - s / 120 + s ** 2 / 5040 - s ** 3 / 362880 + s ** 4 / 39916800 - s ** 5 / 6227020800
        dA = -1 / 6 + s / 60 - s ** 2 / 1680 + s ** 3 / 90720 - s ** 4 / 7983360
        dB = -1 / 24 + s / 360 - s ** 2 / 13440 + s ** 3 / 907200 - s ** 4 / 95800320
        dC = -1 / 120 + s / 2520 - s ** 2 / 120960 + s ** 3 / 9979200 - s ** 4 / 1245404160
        return A, B, C, dA, dB, dC
    th = np.sqrt(s)
    sin, cos = np.sin(th), np.cos(th)
    return (sin / th, (1 - cos) / s, (th - sin) / (s * th), (th * cos - sin) / (2 * s * th),
            (th * sin - 2 * (1 - cos)) / (2 * s ** 2), (th * (1 - cos) - 3 * (th - sin)) / (2 * s ** 2 * th))


@numba.njit(cache=True)
def _rodrigues_coefficients(s, out):
    for i in range(s.size):
        out[:, i] = _coefficients(s[i])


def rodrigues_coefficients(s: np.ndarray):
    """A, B, C of the exponential maps and their derivatives d/ds, for s = theta^2 (float64 arrays).

    Returns:
        (A, B, C, dA, dB, dC), each shaped like s.
    """
    s = np.asarray(s, dtype=np.float64)
    out = np.empty((6, s.size))
    _rodrigues_coefficients(np.ascontiguousarray(s).reshape(-1), out)
    return tuple(out[k].reshape(s.shape) for k in range(6))


@numba.njit(inline="always")
def _hat_and_square(w, W, W2):
    """W = hat(w) and W2 = W @ W = w w^T - |w|^2 I (3x3 float64); returns s = |w|^2."""
    s = w[0] * w[0] + w[1] * w[1] + w[2] * w[2]
    W[0, 0], W[0, 1], W[0, 2] = 0.0, -w[2], w[1]
    W[1, 0], W[1, 1], W[1, 2] = w[2], 0.0, -w[0]
    W[2, 0], W[2, 1], W[2, 2] = -w[1], w[0], 0.0
    for i in range(3):
        for j in range(3):
            W2[i, j] = w[i] * w[j] - (s if i == j else 0.0)
    return s


@numba.njit(cache=True)
def _forward(xi, se3_exp, T):
    """T (N, 4, 4) float64 from xi (N, 6) float64."""
    W, W2 = np.empty((3, 3)), np.empty((3, 3))
    for n in range(xi.shape[0]):
        s = _hat_and_square(xi[n, 3:], W, W2)
        A, B, C, _, _, _ = _coefficients(s)
        T[n] = 0.0
        for i in range(3):
            for j in range(3):
                T[n, i, j] = (1.0 if i == j else 0.0) + A * W[i, j] + B * W2[i, j]
            if se3_exp:  # t = V v, V = I + B W + C W^2
                t = xi[n, i]
                for j in range(3):
                    t += (B * W[i, j] + C * W2[i, j]) * xi[n, j]
                T[n, i, 3] = t
            else:
                T[n, i, 3] = xi[n, i]
        T[n, 3, 3] = 1.0


@numba.njit(inline="always")
def _add_exp_gradient(M, W, W2, w, c0, c1, dc0, dc1, grad_w):
    """grad_w[k] += <c0 W_k + c1 (W_k W + W W_k) + 2 w_k (dc0 W + dc1 W^2), M> for the generators W_k = hat(e_k),
    using <W_k, X> = vee(X)_k = (X[2,1] - X[1,2], X[0,2] - X[2,0], X[1,0] - X[0,1])_k and
    <W_k W + W W_k, M> = <W_k, M W^T + W^T M> = -<W_k, M W + W M>."""
    P = np.empty((3, 3))  # -(M W + W M)
    for i in range(3):
        for j in range(3):
            acc = 0.0
            for k in range(3):
                acc += M[i, k] * W[k, j] + W[i, k] * M[k, j]
            P[i, j] = -acc
    dots = 0.0
    for i in range(3):
        for j in range(3):
            dots += (dc0 * W[i, j] + dc1 * W2[i, j]) * M[i, j]
    grad_w[0] += c0 * (M[2, 1] - M[1, 2]) + c1 * (P[2, 1] - P[1, 2]) + 2 * w[0] * dots
    grad_w[1] += c0 * (M[0, 2] - M[2, 0]) + c1 * (P[0, 2] - P[2, 0]) + 2 * w[1] * dots
    grad_w[2] += c0 * (M[1, 0] - M[0, 1]) + c1 * (P[1, 0] - P[0, 1]) + 2 * w[2] * dots


@numba.njit(cache=True)
def _backward(xi, g, se3_exp, grad):
    """grad (N, 6) float64 from xi (N, 6) and dL/dT g (N, 4, 4), float64."""
    W, W2, M = np.empty((3, 3)), np.empty((3, 3)), np.empty((3, 3))
    for n in range(xi.shape[0]):
        w = xi[n, 3:]
        s = _hat_and_square(w, W, W2)
        A, B, C, dA, dB, dC = _coefficients(s)
        grad[n] = 0.0
        _add_exp_gradient(g[n, :3, :3], W, W2, w, A, B, dA, dB, grad[n, 3:])
        if se3_exp:  # t = V v: dL/dv = V^T g_t, dL/dw_k = <dV/dw_k, g_t v^T>
            for j in range(3):
                acc = g[n, j, 3]
                for i in range(3):
                    acc += (B * W[i, j] + C * W2[i, j]) * g[n, i, 3]
                grad[n, j] = acc
            for i in range(3):
                for j in range(3):
                    M[i, j] = g[n, i, 3] * xi[n, j]
            _add_exp_gradient(M, W, W2, w, B, C, dB, dC, grad[n, 3:])
        else:
            for i in range(3):
                grad[n, i] = g[n, i, 3]


def _check_translation(translation):
    if translation not in TRANSLATIONS:
        raise ValueError(f"translation must be one of {TRANSLATIONS}, got {translation!r}")


def se3_forward(xi: np.ndarray, translation: str = "direct") -> np.ndarray:
    """Pose vectors to transforms.

    Args:
        xi: (N, 6) pose vectors [tx, ty, tz, wx, wy, wz].
        translation: "direct" or "se3_exp" (see module docstring).

    Returns:
        T: (N, 4, 4) transforms [[R, t], [0, 0, 0, 1]], dtype of xi.
    """
    _check_translation(translation)
    xi64 = np.ascontiguousarray(xi, dtype=np.float64).reshape(-1, 6)
    T = np.empty((xi64.shape[0], 4, 4))
    _forward(xi64, translation == "se3_exp", T)
    return T.astype(np.asarray(xi).dtype, copy=False)


def se3_backward(xi: np.ndarray, grad_T: np.ndarray, translation: str = "direct") -> np.ndarray:
    """Gradient of a scalar loss with respect to xi, given its gradient with respect to T.

    With W_k = hat(e_k), dW/dw_k = W_k and ds/dw_k = 2 w_k:
        dR/dw_k = A W_k + B (W_k W + W W_k) + 2 w_k (dA W + dB W^2)
        dV/dw_k = B W_k + C (W_k W + W W_k) + 2 w_k (dB W + dC W^2)
    The bottom row of grad_T is ignored (it is constant).

    Args:
        xi: (N, 6) pose vectors.
        grad_T: (N, 4, 4) dL/dT.
        translation: "direct" or "se3_exp".

    Returns:
        grad_xi: (N, 6), dtype of xi.
    """
    _check_translation(translation)
    xi64 = np.ascontiguousarray(xi, dtype=np.float64).reshape(-1, 6)
    g = np.ascontiguousarray(grad_T, dtype=np.float64).reshape(-1, 4, 4)
    grad = np.empty_like(xi64)
    _backward(xi64, g, translation == "se3_exp", grad)
    return grad.astype(np.asarray(xi).dtype, copy=False)
