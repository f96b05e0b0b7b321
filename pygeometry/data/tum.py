"""TUM RGB-D -> the project's HDF5 format (see :mod:`pygeometry.data.hdf5`).

On-disk layout of one sequence folder (as distributed, e.g. ``rgbd_dataset_freiburg1_xyz/``)::

    rgb.txt           "timestamp filename" per line, '#' starts a comment line
    depth.txt         same, for the depth images
    groundtruth.txt   "timestamp tx ty tz qx qy qz qw": world_T_cam of the colour camera, Hamilton quaternion
    rgb/<ts>.png      8-bit colour, 640 x 480
    depth/<ts>.png    16-bit, registered to the colour camera; depth (z, metres) = value / 5000, 0 = missing

Association (as TUM's ``associate.py``): every rgb frame is matched to a depth image and to a ground-truth pose
by nearest timestamp, greedily one to one in order of increasing time difference, accepting only differences
``< max_difference`` (default 0.02 s). Frames without both matches are dropped.

Pairs are taken over the associated frames in time order: target = frame i, source = frame i + gap, and
``src_T_tgt = inv(world_T_cam[i + gap]) @ world_T_cam[i]``. The camera frame is TUM's optical frame (x right,
y down, z forward, as OpenCV). The target depth is the depth PNG / depth_scale resized with nearest neighbour
(0 stays 0, nothing is interpolated); the images are resized with the pixel-centre rule and K scaled with it.
Images are not undistorted (Freiburg 1/2 have small lens distortion, Freiburg 3 images are undistorted).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..poses import pose_vector_from_matrix
from .convert_common import (DatasetFormatError, check_options, frame_pairs, frame_triplets, load_rgb, parse_floats,
                             relative_pose, triplet_from_pairs,
                             require_file, resize_depth_nearest, resize_image, rigid_from_rt, scale_intrinsics,
                             sequence_info, to_chw, where, write_split)

DEFAULT_HEIGHT, DEFAULT_WIDTH = 240, 320
NATIVE_HW = (480, 640)
DEPTH_SCALE = 5000.0
MAX_DIFFERENCE = 0.02
#: Published intrinsics of the TUM RGB-D colour cameras at 640 x 480 (``[fx, fy, cx, cy]``).
INTRINSICS = {
    "fr1": (517.3, 516.5, 318.6, 255.3),
    "fr2": (520.9, 521.0, 325.1, 249.7),
    "fr3": (535.4, 539.2, 320.1, 247.6),
}


def parse_intrinsics(spec: str, sequence_dir=None) -> tuple[np.ndarray, bool]:
    """Intrinsics from ``"fr1" | "fr2" | "fr3" | "fx,fy,cx,cy" | "auto"``.

    ``"auto"`` takes the camera from a ``freiburgN`` in the sequence folder name and falls back to fr1.

    Returns:
        (K (4,) at 640 x 480 for presets, else at the native image size; is_preset).
    """
    spec = str(spec).strip().lower()
    if spec == "auto":
        m = re.search(r"freiburg([123])", Path(sequence_dir).resolve().name if sequence_dir else "")
        spec = f"fr{m.group(1)}" if m else "fr1"
    spec = {"freiburg1": "fr1", "freiburg2": "fr2", "freiburg3": "fr3"}.get(spec, spec)
    if spec in INTRINSICS:
        return np.array(INTRINSICS[spec], dtype=np.float64), True
    parts = spec.split(",")
    try:
        K = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        K = None
    if K is None or K.shape != (4,) or not np.all(np.isfinite(K)) or K[0] <= 0 or K[1] <= 0:
        raise ValueError(f"intrinsics must be fr1, fr2, fr3, auto or 'fx,fy,cx,cy' (fx, fy > 0), got {spec!r}")
    return K, False


def read_timestamp_file(path, n_values: int | None, what: str) -> list[tuple[int, float, list[str]]]:
    """Read a TUM list file (``rgb.txt``, ``depth.txt``, ``groundtruth.txt``).

    Args:
        path: the file. Lines starting with '#' and blank lines are skipped; commas and tabs count as spaces.
        n_values: number of values after the timestamp (1 for rgb/depth, 7 for groundtruth).
        what: what the values are, for error messages.

    Returns:
        list of (line number from 1, timestamp in seconds, value strings).

    Raises:
        FileNotFoundError: the file is missing.
        DatasetFormatError: a bad timestamp or a wrong number of values (names path:line).
    """
    path = require_file(path, "TUM list file")
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        s = line.replace(",", " ").replace("\t", " ").strip()
        if not s or s.startswith("#"):
            continue
        tokens = s.split()
        stamp = parse_floats(tokens[:1], path, n, 1, "timestamp")[0]
        if n_values is not None and len(tokens) - 1 != n_values:
            raise DatasetFormatError(f"{where(path, n)}: expected a timestamp and {n_values} {what}, "
                                     f"got {len(tokens) - 1} values")
        entries.append((n, float(stamp), tokens[1:]))
    if not entries:
        raise DatasetFormatError(f"{path}: no entries")
    return entries


def associate(first_stamps, second_stamps, max_difference: float = MAX_DIFFERENCE) -> list[tuple[int, int]]:
    """Match two timestamp lists as TUM's ``associate.py`` does.

    All candidate pairs with ``|a - b| < max_difference`` are taken greedily in order of increasing difference,
    each timestamp used at most once.

    Args:
        first_stamps: (N,) seconds.
        second_stamps: (M,) seconds.
        max_difference: largest accepted difference (exclusive), seconds.

    Returns:
        list of index pairs (i, j), sorted by i; unmatched entries are left out.
    """
    a = np.asarray(first_stamps, dtype=np.float64)
    b = np.asarray(second_stamps, dtype=np.float64)
    order_b = np.argsort(b, kind="stable")
    b_sorted = b[order_b]
    candidates = []
    lo = np.searchsorted(b_sorted, a - max_difference, side="left")
    hi = np.searchsorted(b_sorted, a + max_difference, side="right")
    for i in range(len(a)):
        for k in range(lo[i], hi[i]):
            d = abs(a[i] - b_sorted[k])
            if d < max_difference:
                candidates.append((d, i, int(order_b[k])))
    candidates.sort()
    used_a, used_b, matches = set(), set(), []
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            matches.append((i, j))
    return sorted(matches)


def pose_from_tum(values, path, line: int) -> np.ndarray:
    """``world_T_cam`` (4, 4) from ``[tx, ty, tz, qx, qy, qz, qw]`` (Hamilton quaternion, normalised first).

    Raises DatasetFormatError naming path:line when the quaternion is far from unit length (|q| - 1 > 1e-2).
    """
    t = np.asarray(values[:3], dtype=np.float64)
    x, y, z, w = np.asarray(values[3:7], dtype=np.float64)
    norm = np.sqrt(x * x + y * y + z * z + w * w)
    if abs(norm - 1.0) > 1e-2:
        raise DatasetFormatError(f"{where(path, line)}: quaternion (qx, qy, qz, qw) has norm {norm:.4g}, "
                                 f"expected 1")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    R = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    return rigid_from_rt(R, t, path, line)


def load_depth(path, depth_scale: float = DEPTH_SCALE) -> np.ndarray:
    """Read a TUM depth PNG: (H, W) float32 metres = value / depth_scale; 0 (missing) stays 0.

    Raises:
        FileNotFoundError: missing file.
        DatasetFormatError: unreadable, or not a single-channel 16-bit image (names the file).
    """
    path = require_file(path, "depth image")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.size == 0:
        raise DatasetFormatError(f"{path}: cannot read the depth image (corrupt or unsupported format)")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DatasetFormatError(f"{path}: depth must be a single-channel 16-bit PNG, got {raw.dtype} with shape "
                                 f"{raw.shape}")
    return (raw.astype(np.float64) / depth_scale).astype(np.float32)


@dataclass
class TumSequence:
    """One parsed, associated TUM RGB-D sequence.

    Attributes:
        name: folder name.
        stamps: (N,) rgb timestamps of the associated frames, increasing.
        rgb_paths, depth_paths: N image paths.
        world_T_cam: (N, 4, 4) colour camera poses.
        K: (4,) intrinsics at the native size.
        native_hw: (H, W) the intrinsics refer to, or None when the images' own size is used (custom K).
    """
    name: str
    stamps: np.ndarray
    rgb_paths: list
    depth_paths: list
    world_T_cam: np.ndarray
    K: np.ndarray
    native_hw: tuple | None


def load_sequence(sequence_dir, intrinsics: str = "fr1", max_difference: float = MAX_DIFFERENCE) -> TumSequence:
    """Parse and associate one sequence (no image is read; listed files must exist).

    Args:
        sequence_dir: the folder holding rgb.txt, depth.txt, groundtruth.txt.
        intrinsics: see :func:`parse_intrinsics`.
        max_difference: association tolerance in seconds.

    Raises:
        FileNotFoundError: a missing list file or listed image (named, with the list line).
        DatasetFormatError: malformed lines (path:line), or no frame with both depth and ground truth.
    """
    root = Path(sequence_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"TUM sequence folder {root} does not exist")
    K, preset = parse_intrinsics(intrinsics, root)
    camera = re.search(r"freiburg([123])", root.resolve().name)
    if camera and str(intrinsics).strip().lower() in INTRINSICS and str(intrinsics).strip().lower() != \
            f"fr{camera.group(1)}":
        warnings.warn(f"{root}: the folder name says freiburg{camera.group(1)} but intrinsics {intrinsics} are "
                      f"used (pass intrinsics='auto' or 'fr{camera.group(1)}' if that is not intended)", stacklevel=2)
    rgb = read_timestamp_file(root / "rgb.txt", 1, "file name")
    depth = read_timestamp_file(root / "depth.txt", 1, "file name")
    gt = read_timestamp_file(root / "groundtruth.txt", 7, "numbers (tx ty tz qx qy qz qw)")
    for entries, listing in ((rgb, root / "rgb.txt"), (depth, root / "depth.txt")):
        stamps = [e[1] for e in entries]
        if any(b <= a for a, b in zip(stamps, stamps[1:])):
            raise DatasetFormatError(f"{listing}: timestamps must increase")
    gt_path = root / "groundtruth.txt"
    gt_poses = [pose_from_tum(parse_floats(values, gt_path, n, 7, "numbers (tx ty tz qx qy qz qw)", first_field=2), gt_path, n)
                for n, _, values in gt]
    rgb_depth = dict(associate([e[1] for e in rgb], [e[1] for e in depth], max_difference))
    rgb_gt = dict(associate([e[1] for e in rgb], [e[1] for e in gt], max_difference))
    frames = sorted(set(rgb_depth) & set(rgb_gt))
    if not frames:
        raise DatasetFormatError(f"{root}: no rgb frame has both a depth image and a ground-truth pose within "
                                 f"{max_difference} s")
    rgb_paths, depth_paths, poses = [], [], []
    for i in frames:
        (n_rgb, _, (rgb_name,)), (n_d, _, (depth_name,)) = rgb[i], depth[rgb_depth[i]]
        for listing, n, name, out in ((root / "rgb.txt", n_rgb, rgb_name, rgb_paths),
                                      (root / "depth.txt", n_d, depth_name, depth_paths)):
            if not (root / name).is_file():
                raise FileNotFoundError(f"{listing}:{n}: listed image {root / name} does not exist")
            out.append(root / name)
        poses.append(gt_poses[rgb_gt[i]])
    return TumSequence(root.resolve().name, np.array([rgb[i][1] for i in frames]), rgb_paths, depth_paths,
                       np.stack(poses), K, NATIVE_HW if preset else None)


def make_sample(seq: TumSequence, tgt: int, src: int, height: int, width: int,
                depth_scale: float = DEPTH_SCALE) -> dict:
    """Load and convert one pair (target frame ``tgt``, source frame ``src``, indices of associated frames).

    Returns:
        dict with ``src``, ``tgt`` (3, H, W) RGB float32 in [0, 1]; ``tgt_depth`` (1, H, W) metres, nearest-
        neighbour resized, 0 = invalid; ``K`` (4,) at (H, W); ``src_T_tgt`` (4, 4); ``xi_gt`` (6,).
    """
    tgt_img, src_img = load_rgb(seq.rgb_paths[tgt]), load_rgb(seq.rgb_paths[src])
    native = seq.native_hw or tgt_img.shape[:2]
    for path, img in ((seq.rgb_paths[tgt], tgt_img), (seq.rgb_paths[src], src_img)):
        if img.shape[:2] != tuple(native):
            raise DatasetFormatError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, the intrinsics are for "
                                     f"{native[1]}x{native[0]}")
    depth = load_depth(seq.depth_paths[tgt], depth_scale)
    if depth.shape != tgt_img.shape[:2]:
        raise DatasetFormatError(f"{seq.depth_paths[tgt]}: depth is {depth.shape[1]}x{depth.shape[0]} but "
                                 f"{seq.rgb_paths[tgt]} is {tgt_img.shape[1]}x{tgt_img.shape[0]}")
    K = scale_intrinsics(seq.K, tuple(native), (height, width))
    src_T_tgt = relative_pose(seq.world_T_cam[src], seq.world_T_cam[tgt])
    return {"src": to_chw(resize_image(src_img, height, width)), "tgt": to_chw(resize_image(tgt_img, height, width)),
            "tgt_depth": resize_depth_nearest(depth, height, width)[None], "K": K, "src_T_tgt": src_T_tgt,
            "xi_gt": pose_vector_from_matrix(src_T_tgt)}


def convert_tum(sequence_dirs, out_dir, split: str = "train", gap: int = 1, height: int = DEFAULT_HEIGHT,
                width: int = DEFAULT_WIDTH, max_pairs: int | None = None, pairs_per_file: int = 256,
                intrinsics: str = "fr1", max_difference: float = MAX_DIFFERENCE, depth_scale: float = DEPTH_SCALE,
                progress: bool = True, triplets: bool = False):
    """Convert TUM RGB-D sequences into ``<out_dir>/<split>_NNN.h5`` and ``<out_dir>/<split>.txt``.

    Args:
        sequence_dirs: one or more sequence folders; pairs never cross sequences.
        out_dir: output folder.
        split: split name.
        gap: target = associated frame i, source = associated frame i + gap.
        height, width: output size (default 240 x 320).
        max_pairs: keep only the first this many pairs, None for all.
        pairs_per_file: at most this many pairs per HDF5 file.
        intrinsics: ``fr1`` (default), ``fr2``, ``fr3``, ``auto`` or ``"fx,fy,cx,cy"``.
        max_difference: timestamp association tolerance, seconds.
        depth_scale: depth PNG units per metre (5000 for TUM).
        progress: show a progress bar.
        triplets: write triplets (associated frames i - gap, i, i + gap; pygeometry.data.hdf5.TRIPLET_KEYS, for
            depth and pose from video) instead of pairs; max_pairs then counts triplets. Triplets carry no sequence
            keys.

    Returns:
        (list_path, h5_paths, n_pairs) (n_pairs counts triplets with triplets=True). Every pair carries its sequence id (the position in sequence_dirs), the
        frame numbers (indices of associated frames) and rgb timestamps, so scripts/evaluate.py makes trajectories.
    """
    check_options(gap, height, width, max_pairs, pairs_per_file)
    if not depth_scale > 0:
        raise ValueError(f"depth_scale must be > 0, got {depth_scale}")
    if isinstance(sequence_dirs, (str, Path)):
        sequence_dirs = [sequence_dirs]
    seqs = [load_sequence(d, intrinsics, max_difference) for d in sequence_dirs]
    if triplets:
        jobs = [(i, seq, *f) for i, seq in enumerate(seqs) for f in frame_triplets(len(seq.rgb_paths), gap)]
    else:
        jobs = [(i, seq, t, s) for i, seq in enumerate(seqs) for t, s in frame_pairs(len(seq.rgb_paths), gap)]
    if max_pairs is not None:
        jobs = jobs[:max_pairs]
    if not jobs:
        raise ValueError(f"no {'triplets' if triplets else 'pairs'}: sequences {[s.name for s in seqs]} have too "
                         f"few associated frames for gap {gap}")
    if triplets:
        samples = (triplet_from_pairs(make_sample(seq, t, p, height, width, depth_scale),
                                      make_sample(seq, t, q, height, width, depth_scale)) for _, seq, p, t, q in jobs)
    else:
        samples = (dict(make_sample(seq, t, s, height, width, depth_scale),
                        **sequence_info(i, t, s, seq.stamps)) for i, seq, t, s in jobs)
    list_path, files = write_split(samples, out_dir, split, height, width, pairs_per_file, total=len(jobs),
                                   progress=progress, desc=f"TUM {'triplets' if triplets else 'pairs'}")
    return list_path, files, len(jobs)
