"""The synthetic dataset: generated with scripts/make_dataset.py, read by Caffe's HDF5Data layer, resumable,
never a complete-looking partial file; and the contact sheet."""
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import caffe
from caffe import layers as L
from pygeometry.data.hdf5 import KEYS, DatasetWriter, read_list_file

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--train", "5", "--val", "2", "--test", "2", "--pairs-per-file", "3", "--height", "24", "--width",
        "40", "--workers", "1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_dataset.py"), "--out", str(out)] + ARGS,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_splits_lists_and_shapes(dataset):
    files = {s: read_list_file(dataset / f"{s}.txt") for s in ("train", "val", "test")}
    assert [len(files[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    with h5py.File(files["train"][0], "r") as f:
        assert f["src"].shape == (3, 3, 24, 40) and f["tgt_depth"].shape == (3, 1, 24, 40)
        assert f["K"].shape == (3, 4) and f["src_T_tgt"].shape == (3, 4, 4) and f["xi_gt"].shape == (3, 6)
        assert all(f[k].dtype == np.float32 for k in KEYS)
        assert 0 <= f["src"][...].min() and f["src"][...].max() <= 1 and (f["tgt_depth"][...] > 0).mean() > 0.99
    # No scene is shared: the images of every pair differ across splits.
    firsts = [h5py.File(files[s][0], "r")["tgt"][0] for s in ("train", "val", "test")]
    assert not np.allclose(firsts[0], firsts[1]) and not np.allclose(firsts[1], firsts[2])
    assert json.loads((dataset / "dataset.json").read_text())["complete"] is True


def test_caffe_hdf5data_layer_reads_a_split(dataset, tmp_path):
    n = caffe.NetSpec()
    n.src, n.tgt, n.tgt_depth, n.K, n.src_T_tgt, n.xi_gt = L.HDF5Data(
        source=str(dataset / "train.txt"), batch_size=4, ntop=6)
    model = tmp_path / "data.prototxt"
    model.write_text(str(n.to_proto()))
    net = caffe.Net(str(model), caffe.TEST)
    net.forward()
    assert net.blobs["src"].data.shape == (4, 3, 24, 40) and net.blobs["src_T_tgt"].data.shape == (4, 4, 4)
    with h5py.File(read_list_file(dataset / "train.txt")[0], "r") as f:
        for key in KEYS:
            np.testing.assert_array_equal(net.blobs[key].data[:3], f[key][...])


def test_rerun_resumes_and_other_settings_are_refused(dataset):
    stamps = {p: p.stat().st_mtime_ns for p in dataset.glob("*.h5")}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_dataset.py"), "--out", str(dataset)] + ARGS,
                          capture_output=True, text=True)
    assert proc.returncode == 0
    assert {p: p.stat().st_mtime_ns for p in dataset.glob("*.h5")} == stamps
    other = ARGS[:-4] + ["--width", "48", "--workers", "1"]
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_dataset.py"), "--out", str(dataset)] + other,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "other settings" in proc.stderr


def test_interrupted_write_leaves_no_complete_looking_file(tmp_path):
    target = tmp_path / "x.h5"
    with pytest.raises(RuntimeError):
        with DatasetWriter(target, 4, 5) as w:
            w.append(src=np.zeros((3, 4, 5)), tgt=np.zeros((3, 4, 5)), tgt_depth=np.ones((1, 4, 5)), K=[1, 1, 2, 2],
                     src_T_tgt=np.eye(4), xi_gt=np.zeros(6))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="'tgt_depth' must have shape"):
        with DatasetWriter(target, 4, 5) as w:
            w.append(src=np.zeros((3, 4, 5)), tgt=np.zeros((3, 4, 5)), tgt_depth=np.ones((4, 5)), K=[1, 1, 2, 2],
                     src_T_tgt=np.eye(4), xi_gt=np.zeros(6))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_list_file(tmp_path / "missing.txt")


def test_contact_sheet_and_flow_agree_with_the_layers_kernels(dataset, tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    import show_dataset

    from pygeometry.kernels import projection_forward, transform_grid_forward

    with h5py.File(read_list_file(dataset / "val.txt")[0], "r") as f:
        depth, K, T = f["tgt_depth"][0], f["K"][0], f["src_T_tgt"][0]
    flow = show_dataset.gt_flow(depth, K, T)
    points = transform_grid_forward(depth[None].astype(np.float64), T[None].astype(np.float64), K.astype(np.float64))
    flow_k, valid = projection_forward(points, K.astype(np.float64), output="flow")
    ok = valid[0, 0] > 0
    np.testing.assert_allclose(flow[:, ok], flow_k[0][:, ok], atol=1e-3)
    out = tmp_path / "sheet.png"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "show_dataset.py"), str(dataset / "train.txt"),
                           "--pairs", "3", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import cv2
    img = cv2.imread(str(out))
    assert img.shape == (20 + 3 * 24, 4 * 40, 3) and img.std() > 10


def test_sequence_keys_are_written_and_checked(tmp_path):
    import h5py
    import numpy as np
    import pytest
    from pygeometry.data.hdf5 import DatasetWriter

    pair = dict(src=np.zeros((3, 4, 5)), tgt=np.zeros((3, 4, 5)), tgt_depth=np.ones((1, 4, 5)), K=[4, 4, 2, 1.5],
                src_T_tgt=np.eye(4), xi_gt=np.zeros(6))
    seq = dict(sequence=3, tgt_frame=7, src_frame=8, tgt_time=0.7, src_time=0.8)
    with DatasetWriter(tmp_path / "s.h5", 4, 5, sequence=True) as w:
        w.append(**pair, **seq)
        with pytest.raises(ValueError, match="missing \\['src_frame'\\]"):
            w.append(**pair, **{k: v for k, v in seq.items() if k != "src_frame"})
        with pytest.raises(ValueError, match="'tgt_time' must be one finite number"):
            w.append(**pair, **dict(seq, tgt_time=float("nan")))
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f["tgt_frame"][0] == 7 and f["sequence"].dtype == np.int64 and f["src_time"][0] == 0.8
    with DatasetWriter(tmp_path / "p.h5", 4, 5) as w:  # without sequence=True the keys are unknown
        with pytest.raises(ValueError, match="unknown \\['sequence'"):
            w.append(**pair, **seq)
        w.append(**pair)
