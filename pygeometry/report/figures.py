"""The figures of the experiment report (scripts/report.py), each captioned with the command that made it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import atomic_output
from ..inference import load_net, predict
from .runs import run_dir

METRIC_NAMES = {"translation_m": "translation error (m)", "rotation_deg": "rotation error (deg)",
                "translation_dir_deg": "translation direction error (deg)",
                "translation_scaled_m": "scale-aligned translation error (m)", "photometric_l1": "photometric L1"}


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


def figure_depth_grid(images, pred, gt, path: Path, title: str, median_scaling: bool = True):
    """Rows of (image, predicted depth, ground truth, |error| / ground truth) for a few test frames: images
    (K, 3, H, W) RGB, pred and gt (K, 1, H, W) in m. The prediction is median-scaled per frame like the metrics
    (when median_scaling); both depths share one colour range per row; the error is black where gt is unknown."""
    plt = _plt()
    k = len(images)
    fig, axes = plt.subplots(k, 4, figsize=(16, 1.2 * k + 0.8), squeeze=False)
    for i in range(k):
        g, d = gt[i, 0].astype(np.float64), pred[i, 0].astype(np.float64)
        valid = g > 0
        if median_scaling and valid.any():
            d = d * np.median(g[valid]) / np.median(d[valid])
        hi = float(np.percentile(g[valid], 98)) if valid.any() else float(d.max())
        err = np.where(valid, np.abs(d - g) / np.maximum(g, 1e-6), 0)
        panels = [(np.clip(images[i].transpose(1, 2, 0), 0, 1), None, "target image"),
                  (d, ("magma_r", 0, hi), "predicted depth" + (" (median-scaled)" if median_scaling else "")),
                  (g, ("magma_r", 0, hi), "ground-truth depth"), (err, ("viridis", 0, 0.5), "|error| / depth")]
        for ax, (img, cmap, name) in zip(axes[i], panels):
            if cmap:
                ax.imshow(img, cmap=cmap[0], vmin=cmap[1], vmax=cmap[2])
            else:
                ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
