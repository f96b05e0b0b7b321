#!/usr/bin/env python
"""Where the photometric gradient points for the pose, per source, at the identity and half-way to the truth
(pygeometry/landscape.py): the depth_pose train net warps with the true depth, and each variant of its loss is
measured on the same training batches. A translation gradient with the wrong sign at the identity means a pose
network started there cannot learn that source's motion from the loss alone.

Example (the figures of the README's "pose from video" paragraph):
    .venv/bin/python scripts/pose_landscape.py --data data/synthetic_depth_stereo --out runs/landscape.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pygeometry.files import write_atomic  # noqa: E402

VARIANTS = {
    "min reprojection, auto-masked (the default loss)": {},
    "min reprojection, no auto-masking": {"automask": False},
    "L1 only, no auto-masking": {"automask": False, "alpha": 0.0},
    "with coarse copies 4 8 16": {"basin": (4, 8, 16)},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="triplet dataset folder (make_dataset.py --triplets)")
    p.add_argument("--batches", type=int, default=5, help="training batches per variant (default 5)")
    p.add_argument("--batch", type=int, default=8, help="triplets per batch (default 8)")
    p.add_argument("--seed", type=int, default=0, help="Caffe seed (the batches drawn)")
    p.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import tempfile

    import caffe

    from pygeometry.data.hdf5 import TRIPLET_KEYS, validate_split
    from pygeometry.depth_nets import depth_pose_net
    from pygeometry.landscape import pose_gradient_alignment

    info = validate_split(args.data / "train.txt", keys=TRIPLET_KEYS)
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, options in VARIANTS.items():
            caffe.set_random_seed(args.seed)
            spec = depth_pose_net("train", source=str((args.data / "train.txt").resolve()), batch_size=args.batch,
                                  height=info.height, width=info.width, gt_depth=True, **options)
            path = Path(tmp) / "net.prototxt"
            path.write_text(str(spec.to_proto()))
            result = pose_gradient_alignment(caffe.Net(str(path), caffe.TRAIN), batches=args.batches)
            table[label] = {str(f): v for f, v in result.items()}
            for f, per_source in result.items():
                start = "identity" if f == 0 else f"{f:g} x truth"
                print(f"{label:48s} from {start:12s} " + "   ".join(
                    f"{s}: cos t {v['cos_t']:+.2f}, t sign right {100 * v['right_sign_t']:3.0f}%, cos w "
                    f"{v['cos_w']:+.2f}" for s, v in per_source.items()))
    if args.out:
        write_atomic(args.out, json.dumps(table, indent=2))
    return table


if __name__ == "__main__":
    main()
