"""Dataset converters (KITTI odometry, TUM RGB-D) on tiny fixtures laid out as the public datasets are on disk.

The expected values are computed independently of the converters where possible: KITTI poses and depth through
the 3x4 projection matrix P2 itself (not through the derived cam0 -> cam2 offset), TUM rotations through scipy's
quaternion conversion, resized depth through cv2.INTER_NEAREST_EXACT, resized images through 2x2 block means.
"""
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pygeometry.data.convert_common import (DatasetFormatError, relative_pose, resize_depth_nearest,
                                            scale_intrinsics)
from pygeometry.data.hdf5 import KEYS, SEQUENCE_KEYS, read_list_file
from pygeometry.poses import pose_vector_from_matrix
from pygeometry.data.kitti import convert_kitti, read_calib, read_poses
from pygeometry.data.tum import associate, convert_tum, parse_intrinsics
from pygeometry.kernels.se3 import se3_forward
from pygeometry.evaluation import find_chains, load_split

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------------------------------
# KITTI fixture
# ----------------------------------------------------------------------------------------------------------------

P0 = np.array([[718.856, 0, 607.1928, 0], [0, 718.856, 185.2157, 0], [0, 0, 1, 0]])
P1 = np.array([[718.856, 0, 607.1928, -386.1448], [0, 718.856, 185.2157, 0], [0, 0, 1, 0]])
P2 = np.array([[718.856, 0, 607.1928, 45.38225], [0, 718.856, 185.2157, -0.1130887], [0, 0, 1, 0.003779761]])
P3 = np.array([[718.856, 0, 607.1928, -337.2877], [0, 718.856, 185.2157, 2.369057], [0, 0, 1, 0.004915215]])
TR = np.array([[4.276802385584e-04, -9.999672484946e-01, -8.084491683471e-03, -1.198459927713e-02],
               [-7.210626507497e-03, 8.081198471645e-03, -9.999413164504e-01, -5.403984729748e-02],
               [9.999738645903e-01, 4.859485810390e-04, -7.206933692422e-03, -2.921968648686e-01]])
K_HW = (24, 80)          # native fixture image size
OUT_HW = (12, 40)        # converted size (exact 2x downscale)
N_FRAMES = 4


def kitti_world_T_cam0(k):
    """Known cam0 motion: turning (about y and a little about x) while driving forward."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec([0.03 * k, 0.12 * k, 0.0]).as_matrix()
    T[:3, 3] = [0.2 * k, -0.05 * k, 1.0 * k]
    return T


def kitti_image(k):
    rng = np.random.default_rng(100 + k)
    img = rng.integers(0, 256, size=K_HW + (3,), dtype=np.uint8)
    img[:, :, 0] = 10 + k  # blue channel constant: checks BGR -> RGB
    return img


def sparse_points_cam2():
    """Points in the cam2 frame chosen at output-resolution pixels, with the expected depth map."""
    K = scale_intrinsics([P2[0, 0], P2[1, 1], P2[0, 2], P2[1, 2]], K_HW, OUT_HW)
    fx, fy, cx, cy = K

    def at(u, v, z):
        return np.array([(u - cx) / fx * z, (v - cy) / fy * z, z])

    pts = [at(5.3, 2.8, 7.5),      # -> pixel (5, 3), z 7.5
           at(5.1, 3.2, 12.0),     # same pixel, farther: hidden by the z-buffer
           at(30.0, 8.0, 20.25),   # -> pixel (30, 8)
           at(39.4, 11.4, 3.0),    # -> pixel (39, 11), the bottom-right corner
           at(41.0, 5.0, 9.0),     # outside on the right
           at(-0.6, 5.0, 9.0),     # outside on the left (rounds to -1)
           np.array([1.0, 0.5, -5.0])]  # behind the camera
    expected = np.zeros(OUT_HW, np.float32)
    expected[3, 5], expected[8, 30], expected[11, 39] = 7.5, 20.25, 3.0
    return np.array(pts), expected


def write_kitti(root, seq="00", velodyne=True, n=N_FRAMES):
    seq_dir = root / "sequences" / seq
    (seq_dir / "image_2").mkdir(parents=True)
    (root / "poses").mkdir(parents=True, exist_ok=True)
    fmt = lambda M: " ".join(f"{v:.12e}" for v in np.asarray(M).reshape(-1))  # noqa: E731
    (seq_dir / "calib.txt").write_text("".join(f"{name}: {fmt(M)}\n" for name, M in
                                               (("P0", P0), ("P1", P1), ("P2", P2), ("P3", P3), ("Tr", TR))))
    (root / "poses" / f"{seq}.txt").write_text("".join(fmt(kitti_world_T_cam0(k)[:3]) + "\n" for k in range(n)))
    for k in range(n):
        assert cv2.imwrite(str(seq_dir / "image_2" / f"{k:06d}.png"), kitti_image(k))
    if velodyne:
        (seq_dir / "velodyne").mkdir()
        pts_cam2, _ = sparse_points_cam2()
        # cam2 -> cam0 by P2's own offset, cam0 -> velodyne by inv(Tr)
        t2 = np.linalg.solve(P2[:, :3], P2[:, 3])
        Tr = np.vstack([TR, [0, 0, 0, 1]])
        pts_velo = (np.linalg.inv(Tr) @ np.c_[pts_cam2 - t2, np.ones(len(pts_cam2))].T).T[:, :3]
        for k in range(n):
            scan = np.c_[pts_velo, np.full(len(pts_velo), 0.5)].astype(np.float32)
            scan.tofile(seq_dir / "velodyne" / f"{k:06d}.bin")
    return seq_dir


def read_h5(paths):
    out = {k: [] for k in KEYS}
    for p in paths:
        with h5py.File(p, "r") as f:
            assert set(f.keys()) == set(KEYS) | set(SEQUENCE_KEYS)
            for k in KEYS:
                assert f[k].dtype == np.float32, k
                out[k].append(f[k][...])
    return {k: np.concatenate(v) for k, v in out.items()}


def check_format(data, n, hw):
    h, w = hw
    shapes = {"src": (n, 3, h, w), "tgt": (n, 3, h, w), "tgt_depth": (n, 1, h, w), "K": (n, 4),
              "src_T_tgt": (n, 4, 4), "xi_gt": (n, 6)}
    for k, shape in shapes.items():
        assert data[k].shape == shape, (k, data[k].shape)
        assert np.all(np.isfinite(data[k]))
    assert data["src"].min() >= 0 and data["src"].max() <= 1
    # xi_gt is the pose vector of src_T_tgt: exp(xi) rebuilds the transform, rotation vector as scipy's
    np.testing.assert_allclose(se3_forward(data["xi_gt"].astype(np.float64)), data["src_T_tgt"], atol=2e-6)
    rotvec = Rotation.from_matrix(data["src_T_tgt"][:, :3, :3].astype(np.float64)).as_rotvec()
    np.testing.assert_allclose(data["xi_gt"][:, 3:], rotvec, atol=2e-6)
    np.testing.assert_allclose(data["src_T_tgt"][:, 3], np.tile([0, 0, 0, 1], (n, 1)))


def block_mean_rgb(bgr):
    rgb = bgr[:, :, ::-1].astype(np.float64) / 255.0
    h, w = rgb.shape[:2]
    return rgb.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).transpose(2, 0, 1)


def cam2_point(world_point, world_T_cam0):
    """A world point in cam2 coordinates using only P2 as a projection matrix: pixel and depth, back-projected."""
    x0 = np.linalg.solve(world_T_cam0, np.append(world_point, 1.0))
    p = P2 @ x0
    z = p[2]
    u, v = p[0] / z, p[1] / z
    K2 = P2[:, :3]
    return z * np.linalg.solve(K2, [u, v, 1.0])


@pytest.fixture
def kitti_root(tmp_path):
    root = tmp_path / "kitti"
    write_kitti(root)
    return root


def test_kitti_conversion(kitti_root, tmp_path):
    out = tmp_path / "out"
    list_path, files, n = convert_kitti(kitti_root, ["00"], out, height=OUT_HW[0], width=OUT_HW[1],
                                        pairs_per_file=2, progress=False)
    assert n == N_FRAMES - 1
    assert list_path == out / "train.txt"
    assert [f.name for f in files] == ["train_000.h5", "train_001.h5"]
    assert read_list_file(list_path) == [f.resolve() for f in files]
    assert sorted(p.name for p in out.iterdir()) == ["train.txt", "train_000.h5", "train_001.h5"]
    with h5py.File(files[0], "r") as f0, h5py.File(files[1], "r") as f1:
        assert (f0["src"].shape[0], f1["src"].shape[0]) == (2, 1)
    data = read_h5(files)
    check_format(data, n, OUT_HW)

    # K scaled with the pixel-centre rule: 2x downscale
    fx, fy, cx, cy = P2[0, 0], P2[1, 1], P2[0, 2], P2[1, 2]
    np.testing.assert_allclose(data["K"], np.tile([fx / 2, fy / 2, (cx + 0.5) / 2 - 0.5, (cy + 0.5) / 2 - 0.5],
                                                  (n, 1)), rtol=1e-6)
    # pair i: target frame i, source frame i + 1; images RGB in [0, 1], area-resized
    for i in range(n):
        np.testing.assert_allclose(data["tgt"][i], block_mean_rgb(kitti_image(i)), atol=1e-5)
        np.testing.assert_allclose(data["src"][i], block_mean_rgb(kitti_image(i + 1)), atol=1e-5)
    assert np.allclose(data["tgt"][1, 2], (10 + 1) / 255.0)  # blue is channel 2

    # src_T_tgt maps a world point's cam2 coordinates in the target to those in the source (via P2 only)
    rng = np.random.default_rng(0)
    for i in range(n):
        w_tgt, w_src = kitti_world_T_cam0(i), kitti_world_T_cam0(i + 1)
        for Xw in rng.uniform([-5, -2, 8], [5, 2, 30], size=(5, 3)):
            Xw = w_tgt[:3, :3] @ Xw + w_tgt[:3, 3]  # in front of the target camera
            x_tgt, x_src = cam2_point(Xw, w_tgt), cam2_point(Xw, w_src)
            np.testing.assert_allclose(data["src_T_tgt"][i, :3, :3] @ x_tgt + data["src_T_tgt"][i, :3, 3], x_src,
                                       atol=2e-5)
        # the baseline matters here: the cam0 relative pose is different
        cam0_rel = relative_pose(w_src, w_tgt)
        assert np.abs(cam0_rel[:3, 3] - data["src_T_tgt"][i, :3, 3]).max() > 1e-3

    # sparse depth: the velodyne points land where their projection through Tr and P2 says
    _, expected = sparse_points_cam2()
    for i in range(n):
        np.testing.assert_allclose(data["tgt_depth"][i, 0], expected, atol=1e-4)
    pts_velo = np.fromfile(kitti_root / "sequences/00/velodyne/000000.bin", np.float32).reshape(-1, 4)
    proj = (P2 @ np.vstack([TR, [0, 0, 0, 1]]) @ np.c_[pts_velo[:, :3], np.ones(len(pts_velo))].T).T
    for u0, v0, z in zip(proj[:, 0] / proj[:, 2], proj[:, 1] / proj[:, 2], proj[:, 2]):
        u = int(np.floor((u0 + 0.5) * OUT_HW[1] / K_HW[1] - 0.5 + 0.5))
        v = int(np.floor((v0 + 0.5) * OUT_HW[0] / K_HW[0] - 0.5 + 0.5))
        if z > 0 and 0 <= u < OUT_HW[1] and 0 <= v < OUT_HW[0]:
            assert data["tgt_depth"][0, 0, v, u] <= z + 1e-4 and data["tgt_depth"][0, 0, v, u] > 0
    assert np.count_nonzero(data["tgt_depth"][0]) == 3

    # sequence information: frame numbers, the KITTI sequence number, 10 Hz times without times.txt; pairs chain
    seq = load_split(list_path)
    np.testing.assert_array_equal(seq["tgt_frame"], np.arange(n))
    np.testing.assert_array_equal(seq["src_frame"], np.arange(n) + 1)
    np.testing.assert_array_equal(seq["sequence"], np.zeros(n))
    np.testing.assert_allclose(seq["src_time"], (np.arange(n) + 1) / 10.0)
    assert [c.tolist() for c in find_chains(seq)] == [list(range(n))]
    (kitti_root / "sequences/00/times.txt").write_text("".join(f"{0.5 + 0.1037 * k:.6e}\n" for k in range(N_FRAMES)))
    convert_kitti(kitti_root, ["00"], out, height=OUT_HW[0], width=OUT_HW[1], progress=False)
    np.testing.assert_allclose(load_split(list_path)["tgt_time"], 0.5 + 0.1037 * np.arange(n), rtol=1e-6)
    (kitti_root / "sequences/00/times.txt").write_text("0.0\n")
    with pytest.raises(DatasetFormatError, match="times.txt has 1 timestamps"):
        convert_kitti(kitti_root, ["00"], out, height=OUT_HW[0], width=OUT_HW[1], progress=False)


def test_kitti_gap_max_pairs_and_native_size(kitti_root, tmp_path):
    _, files, n = convert_kitti(kitti_root, "0", tmp_path / "o", split="val", gap=2, height=K_HW[0], width=K_HW[1],
                                progress=False)
    assert n == 2 and [f.name for f in files] == ["val_000.h5"]
    data = read_h5(files)
    check_format(data, 2, K_HW)
    np.testing.assert_allclose(data["K"][0], [P2[0, 0], P2[1, 1], P2[0, 2], P2[1, 2]], rtol=1e-6)
    np.testing.assert_allclose(data["tgt"][1], kitti_image(1)[:, :, ::-1].transpose(2, 0, 1) / 255.0, atol=1e-6)
    np.testing.assert_allclose(data["src"][1], kitti_image(3)[:, :, ::-1].transpose(2, 0, 1) / 255.0, atol=1e-6)
    # pair 1 = (target 1, source 3); check one point through P2
    Xw = kitti_world_T_cam0(1)[:3] @ np.array([1.0, -0.5, 12.0, 1.0])
    x_tgt, x_src = cam2_point(Xw, kitti_world_T_cam0(1)), cam2_point(Xw, kitti_world_T_cam0(3))
    T = data["src_T_tgt"][1].astype(np.float64)
    np.testing.assert_allclose(T[:3, :3] @ x_tgt + T[:3, 3], x_src, atol=2e-5)

    _, files, n = convert_kitti(kitti_root, ["00"], tmp_path / "m", max_pairs=2, height=8, width=20,
                                progress=False)
    assert n == 2 and read_h5(files)["src"].shape == (2, 3, 8, 20)


def test_kitti_without_velodyne_warns_and_depth_is_zero(tmp_path):
    root = tmp_path / "kitti"
    write_kitti(root, velodyne=False)
    with pytest.warns(UserWarning, match="velodyne"):
        _, files, n = convert_kitti(root, ["00"], tmp_path / "o", height=OUT_HW[0], width=OUT_HW[1],
                                    progress=False)
    data = read_h5(files)
    assert n == 3 and not data["tgt_depth"].any()


def test_kitti_parsers(kitti_root):
    calib = read_calib(kitti_root / "sequences/00/calib.txt")
    assert set(calib) == {"P0", "P1", "P2", "P3", "Tr"}
    np.testing.assert_allclose(calib["P2"], P2)
    poses = read_poses(kitti_root / "poses/00.txt")
    assert poses.shape == (N_FRAMES, 4, 4)
    np.testing.assert_allclose(poses[2], kitti_world_T_cam0(2), atol=1e-11)


def _replace_line(path, line_no, text):
    lines = path.read_text().splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case, error, pattern", [
    ("no_calib", FileNotFoundError, r"sequences/00/calib\.txt"),
    ("no_poses", FileNotFoundError, r"poses/00\.txt"),
    ("short_pose", DatasetFormatError, r"poses/00\.txt:3: expected 12 numbers.*got 11"),
    ("text_pose", DatasetFormatError, r"poses/00\.txt:2: value 5 \('abc'\) is not a number"),
    ("not_rotation", DatasetFormatError, r"poses/00\.txt:1: the 3x3 part is not a rotation"),
    ("count_mismatch", DatasetFormatError, r"poses/00\.txt has 3 poses but .*image_2 has 4 images"),
    ("image_hole", FileNotFoundError, r"image_2/000001\.png does not exist"),
    ("no_p2", DatasetFormatError, r"calib\.txt: no 'P2:' line"),
    ("bad_calib_line", DatasetFormatError, r"calib\.txt:4: expected 12 numbers for P3, got 3"),
    ("no_velodyne_scan", FileNotFoundError, r"velodyne/000002\.bin"),
])
def test_kitti_bad_input(kitti_root, tmp_path, case, error, pattern):
    seq = kitti_root / "sequences" / "00"
    poses = kitti_root / "poses" / "00.txt"
    if case == "no_calib":
        (seq / "calib.txt").unlink()
    elif case == "no_poses":
        poses.unlink()
    elif case == "short_pose":
        _replace_line(poses, 3, " ".join(["1"] * 11))
    elif case == "text_pose":
        _replace_line(poses, 2, "1 0 0 0 abc 1 0 0 0 0 1 0")
    elif case == "not_rotation":
        _replace_line(poses, 1, "2 0 0 0 0 2 0 0 0 0 2 0")
    elif case == "count_mismatch":
        poses.write_text("\n".join(poses.read_text().splitlines()[:3]) + "\n")
    elif case == "image_hole":
        (seq / "image_2" / "000001.png").unlink()
    elif case == "no_p2":
        (seq / "calib.txt").write_text("".join(ln + "\n" for ln in (seq / "calib.txt").read_text().splitlines()
                                               if not ln.startswith("P2")))
    elif case == "bad_calib_line":
        _replace_line(seq / "calib.txt", 4, "P3: 1 2 3")
    elif case == "no_velodyne_scan":
        (seq / "velodyne" / "000002.bin").unlink()
    out = tmp_path / "out"
    with pytest.raises(error, match=pattern):
        convert_kitti(kitti_root, ["00"], out, height=OUT_HW[0], width=OUT_HW[1], progress=False)
    assert not out.exists() or not any(out.iterdir())


def test_kitti_unreadable_image_midway_leaves_nothing_complete(kitti_root, tmp_path):
    out = tmp_path / "out"
    # a first, good conversion of the split
    list_path, old_files, _ = convert_kitti(kitti_root, ["00"], out, height=OUT_HW[0], width=OUT_HW[1],
                                            pairs_per_file=1, max_pairs=2, progress=False)
    old_list = list_path.read_text()
    old_bytes = [f.read_bytes() for f in old_files]
    # frame 3 is corrupt: pairs 0 and 1 convert, pair 2 (target 2, source 3) fails
    (kitti_root / "sequences/00/image_2/000003.png").write_bytes(b"this is not a png")
    with pytest.raises(DatasetFormatError, match=r"image_2/000003\.png: cannot read the image"):
        convert_kitti(kitti_root, ["00"], out, height=OUT_HW[0], width=OUT_HW[1], pairs_per_file=1,
                      progress=False)
    # the failed run left nothing behind; the earlier split is untouched and still consistent
    assert sorted(p.name for p in out.iterdir()) == ["train.txt", "train_000.h5", "train_001.h5"]
    assert list_path.read_text() == old_list
    assert [f.read_bytes() for f in old_files] == old_bytes
    # and in a fresh folder no list file and no .h5 appear at all
    fresh = tmp_path / "fresh"
    with pytest.raises(DatasetFormatError, match=r"000003\.png"):
        convert_kitti(kitti_root, ["00"], fresh, height=OUT_HW[0], width=OUT_HW[1], pairs_per_file=1,
                      progress=False)
    assert list(fresh.iterdir()) == []


def test_kitti_rerun_replaces_split(kitti_root, tmp_path):
    out = tmp_path / "out"
    convert_kitti(kitti_root, ["00"], out, height=OUT_HW[0], width=OUT_HW[1], pairs_per_file=1, progress=False)
    assert len(list(out.glob("train_*.h5"))) == 3
    _, files, _ = convert_kitti(kitti_root, ["00"], out, height=OUT_HW[0], width=OUT_HW[1], pairs_per_file=2,
                                progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["train.txt", "train_000.h5", "train_001.h5"]
    assert read_list_file(out / "train.txt") == [f.resolve() for f in files]


def test_bad_options(kitti_root, tmp_path):
    for kwargs, pattern in (({"gap": 0}, "gap"), ({"pairs_per_file": 0}, "pairs_per_file"),
                            ({"max_pairs": 0}, "max_pairs"), ({"split": "../x"}, "split"),
                            ({"gap": 4}, "no pairs")):
        with pytest.raises(ValueError, match=pattern):
            convert_kitti(kitti_root, ["00"], tmp_path / "o", progress=False, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# TUM fixture
# ----------------------------------------------------------------------------------------------------------------

RGB_STAMPS = [100.000, 100.033, 100.066, 100.100, 100.133, 100.166]
DEPTH_STAMPS = [100.005, 100.030, 100.040, 100.070, 100.125, 100.160]
GT_STAMPS = [round(99.99 + 0.01 * k, 4) for k in range(16)]  # 99.99 .. 100.14
# rgb 3 (100.100) has no depth within 0.02 s, rgb 5 (100.166) no ground truth within 0.02 s
ASSOCIATED = [(0, 0), (1, 1), (2, 3), (4, 4)]  # (rgb index, depth index)
TUM_HW = (480, 640)


def tum_pose(stamp):
    s = stamp - 100.0
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(np.array([0.3, 1.0, 0.2]) * 2.0 * s).as_matrix()
    T[:3, 3] = [1.0 + s, 0.5 * s, -0.3 * s]
    return T


def tum_rgb(k):
    img = np.zeros(TUM_HW + (3,), np.uint8)
    img[:, :, 0] = 40       # B
    img[:, :, 1] = 20 * k   # G encodes the rgb frame
    img[:, :, 2] = 200      # R
    return img


def tum_depth(j):
    rng = np.random.default_rng(50 + j)
    d = rng.integers(1000, 40000, size=TUM_HW, dtype=np.uint16)
    d[rng.random(TUM_HW) < 0.3] = 0   # missing depth
    d[:100, :100] = 0
    return d


def write_tum(root):
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb_lines = ["# color images", "# file: 'rgbd_dataset_freiburg1_xyz.bag'", "# timestamp filename"]
    for k, t in enumerate(RGB_STAMPS):
        name = f"rgb/{t:.6f}.png"
        assert cv2.imwrite(str(root / name), tum_rgb(k))
        rgb_lines.append(f"{t:.6f} {name}")
    depth_lines = ["# depth maps", "# file: 'rgbd_dataset_freiburg1_xyz.bag'", "# timestamp filename"]
    for j, t in enumerate(DEPTH_STAMPS):
        name = f"depth/{t:.6f}.png"
        assert cv2.imwrite(str(root / name), tum_depth(j))
        depth_lines.append(f"{t:.6f} {name}")
    gt_lines = ["# ground truth trajectory", "# file: 'rgbd_dataset_freiburg1_xyz.bag'",
                "# timestamp tx ty tz qx qy qz qw"]
    for t in GT_STAMPS:
        T = tum_pose(t)
        q = Rotation.from_matrix(T[:3, :3]).as_quat()  # x, y, z, w
        gt_lines.append(f"{t:.4f} " + " ".join(f"{v:.10f}" for v in np.r_[T[:3, 3], q]))
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    (root / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n")


@pytest.fixture
def tum_root(tmp_path):
    root = tmp_path / "rgbd_dataset_freiburg1_xyz"
    write_tum(root)
    return root


def test_associate_nearest_within_tolerance():
    # rgb 1 takes depth 1 (3 ms) over depth 2 (7 ms); rgb 3 has nothing within 0.02 s
    assert associate(RGB_STAMPS, DEPTH_STAMPS, 0.02) == ASSOCIATED + [(5, 5)]
    # rgb 5 has no ground truth within 0.02 s (the last one is 100.14)
    assert [i for i, _ in associate(RGB_STAMPS, GT_STAMPS, 0.02)] == [0, 1, 2, 3, 4]
    # nearest wins, each used once, differences of 0.02 s or more are dropped
    assert associate([1.0, 1.01, 2.0], [1.004, 1.012, 2.02, 3.0], 0.02) == [(0, 0), (1, 1)]
    assert associate([1.0, 1.001], [1.0008], 0.02) == [(1, 0)]
    assert associate([3.0, 1.0], [0.995, 3.01], 0.02) == [(0, 1), (1, 0)]  # unsorted input: indices of the inputs
    assert associate([5.0], [5.03], 0.02) == []
    assert associate([5.0], [5.03], 0.05) == [(0, 0)]


def test_tum_conversion(tum_root, tmp_path):
    out = tmp_path / "out"
    list_path, files, n = convert_tum(tum_root, out, pairs_per_file=2, progress=False)
    assert n == len(ASSOCIATED) - 1 == 3
    assert [f.name for f in files] == ["train_000.h5", "train_001.h5"]
    assert read_list_file(list_path) == [f.resolve() for f in files]
    data = read_h5(files)
    check_format(data, n, (240, 320))
    fx, fy, cx, cy = 517.3, 516.5, 318.6, 255.3
    np.testing.assert_allclose(data["K"], np.tile([fx / 2, fy / 2, (cx + 0.5) / 2 - 0.5, (cy + 0.5) / 2 - 0.5],
                                                  (n, 1)), rtol=1e-6)
    gt = np.array(GT_STAMPS)
    for i in range(n):
        (rgb_t, depth_t), (rgb_s, _) = ASSOCIATED[i], ASSOCIATED[i + 1]
        # images: the right rgb frames, RGB order
        np.testing.assert_allclose(data["tgt"][i, :, 5, 7], [200 / 255, 20 * rgb_t / 255, 40 / 255], atol=1e-6)
        np.testing.assert_allclose(data["src"][i, :, 5, 7], [200 / 255, 20 * rgb_s / 255, 40 / 255], atol=1e-6)
        # depth: the associated depth file / 5000, nearest-neighbour resized; zeros stay zero
        raw = tum_depth(depth_t)
        ref = cv2.resize(raw, (320, 240), interpolation=cv2.INTER_NEAREST_EXACT).astype(np.float64) / 5000.0
        np.testing.assert_allclose(data["tgt_depth"][i, 0], ref, rtol=1e-6)
        assert set(np.unique(data["tgt_depth"][i])) <= set(np.unique(raw.astype(np.float32) / np.float32(5000)))
        assert not data["tgt_depth"][i, 0, :50, :50].any()
        # poses: nearest ground truth, src_T_tgt = inv(world_T_src) @ world_T_tgt
        T_tgt = tum_pose(gt[np.argmin(np.abs(gt - RGB_STAMPS[rgb_t]))])
        T_src = tum_pose(gt[np.argmin(np.abs(gt - RGB_STAMPS[rgb_s]))])
        np.testing.assert_allclose(data["src_T_tgt"][i], np.linalg.inv(T_src) @ T_tgt, atol=1e-6)
    # depth file 1 (100.030) is associated to rgb 1, not the farther 100.040 (file 2); our resize = OpenCV's
    np.testing.assert_allclose(data["tgt_depth"][1, 0], resize_depth_nearest(tum_depth(1) / 5000.0, 240, 320),
                               rtol=1e-6)
    assert not np.allclose(data["tgt_depth"][1, 0], resize_depth_nearest(tum_depth(2) / 5000.0, 240, 320))
    # sequence information: indices of associated frames and their rgb timestamps; the pairs chain
    seq = load_split(list_path)
    np.testing.assert_array_equal(seq["tgt_frame"], np.arange(n))
    np.testing.assert_allclose(seq["tgt_time"], [RGB_STAMPS[ASSOCIATED[i][0]] for i in range(n)])
    np.testing.assert_allclose(seq["src_time"], [RGB_STAMPS[ASSOCIATED[i + 1][0]] for i in range(n)])
    assert [c.tolist() for c in find_chains(seq)] == [list(range(n))]


def test_tum_options(tum_root, tmp_path):
    with pytest.warns(UserWarning, match="folder name says freiburg1 but intrinsics fr3"):
        _, files, n = convert_tum([tum_root], tmp_path / "o", split="test", gap=2, height=120, width=160,
                                  intrinsics="fr3", max_pairs=1, progress=False)
    assert n == 1 and files[0].name == "test_000.h5"
    data = read_h5(files)
    check_format(data, 1, (120, 160))
    np.testing.assert_allclose(data["K"][0], scale_intrinsics([535.4, 539.2, 320.1, 247.6], TUM_HW, (120, 160)),
                               rtol=1e-6)
    np.testing.assert_allclose(data["K"][0], [535.4 / 4, 539.2 / 4, (320.1 + 0.5) / 4 - 0.5,
                                              (247.6 + 0.5) / 4 - 0.5], rtol=1e-6)
    np.testing.assert_allclose(data["src"][0, 1, 0, 0], 20 * 2 / 255, atol=1e-6)  # target rgb 0, source rgb 2
    # custom intrinsics refer to the images as they are on disk
    K, preset = parse_intrinsics("500,501,320,240")
    assert not preset and K.tolist() == [500, 501, 320, 240]
    assert parse_intrinsics("auto", tum_root)[0].tolist() == [517.3, 516.5, 318.6, 255.3]
    with pytest.raises(ValueError, match="intrinsics"):
        parse_intrinsics("fr4")


def test_tum_intrinsics_mismatch_warns(tmp_path):
    root = tmp_path / "rgbd_dataset_freiburg2_desk"
    write_tum(root)
    with pytest.warns(UserWarning, match="freiburg2"):
        convert_tum(root, tmp_path / "o", max_pairs=1, height=60, width=80, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert_tum(root, tmp_path / "o", max_pairs=1, height=60, width=80, intrinsics="auto", progress=False)


@pytest.mark.parametrize("case, error, pattern", [
    ("no_rgb_txt", FileNotFoundError, r"rgb\.txt"),
    ("short_gt", DatasetFormatError, r"groundtruth\.txt:6: expected a timestamp and 7 numbers"),
    ("text_gt", DatasetFormatError, r"groundtruth\.txt:5: value 3 \('x'\) is not a number"),
    ("bad_quaternion", DatasetFormatError, r"groundtruth\.txt:4: quaternion"),
    ("bad_stamp", DatasetFormatError, r"rgb\.txt:5: value 1 \('1oo.033'\) is not a number"),
    ("missing_image", FileNotFoundError, r"rgb\.txt:6: listed image .*rgb/100\.066000\.png does not exist"),
    ("unreadable_depth", DatasetFormatError, r"depth/100\.030000\.png: cannot read the depth image"),
    ("no_match", DatasetFormatError, r"no rgb frame has both a depth image and a ground-truth pose"),
])
def test_tum_bad_input(tum_root, tmp_path, case, error, pattern):
    if case == "no_rgb_txt":
        (tum_root / "rgb.txt").unlink()
    elif case == "short_gt":
        _replace_line(tum_root / "groundtruth.txt", 6, "100.0 1 2 3 0 0 0")
    elif case == "text_gt":
        _replace_line(tum_root / "groundtruth.txt", 5, "100.0 1 x 3 0 0 0 1")
    elif case == "bad_quaternion":
        _replace_line(tum_root / "groundtruth.txt", 4, "99.99 1 2 3 0 0 0 2")
    elif case == "bad_stamp":
        _replace_line(tum_root / "rgb.txt", 5, "1oo.033 rgb/100.033000.png")
    elif case == "missing_image":
        (tum_root / "rgb" / "100.066000.png").unlink()
    elif case == "unreadable_depth":
        (tum_root / "depth" / "100.030000.png").write_bytes(b"\x89PNG broken")
    elif case == "no_match":
        (tum_root / "depth.txt").write_text("# timestamp filename\n200.0 depth/100.005000.png\n")
    out = tmp_path / "out"
    with pytest.raises(error, match=pattern):
        convert_tum(tum_root, out, pairs_per_file=1, height=60, width=80, progress=False)
    assert not out.exists() or not any(out.iterdir())


# ----------------------------------------------------------------------------------------------------------------
# Scripts
# ----------------------------------------------------------------------------------------------------------------

def _run(script, *args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("script", ["convert_kitti.py", "convert_tum.py"])
def test_script_help(script):
    r = _run(script, "--help")
    assert r.returncode == 0, r.stderr
    for option in ("--root", "--out", "--split", "--gap", "--height", "--width", "--max-pairs", "--pairs-per-file"):
        assert option in r.stdout


def test_scripts_convert(kitti_root, tum_root, tmp_path):
    r = _run("convert_kitti.py", "--root", kitti_root, "--sequences", "00", "--out", tmp_path / "k", "--height", 12,
             "--width", 40, "--pairs-per-file", 2, "--max-pairs", 3)
    assert r.returncode == 0, r.stderr
    files = read_list_file(tmp_path / "k" / "train.txt")
    assert [f.name for f in files] == ["train_000.h5", "train_001.h5"]
    check_format(read_h5(files), 3, (12, 40))

    r = _run("convert_tum.py", "--root", tum_root, "--out", tmp_path / "t", "--split", "val", "--height", 60,
             "--width", 80, "--max-pairs", 2, "--no-progress")
    assert r.returncode == 0, r.stderr
    files = read_list_file(tmp_path / "t" / "val.txt")
    data = read_h5(files)
    check_format(data, 2, (60, 80))

    (kitti_root / "sequences/00/calib.txt").unlink()
    r = _run("convert_kitti.py", "--root", kitti_root, "--sequences", "00", "--out", tmp_path / "k2")
    assert r.returncode == 1 and "calib.txt does not exist" in r.stderr
    assert not (tmp_path / "k2" / "train.txt").exists()


def _check_triplets_against_pairs(pairs_list, triplets_list, n_pairs):
    """Triplet j (target frame j + 1) must equal the pairs of its frames: (target, next) = pair j + 1, and the
    previous frame with the inverse of pair j's pose; it reads as a triplet split."""
    from pygeometry.data.hdf5 import TRIPLET_KEYS, validate_split

    pairs = load_split(pairs_list)
    trip = load_split(triplets_list, keys=TRIPLET_KEYS, optional=())
    info = validate_split(triplets_list, keys=TRIPLET_KEYS)
    assert len(trip["tgt"]) == n_pairs - 1 and info.pairs == n_pairs - 1
    for j in range(n_pairs - 1):
        np.testing.assert_array_equal(trip["tgt"][j], pairs["tgt"][j + 1])
        np.testing.assert_array_equal(trip["src_next"][j], pairs["src"][j + 1])
        np.testing.assert_array_equal(trip["src_prev"][j], pairs["tgt"][j])
        np.testing.assert_array_equal(trip["tgt_depth"][j], pairs["tgt_depth"][j + 1])
        np.testing.assert_allclose(trip["next_T_tgt"][j], pairs["src_T_tgt"][j + 1], atol=1e-6)
        np.testing.assert_allclose(trip["prev_T_tgt"][j], np.linalg.inv(pairs["src_T_tgt"][j]), atol=1e-5)
        np.testing.assert_allclose(se3_forward(trip["xi_prev"][j:j + 1].astype(np.float64))[0], trip["prev_T_tgt"][j],
                                   atol=1e-5)


def test_kitti_and_tum_triplets(kitti_root, tum_root, tmp_path):
    convert_kitti(kitti_root, ["00"], tmp_path / "kp", height=OUT_HW[0], width=OUT_HW[1], progress=False)
    _, _, n = convert_kitti(kitti_root, ["00"], tmp_path / "kt", height=OUT_HW[0], width=OUT_HW[1], progress=False,
                            triplets=True, pairs_per_file=2)
    assert n == N_FRAMES - 2
    _check_triplets_against_pairs(tmp_path / "kp" / "train.txt", tmp_path / "kt" / "train.txt", N_FRAMES - 1)
    convert_tum(tum_root, tmp_path / "tp", progress=False)
    _, _, n = convert_tum(tum_root, tmp_path / "tt", progress=False, triplets=True)
    assert n == len(ASSOCIATED) - 2
    _check_triplets_against_pairs(tmp_path / "tp" / "train.txt", tmp_path / "tt" / "train.txt", len(ASSOCIATED) - 1)
    with pytest.raises(ValueError, match="no triplets"):
        convert_tum(tum_root, tmp_path / "t2", progress=False, triplets=True, gap=2)
    r = _run("convert_kitti.py", "--root", kitti_root, "--sequences", "00", "--out", tmp_path / "ks", "--height", 12,
             "--width", 40, "--triplets", "--no-progress")
    assert r.returncode == 0 and f"wrote {N_FRAMES - 2} triplets" in r.stdout, r.stderr


def test_pose_vector_matches_se3_generator():
    rng = np.random.default_rng(1)
    for w in [np.zeros(3), rng.normal(size=3) * 0.5, np.array([0.0, 3.0, 0.0])]:
        T = np.eye(4)
        T[:3, :3] = Rotation.from_rotvec(w).as_matrix()
        T[:3, 3] = rng.normal(size=3)
        xi = pose_vector_from_matrix(T)
        np.testing.assert_allclose(xi[3:], w, atol=1e-9)
        np.testing.assert_allclose(se3_forward(xi[None])[0], T, atol=1e-9)
