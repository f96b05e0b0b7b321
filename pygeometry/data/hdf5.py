"""The project's dataset format: HDF5 files readable by Caffe's HDF5Data layer, plus a list file per split.

Format (one HDF5 file holds a whole number of pairs; all float32, NCHW):
    src        (N, 3, H, W)  source image, RGB, values in [0, 1]
    tgt        (N, 3, H, W)  target image, RGB, values in [0, 1]
    tgt_depth  (N, 1, H, W)  target depth (z, metres); 0 where unknown (invalid)
    K          (N, 4)        [fx, fy, cx, cy] of both cameras at this resolution, pixels
    src_T_tgt  (N, 4, 4)     ground-truth transform from the target camera frame to the source camera frame
    xi_gt      (N, 6)        the same pose as [tx, ty, tz, wx, wy, wz] (translation, axis-angle rotation)
Optional sequence information (all five or none in a file; one value per pair; Caffe's HDF5Data ignores them):
    sequence   (N,) int64    sequence id (pairs of different ids never chain)
    tgt_frame, src_frame  (N,) int64    frame numbers of the target and source image in their sequence
    tgt_time, src_time    (N,) float64  timestamps in seconds
A split is a text file (train.txt, val.txt, test.txt) listing one HDF5 path per line, as Caffe's HDF5Data
`source` expects. Paths are absolute, so `caffe train` finds them from any working directory.

Files are written under a temporary name and renamed when complete, so an interrupted write never leaves a
file that looks complete.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

KEYS = ("src", "tgt", "tgt_depth", "K", "src_T_tgt", "xi_gt")
SEQUENCE_KEYS = ("sequence", "tgt_frame", "src_frame", "tgt_time", "src_time")
SEQUENCE_DTYPES = {"sequence": "i8", "tgt_frame": "i8", "src_frame": "i8", "tgt_time": "f8", "src_time": "f8"}


def _shapes(height, width):
    return {"src": (3, height, width), "tgt": (3, height, width), "tgt_depth": (1, height, width), "K": (4,),
            "src_T_tgt": (4, 4), "xi_gt": (6,)}


class DatasetWriter:
    """Append pairs to one HDF5 file; the file appears under its final name only after close() succeeds.

    Usage:
        with DatasetWriter("data/x/train_000.h5", 128, 416) as w:
            w.append(src=..., tgt=..., tgt_depth=..., K=..., src_T_tgt=..., xi_gt=...)
    """

    def __init__(self, path, height, width, compression="gzip", sequence=False):
        """sequence=True: every pair also carries SEQUENCE_KEYS (sequence id, frame numbers, timestamps)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self.shapes = _shapes(height, width)
        self.file = h5py.File(self.tmp, "w")
        self.count = 0
        for key, shape in self.shapes.items():
            big = len(shape) == 3
            self.file.create_dataset(key, shape=(0,) + shape, maxshape=(None,) + shape, dtype="f4",
                                     chunks=(1,) + shape, compression=compression if big else None,
                                     compression_opts=1 if big and compression == "gzip" else None)
        self.keys = KEYS + (SEQUENCE_KEYS if sequence else ())
        for key in self.keys[len(KEYS):]:
            self.file.create_dataset(key, shape=(0,), maxshape=(None,), dtype=SEQUENCE_DTYPES[key])

    def append(self, **sample):
        """Add one pair; every key of KEYS (and of SEQUENCE_KEYS with sequence=True) is required, each with the
        shape of the format (no batch axis; the sequence keys are scalars)."""
        missing = set(self.keys) - set(sample)
        if missing or set(sample) - set(self.keys):
            raise ValueError(f"{self.path}: a sample needs exactly the keys {self.keys}; missing {sorted(missing)}, "
                             f"unknown {sorted(set(sample) - set(self.keys))}")
        for key in self.keys[len(KEYS):]:
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
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text("".join(f"{Path(p).resolve()}\n" for p in h5_paths))
    os.replace(tmp, path)


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
