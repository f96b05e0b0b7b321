"""BilinearWarp written plainly: the readable reference of pygeometry.kernels.bilinear (the fast numba kernels,
tested against this one in tests/test_kernel_bilinear.py). Loops over pixels; for small inputs and for reading.

The convention is bilinear.py's (cv2.remap's pixel centres at integers; "zeros" or "border" padding; the valid
mask; at an integer coordinate the derivative from the right, except on the last column or row exactly, where it
is taken from inside the image). Finite coordinates only.
"""
from __future__ import annotations

import math

import numpy as np


def _cell(u: float, size: int):
    """The left tap and the weight of the right one: (x0, a) with u = x0 + a. x0 = floor(u), except on the last
    pixel exactly (u == size - 1), where x0 = size - 2 and a = 1: the same value, and the derivative I[x0 + 1] -
    I[x0] then comes from inside the image."""
    x0 = math.floor(u)
    if u == size - 1 and size >= 2:
        x0 = size - 2
    return x0, u - x0


def _sample_setup(image, coords, padding, input_kind, n, y, x):
    """(u, v) after padding, whether each axis was clamped, and the inside flag, for output pixel (n, y, x)."""
    _, _, hs, ws = image.shape
    u, v = float(coords[n, 0, y, x]), float(coords[n, 1, y, x])
    if input_kind == "flow":
        u, v = u + x, v + y
    inside = 0 <= u <= ws - 1 and 0 <= v <= hs - 1
    clamp_x = clamp_y = False
    if padding == "border":
        clamp_x, clamp_y = not 0 <= u <= ws - 1, not 0 <= v <= hs - 1
        u, v = min(max(u, 0.0), ws - 1.0), min(max(v, 0.0), hs - 1.0)
    return u, v, clamp_x, clamp_y, inside


def _tap(image, n, yy, xx):
    """Pixel (yy, xx) of image n, all channels; 0 outside the image."""
    _, c, hs, ws = image.shape
    if 0 <= yy < hs and 0 <= xx < ws:
        return image[n, :, yy, xx].astype(np.float64)
    return np.zeros(c)


def warp_forward(image, coords, padding="zeros", input_kind="coords"):
    """(warped (N, C, H, W), valid (N, 1, H, W)) float64 of image (N, C, Hs, Ws) sampled at coords (N, 2, H, W)."""
    N, C, hs, ws = image.shape
    H, W = coords.shape[2:]
    warped, valid = np.zeros((N, C, H, W)), np.zeros((N, 1, H, W))
    for n in range(N):
        for y in range(H):
            for x in range(W):
                u, v, _, _, inside = _sample_setup(image, coords, padding, input_kind, n, y, x)
                x0, a = _cell(u, ws)
                y0, b = _cell(v, hs)
                warped[n, :, y, x] = ((1 - a) * (1 - b) * _tap(image, n, y0, x0)
                                      + a * (1 - b) * _tap(image, n, y0, x0 + 1)
                                      + (1 - a) * b * _tap(image, n, y0 + 1, x0)
                                      + a * b * _tap(image, n, y0 + 1, x0 + 1))
                valid[n, 0, y, x] = float(inside)
    return warped, valid


def warp_backward(image, coords, grad_warped, padding="zeros", input_kind="coords"):
    """(dL/dimage (N, C, Hs, Ws), dL/dcoords (N, 2, H, W)) float64 for dL/dwarped grad_warped (N, C, H, W); the
    coordinate gradient is 0 along an axis that border padding clamped, and a tap outside the image (zeros
    padding) receives nothing and contributes 0."""
    N, C, hs, ws = image.shape
    H, W = coords.shape[2:]
    grad_image, grad_coords = np.zeros((N, C, hs, ws)), np.zeros((N, 2, H, W))
    for n in range(N):
        for y in range(H):
            for x in range(W):
                g = grad_warped[n, :, y, x].astype(np.float64)
                u, v, clamp_x, clamp_y, _ = _sample_setup(image, coords, padding, input_kind, n, y, x)
                x0, a = _cell(u, ws)
                y0, b = _cell(v, hs)
                for yy, xx, weight in ((y0, x0, (1 - a) * (1 - b)), (y0, x0 + 1, a * (1 - b)),
                                       (y0 + 1, x0, (1 - a) * b), (y0 + 1, x0 + 1, a * b)):
                    if 0 <= yy < hs and 0 <= xx < ws:
                        grad_image[n, :, yy, xx] += weight * g
                t00, t01 = _tap(image, n, y0, x0), _tap(image, n, y0, x0 + 1)
                t10, t11 = _tap(image, n, y0 + 1, x0), _tap(image, n, y0 + 1, x0 + 1)
                d_dx = (1 - b) * (t01 - t00) + b * (t11 - t10)
                d_dy = (1 - a) * (t10 - t00) + a * (t11 - t01)
                grad_coords[n, 0, y, x] = 0.0 if clamp_x else float(g @ d_dx)
                grad_coords[n, 1, y, x] = 0.0 if clamp_y else float(g @ d_dy)
    return grad_image, grad_coords
