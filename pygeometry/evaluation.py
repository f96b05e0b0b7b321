"""Pose metrics, photometric error of a warp, trivial baselines, split loading and trajectories (no caffe import).

Convention: poses are src_T_tgt (maps target-camera points into the source camera); a prediction xi (N, 6) =
[t, w] is turned into a transform with the same exponential map as SE3Generator ("direct" translation).
Per-pair errors of a predicted transform [[R_p, t_p], [0, 1]] against the ground truth [[R_g, t_g], [0, 1]]:

    translation_m        |t_p - t_g| in metres
    translation_pct      100 |t_p - t_g| / max(|t_g|, MIN_MOTION_M): the error as a percentage of the motion.
                         The floor MIN_MOTION_M (1 mm) keeps it finite when the true motion is ~0 (never inf).
    translation_dir_deg  angle between t_p and t_g in degrees (in [0, 180]), atan2(|t_p x t_g|, t_p . t_g).
                         The direction of a vector shorter than MIN_MOTION_M is undefined; then the error is
                         0 when both are shorter (no motion predicted for no motion), and 90 degrees when only
                         one is (the mean angle between a fixed and a random direction), never NaN.
    translation_scaled_m |s t_p - t_g| with the best non-negative scale per pair, s = max(0, t_p . t_g) / |t_p|^2
                         (s = 0 when |t_p| < MIN_MOTION_M): what the prediction gets wrong apart from the length
                         of the motion, in metres (the direction's error weighted by the motion's length; a mean
                         pose that knows the typical length but not the direction gains nothing from the scale).
    rotation_deg         geodesic angle of R_g^T R_p in degrees (in [0, 180]), atan2(sin, cos) form, accurate
                         at 0 and at 180 degrees.

Trajectories: a chain of pairs (target = frame i, source = frame i + 1, as the converters write them) gives the
camera poses world_T_cam[i + 1] = world_T_cam[i] @ inv(src_T_tgt[i]) with world_T_cam[0] = I. ATE and RPE are
computed with evo (https://github.com/MichaelGrupp/evo): ATE is the APE of the translation part after aligning
the estimate to the ground truth (Umeyama: SE(3), or Sim(3) with scale), RPE the relative pose error between
consecutive frames (no alignment needed). The alignment used is stated in every result.

Sequence information in a split (optional HDF5 datasets beside the required keys, one value per pair):
    tgt_frame, src_frame  (N,)  frame numbers of the target and source image within their sequence
    sequence              (N,)  numeric sequence id (pairs of different ids never chain; default: all 0)
    tgt_time, src_time    (N,)  timestamps in seconds (float64; default: the frame numbers)
Without tgt_frame/src_frame the pairs of a split are independent and no trajectory is made.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .data.hdf5 import SEQUENCE_KEYS, SplitError, split_files
from .files import atomic_output
from .poses import inverse_rigid
from .kernels.bilinear import bilinear_forward
from .kernels.projection import projection_forward
from .kernels.se3 import se3_forward
from .kernels.transform_grid import transform_grid_forward

MIN_MOTION_M = 1e-3
REQUIRED_KEYS = ("src", "tgt", "tgt_depth", "K", "src_T_tgt")
METRICS = ("translation_m", "translation_pct", "translation_dir_deg", "translation_scaled_m", "rotation_deg")


# ----------------------------------------------------------------------------------------------- pose metrics

def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Geodesic angle of rotation matrices (..., 3, 3) in degrees, in [0, 180], robust at 0 and 180 degrees.

    angle = atan2(|vee(R - R^T)| / 2, (trace(R) - 1) / 2): both arguments are well conditioned where arccos of
    the trace alone loses half the digits (near 0 and near 180 degrees).
    """
    R = np.asarray(R, dtype=np.float64)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1) / 2
    axial = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = np.linalg.norm(axial, axis=-1) / 2
    return np.degrees(np.arctan2(sin, np.clip(cos, -1.0, 1.0)))


def angle_between_deg(a: np.ndarray, b: np.ndarray, min_norm: float = MIN_MOTION_M) -> np.ndarray:
    """Angle between vectors a and b (..., 3) in degrees, in [0, 180]; see the module docstring for |v| ~ 0.

    Returns 0 where both are shorter than min_norm, 90 where exactly one is, atan2(|a x b|, a . b) otherwise.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ang = np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, axis=-1)))
    short_a = np.linalg.norm(a, axis=-1) < min_norm
    short_b = np.linalg.norm(b, axis=-1) < min_norm
    return np.where(short_a & short_b, 0.0, np.where(short_a | short_b, 90.0, ang))


def transform_errors(T_pred: np.ndarray, T_gt: np.ndarray) -> dict:
    """Per-pair errors of predicted transforms (N, 4, 4) against ground-truth transforms (N, 4, 4).

    Returns:
        dict of float64 arrays (N,): translation_m, translation_pct, translation_dir_deg, translation_scaled_m,
        rotation_deg (see the module docstring for the definitions and the |t| ~ 0 conventions).
    """
    P = np.asarray(T_pred, np.float64).reshape(-1, 4, 4)
    G = np.asarray(T_gt, np.float64).reshape(-1, 4, 4)
    if P.shape != G.shape:
        raise ValueError(f"{P.shape[0]} predicted poses but {G.shape[0]} ground-truth poses")
    t_p, t_g = P[:, :3, 3], G[:, :3, 3]
    err = np.linalg.norm(t_p - t_g, axis=1)
    length_sq = np.sum(t_p * t_p, axis=1)
    moving = length_sq >= MIN_MOTION_M ** 2
    scale = np.where(moving, np.maximum(np.sum(t_p * t_g, axis=1), 0.0) / np.where(moving, length_sq, 1.0), 0.0)
    return {"translation_m": err,
            "translation_pct": 100.0 * err / np.maximum(np.linalg.norm(t_g, axis=1), MIN_MOTION_M),
            "translation_dir_deg": angle_between_deg(t_p, t_g),
            "translation_scaled_m": np.linalg.norm(scale[:, None] * t_p - t_g, axis=1),
            "rotation_deg": rotation_angle_deg(np.swapaxes(G[:, :3, :3], 1, 2) @ P[:, :3, :3])}


def pose_metrics(xi_pred: np.ndarray, src_T_tgt_gt: np.ndarray, translation: str = "direct") -> dict:
    """All per-pair metrics of predicted pose vectors (N, 6) against ground-truth transforms (N, 4, 4)."""
    return transform_errors(se3_forward(np.asarray(xi_pred, np.float64).reshape(-1, 6), translation), src_T_tgt_gt)


def pose_errors(xi_pred: np.ndarray, src_T_tgt_gt: np.ndarray, translation: str = "direct"):
    """Per-pair errors of predicted pose vectors (N, 6) against ground-truth transforms (N, 4, 4).

    Returns:
        dict of arrays (N,): translation_m, rotation_deg (pose_metrics gives every metric).
    """
    e = pose_metrics(xi_pred, src_T_tgt_gt, translation)
    return {"translation_m": e["translation_m"], "rotation_deg": e["rotation_deg"]}


def summarize(errors: dict) -> dict:
    """Mean and median of each error array."""
    return {k: {"mean": float(np.mean(v)), "median": float(np.median(v))} for k, v in errors.items()}


def baseline_predictions(xi_train: np.ndarray, n: int) -> dict:
    """The trivial baselines for n test pairs: identity pose, and the mean training pose vector."""
    return {"identity": np.zeros((n, 6)), "mean training pose": np.tile(np.mean(xi_train, axis=0), (n, 1))}


# ------------------------------------------------------------------------------------------ photometric error

def warp_source(src, tgt_depth, K, src_T_tgt, padding="border"):
    """The source image warped into the target view with the kernels (SE3 -> grid -> projection -> bilinear).

    Args:
        src: (N, C, H, W) source images; tgt_depth: (N, 1, H, W); K: (4,) or (N, 4); src_T_tgt: (N, 4, 4).
        padding: "border" (as the photometric networks) or "zeros".

    Returns:
        (warped (N, C, H, W), inside (N, 1, H, W): 1 where the target pixel has depth > 0, projects in front of
        the source camera and inside the source image), dtype of src.
    """
    src = np.asarray(src)
    depth = np.asarray(tgt_depth, src.dtype)
    points = transform_grid_forward(depth, np.asarray(src_T_tgt, src.dtype), K)
    coords, proj_valid = projection_forward(points, K)
    warped, warp_valid = bilinear_forward(src, coords, padding=padding)
    return warped, proj_valid * warp_valid * (depth > 0)


def photometric_errors(src, tgt, tgt_depth, K, src_T_tgt, padding="border", chunk=16) -> np.ndarray:
    """Per-pair photometric error of the warp with a pose: mean |warped - tgt| over channels and pixels with
    target depth > 0 (border padding, so pixels that leave the source image still count, as in training).

    Args:
        src, tgt: (N, C, H, W); tgt_depth: (N, 1, H, W); K: (N, 4) or (4,); src_T_tgt: (N, 4, 4).

    Returns:
        (N,) float64; 0 for a pair without any pixel of known depth (as PhotometricLoss).
    """
    n = len(src)
    K = np.broadcast_to(np.asarray(K, np.float64).reshape(-1, 4), (n, 4))
    T = np.asarray(src_T_tgt, np.float64).reshape(n, 4, 4)
    out = np.zeros(n)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        s = np.asarray(src[a:b], np.float32)
        d = np.asarray(tgt_depth[a:b], np.float32)
        warped, _ = warp_source(s, d, K[a:b], T[a:b], padding)
        m = (d > 0).astype(np.float64)
        e = np.abs(warped - np.asarray(tgt[a:b], np.float32)).mean(axis=1, keepdims=True, dtype=np.float64)
        count = m.sum(axis=(1, 2, 3))
        out[a:b] = np.where(count > 0, (m * e).sum(axis=(1, 2, 3)) / np.maximum(count, 1), 0.0)
    return out


# --------------------------------------------------------------------------------------------- split loading

def load_split(split, keys=REQUIRED_KEYS, optional=SEQUENCE_KEYS) -> dict:
    """Load a split into memory.

    Args:
        split: a list file or an .h5 file (project format, pygeometry/data/hdf5.py).
        keys: datasets that must exist in every file (SplitError names the file and the missing keys).
        optional: datasets loaded when every file has them (sequence information).

    Returns:
        dict: each key -> concatenated array (float32 images, float64 poses and K), plus "file" (N,) str and
        "row" (N,) int: where each pair comes from.
    """
    import h5py

    files = split_files(split)
    parts = {k: [] for k in list(keys) + list(optional) + ["file", "row"]}
    have_optional = set(optional)
    shapes = {"src": 3, "tgt": 3, "tgt_depth": 1}
    hw = None
    for path in files:
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise SplitError(f"{path}: cannot open as HDF5 ({exc})") from None
        with f:
            missing = [k for k in keys if k not in f]
            if missing:
                raise SplitError(f"{path}: missing dataset(s) {missing} (a split needs {list(keys)}; "
                                 f"found {sorted(f.keys())})")
            n = f[keys[0]].shape[0]
            for k in keys:
                a = f[k]
                if a.shape[0] != n:
                    raise SplitError(f"{path}: '{k}' has {a.shape[0]} pairs but '{keys[0]}' has {n}")
                if k in shapes and (a.ndim != 4 or a.shape[1] != shapes[k]):
                    raise SplitError(f"{path}: '{k}' must be (N, {shapes[k]}, H, W), got {a.shape}")
                if k in shapes:
                    if hw is None:
                        hw = a.shape[2:]
                    elif a.shape[2:] != hw:
                        raise SplitError(f"{path}: '{k}' is {a.shape[2]}x{a.shape[3]} but the split's images are "
                                         f"{hw[0]}x{hw[1]}")
                if k == "K" and a.shape[1:] != (4,):
                    raise SplitError(f"{path}: 'K' must be (N, 4) [fx, fy, cx, cy], got {a.shape}")
                if k == "src_T_tgt" and a.shape[1:] != (4, 4):
                    raise SplitError(f"{path}: 'src_T_tgt' must be (N, 4, 4), got {a.shape}")
                parts[k].append(a[...])
            for k in optional:
                if k in f and f[k].shape[:1] == (n,):
                    a = np.asarray(f[k][...])
                    parts[k].append(a.reshape(n) if a.size == n else a)
                else:
                    have_optional.discard(k)
            parts["file"].append(np.array([str(path)] * n))
            parts["row"].append(np.arange(n))
    out = {}
    for k, v in parts.items():
        if k in optional and k not in have_optional:
            continue
        a = np.concatenate(v)
        if k in ("src", "tgt", "tgt_depth"):
            a = a.astype(np.float32, copy=False)
        elif k in ("K", "src_T_tgt", "xi_gt") or k in ("tgt_time", "src_time"):
            a = a.astype(np.float64)
        out[k] = a
    for k in ("src", "tgt", "tgt_depth", "K", "src_T_tgt"):
        if k in out and not np.all(np.isfinite(out[k])):
            raise SplitError(f"{split}: '{k}' contains NaN or inf")
    return out


# ---------------------------------------------------------------------------------------------- trajectories

def chain_poses(src_T_tgt: np.ndarray, world_T_first=None) -> np.ndarray:
    """Camera poses of a chain of pairs (target = frame i, source = frame i + 1).

    world_T_cam[0] = world_T_first (default I), world_T_cam[i + 1] = world_T_cam[i] @ inv(src_T_tgt[i]).

    Args:
        src_T_tgt: (M, 4, 4) relative poses of consecutive pairs.

    Returns:
        (M + 1, 4, 4) float64 world_T_cam.
    """
    rel = np.asarray(src_T_tgt, np.float64).reshape(-1, 4, 4)
    poses = np.empty((len(rel) + 1, 4, 4))
    poses[0] = np.eye(4) if world_T_first is None else world_T_first
    for i, T in enumerate(inverse_rigid(rel)):
        poses[i + 1] = poses[i] @ T
    return poses


def find_chains(data: dict, min_pairs: int = 2) -> list[np.ndarray]:
    """Chains of pairs in a loaded split: pair b follows pair a when both are in the same sequence and
    src_frame[a] == tgt_frame[b]. Each pair is used at most once; chains are followed from their first pair
    (lowest target frame) on. Returns index arrays (into the split) of the chains with >= min_pairs pairs;
    [] without sequence information.
    """
    if "tgt_frame" not in data or "src_frame" not in data:
        return []
    tgt = np.asarray(data["tgt_frame"]).astype(np.int64)
    src = np.asarray(data["src_frame"]).astype(np.int64)
    seq = np.asarray(data.get("sequence", np.zeros(len(tgt)))).astype(np.int64)
    by_tgt = {}
    for i in range(len(tgt)):
        by_tgt.setdefault((seq[i], tgt[i]), i)
    used = np.zeros(len(tgt), bool)
    chains = []
    for i in np.lexsort((tgt, seq)):
        if used[i]:
            continue
        chain = [i]
        used[i] = True
        nxt = by_tgt.get((seq[i], src[i]))
        while nxt is not None and not used[nxt]:
            chain.append(nxt)
            used[nxt] = True
            nxt = by_tgt.get((seq[nxt], src[nxt]))
        if len(chain) >= min_pairs:
            chains.append(np.array(chain))
    return chains


def _evo_trajectory(world_T_cam, stamps):
    from evo.core.trajectory import PoseTrajectory3D

    return PoseTrajectory3D(poses_se3=[np.asarray(T, np.float64) for T in world_T_cam],
                            timestamps=np.asarray(stamps, np.float64))


def trajectory_errors(gt_poses, pred_poses, stamps=None, alignment=("se3", "sim3"), rpe_delta=1) -> dict:
    """ATE and RPE of an estimated trajectory against the ground truth, with evo.

    Args:
        gt_poses, pred_poses: (F, 4, 4) world_T_cam of the same F frames (any world frames: the ATE aligns them).
        stamps: (F,) timestamps in seconds (default 0, 1, ...); the trajectories are associated by timestamp
            (evo.core.sync.associate_trajectories).
        alignment: the ATE alignments to compute, any of "se3" (Umeyama rotation + translation), "sim3" (with
            scale), "none". Where Umeyama is impossible (collinear or static positions, e.g. the identity baseline
            or an exactly straight drive) the ATE is computed unaligned and its "alignment" entry says so.
        rpe_delta: RPE between frames i and i + rpe_delta.

    Returns:
        {"ate_<alignment>": {rmse, mean, median, std, min, max, sse (evo's statistics, metres), alignment (in
        words), scale}, "rpe_trans_m": {...}, "rpe_rot_deg": {...}}.
    """
    from evo.core import metrics, sync
    from evo.core.geometry import GeometryException

    gt = np.asarray(gt_poses, np.float64)
    pred = np.asarray(pred_poses, np.float64)
    if gt.shape != pred.shape or gt.ndim != 3 or gt.shape[1:] != (4, 4):
        raise ValueError(f"trajectories must both be (F, 4, 4), got {gt.shape} and {pred.shape}")
    if len(gt) < 3:
        raise ValueError(f"a trajectory needs at least 3 frames, got {len(gt)}")
    stamps = np.arange(len(gt), dtype=np.float64) if stamps is None else np.asarray(stamps, np.float64)
    ref, est = sync.associate_trajectories(_evo_trajectory(gt, stamps), _evo_trajectory(pred, stamps))
    out = {}
    names = (alignment,) if isinstance(alignment, str) else tuple(alignment)
    for name in names:
        if name not in ("se3", "sim3", "none"):
            raise ValueError(f"alignment must be se3, sim3 or none, got {name!r}")
        aligned = _evo_trajectory(est.poses_se3, est.timestamps)
        scale = 1.0
        words = {"se3": "SE(3) Umeyama", "sim3": "Sim(3) Umeyama (with scale)", "none": "none"}[name]
        if name != "none":
            try:
                _, _, scale = aligned.align(ref, correct_scale=name == "sim3")
            except GeometryException:
                # Umeyama needs positions spanning at least a plane (a static or straight-line trajectory does
                # not); the error is then reported unaligned, and says so.
                aligned = _evo_trajectory(est.poses_se3, est.timestamps)
                words = f"none: {words} impossible (degenerate, collinear or static positions); unaligned"
        ape = metrics.APE(metrics.PoseRelation.translation_part)
        ape.process_data((ref, aligned))
        stats = {k: float(v) for k, v in ape.get_all_statistics().items()}
        stats.update(alignment=words, scale=float(scale))
        out[f"ate_{name}"] = stats
    for key, relation, unit in (("rpe_trans_m", metrics.PoseRelation.translation_part, "m"),
                                ("rpe_rot_deg", metrics.PoseRelation.rotation_angle_deg, "deg")):
        rpe = metrics.RPE(relation, delta=rpe_delta, delta_unit=metrics.Unit.frames, all_pairs=False)
        rpe.process_data((ref, est))
        out[key] = {k: float(v) for k, v in rpe.get_all_statistics().items()}
        out[key].update(delta_frames=rpe_delta, unit=unit, alignment="none (relative poses)")
    return out


def trajectory_metrics(rel_gt, rel_pred, stamps=None, alignment=("se3", "sim3"), rpe_delta=1) -> dict:
    """Trajectories from the relative poses of a chain, and their ATE/RPE (trajectory_errors, with evo).

    For a rendered or converted sequence: rel_gt, rel_pred (M, 4, 4) are src_T_tgt of consecutive pairs (target =
    frame i, source = frame i + 1), e.g. the ground truth and se3_forward of the network's xi.

    Args:
        rel_gt, rel_pred: (M, 4, 4) relative poses, M >= 2.
        stamps: (M + 1,) timestamps of the frames (default 0, 1, ...).
        alignment, rpe_delta: see trajectory_errors.

    Returns:
        dict with "gt" and "pred": (M + 1, 4, 4) world_T_cam (both start at I; pred unaligned), "stamps", and
        "metrics": trajectory_errors(...).
    """
    rel_gt = np.asarray(rel_gt, np.float64).reshape(-1, 4, 4)
    rel_pred = np.asarray(rel_pred, np.float64).reshape(-1, 4, 4)
    if len(rel_gt) != len(rel_pred):
        raise ValueError(f"{len(rel_gt)} ground-truth but {len(rel_pred)} predicted relative poses")
    gt, pred = chain_poses(rel_gt), chain_poses(rel_pred)
    stamps = np.arange(len(gt), dtype=np.float64) if stamps is None else np.asarray(stamps, np.float64)
    return {"gt": gt, "pred": pred, "stamps": stamps,
            "metrics": trajectory_errors(gt, pred, stamps, alignment, rpe_delta)}


def write_trajectory_files(prefix, world_T_cam, stamps) -> dict:
    """Write <prefix>.tum.txt (TUM: "timestamp tx ty tz qx qy qz qw") and <prefix>.kitti.txt (KITTI: 12
    numbers of the row-major 3x4 world_T_cam per line) with evo's writers, each atomically. Returns the paths."""
    from evo.tools import file_interface

    prefix = Path(prefix)
    traj = _evo_trajectory(world_T_cam, stamps)
    paths = {"tum": prefix.with_name(prefix.name + ".tum.txt"), "kitti": prefix.with_name(prefix.name + ".kitti.txt")}
    with atomic_output(paths["tum"]) as tmp:
        file_interface.write_tum_trajectory_file(str(tmp), traj)
    with atomic_output(paths["kitti"]) as tmp:
        file_interface.write_kitti_poses_file(str(tmp), traj)
    return paths
