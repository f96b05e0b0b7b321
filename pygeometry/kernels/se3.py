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
    back to the input dtype (N is small; this costs nothing and keeps float32 layers exact).
"""
from __future__ import annotations

import numpy as np

SMALL_ANGLE = 0.3
TRANSLATIONS = ("direct", "se3_exp")

# hat(e_k) for k = x, y, z: the generators of so(3).
_GENERATORS = np.zeros((3, 3, 3))
_GENERATORS[0, 2, 1], _GENERATORS[0, 1, 2] = 1.0, -1.0
_GENERATORS[1, 0, 2], _GENERATORS[1, 2, 0] = 1.0, -1.0
_GENERATORS[2, 1, 0], _GENERATORS[2, 0, 1] = 1.0, -1.0


def hat(w: np.ndarray) -> np.ndarray:
    """Skew-symmetric matrices: w (..., 3) -> hat(w) (..., 3, 3) with hat(w) @ v = cross(w, v)."""
    W = np.zeros(w.shape[:-1] + (3, 3), dtype=w.dtype)
    W[..., 0, 1], W[..., 0, 2] = -w[..., 2], w[..., 1]
    W[..., 1, 0], W[..., 1, 2] = w[..., 2], -w[..., 0]
    W[..., 2, 0], W[..., 2, 1] = -w[..., 1], w[..., 0]
    return W


def rodrigues_coefficients(s: np.ndarray):
    """A, B, C of the exponential maps and their derivatives d/ds, for s = theta^2 (float64 arrays).

    Returns:
        (A, B, C, dA, dB, dC), each shaped like s.
    """
    s = np.asarray(s, dtype=np.float64)
    small = s < SMALL_ANGLE ** 2
    s_small = np.where(small, s, 0.0)
    # Taylor series in s (truncation error < 1e-15 for s < 0.09).
    A_t = 1 - s_small / 6 + s_small ** 2 / 120 - s_small ** 3 / 5040 + s_small ** 4 / 362880 - s_small ** 5 / 39916800
    B_t = 0.5 - s_small / 24 + s_small ** 2 / 720 - s_small ** 3 / 40320 + s_small ** 4 / 3628800 - s_small ** 5 / 479001600
    C_t = 1 / 6 - s_small / 120 + s_small ** 2 / 5040 - s_small ** 3 / 362880 + s_small ** 4 / 39916800 - s_small ** 5 / 6227020800
    dA_t = -1 / 6 + s_small / 60 - s_small ** 2 / 1680 + s_small ** 3 / 90720 - s_small ** 4 / 7983360
    dB_t = -1 / 24 + s_small / 360 - s_small ** 2 / 13440 + s_small ** 3 / 907200 - s_small ** 4 / 95800320
    dC_t = -1 / 120 + s_small / 2520 - s_small ** 2 / 120960 + s_small ** 3 / 9979200 - s_small ** 4 / 1245404160
    # Closed forms (evaluated on a safe value where the series is used).
    s_big = np.where(small, 1.0, s)
    th = np.sqrt(s_big)
    sin, cos = np.sin(th), np.cos(th)
    A_c = sin / th
    B_c = (1 - cos) / s_big
    C_c = (th - sin) / (s_big * th)
    dA_c = (th * cos - sin) / (2 * s_big * th)
    dB_c = (th * sin - 2 * (1 - cos)) / (2 * s_big ** 2)
    dC_c = (th * (1 - cos) - 3 * (th - sin)) / (2 * s_big ** 2 * th)
    pick = lambda t, c: np.where(small, t, c)  # noqa: E731
    return pick(A_t, A_c), pick(B_t, B_c), pick(C_t, C_c), pick(dA_t, dA_c), pick(dB_t, dB_c), pick(dC_t, dC_c)


def se3_forward(xi: np.ndarray, translation: str = "direct") -> np.ndarray:
    """Pose vectors to transforms.

    Args:
        xi: (N, 6) pose vectors [tx, ty, tz, wx, wy, wz].
        translation: "direct" or "se3_exp" (see module docstring).

    Returns:
        T: (N, 4, 4) transforms [[R, t], [0, 0, 0, 1]], dtype of xi.
    """
    if translation not in TRANSLATIONS:
        raise ValueError(f"translation must be one of {TRANSLATIONS}, got {translation!r}")
    xi64 = np.asarray(xi, dtype=np.float64).reshape(-1, 6)
    v, w = xi64[:, :3], xi64[:, 3:]
    W = hat(w)
    W2 = W @ W
    A, B, C, *_ = rodrigues_coefficients(np.sum(w * w, axis=1))
    eye = np.eye(3)
    T = np.zeros((xi64.shape[0], 4, 4))
    T[:, :3, :3] = eye + A[:, None, None] * W + B[:, None, None] * W2
    if translation == "direct":
        T[:, :3, 3] = v
    else:
        V = eye + B[:, None, None] * W + C[:, None, None] * W2
        T[:, :3, 3] = np.einsum("nij,nj->ni", V, v)
    T[:, 3, 3] = 1.0
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
    xi64 = np.asarray(xi, dtype=np.float64).reshape(-1, 6)
    g = np.asarray(grad_T, dtype=np.float64).reshape(-1, 4, 4)
    v, w = xi64[:, :3], xi64[:, 3:]
    W = hat(w)
    W2 = W @ W
    A, B, C, dA, dB, dC = rodrigues_coefficients(np.sum(w * w, axis=1))
    a, b, c = A[:, None, None, None], B[:, None, None, None], C[:, None, None, None]
    Gk = _GENERATORS[None]  # (1, 3, 3, 3): k, i, j
    WkW_WWk = Gk @ W[:, None] + W[:, None] @ Gk  # (N, 3, 3, 3)
    two_w = 2 * w[:, :, None, None]
    dR = a * Gk + b * WkW_WWk + two_w * (dA[:, None, None, None] * W[:, None] + dB[:, None, None, None] * W2[:, None])
    g_R, g_t = g[:, :3, :3], g[:, :3, 3]
    grad = np.zeros_like(xi64)
    grad[:, 3:] = np.einsum("nkij,nij->nk", dR, g_R)
    if translation == "direct":
        grad[:, :3] = g_t
    else:
        V = np.eye(3) + B[:, None, None] * W + C[:, None, None] * W2
        grad[:, :3] = np.einsum("nij,ni->nj", V, g_t)
        dV = b * Gk + c * WkW_WWk + two_w * (dB[:, None, None, None] * W[:, None] + dC[:, None, None, None] * W2[:, None])
        grad[:, 3:] += np.einsum("nkij,nj,ni->nk", dV, v, g_t)
    return grad.astype(np.asarray(xi).dtype, copy=False)
