#!/usr/bin/env python
"""Forward+backward time of the pose networks' trunks in CPU Caffe: AlexNet conv1..conv5
(pygeometry.models.alexnet_trunk with cut conv5, what the pose nets use) against EfficientNet-Lite0
(pygeometry.efficientnet.efficientnet_lite0_trunk) cut at several depths, for 3-channel (late fusion, per branch)
and 6-channel (early fusion) inputs at the training size (default N=8, 64x208).

Each net ends in a loss on the trunk's output (Reduction MEAN, loss weight 1), so backward computes the gradients
a training step needs: every parameter, no gradient for the input. Repetitions are interleaved (one forward+backward
of every net per round) and the table shows medians, with ratios to AlexNet of the same channel count measured in
the same run. Weights are random (timing does not depend on them).

Example: OPENBLAS_NUM_THREADS=1 nice -n 15 .venv/bin/python scripts/bench_trunks.py --repeats 7
At the size the pose nets' trunks see (downsample 2): ... scripts/bench_trunks.py --height 32 --width 104

Measured here (N=8, CPU time, medians of 7; ratios to AlexNet conv1..conv5 with the same input channels):
at 32x104, EfficientNet-Lite0 block7 (stride 16, the default cut) 1.28x (3 channels) and 1.21x (6 channels),
block4 1.0x, block10 1.7x, block15 2.5-2.7x; at 64x208, block7 1.15-1.29x and block15 2.0-2.2x.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from pygeometry import efficientnet as E  # noqa: E402
from pygeometry.models import alexnet_trunk  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="batch size N (default 8, as the pose nets train)")
    p.add_argument("--height", type=int, default=64, help="input height (default 64)")
    p.add_argument("--width", type=int, default=208, help="input width (default 208)")
    p.add_argument("--cuts", nargs="+", default=["block4", "block7", "block10", "block15", "head"],
                   help="EfficientNet-Lite0 cuts to time (block0..block15, head; default: the stage ends block4 (s8), "
                        "block7 and block10 (s16), block15 and head (s32))")
    p.add_argument("--channels", nargs="+", type=int, default=[3, 6], help="input channels to time (3 and/or 6)")
    p.add_argument("--alexnet-cut", choices=["conv5", "pool5"], default="conv5",
                   help="where the AlexNet reference ends (default conv5, as the pose nets)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds; medians reported (default 7)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                   help="cpu: the process's CPU time (robust when other jobs share the cores; run with "
                        "OPENBLAS_NUM_THREADS=1), wall: elapsed time (default cpu)")
    return p.parse_args(argv)


def build(kind, channels, args):
    """(caffe.Net, description) for 'alexnet' or an EfficientNet cut."""
    import caffe
    from caffe import layers as L, params as P

    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[args.batch, channels, args.height, args.width]))
    if kind == "alexnet":
        top = alexnet_trunk(n, n.data, fc=False, cut=args.alexnet_cut, in_channels=channels)
    else:
        top = E.efficientnet_lite0_trunk(n, n.data, cut=kind, in_channels=channels,
                                         input_size=(args.height, args.width))
    n.loss = L.Reduction(top, operation=P.Reduction.MEAN, loss_weight=1.0)
    fd, path = tempfile.mkstemp(suffix=".prototxt")
    with os.fdopen(fd, "w") as f:
        f.write(str(n.to_proto()))
    try:
        net = caffe.Net(path, caffe.TRAIN)
    finally:
        os.remove(path)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.normal(size=net.blobs["data"].data.shape)
    out_blob = net.bottom_names["loss"][0]
    shape = tuple(net.blobs[out_blob].data.shape[1:])
    return net, shape


def time_once(net, clock):
    t0 = clock()
    net.forward()
    t1 = clock()
    net.backward()
    t2 = clock()
    return t1 - t0, t2 - t1


def main(argv=None):
    args = parse_args(argv)
    import caffe

    caffe.set_mode_cpu()
    entries = []  # (channels, kind, net, out shape)
    for c in args.channels:
        for kind in ["alexnet"] + list(args.cuts):
            net, shape = build(kind, c, args)
            entries.append((c, kind, net, shape))
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = {(c, k): [] for c, k, _, _ in entries}
    for r in range(args.warmup + args.repeats):
        for c, kind, net, _ in entries:
            fwd, bwd = time_once(net, clock)
            if r >= args.warmup:
                times[(c, kind)].append((fwd, bwd))
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"N={args.batch}, {args.height}x{args.width}, median of {args.repeats} interleaved rounds, "
          f"{args.clock} time, OPENBLAS_NUM_THREADS={threads}")
    print(f"{'C':>2} {'trunk':<28} {'output (C,H,W)':<16} {'fwd ms':>8} {'bwd ms':>8} {'f+b ms':>8} {'vs AlexNet':>10}")
    for c in args.channels:
        ref = None
        for cc, kind, net, shape in entries:
            if cc != c:
                continue
            t = np.array(times[(c, kind)])
            fwd, bwd, tot = np.median(t[:, 0]) * 1e3, np.median(t[:, 1]) * 1e3, np.median(t.sum(1)) * 1e3
            ref = tot if kind == "alexnet" else ref
            name = f"alexnet conv1..{args.alexnet_cut}" if kind == "alexnet" else f"efficientnet {kind} (s{E.CUTS[kind][0]})"
            print(f"{c:>2} {name:<28} {str(shape):<16} {fwd:8.1f} {bwd:8.1f} {tot:8.1f} {tot / ref:9.2f}x")


if __name__ == "__main__":
    main()
