"""The project's dataset format: HDF5 files readable by Caffe's HDF5Data layer, plus a list file per split.

Format (one HDF5 file holds a whole number of pairs; the training keys are float32, NCHW):
    src        (N, 3, H, W)  source image, RGB, values in [0, 1]
    tgt        (N, 3, H, W)  target image, RGB, values in [0, 1]
    tgt_depth  (N, 1, H, W)  target depth (z, metres); 0 where unknown (invalid)
    K          (N, 4)        [fx, fy, cx, cy] of both cameras at this resolution, pixels
    src_T_tgt  (N, 4, 4)     ground-truth transform from the target camera frame to the source camera frame
    xi_gt      (N, 6)        the same pose as [tx, ty, tz, wx, wy, wz] (translation, axis-angle rotation)
Optional source depth (make_dataset.py --src-depth; what a pair read backwards needs, RandomReverse):
    src_depth  (N, 1, H, W)  source depth (z, metres); 0 where unknown
Optional sequence information (all five or none in a file; one value per pair; Caffe's HDF5Data ignores them):
    sequence   (N,) int64    sequence id (pairs of different ids never chain)
    tgt_frame, src_frame  (N,) int64    frame numbers of the target and source image in their sequence
    tgt_time, src_time    (N,) float64  timestamps in seconds
Triplets (depth and pose from video; make_dataset.py --triplets, written with DatasetWriter(..., triplet=True)):
    src_prev, tgt, src_next  (N, 3, H, W)  the frame before the target, the target, the frame after it
    tgt_depth  (N, 1, H, W)  target depth (for evaluation only: the networks learn without it)
    K          (N, 4)        [fx, fy, cx, cy] of all three frames
    prev_T_tgt, next_T_tgt  (N, 4, 4)  ground-truth transforms from the target camera frame to the previous /
                             next frame's camera frame (for evaluation only)
    xi_prev, xi_next  (N, 6)  the same poses as pose vectors
  optional, a calibrated stereo rig (make_dataset.py --stereo B; both or none in a file):
    src_stereo (N, 3, H, W)  the target's stereo partner (B metres to its right)
    stereo_T_tgt (N, 4, 4)   its known transform from the target camera (translation [-B, 0, 0])
  test snippets (make_dataset.py --snippets S: snippets.txt; test only): each F-frame snippet of a clip is stored
  as its F - 2 consecutive triplets (targets 1 .. F-2, in order), with
    snippet    (N,) int64    the snippet's number
    tgt_frame  (N,) int64    the target's frame in its snippet (1 .. F-2)
A split is a text file (train.txt, val.txt, test.txt) listing one HDF5 path per line, as Caffe's HDF5Data
`source` expects. Paths are absolute, so `caffe train` finds them from any working directory.

Files are written under a temporary name and renamed when complete, so an interrupted write never leaves a
file that looks complete.

validate_split() checks a split before a net reads it (every file readable, every key present with the format's
shape, one image size, no NaN or inf), so that a bad dataset stops the program with one message naming the file
and the pair, instead of a Caffe abort with a C++ stack trace or a NaN loss many iterations later.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..files import partial_path, write_atomic

KEYS = ("src", "tgt", "tgt_depth", "K", "src_T_tgt", "xi_gt")
TRIPLET_KEYS = ("src_prev", "tgt", "src_next", "tgt_depth", "K", "prev_T_tgt", "next_T_tgt", "xi_prev", "xi_next")
STEREO_KEYS = ("src_stereo", "stereo_T_tgt")
SRC_DEPTH_KEYS = ("src_depth",)  # optional in pair files: the source's depth, for pairs read backwards (RandomReverse)
SEQUENCE_KEYS = ("sequence", "tgt_frame", "src_frame", "tgt_time", "src_time")
SNIPPET_KEYS = ("snippet", "tgt_frame")
SEQUENCE_DTYPES = {"sequence": "i8", "tgt_frame": "i8", "src_frame": "i8", "tgt_time": "f8", "src_time": "f8",
                   "snippet": "i8"}


def _shapes(height, width):
    image = (3, height, width)
    return {"src": image, "tgt": image, "tgt_depth": (1, height, width), "src_depth": (1, height, width), "K": (4,), "src_T_tgt": (4, 4), "xi_gt": (6,),
            "src_prev": image, "src_next": image, "prev_T_tgt": (4, 4), "next_T_tgt": (4, 4), "xi_prev": (6,),
            "xi_next": (6,), "src_stereo": image, "stereo_T_tgt": (4, 4)}


class DatasetWriter:
    """Append pairs to one HDF5 file; the file appears under its final name only after close() succeeds.

    Usage:
        with DatasetWriter("data/x/train_000.h5", 128, 416) as w:
            w.append(src=..., tgt=..., tgt_depth=..., K=..., src_T_tgt=..., xi_gt=...)
    """

    def __init__(self, path, height, width, compression=None, sequence=False, triplet=False, stereo=False,
                 snippet=False, src_depth=False):
        """sequence=True: every pair also carries SEQUENCE_KEYS (sequence id, frame numbers, timestamps).
        src_depth=True: every pair also carries SRC_DEPTH_KEYS (the source's depth, (1, H, W)).
        triplet=True: samples are triplets (TRIPLET_KEYS) instead of pairs (KEYS); stereo=True adds STEREO_KEYS;
        snippet=True adds SNIPPET_KEYS (the snippet's number and the target's frame in it).

        compression: None (the default) or "gzip" (level 1) for the image-sized keys. Caffe's HDF5Data reads a
        whole file into memory whenever it moves to the next one, in the training loop: gzip made that 7x slower
        (0.89 s against 0.12 s for 250 pairs at 64 x 208, i.e. about 25 ms per iteration at batch 8) for files only
        11% smaller (rendered textures barely compress).
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = partial_path(self.path)
        main = (TRIPLET_KEYS + (STEREO_KEYS if stereo else ())) if triplet else \
            KEYS + (SRC_DEPTH_KEYS if src_depth else ())
        self.shapes = {k: v for k, v in _shapes(height, width).items() if k in main}
        self.file = h5py.File(self.tmp, "w")
        self.count = 0
        for key, shape in self.shapes.items():
            big = len(shape) == 3
            self.file.create_dataset(key, shape=(0,) + shape, maxshape=(None,) + shape, dtype="f4",
                                     chunks=(1,) + shape, compression=compression if big else None,
                                     compression_opts=1 if big and compression == "gzip" else None)
        self.keys = main + (SEQUENCE_KEYS if sequence else ()) + (SNIPPET_KEYS if snippet else ())
        for key in self.keys[len(main):]:
            self.file.create_dataset(key, shape=(0,), maxshape=(None,), dtype=SEQUENCE_DTYPES[key])

    def append(self, **sample):
        """Add one pair; every key of KEYS (and of SEQUENCE_KEYS with sequence=True) is required, each with the
        shape of the format (no batch axis; the sequence keys are scalars)."""
        missing = set(self.keys) - set(sample)
        if missing or set(sample) - set(self.keys):
            raise ValueError(f"{self.path}: a sample needs exactly the keys {self.keys}; missing {sorted(missing)}, "
                             f"unknown {sorted(set(sample) - set(self.keys))}")
        for key in self.keys[len(self.shapes):]:
            value = np.asarray(sample.pop(key))
            if value.shape != () or not np.isfinite(value):
                raise ValueError(f"{self.path}: '{key}' must be one finite number per pair, got {value!r}")
            ds = self.file[key]
            ds.resize(self.count + 1, axis=0)
            ds[self.count] = value
        for key, value in sample.items():
            value = np.asarray(value, dtype=np.float32)
            if value.shape != self.shapes[key]:
                raise ValueError(f"{self.path}: '{key}' must have shape {self.shapes[key]}, got {value.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{self.path}: '{key}' of sample {self.count} contains NaN/inf")
            ds = self.file[key]
            ds.resize(self.count + 1, axis=0)
            ds[self.count] = value
        self.count += 1

    def close(self):
        """Finish: flush, close and rename to the final name (raises if no pair was written)."""
        self.file.close()
        if self.count == 0:
            self.tmp.unlink(missing_ok=True)
            raise ValueError(f"{self.path}: no pairs were written")
        os.replace(self.tmp, self.path)

    def abort(self):
        self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_list_file(path, h5_paths):
    """Write a split list (absolute paths, one per line) atomically."""
    write_atomic(path, "".join(f"{Path(p).resolve()}\n" for p in h5_paths))


def remove_stale_partials(folder) -> list[Path]:
    """Delete the temporary files (.<name>.partial-<pid>) that DatasetWriter and write_list_file left in folder
    when their process was killed; files of a process still running are kept. Returns the deleted paths."""
    removed = []
    for tmp in Path(folder).glob(".*.partial-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_list_file(path):
    """Paths listed in a split file; raises FileNotFoundError naming the list and the missing file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split list {path} does not exist")
    files = [Path(line.strip()) for line in path.read_text().splitlines() if line.strip()]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{path}: listed file {f} does not exist")
    return files


class SplitError(ValueError):
    """A split that cannot be used (missing or unreadable file, missing key, wrong shape, another image size,
    NaN or inf); the message names the file and, where it applies, the pair's index in that file."""


def split_files(split) -> list[Path]:
    """HDF5 files of a split: a list file (one path per line; a relative path is taken from the working directory
    as Caffe does, else from the list's folder) or one .h5 file. Raises SplitError naming a missing file."""
    split = Path(split)
    if not split.exists():
        raise SplitError(f"split {split} does not exist")
    if split.suffix in (".h5", ".hdf5"):
        return [split]
    files = []
    for line in split.read_text().splitlines():
        if line.strip():
            f = Path(line.strip())
            if not f.is_absolute() and not f.is_file():
                f = split.parent / f
            if not f.is_file():
                raise SplitError(f"{split}: listed file {f} does not exist")
            files.append(f)
    if not files:
        raise SplitError(f"split list {split} lists no HDF5 file")
    return files


@dataclass(frozen=True)
class SplitInfo:
    """What validate_split found: the files, the number of pairs and the image size (None if no image key was
    checked and no size was expected)."""
    files: tuple
    pairs: int
    height: int | None
    width: int | None


# Pairs read at once by validate_split: bounds its memory (64 pairs of 64 x 208 are 24 MB) without slowing it.
_VALIDATE_CHUNK = 64


def validate_split(split, expected_hw=None, keys=KEYS) -> SplitInfo:
    """Check a split before a net or an evaluation reads it; raise SplitError naming the file (and the pair).

    Checked, file by file: the file opens as HDF5 (a truncated or corrupt file does not); every key of `keys`
    exists with the format's shape (module docstring) and a floating-point type, all with the same number of
    pairs (at least one); the images of all files have one size, equal to expected_hw (the net's input size)
    when given; and every value of every pair is finite (NaN or inf in an image, a depth map, K or a pose names
    the first such pair). Depth 0 (unknown) is valid. All data is read (chunk by chunk), which also finds
    compressed chunks that no longer decompress.

    Args:
        split: a list file (train.txt, ...) or one .h5 file (see split_files).
        expected_hw: (H, W) the images must have, or None (any single size).
        keys: the datasets to check, a subset of KEYS (+ SRC_DEPTH_KEYS) or of TRIPLET_KEYS (default: all of KEYS).

    Returns:
        SplitInfo(files, pairs, height, width).
    """
    import h5py

    files = split_files(split)
    hw = tuple(expected_hw) if expected_hw is not None else None
    hw_from = "the net's input" if hw is not None else None
    pairs = 0
    for path in files:
        try:
            with h5py.File(path, "r") as f:
                n, hw, hw_from = _check_file(path, f, keys, hw, hw_from)
        except SplitError:
            raise
        except (OSError, KeyError, RuntimeError, ValueError) as exc:  # h5py's errors for damaged files
            raise SplitError(f"{path}: cannot be read as HDF5, truncated or corrupt? ({exc})") from None
        pairs += n
    return SplitInfo(files=tuple(files), pairs=pairs, height=int(hw[0]) if hw else None,
                     width=int(hw[1]) if hw else None)


def _check_file(path, f, keys, hw, hw_from):
    """validate_split's checks of one open file; returns (pairs, image size, where that size came from)."""
    missing = [k for k in keys if k not in f]
    if missing:
        raise SplitError(f"{path}: missing dataset(s) {missing} (found {sorted(f.keys())})")
    n = f[keys[0]].shape[0] if f[keys[0]].ndim else 0
    if n == 0:
        raise SplitError(f"{path}: '{keys[0]}' holds no pair")
    for k in keys:
        a = f[k]
        if a.dtype.kind != "f":
            raise SplitError(f"{path}: '{k}' must be floating point (Caffe's HDF5Data reads float or double), "
                             f"got {a.dtype}")
        if a.ndim == 0 or a.shape[0] != n:
            raise SplitError(f"{path}: '{k}' has {a.shape[0] if a.ndim else 0} pairs but '{keys[0]}' has {n}")
        want = _shapes("H", "W")[k]
        if a.ndim != len(want) + 1 or any(w != s for w, s in zip(want, a.shape[1:]) if isinstance(w, int)):
            raise SplitError(f"{path}: '{k}' must be (N, {', '.join(map(str, want))}), got {a.shape}")
        if a.ndim == 4:
            if hw is None:
                hw, hw_from = a.shape[2:], f"the split's first images ({path} '{k}')"
            elif a.shape[2:] != hw:
                raise SplitError(f"{path}: '{k}' is {a.shape[2]}x{a.shape[3]} (H x W) but {hw_from} is "
                                 f"{hw[0]}x{hw[1]}")
    for k in keys:
        _check_finite(path, k, f[k])
    return n, hw, hw_from


def _check_finite(path, key, dataset):
    """Read dataset chunk by chunk; SplitError naming the pair where a value is NaN/inf or a chunk is unreadable."""
    n = dataset.shape[0]
    for start in range(0, n, _VALIDATE_CHUNK):
        stop = min(n, start + _VALIDATE_CHUNK)
        try:
            values = dataset[start:stop]
        except (OSError, ValueError):
            for index in range(start, stop):  # name the first pair that cannot be read
                try:
                    dataset[index]
                except (OSError, ValueError) as exc:
                    raise SplitError(f"{path}: '{key}' of pair {index} cannot be read, corrupt file? ({exc})") from None
            raise
        finite = np.isfinite(values.reshape(stop - start, -1)).all(axis=1)
        if not finite.all():
            index = start + int(np.flatnonzero(~finite)[0])
            raise SplitError(f"{path}: '{key}' of pair {index} contains NaN or inf")
