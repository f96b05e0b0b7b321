"""NetSpec helpers: one function per pygeometry layer, so module/class names and param_str live in one place.

Example:
    from caffe import NetSpec, layers as L
    from pygeometry import netspec as G
    n = NetSpec()
    n.T = G.se3_generator(n.xi)
    n.points = G.transform_3d_grid(n.depth, n.T, K=K)
    n.coords, n.valid = G.pinhole_projection(n.points, K=K, with_valid=True)
    n.warped, n.warp_valid = G.bilinear_warp(n.src, n.coords, with_valid=True)
    n.loss = G.photometric_loss(n.warped, n.tgt, n.warp_valid, alpha=0.85)

Keyword arguments that are not layer parameters (name, loss_weight, propagate_down, ...) pass through to
caffe's L.Python. Parameters are validated here with the same parser the layers use, so a mistake fails when
the prototxt is written, not when it is run.
"""
from __future__ import annotations

import json

from . import config as cfg

MODULE = "pygeometry.layers"


def _python_layer(layer, config_cls, bottoms, params, ntop=1, **kwargs):
    from caffe import layers as L  # imported lazily: pygeometry itself does not need caffe

    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items() if v is not None}
    param_str = json.dumps(params, sort_keys=True)
    cfg.parse_param_str(layer, param_str, config_cls)  # fail early on a bad parameter
    return L.Python(*bottoms, python_param=dict(module=MODULE, layer=layer, param_str=param_str), ntop=ntop,
                    **kwargs)


def se3_generator(xi, translation=None, **kwargs):
    """xi (N, 6) -> T (N, 4, 4)."""
    return _python_layer("SE3Generator", cfg.SE3GeneratorConfig, [xi], {"translation": translation}, **kwargs)


def transform_3d_grid(depth, src_T_tgt, K=None, K_blob=None, **kwargs):
    """depth (N, 1, H, W), src_T_tgt (N, 4, 4) [, K_blob (N, 4)] -> points (N, 3, H, W). K: [fx, fy, cx, cy]."""
    bottoms = [depth, src_T_tgt] + ([K_blob] if K_blob is not None else [])
    return _python_layer("Transform3DGrid", cfg.Transform3DGridConfig, bottoms, {"K": K}, **kwargs)


def pinhole_projection(points, K=None, K_blob=None, output=None, eps=None, with_valid=False, **kwargs):
    """points (N, 3, H, W) [, K_blob] -> coords or flow (N, 2, H, W) [, valid (N, 1, H, W) if with_valid]."""
    bottoms = [points] + ([K_blob] if K_blob is not None else [])
    return _python_layer("PinholeProjection", cfg.PinholeProjectionConfig, bottoms,
                         {"K": K, "output": output, "eps": eps}, ntop=2 if with_valid else 1, **kwargs)


def bilinear_warp(image, coords, input=None, padding=None, with_valid=False, **kwargs):  # noqa: A002
    """image (N, C, Hs, Ws), coords or flow (N, 2, H, W) -> warped (N, C, H, W) [, valid (N, 1, H, W)]."""
    return _python_layer("BilinearWarp", cfg.BilinearWarpConfig, [image, coords],
                         {"input": input, "padding": padding}, ntop=2 if with_valid else 1, **kwargs)


def photometric_loss(warped, target, mask=None, alpha=None, loss_weight=1.0, **kwargs):
    """warped, target (N, C, H, W) [, mask (N, 1, H, W)] -> scalar loss (loss_weight 1 by default)."""
    bottoms = [warped, target] + ([mask] if mask is not None else [])
    return _python_layer("PhotometricLoss", cfg.PhotometricLossConfig, bottoms, {"alpha": alpha},
                         loss_weight=loss_weight, **kwargs)


def random_mirror(images, K, xi, probability=None, seed=None, **kwargs):
    """images (N, C, H, W)... , K (N, 4), xi (N, 6) -> the same blobs, each pair mirrored left-right with the given
    probability in the training phase (RandomMirror)."""
    bottoms = list(images) + [K, xi]
    return _python_layer("RandomMirror", cfg.RandomMirrorConfig, bottoms, {"probability": probability, "seed": seed},
                         ntop=len(bottoms), **kwargs)


def random_reverse(src, tgt, xi, depths=None, probability=None, seed=None, **kwargs):
    """src, tgt (N, C, H, W) [, depths = (src_depth, tgt_depth)], xi (N, 6) -> the same blobs, each pair read
    backwards (source and target swapped, the pose inverted) with the given probability in the training phase
    (RandomReverse)."""
    bottoms = [src, tgt] + list(depths or []) + [xi]
    return _python_layer("RandomReverse", cfg.RandomReverseConfig, bottoms, {"probability": probability, "seed": seed},
                         ntop=len(bottoms), **kwargs)


def random_colour(images, gain=None, seed=None, **kwargs):
    """images (N, 3, H, W)... of the same pairs -> the same, each pair recoloured (one channel permutation and gain
    for all its images) in the training phase (RandomColour)."""
    return _python_layer("RandomColour", cfg.RandomColourConfig, list(images), {"gain": gain, "seed": seed},
                         ntop=len(images), **kwargs)


def min_reprojection_loss(warped, target, unwarped=None, alpha=None, with_reprojected=False, loss_weight=1.0,
                          **kwargs):
    """warped: S blobs (N, C, H, W), target (N, C, H, W) [, unwarped: S blobs (auto-masking)] -> scalar loss
    [, reprojected (N, 1, H, W) if with_reprojected]."""
    warped = list(warped)
    bottoms = warped + [target] + list(unwarped or [])
    if with_reprojected and not isinstance(loss_weight, (list, tuple)):
        loss_weight = [loss_weight, 0.0]  # the map is for monitoring, not a loss
    return _python_layer("MinReprojectionLoss", cfg.MinReprojectionLossConfig, bottoms,
                         {"sources": len(warped), "automask": unwarped is not None, "alpha": alpha},
                         ntop=2 if with_reprojected else 1, loss_weight=loss_weight, **kwargs)


def correlation(f1, f2, max_displacement=None, **kwargs):
    """f1, f2 (N, C, H, W) -> cost volume (N, (2m + 1)^2, H, W) (Correlation; m = max_displacement, default 4)."""
    return _python_layer("Correlation", cfg.CorrelationConfig, [f1, f2], {"max_displacement": max_displacement},
                         **kwargs)


def edge_aware_smoothness(disp, image, loss_weight=1.0, **kwargs):
    """disp (N, 1, H, W) > 0, image (N, C, H, W) -> scalar loss (weight it: Monodepth2 uses 1e-3 / 2^s)."""
    return _python_layer("EdgeAwareSmoothness", cfg.EdgeAwareSmoothnessConfig, [disp, image], {},
                         loss_weight=loss_weight, **kwargs)
