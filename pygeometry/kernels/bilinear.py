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
def _setup(u, v, x, y, Hs, Ws, as_flow, border):
    """Sample position -> (x0, y0, a, b, inside, clamp_x, clamp_y)."""
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
def _row_setup(coords, n, y, Hs, Ws, as_flow, border, x0s, y0s, wa, wb, fast, inside, clamp):
    """Fill per-pixel sampling data of one output row; fast[x] when all four taps are inside the image."""
    W = coords.shape[3]
    for x in range(W):
        x0, y0, a, b, ins, cx, cy = _setup(coords[n, 0, y, x], coords[n, 1, y, x], x, y, Hs, Ws, as_flow, border)
        x0s[x], y0s[x], wa[x], wb[x], inside[x] = x0, y0, a, b, ins
        fast[x] = 0 <= x0 and x0 + 1 < Ws and 0 <= y0 and y0 + 1 < Hs
        clamp[x] = (1 if cx else 0) + (2 if cy else 0)


@numba.njit(inline="always")
def _tap(plane, Hs, Ws, yy, xx):
    if 0 <= yy < Hs and 0 <= xx < Ws:
        return plane[yy * Ws + xx]
    return 0.0


@numba.njit(parallel=True, fastmath=True, cache=True)
def _forward(img, coords, as_flow, border, out, valid):
    N, C, Hs, Ws = img.shape
    H, W = coords.shape[2], coords.shape[3]
    CHUNK = 8  # rows per parallel task: enough tasks to balance, few enough to amortise the scratch arrays
    n_chunks = (H + CHUNK - 1) // CHUNK
    for task in numba.prange(N * n_chunks):
        n, chunk = task // n_chunks, task % n_chunks
        x0s, y0s = np.empty(W, np.int64), np.empty(W, np.int64)
        wa, wb = np.empty(W, np.float64), np.empty(W, np.float64)
        fast, inside, clamp = np.empty(W, np.bool_), np.empty(W, np.bool_), np.empty(W, np.int8)
        for y in range(chunk * CHUNK, min(H, (chunk + 1) * CHUNK)):
            _row_setup(coords, n, y, Hs, Ws, as_flow, border, x0s, y0s, wa, wb, fast, inside, clamp)
            for x in range(W):
                valid[n, 0, y, x] = 1.0 if inside[x] else 0.0
            for c in range(C):
                plane = img[n, c].ravel()
                for x in range(W):
                    a, b, x0, y0 = wa[x], wb[x], x0s[x], y0s[x]
                    if fast[x]:
                        i = y0 * Ws + x0
                        top = plane[i] + a * (plane[i + 1] - plane[i])
                        bot = plane[i + Ws] + a * (plane[i + Ws + 1] - plane[i + Ws])
                    else:
                        top = _tap(plane, Hs, Ws, y0, x0) * (1 - a) + _tap(plane, Hs, Ws, y0, x0 + 1) * a
                        bot = _tap(plane, Hs, Ws, y0 + 1, x0) * (1 - a) + _tap(plane, Hs, Ws, y0 + 1, x0 + 1) * a
                    out[n, c, y, x] = top + b * (bot - top)


@numba.njit(parallel=True, fastmath=True, cache=True)
def _backward(img, coords, grad, as_flow, border, need_image, need_coords, grad_image, grad_coords):
    """Both gradients in one pass over the output pixels, channels innermost (the coordinate gradient sums over
    channels in registers). One sample n per parallel task, so the scatter into dL/dimage never has two tasks
    writing the same element."""
    N, C, Hs, Ws = img.shape
    H, W = coords.shape[2], coords.shape[3]
    P = Hs * Ws
    for n in numba.prange(N):
        x0s, y0s = np.empty(W, np.int64), np.empty(W, np.int64)
        wa, wb = np.empty(W, np.float64), np.empty(W, np.float64)
        fast, inside, clamp = np.empty(W, np.bool_), np.empty(W, np.bool_), np.empty(W, np.int8)
        flat = img[n].ravel()
        gflat = grad_image[n].ravel() if need_image else flat
        if need_image:
            gflat[:] = 0
        for y in range(H):
            _row_setup(coords, n, y, Hs, Ws, as_flow, border, x0s, y0s, wa, wb, fast, inside, clamp)
            for x in range(W):
                a, b, x0, y0 = wa[x], wb[x], x0s[x], y0s[x]
                gx = 0.0
                gy = 0.0
                if fast[x]:
                    i = y0 * Ws + x0
                    for c in range(C):
                        g = grad[n, c, y, x]
                        j = i + c * P
                        if need_coords:
                            i00, i01, i10, i11 = flat[j], flat[j + 1], flat[j + Ws], flat[j + Ws + 1]
                            gx += g * ((1 - b) * (i01 - i00) + b * (i11 - i10))
                            gy += g * ((1 - a) * (i10 - i00) + a * (i11 - i01))
                        if need_image:
                            gb = g * b
                            gt = g - gb
                            gflat[j] += gt - gt * a
                            gflat[j + 1] += gt * a
                            gflat[j + Ws] += gb - gb * a
                            gflat[j + Ws + 1] += gb * a
                else:
                    in_y0, in_y1 = 0 <= y0 < Hs, 0 <= y0 + 1 < Hs
                    in_x0, in_x1 = 0 <= x0 < Ws, 0 <= x0 + 1 < Ws
                    if not ((in_y0 or in_y1) and (in_x0 or in_x1)):
                        if need_coords:
                            grad_coords[n, 0, y, x] = 0.0
                            grad_coords[n, 1, y, x] = 0.0
                        continue  # every tap is outside: no value, no gradient
                    for c in range(C):
                        g = grad[n, c, y, x]
                        plane = flat[c * P:(c + 1) * P]
                        if need_coords:
                            i00, i01 = _tap(plane, Hs, Ws, y0, x0), _tap(plane, Hs, Ws, y0, x0 + 1)
                            i10, i11 = _tap(plane, Hs, Ws, y0 + 1, x0), _tap(plane, Hs, Ws, y0 + 1, x0 + 1)
                            gx += g * ((1 - b) * (i01 - i00) + b * (i11 - i10))
                            gy += g * ((1 - a) * (i10 - i00) + a * (i11 - i01))
                        if need_image:
                            base = c * P
                            for dy in range(2):
                                yy = y0 + dy
                                wy = b if dy else 1 - b
                                if 0 <= yy < Hs:
                                    for dx in range(2):
                                        xx = x0 + dx
                                        if 0 <= xx < Ws:
                                            gflat[base + yy * Ws + xx] += g * wy * (a if dx else 1 - a)
                if need_coords:
                    grad_coords[n, 0, y, x] = 0.0 if clamp[x] & 1 else gx
                    grad_coords[n, 1, y, x] = 0.0 if clamp[x] & 2 else gy


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
    if need_image and grad_image is None:
        grad_image = np.empty_like(image)
    if need_coords and grad_coords is None:
        grad_coords = np.empty_like(coords)
    dummy = np.empty((1, 1, 1, 1), dtype=image.dtype)
    _backward(image, coords, grad_warped, input_kind == "flow", padding == "border", need_image, need_coords,
              grad_image if need_image else dummy, grad_coords if need_coords else dummy)
    return (grad_image if need_image else None), (grad_coords if need_coords else None)
