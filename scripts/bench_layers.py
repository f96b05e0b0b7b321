#!/usr/bin/env python
"""Benchmark the pygeometry layers (forward + backward through caffe.Net) against the same computation in
PyTorch on the CPU (autograd; grid_sample with align_corners=True for the warp), in the same process run, and
against one AlexNet training iteration at the same size. Prints a table of medians and ratios.

Targets: chain SE3Generator -> Transform3DGrid -> PinholeProjection -> BilinearWarp at most 0.5x
PyTorch's time, and under 10% of an AlexNet (early fusion, 6 channels) forward+backward. "chain" is the
training configuration (gradients to xi and depth; the source image is data, as in the pose networks, where
Caffe does not ask for its gradient); "chain + image grad" also differentiates the source image.

The gradient arriving at each case's output is the same fixed random array on both sides, given once outside
the timed loop. The training chain's output carries loss_weight 1 (Caffe needs a loss to run the backward
without force_backward), so the caffe side also pays Caffe's loss dot product over the output.

torch is a benchmark-only dependency: `pip install torch==2.13.0` (`make bench` does it).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(len(os.sched_getaffinity(0))))  # as scripts/train.py

import numpy as np  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="N (default 8)")
    p.add_argument("--height", type=int, default=128, help="H (default 128)")
    p.add_argument("--width", type=int, default=416, help="W (default 416)")
    p.add_argument("--channels", type=int, default=3, help="C of the warped image (default 3)")
    p.add_argument("--repeats", type=int, default=15, help="timed repetitions per case (default 15)")
    p.add_argument("--alexnet-repeats", type=int, default=3, help="timed AlexNet iterations (default 3)")
    p.add_argument("--no-alexnet", action="store_true", help="skip the AlexNet comparison")
    p.add_argument("--cases", nargs="+", metavar="CASE", default=None,
                   help="run only these cases (names as in the table, e.g. chain BilinearWarp; default: all)")
    return p.parse_args()


def caffe_net(netspec, force_backward=True):
    import caffe

    fd, path = tempfile.mkstemp(suffix=".prototxt")
    with os.fdopen(fd, "w") as f:
        f.write(("force_backward: true\n" if force_backward else "") + str(netspec.to_proto()))
    try:
        return caffe.Net(path, caffe.TRAIN)
    finally:
        os.remove(path)


def output_gradient(shape):
    """The gradient arriving at a case's output: the same fixed random array on both sides (given once, not
    built in the timed loop)."""
    return np.random.default_rng(1).normal(size=shape).astype(np.float32)


def median_time(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def smooth_depth(rng, N, H, W):
    """Scene-like depth (N, 1, H, W) in metres: a slanted plane (near at the bottom, 2..20 m) with smooth
    bumps, so neighbouring pixels sample neighbouring source pixels as in real images."""
    ys, xs = np.mgrid[0:H, 0:W] / np.array([H, W], dtype=float)[:, None, None]
    depth = np.empty((N, 1, H, W), np.float32)
    for i in range(N):
        f = rng.uniform(1, 4, size=2)
        bumps = 0.15 * np.sin(2 * np.pi * f[0] * xs + rng.uniform(0, 6)) * np.sin(2 * np.pi * f[1] * ys)
        depth[i, 0] = 2 + 18 * (1 - ys) ** 2 * (1 + bumps)
    return depth


def make_inputs(args, rng):
    N, C, H, W = args.batch, args.channels, args.height, args.width
    K = [0.6 * W, 0.6 * W, (W - 1) / 2, (H - 1) / 2]
    depth = smooth_depth(rng, N, H, W)
    return dict(
        K=K,
        xi=np.concatenate([rng.normal(size=(N, 3)) * 0.1, rng.normal(size=(N, 3)) * 0.03], 1).astype(np.float32),
        depth=depth,
        src=rng.uniform(size=(N, C, H, W)).astype(np.float32),
        src2=rng.uniform(size=(N, C, H, W)).astype(np.float32),
        tgt=rng.uniform(size=(N, C, H, W)).astype(np.float32),
        disp=(1.0 / np.maximum(depth, 0.1)).astype(np.float32),
    )


# ------------------------------------------------------------------------------------------------ caffe side
MIN_REPROJECTION = "MinReprojectionLoss (2 sources, auto-mask)"
SMOOTHNESS = "EdgeAwareSmoothness"
LOSSES = ("PhotometricLoss (alpha 0.85)", MIN_REPROJECTION, SMOOTHNESS)  # scalar outputs: Caffe gives them diff 1


def caffe_cases(inp):
    import caffe
    from caffe import layers as L

    from pygeometry import netspec as G
    from pygeometry.kernels import projection_forward, se3_forward, transform_grid_forward

    K = inp["K"]
    T = se3_forward(inp["xi"])
    points = transform_grid_forward(inp["depth"], T, K)
    coords, _ = projection_forward(points, K)
    feeds = dict(xi=inp["xi"], depth=inp["depth"], src=inp["src"], tgt=inp["tgt"], T=T, points=points,
                 coords=coords, src2=inp["src2"], disp=inp["disp"])

    def spec(bottoms, build, learnable=()):
        """Input bottoms (force_backward gives them all gradients), or, when `learnable` names some, those
        as Parameter layers and the rest as plain data: then only the learnable ones get gradients."""
        n = caffe.NetSpec()
        for b in bottoms:
            shape = dict(dim=list(feeds[b].shape))
            setattr(n, b, L.Parameter(parameter_param=dict(shape=shape)) if b in learnable else L.Input(shape=shape))
        build(n)
        return n, learnable

    cases = {
        "SE3Generator": spec(["xi"], lambda n: setattr(n, "out", G.se3_generator(n.xi))),
        "Transform3DGrid": spec(["depth", "T"], lambda n: setattr(n, "out", G.transform_3d_grid(n.depth, n.T, K=K))),
        "PinholeProjection": spec(["points"], lambda n: setattr(n, "out", G.pinhole_projection(n.points, K=K))),
        "BilinearWarp": spec(["src", "coords"], lambda n: setattr(n, "out", G.bilinear_warp(n.src, n.coords))),
    }

    def chain(n, **out_kwargs):
        n.T = G.se3_generator(n.xi)
        n.points = G.transform_3d_grid(n.depth, n.T, K=K)
        n.coords = G.pinhole_projection(n.points, K=K)
        n.out = G.bilinear_warp(n.src, n.coords, **out_kwargs)
    # Training a pose (and later depth) network: the source image is data, gradients go to xi and depth.
    cases["chain"] = spec(["xi", "depth", "src"], lambda n: chain(n, loss_weight=1), learnable=("xi", "depth"))
    # The same with the gradient to the source image as well (e.g. warping learned feature maps).
    cases["chain + image grad"] = spec(["xi", "depth", "src"], chain)
    cases["PhotometricLoss (alpha 0.85)"] = spec(
        ["src", "tgt"], lambda n: setattr(n, "out", G.photometric_loss(n.src, n.tgt, alpha=0.85)))
    # The depth-learning losses, as a depth iteration runs them: the warped sources learn, the rest is data.
    cases[MIN_REPROJECTION] = spec(
        ["src", "src2", "tgt"], lambda n: setattr(n, "out", G.min_reprojection_loss(
            [n.src, n.src2], n.tgt, [n.src2, n.src], alpha=0.85)), learnable=("src", "src2"))
    cases[SMOOTHNESS] = spec(["disp", "tgt"], lambda n: setattr(n, "out", G.edge_aware_smoothness(n.disp, n.tgt)),
                             learnable=("disp",))
    runners = {}
    for name, (n, learnable) in cases.items():
        net = caffe_net(n, force_backward=not learnable)
        for b in net.inputs:
            net.blobs[b].data[...] = feeds[b]
        for b in learnable:
            net.params[b][0].data[...] = feeds[b]
        if name not in LOSSES:
            # dL/dout: set once (Caffe leaves a top's diff alone between iterations; with loss_weight it is also
            # what the forward's loss dot product reads), so that the timing is the layers', not a 5 MB copy.
            net.blobs["out"].diff[...] = output_gradient(net.blobs["out"].data.shape)

        def run(net=net):
            net.forward()
            net.backward()
        if name not in LOSSES:
            run()
            if not np.array_equal(net.blobs["out"].diff, output_gradient(net.blobs["out"].data.shape)):
                raise RuntimeError(f"{name}: caffe changed the output's diff; the benchmark's premise is wrong")
        runners[name] = (run, net)
    return runners


# ------------------------------------------------------------------------------------------------ torch side
def torch_cases(inp):
    import torch

    from pygeometry.torch_reference import (T_from, edge_aware_smoothness, grid, min_reprojection_loss, pixel_rays,
                                            project, se3, ssim_l1, warp)

    N, _, H, W = inp["src"].shape
    K = inp["K"]
    rays = pixel_rays(K, H, W)  # cached grid

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(True)  # noqa: E731
    xi, depth, src, tgt = t(inp["xi"]), t(inp["depth"]), t(inp["src"]), t(inp["tgt"])
    src_data = torch.from_numpy(np.ascontiguousarray(inp["src"]))  # no gradient: the image is data
    src2, disp = t(inp["src2"]), t(inp["disp"])
    src2_data, tgt_data = (torch.from_numpy(np.ascontiguousarray(inp[k])) for k in ("src2", "tgt"))
    with torch.no_grad():
        R0, t0 = se3(xi)
        points0 = grid(depth, R0, t0, rays)
        coords0 = project(points0, K)
    T0 = t(np.zeros((N, 4, 4), np.float32))
    points0, coords0 = t(points0.numpy()), t(coords0.numpy())

    def with_grad(fn, leaves):
        given = {}  # dL/dout, made on the first call (the output's shape is known then), as on the caffe side

        def run():
            for leaf in leaves:
                leaf.grad = None
            out = fn()
            if out.dim() == 0:
                out.backward()
            else:
                if "g" not in given:
                    given["g"] = torch.from_numpy(output_gradient(tuple(out.shape)))
                out.backward(given["g"])
        return run

    return {
        "SE3Generator": with_grad(lambda: T_from(xi), [xi]),
        "Transform3DGrid": with_grad(lambda: grid(depth, T0[:, :3, :3], T0[:, :3, 3], rays), [depth, T0]),
        "PinholeProjection": with_grad(lambda: project(points0, K), [points0]),
        "BilinearWarp": with_grad(lambda: warp(src, coords0), [src, coords0]),
        "chain": with_grad(lambda: warp(src_data, project(grid(depth, *se3(xi), rays), K)), [xi, depth]),
        "chain + image grad": with_grad(lambda: warp(src, project(grid(depth, *se3(xi), rays), K)), [xi, depth, src]),
        "PhotometricLoss (alpha 0.85)": with_grad(lambda: ssim_l1(src, tgt), [src, tgt]),
        MIN_REPROJECTION: with_grad(lambda: min_reprojection_loss([src, src2], tgt_data, [src2_data, src_data]),
                                    [src, src2]),
        SMOOTHNESS: with_grad(lambda: edge_aware_smoothness(disp, tgt_data), [disp]),
    }


def alexnet_iteration(inp):
    import caffe
    from caffe import layers as L

    from pygeometry.models import alexnet_trunk

    N, _, H, W = inp["src"].shape
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[N, 6, H, W]))
    n.label = L.Input(shape=dict(dim=[N, 6]))
    trunk = alexnet_trunk(n, n.data)
    n.pose = L.InnerProduct(trunk, num_output=6, weight_filler=dict(type="gaussian", std=0.001))
    n.loss = L.EuclideanLoss(n.pose, n.label)
    net = caffe_net(n, force_backward=False)
    net.blobs["data"].data[...] = np.concatenate([inp["src"][:, :3], inp["tgt"][:, :3]], 1) if \
        inp["src"].shape[1] >= 3 else 0

    def run():
        net.forward()
        net.backward()
    return run


def main():
    args = parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("bench_layers.py needs torch (benchmark only): .venv/bin/pip install torch==2.13.0")
    rng = np.random.default_rng(0)
    inp = make_inputs(args, rng)
    caffe_runs = caffe_cases(inp)
    torch_runs = torch_cases(inp)
    print(f"N={args.batch} C={args.channels} H={args.height} W={args.width} float32, forward+backward, median of "
          f"{args.repeats}; torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"numba threads {os.environ.get('NUMBA_NUM_THREADS', 'default')}")
    print(f"{'case':32s} {'pygeometry/caffe ms':>20s} {'torch ms':>10s} {'ratio':>7s}")
    results = {}
    names = list(caffe_runs)
    if args.cases:
        unknown = sorted(set(args.cases) - set(names))
        if unknown:
            sys.exit(f"unknown case(s) {unknown}; choose from {names}")
        names = [n for n in names if n in args.cases]
    for name in names:
        run = caffe_runs[name][0]
        # Alternate blocks of runs (not single runs), with a pause before each: the thread pools of numba,
        # OpenMP (torch) and OpenBLAS spin for a while after a call, and would make the other side pay.
        ours, ref = [], []
        block = max(1, args.repeats // 3)
        for _ in range(3):
            time.sleep(0.3)  # let the other side's spinning worker threads go to sleep first
            ours += [median_time(run, 1, warmup=0) for _ in range(block + 1)][1:]
            time.sleep(0.3)
            ref += [median_time(torch_runs[name], 1, warmup=0) for _ in range(block + 1)][1:]
        a, b = statistics.median(ours), statistics.median(ref)
        results[name] = a
        print(f"{name:32s} {a * 1e3:20.2f} {b * 1e3:10.2f} {a / b:7.2f}")
    if not args.no_alexnet and "chain" in results:
        t_alex = median_time(alexnet_iteration(inp), args.alexnet_repeats, warmup=1)
        chain = results["chain"]
        print(f"\nAlexNet early-fusion forward+backward (caffe, same N, H, W): {t_alex * 1e3:.1f} ms; "
              f"chain = {100 * chain / t_alex:.1f}% of it")


if __name__ == "__main__":
    main()
