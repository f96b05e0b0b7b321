"""Evaluation: pose metrics against hand-computed values (0 and 180 degree edge cases, |t| ~ 0), photometric
error of a warp, trajectories and ATE/RPE with evo on synthetic trajectories with known answers, split loading
errors, and scripts/evaluate.py end to end (baselines only, and a deploy net with random weights)."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pygeometry import evaluation as ev
from pygeometry.kernels.mirror import POSE_SIGNS
from pygeometry.kernels.photometric import photometric_forward
from pygeometry.kernels.se3 import se3_forward
from pygeometry.poses import pose_vector_from_matrix
from pygeometry.render import render_pair

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import evaluate as evaluate_script  # noqa: E402


def T_of(t=(0, 0, 0), w=(0, 0, 0)):
    return se3_forward(np.array([list(t) + list(w)], np.float64))[0]


# ----------------------------------------------------------------------------------------------- pose metrics

def test_pose_metrics_against_hand_computed_values():
    gt = np.stack([T_of((3, 0, 4)), T_of((1, 0, 0)), T_of((1, 0, 0)), T_of((0, 0, 2), (0, 0, np.pi / 2)),
                   T_of(w=(np.pi, 0, 0)), T_of(w=(0, 0, 1e-6))])
    pred = np.stack([T_of((3, 0, 0)), T_of((-1, 0, 0)), T_of((0, 2, 0)), T_of((0, 0, 1)),
                     T_of(), T_of()])
    e = ev.transform_errors(pred, gt)
    np.testing.assert_allclose(e["translation_m"], [4, 2, np.sqrt(5), 1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(e["translation_pct"], [80, 200, 100 * np.sqrt(5), 50, 0, 0], atol=1e-9)
    # 0 and 180 degrees exactly; the zero-motion pairs are 0 (both |t| ~ 0).
    np.testing.assert_allclose(e["translation_dir_deg"], [np.degrees(np.arctan2(4, 3)), 180, 90, 0, 0, 0], atol=1e-9)
    # best non-negative scale: 1 (error 4 left), 0 for the opposite and the orthogonal prediction (error |t_g|),
    # 2 for the half-length prediction (error 0), and 0 for no predicted motion
    np.testing.assert_allclose(e["translation_scaled_m"], [4, 1, 1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(e["rotation_deg"], [0, 0, 0, 90, 180, np.degrees(1e-6)], rtol=1e-9, atol=1e-12)
    # The existing 2-metric function is unchanged.
    xi = np.zeros((2, 6))
    two = ev.pose_errors(xi, gt[:2])
    assert set(two) == {"translation_m", "rotation_deg"}
    np.testing.assert_allclose(two["translation_m"], [5, 1])


def test_rotation_angle_near_180_degrees_and_axis_sign():
    # exp(hat(pi e_x)) and exp(hat(-pi e_x)) are the same rotation: 0 error, not 360 or NaN.
    assert ev.rotation_angle_deg(T_of(w=(np.pi, 0, 0))[:3, :3].T @ T_of(w=(-np.pi, 0, 0))[:3, :3]) == pytest.approx(
        0.0, abs=1e-6)
    for angle in (np.pi, np.pi - 1e-7, np.pi - 1e-3):
        axis = np.array([1.0, 2.0, -2.0]) / 3
        R = T_of(w=tuple(angle * axis))[:3, :3]
        assert ev.rotation_angle_deg(R) == pytest.approx(np.degrees(angle), abs=1e-6)
    # a matrix that is a rotation up to rounding, with trace slightly below -1, is still 180, finite.
    R = np.diag([1.0, -1.0, -1.0 - 1e-12])
    assert np.isfinite(ev.rotation_angle_deg(R)) and ev.rotation_angle_deg(R) == pytest.approx(180.0)


def test_translation_direction_and_relative_error_are_finite_for_tiny_motion():
    gt = np.stack([T_of((0, 0, 0)), T_of((0, 0, 0)), T_of((1e-5, 0, 0)), T_of((0, 0.5, 0))])
    pred = np.stack([T_of((0, 0, 0)), T_of((0.1, 0, 0)), T_of((-1e-5, 0, 0)), T_of((0, 0, 0))])
    e = ev.transform_errors(pred, gt)
    for v in e.values():
        assert np.all(np.isfinite(v))
    np.testing.assert_allclose(e["translation_dir_deg"], [0, 90, 0, 90])
    np.testing.assert_allclose(e["translation_scaled_m"], [0, 0, 1e-5, 0.5], atol=1e-15)
    # relative error with the 1 mm floor: 0.1 m error on no motion is 10000 %, 2e-5 m on 1e-5 m is 2 %.
    np.testing.assert_allclose(e["translation_pct"], [0, 1e4, 2, 100])


def test_photometric_error_of_the_warp_on_a_rendered_pair():
    p = render_pair(3, 48, 160)
    src, tgt, depth = p["src"][None], p["tgt"][None], p["tgt_depth"][None]
    T = np.stack([p["src_T_tgt"], np.eye(4)])
    e = ev.photometric_errors(src[[0, 0]], tgt[[0, 0]], depth[[0, 0]], p["K"], T)
    assert e[0] < 0.03 and e[1] > 2 * e[0], e
    # Same number as the kernels' PhotometricLoss with the depth > 0 mask and the warp with border padding.
    warped, _ = ev.warp_source(src, depth, p["K"], T[:1])
    assert e[0] == pytest.approx(photometric_forward(warped, tgt, (depth > 0).astype(np.float32)), rel=1e-5)


# ----------------------------------------------------------------------------------------------- trajectories

def _straight_line(n, step=(0, 0, -1.0), yaw_deg=0.0):
    """n relative poses src_T_tgt of a camera moving forward (source ahead: tz < 0), optionally turning."""
    return np.stack([T_of(step, (0, np.radians(yaw_deg), 0)) for _ in range(n)])


def test_chain_poses_by_hand():
    poses = ev.chain_poses(_straight_line(3))
    np.testing.assert_allclose(poses[:, :3, 3], [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 0, 3]], atol=1e-12)
    # A 90 degree yaw then a forward step: the camera moves along its new optical axis.
    rel = np.stack([T_of(w=(0, -np.pi / 2, 0)), T_of((0, 0, -1))])
    poses = ev.chain_poses(rel)
    np.testing.assert_allclose(poses[2][:3, 3], poses[1][:3, :3] @ [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(np.linalg.inv(poses[1]) @ poses[0], rel[0], atol=1e-12)


def test_ate_rpe_with_evo_known_answers():
    gt = _straight_line(6, yaw_deg=3)
    r = ev.trajectory_metrics(gt, gt)
    for key in ("ate_se3", "ate_sim3", "rpe_trans_m", "rpe_rot_deg"):
        assert r["metrics"][key]["rmse"] == pytest.approx(0, abs=1e-9), key
    assert r["metrics"]["ate_se3"]["alignment"].startswith("SE(3)")
    assert r["metrics"]["ate_sim3"]["alignment"].startswith("Sim(3)")
    # Steps 10 % too long: RPE 0.1 m per step; no ATE after Sim(3) alignment (scale 1/1.1), some after SE(3).
    pred = gt.copy()
    pred[:, :3, 3] *= 1.1
    m = ev.trajectory_metrics(gt, pred, alignment=("se3", "sim3", "none"))["metrics"]
    assert m["rpe_trans_m"]["rmse"] == pytest.approx(0.1, abs=1e-9)
    assert m["rpe_rot_deg"]["rmse"] == pytest.approx(0, abs=1e-6)
    assert m["ate_sim3"]["rmse"] == pytest.approx(0, abs=1e-9) and m["ate_sim3"]["scale"] == pytest.approx(1 / 1.1)
    assert m["ate_se3"]["rmse"] > 0.05
    # Every position is scaled by 1.1, so the unaligned error is 0.1 |p_k| (p_0 = 0).
    positions = ev.chain_poses(gt)[:, :3, 3]
    assert m["ate_none"]["rmse"] == pytest.approx(0.1 * np.sqrt(np.mean(np.sum(positions ** 2, 1))), rel=1e-9)
    # On a straight line by hand: 0.1 m more per frame, rmse = 0.1 sqrt(mean(k^2)), k = 0..6.
    m = ev.trajectory_metrics(_straight_line(6), _straight_line(6, step=(0, 0, -1.1)), alignment="none")["metrics"]
    assert m["ate_none"]["rmse"] == pytest.approx(0.1 * np.sqrt(np.mean(np.arange(7) ** 2)), rel=1e-9)
    # A constant rigid offset of the whole trajectory is removed by the SE(3) alignment.
    poses = ev.chain_poses(gt)
    offset = T_of((1, -2, 0.5), (0.3, -0.2, 0.1))
    m = ev.trajectory_errors(poses, offset @ poses)
    assert m["ate_se3"]["rmse"] == pytest.approx(0, abs=1e-9) and m["rpe_trans_m"]["rmse"] == pytest.approx(0, abs=1e-9)
    assert ev.trajectory_errors(poses, offset @ poses, alignment="none")["ate_none"]["rmse"] > 1
    # A static estimate (the identity baseline) cannot be aligned: reported unaligned, and stated.
    m = ev.trajectory_metrics(gt, np.tile(np.eye(4), (6, 1, 1)))["metrics"]
    assert "impossible" in m["ate_se3"]["alignment"] and np.isfinite(m["ate_se3"]["rmse"])
    assert m["ate_se3"]["rmse"] == pytest.approx(np.sqrt(np.mean(np.sum(positions ** 2, 1))), rel=1e-9)


def test_trajectory_files_in_tum_and_kitti_format(tmp_path):
    from evo.tools import file_interface

    poses = ev.chain_poses(_straight_line(4, yaw_deg=10))
    stamps = np.array([10.0, 10.1, 10.2, 10.3, 10.4])
    paths = ev.write_trajectory_files(tmp_path / "traj", poses, stamps)
    tum = np.loadtxt(paths["tum"])
    kitti = np.loadtxt(paths["kitti"])
    assert tum.shape == (5, 8) and kitti.shape == (5, 12)
    np.testing.assert_allclose(tum[:, 0], stamps)
    np.testing.assert_allclose(kitti.reshape(5, 3, 4), poses[:, :3, :], atol=1e-9)
    back = file_interface.read_tum_trajectory_file(str(paths["tum"]))
    np.testing.assert_allclose(np.array(back.poses_se3), poses, atol=1e-9)
    assert not list(tmp_path.glob(".*partial*"))


def test_find_chains_follows_consecutive_pairs_within_a_sequence():
    data = {"tgt_frame": np.array([5, 0, 1, 2, 6, 0, 1]), "src_frame": np.array([6, 1, 2, 3, 7, 1, 2]),
            "sequence": np.array([0, 0, 0, 0, 0, 1, 1])}
    chains = ev.find_chains(data)
    assert [c.tolist() for c in chains] == [[1, 2, 3], [0, 4], [5, 6]]
    assert ev.find_chains({"src": np.zeros(3)}) == []


# --------------------------------------------------------------------------------------------- split loading

def _write_h5(path, n=3, h=8, w=12, skip=(), extra=None):
    with h5py.File(path, "w") as f:
        shapes = {"src": (n, 3, h, w), "tgt": (n, 3, h, w), "tgt_depth": (n, 1, h, w), "K": (n, 4),
                  "src_T_tgt": (n, 4, 4), "xi_gt": (n, 6)}
        for k, s in shapes.items():
            if k not in skip:
                f[k] = np.ones(s, np.float32)
        for k, v in (extra or {}).items():
            f[k] = v
    return path


def test_load_split_bad_input_names_the_file_and_the_problem(tmp_path):
    with pytest.raises(ev.SplitError, match=r"missing dataset\(s\) \['tgt_depth'\]"):
        ev.load_split(_write_h5(tmp_path / "a.h5", skip=("tgt_depth",)))
    bad = _write_h5(tmp_path / "b.h5", extra={})
    with h5py.File(bad, "a") as f:
        del f["K"]
        f["K"] = np.ones((3, 3), np.float32)
    with pytest.raises(ev.SplitError, match=r"b.h5: 'K' must be \(N, 4\)"):
        ev.load_split(bad)
    (tmp_path / "list.txt").write_text(f"{_write_h5(tmp_path / 'c.h5')}\n{tmp_path / 'nope.h5'}\n")
    with pytest.raises(ev.SplitError, match="nope.h5 does not exist"):
        ev.load_split(tmp_path / "list.txt")
    (tmp_path / "mixed.txt").write_text(f"{tmp_path / 'c.h5'}\n{_write_h5(tmp_path / 'd.h5', h=9)}\n")
    with pytest.raises(ev.SplitError, match="d.h5: 'src' is 9x12 but the split's images are 8x12"):
        ev.load_split(tmp_path / "mixed.txt")
    with pytest.raises(ev.SplitError, match="does not exist"):
        ev.load_split(tmp_path / "missing.txt")
    data = ev.load_split(tmp_path / "c.h5")
    assert data["src"].shape == (3, 3, 8, 12) and "tgt_frame" not in data and list(data["row"]) == [0, 1, 2]


# ----------------------------------------------------------------------------------------- scripts/evaluate.py

def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_evaluate_baselines_only(tmp_path, tiny_split):
    out = tmp_path / "eval"
    summary = evaluate_script.main(["--no-net", "--split", str(tiny_split / "test.txt"), "--train-split",
                                    str(tiny_split / "train.txt"), "--refine", "2", "--refine-levels", "2",
                                    "--out", str(out), "--no-progress"])
    rows = _read_csv(out / "per_pair.csv")
    methods = summary["methods"]
    assert set(methods) == {"identity", "mean training pose", "classical pnp (sift)", "classical essential (sift)",
                            "identity + refinement"}
    assert len(rows) == 4 * len(methods)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["pairs"] == 4 and saved["methods"]["identity"]["translation_pct"]["mean"] == pytest.approx(100)
    for name in ("classical pnp (sift)", "classical essential (sift)"):
        m = saved["methods"][name]
        assert m["ok_pairs"] + m["failed_pairs"] == 4 and sum(m["failures"].values()) == 4
        assert m["ok_pairs"] == m["failures"]["ok"]
        failed = [r for r in rows if r["method"] == name and r["status"] != "ok"]
        assert len(failed) == m["failed_pairs"] and all(float(r["tx"]) == 0 for r in failed)  # identity fallback
    r = saved["refinement"]
    assert r["start"] == "identity" and r["photometric_after_mean"] <= r["photometric_before_mean"]
    assert set(r["gap_closed"]) >= {"reference", "translation_m_mean", "rotation_deg_mean"}
    for row in rows:
        assert all(np.isfinite(float(row[c])) for c in evaluate_script.COLUMNS)
    assert saved["trajectories"] == [] and not list(out.glob(".*partial*"))


def _deploy_net(tmp_path, height, width, batch=1):
    import caffe
    from pygeometry.nets import pose_net

    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(str(pose_net("early_fusion_photometric", "deploy", batch_size=batch, height=height,
                                   width=width).to_proto()))
    caffe.set_random_seed(3)
    net = caffe.Net(str(deploy), caffe.TEST)
    net.params["fc_pose"][0].data[...] *= 50  # random weights that predict visibly non-zero poses
    weights = tmp_path / "snap_iter_20.caffemodel"
    net.save(str(weights))
    (tmp_path / "snap_iter_3.caffemodel").write_bytes(b"older snapshot, never read")
    return deploy, weights, net


def test_evaluate_a_network_with_partial_batches_and_a_sequence(tmp_path, tiny_split):
    import caffe

    deploy, weights, _ = _deploy_net(tmp_path, 48, 80)
    # The test split as a sequence: frames 0..4 in one chain (the poses need not be consistent for the pipeline).
    data = ev.load_split(tiny_split / "test.txt")
    seq = tmp_path / "seq.h5"
    with h5py.File(seq, "w") as f:
        for k in ("src", "tgt", "tgt_depth", "K", "src_T_tgt"):
            f[k] = data[k].astype(np.float32)
        f["tgt_frame"], f["src_frame"] = np.arange(4), np.arange(1, 5)
        f["tgt_time"], f["src_time"] = 1e9 + 0.1 * np.arange(4), 1e9 + 0.1 * np.arange(1, 5)
    out = tmp_path / "eval"
    summary = evaluate_script.main(["--deploy", str(deploy), "--snapshot-prefix", str(tmp_path / "snap"), "--split",
                                    str(seq), "--batch-size", "3", "--no-classical", "--mirror-average", "--out",
                                    str(out), "--no-progress"])
    assert summary["weights"] == str(weights)
    rows = _read_csv(out / "per_pair.csv")
    xi_csv = {m: np.array([[float(r[k]) for k in ("tx", "ty", "tz", "wx", "wy", "wz")] for r in rows
                           if r["method"] == m]) for m in ("network", "network, mirror-averaged")}
    # Reference: one pair at a time through the same net (batch 1), no padding involved; and mirrored.
    net = caffe.Net(str(deploy), caffe.TEST, weights=str(weights))
    raw, raw_mirrored = [], []
    for i in range(4):
        for flip, out_list in ((False, raw), (True, raw_mirrored)):
            net.blobs["src"].data[...] = data["src"][i][..., ::-1] if flip else data["src"][i]
            net.blobs["tgt"].data[...] = data["tgt"][i][..., ::-1] if flip else data["tgt"][i]
            out_list.append(net.forward()["xi"][0].copy())
    raw, raw_mirrored = np.array(raw, np.float64), np.array(raw_mirrored, np.float64)
    ref = pose_vector_from_matrix(se3_forward(raw))
    assert np.abs(ref).max() > 1e-3
    np.testing.assert_allclose(xi_csv["network"], ref, atol=1e-5)
    averaged = pose_vector_from_matrix(se3_forward(0.5 * (raw + raw_mirrored * POSE_SIGNS)))
    np.testing.assert_allclose(xi_csv["network, mirror-averaged"], averaged, atol=1e-5)
    assert not np.allclose(averaged, ref, atol=1e-4)
    traj = summary["trajectories"]
    assert len(traj) == 1 and traj[0]["pairs"] == 4
    m = traj[0]["methods"]["network"]
    assert m["ate_se3"]["alignment"] == "SE(3) Umeyama" and np.isfinite(m["ate_se3"]["rmse"])
    tum = np.loadtxt(traj[0]["files"]["network"]["tum"])
    assert tum.shape == (5, 8) and tum[0, 0] == pytest.approx(1e9)
    assert np.loadtxt(traj[0]["files"]["ground truth"]["kitti"]).shape == (5, 12)


def test_evaluate_rejects_a_split_of_another_image_size(tmp_path, tiny_split):
    deploy, weights, _ = _deploy_net(tmp_path, 64, 208)
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), "--deploy", str(deploy),
                           "--weights", str(weights), "--split", str(tiny_split / "test.txt"), "--out",
                           str(tmp_path / "o"), "--no-classical"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "48x80" in proc.stderr and "64x208" in proc.stderr and str(deploy) in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_evaluate_reports_missing_keys_and_arguments(tmp_path):
    bad = _write_h5(tmp_path / "bad.h5", skip=("src_T_tgt",))
    with pytest.raises(SystemExit, match=r"bad.h5: missing dataset\(s\) \['src_T_tgt'\]"):
        evaluate_script.main(["--no-net", "--split", str(bad), "--out", str(tmp_path / "o"), "--no-progress"])
    with pytest.raises(SystemExit, match="no snapshot"):
        evaluate_script.main(["--deploy", "x.prototxt", "--snapshot-prefix", str(tmp_path / "none"), "--split",
                              str(_write_h5(tmp_path / "ok.h5")), "--out", str(tmp_path / "o")])
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), "--split", "x.txt"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--no-net" in proc.stderr
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "usage:" in proc.stdout and "--snapshot-prefix" in proc.stdout
