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
        float64 sums, no image-sized temporaries, loops that vectorise: the edge weights use a polynomial
        exponential, _exp_neg; the numpy version was 5x PyTorch's time, the first numba one 1.3x).
"""
from __future__ import annotations

import numba
import numpy as np

from .finite import FASTMATH, nonfinite_in

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
EXP_FAST_LIMIT = 32.0  # _exp_neg's polynomial holds below this argument; larger ones take libm's exp


@numba.njit(inline="always", fastmath=FASTMATH)
def _exp_neg(u):
    """exp(-u) for 0 <= u < EXP_FAST_LIMIT to ~1e-14 relative, as arithmetic only (no libm call), so that loops
    over it vectorise (numba has no vector exp without Intel's SVML): exp(-u) = exp(-u / 64)^64, the inner
    exponential by its Taylor series to degree 13 (|u / 64| < 0.5: truncation < 1e-15), then six squarings."""
    t = u * (-1.0 / 64.0)
    p = 1.0 + t * (1.0 + t * (1.0 / 2 + t * (1.0 / 6 + t * (1.0 / 24 + t * (1.0 / 120 + t * (1.0 / 720 + t * (
        1.0 / 5040 + t * (1.0 / 40320 + t * (1.0 / 362880 + t * (1.0 / 3628800 + t * (1.0 / 39916800 + t * (
            1.0 / 479001600 + t * (1.0 / 6227020800)))))))))))))
    p *= p
    p *= p
    p *= p
    p *= p
    p *= p
    p *= p
    return p


@numba.njit(inline="always", fastmath=FASTMATH)
def _edge_row(image, n, i0, j0, i1, j1, count, inv_C, u, w):
    """u[j] = mean_c |I[i1, j1 + j] - I[i0, j0 + j]| and w[j] = exp(-u[j]) for j < count (one row of edges)."""
    C = image.shape[1]
    for j in range(count):
        u[j] = 0.0
    for c in range(C):
        for j in range(count):
            u[j] += abs(np.float64(image[n, c, i1, j1 + j]) - np.float64(image[n, c, i0, j0 + j]))
    for j in range(count):
        u[j] *= inv_C
        w[j] = _exp_neg(min(u[j], EXP_FAST_LIMIT))
    for j in range(count):  # rare: very large image steps (images far outside [0, 1])
        if u[j] >= EXP_FAST_LIMIT:
            w[j] = np.exp(-u[j])


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _smoothness_kernel(disp, image, grad, want_grad, out):
    """out[n] = (sum over x-edges of |dd| w, sum over y-edges, NaN/inf count of disp, of image, min of disp) per
    image (float64; the layer's input checks, counted on the way); with want_grad, grad = d(loss)/ddisp with
    loss = sum_n out[n, 0] / count_x + out[n, 1] / count_y. Row by row: each edge's weight and sign once, in
    loops without branches (they vectorise); a pixel's gradient gathers its four edges'."""
    N, C, H, W = image.shape
    count_x, count_y = N * H * (W - 1), N * (H - 1) * W
    inv_C = 1.0 / C
    for n in numba.prange(N):
        total = 0.0
        low = np.inf
        bad_disp = 0
        bad_image = 0
        for i in range(H):
            bad_disp += nonfinite_in(disp[n, 0, i])
            for c in range(C):
                bad_image += nonfinite_in(image[n, c, i])
            for j in range(W):
                v = np.float64(disp[n, 0, i, j])
                total += v
                low = min(low, v)
        m = total / (H * W) + EPS
        inv_m = 1.0 / m
        u = np.empty(W)
        w = np.empty(W)
        kx = np.empty(W + 1)  # kx[j + 1]: d/d(d_{j+1} - d_j) of row i's x-edge j; kx[0] = kx[W] = 0
        ky_up = np.zeros(W)  # the y-edges above row i (from row i - 1 to i), zero for row 0
        ky = np.empty(W)
        kx[0] = 0.0
        kx[W] = 0.0
        sx = 0.0
        sy = 0.0
        gd = 0.0
        for i in range(H):
            _edge_row(image, n, i, 0, i, 1, W - 1, inv_C, u, w)
            for j in range(W - 1):
                diff = (np.float64(disp[n, 0, i, j + 1]) - np.float64(disp[n, 0, i, j])) * inv_m
                sx += abs(diff) * w[j]
                kx[j + 1] = ((diff > 0) - (diff < 0)) * w[j] / count_x
            if i + 1 < H:
                _edge_row(image, n, i, 0, i + 1, 0, W, inv_C, u, w)
                for j in range(W):
                    diff = (np.float64(disp[n, 0, i + 1, j]) - np.float64(disp[n, 0, i, j])) * inv_m
                    sy += abs(diff) * w[j]
                    ky[j] = ((diff > 0) - (diff < 0)) * w[j] / count_y
            else:
                for j in range(W):
                    ky[j] = 0.0
            if want_grad:  # dloss/dd, kept in grad until the normalisation's term is known
                for j in range(W):
                    G = kx[j] - kx[j + 1] + ky_up[j] - ky[j]
                    grad[n, 0, i, j] = G
                    gd += G * np.float64(disp[n, 0, i, j])
            for j in range(W):
                ky_up[j] = ky[j]
        out[n, 0] = sx
        out[n, 1] = sy
        out[n, 2] = bad_disp
        out[n, 3] = bad_image
        out[n, 4] = low
        if want_grad:  # through the normalisation: G / m - sum(G disp) / (m^2 H W)
            k = gd / (m * m * H * W)
            for i in range(H):
                for j in range(W):
                    grad[n, 0, i, j] = np.float64(grad[n, 0, i, j]) * inv_m - k


def smoothness_forward_checked(disp, image, grad=None):
    """:func:`smoothness_forward_into` with the layer's input checks counted in the same pass.

    Returns:
        (loss, nonfinite_disp, nonfinite_image, min_disp): the loss (meaningless when a count is not 0), the
        NaN/inf counts of disp and image, and disp's minimum (NaN ignored).
    """
    N, _, H, W = disp.shape
    out = np.empty((N, 5))
    want = grad is not None
    _smoothness_kernel(disp, image, grad if want else np.empty((1, 1, 1, 1), disp.dtype), want, out)
    loss = float(out[:, 0].sum() / (N * H * (W - 1)) + out[:, 1].sum() / (N * (H - 1) * W))
    return loss, int(out[:, 2].sum()), int(out[:, 3].sum()), float(out[:, 4].min())


def smoothness_forward_into(disp, image, grad=None) -> float:
    """The loss of :func:`smoothness_forward`, fast (disp (N, 1, H, W), image (N, C, H, W), C-contiguous). With
    grad (N, 1, H, W) of disp's dtype, also fills it with dloss/ddisp in the same pass (the layer keeps it for its
    backward: the edge weights' exponentials are most of the cost)."""
    return smoothness_forward_checked(disp, image, grad)[0]


def smoothness_backward_into(disp, image, scale, grad):
    """grad (N, 1, H, W) of disp's dtype = scale * dloss/ddisp, fast (through smoothness_forward_into)."""
    smoothness_forward_into(disp, image, grad)
    if scale != 1.0:
        grad *= grad.dtype.type(scale)
