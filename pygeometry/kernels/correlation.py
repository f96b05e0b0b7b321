"""Correlation (a local cost volume) of two feature maps, FlowNetC's matching layer, and its analytic backward.

Convention: f1 and f2 (N, C, H, W) are the features of the two images on the same pixel grid (f1: the target's,
f2: the source's, in the pose nets). For every displacement (dy, dx) with |dy|, |dx| <= m (max_displacement),
D = 2 m + 1 per axis, output channel k = (dy + m) * D + (dx + m) holds the mean over channels of the product

    out[n, k, y, x] = (1 / C) * sum_c f1[n, c, y, x] * f2[n, c, y + dy, x + dx],

with f2 taken as zero outside the grid (so a border pixel's out-of-grid displacements read 0). Single-pixel
patches and stride 1 (FlowNetC's kernel size 1); the output keeps f1's grid, (N, D^2, H, W).

Backward, for an upstream gradient g (N, D^2, H, W):

    d f1[n, c, y, x]           = (1 / C) * sum_k g[n, k, y, x] * f2[n, c, y + dy, x + dx]
    d f2[n, c, y + dy, x + dx] += (1 / C) * g[n, k, y, x] * f1[n, c, y, x]

Every displacement is a shifted product of whole rows, so the inner loops run along x over the overlap of the
two grids and vectorise. Sums are in the input dtype (float32 in a net, float64 in the gradient checks).
"""
from __future__ import annotations

import numba
import numpy as np


def displacements(max_displacement: int) -> list[tuple[int, int]]:
    """The (dy, dx) of every output channel, in channel order: dy major, dx minor, each from -m to m."""
    m = int(max_displacement)
    return [(dy, dx) for dy in range(-m, m + 1) for dx in range(-m, m + 1)]


@numba.njit(cache=True)
def _overlap(k, m, h_, w_):
    """Displacement (dy, dx) of output channel k, and the rows [y0, y1) and columns [x0, x1) of f1's grid whose
    displaced pixel lies inside f2's."""
    d_ = 2 * m + 1
    dy, dx = k // d_ - m, k % d_ - m
    return dy, dx, max(0, -dy), min(h_, h_ - dy), max(0, -dx), min(w_, w_ - dx)


@numba.njit(cache=True)
def _forward(f1, f2, m, out):
    n_, c_, h_, w_ = f1.shape
    d_ = 2 * m + 1
    scale = f1.dtype.type(1.0) / f1.dtype.type(c_)
    out[...] = 0
    for n in range(n_):
        for k in range(d_ * d_):
            dy, dx, y0, y1, x0, x1 = _overlap(k, m, h_, w_)
            for c in range(c_):
                for y in range(y0, y1):
                    for x in range(x0, x1):
                        out[n, k, y, x] += f1[n, c, y, x] * f2[n, c, y + dy, x + dx]
            for y in range(h_):
                for x in range(w_):
                    out[n, k, y, x] *= scale


@numba.njit(cache=True)
def _backward(f1, f2, g, m, g1, g2):
    n_, c_, h_, w_ = f1.shape
    d_ = 2 * m + 1
    scale = f1.dtype.type(1.0) / f1.dtype.type(c_)
    g1[...] = 0
    g2[...] = 0
    for n in range(n_):
        for k in range(d_ * d_):
            dy, dx, y0, y1, x0, x1 = _overlap(k, m, h_, w_)
            for c in range(c_):  # two row loops, each with one store stream, so that both vectorise
                for y in range(y0, y1):
                    for x in range(x0, x1):
                        g1[n, c, y, x] += g[n, k, y, x] * f2[n, c, y + dy, x + dx]
                for y in range(y0, y1):
                    for x in range(x0, x1):
                        g2[n, c, y + dy, x + dx] += g[n, k, y, x] * f1[n, c, y, x]
    for n in range(n_):
        for c in range(c_):
            for y in range(h_):
                for x in range(w_):
                    g1[n, c, y, x] *= scale
                    g2[n, c, y, x] *= scale


def _check(f1, f2, max_displacement):
    if f1.ndim != 4 or f1.shape != f2.shape:
        raise ValueError(f"f1 and f2 must be (N, C, H, W) of one shape, got {f1.shape} and {f2.shape}")
    if int(max_displacement) != max_displacement or max_displacement < 0:
        raise ValueError(f"max_displacement must be an integer >= 0, got {max_displacement!r}")


def correlation_forward(f1: np.ndarray, f2: np.ndarray, max_displacement: int, out=None) -> np.ndarray:
    """f1, f2 (N, C, H, W) -> cost volume (N, (2m + 1)^2, H, W) in f1's dtype (into `out` when given)."""
    f1, f2 = np.ascontiguousarray(f1), np.ascontiguousarray(f2, dtype=f1.dtype)
    _check(f1, f2, max_displacement)
    m = int(max_displacement)
    n, _, h, w = f1.shape
    if out is None:
        out = np.empty((n, (2 * m + 1) ** 2, h, w), f1.dtype)
    _forward(f1, f2, m, out)
    return out


def correlation_backward(f1: np.ndarray, f2: np.ndarray, grad_out: np.ndarray, max_displacement: int,
                         out=None) -> tuple[np.ndarray, np.ndarray]:
    """Gradients (d f1, d f2) of sum(grad_out * correlation_forward(f1, f2, m)); into `out` = (g1, g2) when given."""
    f1, f2 = np.ascontiguousarray(f1), np.ascontiguousarray(f2, dtype=f1.dtype)
    _check(f1, f2, max_displacement)
    m = int(max_displacement)
    g = np.ascontiguousarray(grad_out, dtype=f1.dtype)
    n, _, h, w = f1.shape
    if g.shape != (n, (2 * m + 1) ** 2, h, w):
        raise ValueError(f"grad_out must be {(n, (2 * m + 1) ** 2, h, w)}, got {g.shape}")
    g1, g2 = out if out is not None else (np.empty_like(f1), np.empty_like(f2))
    _backward(f1, f2, g, m, g1, g2)
    return g1, g2
