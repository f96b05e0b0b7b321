#!/usr/bin/env python
"""Evaluate a trained pose network on a split, next to baselines computed on the same pairs.

Input: a deploy prototxt (Input blobs src, tgt (N, 3, H, W) RGB in [0, 1], output xi (N, 6) predicting src_T_tgt)
with --weights (a .caffemodel) or --snapshot-prefix (the .caffemodel with the highest iteration), and a split in
the project's HDF5 format (a list file, one .h5 file, or a dataset folder, whose test.txt is used).

Methods (each on every pair of the split):
    network                 the net's prediction (batched forward; the last batch is padded and the padding dropped)
    network, mirror-averaged  --mirror-average: the mean of the net's pose for the pair and the pose for the pair
                            mirrored left-right, mapped back (Monodepth's post-processing; pygeometry.inference.predict)
    network + refinement    --refine N: Levenberg-Marquardt on the photometric error from the network's pose
                            (pygeometry/refine.py; from the identity with --no-net)
    identity                zero motion
    mean training pose      the mean pose vector of --train-split (when given)
    classical pnp / essential (--classical, default on): SIFT matches + solvePnPRansac with the target depth, and
                            the essential matrix with the scale from the depth (pygeometry/classical.py); failed
                            pairs fall back to the identity and are counted; "(ok pairs)" rows use the others only
Metrics per pair (pygeometry/evaluation.py): translation error (m, and % of the motion), translation direction
error (deg), geodesic rotation error (deg), photometric L1 error of the warp with the pose (pixels with depth > 0,
border padding); mean and median. When the split carries sequence information (tgt_frame/src_frame datasets),
chains of consecutive pairs become trajectories (TUM and KITTI files in <out>/trajectories/) with ATE (SE(3) and
Sim(3) alignment, stated) and RPE from evo.

Writes into --out (atomically): per_pair.csv (one row per pair and method), summary.json, trajectories/; prints
the table (method x metric, mean / median).

Examples:
    scripts/evaluate.py --deploy runs/x/deploy.prototxt --weights runs/x/final.caffemodel \\
        --split data/synthetic/test.txt --train-split data/synthetic/train.txt --refine 10 --out runs/x/eval
    scripts/evaluate.py --no-net --split data/synthetic/test.txt --out runs/baselines     # baselines only
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(len(os.sched_getaffinity(0))))  # as scripts/train.py

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pygeometry import evaluation as ev  # noqa: E402
from pygeometry.data.hdf5 import validate_split  # noqa: E402
from pygeometry.files import write_atomic  # noqa: E402
from pygeometry.inference import InferenceError, load_net, predict  # noqa: E402
from pygeometry.poses import pose_vector_from_matrix  # noqa: E402
from pygeometry.progress import progress_bar  # noqa: E402

PHOTOMETRIC = "photometric_l1"
MIRROR_AVERAGED = "network, mirror-averaged"
COLUMNS = ev.METRICS + (PHOTOMETRIC,)
SHORT = {"translation_m": "t (m)", "translation_pct": "t (%)", "translation_dir_deg": "t dir (deg)",
         "translation_scaled_m": "t scaled (m)", "rotation_deg": "rot (deg)", PHOTOMETRIC: "photo L1"}


class EvaluationError(Exception):
    """A problem with the inputs; main() prints it to stderr and exits with status 1."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deploy", type=Path, help="deploy prototxt (inputs src, tgt; output xi)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--weights", type=Path, help="trained weights (.caffemodel)")
    w.add_argument("--snapshot-prefix", help="snapshot prefix (e.g. runs/x/snap): uses <prefix>_iter_<N>.caffemodel "
                                             "with the highest N")
    p.add_argument("--no-net", action="store_true", help="evaluate the baselines only (no network)")
    p.add_argument("--split", type=Path, required=True,
                   help="split to evaluate: a list file (one .h5 per line), an .h5 file, or a dataset folder (test.txt)")
    p.add_argument("--train-split", type=Path, help="training split, for the mean-training-pose baseline (optional)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "evaluate", help="output folder (default runs/evaluate)")
    p.add_argument("--classical", action=argparse.BooleanOptionalAction, default=True,
                   help="run the classical OpenCV baselines (default on)")
    p.add_argument("--features", choices=("sift", "orb"), default="sift", help="classical baseline features")
    p.add_argument("--refine", type=int, default=0, metavar="N",
                   help="photometric refinement: N Levenberg-Marquardt trials per pyramid level (0 = off)")
    p.add_argument("--refine-levels", type=int, default=5, help="pyramid levels of the refinement (default 5)")
    p.add_argument("--mirror-average", action="store_true",
                   help="also report 'network, mirror-averaged': each pair predicted as given and mirrored "
                        "left-right, the two poses averaged (Monodepth's post-processing; twice the forward passes)")
    p.add_argument("--batch-size", type=int, default=8, help="forward batch size (default 8)")
    p.add_argument("--max-pairs", type=int, help="evaluate only the first N pairs of the split")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if not args.no_net:
        if args.deploy is None or (args.weights is None and args.snapshot_prefix is None):
            p.error("give --deploy and --weights (or --snapshot-prefix), or --no-net for the baselines only")
    if args.batch_size < 1 or args.refine < 0 or args.refine_levels < 1:
        p.error("--batch-size and --refine-levels must be >= 1, --refine >= 0")
    return args


# ----------------------------------------------------------------------------------------------------- network

def latest_snapshot(prefix) -> Path:
    """<prefix>_iter_<N>.caffemodel with the highest N (a folder as prefix: any *_iter_<N>.caffemodel in it)."""
    prefix = Path(prefix)
    folder, stem = (prefix, "*") if prefix.is_dir() else (prefix.parent, glob_escape(prefix.name))
    found = []
    for f in folder.glob(f"{stem}_iter_*.caffemodel"):
        m = re.search(r"_iter_(\d+)\.caffemodel$", f.name)
        if m:
            found.append((int(m.group(1)), f))
    if not found:
        raise EvaluationError(f"no snapshot {prefix}_iter_<N>.caffemodel found")
    return max(found)[1]


def glob_escape(name: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", name)


# ----------------------------------------------------------------------------------------------------- output

def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _fmt(x, metric):
    return f"{x:.4f}" if metric in ("translation_m", "translation_scaled_m", PHOTOMETRIC) else f"{x:.2f}"


def format_table(methods: dict) -> str:
    """Method x metric table, each cell "mean / median"."""
    width = max(len(m) for m in methods) + 2
    head = f"{'method':{width}s}" + "".join(f"{SHORT[c] + ' mean/med':>22s}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, row in methods.items():
        cells = "".join(f"{_fmt(row[c]['mean'], c) + ' / ' + _fmt(row[c]['median'], c):>22s}" for c in COLUMNS)
        lines.append(f"{name:{width}s}{cells}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- evaluation

def resolve_split(split: Path) -> Path:
    return split / "test.txt" if split.is_dir() else split


def evaluate(args) -> dict:
    split = resolve_split(args.split)
    # One message naming the file and the pair for a truncated/corrupt file, a missing key or file, NaN/inf.
    validate_split(split, keys=ev.REQUIRED_KEYS)
    data = ev.load_split(split)
    n_all = len(data["src"])
    if args.max_pairs:
        data = {k: v[:args.max_pairs] for k, v in data.items()}
    n = len(data["src"])
    H, W = data["src"].shape[2:]
    progress = not args.no_progress
    bar = lambda it, desc: progress_bar(it, enabled=progress, desc=desc, unit="pair", leave=False)  # noqa: E731
    summary = {"command": " ".join([sys.executable, str(Path(__file__))] + list(args.argv)), "split": str(split), "pairs": n,
               "pairs_in_split": n_all, "image_size_hw": [int(H), int(W)],
               "definitions": {
                   "translation_m": "|t_pred - t_gt| (m)",
                   "translation_pct": f"100 |t_pred - t_gt| / max(|t_gt|, {ev.MIN_MOTION_M} m)",
                   "translation_dir_deg": f"angle(t_pred, t_gt); 0 if both |t| < {ev.MIN_MOTION_M} m, 90 if one is",
                   "translation_scaled_m": "|s t_pred - t_gt| with s = max(0, t_pred . t_gt) / |t_pred|^2 per pair "
                                           f"(0 if |t_pred| < {ev.MIN_MOTION_M} m)",
                   "rotation_deg": "geodesic angle of R_gt^T R_pred",
                   PHOTOMETRIC: "mean |warp(src, pose) - tgt| over channels and pixels with depth > 0, border padding",
                   "pose": "src_T_tgt (maps target-camera points into the source camera)"}}
    poses, extra = {}, {}     # method -> (N, 4, 4); method -> {"status": [...], "time_s": (N,)}
    gt = data["src_T_tgt"]

    if not args.no_net:
        weights = args.weights or latest_snapshot(args.snapshot_prefix)
        net = load_net(args.deploy, weights, H, W, split, args.batch_size)
        t0 = time.perf_counter()
        xi_net = predict(net, data["src"], data["tgt"], args.batch_size, progress)
        poses["network"] = ev.se3_forward(xi_net)
        extra["network"] = {"time_s": np.full(n, (time.perf_counter() - t0) / n)}
        if args.mirror_average:
            t0 = time.perf_counter()
            poses[MIRROR_AVERAGED] = ev.se3_forward(predict(net, data["src"], data["tgt"], args.batch_size, progress,
                                                            mirror_average=True))
            extra[MIRROR_AVERAGED] = {"time_s": np.full(n, (time.perf_counter() - t0) / n)}
        summary.update(deploy=str(args.deploy), weights=str(weights))
    poses["identity"] = np.tile(np.eye(4), (n, 1, 1))
    if args.train_split:
        train_split = resolve_split(args.train_split)
        validate_split(train_split, keys=("src_T_tgt",))
        train = ev.load_split(train_split, keys=("src_T_tgt",), optional=("xi_gt",))
        xi_train = train["xi_gt"] if "xi_gt" in train else pose_vector_from_matrix(train["src_T_tgt"])
        poses["mean training pose"] = ev.se3_forward(ev.baseline_predictions(xi_train, n)["mean training pose"])
        summary["train_split"] = str(train_split)
    if args.classical:
        from pygeometry.classical import classical_baseline, failure_counts

        for method in ("pnp", "essential"):
            name = f"classical {method} ({args.features})"
            res = classical_baseline(data["src"], data["tgt"], data["tgt_depth"], data["K"], method, args.features,
                                     progress=lambda r, d=name: bar(r, d))
            poses[name] = np.stack([r.src_T_tgt for r in res])
            extra[name] = {"status": [r.status for r in res], "time_s": np.array([r.time_s for r in res]),
                           "failures": failure_counts(res)}
    if args.refine > 0:
        from pygeometry.refine import refine_poses

        start = "network" if "network" in poses else "identity"
        name = f"{start} + refinement"
        res = refine_poses(data["src"], data["tgt"], data["tgt_depth"], data["K"], pose_vector_from_matrix(poses[start])
                           if start != "network" else xi_net, args.refine, args.refine_levels,
                           progress=lambda r: bar(r, "refinement"))
        poses[name] = ev.se3_forward(np.stack([r.xi for r in res]))
        extra[name] = {"time_s": np.array([r.time_s for r in res])}
        summary["refinement"] = {"start": start, "trials_per_level": args.refine, "levels": args.refine_levels,
                                 "time_s_per_pair": ev.summarize({"t": extra[name]["time_s"]})["t"],
                                 "photometric_before_mean": float(np.mean([r.photometric_before for r in res])),
                                 "photometric_after_mean": float(np.mean([r.photometric_after for r in res])),
                                 "kept_start_pairs": int(sum(np.array_equal(r.xi, r.xi_start) for r in res))}

    errors = {}
    for name, T in progress_bar(poses.items(), enabled=progress, desc="metrics", leave=False):
        e = ev.transform_errors(T, gt)
        e[PHOTOMETRIC] = ev.photometric_errors(data["src"], data["tgt"], data["tgt_depth"], data["K"], T)
        errors[name] = e
    table = {}
    methods_json = {}
    for name, e in errors.items():
        table[name] = ev.summarize(e)
        methods_json[name] = dict(table[name])
        if "time_s" in extra.get(name, {}):
            methods_json[name]["time_s_per_pair"] = ev.summarize({"t": extra[name]["time_s"]})["t"]
        if "status" in extra.get(name, {}):
            ok = np.array([s == "ok" for s in extra[name]["status"]])
            methods_json[name].update(failures=extra[name]["failures"], ok_pairs=int(ok.sum()), failed_pairs=int(n - ok.sum()),
                                      fallback="identity pose for failed pairs")
            if ok.any():
                table[f"{name} (ok pairs)"] = ev.summarize({k: v[ok] for k, v in e.items()})
                methods_json[name]["ok_pairs_only"] = table[f"{name} (ok pairs)"]
    summary["methods"] = methods_json
    if "refinement" in summary:
        summary["refinement"]["gap_closed"] = gap_closed(table, summary["refinement"]["start"],
                                                         f"{summary['refinement']['start']} + refinement",
                                                         f"classical pnp ({args.features})")

    summary["trajectories"] = trajectories(args.out, data, poses, gt)
    write_outputs(args.out, data, poses, errors, extra, summary)
    summary["table"] = table
    return summary


def gap_closed(table, start, refined, reference) -> dict:
    """Fraction of the gap between the start and the classical baseline that the refinement closes, per metric
    and statistic: (start - refined) / (start - reference); None when the start is not worse than the reference
    (no gap) or the reference was not computed."""
    out = {"reference": reference, "formula": "(start - refined) / (start - reference)"}
    for metric in ("translation_m", "rotation_deg", PHOTOMETRIC):
        for stat in ("mean", "median"):
            key = f"{metric}_{stat}"
            if reference not in table:
                out[key] = None
                continue
            s, r, c = (table[m][metric][stat] for m in (start, refined, reference))
            out[key] = float((s - r) / (s - c)) if s - c > 1e-12 else None
    return out


def trajectories(out: Path, data, poses, gt) -> list:
    chains = ev.find_chains(data)
    result = []
    if not chains:
        return result
    folder = out / "trajectories"
    folder.mkdir(parents=True, exist_ok=True)
    for i, idx in enumerate(chains):
        frames = np.r_[data["tgt_frame"][idx], data["src_frame"][idx[-1]]]
        if "tgt_time" in data and "src_time" in data:
            stamps = np.r_[data["tgt_time"][idx], data["src_time"][idx[-1]]]
        else:
            stamps = frames.astype(np.float64)
        seq = int(data["sequence"][idx[0]]) if "sequence" in data else 0
        name = f"seq{seq}_chain{i}"
        entry = {"name": name, "sequence": seq, "pairs": int(len(idx)), "first_frame": int(frames[0]),
                 "last_frame": int(frames[-1]), "methods": {}, "files": {}}
        gt_written = False
        for method, T in poses.items():
            r = ev.trajectory_metrics(gt[idx], T[idx], stamps)
            if not gt_written:
                entry["files"]["ground truth"] = {k: str(v) for k, v in
                                                  ev.write_trajectory_files(folder / f"{name}_gt", r["gt"], stamps).items()}
                gt_written = True
            entry["files"][method] = {k: str(v) for k, v in
                                      ev.write_trajectory_files(folder / f"{name}_{slug(method)}", r["pred"], stamps).items()}
            entry["methods"][method] = r["metrics"]
        result.append(entry)
    return result


def write_outputs(out: Path, data, poses, errors, extra, summary):
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["pair", "file", "row", "method", "status", "tx", "ty", "tz", "wx", "wy", "wz"] + list(COLUMNS)
                    + ["time_s"])
    n = len(data["src"])
    for name, T in poses.items():
        xi = pose_vector_from_matrix(T)
        status = extra.get(name, {}).get("status", ["ok"] * n)
        times = extra.get(name, {}).get("time_s", np.full(n, np.nan))
        for i in range(n):
            writer.writerow([i, data["file"][i], int(data["row"][i]), name, status[i]] + [f"{v:.6g}" for v in xi[i]]
                            + [f"{errors[name][c][i]:.6g}" for c in COLUMNS]
                            + ["" if np.isnan(times[i]) else f"{times[i]:.4g}"])
    write_atomic(out / "per_pair.csv", buf.getvalue())
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))


def print_report(summary):
    print(f"split {summary['split']}: {summary['pairs']} pairs, {summary['image_size_hw'][0]}x"
          f"{summary['image_size_hw'][1]}" + (f"; net {summary['deploy']} + {summary['weights']}"
                                               if "deploy" in summary else "; no network"))
    print(format_table(summary["table"]))
    for name, m in summary["methods"].items():
        if "failures" in m:
            fails = ", ".join(f"{k} {v}" for k, v in m["failures"].items() if k != "ok" and v)
            print(f"{name}: {m['ok_pairs']}/{summary['pairs']} ok" + (f"; failed: {fails} (identity used)" if fails else "")
                  + f"; {m['time_s_per_pair']['mean'] * 1000:.0f} ms/pair")
    r = summary.get("refinement")
    if r:
        g = r["gap_closed"]
        pct = lambda v: "n/a" if v is None else f"{100 * v:.0f}%"  # noqa: E731
        print(f"refinement from {r['start']}: photometric L1 {r['photometric_before_mean']:.4f} -> "
              f"{r['photometric_after_mean']:.4f}; {r['time_s_per_pair']['mean']:.2f} s/pair; gap to {g['reference']} "
              f"closed (mean): translation {pct(g['translation_m_mean'])}, rotation {pct(g['rotation_deg_mean'])}")
    for t in summary["trajectories"]:
        print(f"trajectory {t['name']} ({t['pairs']} pairs, frames {t['first_frame']}..{t['last_frame']}):")
        for name, m in t["methods"].items():
            print(f"  {name:30s} ATE rmse {m['ate_se3']['rmse']:.4f} m (SE(3) aligned), {m['ate_sim3']['rmse']:.4f} m "
                  f"(Sim(3)); RPE rmse {m['rpe_trans_m']['rmse']:.4f} m, {m['rpe_rot_deg']['rmse']:.3f} deg")


def main(argv=None):
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    try:
        summary = evaluate(args)
    except (EvaluationError, InferenceError, ev.SplitError) as exc:
        sys.exit(f"evaluate.py: error: {exc}")
    print_report(summary)
    print(f"wrote {args.out / 'per_pair.csv'} and {args.out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main()
