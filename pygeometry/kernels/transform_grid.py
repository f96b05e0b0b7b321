"""Transform3DGrid: back-project the target depth map and move the points into the source camera.

Convention:
    Pixel (x, y) = (column, row) with pixel centres at integers. K = [fx, fy, cx, cy] is the TARGET camera.
    The target ray of pixel (x, y) is r = [(x - cx) / fx, (y - cy) / fy, 1], so the target point is
    P_tgt = depth * r (depth is the z coordinate, not the ray length), and

        points_src = R @ P_tgt + t,     src_T_tgt = [[R, t], [0, 0, 0, 1]].

    Pixels with depth <= 0 are invalid: their point is (0, 0, 0) (z = 0, so PinholeProjection marks them
    invalid) and they pass no gradient.

Backward, for g = dL/dpoints_src at a valid pixel:
    dL/ddepth = (R^T g) . r,   dL/dR = sum_pixels g P_tgt^T,   dL/dt = sum_pixels g.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, fastmath=True, cache=True)
def _forward(depth, T, K, out):
    N, _, H, W = depth.shape
    for row in numba.prange(N * H):
        n, y = row // H, row % H
        fx, fy, cx, cy = K[n, 0], K[n, 1], K[n, 2], K[n, 3]
        ry = (y - cy) / fy
        # Fold the ray into the rotation: point = d * (R[:, 0] rx + R[:, 1] ry + R[:, 2]) + t, rx = (x - cx) / fx.
        ax, bx = T[n, 0, 0] / fx, T[n, 0, 1] * ry + T[n, 0, 2] - T[n, 0, 0] * cx / fx
        ay, by = T[n, 1, 0] / fx, T[n, 1, 1] * ry + T[n, 1, 2] - T[n, 1, 0] * cx / fx
        az, bz = T[n, 2, 0] / fx, T[n, 2, 1] * ry + T[n, 2, 2] - T[n, 2, 0] * cx / fx
        tx, ty, tz = T[n, 0, 3], T[n, 1, 3], T[n, 2, 3]
        for x in range(W):
            d = depth[n, 0, y, x]
            if d > 0:
                out[n, 0, y, x] = d * (ax * x + bx) + tx
                out[n, 1, y, x] = d * (ay * x + by) + ty
                out[n, 2, y, x] = d * (az * x + bz) + tz
            else:
                out[n, 0, y, x] = 0
                out[n, 1, y, x] = 0
                out[n, 2, y, x] = 0


@numba.njit(parallel=True, fastmath=True, cache=True)
def _backward(depth, T, K, grad, grad_depth, partial_T, need_depth, need_T):
    N, _, H, W = depth.shape
    for row in numba.prange(N * H):
        n, y = row // H, row % H
        fx, fy, cx, cy = K[n, 0], K[n, 1], K[n, 2], K[n, 3]
        ry = (y - cy) / fy
        r00, r01, r02 = T[n, 0, 0], T[n, 0, 1], T[n, 0, 2]
        r10, r11, r12 = T[n, 1, 0], T[n, 1, 1], T[n, 1, 2]
        r20, r21, r22 = T[n, 2, 0], T[n, 2, 1], T[n, 2, 2]
        # Row sums: S_ab = sum_x g_a * P_b with P = d * (rx, ry, 1): keep sum g_a d rx and sum g_a d.
        s0x = s0d = s0 = s1x = s1d = s1 = s2x = s2d = s2 = 0.0
        for x in range(W):
            d = depth[n, 0, y, x]
            if d > 0:
                g0, g1, g2 = grad[n, 0, y, x], grad[n, 1, y, x], grad[n, 2, y, x]
                rx = (x - cx) / fx
                if need_depth:
                    # (R^T g) . r
                    grad_depth[n, 0, y, x] = ((r00 * g0 + r10 * g1 + r20 * g2) * rx
                                              + (r01 * g0 + r11 * g1 + r21 * g2) * ry
                                              + (r02 * g0 + r12 * g1 + r22 * g2))
                if need_T:
                    drx = d * rx
                    s0x += g0 * drx
                    s0d += g0 * d
                    s0 += g0
                    s1x += g1 * drx
                    s1d += g1 * d
                    s1 += g1
                    s2x += g2 * drx
                    s2d += g2 * d
                    s2 += g2
            elif need_depth:
                grad_depth[n, 0, y, x] = 0
        if need_T:
            partial_T[row, 0], partial_T[row, 1], partial_T[row, 2], partial_T[row, 3] = s0x, s0d * ry, s0d, s0
            partial_T[row, 4], partial_T[row, 5], partial_T[row, 6], partial_T[row, 7] = s1x, s1d * ry, s1d, s1
            partial_T[row, 8], partial_T[row, 9], partial_T[row, 10], partial_T[row, 11] = s2x, s2d * ry, s2d, s2


def _as_K(K, n, dtype):
    K = np.asarray(K, dtype=dtype)
    return np.ascontiguousarray(np.broadcast_to(K.reshape(-1, 4), (n, 4)))


def transform_grid_forward(depth: np.ndarray, src_T_tgt: np.ndarray, K: np.ndarray, out=None) -> np.ndarray:
    """Target depth -> 3-D points in the source camera.

    Args:
        depth: (N, 1, H, W) target depth (z), <= 0 means invalid.
        src_T_tgt: (N, 4, 4) target-to-source transforms.
        K: (4,) or (N, 4) target intrinsics [fx, fy, cx, cy].
        out: optional (N, 3, H, W) array to write into.

    Returns:
        points_src: (N, 3, H, W), dtype of depth.
    """
    N, _, H, W = depth.shape
    T = np.ascontiguousarray(src_T_tgt, dtype=depth.dtype).reshape(N, 4, 4)
    if out is None:
        out = np.empty((N, 3, H, W), dtype=depth.dtype)
    _forward(np.ascontiguousarray(depth), T, _as_K(K, N, depth.dtype), out)
    return out


def transform_grid_backward(depth, src_T_tgt, K, grad_points, need_depth=True, need_T=True, grad_depth=None):
    """Gradients of Transform3DGrid.

    Args:
        depth: (N, 1, H, W); src_T_tgt: (N, 4, 4); K: (4,) or (N, 4) as in the forward.
        grad_points: (N, 3, H, W) dL/dpoints_src.
        need_depth, need_T: which gradients to compute (the other is returned as None).
        grad_depth: optional (N, 1, H, W) array to write dL/ddepth into.

    Returns:
        (grad_depth (N, 1, H, W) or None, grad_T (N, 4, 4) or None); the bottom row of grad_T is zero.
    """
    N, _, H, W = depth.shape
    dtype = depth.dtype
    T = np.ascontiguousarray(src_T_tgt, dtype=dtype).reshape(N, 4, 4)
    if need_depth and grad_depth is None:
        grad_depth = np.empty_like(depth)
    gd = grad_depth if need_depth else np.empty((1, 1, 1, 1), dtype)
    partial = np.empty((N * H, 12) if need_T else (1, 12), dtype=np.float64)
    _backward(np.ascontiguousarray(depth), T, _as_K(K, N, dtype), np.ascontiguousarray(grad_points, dtype=dtype),
              gd, partial, need_depth, need_T)
    grad_T = None
    if need_T:
        grad_T = np.zeros((N, 4, 4), dtype=dtype)
        grad_T[:, :3, :] = partial.reshape(N, H, 3, 4).sum(axis=1)
    return (grad_depth if need_depth else None), grad_T
