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

Two implementations, tested against each other (tests/test_kernel_depth_losses.py):
    smoothness_forward / smoothness_backward: the readable reference (numpy, whole-array differences).
    smoothness_forward_into / smoothness_backward_into: what the layer runs (numba, one pass per image row,
        float64 sums, no image-sized temporaries; the numpy version was 5x PyTorch's time, benchmarked).
"""
from __future__ import annotations

import numba
import numpy as np

from .finite import FASTMATH

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


# ------------------------------------------------------------------------------------------------ fast kernels
@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _smoothness_kernel(disp, image, grad, want_grad, out):
    """out[n] = (sum over x-edges of |dd| w, sum over y-edges) per image (float64); with want_grad, grad =
    d(loss)/ddisp with loss = sum_n out[n, 0] / count_x + out[n, 1] / count_y. Each edge's weight is computed
    once, and its gradient scattered to both of its pixels."""
    N, C, H, W = image.shape
    count_x, count_y = N * H * (W - 1), N * (H - 1) * W
    for n in numba.prange(N):
        total = 0.0
        for i in range(H):
            for j in range(W):
                total += np.float64(disp[n, 0, i, j])
        m = total / (H * W) + EPS
        inv_m = 1.0 / m
        if want_grad:
            for i in range(H):
                for j in range(W):
                    grad[n, 0, i, j] = 0.0
        sx = 0.0
        sy = 0.0
        for i in range(H):
            for j in range(W):
                d = np.float64(disp[n, 0, i, j]) * inv_m
                if j + 1 < W:
                    g = 0.0
                    for c in range(C):
                        g += abs(np.float64(image[n, c, i, j + 1]) - np.float64(image[n, c, i, j]))
                    w = np.exp(-g / C)
                    diff = np.float64(disp[n, 0, i, j + 1]) * inv_m - d
                    sx += abs(diff) * w
                    if want_grad:
                        k = ((diff > 0) - (diff < 0)) * w / count_x
                        grad[n, 0, i, j + 1] += k
                        grad[n, 0, i, j] -= k
                if i + 1 < H:
                    g = 0.0
                    for c in range(C):
                        g += abs(np.float64(image[n, c, i + 1, j]) - np.float64(image[n, c, i, j]))
                    w = np.exp(-g / C)
                    diff = np.float64(disp[n, 0, i + 1, j]) * inv_m - d
                    sy += abs(diff) * w
                    if want_grad:
                        k = ((diff > 0) - (diff < 0)) * w / count_y
                        grad[n, 0, i + 1, j] += k
                        grad[n, 0, i, j] -= k
        out[n, 0] = sx
        out[n, 1] = sy
        if want_grad:  # through the normalisation: G / m - sum(G disp) / (m^2 H W)
            gd = 0.0
            for i in range(H):
                for j in range(W):
                    gd += np.float64(grad[n, 0, i, j]) * np.float64(disp[n, 0, i, j])
            k = gd / (m * m * H * W)
            for i in range(H):
                for j in range(W):
                    grad[n, 0, i, j] = np.float64(grad[n, 0, i, j]) * inv_m - k


def smoothness_forward_into(disp, image, grad=None) -> float:
    """The loss of :func:`smoothness_forward`, fast (disp (N, 1, H, W), image (N, C, H, W), C-contiguous). With
    grad (N, 1, H, W) of disp's dtype, also fills it with dloss/ddisp in the same pass (the layer keeps it for its
    backward: the edge weights' exponentials are most of the cost)."""
    N, _, H, W = disp.shape
    out = np.empty((N, 2))
    want = grad is not None
    _smoothness_kernel(disp, image, grad if want else np.empty((1, 1, 1, 1), disp.dtype), want, out)
    return float(out[:, 0].sum() / (N * H * (W - 1)) + out[:, 1].sum() / (N * (H - 1) * W))


def smoothness_backward_into(disp, image, scale, grad):
    """grad (N, 1, H, W) of disp's dtype = scale * dloss/ddisp, fast (through smoothness_forward_into)."""
    smoothness_forward_into(disp, image, grad)
    if scale != 1.0:
        grad *= grad.dtype.type(scale)
