#!/usr/bin/env python
"""Convert KITTI odometry sequences into the pygeometry HDF5 dataset format.

Reads <root>/sequences/XX/{image_2/*.png, calib.txt[, velodyne/*.bin]} and <root>/poses/XX.txt, and writes
<out>/<split>_NNN.h5 (at most --pairs-per-file pairs each) plus the list file <out>/<split>.txt for Caffe's
HDF5Data layer. Pairs: target = frame i, source = frame i + gap; src_T_tgt maps target-camera points into the
source camera (left colour camera cam2, baseline to cam0 applied). Target depth is the velodyne scan projected
at the output resolution (sparse, 0 = invalid); without velodyne scans it is all 0 (a warning is printed).
The list file is written only after every pair was converted, so a failed run never looks complete.

Example:
    .venv/bin/python scripts/convert_kitti.py --root /data/kitti_odometry --sequences 00 01 02 \\
        --out data/kitti --split train
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True,
                   help="KITTI odometry root (holds sequences/ and poses/)")
    p.add_argument("--sequences", nargs="+", required=True, metavar="XX",
                   help="sequence names, e.g. 00 01 (numbers are zero-padded to two digits)")
    p.add_argument("--out", type=Path, required=True, help="output folder for the .h5 files and the list file")
    p.add_argument("--split", default="train",
                   help="split name: writes <out>/<split>.txt and <out>/<split>_NNN.h5 (default train)")
    p.add_argument("--gap", type=int, default=1,
                   help="frame gap: target = frame i, source = frame i + gap (default 1)")
    p.add_argument("--height", type=int, default=128, help="output image height (default 128)")
    p.add_argument("--width", type=int, default=416, help="output image width (default 416)")
    p.add_argument("--max-pairs", type=int, default=None, help="keep only the first N pairs (default: all)")
    p.add_argument("--pairs-per-file", type=int, default=256, help="at most this many pairs per .h5 file (default 256)")
    velo = p.add_mutually_exclusive_group()
    velo.add_argument("--require-velodyne", dest="use_velodyne", action="store_const", const=True, default=None,
                      help="fail if velodyne scans are missing (default: use them when present)")
    velo.add_argument("--no-velodyne", dest="use_velodyne", action="store_const", const=False,
                      help="ignore velodyne scans; target depth is all 0")
    p.add_argument("--triplets", action="store_true",
                   help="write triplets (frames i - gap, i, i + gap) for depth and pose from video (train_depth.py) "
                        "instead of pairs; --max-pairs then counts triplets")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from pygeometry.data.convert_common import DatasetFormatError
    from pygeometry.data.kitti import convert_kitti

    try:
        list_path, files, n = convert_kitti(args.root, args.sequences, args.out, split=args.split, gap=args.gap,
                                            height=args.height, width=args.width, max_pairs=args.max_pairs,
                                            pairs_per_file=args.pairs_per_file, use_velodyne=args.use_velodyne,
                                            progress=not args.no_progress,
                                            triplets=args.triplets)
    except (DatasetFormatError, FileNotFoundError, ValueError) as e:
        print(f"convert_kitti.py: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {n} {'triplets' if args.triplets else 'pairs'} ({args.height}x{args.width}) into {len(files)} "
          f"file(s); list: {list_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
