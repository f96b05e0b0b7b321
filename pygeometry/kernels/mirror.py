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


def mirror_pairs(images, K, xi, flip, out=None):
    """Mirror the pairs where `flip` is True; the others pass unchanged.

    Args:
        images: list of arrays (N, C, H, W) (source, target, target depth, ...), mirrored along W.
        K: (N, 4) [fx, fy, cx, cy] or None.
        xi: (N, 6) pose vectors of src_T_tgt or None.
        flip: (N,) bool.
        out: optional list of arrays to write into, like images + [K, xi] without the None ones (a layer's tops);
            else new arrays with the same dtypes.

    Returns:
        (images', K', xi') with images' a list like `images`, K' and xi' None where K and xi are.
    """
    idx = np.flatnonzero(np.asarray(flip, dtype=bool))
    inputs = list(images) + [a for a in (K, xi) if a is not None]
    out = list(out) if out is not None else [np.empty_like(np.asarray(a)) for a in inputs]
    for a, b in zip(inputs, out):
        b[...] = a
    for a, b in zip(images, out):
        b[idx] = np.asarray(a)[idx][..., ::-1]
    rest = out[len(images):]
    K_out = rest.pop(0) if K is not None else None
    xi_out = rest.pop(0) if xi is not None else None
    if K_out is not None:
        width = images[0].shape[-1]
        K_out[idx, 2] = (width - 1) - np.asarray(K)[idx, 2]
    if xi_out is not None:
        xi_out[idx] = np.asarray(xi)[idx] * POSE_SIGNS.astype(xi_out.dtype)
    return out[:len(images)], K_out, xi_out
