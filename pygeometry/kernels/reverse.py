"""Time reversal of training pairs: seen the other way round, a pair is another exact pair (no gradient: a data
layer's job).

A pair (source, target, target depth, K, src_T_tgt) read backwards is (target, source, source depth, K, tgt_T_src)
with tgt_T_src = inv(src_T_tgt): the same camera, the other image warped onto the first. In the pose-vector
convention of kernels.se3 (direct translation, T = [[R(w), t], [0, 1]]) the inverse is

    xi' = [-R(w)^T t, -w].

Driving forward becomes driving backward, so the mean training pose no longer tells a network which way the camera
went: it has to read the order of the two images from the images (expansion or contraction about the focus of
expansion), which is the motion signal the pose nets are meant to learn.
"""
from __future__ import annotations

import numpy as np

from ..poses import inverse_rigid, matrix_from_pose_vector, pose_vector_from_matrix


def reverse_pose_vectors(xi) -> np.ndarray:
    """Pose vectors (N, 6) of src_T_tgt -> those of tgt_T_src (float64): [-R(w)^T t, -w]."""
    xi = np.asarray(xi, np.float64).reshape(-1, 6)
    out = pose_vector_from_matrix(inverse_rigid(matrix_from_pose_vector(xi))).reshape(-1, 6)
    out[:, 3:] = -xi[:, 3:]  # exact, and keeps the axis-angle continuous (Rodrigues would fold |w| > pi)
    return out


def reverse_pairs(src, tgt, xi, flip, src_depth=None, tgt_depth=None, out=None):
    """Swap source and target (and their depths) where `flip` is True and invert the pose; others pass unchanged.

    Args:
        src, tgt: (N, C, H, W) images of the pairs.
        xi: (N, 6) pose vectors of src_T_tgt.
        flip: (N,) bool.
        src_depth, tgt_depth: (N, 1, H, W) depths of the source and the target, both or neither (a photometric
            net warps the source into the target with the target's depth, so reversed pairs need the source's).
        out: optional list of arrays to write into, like [src, tgt, (src_depth, tgt_depth,) xi] (a layer's tops);
            else new arrays with the same dtypes.

    Returns:
        the list [src', tgt', (src_depth', tgt_depth',) xi'].
    """
    if (src_depth is None) != (tgt_depth is None):
        raise ValueError("reverse_pairs needs both depths (source and target) or neither")
    images = [src, tgt] + ([src_depth, tgt_depth] if src_depth is not None else [])
    inputs = images + [xi]
    out = list(out) if out is not None else [np.empty_like(np.asarray(a)) for a in inputs]
    idx = np.flatnonzero(np.asarray(flip, dtype=bool))
    for a, b in zip(inputs, out):
        b[...] = a
    for k in range(0, len(images), 2):  # (src, tgt) and (src_depth, tgt_depth) swap places
        first, second = np.asarray(images[k])[idx], np.asarray(images[k + 1])[idx]
        out[k][idx], out[k + 1][idx] = second, first
    if len(idx):
        out[-1][idx] = reverse_pose_vectors(np.asarray(xi)[idx])
    return out
