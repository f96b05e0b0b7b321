"""Pose metrics and trivial baselines (no caffe import).

Convention: poses are src_T_tgt; a prediction xi (N, 6) = [t, w] is turned into a transform with the same
exponential map as SE3Generator ("direct" translation). Errors:
    translation error  |t_pred - t_gt| in metres
    rotation error     geodesic angle of R_gt^T R_pred in degrees (in [0, 180])
"""
from __future__ import annotations

import numpy as np

from .kernels.se3 import se3_forward


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Geodesic angle of rotation matrices (..., 3, 3) in degrees, robust at 0 and 180 degrees."""
    cos = np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def pose_errors(xi_pred: np.ndarray, src_T_tgt_gt: np.ndarray, translation: str = "direct"):
    """Per-pair errors of predicted pose vectors (N, 6) against ground-truth transforms (N, 4, 4).

    Returns:
        dict of arrays (N,): translation_m, rotation_deg.
    """
    T = se3_forward(np.asarray(xi_pred, np.float64).reshape(-1, 6), translation)
    G = np.asarray(src_T_tgt_gt, np.float64).reshape(-1, 4, 4)
    return {"translation_m": np.linalg.norm(T[:, :3, 3] - G[:, :3, 3], axis=1),
            "rotation_deg": rotation_angle_deg(np.swapaxes(G[:, :3, :3], 1, 2) @ T[:, :3, :3])}


def summarize(errors: dict) -> dict:
    """Mean and median of each error array."""
    return {k: {"mean": float(np.mean(v)), "median": float(np.median(v))} for k, v in errors.items()}


def baseline_predictions(xi_train: np.ndarray, n: int) -> dict:
    """The trivial baselines for n test pairs: identity pose, and the mean training pose vector."""
    return {"identity": np.zeros((n, 6)), "mean training pose": np.tile(np.mean(xi_train, axis=0), (n, 1))}
