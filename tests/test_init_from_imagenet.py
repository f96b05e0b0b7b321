"""Net surgery from a BVLC-layout AlexNet: shapes, the 3 -> 6 channel conv1 (copied to both halves, halved),
shared siamese trunk, and the conv1 response check. The AlexNet-shaped caffemodel is written by the test."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import caffe
from caffe import layers as L
from pygeometry.models import alexnet_trunk

pytestmark = pytest.mark.blas  # float32 Caffe through BLAS: .ci/run repeats these under every OpenBLAS kernel

REPO = Path(__file__).resolve().parents[1]
SCRIPT = [sys.executable, str(REPO / "scripts" / "init_from_imagenet.py")]


@pytest.fixture(scope="module")
def alexnet_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("alexnet")
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 227, 227]))
    trunk = alexnet_trunk(n, n.data, fc=True)
    n.fc8 = L.InnerProduct(trunk, num_output=1000)
    path = out / "alexnet.prototxt"
    path.write_text(str(n.to_proto()))
    net = caffe.Net(str(path), caffe.TEST)
    rng = np.random.default_rng(0)
    for name, blobs in net.params.items():
        for b in blobs:
            b.data[...] = rng.normal(scale=0.01, size=b.data.shape)
    model = out / "bvlc_alexnet_shaped.caffemodel"
    net.save(str(model))
    return model, {k: [b.data.copy() for b in v] for k, v in net.params.items()}


def _load(prototxt_net, model):
    from pygeometry.nets import pose_net
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".prototxt")
    with os.fdopen(fd, "w") as f:
        f.write(str(pose_net(prototxt_net, "deploy", batch_size=1, height=64, width=208).to_proto()))
    try:
        return caffe.Net(path, caffe.TEST, weights=str(model))
    finally:
        os.remove(path)


def test_early_fusion_conv1_is_duplicated_and_halved(tmp_path, alexnet_model):
    model, ref = alexnet_model
    out = tmp_path / "early.caffemodel"
    proc = subprocess.run(SCRIPT + [str(model), "--network", "early_fusion_photometric", "--out", str(out),
                                    "--height", "64", "--width", "208"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "conv1 check" in proc.stdout and "3 -> 6 input channels" in proc.stdout
    net = _load("early_fusion_photometric", out)
    w = net.params["conv1"][0].data
    np.testing.assert_allclose(w[:, :3], ref["conv1"][0] / 2, rtol=1e-6)
    np.testing.assert_allclose(w[:, 3:], ref["conv1"][0] / 2, rtol=1e-6)
    for name in ("conv2", "conv5"):
        np.testing.assert_array_equal(net.params[name][0].data, ref[name][0])


def test_late_fusion_trunk_is_shared_and_copied(tmp_path, alexnet_model):
    model, ref = alexnet_model
    out = tmp_path / "late.caffemodel"
    proc = subprocess.run(SCRIPT + [str(model), "--network", "late_fusion_photometric", "--out", str(out),
                                    "--height", "64", "--width", "208"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    net = _load("late_fusion_photometric", out)
    for name in ("conv1", "conv3"):
        np.testing.assert_array_equal(net.params[f"src_{name}"][0].data, ref[name][0])
        np.testing.assert_array_equal(net.params[f"tgt_{name}"][0].data, ref[name][0])


def test_bad_source_models_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(b"\x00\x01not a model")
    proc = subprocess.run(SCRIPT + [str(junk), "--out", str(tmp_path / "x.caffemodel")], capture_output=True,
                          text=True)
    assert proc.returncode != 0 and ("not a Caffe model" in proc.stderr or "not a BVLC AlexNet" in proc.stderr)
    proc = subprocess.run(SCRIPT + [str(tmp_path / "missing.caffemodel"), "--out", str(tmp_path / "x.caffemodel")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    assert not (tmp_path / "x.caffemodel").exists()
