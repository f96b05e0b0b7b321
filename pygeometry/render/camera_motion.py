"""Camera motion distributions and pose-vector conversions (cv2.Rodrigues, independent of pygeometry.kernels).

Convention: src_T_tgt maps target-camera points into the source camera; xi = [tx, ty, tz, wx, wy, wz] with
src_T_tgt = [[Rodrigues(w), t], [0, 0, 0, 1]]. The source frame is the LATER frame (as in the converters:
target frame i, source frame i + gap), so forward driving gives tz < 0 in src_T_tgt.
"""
from __future__ import annotations

import cv2
import numpy as np

MOTIONS = ("driving", "handheld", "mixed")


def matrix_from_pose_vector(xi) -> np.ndarray:
    """Pose vector to transform.

    Args:
        xi: (6,) [tx, ty, tz, wx, wy, wz]: translation (m), then rotation as an axis-angle vector (rad).

    Returns:
        (4, 4) float64 [[R, t], [0, 0, 0, 1]] with R = Rodrigues(w) (cv2.Rodrigues) and t = xi[:3] directly.
    """
    xi = np.asarray(xi, np.float64).reshape(6)
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(xi[3:])[0]
    T[:3, 3] = xi[:3]
    return T


def pose_vector_from_matrix(T) -> np.ndarray:
    """Transform to pose vector, the inverse of matrix_from_pose_vector (rotation angle in [0, pi]).

    Args:
        T: (4, 4) rigid transform [[R, t], [0, 0, 0, 1]].

    Returns:
        xi (6,) float64 [tx, ty, tz, wx, wy, wz] with w = Rodrigues^-1(R) (cv2.Rodrigues).
    """
    T = np.asarray(T, np.float64)
    return np.concatenate([T[:3, 3], cv2.Rodrigues(T[:3, :3])[0].ravel()])


def sample_motion(rng, kind="handheld", scale=1.0) -> np.ndarray:
    """A random relative pose src_T_tgt (4, 4) float64, maps target-camera points into the source camera.

    Every component is drawn independently and uniformly within its bound (times scale):

    driving:  forward motion of 0.3..1.0 m (source ahead: tz in [-1.0, -0.3]), lateral/vertical within 5 cm,
              yaw within 3 deg, pitch and roll within 0.5 deg (like KITTI at 10 Hz).
    handheld: 6-DoF, each translation within 0.15 m, each rotation component within 5 deg (like TUM).
    mixed:    either, with equal probability.
    scale multiplies every magnitude.

    Args:
        rng: numpy Generator (or an int seed); the result is a deterministic function of it.
        kind: one of MOTIONS.
        scale: float, multiplies every translation and rotation component.

    Returns:
        (4, 4) float64 src_T_tgt = matrix_from_pose_vector(xi).
    """
    rng = np.random.default_rng(rng)
    if kind not in MOTIONS:
        raise ValueError(f"unknown motion {kind!r}; known: {MOTIONS}")
    if kind == "mixed":
        kind = MOTIONS[rng.integers(2)]
    deg = np.pi / 180
    if kind == "driving":
        t = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), -rng.uniform(0.3, 1.0)])
        w = np.array([rng.uniform(-0.5, 0.5) * deg, rng.uniform(-3, 3) * deg, rng.uniform(-0.5, 0.5) * deg])
    else:
        t = rng.uniform(-0.15, 0.15, size=3)
        w = rng.uniform(-5, 5, size=3) * deg
    return matrix_from_pose_vector(np.concatenate([t, w]) * scale)
