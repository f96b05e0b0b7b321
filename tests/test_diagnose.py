"""scripts/diagnose.py: finished runs (run.json with the configuration's settings, result.json, train.log) become
DIAGNOSIS.md with the per-configuration table, the generalisation rule and the A/B sentences of pygeometry.stats;
a folder made with other settings is refused. The runs here are written by hand (training is tested elsewhere)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_readme_block_is

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import diagnose  # noqa: E402

METRIC_KEYS = ("translation_m", "translation_pct", "translation_dir_deg", "translation_scaled_m", "rotation_deg")


def _table(scale):
    def row(v):
        return {k: {"mean": v * (i + 1), "median": v} for i, k in enumerate(METRIC_KEYS)}
    return {"network": row(scale), "identity": row(1.0), "mean training pose": row(0.5)}


def _fake_run(args, name, seed, test_scale, train_scale):
    folder = args.runs / name / f"seed{seed}"
    folder.mkdir(parents=True)
    cmd = diagnose.train_command(args, name, seed)
    (folder / "run.json").write_text(json.dumps({"settings": diagnose.settings_of(cmd)}))
    (folder / "result.json").write_text(json.dumps({"test": _table(test_scale), "train": _table(train_scale)}))
    (folder / "train.log").write_text(f"$ cmd\ntrained 3000 iterations in {100 + seed} s; final.caffemodel\n")


def test_report_from_finished_runs(tmp_path):
    args = diagnose.parse_args(["--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
                                "--data-root", str(tmp_path / "data"), "--seeds", "1", "2"])
    # reference: 0.20 / 0.22 on test, 0.05 on the training pairs (overfits); batchnorm clearly lower on test
    for seed, scale in ((1, 0.20), (2, 0.22)):
        _fake_run(args, "reference", seed, scale, 0.05)
    for seed, scale in ((1, 0.10), (2, 0.11)):
        _fake_run(args, "batchnorm", seed, scale, 0.09)
    _fake_run(args, "lr1e-3", 1, 0.3, 0.3)  # one seed of two: not reported
    for seed, scale in ((1, 0.2), (2, 20.0)):  # the second seed diverged (20 > 10 x the identity's 1.0)
        _fake_run(args, "dropout", seed, scale, scale)
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "diagnose.py"), "--no-train", "--runs",
                           str(args.runs), "--results", str(args.results), "--data-root", str(args.data_root),
                           "--seeds", "1", "2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (args.results / "DIAGNOSIS.md").read_text()
    assert "`reference`" in text and "`batchnorm`" in text and "`lr1e-3`" not in text
    # test translation, rotation, direction, scale-aligned; train translation, rotation; seconds (seed means)
    assert "| 0.21 | 1.05 | 0.63 | 0.84 | 0.05 | 0.25 | 102 |" in text
    # ratios to the better baseline (the mean training pose here, 0.5 x the metric's factor)
    assert "| `reference` | 0.42x | 0.42x | 0.42x | 0.42x |" in text
    assert "- `reference`: translation 4.20x, rotation 4.20x (overfits)" in text
    assert "- `batchnorm`: translation 1.17x, rotation 1.17x\n" in text
    assert "**normalisation: batch norm vs LRN** (`batchnorm` vs `reference`)" in text
    assert "translation: 0.105 vs 0.21 m (-50%), **lower**" in text
    # the summary table: one row per A/B with both runs finished, verdicts by the same rule
    assert "| normalisation: batch norm vs LRN (`batchnorm` vs `reference`) | **-50% lower** | **-50% lower** |" in text
    assert "(`lr1e-3` vs `reference`)" not in text
    assert "Diverged runs (rule: test translation error above 10x the identity's):\n\n- `dropout`: 1 of 2 seeds " \
           "diverged\n" in text and "`reference`: 0 of" not in text
    assert "| baseline on synthetic: mean training pose | 0.5 | 2.5 | 1.5 | 2 |" in text
    saved = json.loads((args.results / "diagnosis.json").read_text())
    assert saved["reference"]["test"]["network"]["translation_m"] == [0.20, 0.22]


def test_keep_recorded_reuses_the_previous_entries_of_configurations_not_run_here(tmp_path):
    """Run folders are not in git: with --keep-recorded, a configuration none of whose seeds finished here keeps its
    entry of the previous diagnosis.json (named in the report); one with finished runs here is re-read from them."""
    args = diagnose.parse_args(["--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
                                "--data-root", str(tmp_path / "data"), "--seeds", "1", "2", "--keep-recorded"])
    for seed, scale in ((1, 0.20), (2, 0.22)):
        _fake_run(args, "reference", seed, scale, 0.05)
    old = {"seeds": [1, 2], "label": "old", "seconds": [90.0, 95.0],
           "test": {m: {k: [v["mean"]] * 2 for k, v in row.items()} for m, row in _table(0.1).items()},
           "train": {m: {k: [v["mean"]] * 2 for k, v in row.items()} for m, row in _table(0.1).items()}}
    args.results.mkdir()
    (args.results / "diagnosis.json").write_text(json.dumps({"batchnorm": old, "reference": {**old, "label": "x"}}))
    found = diagnose.collect(args)
    assert found["batchnorm"]["recorded"] and found["batchnorm"]["test"]["network"]["translation_m"] == [0.1, 0.1]
    assert "recorded" not in found["reference"]  # finished here: read from its runs, not the record
    assert found["reference"]["test"]["network"]["translation_m"] == [0.20, 0.22]
    text = diagnose.markdown(found, args)
    assert "--keep-recorded` (" in text
    assert "Kept from the previous results/diagnosis.json (`--keep-recorded`; their run folders were not on the " \
           "machine that wrote this): `batchnorm`;" in text
    assert "translation: 0.1 vs 0.21 m (-52%), **lower**" in text
    args.keep_recorded = False
    assert set(diagnose.collect(args)) == {"reference"}


def test_a_folder_with_other_settings_is_refused(tmp_path):
    args = diagnose.parse_args(["--runs", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data")])
    folder = args.runs / "reference" / "seed1"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"settings": ["--network", "other"]}))
    with pytest.raises(diagnose.ReportError, match="trained with other settings"):
        diagnose.train_missing(args)


def test_the_readme_block_is_the_committed_diagnosis():
    """README's diagnosis figures are results/DIAGNOSIS.md's, written by the same run of scripts/diagnose.py
    --readme (never typed by hand)."""
    assert_readme_block_is(diagnose.BEGIN, diagnose.END, "DIAGNOSIS.md", "What limits the pose networks",
                           "scripts/diagnose.py --seeds")
