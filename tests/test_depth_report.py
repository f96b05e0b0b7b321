"""scripts/depth_report.py: finished runs (run.json with the variant's settings, result.json) become DEPTH.md with
the per-variant table, the baselines, the rule-derived verdicts and the shared-vs-separate sentences of
pygeometry.stats; runs of other settings or missing seeds are not reported; the recipe is make train-depth's.
The runs here are written by hand (training is tested in test_depth.py)."""
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import depth_report  # noqa: E402
from conftest import assert_readme_block_is  # noqa: E402

DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
POSE_KEYS = ("translation_m", "translation_pct", "translation_dir_deg", "translation_scaled_m", "rotation_deg")


def _result(abs_rel, rotation):
    def depth(v):
        return {k: v for k in DEPTH_KEYS}
    def pose(v, r):
        return dict({k: v for k in POSE_KEYS}, rotation_deg=r)
    return {"triplets": 200, "depth": {"network": depth(abs_rel), "mean depth map": depth(0.5), "constant": depth(0.6)},
            "pose": {"network": pose(0.1, rotation), "identity": pose(0.6, 1.5), "mean training pose": pose(0.2, 1.5)},
            "ate5_m": {"network": 0.05, "identity": 0.36, "mean training pose": 0.03}}


def _fake_run(args, variant, seed, abs_rel, rotation):
    folder = args.runs / variant / f"seed{seed}"
    folder.mkdir(parents=True)
    cmd = depth_report.train_command(args, variant, seed)
    (folder / "run.json").write_text(json.dumps({"settings": depth_report.settings_of(cmd)}))
    (folder / "result.json").write_text(json.dumps(_result(abs_rel, rotation)))


def test_report_from_finished_runs(tmp_path):
    options = ["--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--seeds", "1", "2", "3",
               "--iters", "100", "--data", str(tmp_path / "data"), "--budget-run", str(tmp_path / "none"),
               "--long-run", str(tmp_path / "none")]
    args = depth_report.parse_args(options)
    for seed, (a, r) in enumerate(((0.40, 1.0), (0.42, 1.1), (0.41, 1.2)), start=1):
        _fake_run(args, "separate", seed, a, r)
    for seed, (a, r) in enumerate(((0.45, 1.6), (0.46, 1.7), (0.47, 1.8)), start=1):
        _fake_run(args, "shared", seed, a, r)
    for seed, (a, r) in enumerate(((0.30, 0.8), (0.31, 0.9), (0.32, 1.0)), start=1):
        _fake_run(args, "imagenet", seed, a, r)
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "depth_report.py"), "--no-train", *options],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (args.results / "DEPTH.md").read_text()
    assert "| `separate`: a pose network of its own" in text and "| 0.410 | 0.410 | 1.1 | 0.1 | 0.1 | 0.05 |" in text
    assert "| baseline: mean depth map | 0.500 | 0.500 |" in text
    assert "- `separate`: depth beats both depth baselines; the pose beats both pose baselines on rotation, " \
           "translation, direction." in text
    assert "- `shared`: depth beats both depth baselines; the pose beats both pose baselines on translation, " \
           "direction." in text  # rotation 1.7 > the baselines' 1.5
    assert re.search(r"- depth Abs Rel: 0\.46 vs 0\.41 \(\+12%\), \*\*higher\*\*", text)
    assert re.search(r"- rotation: 1\.7 vs 1\.1 deg \(\+55%\), \*\*higher\*\*", text)
    assert "- translation: 0.1 vs 0.1 m (+0%), not different" in text
    imagenet = text.split("**ImageNet-initialised vs randomly initialised encoders", 1)[1]
    assert re.search(r"- depth Abs Rel: 0\.31 vs 0\.41 \(-24%\), \*\*lower\*\*", imagenet)
    assert re.search(r"- rotation: 0\.9 vs 1\.1 deg \(-18%\), \*\*lower\*\*", imagenet)
    # a run of other settings is refused as not finished: with one seed missing, that variant is left out
    (args.runs / "shared" / "seed3" / "run.json").write_text(json.dumps({"settings": ["other"]}))
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "depth_report.py"), "--no-train", *options],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "`shared`" not in (args.results / "DEPTH.md").read_text()
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "depth_report.py"), "--no-train", *options,
                           "--seeds", "9"], capture_output=True, text=True)
    assert proc.returncode != 0 and "depth_report.py: nothing has finished runs for every seed" in proc.stderr


def test_the_recipe_is_make_train_depths():
    makefile = (REPO / "Makefile").read_text()
    line = next(x for x in makefile.splitlines() if "scripts/train_depth.py" in x and "runs/depth" in x)
    assert " ".join(depth_report.RECIPE) in line and f"--iters {depth_report.RECIPE_ITERS}" in line
    assert " ".join(depth_report.VARIANTS["imagenet_depth"][1]) in line  # make train-depth's encoders
    assert f"DEPTH_DATA := data/{depth_report.DATA}" in makefile


def test_the_readme_block_is_the_committed_depth_report():
    """README's shared-vs-separate figures are results/DEPTH.md's, written by the same run of
    scripts/depth_report.py --readme (never typed by hand)."""
    assert_readme_block_is(depth_report.BEGIN, depth_report.END, "DEPTH.md",
                           "Depth features for pose: shared vs separate vs ImageNet-initialised encoders",
                           "scripts/depth_report.py --seeds")


def test_long_run_table(tmp_path):
    """The long-run table reads both runs' result.json, gives the long run's multiple of the better baseline and the
    change, and is left out when the runs' settings differ in more than --iters (or either is unfinished)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset.json").write_text(json.dumps({"config": {"triplets": True}}))
    runs = {}
    for name, iters, abs_rel, rotation in (("depth", 1800, 0.2, 0.75), ("depth_10x", 18000, 0.15, 0.5)):
        folder = runs[name] = tmp_path / name
        folder.mkdir()
        result = dict(_result(abs_rel, rotation), iters=iters, ate_m={"network": 0.04, "identity": 0.4,
                                                                     "mean training pose": 0.045})
        (folder / "result.json").write_text(json.dumps(result))
        (folder / "settings.json").write_text(json.dumps({"data": str(data), "seed": 1, "iters": iters}))
    text = depth_report.long_run_section(runs["depth"], runs["depth_10x"])
    assert "`depth`: 1800 iterations, `depth_10x`: 18000 = 10x" in text
    assert "| Abs Rel | 0.2 | 0.15 | 0.5 | 0.30x | -25% (better) |" in text
    assert "| rotation deg | 0.75 | 0.5 | 1.5 | 0.33x | -33% (better) |" in text
    assert "| delta < 1.25 | 0.2 | 0.15 | 0.6 | 0.25x | -25% (worse) |" in text  # higher is better
    (runs["depth_10x"] / "settings.json").write_text(json.dumps({"data": str(data), "seed": 2, "iters": 18000}))
    assert depth_report.long_run_section(runs["depth"], runs["depth_10x"]) == ""
    assert depth_report.long_run_section(runs["depth"], tmp_path / "absent") == ""
