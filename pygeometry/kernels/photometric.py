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
"""
from __future__ import annotations

import cv2
import numpy as np

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
