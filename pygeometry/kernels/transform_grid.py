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


@numba.njit(parallel=True, cache=True)
def _forward(depth, T, K, out):
    N, _, H, W = depth.shape
    for row in numba.prange(N * H):
        n, y = row // H, row % H
        fx, fy, cx, cy = K[n, 0], K[n, 1], K[n, 2], K[n, 3]
        ry = (y - cy) / fy
        for x in range(W):
            d = depth[n, 0, y, x]
            if d > 0:
                px, py, pz = d * (x - cx) / fx, d * ry, d
                for i in range(3):
                    out[n, i, y, x] = T[n, i, 0] * px + T[n, i, 1] * py + T[n, i, 2] * pz + T[n, i, 3]
            else:
                out[n, 0, y, x] = 0
                out[n, 1, y, x] = 0
                out[n, 2, y, x] = 0


@numba.njit(parallel=True, cache=True)
def _backward(depth, T, K, grad, grad_depth, partial_T, need_depth, need_T):
    N, _, H, W = depth.shape
    for row in numba.prange(N * H):
        n, y = row // H, row % H
        fx, fy, cx, cy = K[n, 0], K[n, 1], K[n, 2], K[n, 3]
        ry = (y - cy) / fy
        acc = np.zeros(12)
        for x in range(W):
            d = depth[n, 0, y, x]
            if d > 0:
                g0, g1, g2 = grad[n, 0, y, x], grad[n, 1, y, x], grad[n, 2, y, x]
                rx = (x - cx) / fx
                if need_depth:
                    # (R^T g) . r
                    rtg0 = T[n, 0, 0] * g0 + T[n, 1, 0] * g1 + T[n, 2, 0] * g2
                    rtg1 = T[n, 0, 1] * g0 + T[n, 1, 1] * g1 + T[n, 2, 1] * g2
                    rtg2 = T[n, 0, 2] * g0 + T[n, 1, 2] * g1 + T[n, 2, 2] * g2
                    grad_depth[n, 0, y, x] = rtg0 * rx + rtg1 * ry + rtg2
                if need_T:
                    px, py, pz = d * rx, d * ry, d
                    acc[0] += g0 * px
                    acc[1] += g0 * py
                    acc[2] += g0 * pz
                    acc[3] += g0
                    acc[4] += g1 * px
                    acc[5] += g1 * py
                    acc[6] += g1 * pz
                    acc[7] += g1
                    acc[8] += g2 * px
                    acc[9] += g2 * py
                    acc[10] += g2 * pz
                    acc[11] += g2
            elif need_depth:
                grad_depth[n, 0, y, x] = 0
        if need_T:
            for k in range(12):
                partial_T[row, k] = acc[k]


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
