"""Left-right mirroring of training pairs, an exact augmentation of the geometry (no gradient: a data layer's job).

Mirroring the world in the camera's x axis, M = diag(-1, 1, 1), turns a pair (source, target, target depth, K, pose)
into another valid pair of the mirrored scene:

    images and depth:  I'(x, y) = I(W - 1 - x, y)               (pixel centres at integers)
    intrinsics:        cx' = W - 1 - cx                          (fx, fy, cy unchanged)
    pose:              src_T_tgt' = M src_T_tgt M, i.e. t' = M t = (-tx, ty, tz) and, with R' = M R M = exp(hat(w'))
                       and det M = -1, w' = -M w = (wx, -wy, -wz).

so xi' = [-tx, ty, tz, wx, -wy, -wz]. The photometric loss of the mirrored pair at the mirrored pose is the loss of
the original pair at its pose, pixel for pixel.
"""
from __future__ import annotations

import numpy as np

POSE_SIGNS = np.array([-1.0, 1.0, 1.0, 1.0, -1.0, -1.0])  # xi = [tx, ty, tz, wx, wy, wz] -> xi' = POSE_SIGNS * xi


def mirror_pairs(images, K, xi, flip):
    """Mirror the pairs where `flip` is True; the others pass unchanged. New arrays, same dtypes.

    Args:
        images: list of arrays (N, C, H, W) (source, target, target depth, ...), mirrored along W.
        K: (N, 4) [fx, fy, cx, cy] or None.
        xi: (N, 6) pose vectors of src_T_tgt or None.
        flip: (N,) bool.

    Returns:
        (images', K', xi') with images' a list like `images`, K' and xi' None where K and xi are.
    """
    flip = np.asarray(flip, dtype=bool)
    out = []
    for a in images:
        b = np.array(a, copy=True)
        b[flip] = b[flip][..., ::-1]
        out.append(b)
    K_out = xi_out = None
    if K is not None:
        width = images[0].shape[-1]
        K_out = np.array(K, copy=True)
        K_out[flip, 2] = (width - 1) - K_out[flip, 2]
    if xi is not None:
        xi_out = np.array(xi, copy=True)
        xi_out[flip] = xi_out[flip] * POSE_SIGNS.astype(xi_out.dtype)
    return out, K_out, xi_out
