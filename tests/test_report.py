"""The report's statistics (pygeometry.stats) on hand-computed cases: the summary over seeds, the 2-standard-error
rule with its direction and threshold, the sentences and conclusions derived from it, cross-checked with scipy.
Then scripts/report.py end to end on the tiny split: trains the runs of two experiments x two seeds (2 iterations
each, two at once), evaluates them with the baselines, the classical methods, refinement and a rendered sequence,
writes REPORT.md, the figures and the tables; a second call reuses the runs; other settings are refused."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pygeometry.stats import (best_baseline_means, compare, conclusions, seed_stats, seed_summary, seeds_better,
                              significant, welch_standard_error)

REPO = Path(__file__).resolve().parents[1]
REPORT = [sys.executable, str(REPO / "scripts" / "report.py"), "--no-progress"]

# Hand-computed case for the threshold, with equal seed counts (2 each):
#   a      = [7, 13]:      mean 10,   std = sqrt((3^2 + 3^2) / (2 - 1)) = sqrt(18)
#   b_far  = [16.1, 24.1]: mean 20.1, std = sqrt((4^2 + 4^2) / (2 - 1)) = sqrt(32)
#   b_near = [15.9, 23.9]: mean 19.9, std = sqrt(32)
#   se = sqrt(18 / 2 + 32 / 2) = sqrt(9 + 16) = 5, so the threshold 2 se = 10:
#   a - b_far = -10.1 (beyond 10: a lower), a - b_near = -9.9 (within 10: no difference).
# Wrong rules this case catches: 1 se (5) would call b_near different; 3 se (15) would miss b_far; the population
# std (ddof 0: 3 and 4, se = sqrt(4.5 + 8) = 3.54) would call b_near different; std without / S (se = sqrt(50) =
# 7.07) would miss b_far.
THRESHOLD_CASE = {"a": [7.0, 13.0], "b_far": [16.1, 24.1], "b_near": [15.9, 23.9]}


def _stats(per_seed: dict) -> dict:
    return {name: seed_summary(v) for name, v in per_seed.items()}


def test_seed_summary_and_seed_stats_by_hand():
    s = seed_summary([7.0, 13.0])
    assert s.mean == pytest.approx(10.0) and s.std == pytest.approx(np.sqrt(18.0))  # ddof 1: (9 + 9) / 1
    single = seed_summary([4.0])
    assert list(single.per_seed) == [4.0] and single.mean == 4.0 and single.std == 0.0  # one seed: no spread
    # seed 1's pairs [1, 3] (mean 2, median 2), seed 2's [0, 0, 9] (mean 3, median 0)
    errors = {("x", 1): {"rotation_deg": np.array([1.0, 3.0])}, ("x", 2): {"rotation_deg": np.array([0.0, 0.0, 9.0])}}
    by_mean = seed_stats(errors, ["x"], [1, 2], "rotation_deg")["x"]
    np.testing.assert_allclose(by_mean.per_seed, [2.0, 3.0])
    assert by_mean.mean == pytest.approx(2.5) and by_mean.std == pytest.approx(np.sqrt(0.5))  # 0.5^2 + 0.5^2
    by_median = seed_stats(errors, ["x"], [1, 2], "rotation_deg", np.median)["x"]
    np.testing.assert_allclose(by_median.per_seed, [2.0, 0.0])
    assert by_median.mean == pytest.approx(1.0) and by_median.std == pytest.approx(np.sqrt(2.0))  # 1^2 + 1^2
    with pytest.raises(ValueError, match="one value per seed"):
        seed_summary([])


def test_significant_direction_and_threshold_by_hand():
    stats = _stats(THRESHOLD_CASE)
    assert welch_standard_error(stats["a"], stats["b_far"]) == pytest.approx(5.0)
    assert significant(stats, "a", "b_far") == -1, "10 vs 20.1 is lower by 10.1 > 2 se = 10"
    assert significant(stats, "b_far", "a") == 1, "20.1 vs 10 is higher by 10.1 > 2 se = 10"
    assert significant(stats, "a", "b_near") == 0, "10 vs 19.9 differs by 9.9 <= 2 se = 10"
    assert significant(stats, "b_near", "a") == 0
    assert significant(stats, "a", "a") == 0


def test_significant_uses_welch_not_the_pooled_standard_error():
    # a = [1, 2, 3]: mean 2, var 1 (ddof 1), var / 3 = 1/3; b = [m - 1, m + 1]: var 2, var / 2 = 1.
    # Welch: se^2 = 1/3 + 1 = 4/3, 2 se = 2.309. Pooled (Student): s_p^2 = (2 * 1 + 1 * 2) / 3 = 4/3,
    # se^2 = 4/3 * (1/3 + 1/2) = 10/9, 2 se = 2.108. A difference of 2.2 lies between the two: Welch says 0.
    stats = _stats({"a": [1.0, 2.0, 3.0], "b_2.2": [3.2, 5.2], "b_2.4": [3.4, 5.4]})
    assert welch_standard_error(stats["a"], stats["b_2.2"]) == pytest.approx(np.sqrt(4 / 3))
    assert significant(stats, "a", "b_2.2") == 0
    assert significant(stats, "a", "b_2.4") == -1 and significant(stats, "b_2.4", "a") == 1  # 2.4 > 2.309


def test_one_seed_is_never_a_difference():
    stats = _stats({"a": [1.0], "b": [100.0, 101.0]})
    assert significant(stats, "a", "b") == 0 and significant(stats, "b", "a") == 0


def test_significant_agrees_with_scipy_welch_t():
    """significant is sign(t) where |t| > 2, t being scipy's Welch t statistic of the per-seed values."""
    stats = _stats(THRESHOLD_CASE)
    t = scipy_stats.ttest_ind(THRESHOLD_CASE["a"], THRESHOLD_CASE["b_far"], equal_var=False).statistic
    assert t == pytest.approx(-10.1 / 5)
    assert (stats["a"].mean - stats["b_far"].mean) / welch_standard_error(stats["a"], stats["b_far"]) \
        == pytest.approx(t)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        a = rng.normal(0.0, rng.uniform(0.1, 1.0), size=rng.integers(2, 6))
        b = rng.normal(rng.uniform(-1.5, 1.5), rng.uniform(0.1, 1.0), size=rng.integers(2, 6))
        t = scipy_stats.ttest_ind(a, b, equal_var=False).statistic
        if abs(abs(t) - 2) < 1e-9:
            continue  # on the threshold itself rounding decides
        expected = int(np.sign(t)) if abs(t) > 2 else 0
        assert significant(_stats({"a": a, "b": b}), "a", "b") == expected, (a, b, t)
        seen.add(expected)
    assert seen == {-1, 0, 1}, "the random cases cover lower, higher and no difference"


def test_compare_sentences_by_hand():
    stats = _stats(THRESHOLD_CASE)
    # -10.1 / 20.1 = -50.2%; 2 se = 10
    assert compare(stats, "a", "b_far", "rotation", "deg") == \
        "rotation: 10 vs 20.1 deg (-50%), **lower** (beyond 2 standard errors over seeds, 10 deg)"
    # +10.1 / 10 = +101%
    assert compare(stats, "b_far", "a", "rotation", "deg") == \
        "rotation: 20.1 vs 10 deg (+101%), **higher** (beyond 2 standard errors over seeds, 10 deg)"
    # -9.9 / 19.9 = -49.7%
    assert compare(stats, "a", "b_near", "rotation", "deg") == \
        "rotation: 10 vs 19.9 deg (-50%), not different beyond the seed spread (2 standard errors: 10 deg)"


def test_baseline_rules_by_hand():
    baselines = {"identity": {"rotation_deg": np.array([1.6, 1.7]), "translation_m": np.array([0.6, 0.7])},
                 "mean training pose": {"rotation_deg": np.array([1.6, 1.8]), "translation_m": np.array([0.1, 0.3])}}
    # rotation means 1.65 (identity) and 1.7, translation means 0.65 and 0.2 (mean pose): the lower of each
    assert best_baseline_means(baselines, ("rotation_deg", "translation_m")) == \
        {"rotation_deg": pytest.approx(1.65), "translation_m": pytest.approx(0.2)}
    assert seeds_better(seed_summary([1.0, 2.0, 3.0]), 2.0) == 1, "strictly lower only: 1 < 2, not 2, not 3"
    assert seeds_better(seed_summary([1.0, 2.0, 3.0]), 3.5) == 3


# Seed values (2 seeds) for the conclusions; better trivial baseline: rotation 1.65 deg, translation 0.17 m.
#   rotation_deg                               translation_m
#   late_imagenet        [0.9, 1.1]   1.00     [0.10, 0.20] 0.15
#   late_random          [1.9, 2.1]   2.00     [0.30, 0.40] 0.35
#   early_imagenet       [1.0, 1.4]   1.20     [0.30, 0.34] 0.32
#   early_random         [1.1, 1.5]   1.30     [0.20, 0.24] 0.22
#   late_imagenet_frozen [1.55, 1.65] 1.60     [0.12, 0.16] 0.14
#   supervised           [0.2, 0.4]   0.30     [0.05, 0.07] 0.06
# Late, ImageNet vs random: rotation -1.0 vs 2 se = 2 sqrt(0.02/2 + 0.02/2) = 0.283 -> lowers;
#                           translation -0.2 vs 2 sqrt(0.005/2 + 0.005/2) = 0.141 -> lowers.
# Early: rotation -0.1 vs 2 sqrt(0.08/2 + 0.08/2) = 0.566 -> no change;
#        translation +0.1 vs 2 sqrt(0.0008/2 + 0.0008/2) = 0.057 -> raises.
# Frozen vs fine-tuned: rotation +0.6 vs 2 sqrt(0.005/2 + 0.02/2) = 0.224 -> higher;
#                       translation -0.01 vs 2 sqrt(0.0008/2 + 0.005/2) = 0.108 -> no different.
# Rotation below 1.65 in every seed, photometric only: late_imagenet, early_imagenet, early_random (frozen's 1.65
# equals the baseline, not lower; supervised is not photometric). Translation below 0.17 in every seed, any
# experiment: supervised, late_imagenet_frozen (late_imagenet's 0.20 is not).
CONCLUSION_ROTATION = {"supervised": [0.2, 0.4], "late_imagenet": [0.9, 1.1], "late_random": [1.9, 2.1],
                       "early_imagenet": [1.0, 1.4], "early_random": [1.1, 1.5], "late_imagenet_frozen": [1.55, 1.65]}
CONCLUSION_TRANSLATION = {"supervised": [0.05, 0.07], "late_imagenet": [0.10, 0.20], "late_random": [0.30, 0.40],
                          "early_imagenet": [0.30, 0.34], "early_random": [0.20, 0.24],
                          "late_imagenet_frozen": [0.12, 0.16]}


def test_conclusions_by_hand():
    stats = {"rotation_deg": _stats(CONCLUSION_ROTATION), "translation_m": _stats(CONCLUSION_TRANSLATION)}
    names = list(CONCLUSION_ROTATION)
    photometric = [n for n in names if n != "supervised"]
    lines = conclusions(stats, names, {"rotation_deg": 1.65, "translation_m": 0.17}, photometric)
    assert lines == [
        "- Late fusion: ImageNet initialisation lowers the rotation error and lowers the translation error against "
        "random initialisation.",
        "- Early fusion: ImageNet initialisation does not measurably change the rotation error and raises the "
        "translation error against random initialisation.",
        "- Frozen ImageNet features (pose head only) against fine-tuning, late fusion: rotation higher, translation "
        "no different.",
        "- Photometric experiments whose rotation error beats the better trivial baseline in every seed: "
        "late_imagenet, early_imagenet, early_random.",
        "- Experiments whose translation error beats the better trivial baseline (the mean training pose for this "
        "driving motion) in every seed: supervised, late_imagenet_frozen.",
        "- Ranked by rotation error: supervised (0.30) < late_imagenet (1.00) < early_imagenet (1.20) < early_random "
        "(1.30) < late_imagenet_frozen (1.60) < late_random (2.00).",
    ]


def test_conclusions_of_the_correlation_experiments():
    """The correlation-fused late nets get the same rules: ImageNet vs random, frozen vs fine-tuned and frozen vs
    random trained. Rotation: imagenet [0.6, 0.7], random [1.6, 1.8], frozen [0.7, 0.8]: imagenet vs random -1.05 vs
    2 sqrt(0.005/2 + 0.02/2) = 0.224 -> lowers; frozen vs imagenet +0.1 vs 2 sqrt(0.005/2 + 0.005/2) = 0.141 -> no
    different; frozen vs random -0.95 vs 0.224 -> lower. Translation: imagenet [0.15, 0.17], random [0.20, 0.22],
    frozen [0.15, 0.19]: -0.05 vs 2 sqrt(0.0002/2 + 0.0002/2) = 0.028 -> lowers; +0.01 vs 2 sqrt(0.0008/2 + 0.0002/2)
    = 0.045 -> no different; -0.04 vs 0.045 -> no different."""
    rot = {"late_imagenet_correlation": [0.6, 0.7], "late_random_correlation": [1.6, 1.8],
           "late_imagenet_correlation_frozen": [0.7, 0.8]}
    tra = {"late_imagenet_correlation": [0.15, 0.17], "late_random_correlation": [0.20, 0.22],
           "late_imagenet_correlation_frozen": [0.15, 0.19]}
    names = list(rot)
    lines = conclusions({"rotation_deg": _stats(rot), "translation_m": _stats(tra)}, names,
                        {"rotation_deg": 1.65, "translation_m": 0.17}, names)
    assert lines[:3] == [
        "- Late fusion by correlation: ImageNet initialisation lowers the rotation error and lowers the translation "
        "error against random initialisation.",
        "- Frozen ImageNet features matched by correlation (what follows them learns) against fine-tuning: rotation no "
        "different, translation no different.",
        "- Frozen ImageNet features matched by correlation against the same net trained from random initialisation: "
        "rotation lower, translation no different.",
    ]


def test_conclusions_without_the_compared_pairs():
    """Only the rules whose experiments ran (as in the end-to-end test): no ImageNet or frozen lines."""
    names = ["early_random", "early_alexnet"]
    stats = {"rotation_deg": _stats({"early_random": [2.0, 2.2], "early_alexnet": [1.0, 1.2]}),
             "translation_m": _stats({"early_random": [0.5, 0.6], "early_alexnet": [0.4, 0.5]})}
    assert conclusions(stats, names, {"rotation_deg": 1.65, "translation_m": 0.17}, names) == [
        "- Photometric experiments whose rotation error beats the better trivial baseline in every seed: "
        "early_alexnet.",
        "- Experiments whose translation error beats the better trivial baseline (the mean training pose for this "
        "driving motion) in every seed: none.",
        "- Ranked by rotation error: early_alexnet (1.10) < early_random (2.10).",
    ]


def test_report_end_to_end(tmp_path, tiny_split):
    runs, results, handheld = tmp_path / "runs", tmp_path / "results", tmp_path / "handheld"
    args = ["--data", str(tiny_split), "--runs", str(runs), "--results", str(results), "--experiments",
            "early_random", "early_alexnet", "--seeds", "2", "--iters", "2", "--refine", "1", "--sequence-frames", "4",
            "--jobs", "2", "--handheld", str(handheld)]
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_dataset.py"), "--out", str(handheld),
                           "--motion", "handheld", "--train", "4", "--val", "2", "--test", "3", "--height", "48",
                           "--width", "80", "--workers", "1", "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
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
    # the best network is chosen on the validation split; every run also reports its training pairs and handheld
    assert summary["best_chosen_on"] == "validation split"
    val = summary["validation"]
    assert summary["best_photometric"] == min(val, key=lambda e: val[e]["rotation_deg"] + val[e]["translation_m"] / 0.2)
    for split in ("train", "handheld"):
        result = json.loads((runs / "early_random" / "seed2" / "result.json").read_text())
        assert np.isclose(summary["splits"][split]["early_random"]["rotation_deg"][1],
                          result[split]["network"]["rotation_deg"]["mean"])
        assert "baseline: identity" in summary["splits"][split]
    report = (results / "REPORT.md").read_text()
    assert "## Pose errors on the training pairs" in report and "## Pose errors on handheld (6-DoF) motion" in report
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
