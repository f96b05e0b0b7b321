"""Caffe's command-line tool runs nets with pygeometry layers: `caffe time` on a prototxt, and `caffe train`
learning a pose from the photometric loss (scripts/train_pose_fit.py, the job behind `make train`)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import caffe
from caffe import layers as L
from pygeometry import netspec as G

REPO = Path(__file__).resolve().parents[1]
CAFFE = REPO / ".venv" / "bin" / "caffe"


def test_caffe_time_runs_the_chain(tmp_path):
    K = [50.0, 50.0, 15.5, 11.5]
    n = caffe.NetSpec()
    n.src = L.Input(shape=dict(dim=[2, 3, 24, 32]))
    n.depth = L.DummyData(shape=dict(dim=[2, 1, 24, 32]), data_filler=dict(type="constant", value=3.0))
    n.xi = L.DummyData(shape=dict(dim=[2, 6]), data_filler=dict(type="gaussian", std=0.01))
    n.T = G.se3_generator(n.xi)
    n.points = G.transform_3d_grid(n.depth, n.T, K=K)
    n.coords = G.pinhole_projection(n.points, K=K)
    n.warped = G.bilinear_warp(n.src, n.coords)
    n.loss = G.photometric_loss(n.warped, n.src, alpha=0.85)
    model = tmp_path / "chain.prototxt"
    model.write_text("force_backward: true\n" + str(n.to_proto()))
    proc = subprocess.run([str(CAFFE), "time", "-model", str(model), "-iterations", "3"], cwd=tmp_path,
                          capture_output=True, text=True, env=dict(os.environ, GLOG_minloglevel="0"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Average Forward-Backward" in proc.stderr
    for layer in ("T", "points", "coords", "warped", "loss"):
        assert f"{layer}\tforward" in proc.stderr and f"{layer}\tbackward" in proc.stderr, layer


def test_caffe_train_learns_a_pose_from_photometric_loss(tmp_path):
    out = tmp_path / "fit"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "train_pose_fit.py"), "--out", str(out),
                           "--height", "96", "--width", "224", "--seed", "6"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    loss, t_err, r_err = result["photometric_loss"], result["translation_error_m"], result["rotation_error_deg"]
    assert loss["trained"] < 0.5 * loss["identity"], result
    assert t_err["trained"] < 0.5 * t_err["identity"], result
    assert r_err["trained"] < 0.5 * r_err["identity"], result
    for log in out.glob("level*/caffe_train.log"):
        assert "Optimization Done" in log.read_text()
    assert len(list(out.glob("level*/caffe_train.log"))) == 3
    assert (out / "pose_fit.png").stat().st_size > 1000


def test_scripts_have_help():
    for script in ("train_pose_fit.py", "bench_layers.py", "make_dataset.py", "show_dataset.py", "convert_kitti.py",
                   "convert_tum.py"):
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"], capture_output=True,
                              text=True)
        assert proc.returncode == 0 and "usage:" in proc.stdout, script
