#!/usr/bin/env python
"""The experiment report: train (or reuse) the pose networks of the comparison on the same data with the same
budget, evaluate them on the same test pairs, and write results/REPORT.md with tables and figures.

The comparison (EfficientNet-Lite0 trunk, the only ImageNet-trained weights these machines can get offline;
converted by scripts/convert_efficientnet_lite0.py, run here when models/ lacks it):
    supervised            late fusion, ImageNet init, L2 loss on the ground-truth pose (the upper reference)
    late_imagenet         late fusion (siamese trunk), photometric loss, ImageNet init, fine-tuned
    late_random           late fusion, photometric loss, random init
    early_imagenet        early fusion (6-channel stem: ImageNet stem copied and halved), ImageNet init
    early_random          early fusion, random init
    late_imagenet_frozen  late fusion, ImageNet features frozen (only the pose head learns)
    early_alexnet         early fusion with make train's AlexNet conv1..conv5 trunk, random init (the reference)
    late_alexnet_correlation  late fusion with make train's AlexNet, random init, the siamese conv1 features fused
                          by a Correlation (train.py --correlation 2; the late fusion that learns, issue 16)
    late_imagenet_correlation  late fusion, ImageNet init, fine-tuned, the siamese block2 features (stride 4)
                          fused by a Correlation (train.py --correlation 2), then block3..block7 (ImageNet init too)
    late_random_correlation    the same, random init
    late_imagenet_correlation_frozen  the same, the ImageNet features before the correlation frozen (the fusion,
                          block3..block7 and the head learn): can ImageNet features be matched into a pose?
each with --seeds seeds (Caffe's seed: head/trunk initialisation and data order). Every run is a
scripts/train.py run in <runs>/<experiment>/seed<k>/ with --resume auto, so an interrupted report resumes, and
a finished run (result.json, and run.json with the same settings) is reused, not retrained.

Evaluation on the dataset's test split: every run's network; the trivial baselines (identity, mean training
pose); the classical OpenCV baselines and photometric refinement of the best photometric network's first seed
(scripts/evaluate.py --classical --refine); and a trajectory on a rendered sequence (scripts/make_dataset.py
--sequence, into <data>/sequence/) with evo's ATE/RPE.

Writes <results>/REPORT.md, <results>/summary.json, per_run.csv, and the figures seeds.png, curves.png,
histograms.png, warp_grid.png, trajectory.png (each figure's caption in REPORT.md gives the command that made it).
The statistics over seeds and the conclusions derived from them by rule are pygeometry/stats.py's.

Example (what `make report` runs): scripts/report.py --data data/synthetic --iters 1000 --seeds 3 --jobs 2
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pygeometry.nets import SUPERVISED  # noqa: E402
from pygeometry.files import write_atomic  # noqa: E402
from pygeometry.report.figures import (METRIC_NAMES, figure_curves, figure_histograms, figure_seeds,  # noqa: E402
                                       figure_trajectory, figure_warp_grid)
from pygeometry.report.markdown import report_markdown  # noqa: E402
from pygeometry.report.runs import (WEIGHTS, Experiment, ReportError, baseline_errors, evaluate_runs,  # noqa: E402
                                    run_dir, run_evaluate_script, split_errors, train_all)
from pygeometry.stats import seed_stats  # noqa: E402


EXPERIMENTS = (
    Experiment("supervised", "supervised_pose", True, label="supervised (late, ImageNet, fine-tuned)"),
    Experiment("late_imagenet", "late_fusion_photometric", True, label="late fusion, ImageNet, fine-tuned"),
    Experiment("late_random", "late_fusion_photometric", False, label="late fusion, random init"),
    Experiment("early_imagenet", "early_fusion_photometric", True, label="early fusion, ImageNet, fine-tuned"),
    Experiment("early_random", "early_fusion_photometric", False, label="early fusion, random init"),
    Experiment("late_imagenet_frozen", "late_fusion_photometric", True, frozen=True,
               label="late fusion, ImageNet, frozen (head only)"),
    Experiment("early_alexnet", "early_fusion_photometric", False, backbone="alexnet",
               label="early fusion, AlexNet conv1-5, random init (make train's net)"),
    Experiment("late_alexnet_correlation", "late_fusion_photometric", False, backbone="alexnet",
               options=("--correlation", "2"), label="late fusion, AlexNet, conv1 features correlated, random init"),
    Experiment("late_imagenet_correlation", "late_fusion_photometric", True, options=("--correlation", "2"),
               label="late fusion by correlation, ImageNet, fine-tuned"),
    Experiment("late_random_correlation", "late_fusion_photometric", False, options=("--correlation", "2"),
               label="late fusion by correlation, random init"),
    Experiment("late_imagenet_correlation_frozen", "late_fusion_photometric", True, frozen=True,
               options=("--correlation", "2"), label="late fusion by correlation, ImageNet features frozen"),
)
BY_NAME = {e.name: e for e in EXPERIMENTS}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "data" / "synthetic",
                   help="dataset folder with train.txt, val.txt, test.txt (default data/synthetic; rendered if absent)")
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "report", help="run folders (default runs/report)")
    p.add_argument("--results", type=Path, default=REPO / "results", help="where REPORT.md and figures go")
    p.add_argument("--iters", type=int, default=1000, help="training iterations of every run (default 1000)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per experiment (default 3)")
    p.add_argument("--experiments", nargs="+", default=[e.name for e in EXPERIMENTS], choices=[e.name for e in EXPERIMENTS],
                   help="which experiments (default all)")
    p.add_argument("--jobs", type=int, default=2, help="training runs at once (default 2: one per core)")
    p.add_argument("--downsample", type=int, default=2, help="the trunk sees images block-averaged by this (default 2)")
    p.add_argument("--cut", default="block7", help="EfficientNet-Lite0 cut (default block7, stride 16)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of every run (default 2e-4)")
    p.add_argument("--weights", type=Path, default=WEIGHTS, help="converted ImageNet EfficientNet-Lite0 caffemodel")
    p.add_argument("--handheld", type=Path, default=REPO / "data" / "handheld",
                   help="handheld (6-DoF) dataset every run is also evaluated on (default data/handheld; rendered "
                        "if absent)")
    p.add_argument("--refine", type=int, default=10, help="LM refinement steps per level in the evaluation (0: none)")
    p.add_argument("--sequence-frames", type=int, default=24, help="frames of the rendered trajectory sequence")
    p.add_argument("--train-only", action="store_true", help="train the runs and stop (no evaluation, no report)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------------------- runs
def make_report(args, experiments, seeds) -> dict:
    from pygeometry import evaluation as ev

    results = args.results
    results.mkdir(parents=True, exist_ok=True)
    command = "scripts/report.py " + " ".join(args.argv) if args.argv else "scripts/report.py"
    test = ev.load_split(args.data / "test.txt")
    n_test = len(test["src"])
    errors = evaluate_runs(args, experiments, seeds, test)
    baselines = baseline_errors(args, test)

    # per-run table (CSV)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["experiment", "seed", "translation_m_mean", "translation_m_median", "rotation_deg_mean",
                "rotation_deg_median", "translation_dir_deg_mean", "photometric_l1_mean"])
    for (name, s), e in errors.items():
        w.writerow([name, s] + [f"{f(e[m]):.6g}" for m, f in (("translation_m", np.mean), ("translation_m", np.median),
                                                              ("rotation_deg", np.mean), ("rotation_deg", np.median),
                                                              ("translation_dir_deg", np.mean),
                                                              ("photometric_l1", np.mean))])
    write_atomic(results / "per_run.csv", buf.getvalue())

    names = [e.name for e in experiments]
    stats = {m: seed_stats(errors, names, seeds, m) for m in METRIC_NAMES}
    med = {m: seed_stats(errors, names, seeds, m, np.median) for m in ("translation_m", "rotation_deg")}
    # The best photometric network (for the refinement rows and the figures) is chosen on the validation split,
    # never on the test pairs it is then reported on.
    val_errors = evaluate_runs(args, experiments, seeds, ev.load_split(args.data / "val.txt"), args.data / "val.txt",
                               desc="validating runs")
    val_stats = {m: seed_stats(val_errors, names, seeds, m) for m in ("translation_m", "rotation_deg")}
    photometric = [e for e in experiments if e.network not in SUPERVISED]
    best = min(photometric or experiments, key=lambda e: val_stats["rotation_deg"][e.name][1]
               + val_stats["translation_m"][e.name][1] / 0.2)  # 0.2 m ~ 1 deg here: both errors count
    best_folder = run_dir(args, best, seeds[0])
    splits = {split: split_errors(args, experiments, seeds, split) for split in ("train", "handheld")}

    # classical baselines and refinement (scripts/evaluate.py on the best photometric run's first seed)
    extra = ["--train-split", str(args.data / "train.txt"), "--classical"]
    if args.refine:
        extra += ["--refine", str(args.refine)]
    eval_best = run_evaluate_script(args, best_folder, args.data / "test.txt", results / "eval_best", extra)
    classical = {}
    with open(results / "eval_best" / "per_pair.csv") as f:
        rows = list(csv.DictReader(f))
    for method in eval_best["methods"]:
        if method.startswith("classical pnp") or method.endswith("refinement"):
            classical[method] = {m: np.array([float(r[m]) for r in rows if r["method"] == method])
                                 for m in ("translation_m", "rotation_deg")}

    # rendered sequence and its trajectory
    seq_dir = args.data / "sequence"  # at the dataset's image size, beside it
    H, W = test["src"].shape[2:]
    if not (seq_dir / "sequence.txt").exists():
        subprocess.check_call([sys.executable, str(REPO / "scripts" / "make_dataset.py"), "--sequence",
                               str(args.sequence_frames), "--height", str(H), "--width", str(W), "--out", str(seq_dir)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    eval_seq = run_evaluate_script(args, best_folder, seq_dir / "sequence.txt", results / "eval_sequence",
                                   ["--classical"] + (["--refine", str(args.refine)] if args.refine else []))

    # figures
    figs = {}
    figs["seeds"] = results / "seeds.png"
    figure_seeds(experiments, stats, baselines, figs["seeds"], command)
    figs["curves"] = results / "curves.png"
    figure_curves(args, experiments, seeds, baselines, figs["curves"], command)
    figs["histograms"] = results / "histograms.png"
    figure_histograms(experiments, seeds, errors, baselines, classical, figs["histograms"], command)
    rng = np.random.default_rng(0)
    pairs = np.sort(rng.choice(n_test, size=min(4, n_test), replace=False))
    figs["warp_grid"] = results / "warp_grid.png"
    figure_warp_grid(best_folder, test, pairs, figs["warp_grid"], command,
                     f"{best.label or best.name}, seed {seeds[0]}")
    if eval_seq.get("trajectories"):
        figs["trajectory"] = results / "trajectory.png"
        figure_trajectory(eval_seq, figs["trajectory"], command)

    summary = {"command": command, "iters": args.iters, "seeds": seeds, "test_pairs": n_test,
               "data": str(args.data), "best_photometric": best.name, "best_chosen_on": "validation split",
               "validation": {e.name: {m: val_stats[m][e.name][1] for m in val_stats} for e in experiments},
               "splits": splits,
               "experiments": {e.name: {m: {"per_seed": stats[m][e.name][0].tolist(), "mean": stats[m][e.name][1],
                                            "std": stats[m][e.name][2]} for m in METRIC_NAMES} for e in experiments},
               "baselines": {k: ev.summarize(v) for k, v in baselines.items()},
               "evaluate_best": {k: eval_best[k] for k in ("methods", "refinement") if k in eval_best},
               "sequence": eval_seq.get("trajectories")}
    write_atomic(results / "summary.json", json.dumps(summary, indent=2))
    text = report_markdown(args, experiments, seeds, stats, med, baselines, eval_best, eval_seq, best, figs, command,
                           n_test, splits)
    write_atomic(results / "REPORT.md", text)
    print(f"wrote {results / 'REPORT.md'}")
    return summary


def main(argv=None):
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    args.data, args.runs, args.results = args.data.resolve(), args.runs.resolve(), args.results.resolve()
    args.handheld = args.handheld.resolve()
    experiments = [BY_NAME[n] for n in args.experiments]
    seeds = list(range(1, args.seeds + 1))
    try:
        if not (args.data / "test.txt").exists():
            print(f"{args.data} has no dataset: rendering the default one (scripts/make_dataset.py)")
            subprocess.check_call([sys.executable, str(REPO / "scripts" / "make_dataset.py"), "--out", str(args.data)])
        train_all(args, experiments, seeds)
        if args.train_only:
            return None
        return make_report(args, experiments, seeds)
    except ReportError as exc:
        sys.exit(f"report.py: error: {exc}")


if __name__ == "__main__":
    main()
