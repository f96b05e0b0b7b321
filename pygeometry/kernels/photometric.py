"""PhotometricLoss: masked L1, or SSIM + L1, between the warped source and the target, and the backward.

Convention:
    Per pixel p (averaged over the C channels):
        e_p = alpha * (1 - SSIM_p) / 2 + (1 - alpha) * |warped_p - target_p|
    SSIM uses 3x3 windows with mean (box) filtering and reflection padding (as Monodepth2), C1 = 0.01^2,
    C2 = 0.03^2 (for images in [0, 1]); alpha = 0 is plain L1 (the default), 0.85 is the usual choice.
    The loss averages over valid pixels only, with the mask (N, 1, H, W) as per-pixel weights (0/1 or soft,
    >= 0; all ones when no mask is given):
        loss = sum_p m_p e_p / sum_p m_p,   and loss = 0 with zero gradients when sum_p m_p = 0.
    The mask receives no gradient. d|x|/dx at x = 0 is taken as 0.

Two implementations of the same function, tested against each other (tests/test_kernel_photometric.py):
    photometric_forward / photometric_backward: the readable reference (numpy + OpenCV box filters, SSIM
        recomputed in the backward; both gradients).
    photometric_forward_into / photometric_backward_into: the fast kernels the layer runs (numba, one pass
        per image plane, no image-sized temporaries). The forward keeps three per-pixel SSIM derivatives in a
        caller-owned array (four when the target's gradient is wanted too), so the backward only applies the box
        filter's adjoint to them.
"""
from __future__ import annotations

import cv2
import numba
import numpy as np

from .finite import FASTMATH

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def _planes(x):
    return np.ascontiguousarray(x).reshape(-1, x.shape[-2], x.shape[-1])


def box3(x: np.ndarray) -> np.ndarray:
    """3x3 mean filter over the last two axes with reflection padding (numpy 'reflect' = BORDER_REFLECT_101)."""
    planes = _planes(x)
    out = np.empty_like(planes)
    for i in range(planes.shape[0]):
        cv2.boxFilter(planes[i], -1, (3, 3), dst=out[i], normalize=True, borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(x.shape)


def box3_adjoint(g: np.ndarray) -> np.ndarray:
    """Adjoint (transpose) of :func:`box3`: <box3(x), g> == <x, box3_adjoint(g)>.

    The mean filter of g zero-padded by one pixel gives the gradient on the padded grid; the reflected border
    is then folded back: padded row 0 is original row 1, padded row H+1 is original row H-2 (same for columns).
    """
    H, W = g.shape[-2:]
    planes = _planes(g)
    gp = np.zeros((planes.shape[0], H + 2, W + 2), dtype=g.dtype)
    gp[:, 1:H + 1, 1:W + 1] = planes
    for i in range(gp.shape[0]):
        cv2.boxFilter(gp[i], -1, (3, 3), dst=gp[i], normalize=True, borderType=cv2.BORDER_CONSTANT)
    gp[:, 2, :] += gp[:, 0, :]
    gp[:, H - 1, :] += gp[:, H + 1, :]
    gp[:, :, 2] += gp[:, :, 0]
    gp[:, :, W - 1] += gp[:, :, W + 1]
    return np.ascontiguousarray(gp[:, 1:H + 1, 1:W + 1]).reshape(g.shape)


def ssim_map(x: np.ndarray, y: np.ndarray, with_cache: bool = False):
    """Per-pixel, per-channel SSIM of x and y (N, C, H, W), in [-1, 1]; optionally the terms for the backward."""
    mu_x, mu_y = box3(x), box3(y)
    s_xx = box3(x * x) - mu_x * mu_x
    s_yy = box3(y * y) - mu_y * mu_y
    s_xy = box3(x * y) - mu_x * mu_y
    n1 = 2 * mu_x * mu_y + SSIM_C1
    n2 = 2 * s_xy + SSIM_C2
    d1 = mu_x * mu_x + mu_y * mu_y + SSIM_C1
    d2 = s_xx + s_yy + SSIM_C2
    den = d1 * d2
    S = n1 * n2 / den
    if with_cache:
        return S, (mu_x, mu_y, n1, n2, d1, d2, den)
    return S


def ssim_backward(x, y, grad_S, cache, S):
    """dL/dx and dL/dy given dL/dSSIM (N, C, H, W) per pixel and channel."""
    mu_x, mu_y, n1, n2, d1, d2, den = cache
    dS_dmux = (2 * mu_y * n2 - S * 2 * mu_x * d2) / den
    dS_dmuy = (2 * mu_x * n2 - S * 2 * mu_y * d2) / den
    dS_dsxy = 2 * n1 / den
    dS_dsvar = -S * d1 / den  # for s_xx and s_yy alike
    g_var = box3_adjoint(grad_S * dS_dsvar)
    g_cov = box3_adjoint(grad_S * dS_dsxy)
    g_mux = box3_adjoint(grad_S * (dS_dmux - 2 * mu_x * dS_dsvar - mu_y * dS_dsxy))
    g_muy = box3_adjoint(grad_S * (dS_dmuy - 2 * mu_y * dS_dsvar - mu_x * dS_dsxy))
    grad_x = g_mux + 2 * x * g_var + y * g_cov
    grad_y = g_muy + 2 * y * g_var + x * g_cov
    return grad_x, grad_y


def _weights(mask, shape, dtype):
    N, _, H, W = shape
    m = np.ones((N, 1, H, W), dtype=np.float64) if mask is None else np.asarray(mask, dtype=np.float64)
    total = float(m.sum())
    return m, total


def photometric_forward(warped, target, mask=None, alpha=0.0):
    """Masked photometric loss.

    Args:
        warped: (N, C, H, W) source image warped into the target view.
        target: (N, C, H, W) target image.
        mask: optional (N, 1, H, W) non-negative per-pixel weights (e.g. the warp's valid top).
        alpha: SSIM weight in [0, 1].

    Returns:
        loss: float (0.0 when the mask is all zero).
    """
    m, total = _weights(mask, warped.shape, warped.dtype)
    if total <= 0:
        return 0.0
    x, y = warped, target
    e = (1 - alpha) * np.abs(x - y).mean(axis=1, keepdims=True, dtype=np.float64)
    if alpha > 0:
        e += alpha * ((1 - ssim_map(x, y)) / 2).mean(axis=1, keepdims=True, dtype=np.float64)
    return float((m * e).sum() / total)


def photometric_backward(warped, target, mask=None, alpha=0.0, need_target=False):
    """Gradients of :func:`photometric_forward` (times 1; scale by the top diff outside).

    Returns:
        (grad_warped (N, C, H, W), grad_target (N, C, H, W) or None), dtype of warped; zeros when the mask
        is all zero.
    """
    m, total = _weights(mask, warped.shape, warped.dtype)
    C = warped.shape[1]
    if total <= 0:
        zero = np.zeros_like(warped)
        return zero, (np.zeros_like(warped) if need_target else None)
    x, y = warped, target
    w = (m / (total * C)).astype(warped.dtype)  # d loss / d e_pc for each channel term
    g_x = (1 - alpha) * w * np.sign(x - y)
    g_y = -g_x if need_target else None
    if alpha > 0:
        S, cache = ssim_map(x, y, with_cache=True)
        gsx, gsy = ssim_backward(x, y, np.broadcast_to(-0.5 * alpha * w, x.shape), cache, S)
        g_x = g_x + gsx
        if need_target:
            g_y = g_y + gsy
    return g_x.astype(warped.dtype), (g_y.astype(warped.dtype) if need_target else None)


# ------------------------------------------------------------------------------------------------ fast kernels
# Reflection at the border as box3's BORDER_REFLECT_101: index -1 reads 1, index n reads n - 2 (n >= 2).


@numba.njit(inline="always")
def _reflect(i, n):
    return 1 if i < 0 else (n - 2 if i >= n else i)


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _forward_kernel(x, y, mask, has_mask, alpha, coef, keep, l1, dssim, emap, keep_map):
    """Per plane (n, c): l1[plane] = sum_p m_p |x - y| and dssim[plane] = sum_p m_p (1 - SSIM_p) / 2 (float64,
    (N * C,) each; allocated by the caller, as any array expression here would be a parallel loop of its own,
    each launch costing more than a small image's work), and when keep, the SSIM
    derivatives coef[0] = dS/dmu_x - 2 mu_x dS/ds_xx - mu_y dS/ds_xy, coef[1] = dS/ds_xx, coef[2] = dS/ds_xy at
    every pixel (the backward's only need; see ssim_backward), with coef[3] = dS/dmu_y - 2 mu_y dS/ds_yy -
    mu_x dS/ds_xy as well when coef has 4 rows (the target's gradient), and when keep_map, the unmasked per-pixel,
    per-channel error emap[n, c] = (1 - alpha) |x - y| + alpha (1 - SSIM) / 2 (N, C, H, W)."""
    N, C, H, W = x.shape
    with_ssim = alpha > 0
    keep_target = keep and coef.shape[0] >= 4
    for plane in numba.prange(N * C):
        n, c = plane // C, plane % C
        # Horizontal 3-sums of x, y, x^2, y^2, xy (float64), then vertical sums per pixel.
        hs = np.empty((5, H, W))
        if with_ssim:
            for i in range(H):
                for j in range(W):
                    sx = sy = sxx = syy = sxy = 0.0
                    for dj in range(-1, 2):
                        jj = _reflect(j + dj, W)
                        a = np.float64(x[n, c, i, jj])
                        b = np.float64(y[n, c, i, jj])
                        sx += a
                        sy += b
                        sxx += a * a
                        syy += b * b
                        sxy += a * b
                    hs[0, i, j] = sx
                    hs[1, i, j] = sy
                    hs[2, i, j] = sxx
                    hs[3, i, j] = syy
                    hs[4, i, j] = sxy
        e_l1 = 0.0
        e_ssim = 0.0
        for i in range(H):
            i0, i2 = _reflect(i - 1, H), _reflect(i + 1, H)
            for j in range(W):
                m = np.float64(mask[n, 0, i, j]) if has_mask else 1.0
                d_abs = abs(np.float64(x[n, c, i, j]) - np.float64(y[n, c, i, j]))
                e_l1 += m * d_abs
                if keep_map and not with_ssim:
                    emap[n, c, i, j] = d_abs
                if with_ssim:
                    mu_x = (hs[0, i0, j] + hs[0, i, j] + hs[0, i2, j]) / 9.0
                    mu_y = (hs[1, i0, j] + hs[1, i, j] + hs[1, i2, j]) / 9.0
                    s_xx = (hs[2, i0, j] + hs[2, i, j] + hs[2, i2, j]) / 9.0 - mu_x * mu_x
                    s_yy = (hs[3, i0, j] + hs[3, i, j] + hs[3, i2, j]) / 9.0 - mu_y * mu_y
                    s_xy = (hs[4, i0, j] + hs[4, i, j] + hs[4, i2, j]) / 9.0 - mu_x * mu_y
                    n1 = 2.0 * mu_x * mu_y + SSIM_C1
                    n2 = 2.0 * s_xy + SSIM_C2
                    d1 = mu_x * mu_x + mu_y * mu_y + SSIM_C1
                    d2 = s_xx + s_yy + SSIM_C2
                    den = d1 * d2
                    S = n1 * n2 / den
                    e_ssim += m * (1.0 - S) * 0.5
                    if keep_map:
                        emap[n, c, i, j] = (1.0 - alpha) * d_abs + alpha * (1.0 - S) * 0.5
                    if keep:
                        dS_dmux = (2.0 * mu_y * n2 - S * 2.0 * mu_x * d2) / den
                        dS_dsvar = -S * d1 / den
                        dS_dsxy = 2.0 * n1 / den
                        coef[0, n, c, i, j] = dS_dmux - 2.0 * mu_x * dS_dsvar - mu_y * dS_dsxy
                        coef[1, n, c, i, j] = dS_dsvar
                        coef[2, n, c, i, j] = dS_dsxy
                        if keep_target:
                            dS_dmuy = (2.0 * mu_x * n2 - S * 2.0 * mu_y * d2) / den
                            coef[3, n, c, i, j] = dS_dmuy - 2.0 * mu_y * dS_dsvar - mu_x * dS_dsxy
        l1[plane] = e_l1
        dssim[plane] = e_ssim


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _backward_kernel(x, y, mask, has_mask, alpha, coef, k, grad, want_target, grad_target):
    """grad = k * d(sum_p m_p e_p)/dx, e_p as in the module docstring summed over channels (k = top diff /
    (sum m * C)), and when want_target (coef has 4 rows), grad_target = k * d(...)/dy in the same pass. The SSIM
    part applies box3's adjoint (separable: columns, then rows) to the products of dL/dSSIM with coef, as
    ssim_backward does with full arrays: dx gathers rows 0, 1, 2 times (1, 2 x, y), dy rows 3, 1, 2 times
    (1, 2 y, x)."""
    N, C, H, W = x.shape
    k_l1 = k * (1.0 - alpha)
    k_ssim = -0.5 * alpha * k / 9.0  # dL/dSSIM per unit mask, with box3's 1/9
    with_ssim = alpha > 0
    Q = 4 if want_target else 3
    for plane in numba.prange(N * C):
        n, c = plane // C, plane % C
        prod = np.empty((Q, H, W))
        vert = np.empty((Q, H, W))
        if with_ssim:
            for i in range(H):
                for j in range(W):
                    g = k_ssim * (np.float64(mask[n, 0, i, j]) if has_mask else 1.0)
                    for q in range(Q):
                        prod[q, i, j] = g * coef[q, n, c, i, j]
            # Adjoint along columns: row i gathers rows i - 1, i, i + 1, plus row 0 again when i == 1 (row 0's
            # window reads row 1 twice) and row H - 1 again when i == H - 2.
            for i in range(H):
                for q in range(Q):
                    for j in range(W):
                        v = prod[q, i, j]
                        if i > 0:
                            v += prod[q, i - 1, j]
                        if i < H - 1:
                            v += prod[q, i + 1, j]
                        if i == 1:
                            v += prod[q, 0, j]
                        if i == H - 2:
                            v += prod[q, H - 1, j]
                        vert[q, i, j] = v
        for i in range(H):
            for j in range(W):
                a = np.float64(x[n, c, i, j])
                b = np.float64(y[n, c, i, j])
                d = a - b
                m = np.float64(mask[n, 0, i, j]) if has_mask else 1.0
                g = k_l1 * m * ((d > 0) - (d < 0))
                g_t = -g
                if with_ssim:
                    # Adjoint along rows, as along columns above.
                    for q in range(Q):
                        v = vert[q, i, j]
                        if j > 0:
                            v += vert[q, i, j - 1]
                        if j < W - 1:
                            v += vert[q, i, j + 1]
                        if j == 1:
                            v += vert[q, i, 0]
                        if j == W - 2:
                            v += vert[q, i, W - 1]
                        if q == 0:
                            g += v
                        elif q == 1:
                            g += 2.0 * a * v
                            g_t += 2.0 * b * v
                        elif q == 2:
                            g += b * v
                            g_t += a * v
                        else:
                            g_t += v
                grad[n, c, i, j] = g
                if want_target:
                    grad_target[n, c, i, j] = g_t


def _kernel_mask(mask, warped):
    if mask is None:
        return np.ones((1, 1, 1, 1), warped.dtype), False
    return np.ascontiguousarray(mask), True


_NO_MAP = np.empty((1, 1, 1, 1))


def photometric_error_map_into(warped, target, alpha, emap, coef=None):
    """The per-pixel error e_p of the module docstring (unmasked, averaged over channels), fast.

    Args:
        warped, target: (N, C, H, W) float32 or float64, C-contiguous.
        alpha: SSIM weight in [0, 1].
        emap: (N, C, H, W) of warped's dtype, filled with the per-channel errors (work space).
        coef: None, or (3, N, C, H, W) as for :func:`photometric_forward_into`, filled for the backward
            (:func:`weighted_error_backward_into`).

    Returns:
        e (N, H, W) float64, the error per pixel averaged over the C channels.
    """
    N, C, H, W = warped.shape
    keep = coef is not None and alpha > 0
    coef_arg = coef if keep else np.empty((3, 1, 1, 1, 1), warped.dtype)
    l1, dssim = np.empty(N * C), np.empty(N * C)
    _forward_kernel(warped, target, np.ones((1, 1, 1, 1), warped.dtype), False, float(alpha), coef_arg, keep, l1,
                    dssim, emap, True)
    return emap.mean(axis=1, dtype=np.float64)


def weighted_error_backward_into(warped, target, weights, alpha, coef, grad_warped):
    """grad_warped = d(sum_p w_p e_p)/dwarped for the per-pixel errors e of :func:`photometric_error_map_into`
    (coef as it filled; may be None when alpha == 0) and weights w (N, 1, H, W) (no gradient)."""
    C = warped.shape[1]
    coef_arg = coef if alpha > 0 else np.empty((3, 1, 1, 1, 1), warped.dtype)
    _backward_kernel(warped, target, np.ascontiguousarray(weights), True, float(alpha), coef_arg, 1.0 / C,
                     grad_warped, False, _NO_MAP.astype(warped.dtype))


def photometric_forward_into(warped, target, mask=None, alpha=0.0, coef=None):
    """The loss of :func:`photometric_forward`, fast, keeping what the backward needs.

    Args:
        warped, target: (N, C, H, W) float32 or float64, C-contiguous.
        mask: optional (N, 1, H, W) non-negative weights.
        alpha: SSIM weight in [0, 1].
        coef: None, or (3, N, C, H, W) of warped's dtype, filled with the SSIM derivatives that
            :func:`photometric_backward_into` takes (when alpha > 0); (4, N, C, H, W) also keeps the target's,
            for a backward that differentiates the target too.

    Returns:
        (loss, total): the loss (0.0 when the mask is all zero) and the mask's sum (N * H * W without one).
    """
    m, has_mask = _kernel_mask(mask, warped)
    N, C, H, W = warped.shape
    total = float(m.sum(dtype=np.float64)) if has_mask else float(N * H * W)
    keep = coef is not None and alpha > 0
    coef_arg = coef if keep else np.empty((3, 1, 1, 1, 1), warped.dtype)
    l1, dssim = np.empty(N * C), np.empty(N * C)
    _forward_kernel(warped, target, m, has_mask, float(alpha), coef_arg, keep, l1, dssim, _NO_MAP, False)
    if total <= 0:
        return 0.0, total
    return float(((1 - alpha) * l1.sum() + alpha * dssim.sum()) / (total * C)), total


def photometric_backward_into(warped, target, mask, alpha, coef, total, scale, grad_warped, grad_target=None):
    """grad_warped = scale * dL/dwarped for the loss of the last :func:`photometric_forward_into` on the same
    arrays (coef and total are what it filled and returned; coef may be None when alpha == 0), and with
    grad_target (N, C, H, W), scale * dL/dtarget into it as well (then coef must have its 4 rows when
    alpha > 0)."""
    C = warped.shape[1]
    want_target = grad_target is not None
    if total <= 0:
        grad_warped[...] = 0
        if want_target:
            grad_target[...] = 0
        return
    if want_target and alpha > 0 and coef.shape[0] < 4:
        raise ValueError("the target's gradient needs the forward's 4-row coef")
    m, has_mask = _kernel_mask(mask, warped)
    coef_arg = coef if alpha > 0 else np.empty((4, 1, 1, 1, 1), warped.dtype)
    _backward_kernel(warped, target, m, has_mask, float(alpha), coef_arg, float(scale) / (total * C), grad_warped,
                     want_target, grad_target if want_target else _NO_MAP.astype(warped.dtype))
