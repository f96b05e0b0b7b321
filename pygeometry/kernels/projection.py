"""PinholeProjection: 3-D points in the source camera -> source pixel coordinates (or flow), with validity.

Convention:
    K = [fx, fy, cx, cy] is the SOURCE camera. For a point (X, Y, Z) with Z > eps:
        x = fx X / Z + cx,   y = fy Y / Z + cy        (pixel centres at integers, channel 0 is x)
    "flow" output is the coordinates minus the pixel grid of the output: flow = (x - u, y - v) at pixel (u, v).
    A point with Z <= eps (behind or too close to the camera, or an invalid depth from Transform3DGrid) is
    invalid: valid = 0, its coordinates are the finite sentinel INVALID_COORD (far outside any image, so
    BilinearWarp also marks it invalid and samples padding) and it passes zero gradient. No eps is ever added
    to Z.

Backward, for g = dL/d(x, y) at a valid pixel:
    dL/dX = g_x fx / Z,  dL/dY = g_y fy / Z,  dL/dZ = -(g_x (x - cx) + g_y (y - cy)) / Z.
"""
from __future__ import annotations

import numba
import numpy as np

from .finite import FASTMATH

INVALID_COORD = -1.0e6
DEFAULT_EPS = 1e-3


# The kernels index the 4-D arrays directly (no per-row views): with few distinct base pointers LLVM can check
# them for overlap at run time and vectorise the row loops.
@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _forward(points, K, eps, as_flow, coords, valid, want_valid):
    """Fill coords (and valid when want_valid); returns the number of NaN/inf values in points."""
    N, _, H, W = points.shape
    ft = points.dtype.type
    # (eps stays float64: Z > eps compares exactly, as the docstring says)
    inf = ft(np.inf)
    invalid = ft(INVALID_COORD)
    flow = ft(1 if as_flow else 0)
    bad = 0
    for row in numba.prange(N * H):
        n, y = row // H, row % H
        fx, fy, cx, cy = K[n, 0], K[n, 1], K[n, 2], K[n, 3]
        yf = ft(y) * flow
        row_bad = 0
        for x in range(W):
            X, Y, Z = points[n, 0, y, x], points[n, 1, y, x], points[n, 2, y, x]
            row_bad += (not abs(X) < inf) + (not abs(Y) < inf) + (not abs(Z) < inf)
            ok = Z > eps
            inv_z = ft(1) / Z if ok else ft(0)
            # flow: minus the pixel grid (also from the sentinel, as coords - grid)
            coords[n, 0, y, x] = (fx * X * inv_z + cx if ok else invalid) - ft(x) * flow
            coords[n, 1, y, x] = (fy * Y * inv_z + cy if ok else invalid) - yf
        bad += row_bad
        if want_valid:
            for x in range(W):
                valid[n, 0, y, x] = 1 if points[n, 2, y, x] > eps else 0
    return bad


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _backward(points, K, eps, grad, out):
    """Fill out with dL/dpoints; returns the number of NaN/inf values in grad."""
    N, _, H, W = points.shape
    ft = points.dtype.type
    # (eps stays float64: Z > eps compares exactly, as the docstring says)
    inf = ft(np.inf)
    bad = 0
    for row in numba.prange(N * H):
        n, y = row // H, row % H
        fx, fy = K[n, 0], K[n, 1]
        row_bad = 0
        for x in range(W):
            Z = points[n, 2, y, x]
            gu, gv = grad[n, 0, y, x], grad[n, 1, y, x]
            row_bad += (not abs(gu) < inf) + (not abs(gv) < inf)
            ok = Z > eps
            inv_z = ft(1) / Z if ok else ft(0)
            gX = gu * fx * inv_z if ok else ft(0)  # (the select also keeps NaN/inf grads of invalid points out)
            gY = gv * fy * inv_z if ok else ft(0)
            out[n, 0, y, x] = gX
            out[n, 1, y, x] = gY
            out[n, 2, y, x] = -(gX * points[n, 0, y, x] + gY * points[n, 1, y, x]) * inv_z
        bad += row_bad
    return bad


def _as_K(K, n, dtype):
    return np.ascontiguousarray(np.broadcast_to(np.asarray(K, dtype=dtype).reshape(-1, 4), (n, 4)))


def _target(arr, shape, dtype):
    """arr if the kernel can write into it directly, else a new array whose result the caller copies back."""
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.writeable:
        return arr
    return np.empty(shape, dtype)


def _check_output(output):
    if output not in ("coords", "flow"):
        raise ValueError(f"output must be 'coords' or 'flow', got {output!r}")


def projection_forward_into(points, K, eps, output, out, valid=None) -> int:
    """The forward writing into out (N, 2, H, W) and valid (N, 1, H, W), or None to skip the valid mask (what
    the layer calls); see projection_forward.

    Returns:
        The number of NaN/inf values in points.
    """
    _check_output(output)
    points = np.ascontiguousarray(points)
    N, _, H, W = points.shape
    dtype = points.dtype
    o = _target(out, (N, 2, H, W), dtype)
    v = _target(valid, (N, 1, H, W), dtype) if valid is not None else np.empty((1, 1, 1, 1), dtype)
    bad = _forward(points, _as_K(K, N, dtype), float(eps), output == "flow", o, v, valid is not None)
    if o is not out:
        out[...] = o
    if valid is not None and v is not valid:
        valid[...] = v
    return int(bad)


def projection_backward_into(points, K, grad_coords, eps, out) -> int:
    """The backward writing dL/dpoints into out (N, 3, H, W) (what the layer calls); see projection_backward.

    Returns:
        The number of NaN/inf values in grad_coords.
    """
    points = np.ascontiguousarray(points)
    dtype = points.dtype
    o = _target(out, points.shape, dtype)
    bad = _backward(points, _as_K(K, points.shape[0], dtype), float(eps),
                    np.ascontiguousarray(grad_coords, dtype=dtype), o)
    if o is not out:
        out[...] = o
    return int(bad)


def projection_forward(points, K, eps=DEFAULT_EPS, output="coords", out=None, valid=None):
    """Project source-camera points to pixels.

    Args:
        points: (N, 3, H, W) points in the source camera frame.
        K: (4,) or (N, 4) source intrinsics [fx, fy, cx, cy].
        eps: minimum z of a valid point.
        output: "coords" or "flow".
        out, valid: optional (N, 2, H, W) and (N, 1, H, W) arrays to write into.

    Returns:
        (coords or flow (N, 2, H, W), valid (N, 1, H, W) of 0/1), dtype of points.
    """
    _check_output(output)
    N, _, H, W = points.shape
    if out is None:
        out = np.empty((N, 2, H, W), dtype=points.dtype)
    if valid is None:
        valid = np.empty((N, 1, H, W), dtype=points.dtype)
    projection_forward_into(points, K, eps, output, out, valid)
    return out, valid


def projection_backward(points, K, grad_coords, eps=DEFAULT_EPS, out=None):
    """dL/dpoints given dL/dcoords (the same for "coords" and "flow" output).

    Args:
        points: (N, 3, H, W); K: (4,) or (N, 4); grad_coords: (N, 2, H, W).

    Returns:
        grad_points: (N, 3, H, W), zero where the point is invalid.
    """
    if out is None:
        out = np.empty(points.shape, dtype=points.dtype)
    projection_backward_into(points, K, grad_coords, eps, out)
    return out
