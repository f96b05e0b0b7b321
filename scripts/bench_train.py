#!/usr/bin/env python
"""Benchmark one training iteration of the shipped pose networks in Caffe against a faithful PyTorch replica
(pygeometry.torch_reference: PoseNetReplica and CaffeAdam), side by side in one run, per part.

Steps: render a small dataset (scripts/make_dataset.py, 16/4/4 pairs at 64 x 208) into a temporary folder; per
network, write the train net pygeometry.nets.pose_net(name, "train", ...) with its defaults (batch 8) and a solver
(pygeometry.nets.solver_text) and make a caffe solver; check that the replica computes the same losses, parameter
gradients and Adam updates on the same batch and weights (pygeometry.torch_reference.check_against_caffe; exit
status 1 with the differences if not); then time alternating blocks, a Caffe block then a PyTorch block, --rounds
times. A block is --iters-per-block iterations timed per part, then as many whole iterations, each after one
untimed warm-up iteration and a 0.3 s pause (the thread pools of numba, OpenMP and OpenBLAS spin for a while after
a call and would make the other side pay). Medians over all blocks; the whole-iteration ratio is also paired: the
ratio of the two sides' medians within each round, reported as the median over rounds (min..max).

Parts (ratio = Caffe / PyTorch, > 1: Caffe is slower):
    data     HDF5Data (Caffe only: the replica reads tensors already in memory)
    trunk    from the images to xi: the trunk's input pooling, preprocessing, conv/LRN/pool, the pose head
    chain    SE3Generator, Transform3DGrid, PinholeProjection, the 4 warps, the pyramid's pooling, Power and
             Threshold layers (supervised_pose: the Slice layers of xi and xi_gt)
    losses   PhotometricLoss (4 levels) or EuclideanLoss (t, w)
    update   clip_gradients, weight decay, Adam
    whole    one real solver.step(1) against one whole torch iteration (zero_grad, forward, backward, clip, step)
Caffe per part: each layer's forward net._forward(i, i) and, in reverse order, its backward net._backward(i, i) are
timed and summed by part (caffe_parts below says which layer goes where); update: solver.apply_update() (with a
pycaffe that lacks it, estimated as the median whole step minus the median forward + backward). PyTorch per part:
the graph is cut at detached leaves (trunk -> xi -> chain -> warped images -> losses) and each segment's forward and
its backward (torch.autograd.backward with the gradients arriving from downstream) are timed in the same iteration.

Threads: Caffe's OpenBLAS one per core (OPENBLAS_NUM_THREADS, as scripts/train.py), numba's default; torch
torch.set_num_threads(2) (--torch-threads). On a machine that is busy with other work, two OpenMP threads wait for
each other: measured here, a torch Adam step took 0.25-0.5 s with 2 threads against 22 ms with 1. Denormals are
flushed in the main thread (pygeometry.denormals). torch is a benchmark-only dependency: `pip install torch==2.13.0`
(`make bench` does it).

Example: scripts/bench_train.py --network all --rounds 3 --json results/bench_train.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(len(os.sched_getaffinity(0))))  # as scripts/train.py

from tqdm import tqdm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pygeometry.denormals import flush_denormals  # noqa: E402
from pygeometry.nets import NETWORKS  # noqa: E402

PARTS = ("data", "trunk", "chain", "losses", "update")
TORCH_THREADS = 2
PAUSE_S = 0.3


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--network", choices=NETWORKS + ("all",), default="early_fusion_photometric",
                   help="network to benchmark, or all three (default early_fusion_photometric)")
    p.add_argument("--rounds", type=int, default=5, help="alternating Caffe/PyTorch rounds (default 5)")
    p.add_argument("--iters-per-block", type=int, default=4,
                   help="timed iterations per block, per-part and whole each (default 4)")
    p.add_argument("--check-only", action="store_true", help="only check that the replica equals Caffe")
    p.add_argument("--torch-threads", type=int, default=TORCH_THREADS,
                   help=f"torch.set_num_threads (default {TORCH_THREADS}: one per core of the 2-core machine)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.iters_per_block < 1 or args.torch_threads < 1:
        p.error("--rounds, --iters-per-block and --torch-threads must be at least 1")
    return args


def make_dataset(out: Path):
    """The small rendered dataset (16 train, 4 val, 4 test pairs at the default 64 x 208)."""
    cmd = [sys.executable, str(REPO / "scripts" / "make_dataset.py"), "--out", str(out), "--train", "16", "--val",
           "4", "--test", "4", "--workers", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench_train.py: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")


def caffe_parts(net):
    """The part of each layer of a caffe.Net, in layer order:
    data: layers without bottoms (HDF5Data); trunk: the layers that blob xi depends on (found by walking the tops
    and bottoms back from xi, so a pooling shared by the trunk and the pyramid counts as trunk); losses: layers with
    a top that carries a loss weight; chain: every other layer."""
    names = list(net._layer_names)
    loss_blobs = {b for b, w in net.blob_loss_weights.items() if w}
    needed, trunk = {"xi"}, set()
    for i in reversed(range(len(names))):
        tops, bottoms = net.top_names[names[i]], net.bottom_names[names[i]]
        if bottoms and needed & set(tops):
            trunk.add(i)
            needed |= set(bottoms)
    parts = []
    for i, name in enumerate(names):
        if not net.bottom_names[name]:
            parts.append("data")
        elif i in trunk:
            parts.append("trunk")
        elif loss_blobs & set(net.top_names[name]):
            parts.append("losses")
        else:
            parts.append("chain")
    return parts


class CaffeSide:
    def __init__(self, solver):
        self.solver, self.net = solver, solver.net
        self.parts = caffe_parts(self.net)
        self.has_apply_update = hasattr(solver, "apply_update")

    def iteration(self):
        """One iteration timed per part: {part: seconds}; update None without Solver.apply_update."""
        net, parts = self.net, self.parts
        times = dict.fromkeys(PARTS, 0.0)
        net.clear_param_diffs()  # (untimed; solver.step does it too)
        for i in range(len(parts)):
            t0 = time.perf_counter()
            net._forward(i, i)
            times[parts[i]] += time.perf_counter() - t0
        for i in reversed(range(len(parts))):
            t0 = time.perf_counter()
            net._backward(i, i)
            times[parts[i]] += time.perf_counter() - t0
        if self.has_apply_update:
            t0 = time.perf_counter()
            self.solver.apply_update()
            times["update"] = time.perf_counter() - t0
        else:
            times["update"] = None
        return times

    def whole(self):
        t0 = time.perf_counter()
        self.solver.step(1)
        return time.perf_counter() - t0


class TorchSide:
    def __init__(self, replica, optimizer, batch):
        self.replica, self.optimizer, self.batch = replica, optimizer, batch

    def iteration(self):
        """One iteration timed per segment (the graph cut at detached leaves): {part: seconds}."""
        import torch

        replica, batch, pc = self.replica, self.batch, time.perf_counter
        self.optimizer.zero_grad()
        t0 = pc()
        pyramids = {}  # the images' block averages: the trunk's input level is the chain's s2 level
        xi = replica.trunk(batch["src"], batch["tgt"], pyramids)
        t1 = pc()
        xi_leaf = xi.detach().requires_grad_()
        levels = replica.chain(xi_leaf, batch, pyramids)
        t2 = pc()
        cut = {k: (p.detach().requires_grad_(), target, mask) for k, (p, target, mask) in levels.items()}
        total = replica.total(replica.losses(cut))
        t3 = pc()
        total.backward()
        t4 = pc()
        torch.autograd.backward([levels[k][0] for k in levels], [cut[k][0].grad for k in levels])
        t5 = pc()
        torch.autograd.backward(xi, xi_leaf.grad)
        t6 = pc()
        self.optimizer.step()
        t7 = pc()
        return {"data": None, "trunk": (t1 - t0) + (t6 - t5), "chain": (t2 - t1) + (t5 - t4),
                "losses": (t3 - t2) + (t4 - t3), "update": t7 - t6}

    def whole(self):
        t0 = time.perf_counter()
        self.optimizer.zero_grad()
        self.replica.total(self.replica(self.batch)).backward()
        self.optimizer.step()
        return time.perf_counter() - t0


def timed_block(side, iters):
    """iters per-part iterations and iters whole iterations, each after one untimed warm-up."""
    time.sleep(PAUSE_S)
    parts = [side.iteration() for _ in range(iters + 1)][1:]
    wholes = [side.whole() for _ in range(iters + 1)][1:]
    return parts, wholes


def median_ms(values):
    values = [v for v in values if v is not None]
    return 1e3 * statistics.median(values) if values else None


def summarize(caffe_parts_runs, torch_parts_runs, caffe_wholes, torch_wholes, rounds_ratio, estimated_update):
    """Medians per part and the whole-iteration ratios."""
    rows = {}
    for part in PARTS:
        c = median_ms([r[part] for r in caffe_parts_runs])
        t = median_ms([r[part] for r in torch_parts_runs])
        rows[part] = {"caffe_ms": c, "torch_ms": t}
    if estimated_update:  # pycaffe without apply_update: update = whole step - forward/backward
        fb = median_ms([sum(r[p] for p in PARTS if p != "update") for r in caffe_parts_runs])
        rows["update"]["caffe_ms"] = max(median_ms(caffe_wholes) - fb, 0.0)
        rows["update"]["caffe_estimated"] = True
    rows["sum of parts"] = {
        side: sum(rows[p][side] for p in PARTS if rows[p][side] is not None) for side in ("caffe_ms", "torch_ms")}
    rows["whole"] = {"caffe_ms": median_ms(caffe_wholes), "torch_ms": median_ms(torch_wholes)}
    for row in rows.values():
        c, t = row["caffe_ms"], row["torch_ms"]
        row["ratio"] = c / t if c is not None and t else None
    return {"parts": rows, "whole_paired_ratio": {"median": statistics.median(rounds_ratio), "min": min(rounds_ratio),
                                                  "max": max(rounds_ratio), "per_round": rounds_ratio}}


def bench_network(name, data_dir, args, progress):
    import caffe
    import torch

    from pygeometry import torch_reference as TR

    with tempfile.TemporaryDirectory(prefix=f"bench_train_{name}_") as work:
        caffe.set_random_seed(1)
        solver, text = TR.caffe_train_solver(name, data_dir, work)
        replica = TR.PoseNetReplica.from_caffe(name, solver.net)
        report = TR.check_against_caffe(solver, replica, TR.CaffeAdam.from_solver_text(text, replica.param_specs()))
        tqdm.write(report.summary())
        if not report.ok:
            sys.exit(f"bench_train.py: the PyTorch replica of {name} differs from Caffe (above): no timing")
        check = {"losses": report.losses, "worst_gradient_error": max(report.gradient_errors.values()),
                 "worst_update_error": max(report.update_errors.values(), default=None)}
        if args.check_only:
            return {"check": check}
        batch = {b: torch.from_numpy(solver.net.blobs[b].data.copy()) for b in TR.BATCH_BLOBS}
        optimizer = TR.CaffeAdam.from_solver_text(text, replica.param_specs(), iteration=solver.iter)
        caffe_side, torch_side = CaffeSide(solver), TorchSide(replica, optimizer, batch)
        caffe_runs, torch_runs, caffe_wholes, torch_wholes, ratios = [], [], [], [], []
        for _ in range(args.rounds):
            c_parts, c_wholes = timed_block(caffe_side, args.iters_per_block)
            t_parts, t_wholes = timed_block(torch_side, args.iters_per_block)
            caffe_runs += c_parts
            torch_runs += t_parts
            caffe_wholes += c_wholes
            torch_wholes += t_wholes
            ratios.append(statistics.median(c_wholes) / statistics.median(t_wholes))
            progress.update(1)
        result = summarize(caffe_runs, torch_runs, caffe_wholes, torch_wholes, ratios,
                           estimated_update=not caffe_side.has_apply_update)
        N, _, H, W = solver.net.blobs["src"].data.shape
        layers = {part: [n for n, p in zip(solver.net._layer_names, caffe_side.parts) if p == part] for part in PARTS}
        return {"check": check, "batch": int(N), "height": int(H), "width": int(W), "caffe_layers": layers, **result}


def table(name, result):
    def ms(v):
        return "-" if v is None else f"{v:.1f}"

    def ratio(v):
        return "-" if v is None else f"{v:.2f}"

    lines = [f"### {name} (N={result['batch']}, {result['height']} x {result['width']})", "",
             "| part | Caffe median ms | PyTorch median ms | ratio |", "|---|---:|---:|---:|"]
    for part, row in result["parts"].items():
        label = part + (" (estimated)" if row.get("caffe_estimated") else "")
        lines.append(f"| {label} | {ms(row['caffe_ms'])} | {ms(row['torch_ms'])} | {ratio(row['ratio'])} |")
    p = result["whole_paired_ratio"]
    lines += ["", f"whole iteration, paired ratio Caffe / PyTorch per round: median {p['median']:.2f} "
                  f"(min {p['min']:.2f} .. max {p['max']:.2f}, {len(p['per_round'])} rounds)", ""]
    return "\n".join(lines)


def write_json_atomic(path: Path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit("bench_train.py needs torch (benchmark only): .venv/bin/pip install torch==2.13.0")
    torch.set_num_threads(args.torch_threads)
    flush_denormals()
    names = NETWORKS if args.network == "all" else (args.network,)
    disable = args.no_progress or not sys.stderr.isatty()
    settings = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                "numba_threads": os.environ.get("NUMBA_NUM_THREADS", "default"), "rounds": args.rounds,
                "iters_per_block": args.iters_per_block}
    print(f"float32, CPU; torch {settings['torch']} with torch.set_num_threads({args.torch_threads}); OpenBLAS "
          f"threads {settings['openblas_threads']}, numba threads {settings['numba_threads']}; {args.rounds} "
          f"round{'s' if args.rounds > 1 else ''} of {args.iters_per_block} iteration"
          f"{'s' if args.iters_per_block > 1 else ''} per block and side")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_train_data_") as data_dir:
        make_dataset(Path(data_dir))
        with tqdm(total=0 if args.check_only else len(names) * args.rounds, desc="rounds", disable=disable) as bar:
            for name in names:
                results[name] = bench_network(name, data_dir, args, bar)
    if not args.check_only:
        print()
        for name, result in results.items():
            print(table(name, result))
    if args.json:
        write_json_atomic(args.json, {"settings": settings, "networks": results})


if __name__ == "__main__":
    main()
