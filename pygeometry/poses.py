"""Rigid transforms and pose vectors in float64 (NumPy, no gradients): the conversions data tools, the renderer
and the evaluation share. The layers' differentiable version is pygeometry.kernels.se3.

Convention (docs/conventions.md): xi = [tx, ty, tz, wx, wy, wz], translation first (the t of [[R, t], [0, 1]],
SE3Generator's "direct" translation), then the axis-angle vector w of R = exp(hat(w)) (cv2.Rodrigues; |w| in
[0, pi] when converting back); transforms are named by frames, e.g. src_T_tgt maps target-camera points into the
source camera.
"""
from __future__ import annotations

import cv2
import numpy as np


def matrix_from_pose_vector(xi) -> np.ndarray:
    """Pose vectors (6,) or (N, 6) -> transforms (4, 4) or (N, 4, 4) float64, R = Rodrigues(w), t = xi[:3]."""
    xi = np.asarray(xi, np.float64)
    flat = xi.reshape(-1, 6)
    T = np.tile(np.eye(4), (len(flat), 1, 1))
    for i, v in enumerate(flat):
        T[i, :3, :3] = cv2.Rodrigues(np.ascontiguousarray(v[3:]))[0]
        T[i, :3, 3] = v[:3]
    return T[0] if xi.ndim == 1 else T


def pose_vector_from_matrix(T) -> np.ndarray:
    """Rigid transforms (4, 4) or (N, 4, 4) -> pose vectors (6,) or (N, 6) float64, the inverse of
    matrix_from_pose_vector (rotation angle in [0, pi])."""
    T = np.asarray(T, np.float64)
    flat = T.reshape(-1, 4, 4)
    xi = np.array([np.concatenate([M[:3, 3], cv2.Rodrigues(np.ascontiguousarray(M[:3, :3]))[0].ravel()])
                   for M in flat]).reshape(-1, 6)
    return xi[0] if T.ndim == 2 else xi


def inverse_rigid(T) -> np.ndarray:
    """Inverse of rigid transforms (..., 4, 4) -> (..., 4, 4) float64: [[R^T, -R^T t], [0, 1]]."""
    T = np.asarray(T, np.float64)
    inv = np.zeros_like(T)
    Rt = np.swapaxes(T[..., :3, :3], -1, -2)
    inv[..., :3, :3] = Rt
    inv[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, T[..., :3, 3])
    inv[..., 3, 3] = 1.0
    return inv
