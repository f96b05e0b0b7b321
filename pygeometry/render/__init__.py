"""Rendered scenes with exact depth and pose: the ground truth the layers and networks are checked against.

Independent of pygeometry.kernels and pygeometry.layers on purpose (numpy ray casting + cv2 texture lookup,
cv2.Rodrigues for poses); imports neither caffe nor any other pygeometry module.

Public API:
    render_pair(seed, height=128, width=416, motion="handheld", supersample=2, ...) -> dict of a view pair
    render_sequence(seed, n_frames=24, ...) -> dict of a camera path through one scene (trajectories)
    render_triplet(seed, height=64, width=224, ...) -> dict of a target and the frames before and after it
        (depth learning), in a scene drawn by varied_scene(rng)
    render(scene, world_T_cam, K, height, width, supersample=1) -> image (3, H, W), depth (1, H, W)
    Rectangle, Scene, box, room_scene, corridor_scene: scene building
    sample_motion, pose_vector_from_matrix, matrix_from_pose_vector, MOTIONS: camera motion
    load_texture, TEXTURE_NAMES: textures
    default_K(height, width): fx = fy = 0.6 W, cx = (W - 1)/2, cy = (H - 1)/2
"""
from __future__ import annotations

import numpy as np

from ..poses import matrix_from_pose_vector, pose_vector_from_matrix
from .camera_motion import MOTIONS, sample_motion
from .scene import Rectangle, Scene, box, corridor_scene, render, room_scene
from .textures import TEXTURE_NAMES, load_texture


SCENES = ("room", "corridor")


def default_K(height, width):
    """Default intrinsics of a render.

    Convention: fx = fy = 0.6 W (a horizontal field of view of 2 atan(1 / 1.2) = 79.6 deg, about KITTI's
    81 deg at 128 x 416), principal point at the image centre ((W - 1)/2, (H - 1)/2) with pixel centres at
    integers. At 128 x 416: [249.6, 249.6, 207.5, 63.5].

    Args:
        height, width: image size H, W.

    Returns:
        K (4,) float64 [fx, fy, cx, cy].
    """
    f = 0.6 * width
    return np.array([f, f, (width - 1) / 2, (height - 1) / 2])


def render_pair(seed, height=128, width=416, motion="handheld", supersample=2, motion_scale=1.0,
                photometric_jitter=0.0, scene="room"):
    """A rendered source/target pair with exact ground-truth depth and pose, deterministic from seed.

    The target camera is placed near the origin of a closed scene looking along +z (so every target ray hits a
    surface); the source camera is world_T_src = world_T_tgt @ inv(src_T_tgt) with src_T_tgt from
    sample_motion(rng, motion, motion_scale). Both views are ray cast with render().

    Args:
        seed: int, the only source of randomness (scene, textures, camera pose, motion, jitter).
        height, width: image size H, W.
        motion: "driving", "handheld" or "mixed" (see sample_motion).
        supersample: anti-aliasing rays per pixel side (colour only; depth is exact at pixel centres).
        motion_scale: multiplies every motion magnitude.
        photometric_jitter: j > 0 makes the views differ as real cameras do: the source gets an exposure gain
            in [1 - j, 1 + j] and a colour cast of up to j/2 per channel, and both views get Gaussian noise of
            std j/10 (clipped to [0, 1]). The geometry (depth, pose) is unaffected.
        scene: "room" (6 x 3 x 16 m room with 4 boxes, the default) or "corridor" (3 x 2.6 x 40 m corridor
            with 8 boxes along the walls).

    Returns:
        dict with
            src, tgt: (3, H, W) float32 RGB in [0, 1];
            tgt_depth, src_depth: (1, H, W) float32 camera-frame z (m), 0 where no surface is hit;
            K: (4,) float32 [fx, fy, cx, cy] (default_K);
            src_T_tgt: (4, 4) float64, maps target-camera points into the source camera;
            xi_gt: (6,) float64 [tx, ty, tz, wx, wy, wz] with src_T_tgt = [[Rodrigues(w), t], [0, 1]];
            world_T_tgt: (4, 4) float64 target camera pose in the scene.
    """
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; known: {SCENES}")
    rng = np.random.default_rng(seed)
    if scene == "room":
        world = room_scene(rng)
        world_T_tgt = matrix_from_pose_vector(np.concatenate([
            [rng.uniform(-0.8, 0.8), rng.uniform(-0.3, 0.3), rng.uniform(-0.5, 1.0)],
            [rng.uniform(-0.05, 0.05), rng.uniform(-0.3, 0.3), rng.uniform(-0.03, 0.03)]]))
    else:
        world = corridor_scene(rng)
        world_T_tgt = matrix_from_pose_vector(np.concatenate([
            [rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.3), rng.uniform(-0.5, 1.0)],
            [rng.uniform(-0.05, 0.05), rng.uniform(-0.1, 0.1), rng.uniform(-0.03, 0.03)]]))
    K = default_K(height, width)
    src_T_tgt = sample_motion(rng, motion, motion_scale)
    world_T_src = world_T_tgt @ np.linalg.inv(src_T_tgt)
    tgt, tgt_depth = render(world, world_T_tgt, K, height, width, supersample)
    src, src_depth = render(world, world_T_src, K, height, width, supersample)
    if photometric_jitter > 0:
        j = photometric_jitter
        gain = rng.uniform(1 - j, 1 + j) * (1 + rng.uniform(-j / 2, j / 2, size=(3, 1, 1)))
        src = src * gain.astype(np.float32)
        src = src + rng.normal(scale=j / 10, size=src.shape).astype(np.float32)
        tgt = tgt + rng.normal(scale=j / 10, size=tgt.shape).astype(np.float32)
        src, tgt = np.clip(src, 0, 1), np.clip(tgt, 0, 1)
    return {"src": src, "tgt": tgt, "tgt_depth": tgt_depth, "src_depth": src_depth, "K": K.astype(np.float32),
            "src_T_tgt": src_T_tgt, "xi_gt": pose_vector_from_matrix(src_T_tgt), "world_T_tgt": world_T_tgt}


def _jittered(rng, image, j):
    """A real camera's view of a rendered image: exposure gain in [1 - j, 1 + j], a colour cast of up to j/2 per
    channel, Gaussian noise of std j/10, clipped to [0, 1] (j = 0: unchanged)."""
    if j <= 0:
        return image.astype(np.float32)
    gain = rng.uniform(1 - j, 1 + j) * (1 + rng.uniform(-j / 2, j / 2, size=(3, 1, 1)))
    return np.clip(image * gain.astype(np.float32) + rng.normal(scale=j / 10, size=image.shape).astype(np.float32),
                   0, 1).astype(np.float32)


def varied_scene(rng):
    """A scene and a target camera pose drawn so that no two samples share a layout (for depth learning, where a
    mean depth map of alike scenes would be a strong baseline): a room (half the time; width 3.5-10 m, height
    2.4-4 m, depth 10-30 m, 2-10 boxes) or a corridor (width 2.5-6 m, height 2.4-4 m, 40 m, 4-12 boxes), the
    camera anywhere across the width and from 0.6 m under the ceiling to 0.6 m above the floor, z in [-0.5, 1.5],
    yaw within 20 deg, pitch within 8 deg, roll within 2 deg.

    Returns:
        (Scene, world_T_tgt (4, 4) float64, kind "room" or "corridor").
    """
    deg = np.pi / 180
    kind = "room" if rng.uniform() < 0.5 else "corridor"
    height = rng.uniform(2.4, 4.0)
    if kind == "room":
        width = rng.uniform(3.5, 10.0)
        world = room_scene(rng, size=(width, height, rng.uniform(10.0, 30.0)), n_boxes=int(rng.integers(2, 11)))
    else:
        width = rng.uniform(2.5, 6.0)
        world = corridor_scene(rng, width=width, height=height, n_boxes=int(rng.integers(4, 13)))
    x = rng.uniform(-(width / 2 - 0.6), width / 2 - 0.6)
    y = rng.uniform(-(height / 2 - 0.6), height / 2 - 0.6)
    world_T_tgt = matrix_from_pose_vector([x, y, rng.uniform(-0.5, 1.5), rng.uniform(-8, 8) * deg,
                                           rng.uniform(-20, 20) * deg, rng.uniform(-2, 2) * deg])
    return world, world_T_tgt, kind


def render_triplet(seed, height=64, width=224, motion="driving", supersample=2, photometric_jitter=0.1,
                   static=False, motion_scale=1.0, stereo_baseline=0.0):
    """Three frames of a short clip through a varied scene (varied_scene): the target and the frames before and
    after it, with the target's exact depth and both relative poses; deterministic from seed.

    The previous frame is one motion step behind the target and the next one step ahead, each step drawn by
    sample_motion(rng, motion) (the later frame is the "source" there: next_T_tgt = step, prev_T_tgt =
    inv(step')). static=True keeps the camera still (both poses the identity; only the noise differs): the frames
    an auto-masking loss must ignore.

    Args:
        seed: int, the only source of randomness.
        height, width: image size H, W.
        motion: "driving", "handheld" or "mixed" (see sample_motion).
        supersample: anti-aliasing rays per pixel side.
        photometric_jitter: j, applied to each frame independently (see render_pair).
        static: no camera motion.
        motion_scale: multiplies every motion magnitude.
        stereo_baseline: b > 0 also renders the target's stereo partner, a camera b metres to its right (+x) with
            the same orientation and intrinsics (stereo_T_tgt = translation [-b, 0, 0]), as a calibrated rig.

    Returns:
        dict with src_prev, tgt, src_next (3, H, W) float32 RGB in [0, 1]; tgt_depth (1, H, W) float32 z (m);
        K (4,) float32 (default_K); prev_T_tgt, next_T_tgt (4, 4) float64 (target-camera points into that frame's
        camera); xi_prev, xi_next (6,) the same as pose vectors; scene "room" or "corridor"; with a stereo
        baseline also src_stereo (3, H, W) and stereo_T_tgt (4, 4).
    """
    rng = np.random.default_rng(seed)
    world, world_T_tgt, kind = varied_scene(rng)
    K = default_K(height, width)
    if static:
        next_T_tgt, prev_T_tgt = np.eye(4), np.eye(4)
    else:
        next_T_tgt = sample_motion(rng, motion, motion_scale)
        prev_T_tgt = np.linalg.inv(sample_motion(rng, motion, motion_scale))
    views = {}
    frames = [("src_prev", prev_T_tgt), ("tgt", np.eye(4)), ("src_next", next_T_tgt)]
    stereo_T_tgt = np.eye(4)
    if stereo_baseline > 0:
        stereo_T_tgt[0, 3] = -stereo_baseline
        frames.append(("src_stereo", stereo_T_tgt))
    for key, T in frames:
        image, depth = render(world, world_T_tgt @ np.linalg.inv(T), K, height, width, supersample)
        views[key] = _jittered(rng, image, photometric_jitter)
        if key == "tgt":
            views["tgt_depth"] = depth.astype(np.float32)
    out = dict(views, K=K.astype(np.float32), prev_T_tgt=prev_T_tgt, next_T_tgt=next_T_tgt,
               xi_prev=pose_vector_from_matrix(prev_T_tgt), xi_next=pose_vector_from_matrix(next_T_tgt), scene=kind)
    if stereo_baseline > 0:
        out["stereo_T_tgt"] = stereo_T_tgt
    return out


def render_snippet(seed, n_frames=5, height=64, width=224, motion="driving", supersample=2, photometric_jitter=0.1,
                   motion_scale=1.0):
    """n_frames consecutive frames of a short clip through a varied scene (varied_scene), each one motion step
    (sample_motion(rng, motion)) after the one before: the test snippets of SfMLearner's snippet ATE. The middle
    frame sits at the scene's drawn camera pose; deterministic from seed.

    Args:
        seed: int, the only source of randomness.
        n_frames: F >= 3 frames.
        height, width, supersample, photometric_jitter, motion, motion_scale: as render_triplet.

    Returns:
        dict with images (F, 3, H, W) float32 RGB in [0, 1]; depths (F, 1, H, W) float32 z (m); K (4,) float32;
        next_T_frame (F - 1, 4, 4) float64: step k maps frame k's camera points into frame k + 1's camera
        ((k+1)_T_k); scene "room" or "corridor". snippet_triplets() cuts it into triplets.
    """
    if n_frames < 3:
        raise ValueError(f"a snippet needs at least 3 frames, got {n_frames}")
    rng = np.random.default_rng(seed)
    world, world_T_mid, kind = varied_scene(rng)
    K = default_K(height, width)
    steps = np.stack([sample_motion(rng, motion, motion_scale) for _ in range(n_frames - 1)])
    first_T_frame = [np.eye(4)]
    for step in steps:
        first_T_frame.append(first_T_frame[-1] @ np.linalg.inv(step))
    world_T_first = world_T_mid @ np.linalg.inv(first_T_frame[n_frames // 2])
    images, depths = [], []
    for first_T_k in first_T_frame:
        image, depth = render(world, world_T_first @ first_T_k, K, height, width, supersample)
        images.append(_jittered(rng, image, photometric_jitter))
        depths.append(depth.astype(np.float32))
    return dict(images=np.stack(images), depths=np.stack(depths), K=K.astype(np.float32), next_T_frame=steps,
                scene=kind)


def snippet_triplets(snippet):
    """The triplets (render_triplet's keys, without stereo) of a render_snippet with frames 1 .. F-2 as targets, in
    order: prev_T_tgt = inv(next_T_frame[k - 1]), next_T_tgt = next_T_frame[k]."""
    images, steps = snippet["images"], snippet["next_T_frame"]
    out = []
    for k in range(1, len(images) - 1):
        prev_T_tgt, next_T_tgt = np.linalg.inv(steps[k - 1]), steps[k]
        out.append(dict(src_prev=images[k - 1], tgt=images[k], src_next=images[k + 1],
                        tgt_depth=snippet["depths"][k], K=snippet["K"], prev_T_tgt=prev_T_tgt, next_T_tgt=next_T_tgt,
                        xi_prev=pose_vector_from_matrix(prev_T_tgt), xi_next=pose_vector_from_matrix(next_T_tgt)))
    return out


def render_sequence(seed, n_frames=24, height=64, width=208, supersample=2, photometric_jitter=0.0, scene="corridor"):
    """A rendered camera path through one scene: frames with exact depth and poses, for trajectory evaluation.

    The camera drives forward along +z (KITTI-like, as sample_motion's "driving"): each step moves 0.3..1.0 m
    forward with up to 5 cm sideways and vertical motion, the heading follows a 4 deg sine with a period of
    max(n_frames, 24) frames (so the path curves and comes back, staying inside the corridor; a step turns by at
    most 1.05 deg) plus heading noise within 0.5 deg, and pitch and roll noise within 0.5 deg per step. Relative motion between consecutive frames is thus within the "driving"
    ranges. Frame k is ray cast once with render().

    Args:
        seed: int, the only source of randomness (scene, path, jitter).
        n_frames: number of frames (>= 2).
        height, width, supersample: as render_pair.
        photometric_jitter: as render_pair, applied per frame (exposure gain, colour cast, noise).
        scene: "corridor" (default: 40 m long, room for ~40 steps) or "room" (16 m deep: keep n_frames <= 12).

    Returns:
        dict with images (n, 3, H, W) float32 RGB in [0, 1]; depths (n, 1, H, W) float32 z (m); world_T_cam
        (n, 4, 4) float64 camera poses (camera-to-world, OpenCV camera axes); K (4,) float32 (default_K).
        Pair (target k, source k + 1) has src_T_tgt = inv(world_T_cam[k + 1]) @ world_T_cam[k].
    """
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; known: {SCENES}")
    if int(n_frames) < 2:
        raise ValueError(f"n_frames must be >= 2, got {n_frames}")
    rng = np.random.default_rng(seed)
    world = room_scene(rng) if scene == "room" else corridor_scene(rng)
    deg = np.pi / 180
    heading = 4 * deg * np.sin(2 * np.pi * np.arange(n_frames) / max(n_frames, 24)) + rng.uniform(-0.5, 0.5, n_frames) * deg
    world_T_cam = [matrix_from_pose_vector([0.0, 0.1, -1.0, 0.0, heading[0], 0.0])]
    for k in range(1, n_frames):
        # the previous camera's pose of this one: forward (+z), small side/up motion, yaw to the new heading
        step = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), rng.uniform(0.3, 1.0),
                         rng.uniform(-0.5, 0.5) * deg, heading[k] - heading[k - 1], rng.uniform(-0.5, 0.5) * deg])
        world_T_cam.append(world_T_cam[-1] @ matrix_from_pose_vector(step))
    world_T_cam = np.stack(world_T_cam)
    K = default_K(height, width)
    images, depths = [], []
    for T in world_T_cam:
        image, depth = render(world, T, K, height, width, supersample)
        if photometric_jitter > 0:
            j = photometric_jitter
            gain = rng.uniform(1 - j, 1 + j) * (1 + rng.uniform(-j / 2, j / 2, size=(3, 1, 1)))
            image = np.clip(image * gain.astype(np.float32)
                            + rng.normal(scale=j / 10, size=image.shape).astype(np.float32), 0, 1)
        images.append(image.astype(np.float32))
        depths.append(depth)
    return {"images": np.stack(images), "depths": np.stack(depths), "world_T_cam": world_T_cam,
            "K": K.astype(np.float32)}


__all__ = ["MOTIONS", "Rectangle", "SCENES", "Scene", "TEXTURE_NAMES", "box", "corridor_scene", "default_K",
           "load_texture", "matrix_from_pose_vector", "pose_vector_from_matrix", "render", "render_pair",
           "render_sequence", "render_snippet", "render_triplet", "room_scene", "sample_motion", "snippet_triplets",
           "varied_scene"]
