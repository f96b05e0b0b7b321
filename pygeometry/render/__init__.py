"""Rendered scenes with exact depth and pose: the ground truth the layers and networks are checked against.

Independent of pygeometry.kernels and pygeometry.layers on purpose (ray casting + cv2 texture lookup).
"""
from __future__ import annotations

import numpy as np

from .camera_motion import MOTIONS, matrix_from_pose_vector, pose_vector_from_matrix, sample_motion
from .scene import Rectangle, Scene, box, render, room_scene
from .textures import TEXTURE_NAMES, load_texture


def default_K(height, width):
    """Intrinsics [fx, fy, cx, cy] for a render: fx = fy = 0.6 W (about 80 deg horizontal field of view at
    128x416, KITTI-like), principal point at the image centre ((W - 1)/2, (H - 1)/2)."""
    f = 0.6 * width
    return np.array([f, f, (width - 1) / 2, (height - 1) / 2])


def render_pair(seed, height=128, width=416, motion="handheld", supersample=2, motion_scale=1.0,
                photometric_jitter=0.0):
    """A rendered source/target pair with exact ground truth, deterministic from seed.

    photometric_jitter j > 0 makes the views differ as real cameras do: the source gets an exposure gain in
    [1 - j, 1 + j] and a colour cast of up to j/2 per channel, and both views get Gaussian noise of std j/10
    (clipped to [0, 1]). The geometry (depth, pose) is unaffected.

    Returns a dict: src, tgt (3, H, W) float32 RGB in [0, 1]; tgt_depth, src_depth (1, H, W) float32 (z, m);
    K (4,) float32; src_T_tgt (4, 4) float64; xi_gt (6,) float64 ([t, axis-angle w]); world_T_tgt (4, 4).
    """
    rng = np.random.default_rng(seed)
    scene = room_scene(rng)
    K = default_K(height, width)
    world_T_tgt = matrix_from_pose_vector(np.concatenate([
        [rng.uniform(-0.8, 0.8), rng.uniform(-0.3, 0.3), rng.uniform(-0.5, 1.0)],
        [rng.uniform(-0.05, 0.05), rng.uniform(-0.3, 0.3), rng.uniform(-0.03, 0.03)]]))
    src_T_tgt = sample_motion(rng, motion, motion_scale)
    world_T_src = world_T_tgt @ np.linalg.inv(src_T_tgt)
    tgt, tgt_depth = render(scene, world_T_tgt, K, height, width, supersample)
    src, src_depth = render(scene, world_T_src, K, height, width, supersample)
    if photometric_jitter > 0:
        j = photometric_jitter
        gain = rng.uniform(1 - j, 1 + j) * (1 + rng.uniform(-j / 2, j / 2, size=(3, 1, 1)))
        src = src * gain.astype(np.float32)
        src = src + rng.normal(scale=j / 10, size=src.shape).astype(np.float32)
        tgt = tgt + rng.normal(scale=j / 10, size=tgt.shape).astype(np.float32)
        src, tgt = np.clip(src, 0, 1), np.clip(tgt, 0, 1)
    return {"src": src, "tgt": tgt, "tgt_depth": tgt_depth, "src_depth": src_depth, "K": K.astype(np.float32),
            "src_T_tgt": src_T_tgt, "xi_gt": pose_vector_from_matrix(src_T_tgt), "world_T_tgt": world_T_tgt}


__all__ = ["MOTIONS", "Rectangle", "Scene", "TEXTURE_NAMES", "box", "default_K", "load_texture",
           "matrix_from_pose_vector", "pose_vector_from_matrix", "render", "render_pair", "room_scene",
           "sample_motion"]
