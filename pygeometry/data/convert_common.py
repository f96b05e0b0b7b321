"""Helpers shared by the dataset converters (:mod:`pygeometry.data.kitti`, :mod:`pygeometry.data.tum`).

Conventions (docs/conventions.md):
    * Camera frame: OpenCV (x right, y down, z forward). Depth is z in metres, 0 = unknown (invalid).
    * Intrinsics ``K = [fx, fy, cx, cy]`` in pixels; pixel centres sit at integers ((0, 0) is the centre of the
      top-left pixel), so pixel ``x`` covers the continuous interval ``[x - 0.5, x + 0.5]``.
    * Resizing an image from ``(H0, W0)`` to ``(H, W)`` maps the continuous coordinate ``x0`` to
      ``x = (x0 + 0.5) * W / W0 - 0.5`` (image edges map onto image edges), hence::

          fx' = fx * W / W0          cx' = (cx + 0.5) * W / W0 - 0.5
          fy' = fy * H / H0          cy' = (cy + 0.5) * H / H0 - 0.5

      ``cv2.resize`` (INTER_AREA / INTER_LINEAR / INTER_NEAREST_EXACT) uses the same mapping.
    * Transforms are 4x4 column-vector matrices named by frames; ``src_T_tgt`` maps a point in the target camera
      frame into the source camera frame: ``src_T_tgt = inv(world_T_src) @ world_T_tgt``.
    * Pose vector ``xi = [tx, ty, tz, wx, wy, wz]``: the translation of ``src_T_tgt`` and the axis-angle vector of
      its rotation (``R = exp(hat(w))``, computed with ``cv2.Rodrigues``).

Output: :func:`write_split` writes ``<out>/<split>_NNN.h5`` (at most ``pairs_per_file`` pairs each, with
:class:`pygeometry.data.hdf5.DatasetWriter`) and the list file ``<out>/<split>.txt``. Everything is written into a
staging folder first and moved into place only after every pair was converted; the list file is written last. A
failed or interrupted conversion therefore leaves no list file and no new ``.h5`` file that looks complete (an
earlier complete split in the same folder is left untouched).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from ..poses import inverse_rigid
from .hdf5 import SEQUENCE_KEYS, DatasetWriter, write_list_file

ROTATION_TOLERANCE = 1e-3


class DatasetFormatError(ValueError):
    """Malformed input data; the message names the file (and the line where there is one)."""


def where(path, line: int | None = None) -> str:
    """``"path"`` or ``"path:line"`` for error messages (lines are counted from 1)."""
    return f"{path}:{line}" if line is not None else f"{path}"


def require_file(path, what: str = "file") -> Path:
    """Return ``Path(path)``; raise FileNotFoundError naming it (and what it is) when it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    return path


def parse_floats(tokens: Sequence[str], path, line: int, expected: int | None = None, what: str = "values",
                 first_field: int = 1):
    """Parse ``tokens`` as finite floats.

    Args:
        tokens: the strings to parse.
        path, line: where they come from (for the error message; line counted from 1).
        expected: the required number of values, or None for any number.
        what: a description of the values for the error message.
        first_field: the field number (from 1) of tokens[0] on its line, for the error message.

    Returns:
        (len(tokens),) float64 array.

    Raises:
        DatasetFormatError: wrong count, a token that is not a number, or NaN/inf; the message names path:line.
    """
    if expected is not None and len(tokens) != expected:
        raise DatasetFormatError(f"{where(path, line)}: expected {expected} {what}, got {len(tokens)}")
    values = np.empty(len(tokens), dtype=np.float64)
    for i, tok in enumerate(tokens):
        try:
            values[i] = float(tok)
        except ValueError:
            raise DatasetFormatError(f"{where(path, line)}: value {i + first_field} ({tok!r}) is not a number") from None
    if not np.all(np.isfinite(values)):
        raise DatasetFormatError(f"{where(path, line)}: {what} contain NaN or inf")
    return values


def rigid_from_3x4(values, path, line: int | None = None) -> np.ndarray:
    """A 4x4 rigid transform from 12 row-major numbers ``[R | t]``, with R projected onto SO(3).

    The rotation must be orthonormal within ``ROTATION_TOLERANCE`` (files store ~6 significant digits) and have
    determinant +1; it is then made exactly orthonormal with an SVD (``R = U V^T``), so that products of poses
    stay rigid and agree with their pose vectors.

    Args:
        values: (12,) numbers, row-major 3x4.
        path, line: where they come from (for the error message).

    Returns:
        (4, 4) float64 ``[[R, t], [0, 0, 0, 1]]``.
    """
    M = np.asarray(values, dtype=np.float64).reshape(3, 4)
    return rigid_from_rt(M[:, :3], M[:, 3], path, line)


def rigid_from_rt(R, t, path, line: int | None = None) -> np.ndarray:
    """4x4 transform from a rotation (3, 3) (checked, then projected onto SO(3)) and a translation (3,)."""
    R = np.asarray(R, dtype=np.float64)
    err = np.abs(R.T @ R - np.eye(3)).max()
    if err > ROTATION_TOLERANCE or np.linalg.det(R) <= 0:
        raise DatasetFormatError(f"{where(path, line)}: the 3x3 part is not a rotation "
                                 f"(|R^T R - I| = {err:.2g}, det = {np.linalg.det(R):.4g})")
    U, _, Vt = np.linalg.svd(R)
    T = np.eye(4)
    T[:3, :3] = U @ Vt
    T[:3, 3] = t
    return T


def relative_pose(world_T_src: np.ndarray, world_T_tgt: np.ndarray) -> np.ndarray:
    """``src_T_tgt = inv(world_T_src) @ world_T_tgt`` (4, 4): maps target-camera points into the source camera."""
    return inverse_rigid(world_T_src) @ np.asarray(world_T_tgt, dtype=np.float64)


def scale_intrinsics(K, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Intrinsics of an image resized from ``src_hw = (H0, W0)`` to ``dst_hw = (H, W)``.

    Pixel-centre convention (centres at integers, image edges map onto image edges)::

        fx' = fx * W / W0,   fy' = fy * H / H0,
        cx' = (cx + 0.5) * W / W0 - 0.5,   cy' = (cy + 0.5) * H / H0 - 0.5

    Args:
        K: (4,) ``[fx, fy, cx, cy]`` at ``(H0, W0)``.

    Returns:
        (4,) float64 ``[fx', fy', cx', cy']`` at ``(H, W)``.
    """
    fx, fy, cx, cy = np.asarray(K, dtype=np.float64)
    (h0, w0), (h, w) = src_hw, dst_hw
    sx, sy = w / w0, h / h0
    return np.array([fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5])


def load_rgb(path) -> np.ndarray:
    """Read a colour (or grey) image file as RGB float32 in [0, 1].

    Returns:
        (H0, W0, 3) float32, channels R, G, B (grey images are repeated into 3 channels).

    Raises:
        FileNotFoundError: the file does not exist.
        DatasetFormatError: OpenCV cannot decode it (the message names the file).
    """
    path = require_file(path, "image")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.size == 0:
        raise DatasetFormatError(f"{path}: cannot read the image (corrupt or unsupported format)")
    if raw.dtype == np.uint8:
        scale = 255.0
    elif raw.dtype == np.uint16:
        scale = 65535.0
    else:
        raise DatasetFormatError(f"{path}: unsupported image type {raw.dtype} (expected 8- or 16-bit)")
    if raw.ndim == 2:
        rgb = np.repeat(raw[:, :, None], 3, axis=2)
    elif raw.shape[2] == 3:
        rgb = raw[:, :, ::-1]
    elif raw.shape[2] == 4:
        rgb = raw[:, :, 2::-1]
    else:
        raise DatasetFormatError(f"{path}: unsupported number of channels {raw.shape[2]}")
    return np.ascontiguousarray(rgb, dtype=np.float32) / np.float32(scale)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (H0, W0, C) float32 -> (H, W, C) with the pixel-centre mapping of :func:`scale_intrinsics`.

    INTER_AREA when shrinking both axes (anti-aliased), INTER_LINEAR otherwise; values stay in [0, 1].
    """
    h0, w0 = image.shape[:2]
    if (h0, w0) == (height, width):
        return image
    interp = cv2.INTER_AREA if (height <= h0 and width <= w0) else cv2.INTER_LINEAR
    out = cv2.resize(image, (width, height), interpolation=interp)
    if out.ndim == 2:
        out = out[:, :, None]
    return np.clip(out, 0.0, 1.0)


def to_chw(image: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (C, H, W) float32."""
    return np.ascontiguousarray(np.transpose(image, (2, 0, 1)), dtype=np.float32)


def nearest_indices(n_src: int, n_dst: int) -> np.ndarray:
    """Source index of each destination pixel for a nearest-neighbour resize along one axis.

    ``i0 = floor((i + 0.5) * n_src / n_dst)`` (the source pixel under the destination pixel's centre, same
    mapping as :func:`scale_intrinsics` and ``cv2.INTER_NEAREST_EXACT``), clipped to ``[0, n_src - 1]``.
    """
    idx = np.floor((np.arange(n_dst) + 0.5) * (n_src / n_dst)).astype(np.int64)
    return np.clip(idx, 0, n_src - 1)


def resize_depth_nearest(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a depth map (H0, W0) -> (H, W).

    Every output value is one input value (no interpolation across invalid pixels or depth edges); zeros
    (missing depth) stay zero and nothing is filled in.
    """
    rows = nearest_indices(depth.shape[0], height)
    cols = nearest_indices(depth.shape[1], width)
    return np.ascontiguousarray(depth[rows][:, cols])


def split_file_name(split: str, index: int) -> str:
    """``<split>_NNN.h5`` (index zero-padded to 3 digits)."""
    return f"{split}_{index:03d}.h5"


def _split_file_pattern(split: str):
    return re.compile(rf"^{re.escape(split)}_\d{{3,}}\.h5$")


def check_split_name(split: str) -> str:
    """Reject split names that are not a plain file-name stem (letters, digits, '-', '_', '.')."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", split or ""):
        raise ValueError(f"split name {split!r} must be a plain name such as 'train' (letters, digits, _ - .)")
    return split


def check_options(gap: int, height: int, width: int, max_pairs: int | None, pairs_per_file: int):
    """Validate the common converter options; raise ValueError naming the option."""
    if int(gap) < 1:
        raise ValueError(f"gap must be >= 1, got {gap}")
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"height and width must be >= 1, got {height}x{width}")
    if max_pairs is not None and int(max_pairs) < 1:
        raise ValueError(f"max_pairs must be >= 1 (or None for all), got {max_pairs}")
    if int(pairs_per_file) < 1:
        raise ValueError(f"pairs_per_file must be >= 1, got {pairs_per_file}")


def frame_pairs(n_frames: int, gap: int) -> list[tuple[int, int]]:
    """Pairs ``(target, source) = (i, i + gap)`` for ``i = 0 .. n_frames - gap - 1``.

    Convention: the target is frame i and the source the later frame i + gap, so ``src_T_tgt`` maps points of
    frame i into frame i + gap.
    """
    return [(i, i + gap) for i in range(max(n_frames - gap, 0))]


def frame_triplets(n_frames: int, gap: int) -> list[tuple[int, int, int]]:
    """Triplets ``(previous, target, next) = (i - gap, i, i + gap)`` for ``i = gap .. n_frames - gap - 1``."""
    return [(i - gap, i, i + gap) for i in range(gap, n_frames - gap)]


def triplet_from_pairs(before: dict, after: dict) -> dict:
    """A triplet (pygeometry.data.hdf5.TRIPLET_KEYS) from the pairs (target, previous frame) and (target, next
    frame) of one target, as a converter's make_sample returns them (KEYS; the same tgt, tgt_depth and K)."""
    return {"src_prev": before["src"], "tgt": before["tgt"], "src_next": after["src"],
            "tgt_depth": before["tgt_depth"], "K": before["K"], "prev_T_tgt": before["src_T_tgt"],
            "next_T_tgt": after["src_T_tgt"], "xi_prev": before["xi_gt"], "xi_next": after["xi_gt"]}


def sequence_info(sequence: int, tgt: int, src: int, stamps) -> dict:
    """The SEQUENCE_KEYS of pair (target frame tgt, source frame src) of sequence number `sequence`, with
    stamps[k] the timestamp (s) of frame k."""
    return {"sequence": int(sequence), "tgt_frame": int(tgt), "src_frame": int(src),
            "tgt_time": float(stamps[tgt]), "src_time": float(stamps[src])}


def write_split(samples: Iterable[dict], out_dir, split: str, height: int, width: int, pairs_per_file: int = 256,
                total: int | None = None, progress: bool = True, desc: str = "pairs") -> tuple[Path, list[Path]]:
    """Write samples into ``<out_dir>/<split>_NNN.h5`` files and the list file ``<out_dir>/<split>.txt``.

    Args:
        samples: iterable of dicts with the keys of :data:`pygeometry.data.hdf5.KEYS` (shapes of the format, no
            batch axis), or all with those of TRIPLET_KEYS (triplets); consumed lazily, so conversion errors surface
            here. When the first sample also has every key of :data:`pygeometry.data.hdf5.SEQUENCE_KEYS` (sequence
            id, frame numbers, timestamps), they are written too, and every later sample must have them.
        out_dir: output folder (created).
        split: split name (``train``, ``val``, ...).
        height, width: image size of the samples.
        pairs_per_file: at most this many pairs per HDF5 file.
        total: number of samples, for the progress bar.
        progress: show a tqdm progress bar (stderr).
        desc: progress bar label.

    Returns:
        (list_path, h5_paths): the list file and the HDF5 files it lists, in order.

    Atomicity: files are written into ``<out_dir>/.<split>.partial-<pid>/`` (each one by DatasetWriter under a
    temporary name, renamed when complete). Only when every sample was written are the old files of this split
    (``<split>.txt`` and ``<split>_NNN.h5``) removed, the new files moved into ``out_dir`` and the list file
    written, last. On any error (or Ctrl-C) the staging folder is deleted and the exception propagates: no list
    file and no completed-looking file of the failed run remain, and an older split is left as it was.
    """
    from ..progress import progress_bar

    check_split_name(split)
    if int(pairs_per_file) < 1:
        raise ValueError(f"pairs_per_file must be >= 1, got {pairs_per_file}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".{split}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    staged: list[Path] = []
    writer = None
    sequence = None  # decided by the first sample: it carries all SEQUENCE_KEYS or not
    triplet = False  # decided by the first sample too: triplets (TRIPLET_KEYS) or pairs
    bar = progress_bar(total=total, enabled=progress, desc=desc, unit="pair")
    try:
        for sample in samples:
            if writer is None:
                if sequence is None:
                    sequence = all(k in sample for k in SEQUENCE_KEYS)
                    triplet = "src_prev" in sample
                writer = DatasetWriter(staging / split_file_name(split, len(staged)), height, width,
                                       sequence=sequence, triplet=triplet)
            writer.append(**{k: sample[k] for k in writer.keys})
            bar.update(1)
            if writer.count >= pairs_per_file:
                writer.close()
                staged.append(writer.path)
                writer = None
        if writer is not None:
            writer.close()
            staged.append(writer.path)
            writer = None
        if not staged:
            raise ValueError(f"{out_dir}: no pairs to write for split '{split}'")
        # Commit: drop the old split, move the new files in, write the list file last.
        list_path = out_dir / f"{split}.txt"
        list_path.unlink(missing_ok=True)
        pattern = _split_file_pattern(split)
        for old in out_dir.iterdir():
            if pattern.match(old.name) and old.is_file():
                old.unlink()
        final = []
        for path in staged:
            dst = out_dir / path.name
            os.replace(path, dst)
            final.append(dst)
        write_list_file(list_path, final)
        return list_path, final
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
        shutil.rmtree(staging, ignore_errors=True)
