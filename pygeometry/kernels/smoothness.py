"""EdgeAwareSmoothness: first-order smoothness of mean-normalised disparity, down-weighted at image edges
(Monodepth2), and its backward.

Convention:
    disp (N, 1, H, W) >= 0, image (N, C, H, W) at the same size. Per image n, the disparity is divided by its
    mean (so that the loss cannot be lowered by shrinking the disparity, i.e. scaling the depth up):
        d = disp / (mean_HW(disp_n) + eps),   eps = 1e-7.
    With the image gradients averaged over channels, g^x_p = mean_c |I_{p+x} - I_p| (and y alike):
        loss = mean_{x-edges} |d_{p+x} - d_p| exp(-g^x_p) + mean_{y-edges} |d_{p+y} - d_p| exp(-g^y_p)
    where each mean runs over the N (H) (W - 1) horizontal, or N (H - 1) W vertical, neighbour pairs.
    The image gets no gradient (it is data); d|u|/du at u = 0 is taken as 0.

    Gradient through the normalisation, per image with m = mean(disp) + eps and G = dloss/dd:
        dloss/ddisp_p = G_p / m - sum_q G_q disp_q / (m^2 H W).
"""
from __future__ import annotations

import numpy as np

EPS = 1e-7


def _edge_weights(image: np.ndarray):
    """exp(-mean_c |dI|) along x (N, 1, H, W - 1) and y (N, 1, H - 1, W), float64."""
    image = np.asarray(image, dtype=np.float64)
    wx = np.exp(-np.abs(np.diff(image, axis=3)).mean(axis=1, keepdims=True))
    wy = np.exp(-np.abs(np.diff(image, axis=2)).mean(axis=1, keepdims=True))
    return wx, wy


def smoothness_forward(disp: np.ndarray, image: np.ndarray) -> float:
    """The loss of the module docstring.

    Args:
        disp: (N, 1, H, W) disparity, >= 0 (H, W >= 2).
        image: (N, C, H, W) the image the disparity belongs to.

    Returns:
        loss: float.
    """
    d64 = np.asarray(disp, dtype=np.float64)
    d = d64 / (d64.mean(axis=(2, 3), keepdims=True) + EPS)
    wx, wy = _edge_weights(image)
    return float((np.abs(np.diff(d, axis=3)) * wx).mean() + (np.abs(np.diff(d, axis=2)) * wy).mean())


def smoothness_backward(disp: np.ndarray, image: np.ndarray) -> np.ndarray:
    """dloss/ddisp (N, 1, H, W), of disp's dtype, for :func:`smoothness_forward` (times 1)."""
    d64 = np.asarray(disp, dtype=np.float64)
    N, _, H, W = d64.shape
    m = d64.mean(axis=(2, 3), keepdims=True) + EPS
    d = d64 / m
    wx, wy = _edge_weights(image)
    gx = np.sign(np.diff(d, axis=3)) * wx / wx.size  # dloss / d(d_{p+x} - d_p)
    gy = np.sign(np.diff(d, axis=2)) * wy / wy.size
    G = np.zeros_like(d)
    G[..., 1:] += gx
    G[..., :-1] -= gx
    G[..., 1:, :] += gy
    G[..., :-1, :] -= gy
    grad = G / m - (G * d64).sum(axis=(2, 3), keepdims=True) / (m * m * H * W)
    return grad.astype(disp.dtype)
