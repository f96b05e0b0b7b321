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

INVALID_COORD = -1.0e6
DEFAULT_EPS = 1e-3


@numba.njit(parallel=True, cache=True)
def _forward(points, K, eps, as_flow, coords, valid):
    N, _, H, W = points.shape
    for row in numba.prange(N * H):
        n, y = row // H, row % H
        fx, fy, cx, cy = K[n, 0], K[n, 1], K[n, 2], K[n, 3]
        for x in range(W):
            Z = points[n, 2, y, x]
            if Z > eps:
                u = fx * points[n, 0, y, x] / Z + cx
                v = fy * points[n, 1, y, x] / Z + cy
                valid[n, 0, y, x] = 1
            else:
                u = INVALID_COORD
                v = INVALID_COORD
                valid[n, 0, y, x] = 0
            if as_flow:
                u -= x
                v -= y
            coords[n, 0, y, x] = u
            coords[n, 1, y, x] = v


@numba.njit(parallel=True, cache=True)
def _backward(points, K, eps, grad, out):
    N, _, H, W = points.shape
    for row in numba.prange(N * H):
        n, y = row // H, row % H
        fx, fy = K[n, 0], K[n, 1]
        for x in range(W):
            Z = points[n, 2, y, x]
            if Z > eps:
                gx, gy = grad[n, 0, y, x] / Z, grad[n, 1, y, x] / Z
                out[n, 0, y, x] = gx * fx
                out[n, 1, y, x] = gy * fy
                out[n, 2, y, x] = -(gx * fx * points[n, 0, y, x] + gy * fy * points[n, 1, y, x]) / Z
            else:
                out[n, 0, y, x] = 0
                out[n, 1, y, x] = 0
                out[n, 2, y, x] = 0


def _as_K(K, n, dtype):
    return np.ascontiguousarray(np.broadcast_to(np.asarray(K, dtype=dtype).reshape(-1, 4), (n, 4)))


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
    if output not in ("coords", "flow"):
        raise ValueError(f"output must be 'coords' or 'flow', got {output!r}")
    N, _, H, W = points.shape
    if out is None:
        out = np.empty((N, 2, H, W), dtype=points.dtype)
    if valid is None:
        valid = np.empty((N, 1, H, W), dtype=points.dtype)
    _forward(np.ascontiguousarray(points), _as_K(K, N, points.dtype), float(eps), output == "flow", out, valid)
    return out, valid


def projection_backward(points, K, grad_coords, eps=DEFAULT_EPS, out=None):
    """dL/dpoints given dL/dcoords (the same for "coords" and "flow" output).

    Args:
        points: (N, 3, H, W); K: (4,) or (N, 4); grad_coords: (N, 2, H, W).

    Returns:
        grad_points: (N, 3, H, W), zero where the point is invalid.
    """
    N = points.shape[0]
    if out is None:
        out = np.empty_like(points)
    _backward(np.ascontiguousarray(points), _as_K(K, N, points.dtype), float(eps),
              np.ascontiguousarray(grad_coords, dtype=points.dtype), out)
    return out
