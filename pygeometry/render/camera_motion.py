"""Camera motion distributions (pose-vector conversions: pygeometry.poses, independent of pygeometry.kernels).

Convention: src_T_tgt maps target-camera points into the source camera; xi = [tx, ty, tz, wx, wy, wz] with
src_T_tgt = [[Rodrigues(w), t], [0, 0, 0, 1]]. The source frame is the LATER frame (as in the converters:
target frame i, source frame i + gap), so forward driving gives tz < 0 in src_T_tgt.
"""
from __future__ import annotations

import numpy as np

from ..poses import matrix_from_pose_vector

MOTIONS = ("driving", "handheld", "mixed")


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
