"""KITTI odometry -> the project's HDF5 format (see :mod:`pygeometry.data.hdf5`).

On-disk layout (as distributed by the KITTI odometry benchmark)::

    <root>/sequences/XX/image_2/000000.png ...   left colour camera (cam2), 8-bit
    <root>/sequences/XX/calib.txt                "P0: 12 numbers", "P1:", "P2:", "P3:", "Tr: 12 numbers"
    <root>/sequences/XX/velodyne/000000.bin ...  optional; float32 (x, y, z, reflectance) per point
    <root>/poses/XX.txt                          one line per frame: row-major 3x4 of world_T_cam0

Geometry (all transforms 4x4, column vectors, named by frames; camera frames are OpenCV: x right, y down,
z forward, which KITTI's rectified cameras already use):

* ``P2 = K2 [I | t2]`` projects rectified cam0 coordinates into cam2 pixels, so ``X_cam2 = X_cam0 + t2`` with
  ``t2 = inv(K2) @ P2[:, 3]`` (about -6 cm in x: cam2 sits ~6 cm to the left of cam0). Hence
  ``cam2_T_cam0 = [[I, t2], [0, 1]]`` and ``world_T_cam2 = world_T_cam0 @ inv(cam2_T_cam0)``.
* ``K = [P2[0, 0], P2[1, 1], P2[0, 2], P2[1, 2]]`` at the native image size, scaled to the output size with the
  pixel-centre rule of :func:`pygeometry.data.convert_common.scale_intrinsics`.
* Pairs: target = frame i, source = frame i + gap, ``src_T_tgt = inv(world_T_cam2[i + gap]) @ world_T_cam2[i]``.
  The cam0 -> cam2 baseline does not cancel when the camera rotates, so it is applied to each absolute pose.
* Depth of the target (sparse, z in metres): velodyne points ``X_cam2 = cam2_T_cam0 @ Tr @ [x, y, z, 1]``, kept
  where z > 0, projected with K scaled to the *output* resolution, rounded to the nearest pixel, nearest point
  per pixel (z-buffer), 0 elsewhere. Projecting at the output resolution avoids resizing a sparse map.
  Without a ``velodyne`` folder the depth is all 0 (invalid) and a warning is issued: the photometric loss then
  needs depth from elsewhere (e.g. a depth network).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..poses import inverse_rigid, pose_vector_from_matrix
from .convert_common import (DatasetFormatError, check_options, frame_pairs, frame_triplets, load_rgb, parse_floats,
                             relative_pose, triplet_from_pairs,
                             require_file, resize_image, rigid_from_3x4, scale_intrinsics, sequence_info, to_chw,
                             write_split)

IMAGE_DIR = "image_2"
DEFAULT_HEIGHT, DEFAULT_WIDTH = 128, 416


def sequence_name(sequence) -> str:
    """Canonical sequence name: integers and digit strings are zero-padded to two digits ("0" -> "00")."""
    s = str(sequence).strip()
    return f"{int(s):02d}" if s.isdigit() else s


def read_calib(path) -> dict[str, np.ndarray]:
    """Read a KITTI odometry ``calib.txt``.

    Args:
        path: the file; lines ``"NAME: 12 numbers"`` (row-major 3x4), blank lines ignored.

    Returns:
        dict name -> (3, 4) float64 (``"P0"``..``"P3"``, ``"Tr"``).

    Raises:
        FileNotFoundError: the file is missing.
        DatasetFormatError: a line without ``NAME:``, with other than 12 values, or a non-number (names path:line).
    """
    path = require_file(path, "KITTI calibration file")
    calib = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, rest = line.partition(":")
        if not sep or not name.strip():
            raise DatasetFormatError(f"{path}:{n}: expected 'NAME: 12 numbers', got {line.strip()[:60]!r}")
        calib[name.strip()] = parse_floats(rest.split(), path, n, 12, f"numbers for {name.strip()}").reshape(3, 4)
    return calib


def camera2_from_calib(calib: dict, path="calib.txt") -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics and extrinsics of the left colour camera (cam2) from ``P2``.

    Args:
        calib: output of :func:`read_calib`.
        path: the calibration file (for error messages).

    Returns:
        K: (4,) ``[fx, fy, cx, cy]`` of cam2 at the native image size.
        cam2_T_cam0: (4, 4) ``[[I, t2], [0, 1]]`` with ``t2 = inv(K2) @ P2[:, 3]``.

    Raises:
        DatasetFormatError: no ``P2`` line, or ``P2[:, :3]`` is not an upper-triangular camera matrix.
    """
    if "P2" not in calib:
        raise DatasetFormatError(f"{path}: no 'P2:' line (left colour camera projection matrix)")
    P2 = calib["P2"]
    K2 = P2[:, :3]
    if not (np.allclose(K2[2], [0, 0, 1]) and abs(K2[1, 0]) < 1e-9 and abs(K2[0, 1]) < 1e-6 * abs(K2[0, 0])
            and K2[0, 0] > 0 and K2[1, 1] > 0):
        raise DatasetFormatError(f"{path}: P2[:, :3] must be a rectified camera matrix "
                                 f"[[fx, 0, cx], [0, fy, cy], [0, 0, 1]], got {K2.tolist()}")
    t2 = np.linalg.solve(K2, P2[:, 3])
    cam2_T_cam0 = np.eye(4)
    cam2_T_cam0[:3, 3] = t2
    K = np.array([K2[0, 0], K2[1, 1], K2[0, 2], K2[1, 2]])
    return K, cam2_T_cam0


def velo_to_cam0(calib: dict, path="calib.txt") -> np.ndarray:
    """``cam0_T_velo`` (4, 4) from the ``Tr`` line (raises DatasetFormatError naming the file if absent)."""
    for name in ("Tr", "Tr_velo_to_cam"):
        if name in calib:
            T = np.eye(4)
            T[:3] = calib[name]
            return T
    raise DatasetFormatError(f"{path}: no 'Tr:' line (velodyne -> cam0 transform), needed for velodyne depth")


def read_poses(path) -> np.ndarray:
    """Read a KITTI odometry pose file.

    Args:
        path: ``<root>/poses/XX.txt``; line k (from 1) holds the 12 row-major numbers of the 3x4 ``world_T_cam0``
            of frame k - 1. Trailing blank lines are ignored; a blank line in between is an error (it would shift
            the frame numbering).

    Returns:
        (N, 4, 4) float64 ``world_T_cam0``, rotations projected onto SO(3) (see ``rigid_from_3x4``).

    Raises:
        FileNotFoundError: the file is missing.
        DatasetFormatError: wrong number of values, a non-number, or a non-rotation; the message names path:line.
    """
    path = require_file(path, "KITTI pose file")
    lines = path.read_text().rstrip().splitlines()
    poses = np.empty((len(lines), 4, 4))
    for n, line in enumerate(lines, start=1):
        values = parse_floats(line.split(), path, n, 12, "numbers (row-major 3x4 pose)")
        poses[n - 1] = rigid_from_3x4(values, path, n)
    if len(lines) == 0:
        raise DatasetFormatError(f"{path}: no poses")
    return poses


def read_velodyne(path) -> np.ndarray:
    """Read a velodyne scan ``.bin``: (M, 4) float32 ``(x, y, z, reflectance)`` in the velodyne frame."""
    path = require_file(path, "velodyne scan")
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % 4:
        raise DatasetFormatError(f"{path}: size {raw.size * 4} bytes is not a whole number of "
                                 f"(x, y, z, reflectance) float32 points")
    return raw.reshape(-1, 4)


def project_sparse_depth(points_cam: np.ndarray, K, height: int, width: int) -> np.ndarray:
    """Sparse depth map from 3-D points in a camera frame.

    Args:
        points_cam: (M, 3) points in the camera frame (OpenCV), metres.
        K: (4,) ``[fx, fy, cx, cy]`` at the output resolution (pixel centres at integers).
        height, width: output size.

    Returns:
        (H, W) float32 depth (z): points with z > 0 are projected ``u = fx x / z + cx``, ``v = fy y / z + cy``,
        rounded to the nearest pixel (``floor(u + 0.5)``), kept inside the image; where several points land on
        one pixel the nearest (smallest z) wins. Pixels without a point are 0 (invalid).
    """
    fx, fy, cx, cy = np.asarray(K, dtype=np.float64)
    P = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    P = P[np.isfinite(P).all(axis=1) & (P[:, 2] > 0)]
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    with np.errstate(over="ignore", invalid="ignore"):
        u = np.floor(fx * x / z + cx + 0.5)
        v = np.floor(fy * y / z + cy + 0.5)
    inside = np.isfinite(u) & np.isfinite(v) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    depth = np.full(height * width, np.inf)
    np.minimum.at(depth, v[inside].astype(np.int64) * width + u[inside].astype(np.int64), z[inside])
    depth[np.isinf(depth)] = 0.0
    return depth.reshape(height, width).astype(np.float32)


@dataclass
class KittiSequence:
    """One parsed, checked KITTI odometry sequence.

    Attributes:
        name: sequence name ("00").
        image_paths: N paths of ``image_2`` frames, frame k at index k.
        world_T_cam2: (N, 4, 4) pose of the left colour camera in the world (the first cam0 frame).
        K: (4,) cam2 intrinsics at the native image size.
        cam2_T_velo: (4, 4) velodyne -> cam2, or None without velodyne data.
        velodyne_paths: N paths of scans, or None.
    """
    name: str
    image_paths: list
    world_T_cam2: np.ndarray
    K: np.ndarray
    cam2_T_velo: np.ndarray | None
    velodyne_paths: list | None


def load_sequence(root, sequence, use_velodyne: bool | None = None) -> KittiSequence:
    """Parse and check one sequence (calibration, poses, image list, velodyne list) without reading images.

    Args:
        root: dataset root (holds ``sequences/`` and ``poses/``).
        sequence: sequence name or number ("00", 0).
        use_velodyne: True: require velodyne scans; False: ignore them (depth all 0); None: use them when the
            ``velodyne`` folder exists, otherwise warn and write depth 0.

    Raises:
        FileNotFoundError: a missing folder or file (named).
        DatasetFormatError: malformed calibration or poses, frame numbering with holes, or a different number
            of poses and images (both files named).
    """
    root = Path(root)
    name = sequence_name(sequence)
    seq_dir = root / "sequences" / name
    if not seq_dir.is_dir():
        raise FileNotFoundError(f"KITTI sequence folder {seq_dir} does not exist")
    calib_path = seq_dir / "calib.txt"
    calib = read_calib(calib_path)
    K, cam2_T_cam0 = camera2_from_calib(calib, calib_path)
    poses_path = root / "poses" / f"{name}.txt"
    world_T_cam0 = read_poses(poses_path)
    image_dir = seq_dir / IMAGE_DIR
    if not image_dir.is_dir():
        raise FileNotFoundError(f"KITTI image folder {image_dir} does not exist")
    image_paths = _numbered_files(image_dir, ".png")
    if len(image_paths) != len(world_T_cam0):
        raise DatasetFormatError(f"{poses_path} has {len(world_T_cam0)} poses but {image_dir} has "
                                 f"{len(image_paths)} images; they must match one to one")
    world_T_cam2 = world_T_cam0 @ inverse_rigid(cam2_T_cam0)

    velo_dir = seq_dir / "velodyne"
    cam2_T_velo = velodyne_paths = None
    if use_velodyne is None:
        use_velodyne = velo_dir.is_dir()
        if not use_velodyne:
            warnings.warn(f"{velo_dir} does not exist: target depth will be all 0 (invalid); the photometric "
                          f"loss then needs depth from another source", stacklevel=2)
    if use_velodyne:
        if not velo_dir.is_dir():
            raise FileNotFoundError(f"velodyne folder {velo_dir} does not exist")
        cam2_T_velo = cam2_T_cam0 @ velo_to_cam0(calib, calib_path)
        velodyne_paths = [velo_dir / f"{p.stem}.bin" for p in image_paths]
        for vp in velodyne_paths:
            require_file(vp, "velodyne scan")
    return KittiSequence(name, image_paths, world_T_cam2, K, cam2_T_velo, velodyne_paths)


def _numbered_files(folder: Path, suffix: str) -> list[Path]:
    """Files ``000000<suffix>, 000001<suffix>, ...`` of a folder; raises naming the first missing frame."""
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(suffix) and not p.name.startswith("."))
    if not names:
        raise FileNotFoundError(f"{folder} holds no {suffix} files")
    numbers = []
    for n in names:
        if not re.fullmatch(r"\d+" + re.escape(suffix), n):
            raise DatasetFormatError(f"{folder / n}: expected a frame number file name such as 000000{suffix}")
        numbers.append(int(n[: -len(suffix)]))
    numbers.sort()
    width = len(names[0]) - len(suffix)
    for k, num in enumerate(numbers):
        if num != k:
            raise FileNotFoundError(f"{folder / f'{k:0{width}d}{suffix}'} does not exist (frames must be "
                                    f"numbered 0, 1, 2, ... without holes)")
    return [folder / f"{k:0{width}d}{suffix}" for k in range(len(numbers))]


def make_sample(seq: KittiSequence, tgt: int, src: int, height: int, width: int) -> dict:
    """Load and convert one pair (target frame ``tgt``, source frame ``src``) of a sequence.

    Returns:
        dict with ``src``, ``tgt`` (3, H, W) RGB float32 in [0, 1]; ``tgt_depth`` (1, H, W) sparse velodyne z
        (0 = invalid); ``K`` (4,) at (H, W); ``src_T_tgt`` (4, 4); ``xi_gt`` (6,).
    """
    tgt_img, src_img = load_rgb(seq.image_paths[tgt]), load_rgb(seq.image_paths[src])
    if tgt_img.shape != src_img.shape:
        raise DatasetFormatError(f"{seq.image_paths[src]}: size {src_img.shape[:2]} differs from "
                                 f"{seq.image_paths[tgt]} {tgt_img.shape[:2]} in the same sequence")
    K = scale_intrinsics(seq.K, tgt_img.shape[:2], (height, width))
    depth = np.zeros((height, width), np.float32)
    if seq.velodyne_paths is not None:
        velo = read_velodyne(seq.velodyne_paths[tgt])
        pts = velo[:, :3].astype(np.float64) @ seq.cam2_T_velo[:3, :3].T + seq.cam2_T_velo[:3, 3]
        depth = project_sparse_depth(pts, K, height, width)
    src_T_tgt = relative_pose(seq.world_T_cam2[src], seq.world_T_cam2[tgt])
    return {"src": to_chw(resize_image(src_img, height, width)), "tgt": to_chw(resize_image(tgt_img, height, width)),
            "tgt_depth": depth[None], "K": K, "src_T_tgt": src_T_tgt, "xi_gt": pose_vector_from_matrix(src_T_tgt)}


def frame_times(root, seq: KittiSequence) -> np.ndarray:
    """Timestamps (s) of a sequence's frames: ``sequences/XX/times.txt`` (one per line) when it exists and has one
    per frame, otherwise frame k at k / 10 s (the odometry benchmark's nominal 10 Hz)."""
    path = Path(root) / "sequences" / seq.name / "times.txt"
    n = len(seq.image_paths)
    if path.is_file():
        values = np.array([float(v) for v in path.read_text().split()], dtype=np.float64)
        if len(values) != n:
            raise DatasetFormatError(f"{path} has {len(values)} timestamps but the sequence has {n} images")
        return values
    return np.arange(n, dtype=np.float64) / 10.0


def convert_kitti(root, sequences, out_dir, split: str = "train", gap: int = 1, height: int = DEFAULT_HEIGHT,
                  width: int = DEFAULT_WIDTH, max_pairs: int | None = None, pairs_per_file: int = 256,
                  use_velodyne: bool | None = None, progress: bool = True, triplets: bool = False):
    """Convert KITTI odometry sequences into ``<out_dir>/<split>_NNN.h5`` and ``<out_dir>/<split>.txt``.

    Args:
        root: dataset root (``sequences/``, ``poses/``).
        sequences: sequence names or numbers; pairs never cross sequences.
        out_dir: output folder.
        split: split name.
        gap: target = frame i, source = frame i + gap.
        height, width: output image size (default 128 x 416).
        max_pairs: keep only the first this many pairs (in sequence order), None for all.
        pairs_per_file: at most this many pairs per HDF5 file.
        use_velodyne: see :func:`load_sequence`.
        progress: show a progress bar.
        triplets: write triplets (frames i - gap, i, i + gap; pygeometry.data.hdf5.TRIPLET_KEYS, for depth and pose
            from video) instead of pairs; max_pairs then counts triplets. Triplets carry no sequence keys.

    Returns:
        (list_path, h5_paths, n_pairs) (n_pairs counts triplets with triplets=True).

    All sequences are parsed and checked before any image is read; the output is written atomically (see
    :func:`pygeometry.data.convert_common.write_split`). Every pair carries its sequence id (the KITTI number),
    frame numbers and timestamps (:func:`frame_times`), so scripts/evaluate.py chains pairs into trajectories.
    """
    check_options(gap, height, width, max_pairs, pairs_per_file)
    if isinstance(sequences, (str, int)):
        sequences = [sequences]
    seqs = [load_sequence(root, s, use_velodyne) for s in sequences]
    number = {seq.name: int(seq.name) if seq.name.isdigit() else i for i, seq in enumerate(seqs)}
    if triplets:
        jobs = [(seq, *f) for seq in seqs for f in frame_triplets(len(seq.image_paths), gap)]
    else:
        jobs = [(seq, t, s) for seq in seqs for t, s in frame_pairs(len(seq.image_paths), gap)]
    if max_pairs is not None:
        jobs = jobs[:max_pairs]
    if not jobs:
        raise ValueError(f"no {'triplets' if triplets else 'pairs'}: sequences {[s.name for s in seqs]} have too "
                         f"few frames for gap {gap}")
    times = {seq.name: frame_times(root, seq) for seq in seqs}
    if triplets:
        samples = (triplet_from_pairs(make_sample(seq, t, p, height, width), make_sample(seq, t, q, height, width))
                   for seq, p, t, q in jobs)
    else:
        samples = (dict(make_sample(seq, t, s, height, width),
                        **sequence_info(number[seq.name], t, s, times[seq.name]))
                   for seq, t, s in jobs)
    list_path, files = write_split(samples, out_dir, split, height, width, pairs_per_file, total=len(jobs),
                                   progress=progress, desc=f"KITTI {'triplets' if triplets else 'pairs'}")
    return list_path, files, len(jobs)
