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

from .finite import FASTMATH


# The kernels index the 4-D arrays directly (no per-row views): with few distinct base pointers LLVM can check
# them for overlap at run time and vectorise the row loops.
@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _forward(depth, T, K, out):
    """Fill out; returns the number of NaN/inf depth values."""
    N, _, H, W = depth.shape
    ft = depth.dtype.type
    inf = ft(np.inf)
    bad = 0
    for row in numba.prange(N * H):
        n, y = row // H, row % H
        fx, fy, cx, cy = K[n, 0], K[n, 1], K[n, 2], K[n, 3]
        ry = (y - cy) / fy
        # Fold the ray into the rotation: point = d * (R[:, 0] rx + R[:, 1] ry + R[:, 2]) + t, rx = (x - cx) / fx,
        # i.e. d * (a x + b) + t per coordinate.
        ax, bx = ft(T[n, 0, 0] / fx), ft(T[n, 0, 1] * ry + T[n, 0, 2] - T[n, 0, 0] * cx / fx)
        ay, by = ft(T[n, 1, 0] / fx), ft(T[n, 1, 1] * ry + T[n, 1, 2] - T[n, 1, 0] * cx / fx)
        az, bz = ft(T[n, 2, 0] / fx), ft(T[n, 2, 1] * ry + T[n, 2, 2] - T[n, 2, 0] * cx / fx)
        tx, ty, tz = T[n, 0, 3], T[n, 1, 3], T[n, 2, 3]
        row_bad = 0
        for x in range(W):
            d = depth[n, 0, y, x]
            row_bad += not abs(d) < inf
            xf = ft(x)
            ok = d > 0
            out[n, 0, y, x] = d * (ax * xf + bx) + tx if ok else ft(0)
            out[n, 1, y, x] = d * (ay * xf + by) + ty if ok else ft(0)
            out[n, 2, y, x] = d * (az * xf + bz) + tz if ok else ft(0)
        bad += row_bad
    return bad


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _backward(depth, T, K, grad, grad_depth, partial_T, need_depth, need_T):
    """dL/ddepth into grad_depth (need_depth) and per-row partial sums of dL/dT into partial_T (need_T);
    returns the number of NaN/inf values in grad."""
    N, _, H, W = depth.shape
    ft = depth.dtype.type
    inf = ft(np.inf)
    bad = 0
    for row in numba.prange(N * H):
        n, y = row // H, row % H
        fx, fy, cx, cy = K[n, 0], K[n, 1], K[n, 2], K[n, 3]
        ry = (y - cy) / fy
        r00, r01, r02 = T[n, 0, 0], T[n, 0, 1], T[n, 0, 2]
        r10, r11, r12 = T[n, 1, 0], T[n, 1, 1], T[n, 1, 2]
        r20, r21, r22 = T[n, 2, 0], T[n, 2, 1], T[n, 2, 2]
        # (R^T g) . r = g0 (r00 rx + r01 ry + r02) + g1 (...) + g2 (...), with rx = (x - cx) / fx = kx x + k0.
        kx, k0 = 1 / fx, -cx / fx
        c0x, c00 = ft(r00 * kx), ft(r00 * k0 + r01 * ry + r02)
        c1x, c10 = ft(r10 * kx), ft(r10 * k0 + r11 * ry + r12)
        c2x, c20 = ft(r20 * kx), ft(r20 * k0 + r21 * ry + r22)
        row_bad = 0
        # Row sums S_ab = sum_x g_a P_b with P = d (rx, ry, 1): keep sum g_a d x, sum g_a d and sum g_a, over the
        # valid pixels (branch-free: invalid ones contribute zeros). Within a row they accumulate in the input
        # dtype (vectorises twice as wide as float64: 0.52 -> 0.36 ms at 8x128x416; relative change of dL/dT
        # ~2e-7 in float32), across rows in float64 (partial_T).
        s0x = s0d = s0 = s1x = s1d = s1 = s2x = s2d = s2 = ft(0)
        for x in range(W):
            d = depth[n, 0, y, x]
            g0, g1, g2 = grad[n, 0, y, x], grad[n, 1, y, x], grad[n, 2, y, x]
            row_bad += (not abs(g0) < inf) + (not abs(g1) < inf) + (not abs(g2) < inf)
            ok = d > 0
            d = d if ok else ft(0)
            g0 = g0 if ok else ft(0)
            g1 = g1 if ok else ft(0)
            g2 = g2 if ok else ft(0)
            xf = ft(x)
            if need_depth:
                grad_depth[n, 0, y, x] = g0 * (c0x * xf + c00) + g1 * (c1x * xf + c10) + g2 * (c2x * xf + c20)
            if need_T:
                dx = d * xf
                s0x += g0 * dx
                s0d += g0 * d
                s0 += g0
                s1x += g1 * dx
                s1d += g1 * d
                s1 += g1
                s2x += g2 * dx
                s2d += g2 * d
                s2 += g2
        bad += row_bad
        if need_T:
            # sum g_a d rx = kx * sum g_a d x + k0 * sum g_a d
            partial_T[row, 0], partial_T[row, 1] = kx * s0x + k0 * s0d, s0d * ry
            partial_T[row, 2], partial_T[row, 3] = s0d, s0
            partial_T[row, 4], partial_T[row, 5] = kx * s1x + k0 * s1d, s1d * ry
            partial_T[row, 6], partial_T[row, 7] = s1d, s1
            partial_T[row, 8], partial_T[row, 9] = kx * s2x + k0 * s2d, s2d * ry
            partial_T[row, 10], partial_T[row, 11] = s2d, s2
    return bad


def _as_K(K, n, dtype):
    K = np.asarray(K, dtype=dtype)
    return np.ascontiguousarray(np.broadcast_to(K.reshape(-1, 4), (n, 4)))


def _target(arr, shape, dtype):
    """arr if the kernel can write into it directly, else a new array whose result the caller copies back."""
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.writeable:
        return arr
    return np.empty(shape, dtype)


def transform_grid_forward_into(depth, src_T_tgt, K, out) -> int:
    """The forward writing into out (N, 3, H, W) (what the layer calls); see transform_grid_forward.

    Returns:
        The number of NaN/inf depth values (their points are (0, 0, 0)).
    """
    depth = np.ascontiguousarray(depth)
    N, _, H, W = depth.shape
    T = np.ascontiguousarray(src_T_tgt, dtype=depth.dtype).reshape(N, 4, 4)
    o = _target(out, (N, 3, H, W), depth.dtype)
    bad = _forward(depth, T, _as_K(K, N, depth.dtype), o)
    if o is not out:
        out[...] = o
    return int(bad)


def transform_grid_backward_into(depth, src_T_tgt, K, grad_points, grad_depth=None, need_T=True):
    """The backward writing dL/ddepth into grad_depth (None: not needed) (what the layer calls); see
    transform_grid_backward.

    Returns:
        (grad_T (N, 4, 4) or None, the number of NaN/inf values in grad_points).
    """
    depth = np.ascontiguousarray(depth)
    N, _, H, W = depth.shape
    dtype = depth.dtype
    T = np.ascontiguousarray(src_T_tgt, dtype=dtype).reshape(N, 4, 4)
    gd = _target(grad_depth, depth.shape, dtype) if grad_depth is not None else np.empty((1, 1, 1, 1), dtype)
    partial = np.empty((N * H, 12) if need_T else (1, 12), dtype=np.float64)
    bad = _backward(depth, T, _as_K(K, N, dtype), np.ascontiguousarray(grad_points, dtype=dtype), gd, partial,
                    grad_depth is not None, need_T)
    if grad_depth is not None and gd is not grad_depth:
        grad_depth[...] = gd
    grad_T = None
    if need_T:
        grad_T = np.zeros((N, 4, 4), dtype=dtype)
        grad_T[:, :3, :] = partial.reshape(N, H, 3, 4).sum(axis=1)
    return grad_T, int(bad)


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
    if out is None:
        out = np.empty((N, 3, H, W), dtype=depth.dtype)
    transform_grid_forward_into(depth, src_T_tgt, K, out)
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
    if need_depth and grad_depth is None:
        grad_depth = np.empty(depth.shape, dtype=depth.dtype)
    grad_T, _ = transform_grid_backward_into(depth, src_T_tgt, K, grad_points,
                                             grad_depth if need_depth else None, need_T)
    return (grad_depth if need_depth else None), grad_T
