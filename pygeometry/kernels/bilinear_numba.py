"""The numba kernels behind pygeometry.kernels.bilinear (its docstring states the convention and the layout of this
implementation; bilinear_reference.py is the same computation written plainly, and the tests hold the two equal).

Each output row is set up in branch-free loops that vectorise (floor, weights, clamping, the flat index of the
top-left tap and per-pixel flags, _row_setup), then one tight loop per channel samples every pixel as if its
four taps were inside, and short loops redo the pixels whose taps are all or partly outside.
"""
from __future__ import annotations

import numba
import numpy as np

from .finite import FASTMATH, nonfinite_in

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
def forward_kernel(img, coords, as_flow, border, out, valid, want_valid, jac_x, jac_y, want_jac):
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
def backward_coords_from_jacobian_kernel(jac_x, jac_y, grad, grad_coords):
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
def backward_coords_kernel(img, coords, grad, as_flow, border, grad_coords):
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
def backward_image_kernel(img, coords, grad, as_flow, border, need_coords, grad_image, grad_coords):
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
