#!/usr/bin/env python
"""Render one source/target pair with exact depth and pose into pair.h5 and the list file pair.txt (the HDF5Data
layer of pose_fit.prototxt reads it), in the current folder or --out.

Example (from any folder; PYTHONPATH or an installed pygeometry provides the package):
    python /path/to/pygeometry/examples/pose_fit/make_pair.py
"""
import argparse
from pathlib import Path

import numpy as np

from pygeometry.data.hdf5 import KEYS, DatasetWriter, write_list_file
from pygeometry.render import render_pair


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("."), help="folder for pair.h5 and pair.txt (default: here)")
    p.add_argument("--seed", type=int, default=3, help="scene and motion seed (default 3)")
    p.add_argument("--height", type=int, default=64, help="image height (a multiple of 8; default 64)")
    p.add_argument("--width", type=int, default=208, help="image width (a multiple of 8; default 208)")
    args = p.parse_args(argv)
    pair = render_pair(args.seed, height=args.height, width=args.width, motion="handheld")
    args.out.mkdir(parents=True, exist_ok=True)
    with DatasetWriter(args.out / "pair.h5", args.height, args.width) as writer:
        writer.append(**{k: pair[k] for k in KEYS})
    write_list_file(args.out / "pair.txt", [args.out / "pair.h5"])
    print("true pose xi = [tx ty tz wx wy wz]:", np.array2string(pair["xi_gt"], precision=4))


if __name__ == "__main__":
    main()
