"""MinReprojectionLoss: the per-pixel minimum photometric error over several sources, with auto-masking
(Monodepth2), and its backward.

Convention:
    For S sources warped into the target view, warped_s (N, C, H, W), and the target (N, C, H, W), the per-pixel
    error e_s,p is PhotometricLoss's (pygeometry.kernels.photometric: alpha * (1 - SSIM_p) / 2 +
    (1 - alpha) * |warped_p - target_p|, averaged over the C channels; SSIM 3x3 with reflection padding).
    Each pixel takes its best source, r_p = min_s e_s,p (ties: the first source), so that a pixel occluded or
    out of view in one source is explained by the other.

    Auto-masking (optional): with the unwarped sources given too (the identity reprojection), u_p = min_s of
    their errors to the target; a pixel where u_p < r_p (the scene looks the same without any motion: a static
    camera, an object moving with it, a textureless region) contributes u_p, which does not depend on the
    network. Ties go to the reprojection, so a pose network started at the identity still gets gradient.

        loss = 1 / (N H W) * sum_p min(r_p, u_p)          (min(r_p, u_p) = r_p without auto-masking)

    Gradient: only to the selected warped source at each pixel (through SSIM's 3x3 windows, to its neighbours
    too); the target and the unwarped sources are data and get none. The selection is piecewise constant, so
    the gradient is exact away from ties (the same as Monodepth2's torch.min).

Two implementations, tested against each other (tests/test_kernel_min_reprojection.py):
    min_reprojection_reference: readable numpy, from photometric's reference SSIM and backward.
    min_reprojection_forward / min_reprojection_backward: what the layer runs (photometric's numba kernels:
        one pass per image plane for the error maps, the backward reuses the forward's SSIM derivatives).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np

from .photometric import photometric_backward, photometric_error_map_into, ssim_map, weighted_error_backward_into


class MinReprojectionState(NamedTuple):
    """What the forward keeps for the backward.

    weights: (S, N, 1, H, W) per source, 1 / (N H W) where that source is the selected one, else 0.
    coef: S arrays (3, N, C, H, W) of SSIM derivatives (None each when alpha == 0).
    reprojected: (N, 1, H, W) 1 where a warped source is used, 0 where the identity wins (auto-masked).
    """

    weights: np.ndarray
    coef: list
    reprojected: np.ndarray


def _select(errors: np.ndarray, identity_errors: Optional[np.ndarray], dtype):
    """loss, per-source weights (S, N, 1, H, W) and the reprojected map (N, 1, H, W) from the error maps
    errors (S, N, H, W) and identity_errors (S', N, H, W) or None."""
    S, N, H, W = errors.shape
    best = errors.argmin(axis=0)
    r = np.take_along_axis(errors, best[None], axis=0)[0]
    if identity_errors is None:
        use = np.ones((N, H, W), bool)
        value = r
    else:
        u = identity_errors.min(axis=0)
        use = r <= u
        value = np.where(use, r, u)
    loss = float(value.mean(dtype=np.float64))
    weights = np.zeros((S, N, 1, H, W), dtype)
    for s in range(S):
        weights[s, :, 0] = ((best == s) & use) / float(N * H * W)
    return loss, weights, use[:, None].astype(dtype)


def min_reprojection_forward(target: np.ndarray, warped: Sequence[np.ndarray],
                             identity: Optional[Sequence[np.ndarray]] = None, alpha: float = 0.85,
                             work: Optional[np.ndarray] = None):
    """The loss of the module docstring, fast.

    Args:
        target: (N, C, H, W) float32 or float64, C-contiguous.
        warped: S arrays (N, C, H, W), the sources warped into the target view.
        identity: None (no auto-masking) or S' arrays (N, C, H, W), the unwarped sources (same size as target).
        alpha: SSIM weight in [0, 1] (0.85 as Monodepth2).
        work: optional (N, C, H, W) scratch of target's dtype (the per-channel error maps).

    Returns:
        (loss float, MinReprojectionState for :func:`min_reprojection_backward`).
    """
    if work is None:
        work = np.empty_like(target)
    coef = []
    errors = []
    for x in warped:
        c = np.empty((3,) + target.shape, target.dtype) if alpha > 0 else None
        errors.append(photometric_error_map_into(x, target, alpha, work, c))
        coef.append(c)
    identity_errors = None
    if identity is not None:
        identity_errors = np.stack([photometric_error_map_into(x, target, alpha, work) for x in identity])
    loss, weights, reprojected = _select(np.stack(errors), identity_errors, target.dtype)
    return loss, MinReprojectionState(weights, coef, reprojected)


def min_reprojection_backward(target, warped, alpha, state: MinReprojectionState, scale, grads):
    """grads[s] = scale * dloss/dwarped[s] for every source (grads: S arrays (N, C, H, W), overwritten)."""
    for s, x in enumerate(warped):
        w = state.weights[s] * np.asarray(scale, dtype=state.weights.dtype)
        weighted_error_backward_into(x, target, w, alpha, state.coef[s], grads[s])


def _error_map_reference(x, y, alpha):
    e = (1 - alpha) * np.abs(x - y).mean(axis=1, dtype=np.float64)
    if alpha > 0:
        e = e + alpha * ((1 - ssim_map(x, y)) / 2).mean(axis=1, dtype=np.float64)
    return e


def min_reprojection_reference(target, warped, identity=None, alpha=0.85):
    """Readable reference of the forward and backward: (loss, [dloss/dwarped_s], reprojected (N, 1, H, W))."""
    errors = np.stack([_error_map_reference(x, target, alpha) for x in warped])
    identity_errors = None if identity is None else np.stack([_error_map_reference(x, target, alpha)
                                                              for x in identity])
    loss, weights, reprojected = _select(errors, identity_errors, np.float64)
    grads = []
    for s, x in enumerate(warped):
        total = float(weights[s].sum())
        if total == 0:
            grads.append(np.zeros_like(x))
            continue
        g, _ = photometric_backward(x, target, weights[s], alpha)  # d(sum w e / sum w)
        grads.append((g * total).astype(x.dtype))
    return loss, grads, reprojected
