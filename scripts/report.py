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
import concurrent.futures as cf
import csv
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402  (tqdm.write: log lines that keep a bar intact)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pygeometry.files import atomic_output, write_atomic  # noqa: E402
from pygeometry.inference import load_net, predict  # noqa: E402
from pygeometry.poses import pose_vector_from_matrix  # noqa: E402
from pygeometry.progress import progress_bar  # noqa: E402
from pygeometry.stats import (best_baseline_means, compare, conclusions, seed_stats,  # noqa: E402
                              seeds_better)

PY = sys.executable
WEIGHTS = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.caffemodel"


@dataclass(frozen=True)
class Experiment:
    name: str
    network: str
    imagenet: bool
    frozen: bool = False
    label: str = ""
    backbone: str = "efficientnet"

    @property
    def fusion(self):
        return "early" if self.network.startswith("early") else "late"


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
)
BY_NAME = {e.name: e for e in EXPERIMENTS}


class ReportError(Exception):
    pass


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
    p.add_argument("--refine", type=int, default=10, help="LM refinement steps per level in the evaluation (0: none)")
    p.add_argument("--sequence-frames", type=int, default=24, help="frames of the rendered trajectory sequence")
    p.add_argument("--train-only", action="store_true", help="train the runs and stop (no evaluation, no report)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------------------- runs
def run_dir(args, exp: Experiment, seed: int) -> Path:
    return args.runs / exp.name / f"seed{seed}"


def train_command(args, exp: Experiment, seed: int) -> list[str]:
    cmd = [PY, str(REPO / "scripts" / "train.py"), "--network", exp.network, "--data", str(args.data),
           "--out", str(run_dir(args, exp, seed)), "--iters", str(args.iters), "--lr", str(args.lr),
           "--backbone", exp.backbone, "--cut", args.cut if exp.backbone == "efficientnet" else "conv5",
           "--downsample", str(args.downsample),
           "--seed", str(seed), "--val-interval", str(max(1, args.iters // 4)),
           "--snapshot-interval", str(max(1, args.iters // 2)), "--resume", "auto", "--no-progress"]
    if exp.imagenet:
        cmd += ["--weights", str(args.weights)]
    if exp.frozen:
        cmd += ["--trunk-lr-mult", "0"]
    return cmd


def settings_of(cmd: list[str]) -> list[str]:
    """The part of a train command that defines the run (not the interpreter path or the resume flag)."""
    out = list(cmd[2:])
    i = out.index("--resume")
    del out[i:i + 2]
    return out


def run_state(args, exp, seed) -> str:
    """'done' (result.json for these settings), 'partial' (same settings, unfinished) or 'new'."""
    folder = run_dir(args, exp, seed)
    meta = folder / "run.json"
    if not meta.exists():
        if folder.exists() and any(folder.iterdir()):
            raise ReportError(f"{folder} holds files but no run.json: not made by report.py; move it away or pick "
                              f"another --runs")
        return "new"
    recorded = json.loads(meta.read_text())["settings"]
    wanted = settings_of(train_command(args, exp, seed))
    if recorded != wanted:
        raise ReportError(f"{folder} was trained with other settings:\n  {' '.join(recorded)}\nnot\n  "
                          f"{' '.join(wanted)}\nmove it away, or pick another --runs")
    return "done" if (folder / "result.json").exists() else "partial"


def train_one(args, exp, seed) -> float:
    folder = run_dir(args, exp, seed)
    folder.mkdir(parents=True, exist_ok=True)
    cmd = train_command(args, exp, seed)
    write_atomic(folder / "run.json", json.dumps({"experiment": exp.name, "seed": seed, "command": " ".join(cmd),
                                                  "settings": settings_of(cmd)}, indent=2))
    env = dict(os.environ)
    if args.jobs > 1:  # one core per run: numba's and OpenBLAS's pools would fight the other runs
        env.update(NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    t0 = time.time()
    with open(folder / "stdout.log", "a") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if rc != 0 or not (folder / "result.json").exists():
        raise ReportError(f"training {exp.name} seed {seed} failed (exit {rc}); see {folder / 'stdout.log'}")
    if exp.imagenet and "initialised" not in (folder / "train.log").read_text():
        raise ReportError(f"{folder}: the run did not start from {args.weights} (no 'initialised' in train.log)")
    return time.time() - t0


def train_all(args, experiments, seeds) -> dict:
    if any(e.imagenet for e in experiments) and not args.weights.exists():
        if args.weights != WEIGHTS:
            raise ReportError(f"--weights {args.weights} does not exist")
        print(f"{WEIGHTS} is missing: converting EfficientNet-Lite0 (scripts/convert_efficientnet_lite0.py)")
        subprocess.check_call([PY, str(REPO / "scripts" / "convert_efficientnet_lite0.py"), "--install-torch"])
    jobs = [(e, s) for s in seeds for e in experiments]  # seed-major: one of each experiment comes first
    todo = [(e, s) for e, s in jobs if run_state(args, e, s) != "done"]
    print(f"{len(jobs)} runs ({len(experiments)} experiments x {len(seeds)} seeds, {args.iters} iterations each); "
          f"{len(jobs) - len(todo)} reused, {len(todo)} to train with {args.jobs} at once")
    times = {}
    with cf.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool, \
            progress_bar(total=len(todo), enabled=not args.no_progress, desc="training runs", unit="run") as bar:
        futures = {pool.submit(train_one, args, e, s): (e, s) for e, s in todo}
        for fut in cf.as_completed(futures):
            e, s = futures[fut]
            times[(e.name, s)] = fut.result()
            bar.update(1)
            tqdm.write(f"trained {e.name} seed {s} in {times[(e.name, s)]:.0f} s")
    return times


# ----------------------------------------------------------------------------------------------- evaluation
METRIC_NAMES = {"translation_m": "translation error (m)", "rotation_deg": "rotation error (deg)",
                "translation_dir_deg": "translation direction error (deg)", "photometric_l1": "photometric L1"}


def evaluate_runs(args, experiments, seeds, test) -> dict:
    """Per-pair errors of every run's final network on the test pairs: {(experiment, seed): {metric: (N,)}}."""
    from pygeometry import evaluation as ev

    H, W = test["src"].shape[2:]
    out = {}
    jobs = [(e, s) for e in experiments for s in seeds]
    for e, s in progress_bar(jobs, enabled=not args.no_progress, desc="evaluating runs", unit="run"):
        folder = run_dir(args, e, s)
        net = load_net(folder / "deploy.prototxt", folder / "final.caffemodel", H, W, args.data / "test.txt", 8)
        xi = predict(net, test["src"], test["tgt"], 8, progress=False)
        T = ev.se3_forward(xi)
        err = ev.transform_errors(T, test["src_T_tgt"])
        err["photometric_l1"] = ev.photometric_errors(test["src"], test["tgt"], test["tgt_depth"], test["K"], T)
        out[(e.name, s)] = err
    return out


def baseline_errors(args, test) -> dict:
    from pygeometry import evaluation as ev

    train = ev.load_split(args.data / "train.txt", keys=("src_T_tgt",), optional=("xi_gt",))
    xi_train = train["xi_gt"] if "xi_gt" in train else pose_vector_from_matrix(train["src_T_tgt"])
    out = {}
    for name, xi in ev.baseline_predictions(xi_train, len(test["src"])).items():
        T = ev.se3_forward(xi)
        err = ev.transform_errors(T, test["src_T_tgt"])
        err["photometric_l1"] = ev.photometric_errors(test["src"], test["tgt"], test["tgt_depth"], test["K"], T)
        out[name] = err
    return out


def run_evaluate_script(args, folder: Path, split: Path, out: Path, extra: list[str]) -> dict:
    """scripts/evaluate.py on one run (reused when its summary.json is newer than the weights)."""
    summary = out / "summary.json"
    weights = folder / "final.caffemodel"
    cmd = [PY, str(REPO / "scripts" / "evaluate.py"), "--deploy", str(folder / "deploy.prototxt"), "--weights",
           str(weights), "--split", str(split), "--out", str(out), "--no-progress"] + extra
    if summary.exists() and summary.stat().st_mtime > weights.stat().st_mtime and \
            json.loads(summary.read_text()).get("command", "").endswith(" ".join(cmd[2:])):
        return json.loads(summary.read_text())
    print(f"$ {' '.join(cmd)}")
    subprocess.check_call(cmd, stdout=subprocess.DEVNULL)
    return json.loads(summary.read_text())


# ------------------------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path):
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    _plt().close(fig)


def read_curves(folder: Path):
    rows = [line.split(",") for line in (folder / "curves.csv").read_text().splitlines()[1:]]
    val = np.array([[float(r[0]), float(r[1]), float(r[2]), float(r[3])] for r in rows if r[4] == "val"]).reshape(-1, 4)
    return val


def figure_curves(args, experiments, seeds, baselines, path: Path, command: str):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(16, 4.5))
    for i, e in enumerate(experiments):
        curves = [read_curves(run_dir(args, e, s)) for s in seeds]
        n = min(len(c) for c in curves)
        it = curves[0][:n, 0]
        for ax, col in zip(axes, (2, 3)):
            v = np.stack([c[:n, col] for c in curves])
            ax.plot(it, v.mean(0), "o-", color=f"C{i}", label=e.label or e.name)
            ax.fill_between(it, v.min(0), v.max(0), color=f"C{i}", alpha=0.15)
    for ax, metric in zip(axes, ("translation_m", "rotation_deg")):
        for name, style in (("identity", ":"), ("mean training pose", "--")):
            ax.axhline(np.mean(baselines[name][metric]), color="k", ls=style, lw=1, label=f"{name} (test split)")
        ax.set_xlabel("iteration")
        ax.set_title(f"validation {METRIC_NAMES[metric]}")
        ax.grid(alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center right")
    fig.suptitle(f"Validation pose error during training: mean over {len(seeds)} seeds, band = min..max\n{command}",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.78, 1))
    save_figure(fig, path)


def figure_seeds(experiments, stats, baselines, path: Path, command: str):
    """The answer at a glance: each experiment's mean test error per seed (dots) and over seeds (bar), with the
    trivial baselines."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(experiments) + 1.8), sharey=True)
    ys = np.arange(len(experiments))[::-1]
    for ax, metric in zip(axes, ("translation_m", "rotation_deg")):
        for y, (i, e) in zip(ys, enumerate(experiments)):
            v, mean, _ = stats[metric][e.name]
            ax.barh(y, mean, color=f"C{i}", alpha=0.35, height=0.6)
            ax.plot(v, np.full(len(v), y), "o", color=f"C{i}", ms=5)
        for name, style in (("identity", ":"), ("mean training pose", "--")):
            value = float(np.mean(baselines[name][metric]))
            if value < 2 * max(stats[metric][e.name][1] for e in experiments):
                ax.axvline(value, color="k", ls=style, lw=1, label=f"{name} {value:.3g}")
        ax.set_xlabel(f"mean test {METRIC_NAMES[metric]}")
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_yticks(ys, [e.label or e.name for e in experiments], fontsize=8)
    fig.suptitle(f"Each dot is one seed's run, bars the mean over seeds\n{command}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def figure_histograms(experiments, seeds, errors, baselines, classical, path: Path, command: str):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ax, metric, top in zip(axes, ("translation_m", "rotation_deg"), (1.0, 4.0)):
        bins = np.linspace(0, top, 41)
        for i, e in enumerate(experiments):
            v = np.concatenate([errors[(e.name, s)][metric] for s in seeds])
            ax.hist(np.minimum(v, top), bins, histtype="step", lw=1.5, color=f"C{i}", density=True,
                    label=e.label or e.name)
        for name, color in (("identity", "0.6"), ("mean training pose", "k")):
            ax.hist(np.minimum(baselines[name][metric], top), bins, histtype="step", lw=1, ls="--", color=color,
                    density=True, label=name)
        for (name, err), color in zip(classical.items(), ("C9", "C8", "C6")):
            ax.hist(np.minimum(err[metric], top), bins, histtype="stepfilled", alpha=0.25, color=color, density=True,
                    label=name)
        ax.set_xlabel(f"{METRIC_NAMES[metric]} (last bin: >= {top})")
        ax.set_ylabel("density")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Per-pair test errors, all seeds pooled\n{command}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def figure_warp_grid(folder: Path, test, pairs, path: Path, command: str, title: str):
    """Rows: test pairs. Columns: target; warped source and |error| with the untrained (init) network's pose;
    the same with the trained network's pose; warped with the ground-truth pose."""
    from pygeometry import evaluation as ev

    plt = _plt()
    H, W = test["src"].shape[2:]
    sub = {k: test[k][pairs] for k in ("src", "tgt", "tgt_depth", "K", "src_T_tgt")}
    poses = {}
    for name, weights in (("before training", "init.caffemodel"), ("after training", "final.caffemodel")):
        net = load_net(folder / "deploy.prototxt", folder / weights, H, W, "test", 8)
        poses[name] = ev.se3_forward(predict(net, sub["src"], sub["tgt"], 8, progress=False))
    poses["ground truth"] = sub["src_T_tgt"]
    cols = [("target", None)]
    for name in ("before training", "after training", "ground truth"):
        cols += [(f"warped source, {name}", name), (f"|error|, {name}", name)]
    fig, axes = plt.subplots(len(pairs), len(cols), figsize=(2.6 * len(cols), 1.05 * len(pairs) + 0.8))
    show = lambda img: np.clip(img.transpose(1, 2, 0), 0, 1)  # noqa: E731
    for r in range(len(pairs)):
        for c, (label, pose) in enumerate(cols):
            ax = axes[r, c]
            if pose is None:
                ax.imshow(show(sub["tgt"][r]))
            else:
                warped, _ = ev.warp_source(sub["src"][r:r + 1], sub["tgt_depth"][r:r + 1], sub["K"][r:r + 1],
                                           poses[pose][r:r + 1])
                if label.startswith("warped"):
                    ax.imshow(show(warped[0]))
                else:
                    err = np.abs(warped[0] - sub["tgt"][r]).mean(0)
                    ax.imshow(err, cmap="magma", vmin=0, vmax=0.3)
                    ax.text(2, H - 4, f"L1 {err.mean():.3f}", color="w", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=7)
    fig.suptitle(f"{title}: test pairs {list(map(int, pairs))}\n{command}", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def figure_trajectory(seq_summary: dict, path: Path, command: str):
    """Top view (x right, z forward, metres) of the rendered sequence: ground truth and each method's chained
    relative poses, from the TUM files scripts/evaluate.py wrote (no alignment: all start at the first frame)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 6))
    traj = seq_summary["trajectories"][0]
    for i, (name, files) in enumerate(traj["files"].items()):
        a = np.loadtxt(files["tum"])
        style = dict(color="k", lw=2.5) if name == "ground truth" else dict(color=f"C{i}", lw=1.2)
        label = name
        if name in traj["methods"]:
            m = traj["methods"][name]
            label += f" (ATE {m['ate_se3']['rmse']:.2f} m SE(3)-aligned, RPE {m['rpe_trans_m']['rmse']:.2f} m)"
        ax.plot(a[:, 1], a[:, 3], "o-", ms=2.5, label=label, **style)
    ax.set_xlabel("x (m, sideways; axis stretched)")
    ax.set_ylabel("z (m, forward)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"Rendered corridor sequence, {traj['pairs'] + 1} frames: chained relative poses, top view\n"
                 f"{command}", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


# -------------------------------------------------------------------------------------------------- report
def fmt_stats(v) -> str:
    _, mean, std = v
    return f"{mean:.3f} ± {std:.3f}"


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
    photometric = [e for e in experiments if e.network != "supervised_pose"]
    best = min(photometric or experiments, key=lambda e: stats["rotation_deg"][e.name][1]
               + stats["translation_m"][e.name][1] / 0.2)  # 0.2 m ~ 1 deg here: both errors count
    best_folder = run_dir(args, best, seeds[0])

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
        subprocess.check_call([PY, str(REPO / "scripts" / "make_dataset.py"), "--sequence",
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
               "data": str(args.data), "best_photometric": best.name,
               "experiments": {e.name: {m: {"per_seed": stats[m][e.name][0].tolist(), "mean": stats[m][e.name][1],
                                            "std": stats[m][e.name][2]} for m in METRIC_NAMES} for e in experiments},
               "baselines": {k: ev.summarize(v) for k, v in baselines.items()},
               "evaluate_best": {k: eval_best[k] for k in ("methods", "refinement") if k in eval_best},
               "sequence": eval_seq.get("trajectories")}
    write_atomic(results / "summary.json", json.dumps(summary, indent=2))
    text = report_markdown(args, experiments, seeds, stats, med, baselines, eval_best, eval_seq, best, figs, command,
                           n_test)
    write_atomic(results / "REPORT.md", text)
    print(f"wrote {results / 'REPORT.md'}")
    return summary


def report_markdown(args, experiments, seeds, stats, med, baselines, eval_best, eval_seq, best, figs, command,
                    n_test) -> str:
    rel = lambda p: os.path.relpath(p, args.results)  # noqa: E731  (links in REPORT.md)
    show = lambda p: os.path.relpath(p, REPO) if Path(p).is_relative_to(REPO) else str(p)  # noqa: E731
    best_base = best_baseline_means(baselines, ("translation_m", "rotation_deg"))
    L = ["# pygeometry experiment report", "",
         f"Generated by `{command}` (scripts/report.py); every number below is measured by that command on this "
         f"machine. Re-running it reuses the finished runs in `{show(args.runs)}` and rewrites this file.", "",
         "## Setup", "",
         f"- Data: `{show(args.data)}` (rendered by scripts/make_dataset.py: one ray-cast room per pair, driving "
         f"motion), {n_test} test pairs; the training split trains, the validation split draws the curves.",
         f"- Every run: {args.iters} iterations of Adam (lr {args.lr}), batch 8, scripts/train.py; the trunk is "
         f"fed {args.downsample}x{args.downsample} block averages of the images; pose head, output scales and "
         f"multi-scale photometric loss as `make train`. Trunk: EfficientNet-Lite0 cut at {args.cut} (stride 16), "
         f"except `early_alexnet`, which is make train's AlexNet conv1..conv5 (random init) for reference. Seeds "
         f"{seeds} (Caffe's random seed: initialisation of what is not loaded, and data order).",
         "- ImageNet init: the EfficientNet-Lite0 ImageNet weights converted by scripts/convert_efficientnet_lite0.py "
         "(early fusion: the 3-channel stem copied to both halves of a 6-channel stem and halved). Random init: "
         "He/MSRA fillers with batch norm at identity statistics. Frozen: trunk learning rate 0, only the pose "
         "head learns.",
         "- Photometric runs never see the ground-truth pose; `supervised` regresses it (L2) as the reference.",
         "", "## Pose errors on the test split", "",
         f"Mean over the {n_test} test pairs, then mean ± standard deviation over {len(seeds)} seeds "
         "(median over pairs in brackets, seed-averaged).", "",
         "| experiment | translation m | rotation deg | translation direction deg | photometric L1 |",
         "|---|---|---|---|---|"]
    for e in experiments:
        L.append(f"| {e.label or e.name} | {fmt_stats(stats['translation_m'][e.name])} "
                 f"({med['translation_m'][e.name][1]:.3f}) | {fmt_stats(stats['rotation_deg'][e.name])} "
                 f"({med['rotation_deg'][e.name][1]:.2f}) | {fmt_stats(stats['translation_dir_deg'][e.name])} | "
                 f"{fmt_stats(stats['photometric_l1'][e.name])} |")
    for name, err in baselines.items():
        L.append(f"| baseline: {name} | {np.mean(err['translation_m']):.3f} ({np.median(err['translation_m']):.3f}) "
                 f"| {np.mean(err['rotation_deg']):.3f} ({np.median(err['rotation_deg']):.2f}) | "
                 f"{np.mean(err['translation_dir_deg']):.3f} | {np.mean(err['photometric_l1']):.3f} |")
    methods = eval_best.get("methods", {})
    for name, m in methods.items():
        if name.startswith("classical") or name.endswith("refinement"):
            fail = f"; {m['failed_pairs']} of {n_test} pairs failed (identity used)" if "failed_pairs" in m else ""
            L.append(f"| {name}{fail} | {m['translation_m']['mean']:.3f} ({m['translation_m']['median']:.3f}) | "
                     f"{m['rotation_deg']['mean']:.3f} ({m['rotation_deg']['median']:.2f}) | "
                     f"{m['translation_dir_deg']['mean']:.3f} | {m['photometric_l1']['mean']:.3f} |")
    L += ["", f"Classical rows and refinement: `scripts/evaluate.py` on `{show(run_dir(args, best, seeds[0]))}` "
              f"(the best photometric experiment, {best.name}, seed {seeds[0]}); its full output is in "
              f"`eval_best/` (per_pair.csv, summary.json). Per-run numbers: `per_run.csv`.", ""]
    r = eval_best.get("refinement")
    if r:
        g = r["gap_closed"]
        pct = lambda v: "n/a (no gap)" if v is None else f"{100 * v:.0f}%"  # noqa: E731
        L += [f"Photometric refinement ({r['trials_per_level']} LM trials per level, {r['levels']} levels, analytic "
              f"Jacobians) from the network's pose: photometric L1 {r['photometric_before_mean']:.4f} -> "
              f"{r['photometric_after_mean']:.4f}, {r['time_s_per_pair']['mean']:.2f} s per pair; it closes "
              f"{pct(g['translation_m_mean'])} of the translation gap and {pct(g['rotation_deg_mean'])} of the "
              f"rotation gap between the network and {g['reference']} (mean errors).", ""]

    L += ["## The answer: do ImageNet features carry pose here?", "",
          "Each line compares seed-averaged mean test errors; a difference counts only when it exceeds twice its "
          "standard error over seeds (Welch).", ""]
    names = {e.name for e in experiments}
    pairs = [("late_imagenet", "late_random", "late fusion, ImageNet vs random init"),
             ("early_imagenet", "early_random", "early fusion, ImageNet vs random init"),
             ("late_imagenet_frozen", "late_imagenet", "late fusion, frozen ImageNet features vs fine-tuned"),
             ("early_imagenet", "late_imagenet", "ImageNet init, early vs late fusion"),
             ("early_random", "late_random", "random init, early vs late fusion"),
             ("late_imagenet", "supervised", "late fusion ImageNet, photometric vs supervised")]
    for a, b, what in pairs:
        if a in names and b in names:
            for m, unit in (("rotation_deg", "deg"), ("translation_m", "m")):
                L.append(f"- {compare(stats[m], a, b, f'{what}, {METRIC_NAMES[m]}', unit)}")
    L += ["", "Against the better trivial baseline (identity or mean training pose) on the same pairs:", ""]
    for e in experiments:
        parts = []
        for m, unit in (("rotation_deg", "deg"), ("translation_m", "m")):
            entry = stats[m][e.name]
            parts.append(f"{METRIC_NAMES[m]} {entry.mean:.3g} vs {best_base[m]:.3g} {unit}, better in "
                         f"{seeds_better(entry, best_base[m])}/{len(entry.per_seed)} seeds")
        L.append(f"- {e.label or e.name}: " + "; ".join(parts))
    photometric = [e.name for e in experiments if e.network != "supervised_pose"]
    L += ["", "### What these numbers support", ""] + conclusions(stats, [e.name for e in experiments], best_base,
                                                                  photometric) + [""]

    L += ["## Figures", ""]
    captions = {
        "seeds": "Mean test error of every run (one dot per seed) and the mean over seeds (bar), with the trivial "
                 "baselines: the spread behind the table above.",
        "curves": "Validation translation and rotation error during training (mean over seeds, band min..max), "
                  "with the trivial baselines on the test split.",
        "histograms": "Per-pair test errors of every experiment (all seeds pooled), the trivial baselines, the "
                      "classical PnP baseline and the refined network.",
        "warp_grid": f"Test pairs warped with the pose of the {best.name} network (seed {seeds[0]}) before training "
                     "(its initial weights, init.caffemodel), after training, and with the ground-truth pose; "
                     "|error| is the per-pixel L1 to the target (same colour scale).",
        "trajectory": "A rendered 24-frame corridor sequence (scripts/make_dataset.py --sequence): relative poses "
                      "chained into trajectories, with evo's ATE (SE(3)-aligned) and RPE.",
    }
    for key, path in figs.items():
        L += [f"### {key.replace('_', ' ')}", "", captions[key], "",
              f"Made by `{command}`.", "", f"![{key}]({rel(path)})", ""]
    if eval_seq.get("trajectories"):
        t = eval_seq["trajectories"][0]
        L += ["Trajectory errors on the sequence (scripts/evaluate.py, `eval_sequence/`):", "",
              "| method | ATE rmse m, SE(3) | ATE rmse m, Sim(3) | RPE translation rmse m | RPE rotation rmse deg |",
              "|---|---|---|---|---|"]
        for name, m in t["methods"].items():
            L.append(f"| {name} | {m['ate_se3']['rmse']:.3f} | {m['ate_sim3']['rmse']:.3f} | "
                     f"{m['rpe_trans_m']['rmse']:.3f} | {m['rpe_rot_deg']['rmse']:.3f} |")
        L.append("")
    return "\n".join(L)


def main(argv=None):
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    args.data, args.runs, args.results = args.data.resolve(), args.runs.resolve(), args.results.resolve()
    experiments = [BY_NAME[n] for n in args.experiments]
    seeds = list(range(1, args.seeds + 1))
    try:
        if not (args.data / "test.txt").exists():
            print(f"{args.data} has no dataset: rendering the default one (scripts/make_dataset.py)")
            subprocess.check_call([PY, str(REPO / "scripts" / "make_dataset.py"), "--out", str(args.data)])
        train_all(args, experiments, seeds)
        if args.train_only:
            return None
        return make_report(args, experiments, seeds)
    except ReportError as exc:
        sys.exit(f"report.py: error: {exc}")


if __name__ == "__main__":
    main()
