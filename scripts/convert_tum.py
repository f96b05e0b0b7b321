#!/usr/bin/env python
"""Convert TUM RGB-D sequences into the pygeometry HDF5 dataset format.

Each --root folder is one sequence (rgb.txt, depth.txt, groundtruth.txt, rgb/, depth/). rgb frames are matched
to depth images and ground-truth poses by nearest timestamp within --max-difference seconds (TUM's
associate.py); unmatched frames are dropped. Pairs over the associated frames: target = frame i, source =
frame i + gap; src_T_tgt maps target-camera points into the source camera. Target depth = depth PNG / 5000,
resized with nearest neighbour (0 = invalid stays 0). Writes <out>/<split>_NNN.h5 (at most --pairs-per-file
pairs each) and, only after every pair was converted, the list file <out>/<split>.txt.

Example:
    .venv/bin/python scripts/convert_tum.py --root /data/tum/rgbd_dataset_freiburg1_xyz --intrinsics fr1 \\
        --out data/tum --split train
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, nargs="+", required=True, metavar="SEQUENCE_DIR",
                   help="one or more TUM sequence folders (each holds rgb.txt, depth.txt, groundtruth.txt)")
    p.add_argument("--out", type=Path, required=True, help="output folder for the .h5 files and the list file")
    p.add_argument("--split", default="train",
                   help="split name: writes <out>/<split>.txt and <out>/<split>_NNN.h5 (default train)")
    p.add_argument("--gap", type=int, default=1,
                   help="frame gap over associated frames: target = frame i, source = frame i + gap (default 1)")
    p.add_argument("--height", type=int, default=240, help="output image height (default 240)")
    p.add_argument("--width", type=int, default=320, help="output image width (default 320)")
    p.add_argument("--max-pairs", type=int, default=None, help="keep only the first N pairs (default: all)")
    p.add_argument("--pairs-per-file", type=int, default=256, help="at most this many pairs per .h5 file (default 256)")
    p.add_argument("--intrinsics", default="fr1",
                   help="camera of the 640x480 images: fr1 (default; 517.3,516.5,318.6,255.3), fr2, fr3, auto "
                        "(from 'freiburgN' in the folder name) or fx,fy,cx,cy")
    p.add_argument("--max-difference", type=float, default=0.02,
                   help="largest rgb/depth/groundtruth timestamp difference accepted, seconds (default 0.02)")
    p.add_argument("--depth-scale", type=float, default=5000.0,
                   help="depth PNG units per metre (default 5000)")
    p.add_argument("--triplets", action="store_true",
                   help="write triplets (frames i - gap, i, i + gap) for depth and pose from video (train_depth.py) "
                        "instead of pairs; --max-pairs then counts triplets")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from pygeometry.data.convert_common import DatasetFormatError
    from pygeometry.data.tum import convert_tum

    try:
        list_path, files, n = convert_tum(args.root, args.out, split=args.split, gap=args.gap, height=args.height,
                                          width=args.width, max_pairs=args.max_pairs,
                                          pairs_per_file=args.pairs_per_file, intrinsics=args.intrinsics,
                                          max_difference=args.max_difference, depth_scale=args.depth_scale,
                                          progress=not args.no_progress,
                                          triplets=args.triplets)
    except (DatasetFormatError, FileNotFoundError, ValueError) as e:
        print(f"convert_tum.py: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {n} {'triplets' if args.triplets else 'pairs'} ({args.height}x{args.width}) into {len(files)} "
          f"file(s); list: {list_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
