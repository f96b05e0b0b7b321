#!/usr/bin/env python
"""Compare the pose that `caffe train` fitted (pose_fit_iter_400.caffemodel) with the truth in pair.h5, and
write pose_fit.png (target | source warped with the identity | warped with the fitted pose).

Example: python /path/to/pygeometry/examples/pose_fit/check_fit.py --weights pose_fit_iter_400.caffemodel
"""
import argparse
import os

os.environ.setdefault("GLOG_minloglevel", "2")  # before caffe: no net-construction log

import cv2
import h5py
import numpy as np

import caffe
from pygeometry.evaluation import pose_errors


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="pose_fit_iter_400.caffemodel", help="the snapshot caffe train wrote")
    p.add_argument("--net", default="pose_fit.prototxt", help="the net it trained")
    p.add_argument("--pair", default="pair.h5", help="the pair with the true pose")
    p.add_argument("--figure", default="pose_fit.png", help="figure to write ('' for none)")
    args = p.parse_args(argv)
    net = caffe.Net(args.net, caffe.TEST, weights=args.weights)
    xi = net.params["xi"][0].data.astype(np.float64).copy()
    with h5py.File(args.pair, "r") as f:
        src_T_tgt = f["src_T_tgt"][...].astype(np.float64)
    err = pose_errors(xi.astype(np.float32), src_T_tgt)
    print("fitted xi:", np.array2string(xi[0], precision=4))
    print(f"translation error {err['translation_m'][0] * 1000:.1f} mm, rotation error {err['rotation_deg'][0]:.3f} deg")
    if args.figure:
        rows = []
        for pose in (np.zeros_like(xi), xi):
            net.params["xi"][0].data[...] = pose
            net.forward()
            rows.append(net.blobs["warped"].data[0])
        tgt = net.blobs["tgt"].data[0]
        img = np.concatenate([tgt] + rows, axis=1).transpose(1, 2, 0)[:, :, ::-1]
        cv2.imwrite(args.figure, (np.clip(img, 0, 1) * 255).astype(np.uint8))
    return err


if __name__ == "__main__":
    main()
