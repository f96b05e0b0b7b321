"""Test-time photometric pose refinement: Levenberg-Marquardt (Gauss-Newton with damping) on the 6 pose
parameters, with the analytic Jacobians of the kernels (no caffe import, no finite differences).

Residual (per target pixel p with depth > 0 and channel c), with the chain of the photometric networks:

    r_pc(xi) = I_src,c( proj( R(w) P_p + t ) ) - I_tgt,c(p),   P_p = d_p [(x - cx)/fx, (y - cy)/fy, 1]

(se3_forward -> transform_grid_forward -> projection_forward -> bilinear_forward with border padding, so the
set of pixels is fixed (depth > 0) and a pixel leaving the source image costs its border value, as in training).

Jacobian dr_pc/dxi_k = sum_j dI_c/dcoord_j * sum_a dcoord_j/dX_a * sum_b dT_ab/dxi_k * Ph_b, Ph = (P, 1), with
every factor from a kernel's analytic backward, pushed with unit vectors:
    dI_c/dcoord   bilinear_backward with grad_warped = one-hot channel c     (exact slope of the interpolation)
    dcoord_j/dX   projection_backward with grad_coords = one-hot axis j      (fx/Z, -fx X/Z^2, ...)
    dT_ab/dxi_k   se3_backward with grad_T = one-hot entry (a, b)            (Rodrigues derivative, 12 pushes)
Pixels whose point is behind the source camera, or whose sample is clamped by the border, get a zero row (the
exact derivative of the border-padded residual).

Solver: iteratively reweighted least squares with Huber weights (delta HUBER_DELTA, robust to occlusions and
lighting changes), cost = mean over pixels and channels of huber(r); LM step (H + lambda diag(H)) dxi = -g,
accepted when the cost drops (lambda /= 3), else rejected (lambda *= 5); additive update of xi = [t, w].
Coarse to fine over an image pyramid (cv2.pyrDown; the depth is subsampled at the even pixels, which are the
centres of the coarse pixels, and K = [fx, fy, cx, cy] / 2 per level) for a wider basin of convergence.
`iterations` counts the LM trials (accepted or not) at each level. Finally the result is kept only if its
full-resolution L1 photometric error (evaluation.photometric_errors) is not worse than the start's (test-time
information only), so the refinement never makes the photometric error worse.
"""
from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np

from .kernels.bilinear import bilinear_backward, bilinear_forward
from .kernels.projection import projection_backward, projection_forward
from .kernels.se3 import se3_backward, se3_forward
from .kernels.transform_grid import transform_grid_forward

HUBER_DELTA = 0.05
MIN_LEVEL_SIZE = 6


@dataclasses.dataclass
class RefineResult:
    """Outcome of refining one pair.

    Attributes:
        xi: (6,) refined pose vector (the start when refinement did not lower the photometric error).
        xi_start: (6,) the start.
        photometric_before, photometric_after: full-resolution L1 photometric error (depth > 0 pixels).
        trials: LM trials over all levels; accepted: accepted steps.
        time_s: wall time (pyramid, all levels, final check).
    """

    xi: np.ndarray
    xi_start: np.ndarray
    photometric_before: float
    photometric_after: float
    trials: int
    accepted: int
    time_s: float


def dT_dxi(xi: np.ndarray, translation: str = "direct") -> np.ndarray:
    """Jacobian of T = se3_forward(xi) with respect to xi: (3, 4, 6), entry [a, b, k] = dT[a, b]/dxi_k, from 12
    unit pushes through the analytic se3_backward (it is linear in grad_T)."""
    xi = np.asarray(xi, np.float64).reshape(1, 6)
    unit = np.zeros((12, 4, 4))
    unit.reshape(12, 16)[np.arange(12), np.arange(12)] = 1.0  # entries (a, b) of the top 3 rows, row-major
    return se3_backward(np.repeat(xi, 12, axis=0), unit, translation).reshape(3, 4, 6)


def linearize(src, tgt, depth, K, xi, padding="border", jacobian=True):
    """Residuals and Jacobian of one pair at pose xi.

    Args:
        src, tgt: (1, C, H, W) float64 images; depth: (1, 1, H, W) target depth; K: (4,); xi: (6,).
        padding: bilinear padding ("border" as the networks' loss).
        jacobian: also compute the Jacobian.

    Returns:
        (r (C, M), J (C, 6, M) or None) over the M pixels with depth > 0, float64: J[c, k, p] = dr[c, p]/dxi_k.
    """
    xi = np.asarray(xi, np.float64).reshape(1, 6)
    K = np.asarray(K, np.float64).reshape(1, 4)
    T = se3_forward(xi)
    points = transform_grid_forward(depth, T, K)
    coords, _ = projection_forward(points, K)
    warped, _ = bilinear_forward(src, coords, padding=padding)
    sel = depth[0, 0] > 0
    r = (warped - tgt)[0][:, sel]
    if not jacobian:
        return r, None
    C, M = r.shape
    dI = np.empty((C, 2, M))
    g = np.zeros_like(warped)
    for c in range(C):
        g[...] = 0
        g[0, c] = 1
        _, gc = bilinear_backward(src, coords, g, padding=padding, need_image=False)
        dI[c] = gc[0][:, sel]
    dproj = np.empty((2, 3, M))
    gcoord = np.zeros_like(coords)
    for j in range(2):
        gcoord[...] = 0
        gcoord[0, j] = 1
        dproj[j] = projection_backward(points, K, gcoord)[0][:, sel]
    P = transform_grid_forward(depth, np.eye(4)[None], K)[0][:, sel]
    Ph = np.vstack([P, np.ones((1, M))])
    dX = (np.transpose(dT_dxi(xi[0]), (0, 2, 1)).reshape(18, 4) @ Ph).reshape(3, 6, M)  # dpoints/dxi
    dcoord = [sum(dproj[j, a] * dX[a] for a in range(3)) for j in range(2)]              # dcoords/dxi (6, M)
    J = np.stack([dI[c, 0] * dcoord[0] + dI[c, 1] * dcoord[1] for c in range(C)])        # (C, 6, M)
    return r, J


def _huber(r, delta):
    a = np.abs(r)
    cost = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
    weight = np.where(a <= delta, 1.0, delta / np.maximum(a, 1e-12))
    return cost, weight


def pyramid(src, tgt, depth, K, levels):
    """[(src, tgt, depth, K)] from fine (full resolution) to coarse; images (1, C, H, W) float64."""
    out = [(src, tgt, depth, np.asarray(K, np.float64).reshape(4))]
    for _ in range(levels - 1):
        s, t, d, k = out[-1]
        if min(s.shape[2:]) // 2 < MIN_LEVEL_SIZE:
            break
        down = lambda x: np.transpose(cv2.pyrDown(np.ascontiguousarray(np.transpose(x[0], (1, 2, 0)))),  # noqa: E731
                                      (2, 0, 1))[None].reshape((1, x.shape[1]) + ((x.shape[2] + 1) // 2,
                                                                                  (x.shape[3] + 1) // 2))
        out.append((np.ascontiguousarray(down(s)), np.ascontiguousarray(down(t)),
                    np.ascontiguousarray(d[:, :, ::2, ::2]), k / 2))
    return out


def _solve_level(src, tgt, depth, K, xi, iterations, delta, lam):
    trials = accepted = 0
    r, J = linearize(src, tgt, depth, K, xi)
    if r.size == 0:
        return xi, trials, accepted, lam
    cost_el, w = _huber(r, delta)
    cost = cost_el.mean()
    while trials < iterations:
        Jw = J * w[:, None, :]
        H = sum(Jw[c] @ J[c].T for c in range(len(J)))
        g = sum(Jw[c] @ r[c] for c in range(len(J)))
        if not np.all(np.isfinite(H)) or np.abs(g).max() == 0:
            break
        step = np.linalg.solve(H + lam * np.diag(np.diag(H)) + 1e-12 * np.eye(6), -g)
        trials += 1
        xi_new = xi + step
        r_new, _ = linearize(src, tgt, depth, K, xi_new, jacobian=False)
        cost_new = _huber(r_new, delta)[0].mean()
        if cost_new < cost:
            accepted += 1
            xi, lam = xi_new, max(lam / 3, 1e-7)
            if np.abs(step).max() < 1e-7:
                break
            r, J = linearize(src, tgt, depth, K, xi)
            cost_el, w = _huber(r, delta)
            cost = cost_el.mean()
        else:
            lam *= 5
            if lam > 1e6:
                break
    return xi, trials, accepted, lam


def refine_pose(src, tgt, tgt_depth, K, xi_start, iterations=10, levels=5, delta=HUBER_DELTA, lam=1e-3):
    """Refine the pose of one pair from xi_start (see the module docstring).

    Args:
        src, tgt: (3, H, W) RGB; tgt_depth: (1, H, W); K: (4,) [fx, fy, cx, cy]; xi_start: (6,) [t, w].
        iterations: LM trials per pyramid level (0 returns the start).
        levels: pyramid levels (1 = full resolution only); a level is made only while the smaller side stays >=
            MIN_LEVEL_SIZE after halving (128 x 416 -> 8 x 26 with 5 levels). The coarsest levels give the wide
            basin: on 40 handheld 64 x 208 pairs from a poor network start, 27/40 converged (< 2 cm) with a
            16 x 52 coarsest level and 34/40 with 8 x 26.
        delta: Huber threshold on the residual (image units).
        lam: initial LM damping.

    Returns:
        RefineResult.
    """
    from .evaluation import photometric_errors

    t0 = time.perf_counter()
    xi0 = np.asarray(xi_start, np.float64).reshape(6)
    src64 = np.asarray(src, np.float64)[None]
    tgt64 = np.asarray(tgt, np.float64)[None]
    depth64 = np.asarray(tgt_depth, np.float64).reshape((1, 1) + src64.shape[2:])
    xi, trials, accepted = xi0.copy(), 0, 0
    if iterations > 0:
        for s, t, d, k in reversed(pyramid(src64, tgt64, depth64, K, levels)):
            xi, n, a, lam = _solve_level(s, t, d, k, xi, iterations, delta, lam)
            trials, accepted = trials + n, accepted + a
    T = se3_forward(np.stack([xi0, xi]))
    before, after = photometric_errors(src64[[0, 0]], tgt64[[0, 0]], depth64[[0, 0]], K, T)
    if not after <= before:
        xi, after = xi0.copy(), before
    return RefineResult(xi, xi0, float(before), float(after), trials, accepted, time.perf_counter() - t0)


def warm_up():
    """Compile the kernels for the types refine_pose uses (numba JIT, cached on disk when the kernels' source is
    unchanged), so that RefineResult.time_s measures the refinement, not the compiler."""
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(3, 2 * MIN_LEVEL_SIZE, 2 * MIN_LEVEL_SIZE)).astype(np.float32)
    depth = np.full((1,) + img.shape[1:], 2.0, np.float32)
    refine_pose(img, img, depth, np.array([20.0, 20.0, 11.5, 11.5]), np.full(6, 0.01), iterations=1, levels=2)


def refine_poses(src, tgt, tgt_depth, K, xi_start, iterations=10, levels=5, progress=None, **kw):
    """refine_pose for every pair: src, tgt (N, 3, H, W), tgt_depth (N, 1, H, W), K (N, 4) or (4,), xi_start
    (N, 6). progress: optional callable wrapping the range (e.g. tqdm). Returns a list of N RefineResult (the
    kernels are compiled first, outside the timing: warm_up)."""
    warm_up()
    n = len(src)
    K = np.broadcast_to(np.asarray(K, np.float64).reshape(-1, 4), (n, 4))
    xi_start = np.asarray(xi_start, np.float64).reshape(n, 6)
    idx = range(n) if progress is None else progress(range(n))
    return [refine_pose(src[i], tgt[i], tgt_depth[i], K[i], xi_start[i], iterations, levels, **kw) for i in idx]
