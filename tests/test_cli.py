"""Caffe's command-line tool runs nets with pygeometry layers: `caffe time` on a prototxt, `caffe train` learning a
pose from the photometric loss (scripts/train_pose_fit.py), `caffe time` and `caffe train` on every shipped net
and solver, with the same thread and denormal settings as scripts/train.py, and a layer's Python error reaching
the terminal with the layer's name under `caffe time`, `caffe test` and `caffe train`."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import caffe
from caffe import layers as L
from pygeometry import netspec as G
from pygeometry.nets import NETWORKS, SUPERVISED

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
    for script in ("train_pose_fit.py", "bench_layers.py", "bench_train.py", "make_dataset.py", "show_dataset.py",
                   "convert_kitti.py", "convert_tum.py", "diagnose.py", "train.py", "train_depth.py",
                   "pose_landscape.py"):
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"], capture_output=True,
                              text=True)
        assert proc.returncode == 0 and "usage:" in proc.stdout, script


# ------------------------------------------------------------------------ the shipped nets under the caffe tool
@pytest.fixture(scope="module")
def default_size_split(tmp_path_factory):
    """A dataset at the shipped nets' size (64 x 208, make_dataset.py's default): 4 training pairs."""
    out = tmp_path_factory.mktemp("split_64x208")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_dataset.py"), "--out", str(out), "--train",
                           "4", "--val", "2", "--test", "2", "--workers", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _shipped_net(name, split, folder):
    """prototxt/<name>_train.prototxt and solvers/<name>.prototxt as shipped, reading `split` and writing
    snapshots into `folder` (their only changes), 2 iterations."""
    text = (REPO / "prototxt" / f"{name}_train.prototxt").read_text()
    source = re.search(r'source: "([^"]+)"', text).group(1)
    model = folder / "train.prototxt"
    model.write_text(text.replace(source, str(split / "train.txt")))
    solver = (REPO / "solvers" / f"{name}.prototxt").read_text()
    solver = re.sub(r'train_net: "[^"]+"', f'train_net: "{model}"', solver)
    solver = re.sub(r'test_net: "[^"]+"', f'test_net: "{model}"', solver)
    solver = re.sub(r'snapshot_prefix: "[^"]+"', f'snapshot_prefix: "{folder}/snap"', solver)
    solver = re.sub(r"max_iter: \d+", "max_iter: 2", solver)
    (folder / "solver.prototxt").write_text(solver)
    return model, folder / "solver.prototxt"


def _caffe(args, cwd, **env):
    return subprocess.run([str(CAFFE), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, GLOG_minloglevel="0", **env), timeout=300)


@pytest.mark.parametrize("name", NETWORKS)
def test_caffe_time_and_train_run_every_shipped_net(name, tmp_path, default_size_split):
    """`caffe time` runs every layer's backward (a layer without a CPU backward, as Caffe's Threshold was, aborts
    it); `caffe train` runs the shipped solver."""
    model, solver = _shipped_net(name, default_size_split, tmp_path)
    proc = _caffe(["time", "-model", model, "-iterations", 2], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Average Forward-Backward" in proc.stderr
    if name not in SUPERVISED:
        assert "depth_valid\tbackward" in proc.stderr  # the Threshold layer's backward ran
    proc = _caffe(["train", "-solver", solver], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Optimization Done" in proc.stderr


@pytest.fixture(scope="module")
def default_size_triplets(tmp_path_factory):
    """Triplets at the shipped depth nets' size (64 x 224, make_dataset.py --triplets' default): 4 for training."""
    out = tmp_path_factory.mktemp("triplets_64x224")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_dataset.py"), "--triplets", "--out", str(out),
                           "--train", "4", "--val", "2", "--test", "2", "--snippets", "0", "--workers", "1"],
                          capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.parametrize("name", ["depth_pose", "depth_pose_shared", "depth_pose_warmup", "depth_pose_shared_warmup"])
def test_caffe_time_and_train_run_the_shipped_depth_nets(name, tmp_path, default_size_triplets):
    model, solver = _shipped_net(name, default_size_triplets, tmp_path)
    proc = _caffe(["time", "-model", model, "-iterations", 2], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loss0\tbackward" in proc.stderr and "smooth3\tbackward" in proc.stderr
    proc = _caffe(["train", "-solver", solver], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Optimization Done" in proc.stderr


PROBE = '''
import json, os
import numpy as np
import caffe
from pygeometry.denormals import denormals_flushed


class Probe(caffe.Layer):
    """Writes what the process runs with into probe.json."""

    def setup(self, bottom, top):
        with open("probe.json", "w") as f:
            json.dump({"OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
                       "denormals_flushed": denormals_flushed()}, f)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        pass


class Denormals(caffe.Layer):
    """Top (64, 1024): 1e-39, a float32 denormal, set by its bits (converting 1e-39 with FTZ set would give 0)."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(64, 1024)

    def forward(self, bottom, top):
        top[0].data[...] = np.full((64, 1024), 0x000AE398, np.uint32).view(np.float32)

    def backward(self, top, propagate_down, bottom):
        pass


class GemmProbe(caffe.Layer):
    """Writes how many rows of its bottom (a GEMM of the denormals) are not exactly zero into gemm.json."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        with open("gemm.json", "w") as f:
            json.dump({"nonzero_rows": int((bottom[0].data.view(np.uint32) != 0).any(axis=1).sum())}, f)
        top[0].data[...] = 0

    def backward(self, top, propagate_down, bottom):
        pass
'''


def test_the_caffe_tool_runs_like_train_py(tmp_path):
    """One OpenBLAS thread per core and denormals flushed to zero, as scripts/train.py sets for pycaffe (the
    wrapper sets OPENBLAS_NUM_THREADS unless the user did; the patched tool sets FTZ/DAZ), in OpenBLAS's worker
    threads too: a GEMM on denormal inputs (1e-39 times a 1024 x 1024 matrix of ones, split over the threads) gives
    exact zeros, where a worker without the flags gives 1e-36 in its rows (tests/test_denormals.py has the
    control)."""
    (tmp_path / "probe_layer.py").write_text(PROBE)
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2]))
    n.y = L.Python(n.x, python_param=dict(module="probe_layer", layer="Probe"))
    n.tiny = L.Python(python_param=dict(module="probe_layer", layer="Denormals"))
    n.gemm = L.InnerProduct(n.tiny, num_output=1024, bias_term=False, weight_filler=dict(type="constant", value=1.0))
    n.gemm_probe = L.Python(n.gemm, python_param=dict(module="probe_layer", layer="GemmProbe"))
    (tmp_path / "probe.prototxt").write_text(str(n.to_proto()))
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    proc = subprocess.run([str(CAFFE), "time", "-model", "probe.prototxt", "-iterations", "1"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "probe.json").read_text()) == {"OPENBLAS_NUM_THREADS": str(len(os.sched_getaffinity(0))),
                                                                 "denormals_flushed": True}
    assert json.loads((tmp_path / "gemm.json").read_text()) == {"nonzero_rows": 0}


# ----------------------------------------------------------------------- errors under the caffe tool
def _bad_net(case):
    """A small net whose layer 'my_layer' fails in setup, reshape or forward, and the message expected."""
    n = caffe.NetSpec()
    n.img = L.DummyData(shape=dict(dim=[1, 3, 6, 8]), data_filler=dict(type="constant", value=0.5))
    n.coords = L.DummyData(shape=dict(dim=[1, 2, 6, 8]), data_filler=dict(type="constant", value=2.0))
    n.depth = L.DummyData(shape=dict(dim=[1, 1, 6, 8]),
                          data_filler=dict(type="constant", value=float("nan") if case == "nan depth" else 2.0))
    n.xi = L.DummyData(shape=dict(dim=[1, 6]), data_filler=dict(type="constant", value=0.0))
    n.T = G.se3_generator(n.xi)
    if case == "unknown key":
        n.my_layer = L.Python(n.img, n.coords, python_param=dict(module="pygeometry.layers", layer="BilinearWarp",
                                                                 param_str='{"paddin": "zeros"}'))
        return n, "unknown param_str key 'paddin'"
    if case == "bad json":
        n.my_layer = L.Python(n.img, n.coords, python_param=dict(module="pygeometry.layers", layer="BilinearWarp",
                                                                 param_str="{padding: zeros}"))
        return n, "param_str is not valid JSON"
    if case == "negative focal length":
        # written by hand: pygeometry.netspec refuses this K already when the prototxt is generated
        n.my_layer = L.Python(n.depth, n.T, python_param=dict(module="pygeometry.layers", layer="Transform3DGrid",
                                                              param_str='{"K": [-50, 50, 4, 3]}'))
        return n, "fx > 0 and fy > 0"
    if case == "wrong bottom shape":
        n.my_layer = G.bilinear_warp(n.img, n.depth)
        return n, "bottom 'coords' must have shape (1, 2, *, *), got (1, 1, 6, 8)"
    if case == "nan depth":
        n.my_layer = G.transform_3d_grid(n.depth, n.T, K=[50.0, 50.0, 4.0, 3.0])
        return n, "bottom 'depth' contains 48 NaN/inf value(s)"
    raise ValueError(case)


ERROR_CASES = ["unknown key", "bad json", "negative focal length", "wrong bottom shape", "nan depth"]
# every case under `caffe time`; a setup error and a forward error under `caffe test` and `caffe train`
ERROR_RUNS = ([(case, "time") for case in ERROR_CASES]
              + [(case, command) for case in ("unknown key", "nan depth") for command in ("test", "train")])


@pytest.mark.parametrize("case,command", ERROR_RUNS)
def test_python_errors_reach_the_terminal(case, command, tmp_path):
    """The caffe tool prints a pygeometry layer's error, with the layer's name in the prototxt, and exits with 1
    (it used to abort in std::terminate with no message)."""
    n, message = _bad_net(case)
    (tmp_path / "bad.prototxt").write_text(str(n.to_proto()))
    (tmp_path / "solver.prototxt").write_text('net: "bad.prototxt"\nbase_lr: 0.1\nmax_iter: 1\nsolver_mode: CPU\n'
                                              'snapshot_after_train: false\n')
    if command == "test":  # caffe test wants weights: a model file with no layer of this net
        empty = caffe.NetSpec()
        empty.x = L.DummyData(shape=dict(dim=[1]))
        (tmp_path / "empty.prototxt").write_text(str(empty.to_proto()))
        caffe.Net(str(tmp_path / "empty.prototxt"), caffe.TEST).save(str(tmp_path / "empty.caffemodel"))
    args = {"time": ["time", "-model", "bad.prototxt", "-iterations", 1],
            "test": ["test", "-model", "bad.prototxt", "-weights", "empty.caffemodel", "-iterations", 1],
            "train": ["train", "-solver", "solver.prototxt"]}[command]
    proc = _caffe(args, tmp_path)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "terminate called" not in proc.stderr
    assert "ParamError" in proc.stderr and message in proc.stderr, proc.stderr[-3000:]
    assert "in Caffe layer 'my_layer' (Python pygeometry.layers." in proc.stderr, proc.stderr[-3000:]


def test_pycaffe_errors_name_the_layer(tmp_path):
    n, message = _bad_net("nan depth")
    (tmp_path / "bad.prototxt").write_text(str(n.to_proto()))
    net = caffe.Net(str(tmp_path / "bad.prototxt"), caffe.TEST)
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        net.forward()
    assert "in Caffe layer 'my_layer' (Python pygeometry.layers.Transform3DGrid), forward" in info.value.__notes__


def test_readme_performance_block_is_written_by_bench_train():
    """The README's performance figures sit between the markers scripts/bench_train.py --readme replaces (each
    once), and the block names the command that measured it."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import bench_train
    finally:
        sys.path.remove(str(REPO / "scripts"))
    readme = (REPO / "README.md").read_text()
    assert readme.count(bench_train.README_BEGIN) == 1 and readme.count(bench_train.README_END) == 1
    block = readme.split(bench_train.README_BEGIN)[1].split(bench_train.README_END)[0]
    assert block.strip().startswith("Measured with `scripts/bench_train.py")
    assert "| whole |" in block and "`caffe time`" in block
