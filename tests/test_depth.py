"""Depth and pose from video: the rendered triplets against their own geometry, the depth metrics, baselines,
snippet ATE and failure-mode checks against hand-computed values, the depth_pose networks in caffe.Net (sizes,
exact border upsampling, deploy outputs), and scripts/train_depth.py end to end on a tiny triplet split."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import caffe
from conftest import REPO
from pygeometry.depth_evaluation import (REMEDIES, ate, depth_baselines, depth_metrics, mean_depth_map, snippet_ate,
                                         snippet_positions, training_warnings)
from pygeometry.depth_nets import check_depth_image_size, depth_pose_net, upsample_exact
from pygeometry.evaluation import warp_source
from pygeometry.kernels.min_reprojection import min_reprojection_forward
from pygeometry.poses import matrix_from_pose_vector, pose_vector_from_matrix
from pygeometry.render import render_triplet


def _net(spec, phase=caffe.TEST):
    fd, path = tempfile.mkstemp(suffix=".prototxt")
    with os.fdopen(fd, "w") as f:
        f.write(str(spec.to_proto()))
    try:
        return caffe.Net(path, phase)
    finally:
        os.remove(path)


@pytest.fixture(scope="module")
def triplet():
    return render_triplet(5, height=64, width=96, photometric_jitter=0.0)


def test_triplet_sources_warp_onto_the_target_with_the_true_poses(triplet):
    """Both sources, warped with the target's true depth and their true poses (the project's kernels), reproduce
    the target; the minimum-reprojection error with the true poses is far below the unwarped one."""
    t = {k: v[None] if isinstance(v, np.ndarray) else v for k, v in triplet.items()}
    warped = [warp_source(t[src], t["tgt_depth"], t["K"], t[pose][None]) for src, pose in
              (("src_prev", "prev_T_tgt"), ("src_next", "next_T_tgt"))]
    for w, src in zip(warped, ("src_prev", "src_next")):
        error = np.abs(w[0] - t["tgt"]).mean(axis=1)  # texture aliasing at 64 x 96 leaves ~0.02; occlusions more
        assert np.median(error) < 0.04 and error.mean() < 0.5 * np.abs(t[src] - t["tgt"]).mean()
    true, _ = min_reprojection_forward(t["tgt"].astype(np.float64), [w[0].astype(np.float64) for w in warped],
                                       None, 0.0)
    unwarped, _ = min_reprojection_forward(t["tgt"].astype(np.float64),
                                           [t["src_prev"].astype(np.float64), t["src_next"].astype(np.float64)],
                                           None, 0.0)
    assert true < 0.3 * unwarped
    # the previous frame is behind the target, the next one ahead (driving forward along +z)
    assert triplet["next_T_tgt"][2, 3] < 0 < triplet["prev_T_tgt"][2, 3]
    np.testing.assert_allclose(matrix_from_pose_vector(triplet["xi_next"]), triplet["next_T_tgt"], atol=1e-12)


def test_stereo_partner_warps_onto_the_target_with_the_rig_transform():
    t = render_triplet(5, height=64, width=96, photometric_jitter=0.0, stereo_baseline=0.5)
    np.testing.assert_array_equal(t["stereo_T_tgt"][:3, 3], [-0.5, 0, 0])
    b = {k: v[None] for k, v in t.items() if isinstance(v, np.ndarray)}
    warped, _ = warp_source(b["src_stereo"], b["tgt_depth"], b["K"], b["stereo_T_tgt"])
    error = np.abs(warped[0] - t["tgt"]).mean(axis=0)
    assert np.median(error) < 0.04 and error.mean() < 0.5 * np.abs(t["src_stereo"] - t["tgt"]).mean()
    mono = render_triplet(5, height=64, width=96, photometric_jitter=0.0)
    np.testing.assert_array_equal(mono["src_next"], t["src_next"])  # the rig adds a view, changes none


def test_static_triplet_has_identity_poses():
    t = render_triplet(7, height=32, width=64, static=True)
    np.testing.assert_array_equal(t["prev_T_tgt"], np.eye(4))
    np.testing.assert_array_equal(t["xi_next"], np.zeros(6))
    assert np.abs(t["src_prev"] - t["tgt"]).mean() < 0.05  # only the noise differs


def test_depth_metrics_by_hand():
    gt = np.array([[[[1.0, 2.0], [4.0, 0.0]]]])  # one unknown pixel
    exact = depth_metrics(gt * 3, gt)  # median scaling removes any global scale
    assert exact["abs_rel"][0] == pytest.approx(0, abs=1e-12) and exact["a1"][0] == 1 and exact["scale"][0] == 1 / 3
    unscaled = depth_metrics(gt * 2, gt, median_scaling=False)
    assert unscaled["abs_rel"][0] == pytest.approx(1.0) and unscaled["a3"][0] == 0
    assert unscaled["rmse"][0] == pytest.approx(np.sqrt((1 + 4 + 16) / 3))
    pred = np.array([[[[1.0, 2.0], [8.0, 5.0]]]])  # median 2 = gt's median: no rescaling
    m = depth_metrics(pred, gt)
    assert m["abs_rel"][0] == pytest.approx(1 / 3)
    assert m["a1"][0] == pytest.approx(2 / 3)
    assert m["rmse_log"][0] == pytest.approx(np.sqrt(np.log(2) ** 2 / 3))
    assert np.isnan(depth_metrics(pred, np.zeros_like(gt))["abs_rel"][0])  # nothing to evaluate: NaN, counted


def test_mean_depth_map_and_baselines():
    train = np.array([[[[2.0, 0.0]]], [[[4.0, 0.0]]]])
    np.testing.assert_allclose(mean_depth_map(train), [[[3.0, 3.0]]])  # never known: the mean of known depths
    b = depth_baselines(np.array([[[1.0, 5.0]]]), 3)
    assert b["mean depth map"].shape == (3, 1, 1, 2) and np.all(b["constant"] == 1)


def test_snippet_ate_is_scale_free_and_measures_the_path():
    rng = np.random.default_rng(0)
    xi_prev, xi_next = rng.normal(scale=0.3, size=(4, 6)), rng.normal(scale=0.3, size=(4, 6))
    T_prev, T_next = (np.stack([matrix_from_pose_vector(x) for x in xi]) for xi in (xi_prev, xi_next))
    half = [np.stack([pose_vector_from_matrix(np.block([[T[:3, :3], 0.5 * T[:3, 3:]], [np.zeros((1, 3)), 1]]))
                      for T in Ts]) for Ts in (T_prev, T_next)]
    np.testing.assert_allclose(snippet_ate(*half, T_prev, T_next), 0, atol=1e-9)
    zero = np.zeros((4, 6))
    # all cameras predicted at the first one: the error is the true path, in the first (previous) frame
    tgt_in_prev = T_prev[:, :3, 3]
    next_in_prev = np.einsum("nij,nj->ni", T_prev[:, :3, :3], -np.einsum("nji,nj->ni", T_next[:, :3, :3],
                                                                           T_next[:, :3, 3])) + tgt_in_prev
    expected = np.sqrt(np.sum(tgt_in_prev ** 2, 1) + np.sum(next_in_prev ** 2, 1)) / 3
    np.testing.assert_allclose(snippet_ate(zero, zero, T_prev, T_next), expected, rtol=1e-12)


def test_snippet_positions_chain_the_triplets_of_a_rendered_snippet():
    from pygeometry.render import render_snippet, snippet_triplets

    snippet = render_snippet(3, n_frames=5, height=32, width=64, supersample=1)
    triplets = snippet_triplets(snippet)
    assert len(triplets) == 3 and all(np.array_equal(t["tgt"], snippet["images"][k + 1]) for k, t in enumerate(triplets))
    prev = np.stack([t["prev_T_tgt"] for t in triplets])[None]
    nxt = np.stack([t["next_T_tgt"] for t in triplets])[None]
    positions = snippet_positions(prev, nxt)[0]
    # independently: frame k's centre in frame 0 from the rendered steps, inverted one by one
    first_T_k, expected = np.eye(4), [np.zeros(3)]
    for step in snippet["next_T_frame"]:
        first_T_k = first_T_k @ np.linalg.inv(step)
        expected.append(first_T_k[:3, 3])
    np.testing.assert_allclose(positions, np.array(expected), atol=1e-12)
    assert np.linalg.norm(positions[-1]) > 1.0  # four driving steps move the camera metres
    # SfMLearner's definition by hand: a prediction at half scale plus an offset of one frame is exact after alignment
    gt = positions[None]
    assert ate(gt, 0.5 * gt)[0] < 1e-12
    shifted = gt.copy()
    shifted[0, 2] += [0.3, 0.0, 0.4]  # one camera 0.5 m off; the scale fit then spreads the error
    s = np.sum(gt * shifted) / np.sum(shifted * shifted)
    assert ate(gt, shifted)[0] == pytest.approx(np.sqrt(np.sum((s * shifted - gt) ** 2)) / 5, rel=1e-12)


def test_training_warnings_name_each_failure_mode():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 20, size=(2, 1, 8, 8))
    xi = rng.normal(scale=0.01, size=(4, 6))
    ok = np.ones((2, 1, 8, 8))
    assert training_warnings(0.1, depth, xi, ok, 0.1, 100) == []
    assert training_warnings(float("nan"), depth, xi, ok, 0.1, 100) == ["nan"]
    assert training_warnings(0.1, np.full_like(depth, 5.0), xi, ok, 0.1, 100) == ["collapse"]
    assert "limits" in training_warnings(0.1, np.where(depth > 2, 99.5, 0.1), xi, ok, 0.1, 100)
    assert training_warnings(0.1, depth, np.zeros((4, 6)), ok, 0.1, 100) == ["identity"]
    assert training_warnings(0.1, depth, np.zeros((4, 6)), ok, 0.1, 100, moving=False) == []
    assert training_warnings(0.1, depth, xi, np.zeros_like(ok), 0.1, 100) == ["masked"]
    assert set(REMEDIES) == {"nan", "collapse", "limits", "identity", "masked"}


def test_image_size_must_divide_by_the_encoder_stride():
    with pytest.raises(ValueError, match=r"height and width must be multiples of 32: width 208 \(nearest valid: "
                                         r"192 or 224\)"):
        check_depth_image_size(64, 208)
    check_depth_image_size(64, 224)


def test_exact_upsampling_keeps_constants_at_the_borders_and_interpolates_inside():
    from caffe import layers as L

    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 1, 4, 6]))
    upsample_exact(n, n.x, 4, (1, 1, 4, 6), "up")
    net = _net(n)
    net.blobs["x"].data[...] = 0.7
    net.forward()
    np.testing.assert_allclose(net.blobs["up"].data, 0.7, rtol=1e-6)  # raw Caffe bilinear is darker at the edges
    assert net.blobs["up_raw"].data[0, 0, 0, 0] < 0.7 * 0.9
    ramp = np.arange(6, dtype=np.float32)[None, None, None].repeat(4, axis=2)
    net.blobs["x"].data[...] = ramp
    net.forward()
    # away from the borders, bilinear with pixel centres at (x + 0.5) / 4 - 0.5: a linear ramp stays linear
    xs = (np.arange(24) + 0.5) / 4 - 0.5
    np.testing.assert_allclose(net.blobs["up"].data[0, 0, 8, 4:20], xs[4:20], atol=1e-5)


@pytest.mark.parametrize("encoder", ["separate", "shared"])
def test_depth_pose_deploy_net_outputs(encoder):
    net = _net(depth_pose_net("deploy", batch_size=2, height=64, width=96, pose_encoder=encoder))
    for key in ("src_prev", "tgt", "src_next"):
        net.blobs[key].data[...] = np.random.default_rng(1).uniform(size=(2, 3, 64, 96))
    net.forward()
    depth, xi = net.blobs["depth"].data, net.blobs["xi"].data
    assert depth.shape == (2, 1, 64, 96) and xi.shape == (4, 6)
    assert np.all(depth >= 0.1 - 1e-4) and np.all(depth <= 100 + 1e-2)
    np.testing.assert_allclose(np.median(depth), 1 / (0.01 + 9.99 / 2), rtol=0.2)  # the sigmoid's middle
    assert np.all(xi == 0)  # the identity


def _make_triplets(out, *extra):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "make_dataset.py"), "--triplets", "--out", str(out),
                           "--train", "8", "--val", "4", "--test", "4", "--height", "64", "--width", "64",
                           "--workers", "1", "--static", "0.25", "--snippets", "2", *extra], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_make_dataset_writes_triplets(tmp_path):
    import h5py

    _make_triplets(tmp_path, "--stereo", "0.5")
    record = json.loads((tmp_path / "dataset.json").read_text())
    assert record["complete"] and record["config"]["triplets"]
    with h5py.File(tmp_path / "train_000.h5", "r") as f:
        assert f["src_prev"].shape == (8, 3, 64, 64) and f["next_T_tgt"].shape == (8, 4, 4)
        assert f["src_stereo"].shape == (8, 3, 64, 64) and np.all(f["stereo_T_tgt"][:, 0, 3] == -0.5)
        still = np.all(f["xi_next"][...] == 0, axis=1) & np.all(f["xi_prev"][...] == 0, axis=1)
    assert int(still.sum()) == record["static_triplets"]["train"]
    assert record["snippets"] == {"snippets": 2, "frames": 5, "triplets": 6}
    with h5py.File(tmp_path / "snippets_000.h5", "r") as f:
        assert list(f["snippet"]) == [0, 0, 0, 1, 1, 1] and list(f["tgt_frame"]) == [1, 2, 3] * 2
        # consecutive triplets of a snippet share frames: target k is the previous frame of target k + 1
        np.testing.assert_array_equal(f["tgt"][0], f["src_prev"][1])
        np.testing.assert_array_equal(f["src_next"][1], f["tgt"][2])
        assert "src_stereo" not in f  # test only: no rig


MODES = {"monocular, source-first, no warm-up, no coarse copies": ["--pose-order", "source-first", "--warmup", "0",
                                                                  "--basin"],
         "stereo": ["--stereo", "--warmup", "2"],
         "stereo, temporal order, warm-up, basin": ["--stereo", "--pose-order", "temporal", "--warmup", "2",
                                                    "--basin", "2"]}


@pytest.mark.parametrize("mode", list(MODES))
def test_train_depth_end_to_end_and_resume_guard(tmp_path, mode):
    data, out = tmp_path / "data", tmp_path / "run"
    _make_triplets(data, *(["--stereo", "0.5"] if "--stereo" in MODES[mode] else []))
    cmd = [sys.executable, str(REPO / "scripts" / "train_depth.py"), "--data", str(data), "--out", str(out),
           "--iters", "4", "--batch", "2", "--val-interval", "2", "--snapshot-interval", "2", "--no-progress",
           *MODES[mode]]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert set(result["depth"]) == {"network", "mean depth map", "constant"}
    assert set(result["pose"]) == {"network", "identity", "mean training pose"}
    assert all(np.isfinite(v) for v in result["depth"]["network"].values())
    assert result["triplets"] == 4 and np.isfinite(result["ate_m"]["network"])
    assert result["snippets"] == {"snippets": 2, "frames": 5}
    assert set(result["ate5_m"]) == {"network", "identity", "mean training pose"}
    assert all(np.isfinite(v) for v in result["ate5_m"].values())
    for name in ("depth_grid.png", "curves.png", "deploy.prototxt", "final.caffemodel"):
        assert (out / name).stat().st_size > 0
    assert "Abs Rel" in (out / "train.log").read_text()
    assert ("depth_metric" in result) == ("--stereo" in MODES[mode])
    warmed = MODES[mode][MODES[mode].index("--warmup") + 1] != "0"
    assert (out / "warmup.caffemodel").exists() == warmed
    assert ("pose warm-up: 2 iterations" in (out / "train.log").read_text()) == warmed
    if warmed and "--stereo" in MODES[mode]:  # the warm-up net warps the next frame alone, without auto-masking
        text = (out / "warmup_train.prototxt").read_text()
        loss0 = text.split('name: "loss0"')[1].split("\n}")[0]
        assert "warped0_prev" not in text and "src_T_tgt_prev" in text
        assert 'bottom: "warped0_next"' in loss0 and '\\"automask\\": false' in loss0 and '\\"sources\\": 1' in loss0
    proc = subprocess.run(cmd + ["--resume", "auto", "--smoothness", "0.01"], capture_output=True, text=True)
    assert proc.returncode != 0 and "smoothness: 0.001 then, 0.01 now" in proc.stderr


@pytest.mark.parametrize("temporal_depth_grad", [True, False])
def test_stereo_mode_can_keep_the_temporal_losses_off_the_depth_network(tmp_path, temporal_depth_grad):
    """Only the temporal losses weighted (the stereo and smoothness losses at weight 0): they train the pose network
    always, and the depth network only in the joint mode."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    _make_triplets(tmp_path, "--stereo", "0.5")
    spec = depth_pose_net("train", source=str(tmp_path / "train.txt"), batch_size=2, height=64, width=64,
                          stereo=True, temporal_depth_grad=temporal_depth_grad)
    param = caffe_pb2.NetParameter()
    text_format.Merge(str(spec.to_proto()), param)
    for layer in param.layer:
        if layer.name.startswith(("stereo_loss", "smooth")):
            del layer.loss_weight[:]
            layer.loss_weight.append(0.0)
    path = tmp_path / "net.prototxt"
    path.write_text(text_format.MessageToString(param))
    net = caffe.Net(str(path), caffe.TRAIN)
    net.forward()
    net.backward()
    assert np.abs(net.params["fc_pose"][0].diff).sum() > 0  # the pose learns from video
    depth_grad = np.abs(net.params["disp0_score"][0].diff).sum() + np.abs(net.params["conv1"][0].diff).sum()
    assert (depth_grad > 0) == temporal_depth_grad


def _block_mean(x, f):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f).mean(axis=(3, 5))


def test_warmup_needs_the_temporal_pose_order(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "train_depth.py"), "--data", str(tmp_path),
                           "--out", str(tmp_path / "run"), "--pose-order", "source-first", "--warmup", "10"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "--warmup needs --pose-order temporal" in proc.stderr


def test_imagenet_variant_without_its_weights_names_the_make_target(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "train_depth.py"), "--data", str(tmp_path),
                           "--out", str(tmp_path / "run"), "--depth-encoder", "imagenet", "--imagenet-weights",
                           str(tmp_path / "none")], capture_output=True, text=True)
    assert proc.returncode != 0 and "run `make efficientnet`" in proc.stderr and "none" in proc.stderr


def test_basin_copies_compare_block_averages_and_gt_depth_trains_the_pose_alone(tmp_path):
    """The coarse copies (basin) equal the loss of f x f block averages warped at the block-averaged full-resolution
    coordinates (the project's kernels, independently of the net); with the true poses every copy is lower than at
    the identity; with gt_depth the depth network gets no gradient and the pose network does."""
    from pygeometry.kernels.bilinear import bilinear_forward

    _make_triplets(tmp_path)
    spec = depth_pose_net("train", source=str(tmp_path / "train.txt"), batch_size=2, height=64, width=64,
                          gt_depth=True, basin=(2, 4))
    net = _net(spec, caffe.TRAIN)
    assert not any(name.startswith("smooth") for name in net._layer_names)
    net.forward()
    xi_true = np.concatenate([net.blobs["xi_prev"].data, net.blobs["xi_next"].data])
    losses = {}
    for label, xi in (("identity", np.zeros_like(xi_true)), ("true", xi_true)):
        net.blobs["xi"].data[...] = xi
        net.forward(start="src_T_tgt")
        losses[label] = {k: float(net.blobs[k].data) for k in ("loss0", "loss_f2", "loss_f4")}
    assert all(losses["true"][k] < 0.8 * losses["identity"][k] for k in losses["true"])
    coords = net.blobs["coords_src0"].data.astype(np.float64)
    srcs, tgt = net.blobs["srcs"].data.astype(np.float64), net.blobs["tgt"].data.astype(np.float64)
    for f in (2, 4):
        coords_f = _block_mean(coords, f) / f + 0.5 / f - 0.5
        srcs_f = _block_mean(srcs, f)
        warped = bilinear_forward(srcs_f, coords_f, padding="border")[0]
        expected, _ = min_reprojection_forward(_block_mean(tgt, f), [warped[:2], warped[2:]],
                                               [srcs_f[:2], srcs_f[2:]], 0.85)
        assert float(net.blobs[f"loss_f{f}"].data) == pytest.approx(expected, rel=1e-4)
    net.backward()
    assert np.abs(net.params["fc_pose"][0].diff).sum() > 0
    assert np.abs(net.params["disp0_score"][0].diff).sum() == 0 and np.abs(net.params["conv1"][0].diff).sum() == 0


@pytest.mark.parametrize("encoder", ["separate", "shared"])
def test_temporal_order_predicts_forward_steps_and_inverts_the_previous_one(tmp_path, encoder):
    """temporal_order: the pose inputs are (previous, target) and (target, next); the warp uses exp(-xi) for the
    previous frame, exactly the inverse of the forward step exp(xi); source_pose_vectors gives the source poses."""
    from pygeometry.depth_nets import source_pose_vectors
    from pygeometry.kernels.se3 import se3_forward

    _make_triplets(tmp_path)
    spec = depth_pose_net("train", source=str(tmp_path / "train.txt"), batch_size=2, height=64, width=64,
                          pose_encoder=encoder, temporal_order=True)
    net = _net(spec, caffe.TRAIN)
    net.forward()
    if encoder == "separate":  # channels 0-2: the earlier frame, 3-5: the later one (block-averaged, preprocessed)
        np.testing.assert_array_equal(net.blobs["earlier"].data[:2], net.blobs["src_prev"].data)
        np.testing.assert_array_equal(net.blobs["earlier"].data[2:], net.blobs["tgt"].data)
        np.testing.assert_array_equal(net.blobs["later"].data[2:], net.blobs["src_next"].data)
    xi = np.random.default_rng(0).normal(scale=0.2, size=(4, 6))
    net.blobs["xi"].data[...] = xi
    net.forward(start="xi_fwd_prev")
    T = net.blobs["src_T_tgt"].data.astype(np.float64)
    np.testing.assert_allclose(T[:2] @ se3_forward(xi[:2], "se3_exp"), np.broadcast_to(np.eye(4), (2, 4, 4)),
                               atol=1e-6)
    np.testing.assert_allclose(T[2:], se3_forward(xi[2:], "se3_exp"), atol=1e-6)
    prev, nxt = source_pose_vectors(net.blobs)
    np.testing.assert_allclose(matrix_from_pose_vector(prev[1]), T[1], atol=1e-6)
    np.testing.assert_allclose(matrix_from_pose_vector(nxt[0]), T[2], atol=1e-6)
    net.backward()
    assert np.abs(net.params["fc_pose"][0].diff).sum() > 0
    deploy = _net(depth_pose_net("deploy", batch_size=2, height=64, width=64, pose_encoder=encoder,
                                 temporal_order=True))
    assert "xi_warp" in deploy.blobs and deploy.blobs["xi_warp"].data.shape == (4, 6)


def test_pose_gradient_alignment_points_to_the_truth_near_it(tmp_path):
    """pygeometry.landscape on rendered triplets with the true depth: close to the true pose (0.9 x truth) the
    gradient points to it; the counts are the moving pairs; a temporal_order net is refused."""
    from pygeometry.landscape import pose_gradient_alignment

    _make_triplets(tmp_path)
    caffe.set_random_seed(0)
    net = _net(depth_pose_net("train", source=str(tmp_path / "train.txt"), batch_size=4, height=64, width=64,
                              gt_depth=True), caffe.TRAIN)
    result = pose_gradient_alignment(net, starts=(0.0, 0.9), batches=2)
    assert set(result) == {0.0, 0.9} and set(result[0.9]) == {"prev", "next"}
    for source in ("prev", "next"):
        near = result[0.9][source]
        assert 0 < near["pairs"] <= 8 and -1 <= near["cos_t"] <= 1 and 0 <= near["right_sign_t"] <= 1
        assert near["cos_t"] > 0.2 and near["cos_w"] > 0.2
    temporal = _net(depth_pose_net("train", source=str(tmp_path / "train.txt"), batch_size=2, height=64, width=64,
                                   gt_depth=True, temporal_order=True), caffe.TRAIN)
    with pytest.raises(ValueError, match="temporal_order"):
        pose_gradient_alignment(temporal)


def test_unknown_temporal_sources_are_named():
    with pytest.raises(ValueError, match=r"temporal_sources must be \('prev', 'next'\) or \('next',\), got \('prev',\)"):
        depth_pose_net("train", source="x.txt", temporal_sources=("prev",))
