"""BilinearWarp: sample a source image (or any feature map) at per-pixel coordinates, and the backward.

Convention:
    image (N, C, Hs, Ws) is sampled at coords (N, 2, H, W), channel 0 = x (column), channel 1 = y (row),
    pixel centres at integers as in cv2.remap (equivalently torch grid_sample with align_corners=True).
    With input "flow" the coordinates are flow + pixel grid of the output.
    With x0 = floor(x), y0 = floor(y), a = x - x0, b = y - y0:
        out = (1-a)(1-b) I[y0, x0] + a (1-b) I[y0, x0+1] + (1-a) b I[y0+1, x0] + a b I[y0+1, x0+1]
    padding "zeros": taps outside the image read 0 (cv2.BORDER_CONSTANT with 0).
    padding "border": the coordinates are first clamped to [0, Ws-1] x [0, Hs-1] (cv2.BORDER_REPLICATE); the
        coordinate gradient is then 0 along a clamped axis.
    valid = 1 where 0 <= x <= Ws-1 and 0 <= y <= Hs-1 (the sample lies inside the source image), else 0.

Backward (at the kink x = integer the one-sided derivative from the right is used, as floor does, except
on the last column/row exactly, where the derivative from inside the image (the left) is used):
    dL/dI[tap] += weight(tap) * g
    dL/dx = sum_c g_c ((1-b)(I[y0,x0+1] - I[y0,x0]) + b (I[y0+1,x0+1] - I[y0+1,x0]))
    dL/dy = sum_c g_c ((1-a)(I[y0+1,x0] - I[y0,x0]) + a (I[y0+1,x0+1] - I[y0,x0+1]))
"""
from __future__ import annotations

import math

import numba
import numpy as np

PADDINGS = ("zeros", "border")


@numba.njit(inline="always")
def _setup(coords, n, y, x, Hs, Ws, as_flow, border):
    """Sample position -> (x0, y0, a, b, inside, clamp_x, clamp_y)."""
    u = coords[n, 0, y, x]
    v = coords[n, 1, y, x]
    if as_flow:
        u += x
        v += y
    inside = (u >= 0) and (u <= Ws - 1) and (v >= 0) and (v <= Hs - 1)
    clamp_x = False
    clamp_y = False
    if border:
        if u < 0:
            u, clamp_x = 0.0, True
        elif u > Ws - 1:
            u, clamp_x = Ws - 1.0, True
        if v < 0:
            v, clamp_y = 0.0, True
        elif v > Hs - 1:
            v, clamp_y = Hs - 1.0, True
    else:
        # Far outside: every tap reads 0; keep the integer conversion below in range.
        if u < -2.0 or u > Ws + 1.0 or v < -2.0 or v > Hs + 1.0:
            u, v = -10.0, -10.0
    x0f = math.floor(u)
    y0f = math.floor(v)
    # On the last row/column exactly, use the taps to the left/above (weight 1 on the far one): same value,
    # and the derivative stays the one from inside the image.
    if u == Ws - 1 and Ws > 1:
        x0f = Ws - 2.0
    if v == Hs - 1 and Hs > 1:
        y0f = Hs - 2.0
    return int(x0f), int(y0f), u - x0f, v - y0f, inside, clamp_x, clamp_y


@numba.njit(inline="always")
def _tap(img, n, c, yy, xx, Hs, Ws):
    if 0 <= yy < Hs and 0 <= xx < Ws:
        return img[n, c, yy, xx]
    return 0.0


@numba.njit(parallel=True, cache=True)
def _forward(img, coords, as_flow, border, out, valid):
    N, C, Hs, Ws = img.shape
    H, W = coords.shape[2], coords.shape[3]
    for row in numba.prange(N * H):
        n, y = row // H, row % H
        for x in range(W):
            x0, y0, a, b, inside, _, _ = _setup(coords, n, y, x, Hs, Ws, as_flow, border)
            valid[n, 0, y, x] = 1.0 if inside else 0.0
            w00, w01, w10, w11 = (1 - a) * (1 - b), a * (1 - b), (1 - a) * b, a * b
            if 0 <= x0 and x0 + 1 < Ws and 0 <= y0 and y0 + 1 < Hs:  # fast path: all taps inside
                for c in range(C):
                    out[n, c, y, x] = (w00 * img[n, c, y0, x0] + w01 * img[n, c, y0, x0 + 1]
                                       + w10 * img[n, c, y0 + 1, x0] + w11 * img[n, c, y0 + 1, x0 + 1])
            else:
                for c in range(C):
                    out[n, c, y, x] = (w00 * _tap(img, n, c, y0, x0, Hs, Ws) + w01 * _tap(img, n, c, y0, x0 + 1, Hs, Ws)
                                       + w10 * _tap(img, n, c, y0 + 1, x0, Hs, Ws)
                                       + w11 * _tap(img, n, c, y0 + 1, x0 + 1, Hs, Ws))


@numba.njit(parallel=True, cache=True)
def _backward_coords(img, coords, grad, as_flow, border, out):
    N, C, Hs, Ws = img.shape
    H, W = coords.shape[2], coords.shape[3]
    for row in numba.prange(N * H):
        n, y = row // H, row % H
        for x in range(W):
            x0, y0, a, b, _, clamp_x, clamp_y = _setup(coords, n, y, x, Hs, Ws, as_flow, border)
            gx = 0.0
            gy = 0.0
            for c in range(C):
                i00 = _tap(img, n, c, y0, x0, Hs, Ws)
                i01 = _tap(img, n, c, y0, x0 + 1, Hs, Ws)
                i10 = _tap(img, n, c, y0 + 1, x0, Hs, Ws)
                i11 = _tap(img, n, c, y0 + 1, x0 + 1, Hs, Ws)
                g = grad[n, c, y, x]
                gx += g * ((1 - b) * (i01 - i00) + b * (i11 - i10))
                gy += g * ((1 - a) * (i10 - i00) + a * (i11 - i01))
            out[n, 0, y, x] = 0.0 if clamp_x else gx
            out[n, 1, y, x] = 0.0 if clamp_y else gy


@numba.njit(parallel=True, cache=True)
def _backward_image(coords, grad, as_flow, border, out):
    """Scatter dL/dimage; one (n, c) plane per parallel task, so no two tasks write the same element."""
    N, C, Hs, Ws = out.shape
    H, W = coords.shape[2], coords.shape[3]
    for plane in numba.prange(N * C):
        n, c = plane // C, plane % C
        for y0_ in range(Hs):
            for x0_ in range(Ws):
                out[n, c, y0_, x0_] = 0
        for y in range(H):
            for x in range(W):
                g = grad[n, c, y, x]
                if g == 0:
                    continue
                x0, y0, a, b, _, _, _ = _setup(coords, n, y, x, Hs, Ws, as_flow, border)
                if 0 <= x0 and x0 + 1 < Ws and 0 <= y0 and y0 + 1 < Hs:
                    out[n, c, y0, x0] += (1 - a) * (1 - b) * g
                    out[n, c, y0, x0 + 1] += a * (1 - b) * g
                    out[n, c, y0 + 1, x0] += (1 - a) * b * g
                    out[n, c, y0 + 1, x0 + 1] += a * b * g
                else:
                    if 0 <= y0 < Hs:
                        if 0 <= x0 < Ws:
                            out[n, c, y0, x0] += (1 - a) * (1 - b) * g
                        if 0 <= x0 + 1 < Ws:
                            out[n, c, y0, x0 + 1] += a * (1 - b) * g
                    if 0 <= y0 + 1 < Hs:
                        if 0 <= x0 < Ws:
                            out[n, c, y0 + 1, x0] += (1 - a) * b * g
                        if 0 <= x0 + 1 < Ws:
                            out[n, c, y0 + 1, x0 + 1] += a * b * g


def _check(padding, input_kind):
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if input_kind not in ("coords", "flow"):
        raise ValueError(f"input must be 'coords' or 'flow', got {input_kind!r}")


def bilinear_forward(image, coords, padding="zeros", input_kind="coords", out=None, valid=None):
    """Warp: sample image at coords.

    Args:
        image: (N, C, Hs, Ws) source image or feature map.
        coords: (N, 2, H, W) sample positions (x, y), or flow if input_kind == "flow".
        padding: "zeros" or "border".
        input_kind: "coords" or "flow".
        out, valid: optional (N, C, H, W) and (N, 1, H, W) arrays to write into.

    Returns:
        (warped (N, C, H, W), valid (N, 1, H, W) of 0/1), dtype of image.
    """
    _check(padding, input_kind)
    N, C = image.shape[:2]
    H, W = coords.shape[2:]
    if out is None:
        out = np.empty((N, C, H, W), dtype=image.dtype)
    if valid is None:
        valid = np.empty((N, 1, H, W), dtype=image.dtype)
    _forward(np.ascontiguousarray(image), np.ascontiguousarray(coords, dtype=image.dtype), input_kind == "flow",
             padding == "border", out, valid)
    return out, valid


def bilinear_backward(image, coords, grad_warped, padding="zeros", input_kind="coords",
                      need_image=True, need_coords=True, grad_image=None, grad_coords=None):
    """Gradients of the warp with respect to the image and the coordinates (or flow: the same values).

    Args:
        image: (N, C, Hs, Ws); coords: (N, 2, H, W); grad_warped: (N, C, H, W) dL/dwarped.
        need_image, need_coords: which gradients to compute (the other is returned as None).
        grad_image, grad_coords: optional output arrays.

    Returns:
        (grad_image (N, C, Hs, Ws) or None, grad_coords (N, 2, H, W) or None).
    """
    _check(padding, input_kind)
    image = np.ascontiguousarray(image)
    coords = np.ascontiguousarray(coords, dtype=image.dtype)
    grad_warped = np.ascontiguousarray(grad_warped, dtype=image.dtype)
    as_flow, border = input_kind == "flow", padding == "border"
    if need_image:
        if grad_image is None:
            grad_image = np.empty_like(image)
        _backward_image(coords, grad_warped, as_flow, border, grad_image)
    if need_coords:
        if grad_coords is None:
            grad_coords = np.empty_like(coords)
        _backward_coords(image, coords, grad_warped, as_flow, border, grad_coords)
    return (grad_image if need_image else None), (grad_coords if need_coords else None)
