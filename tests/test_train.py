"""scripts/train.py: trains, validates, plots, snapshots, evaluates against the baselines, resumes, and stops
cleanly on SIGTERM with a snapshot (tiny 48x80 data so that it runs in seconds)."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


REPO = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, str(REPO / "scripts" / "train.py"), "--no-progress", "--batch", "2"]


def test_train_evaluate_and_resume(tmp_path, tiny_split):
    out = tmp_path / "run"
    args = ["--data", str(tiny_split), "--out", str(out), "--val-interval", "3", "--snapshot-interval", "3"]
    proc = subprocess.run(TRAIN + args + ["--iters", "6", "--eval-split", "again", str(tiny_split / "test.txt"),
                                          "--eval-train", "3"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for name in ("final.caffemodel", "deploy.prototxt", "solver.prototxt", "curves.png", "curves.csv", "train.log",
                 "checkpoint.json"):
        assert (out / name).exists(), name
    result = json.loads((out / "result.json").read_text())
    assert set(result["test"]) == {"network", "identity", "mean training pose"}
    assert result["test"]["identity"]["translation_m"]["mean"] > 0
    from pygeometry.evaluation import METRICS

    for split in ("test", "train", "again"):  # every metric, on the test split, 3 training pairs and an extra split
        assert set(result[split]["network"]) == set(METRICS), split
    assert result["again"] == result["test"]  # the same pairs again: the same figures
    assert result["train"] != result["test"]
    log = (out / "train.log").read_text()
    assert "train split: 3 pairs" in log and "translation_scaled_m" in log
    assert json.loads((out / "checkpoint.json").read_text())["iter"] == 6
    proc = subprocess.run(TRAIN + args + ["--iters", "9", "--resume", "auto"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in (out / "train.log").read_text()
    assert json.loads((out / "checkpoint.json").read_text())["iter"] == 9
    rows = (out / "curves.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows if r.endswith("train")] == list(range(1, 10))
    # resuming with another recipe would mix two runs: refused, naming what changed, and nothing is touched
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    proc = subprocess.run(TRAIN + args + ["--iters", "12", "--resume", "auto", "--lr", "1e-3", "--mirror", "0.5"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "made with other settings (lr: 0.0002 then, 0.001 now; mirror: None then, 0.5 now)" in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    # --weights initialises a fresh run even with --resume auto (nothing to resume yet): init.caffemodel holds them
    fresh = tmp_path / "fresh"
    proc = subprocess.run(TRAIN + ["--data", str(tiny_split), "--out", str(fresh), "--iters", "1", "--resume", "auto",
                                   "--weights", str(out / "final.caffemodel")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "initialised from" in (fresh / "train.log").read_text()
    import caffe

    trained = caffe.Net(str(out / "deploy.prototxt"), caffe.TEST, weights=str(out / "final.caffemodel"))
    init = caffe.Net(str(fresh / "deploy.prototxt"), caffe.TEST, weights=str(fresh / "init.caffemodel"))
    for name, blobs in trained.params.items():
        for a, b in zip(blobs, init.params[name]):
            np.testing.assert_array_equal(a.data, b.data)


def test_sigterm_stops_cleanly_with_a_snapshot(tmp_path, tiny_split):
    out = tmp_path / "run"
    proc = subprocess.Popen(TRAIN + ["--data", str(tiny_split), "--out", str(out), "--iters", "100000",
                                     "--val-interval", "100000", "--snapshot-interval", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "curves.csv").exists() and proc.poll() is None:
        # curves.csv appears only at a validation; wait for the net instead: the log's first line + 3 s.
        if (out / "train.log").exists():
            time.sleep(3)
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    log = (out / "train.log").read_text()
    assert "stopped at iteration" in log and "--resume auto" in log
    ckpt = json.loads((out / "checkpoint.json").read_text())
    assert Path(ckpt["solverstate"]).exists() and Path(ckpt["caffemodel"]).exists() and ckpt["iter"] > 0
    assert not (out / "final.caffemodel").exists()


def test_missing_dataset_is_a_clear_error(tmp_path):
    proc = subprocess.run(TRAIN + ["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), "--iters", "1"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "train.txt does not exist" in proc.stderr


def test_an_image_size_the_loss_scales_do_not_divide_is_a_clear_error(tmp_path, tiny_split):
    """48 x 80 with a loss at block size 32: one error line naming the size and the scale, no traceback."""
    proc = subprocess.run(TRAIN + ["--data", str(tiny_split), "--out", str(tmp_path / "r"), "--iters", "1",
                                   "--scales", "32"], capture_output=True, text=True)
    assert proc.returncode != 0, proc.stdout[-500:]
    assert "train.py: error: image size 48 x 80" in proc.stderr and "loss scale 32" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_reverse_without_source_depth_is_a_clear_error(tmp_path, tiny_split):
    """A photometric net reading pairs backwards needs src_depth: the error names the file and the remedy."""
    proc = subprocess.run(TRAIN + ["--data", str(tiny_split), "--out", str(tmp_path / "r"), "--iters", "1",
                                   "--reverse", "0.5"], capture_output=True, text=True)
    assert proc.returncode != 0, proc.stdout[-500:]
    assert "missing dataset(s) ['src_depth']" in proc.stderr and "make_dataset.py --src-depth" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_photometric_training_on_reversed_pairs(tmp_path):
    """make_dataset.py --src-depth writes the source's depth; a photometric net trains on pairs read backwards."""
    data = tmp_path / "data"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_dataset.py"), "--out", str(data), "--train",
                           "4", "--val", "2", "--test", "2", "--height", "48", "--width", "80", "--workers", "1",
                           "--src-depth", "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import h5py

    with h5py.File(data / "train_000.h5") as f:
        assert f["src_depth"].shape == (4, 1, 48, 80) and float(np.min(f["src_depth"])) > 0
    proc = subprocess.run(TRAIN + ["--data", str(data), "--out", str(tmp_path / "r"), "--iters", "2", "--reverse", "1",
                                   "--eval-train", "0"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RandomReverse" in (tmp_path / "r" / "train.prototxt").read_text()
    assert json.loads((tmp_path / "r" / "result.json").read_text())["iters"] == 2


def test_resume_check_treats_a_missing_option_as_its_default(tmp_path):
    """A run recorded before an option existed resumes when the option is left at its default (None), and is
    refused, naming the option, when it is set."""
    sys.path.insert(0, str(REPO))
    from pygeometry.training import check_resume

    (tmp_path / "checkpoint.json").write_text(json.dumps({"snapshots": [
        {"iter": 3, "solverstate": "s", "caffemodel": "c"}]}))
    (tmp_path / "settings.json").write_text(json.dumps({"lr": 0.0002}))
    assert check_resume(tmp_path, {"lr": 0.0002, "pair_input": None}, "auto") is None
    (tmp_path / "settings.json").write_text(json.dumps({"lr": 0.0002}))
    reason = check_resume(tmp_path, {"lr": 0.0002, "pair_input": "difference"}, "auto")
    assert reason is not None and "pair_input: None then, 'difference' now" in reason
