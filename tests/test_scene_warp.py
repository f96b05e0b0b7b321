"""The composed chain against an independent ground truth: a scene ray-cast WITHOUT the layers (pygeometry.render),
seen from two known poses. Warping the source into the target with the true depth and pose through
SE3Generator -> Transform3DGrid -> PinholeProjection -> BilinearWarp in a caffe.Net reproduces the target
(photometric error near zero over valid pixels), and the error grows when the pose is perturbed."""
import os
import tempfile

import numpy as np
import pytest

import caffe
from caffe import layers as L
from pygeometry import netspec as G
from pygeometry.render import render_pair


def chain_net(shape):
    N, _, H, W = shape
    n = caffe.NetSpec()
    n.src = L.Input(shape=dict(dim=[N, 3, H, W]))
    n.tgt = L.Input(shape=dict(dim=[N, 3, H, W]))
    n.tgt_depth = L.Input(shape=dict(dim=[N, 1, H, W]))
    n.K = L.Input(shape=dict(dim=[N, 4]))
    n.xi = L.Input(shape=dict(dim=[N, 6]))
    n.T = G.se3_generator(n.xi)
    n.points = G.transform_3d_grid(n.tgt_depth, n.T, K_blob=n.K)
    n.coords, n.proj_valid = G.pinhole_projection(n.points, K_blob=n.K, with_valid=True)
    n.warped, n.valid = G.bilinear_warp(n.src, n.coords, with_valid=True)
    n.loss = G.photometric_loss(n.warped, n.tgt, n.valid)
    fd, path = tempfile.mkstemp(suffix=".prototxt")
    with os.fdopen(fd, "w") as f:
        f.write("force_backward: true\n" + str(n.to_proto()))
    try:
        return caffe.Net(path, caffe.TEST)
    finally:
        os.remove(path)


@pytest.fixture(scope="module")
def pairs():
    return [render_pair(seed, height=96, width=160, motion=motion)
            for seed, motion in [(1, "handheld"), (2, "driving"), (3, "mixed"), (4, "handheld")]]


def _run(net, pairs, xi):
    for key in ("src", "tgt", "tgt_depth", "K"):
        net.blobs[key].data[...] = np.stack([p[key] for p in pairs])
    net.blobs["xi"].data[...] = xi
    net.forward()
    return float(net.blobs["loss"].data), net.blobs["valid"].data.mean()


def test_true_pose_reproduces_the_target(pairs):
    net = chain_net((len(pairs), 3, 96, 160))
    xi_gt = np.stack([p["xi_gt"] for p in pairs])
    loss, valid = _run(net, pairs, xi_gt)
    baseline = float(np.mean([np.abs(p["src"] - p["tgt"]).mean() for p in pairs]))
    assert valid > 0.5, "most target pixels should see the source"
    assert loss < 0.02, f"photometric L1 with the true pose {loss:.4f}"
    assert loss < 0.25 * baseline, f"true pose {loss:.4f} vs unwarped {baseline:.4f}"
    # The warp also agrees with the per-pair ground truth when checked one by one.
    for i in range(len(pairs)):
        warped, valid_i, tgt = net.blobs["warped"].data[i], net.blobs["valid"].data[i, 0] > 0, pairs[i]["tgt"]
        assert np.median(np.abs(warped - tgt)[:, valid_i]) < 0.02


def test_error_grows_when_the_pose_is_perturbed(pairs):
    net = chain_net((len(pairs), 3, 96, 160))
    xi_gt = np.stack([p["xi_gt"] for p in pairs])
    losses = []
    for scale in (0.0, 0.01, 0.03, 0.1):
        offsets = np.tile([1.0, -1.0, 0.5, 0.3, -0.3, 0.3], (len(pairs), 1)) * scale
        losses.append(_run(net, pairs, xi_gt + offsets)[0])
    assert all(a < b for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] > 3 * losses[0], losses


def test_gradient_points_towards_the_true_pose(pairs):
    """Backward through the chain: one small step along -dL/dxi from a perturbed pose lowers the loss."""
    net = chain_net((len(pairs), 3, 96, 160))
    xi = np.stack([p["xi_gt"] for p in pairs]) + np.array([0.02, -0.01, 0.02, 0.004, -0.004, 0.002])
    loss0, _ = _run(net, pairs, xi)
    net.backward()
    grad = net.blobs["xi"].diff.copy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
    loss1, _ = _run(net, pairs, xi - 1e-3 * grad / np.abs(grad).max())
    assert loss1 < loss0, (loss0, loss1)
