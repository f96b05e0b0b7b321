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
    A NaN coordinate samples like one far outside the image (the layers reject NaN before it matters).

Backward (at the kink x = integer the one-sided derivative from the right is used, as floor does, except
on the last column/row exactly, where the derivative from inside the image (the left) is used):
    dL/dI[tap] += weight(tap) * g
    dL/dx = sum_c g_c ((1-b)(I[y0,x0+1] - I[y0,x0]) + b (I[y0+1,x0+1] - I[y0+1,x0]))
    dL/dy = sum_c g_c ((1-a)(I[y0+1,x0] - I[y0,x0]) + a (I[y0+1,x0+1] - I[y0,x0+1]))

Implementation: the arithmetic runs in the image dtype (float32 stays float32, the float64 tests stay float64).
Each output row is first set up in branch-free loops that vectorise (floor, weights, clamping, the flat index of
the top-left tap, flags: see _row_setup); then one tight loop per channel samples every pixel as if its four taps
were inside the image (idx = 0 where they are not), and short loops redo the pixels whose taps are all outside
(value 0) or partly outside (bounds-checked taps). The kernels count NaN/inf in what they read in full (the
coordinates, dL/dwarped, and in the forward the image, scanned in parallel slices), so the layers need no
separate pass: warp_forward_into and warp_backward_into return the counts and the layers raise. For training,
warp_forward_into can also keep d warped / d(x, y) per output element (the bracketed factors above, 0 along a
clamped axis), and warp_backward_coords_from_jacobian then gives dL/dcoords = sum_c g_c * that with one
streaming pass instead of sampling the image again.
"""
from __future__ import annotations

import numba
import numpy as np

from .finite import FASTMATH, count_nonfinite, nonfinite_in

PADDINGS = ("zeros", "border")

# Bits of the per-pixel flags of _row_setup.
_CLAMP_X, _CLAMP_Y, _PARTIAL, _INSIDE, _EMPTY = 1, 2, 4, 8, 16
# Bits of the per-axis flags of _axis_setup.
_AX_CLAMP, _AX_INSIDE, _AX_BOTH, _AX_SOME = 1, 8, 16, 32
ROWS_PER_TASK = 8  # output rows per parallel task (scratch arrays are allocated once per task)


@numba.njit(inline="always", fastmath=FASTMATH)
def _axis_setup(pos, offset, step, size, border, check, ft, t0s, wt, fl):
    """One axis of _row_setup, branch-free so that it vectorises.

    For each x: p = pos[x] + offset + step * x (step 1 for flow input along x), clamped to [0, size-1] (border)
    or, with zeros padding, to [-2, size+1] (beyond that, or NaN, every tap on this axis is outside either way);
    t0s[x] = floor(p), except size - 2 at p = size - 1 exactly; wt[x] = p - t0s[x]; fl[x] bits: _AX_CLAMP
    (border padding clamped p), _AX_INSIDE (0 <= p <= size-1 before clamping), _AX_BOTH (both taps t0, t0 + 1
    inside the image: 0 <= p <= size-1 after clamping, size > 1), _AX_SOME (at least one inside: -1 <= p < size
    after clamping). Returns True if check and any pos is NaN/inf.
    """
    W = pos.size
    pmax = ft(size - 1)
    lo, hi = (ft(0), pmax) if border else (ft(-2), ft(size + 1))
    clamp_bit = np.uint8(_AX_CLAMP if border else 0)
    both_bit = np.uint8(_AX_BOTH if size > 1 else 0)
    last = np.int32(size - 2 if size > 1 else 0)
    inf = ft(np.inf)
    bad = False
    for x in range(W):
        p = pos[x]
        if check:
            bad |= not abs(p) < inf
        p += offset + step * ft(x)
        inside = (p >= 0) & (p <= pmax)
        in_range = (p >= lo) & (p <= hi)  # False for NaN
        p = p if in_range else (hi if p > hi else lo)
        t0 = np.int32(p)  # truncates toward zero; floor:
        t0 = t0 - np.int32(1) if ft(t0) > p else t0
        # On the last column/row exactly, use the taps to the left/above (weight 1 on the far one): same value,
        # and the derivative stays the one from inside the image.
        t0 = last if p == pmax else t0
        t0s[x] = t0
        wt[x] = p - ft(t0)
        fl[x] = ((np.uint8(0) if in_range else clamp_bit) | (np.uint8(_AX_INSIDE) if inside else np.uint8(0))
                 | (both_bit if (p >= 0) & (p <= pmax) else np.uint8(0))
                 | (np.uint8(_AX_SOME) if (p >= -1) & (p < ft(size)) else np.uint8(0)))
    return bad


@numba.njit(inline="always", fastmath=FASTMATH)
def _row_setup(coords, n, y, Hs, Ws, as_flow, border, check, ft, idx, x0s, y0s, wa, wb, flags, yfl):
    """Sampling data of output row y of sample n, one entry per output column x (three branch-free loops).

    x0s, y0s: the top-left tap (see _axis_setup); wa, wb: the weights a, b (dtype ft); idx: y0 * Ws + x0 where all
    four taps are inside the image (a "fast" pixel), else 0; flags: _CLAMP_X, _CLAMP_Y (border padding clamped
    that axis: zero gradient), _INSIDE (the valid mask), _EMPTY (every tap outside: value 0, no gradient),
    _PARTIAL (some taps outside, some inside). yfl: scratch.

    Returns (any fast pixel, any _EMPTY, any _PARTIAL, any NaN/inf coordinate (if check, else False)).
    """
    flow = ft(1 if as_flow else 0)
    bad = _axis_setup(coords[n, 0, y], ft(0), flow, Ws, border, check, ft, x0s, wa, flags)
    bad |= _axis_setup(coords[n, 1, y], flow * ft(y), ft(0), Hs, border, check, ft, y0s, wb, yfl)
    ws = np.int32(Ws)
    any_fast = any_empty = any_partial = False
    for x in range(idx.size):
        fx, fy = flags[x], yfl[x]
        fast = (fx & fy & np.uint8(_AX_BOTH)) != 0
        empty = (fx & fy & np.uint8(_AX_SOME)) == 0
        partial = not (fast | empty)
        flags[x] = ((fx & np.uint8(_AX_CLAMP)) | ((fy & np.uint8(_AX_CLAMP)) << np.uint8(1))
                    | (fx & fy & np.uint8(_AX_INSIDE)) | (np.uint8(_PARTIAL) if partial else np.uint8(0))
                    | (np.uint8(_EMPTY) if empty else np.uint8(0)))
        idx[x] = np.uint32(y0s[x] * ws + x0s[x]) if fast else np.uint32(0)
        any_fast |= fast
        any_empty |= empty
        any_partial |= partial
    return any_fast, any_empty, any_partial, bad


@numba.njit(inline="always")
def _tap(plane, Hs, Ws, yy, xx, ft):
    if 0 <= yy < Hs and 0 <= xx < Ws:
        return plane[yy * Ws + xx]
    return ft(0)


@numba.njit(inline="always", fastmath=FASTMATH)
def _slow_taps(plane, Hs, Ws, x0, y0, ft):
    """The four taps (I[y0,x0], I[y0,x0+1], I[y0+1,x0], I[y0+1,x0+1]), 0 outside the image."""
    return (_tap(plane, Hs, Ws, y0, x0, ft), _tap(plane, Hs, Ws, y0, x0 + 1, ft),
            _tap(plane, Hs, Ws, y0 + 1, x0, ft), _tap(plane, Hs, Ws, y0 + 1, x0 + 1, ft))


@numba.njit(inline="always")
def _scratch(W, ft):
    """Per-task scratch arrays for _row_setup: idx, x0s, y0s, wa, wb, flags, yfl."""
    return (np.empty(W, np.uint32), np.empty(W, np.int32), np.empty(W, np.int32), np.empty(W, ft), np.empty(W, ft),
            np.empty(W, np.uint8), np.empty(W, np.uint8))


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _forward(img, coords, as_flow, border, out, valid, want_valid, jac_x, jac_y, want_jac):
    """Fill out (and valid when want_valid; and when want_jac, jac_x and jac_y (N, C, H, W) with d out / d x and
    d out / d y: 0 along a clamped axis and where every tap is outside). Returns (the number of rows with a
    NaN/inf coordinate, the number of NaN/inf values in img: each task also scans a share of the image, so that
    check runs in parallel too)."""
    N, C, Hs, Ws = img.shape
    H, W = coords.shape[2], coords.shape[3]
    P, HW = Hs * Ws, H * W
    ft = img.dtype.type
    o1, ow, ow1 = np.uint64(1), np.uint64(Ws), np.uint64(Ws + 1)  # unsigned: no negative-index wraparound
    flat = img.reshape(N * C * P)
    oflat = out.reshape(N * C * HW)
    vflat = valid.reshape(valid.size)
    jxflat = jac_x.reshape(jac_x.size)
    jyflat = jac_y.reshape(jac_y.size)
    n_tasks = (H + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    bad_rows = 0
    bad_img = 0
    for task in numba.prange(N * n_tasks):
        n = task // n_tasks
        k = task - n * n_tasks
        r0, r1 = k * Hs // n_tasks * Ws, (k + 1) * Hs // n_tasks * Ws
        for c in range(C):
            bad_img += nonfinite_in(flat[(n * C + c) * P + r0:(n * C + c) * P + r1])
        idx, x0s, y0s, wa, wb, flags, yfl = _scratch(W, ft)
        for y in range(k * ROWS_PER_TASK, min(H, (k + 1) * ROWS_PER_TASK)):
            any_fast, any_empty, any_partial, bad = _row_setup(coords, n, y, Hs, Ws, as_flow, border, True, ft, idx,
                                                               x0s, y0s, wa, wb, flags, yfl)
            bad_rows += bad
            if want_valid:
                vrow = vflat[(n * H + y) * W:(n * H + y + 1) * W]
                for x in range(W):
                    vrow[x] = 1 if flags[x] & _INSIDE else 0
            for c in range(C):
                plane = flat[(n * C + c) * P:(n * C + c + 1) * P]
                r = (n * C + c) * HW + y * W
                orow = oflat[r:r + W]
                # (idx = 0 reads taps 0, 1, Ws, Ws + 1: only when some pixel is fast, so Hs, Ws >= 2)
                if any_fast and not want_jac:
                    for x in range(W):
                        i, a, b = np.uint64(idx[x]), wa[x], wb[x]
                        i00, i01, i10, i11 = plane[i], plane[i + o1], plane[i + ow], plane[i + ow1]
                        top = i00 + a * (i01 - i00)
                        bot = i10 + a * (i11 - i10)
                        orow[x] = top + b * (bot - top)
                elif any_fast:
                    jxrow, jyrow = jxflat[r:r + W], jyflat[r:r + W]
                    for x in range(W):
                        i, a, b = np.uint64(idx[x]), wa[x], wb[x]
                        i00, i01, i10, i11 = plane[i], plane[i + o1], plane[i + ow], plane[i + ow1]
                        dx0, dx1 = i01 - i00, i11 - i10
                        top = i00 + a * dx0
                        bot = i10 + a * dx1
                        dy = bot - top  # = (1-a)(I10 - I00) + a (I11 - I01) = d out / d y
                        orow[x] = top + b * dy
                        jxrow[x] = dx0 + b * (dx1 - dx0)
                        jyrow[x] = dy
                if any_empty:  # overwrite what the loop above computed from idx = 0 there (selects: vectorises)
                    if want_jac:
                        jxrow, jyrow = jxflat[r:r + W], jyflat[r:r + W]
                        for x in range(W):
                            e = (flags[x] & _EMPTY) != 0
                            orow[x] = 0 if e else orow[x]
                            jxrow[x] = 0 if e else jxrow[x]
                            jyrow[x] = 0 if e else jyrow[x]
                    else:
                        for x in range(W):
                            orow[x] = 0 if flags[x] & _EMPTY else orow[x]
            if any_partial:  # and there (one pass over the row for all channels)
                for x in range(W):
                    if flags[x] & _PARTIAL:
                        a, b, x0, y0 = wa[x], wb[x], x0s[x], y0s[x]
                        for c in range(C):
                            i00, i01, i10, i11 = _slow_taps(flat[(n * C + c) * P:(n * C + c + 1) * P], Hs, Ws, x0, y0,
                                                            ft)
                            dx0, dx1, dy0, dy1 = i01 - i00, i11 - i10, i10 - i00, i11 - i01
                            top = i00 + a * dx0
                            bot = i10 + a * dx1
                            r = (n * C + c) * HW + y * W + x
                            oflat[r] = top + b * (bot - top)
                            if want_jac:
                                jxflat[r] = dx0 + b * (dx1 - dx0)
                                jyflat[r] = dy0 + a * (dy1 - dy0)
            if want_jac and border:  # zero along a clamped axis
                for c in range(C):
                    r = (n * C + c) * HW + y * W
                    for x in range(W):
                        f = flags[x]
                        if f & _CLAMP_X:
                            jxflat[r + x] = 0
                        if f & _CLAMP_Y:
                            jyflat[r + x] = 0
    return bad_rows, bad_img


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _backward_coords_from_jacobian(jac_x, jac_y, grad, grad_coords):
    """dL/dcoords = sum_c g_c * d out_c / d(x, y), from the Jacobian the forward kept (streaming loops over the
    pixels, no sampling). Channel by channel, each a unit-stride loop over the row that vectorises (a loop over
    the channels inside the pixel loop does not). Returns the number of NaN/inf in grad."""
    N, C, H, W = grad.shape
    ft = grad.dtype.type
    inf = ft(np.inf)
    bad = 0
    for row in numba.prange(N * H):
        n, y = row // H, row % H
        row_bad = 0
        if C == 0:
            for x in range(W):
                grad_coords[n, 0, y, x] = 0
                grad_coords[n, 1, y, x] = 0
        for c in range(C):
            for x in range(W):
                g = grad[n, c, y, x]
                row_bad += not abs(g) < inf
                sx = g * jac_x[n, c, y, x]
                sy = g * jac_y[n, c, y, x]
                grad_coords[n, 0, y, x] = sx if c == 0 else grad_coords[n, 0, y, x] + sx
                grad_coords[n, 1, y, x] = sy if c == 0 else grad_coords[n, 1, y, x] + sy
        bad += row_bad
    return bad


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _backward_coords(img, coords, grad, as_flow, border, grad_coords):
    """dL/dcoords only (no scatter, so any rows in parallel). Returns the number of NaN/inf in grad."""
    N, C, Hs, Ws = img.shape
    H, W = coords.shape[2], coords.shape[3]
    P, HW = Hs * Ws, H * W
    ft = img.dtype.type
    o1, ow, ow1 = np.uint64(1), np.uint64(Ws), np.uint64(Ws + 1)  # unsigned: no negative-index wraparound
    flat = img.reshape(N * C * P)
    gflat = grad.reshape(N * C * HW)
    cflat = grad_coords.reshape(N * 2 * HW)
    n_tasks = (H + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    bad = 0
    for task in numba.prange(N * n_tasks):
        n = task // n_tasks
        k = task - n * n_tasks
        idx, x0s, y0s, wa, wb, flags, yfl = _scratch(W, ft)
        gx, gy = np.empty(W, ft), np.empty(W, ft)
        for y in range(k * ROWS_PER_TASK, min(H, (k + 1) * ROWS_PER_TASK)):
            any_fast, any_empty, any_partial, _ = _row_setup(coords, n, y, Hs, Ws, as_flow, border, False, ft,
                                                             idx, x0s, y0s, wa, wb, flags, yfl)
            gx[:] = 0
            gy[:] = 0
            for c in range(C):
                plane = flat[(n * C + c) * P:(n * C + c + 1) * P]
                grow = gflat[(n * C + c) * HW + y * W:(n * C + c) * HW + (y + 1) * W]
                bad += nonfinite_in(grow)
                if any_fast:
                    for x in range(W):
                        i, a, b, g = np.uint64(idx[x]), wa[x], wb[x], grow[x]
                        i00, i01, i10, i11 = plane[i], plane[i + o1], plane[i + ow], plane[i + ow1]
                        dx0, dx1, dy0, dy1 = i01 - i00, i11 - i10, i10 - i00, i11 - i01
                        gx[x] += g * (dx0 + b * (dx1 - dx0))
                        gy[x] += g * (dy0 + a * (dy1 - dy0))
            # Overwrite what the loop above computed from idx = 0 at the other pixels.
            if any_partial:
                for x in range(W):
                    if flags[x] & _PARTIAL:
                        a, b, x0, y0 = wa[x], wb[x], x0s[x], y0s[x]
                        sx = sy = ft(0)
                        for c in range(C):
                            plane = flat[(n * C + c) * P:(n * C + c + 1) * P]
                            g = gflat[(n * C + c) * HW + y * W + x]
                            i00, i01, i10, i11 = _slow_taps(plane, Hs, Ws, x0, y0, ft)
                            dx0, dx1, dy0, dy1 = i01 - i00, i11 - i10, i10 - i00, i11 - i01
                            sx += g * (dx0 + b * (dx1 - dx0))
                            sy += g * (dy0 + a * (dy1 - dy0))
                        gx[x] = sx
                        gy[x] = sy
            crow_x = cflat[n * 2 * HW + y * W:n * 2 * HW + (y + 1) * W]
            crow_y = cflat[(n * 2 + 1) * HW + y * W:(n * 2 + 1) * HW + (y + 1) * W]
            for x in range(W):
                crow_x[x] = 0 if flags[x] & (_CLAMP_X | _EMPTY) else gx[x]
                crow_y[x] = 0 if flags[x] & (_CLAMP_Y | _EMPTY) else gy[x]
    return bad


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _backward_image(img, coords, grad, as_flow, border, need_coords, grad_image, grad_coords):
    """dL/dimage (and dL/dcoords when need_coords) in one pass. One sample n per parallel task, so the scatter
    into dL/dimage never has two tasks writing the same element. Returns the number of NaN/inf in grad."""
    N, C, Hs, Ws = img.shape
    H, W = coords.shape[2], coords.shape[3]
    P, HW = Hs * Ws, H * W
    ft = img.dtype.type
    o1, ow, ow1 = np.uint64(1), np.uint64(Ws), np.uint64(Ws + 1)  # unsigned: no negative-index wraparound
    flat = img.reshape(N * C * P)
    giflat = grad_image.reshape(N * C * P)
    gflat = grad.reshape(N * C * HW)
    bad = 0
    for n in numba.prange(N):
        idx, x0s, y0s, wa, wb, flags, yfl = _scratch(W, ft)
        gx, gy = np.empty(W, ft), np.empty(W, ft)
        giflat[n * C * P:(n + 1) * C * P] = 0
        for y in range(H):
            _row_setup(coords, n, y, Hs, Ws, as_flow, border, False, ft, idx, x0s, y0s, wa, wb, flags, yfl)
            gx[:] = 0
            gy[:] = 0
            for c in range(C):
                plane = flat[(n * C + c) * P:(n * C + c + 1) * P]
                gplane = giflat[(n * C + c) * P:(n * C + c + 1) * P]
                grow = gflat[(n * C + c) * HW + y * W:(n * C + c) * HW + (y + 1) * W]
                bad += nonfinite_in(grow)
                for x in range(W):
                    f = flags[x]
                    if f & _EMPTY:
                        continue  # every tap is outside: no value, no gradient
                    a, b, g = wa[x], wb[x], grow[x]
                    if not f & _PARTIAL:
                        i = np.uint64(idx[x])
                        if need_coords:
                            i00, i01, i10, i11 = plane[i], plane[i + o1], plane[i + ow], plane[i + ow1]
                            dx0, dx1, dy0, dy1 = i01 - i00, i11 - i10, i10 - i00, i11 - i01
                            gx[x] += g * (dx0 + b * (dx1 - dx0))
                            gy[x] += g * (dy0 + a * (dy1 - dy0))
                        gb = g * b
                        gt = g - gb
                        gplane[i] += gt - gt * a
                        gplane[i + o1] += gt * a
                        gplane[i + ow] += gb - gb * a
                        gplane[i + ow1] += gb * a
                    else:
                        x0, y0 = x0s[x], y0s[x]
                        if need_coords:
                            i00, i01, i10, i11 = _slow_taps(plane, Hs, Ws, x0, y0, ft)
                            dx0, dx1, dy0, dy1 = i01 - i00, i11 - i10, i10 - i00, i11 - i01
                            gx[x] += g * (dx0 + b * (dx1 - dx0))
                            gy[x] += g * (dy0 + a * (dy1 - dy0))
                        for dy in range(2):
                            yy = y0 + dy
                            wy = b if dy else ft(1) - b
                            if 0 <= yy < Hs:
                                for dx in range(2):
                                    xx = x0 + dx
                                    if 0 <= xx < Ws:
                                        gplane[yy * Ws + xx] += g * wy * (a if dx else ft(1) - a)
            if need_coords:
                for x in range(W):
                    grad_coords[n, 0, y, x] = 0 if flags[x] & _CLAMP_X else gx[x]
                    grad_coords[n, 1, y, x] = 0 if flags[x] & _CLAMP_Y else gy[x]
    return bad


def _check(padding, input_kind):
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if input_kind not in ("coords", "flow"):
        raise ValueError(f"input must be 'coords' or 'flow', got {input_kind!r}")


def _target(arr, shape, dtype):
    """arr if the kernel can write into it directly (C-contiguous, writeable, right dtype), else a new array whose
    result the caller copies back."""
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.writeable:
        return arr
    return np.empty(shape, dtype)


def warp_forward_into(image, coords, padding, input_kind, out, valid=None, jacobian=None):
    """The forward writing into given arrays (what the layer calls); see bilinear_forward.

    Args:
        image: (N, C, Hs, Ws); coords: (N, 2, H, W); out: (N, C, H, W); valid: (N, 1, H, W), or None to skip
            the valid mask.
        jacobian: None, or two C-contiguous arrays (N, C, H, W) of the image dtype to fill with d warped / d x and
            d warped / d y (0 along a clamped axis and where every tap is outside), for
            warp_backward_coords_from_jacobian.

    Returns:
        (the number of NaN/inf coordinates, the number of NaN/inf values in image): when not both 0, out holds
        samples taken as if far outside at NaN/inf coordinates, and whatever NaN/inf taps give.
    """
    _check(padding, input_kind)
    image = np.ascontiguousarray(image)
    dtype = image.dtype
    coords = np.ascontiguousarray(coords, dtype=dtype)
    N, C = image.shape[:2]
    H, W = coords.shape[2:]
    o = _target(out, (N, C, H, W), dtype)
    v = _target(valid, (N, 1, H, W), dtype) if valid is not None else np.empty((1,), dtype)
    if jacobian is not None:
        jac_x, jac_y = jacobian
        for j in jacobian:
            if j.shape != (N, C, H, W) or j.dtype != dtype or not j.flags.c_contiguous or not j.flags.writeable:
                raise ValueError(f"jacobian arrays must be C-contiguous, writeable, {(N, C, H, W)} of {dtype}")
    else:
        jac_x = jac_y = np.empty((1,), dtype)
    bad_rows, bad_image = _forward(image, coords, input_kind == "flow", padding == "border", o, v,
                                   valid is not None, jac_x, jac_y, jacobian is not None)
    if o is not out:
        out[...] = o
    if valid is not None and v is not valid:
        valid[...] = v
    return (count_nonfinite(coords) if bad_rows else 0), int(bad_image)


def warp_backward_into(image, coords, grad_warped, padding, input_kind, grad_image=None, grad_coords=None):
    """The backward writing into given arrays (what the layer calls); see bilinear_backward.

    Args:
        image: (N, C, Hs, Ws); coords: (N, 2, H, W); grad_warped: (N, C, H, W) dL/dwarped.
        grad_image, grad_coords: (N, C, Hs, Ws) and (N, 2, H, W) arrays to write into, or None for a gradient
            that is not needed.

    Returns:
        The number of NaN/inf values in grad_warped.
    """
    _check(padding, input_kind)
    image = np.ascontiguousarray(image)
    dtype = image.dtype
    coords = np.ascontiguousarray(coords, dtype=dtype)
    grad_warped = np.ascontiguousarray(grad_warped, dtype=dtype)
    as_flow, border = input_kind == "flow", padding == "border"
    gc = _target(grad_coords, coords.shape, dtype) if grad_coords is not None else None
    if grad_image is not None:
        gi = _target(grad_image, image.shape, dtype)
        bad = _backward_image(image, coords, grad_warped, as_flow, border, gc is not None, gi,
                              gc if gc is not None else np.empty((1, 2, 1, 1), dtype))
        if gi is not grad_image:
            grad_image[...] = gi
    elif gc is not None:
        bad = _backward_coords(image, coords, grad_warped, as_flow, border, gc)
    else:
        return count_nonfinite(grad_warped)
    if gc is not None and gc is not grad_coords:
        grad_coords[...] = gc
    return int(bad)


def warp_backward_coords_from_jacobian(jacobian, grad_warped, grad_coords):
    """dL/dcoords from the Jacobian that warp_forward_into kept: the same values as warp_backward_into's, without
    sampling the image again. Valid only while the image and the coordinates are those of that forward.

    Args:
        jacobian: (d warped / d x, d warped / d y), each (N, C, H, W).
        grad_warped: (N, C, H, W) dL/dwarped; grad_coords: (N, 2, H, W) array to write into.

    Returns:
        The number of NaN/inf values in grad_warped.
    """
    jac_x, jac_y = jacobian
    dtype = jac_x.dtype
    grad_warped = np.ascontiguousarray(grad_warped, dtype=dtype)
    gc = _target(grad_coords, (grad_warped.shape[0], 2) + grad_warped.shape[2:], dtype)
    bad = _backward_coords_from_jacobian(jac_x, jac_y, grad_warped, gc)
    if gc is not grad_coords:
        grad_coords[...] = gc
    return int(bad)


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
    warp_forward_into(image, coords, padding, input_kind, out, valid)
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
    if need_image and grad_image is None:
        grad_image = np.empty(image.shape, dtype=image.dtype)
    if need_coords and grad_coords is None:
        grad_coords = np.empty(coords.shape, dtype=image.dtype)
    warp_backward_into(image, coords, grad_warped, padding, input_kind,
                       grad_image if need_image else None, grad_coords if need_coords else None)
    return (grad_image if need_image else None), (grad_coords if need_coords else None)
