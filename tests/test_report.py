"""scripts/report.py end to end on the tiny split: trains the runs of two experiments x two seeds (2 iterations
each, two at once), evaluates them with the baselines, the classical methods, refinement and a rendered sequence,
writes REPORT.md, the figures and the tables; a second call reuses the runs; other settings are refused."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REPORT = [sys.executable, str(REPO / "scripts" / "report.py"), "--no-progress"]


def test_report_end_to_end(tmp_path, tiny_split):
    runs, results = tmp_path / "runs", tmp_path / "results"
    args = ["--data", str(tiny_split), "--runs", str(runs), "--results", str(results), "--experiments",
            "early_random", "early_alexnet", "--seeds", "2", "--iters", "2", "--refine", "1", "--sequence-frames", "4",
            "--jobs", "2"]
    proc = subprocess.run(REPORT + args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "0 reused, 4 to train" in proc.stdout
    for exp in ("early_random", "early_alexnet"):
        for seed in (1, 2):
            folder = runs / exp / f"seed{seed}"
            assert (folder / "final.caffemodel").exists() and (folder / "init.caffemodel").exists()
            assert json.loads((folder / "run.json").read_text())["seed"] == seed
    for name in ("REPORT.md", "summary.json", "per_run.csv", "seeds.png", "curves.png", "histograms.png",
                 "warp_grid.png", "trajectory.png"):
        assert (results / name).stat().st_size > 0, name
    with open(results / "per_run.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["experiment"], r["seed"]) for r in rows) == [("early_alexnet", "1"), ("early_alexnet", "2"),
                                                                  ("early_random", "1"), ("early_random", "2")]
    summary = json.loads((results / "summary.json").read_text())
    per_seed = summary["experiments"]["early_random"]["rotation_deg"]["per_seed"]
    assert len(per_seed) == 2 and np.isclose(summary["experiments"]["early_random"]["rotation_deg"]["mean"],
                                             np.mean(per_seed))
    np.testing.assert_allclose(sorted(float(r["rotation_deg_mean"]) for r in rows if r["experiment"] == "early_random"),
                               sorted(per_seed), rtol=1e-5)
    assert summary["sequence"][0]["pairs"] == 3
    report = (results / "REPORT.md").read_text()
    for text in ("| early fusion, random init |", "| baseline: identity |", "classical pnp (sift)",
                 "early fusion, AlexNet", "Photometric refinement", "![trajectory](trajectory.png)",
                 "Against the better trivial baseline"):
        assert text in report, text
    assert report.count("Made by `scripts/report.py") == 5

    # a second call reuses every run and the evaluations
    proc = subprocess.run(REPORT + args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 reused, 0 to train" in proc.stdout and "$ " not in proc.stdout

    # the same run folders with other settings: a clear error, nothing retrained
    other = list(args)
    other[other.index("--iters") + 1] = "3"
    proc = subprocess.run(REPORT + other, capture_output=True, text=True)
    assert proc.returncode != 0 and "was trained with other settings" in proc.stderr


def test_report_help_and_bad_experiment():
    proc = subprocess.run(REPORT + ["--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "late_imagenet_frozen" in proc.stdout
    proc = subprocess.run(REPORT + ["--experiments", "nope"], capture_output=True, text=True)
    assert proc.returncode != 0 and "invalid choice" in proc.stderr
