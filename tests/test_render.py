"""The renderer is the independent ground truth: check it against analytic geometry, not against the layers.

Nothing here imports caffe, pygeometry.kernels or pygeometry.layers: projections are written out with K, and
image sampling uses cv2.remap.
"""
import cv2
import numpy as np
import pytest

from pygeometry.render import (MOTIONS, Rectangle, Scene, TEXTURE_NAMES, box, corridor_scene, default_K,
                               load_texture, matrix_from_pose_vector, pose_vector_from_matrix, render, render_pair,
                               room_scene, sample_motion)

TEX = np.full((8, 8, 3), 0.5, np.float32)


def test_fronto_parallel_plane_depth_is_exact():
    scene = Scene([Rectangle([-50, -50, 3.7], [100, 0, 0], [0, 100, 0], TEX)])
    _, depth = render(scene, np.eye(4), [40.0, 40.0, 15.5, 9.5], 20, 32)
    np.testing.assert_allclose(depth, 3.7, rtol=1e-6)


def test_tilted_plane_depth_matches_ray_plane_formula():
    # Plane through (0, 0, 5) with normal n = (0, -sin a, cos a) (tilted about x).
    a = 0.4
    n = np.array([0, -np.sin(a), np.cos(a)])
    u, v = np.array([1.0, 0, 0]), np.cross(n, [1.0, 0, 0])
    scene = Scene([Rectangle(np.array([0, 0, 5.0]) - 50 * u - 50 * v, 100 * u, 100 * v, TEX)])
    K = [30.0, 32.0, 10.2, 7.3]
    _, depth = render(scene, np.eye(4), K, 16, 24)
    for y, x in [(0, 0), (5, 17), (15, 23)]:
        ray = np.array([(x - K[2]) / K[0], (y - K[3]) / K[1], 1.0])
        expected = np.dot(n, [0, 0, 5.0]) / np.dot(n, ray)
        assert depth[0, y, x] == pytest.approx(expected, rel=1e-6)


def test_miss_is_zero_depth_and_outputs_are_finite():
    scene = Scene([Rectangle([-0.5, -0.5, 2], [1, 0, 0], [0, 1, 0], TEX)])
    image, depth = render(scene, np.eye(4), [10.0, 10.0, 15.5, 15.5], 32, 32, supersample=2)
    assert depth[0, 0, 0] == 0 and depth[0, 16, 16] == pytest.approx(2.0)
    assert np.all(np.isfinite(image)) and np.all(np.isfinite(depth))
    assert image.dtype == np.float32 and image.shape == (3, 32, 32) and 0 <= image.min() <= image.max() <= 1


def test_two_views_are_geometrically_consistent():
    """Back-project target pixels with their depth, move them with src_T_tgt, project into the source: where
    not occluded, the source view's own depth there equals the moved point's z."""
    pair = render_pair(11, height=64, width=160, motion="handheld", supersample=1)
    fx, fy, cx, cy = pair["K"].astype(float)
    T = pair["src_T_tgt"]
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, 64, 8000), rng.integers(0, 160, 8000)
    d = pair["tgt_depth"][0, ys, xs].astype(float)
    P = np.stack([(xs - cx) / fx * d, (ys - cy) / fy * d, d])
    Q = T[:3, :3] @ P + T[:3, 3:4]
    u, v = fx * Q[0] / Q[2] + cx, fy * Q[1] / Q[2] + cy
    ui, vi = np.rint(u).astype(int), np.rint(v).astype(int)
    inside = (ui >= 1) & (ui < 159) & (vi >= 1) & (vi < 63) & (np.abs(u - ui) < 0.05) & (np.abs(v - vi) < 0.05)
    assert inside.sum() > 20
    src_z = pair["src_depth"][0, vi[inside], ui[inside]]
    agree = np.abs(src_z - Q[2, inside]) < 5e-3 * Q[2, inside]  # within 0.05 px of a centre: slant
    assert agree.mean() > 0.8, agree.mean()


def test_pose_vector_round_trip_and_motion_magnitudes():
    rng = np.random.default_rng(1)
    for kind in ("driving", "handheld", "mixed"):
        for _ in range(50):
            T = sample_motion(rng, kind)
            np.testing.assert_allclose(matrix_from_pose_vector(pose_vector_from_matrix(T)), T, atol=1e-12)
    drives = np.array([pose_vector_from_matrix(sample_motion(rng, "driving")) for _ in range(200)])
    assert np.all((drives[:, 2] <= -0.3) & (drives[:, 2] >= -1.0))
    assert np.all(np.abs(drives[:, 4]) <= np.radians(3)) and np.all(np.abs(drives[:, [3, 5]]) <= np.radians(0.5))
    hand = np.array([pose_vector_from_matrix(sample_motion(rng, "handheld")) for _ in range(200)])
    assert np.all(np.abs(hand[:, :3]) <= 0.15) and np.all(np.abs(hand[:, 3:]) <= np.radians(5))
    with pytest.raises(ValueError, match="unknown motion"):
        sample_motion(rng, "flying")


def test_pairs_are_deterministic_and_mostly_valid():
    a, b = render_pair(7, height=32, width=96), render_pair(7, height=32, width=96)
    for key in ("src", "tgt", "tgt_depth", "src_T_tgt"):
        np.testing.assert_array_equal(a[key], b[key])
    assert (a["tgt_depth"] > 0).mean() > 0.99
    np.testing.assert_allclose(a["K"], default_K(32, 96))
    assert not np.array_equal(render_pair(8, height=32, width=96)["tgt"], a["tgt"])


def test_textures_load_offline_and_are_in_range():
    for name in TEXTURE_NAMES:
        tex = load_texture(name, size=32, seed=3)
        assert tex.shape == (32, 32, 3) and tex.dtype == np.float32
        assert 0 <= tex.min() and tex.max() <= 1 and tex.std() > 0.01, name
    with pytest.raises(ValueError, match="unknown texture"):
        load_texture("marble")


def _project_target_into_source(pair, ys, xs):
    """Back-project target pixels with their depth, move them with src_T_tgt, project with K (all by hand)."""
    fx, fy, cx, cy = pair["K"].astype(float)
    T = pair["src_T_tgt"]
    d = pair["tgt_depth"][0, ys, xs].astype(float)
    P = np.stack([(xs - cx) / fx * d, (ys - cy) / fy * d, d])
    Q = T[:3, :3] @ P + T[:3, 3:4]
    return fx * Q[0] / Q[2] + cx, fy * Q[1] / Q[2] + cy, Q[2]


@pytest.mark.parametrize("seed,motion,scene", [(3, "handheld", "room"), (4, "driving", "room"),
                                               (5, "driving", "corridor"), (6, "mixed", "corridor")])
def test_source_depth_matches_moved_target_points(seed, motion, scene):
    """Inverse depth of a plane is affine in pixel coordinates, so bilinear interpolation of the source view's
    1/depth at the projected point is exact wherever the 4 neighbours lie on the point's plane: the moved
    target point's z must equal it to float32 precision for most (non-occluded, non-edge) pixels."""
    H, W = 48, 128
    pair = render_pair(seed, height=H, width=W, motion=motion, supersample=1, scene=scene)
    ys, xs = np.mgrid[0:H, 0:W].reshape(2, -1)
    u, v, z = _project_target_into_source(pair, ys, xs)
    inside = (z > 0) & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    assert inside.mean() > 0.5
    inv_src = 1.0 / pair["src_depth"][0]
    inv_at = cv2.remap(inv_src, u[inside].astype(np.float32)[:, None], v[inside].astype(np.float32)[:, None],
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[:, 0]
    rel = np.abs(inv_at * z[inside] - 1)
    assert np.median(rel) < 1e-5, np.median(rel)  # float32 depth: typically 5e-8
    assert (rel < 1e-3).mean() > 0.85, (rel < 1e-3).mean()


def test_source_colour_matches_moved_target_points_on_smooth_textures():
    """Photometric consistency without any warping code: with low-frequency textures and view-independent
    shading, the source image sampled (cv2.remap) where a target pixel lands has the target pixel's colour."""
    rng = np.random.default_rng(21)
    scene = room_scene(np.random.default_rng(21))
    for rect in scene.rectangles:  # smooth, seamless textures: a few bumps per face
        grid = rng.uniform(size=(4, 4, 3)).astype(np.float32)
        rect.texture = cv2.resize(np.tile(grid, (3, 3, 1)), (96, 96), interpolation=cv2.INTER_CUBIC)[32:64, 32:64]
        rect.texture = np.clip(rect.texture, 0, 1)
        rect.repeat = (1.0, 1.0)
    H, W = 48, 128
    K = default_K(H, W)
    world_T_tgt = matrix_from_pose_vector([0.2, -0.1, 0.3, 0.02, 0.1, 0.0])
    src_T_tgt = matrix_from_pose_vector([0.12, -0.08, 0.1, 0.05, -0.06, 0.04])
    tgt, tgt_depth = render(scene, world_T_tgt, K, H, W, supersample=2)
    src, src_depth = render(scene, world_T_tgt @ np.linalg.inv(src_T_tgt), K, H, W, supersample=2)
    pair = {"K": K, "src_T_tgt": src_T_tgt, "tgt_depth": tgt_depth}
    ys, xs = np.mgrid[0:H, 0:W].reshape(2, -1)
    u, v, z = _project_target_into_source(pair, ys, xs)
    ok = (z > 0) & (u >= 1) & (u <= W - 2) & (v >= 1) & (v <= H - 2)
    # Keep points away from depth edges: not occluded at any of the 4 source pixels the sample reads, and
    # the target pixel's own 3 x 3 neighbourhood on one surface (anti-aliased silhouettes mix two surfaces).
    ui, vi = np.clip(np.floor(u), 0, W - 2).astype(int), np.clip(np.floor(v), 0, H - 2).astype(int)
    for dy in (0, 1):
        for dx in (0, 1):
            ok &= np.abs(src_depth[0, vi + dy, ui + dx] - z) < 0.05 * z
    t = tgt_depth[0]
    spread = cv2.dilate(t, np.ones((3, 3))) - cv2.erode(t, np.ones((3, 3)))
    ok &= spread[ys, xs] < 0.2 * t[ys, xs]
    assert ok.mean() > 0.5, ok.mean()
    src_hwc = np.ascontiguousarray(src.transpose(1, 2, 0))
    sampled = cv2.remap(src_hwc, u[ok].astype(np.float32)[:, None], v[ok].astype(np.float32)[:, None],
                        cv2.INTER_LINEAR)[:, 0]
    err = np.abs(sampled - tgt[:, ys[ok], xs[ok]].T).max(axis=1)
    baseline = np.abs(src - tgt).max(axis=0).mean()
    # Residual error sits on the few pixels where two faces of different colour meet at a continuous depth
    # (room corners, box edges) and on the small boxes, where the texture is fine compared with a pixel.
    assert np.median(err) < 0.005 and (err < 0.05).mean() > 0.9, (np.median(err), (err < 0.05).mean())
    assert baseline > 10 * np.median(err)  # the views do differ: the agreement comes from the geometry


def test_supersampling_changes_colour_not_depth():
    scene = room_scene(np.random.default_rng(2))
    K = default_K(24, 64)
    pose = matrix_from_pose_vector([0.1, 0.0, 0.5, 0.0, 0.2, 0.0])
    img1, d1 = render(scene, pose, K, 24, 64, supersample=1)
    img3, d3 = render(scene, pose, K, 24, 64, supersample=3)
    np.testing.assert_array_equal(d1, d3)
    assert img3.shape == img1.shape == (3, 24, 64) and 0 < np.abs(img3 - img1).mean() < 0.1
    with pytest.raises(ValueError, match="supersample"):
        render(scene, pose, K, 24, 64, supersample=0)


def test_nearest_surface_wins_and_box_faces_are_exact():
    """A unit box centred 4 m ahead of a wall at 10 m: its front face (z = 3.5) hides the wall."""
    scene = Scene([Rectangle([-20, -20, 10], [40, 0, 0], [0, 40, 0], "checker")]
                  + box([0, 0, 4], (1, 1, 1), ["value_noise"] * 6))
    K = [20.0, 20.0, 15.5, 15.5]
    img, depth = render(scene, np.eye(4), K, 32, 32)
    # Pixel (x, y) sees the front face iff |x - cx| / fx * 3.5 <= 0.5.
    ax = np.abs(np.arange(32) - 15.5) / 20 * 3.5
    in_box = (ax[None, :] <= 0.5) & (ax[:, None] <= 0.5)
    np.testing.assert_allclose(depth[0][in_box], 3.5, rtol=1e-6)
    np.testing.assert_allclose(depth[0][~in_box], 10.0, rtol=1e-6)
    # Behind the camera nothing is drawn: turned around, the camera sees no surface.
    _, back = render(scene, matrix_from_pose_vector([0, 0, 0, 0, np.pi, 0]), K, 32, 32)
    assert np.all(back == 0)


def test_rectangle_validation():
    with pytest.raises(ValueError, match="orthogonal"):
        Rectangle([0, 0, 0], [1, 0, 0], [1, 1, 0], TEX)
    with pytest.raises(ValueError, match="non-zero"):
        Rectangle([0, 0, 0], [0, 0, 0], [0, 1, 0], TEX)
    with pytest.raises(ValueError, match=r"\(h, w, 3\)"):
        Rectangle([0, 0, 0], [1, 0, 0], [0, 1, 0], np.zeros((4, 4)))
    assert Rectangle([0, 0, 0], [1, 0, 0], [0, 1, 0], "brick").texture.shape == (256, 256, 3)


def test_motion_statistics_match_the_documented_ranges():
    """Each component is uniform within its documented bound: check means, spreads and that bounds are used."""
    rng = np.random.default_rng(5)
    n = 2000
    drive = np.array([pose_vector_from_matrix(sample_motion(rng, "driving")) for _ in range(n)])
    assert drive[:, 2].mean() == pytest.approx(-0.65, abs=0.02)             # forward 0.3 .. 1.0 m
    assert drive[:, 2].min() < -0.97 and drive[:, 2].max() > -0.33
    assert np.abs(drive[:, :2]).max() <= 0.05 and np.abs(drive[:, :2]).max() > 0.045
    yaw = np.degrees(drive[:, 4])
    assert np.abs(yaw).max() <= 3.0 + 1e-9 and np.abs(yaw).max() > 2.8 and yaw.std() == pytest.approx(
        3 / np.sqrt(3), rel=0.08)
    hand = np.array([pose_vector_from_matrix(sample_motion(rng, "handheld")) for _ in range(n)])
    np.testing.assert_allclose(hand[:, :3].std(axis=0), 0.15 / np.sqrt(3), rtol=0.08)
    np.testing.assert_allclose(np.abs(hand[:, :3].mean(axis=0)), 0, atol=0.01)
    # Rotation components are uniform in +-5 deg (recovered exactly: |w| < pi).
    np.testing.assert_allclose(np.degrees(hand[:, 3:]).std(axis=0), 5 / np.sqrt(3), rtol=0.08)
    mixed = np.array([pose_vector_from_matrix(sample_motion(rng, "mixed")) for _ in range(n)])
    is_drive = mixed[:, 2] <= -0.3
    assert 0.45 < is_drive.mean() < 0.55                                     # both kinds, equally often
    half = np.array([pose_vector_from_matrix(sample_motion(rng, "handheld", scale=0.5)) for _ in range(n)])
    assert np.abs(half[:, :3]).max() <= 0.075 and np.degrees(np.abs(half[:, 3:])).max() <= 2.5 + 1e-9


def test_motion_is_deterministic_and_rigid():
    for kind in MOTIONS:
        a = sample_motion(np.random.default_rng(9), kind)
        np.testing.assert_array_equal(a, sample_motion(np.random.default_rng(9), kind))
        np.testing.assert_array_equal(a, sample_motion(9, kind))          # an int seed works the same
        np.testing.assert_allclose(a[:3, :3] @ a[:3, :3].T, np.eye(3), atol=1e-12)
        np.testing.assert_array_equal(a[3], [0, 0, 0, 1])
    # Pose vector convention: translation first and direct, rotation by Rodrigues about the axis.
    T = matrix_from_pose_vector([1, 2, 3, 0, 0, np.pi / 2])
    np.testing.assert_allclose(T @ [1, 0, 0, 1], [1, 3, 3, 1], atol=1e-12)
    np.testing.assert_allclose(pose_vector_from_matrix(T), [1, 2, 3, 0, 0, np.pi / 2], atol=1e-12)


@pytest.mark.parametrize("scene", ["room", "corridor"])
def test_pair_outputs_have_the_documented_types_and_are_finite(scene):
    pair = render_pair(13, height=24, width=80, motion="mixed", scene=scene, photometric_jitter=0.1)
    shapes = {"src": (3, 24, 80), "tgt": (3, 24, 80), "tgt_depth": (1, 24, 80), "src_depth": (1, 24, 80),
              "K": (4,), "src_T_tgt": (4, 4), "xi_gt": (6,), "world_T_tgt": (4, 4)}
    for key, shape in shapes.items():
        assert pair[key].shape == shape, key
        assert np.all(np.isfinite(pair[key])), key
    for key in ("src", "tgt", "tgt_depth", "src_depth", "K"):
        assert pair[key].dtype == np.float32, key
    assert 0 <= pair["src"].min() and pair["src"].max() <= 1
    assert (pair["tgt_depth"] > 0).mean() > 0.99 and pair["tgt_depth"].min() >= 0
    np.testing.assert_allclose(matrix_from_pose_vector(pair["xi_gt"]), pair["src_T_tgt"], atol=1e-12)
    with pytest.raises(ValueError, match="unknown scene"):
        render_pair(0, height=8, width=8, scene="forest")


def test_corridor_scene_is_deterministic_and_closed():
    a, b = corridor_scene(4), corridor_scene(np.random.default_rng(4))
    assert len(a.rectangles) == 6 + 6 * 8
    for ra, rb in zip(a.rectangles, b.rectangles):
        np.testing.assert_array_equal(ra.origin, rb.origin)
        np.testing.assert_array_equal(ra.texture, rb.texture)
    # Looking in any of 6 directions from inside, every ray hits a surface.
    for w in ([0, 0, 0], [0, np.pi, 0], [0, np.pi / 2, 0], [0, -np.pi / 2, 0], [np.pi / 2, 0, 0],
              [-np.pi / 2, 0, 0]):
        _, depth = render(a, matrix_from_pose_vector([0.1, 0.2, 1.0] + w), default_K(16, 32), 16, 32)
        assert np.all(depth > 0)


def test_rendered_sequence_moves_as_documented_and_chains():
    from pygeometry.render import pose_vector_from_matrix, render_sequence

    seq = render_sequence(7, n_frames=6, height=24, width=64, supersample=1)
    assert seq["images"].shape == (6, 3, 24, 64) and seq["depths"].shape == (6, 1, 24, 64)
    assert np.all(seq["depths"] > 0) and np.all(np.isfinite(seq["images"]))
    T = seq["world_T_cam"]
    deg = np.pi / 180
    for k in range(5):
        cam_T_next = np.linalg.inv(T[k]) @ T[k + 1]
        xi = pose_vector_from_matrix(cam_T_next)
        assert 0.3 - 1e-9 <= xi[2] <= 1.0 + 1e-9 and np.all(np.abs(xi[:2]) <= 0.05 + 1e-9)
        assert np.all(np.abs(xi[3:]) <= 3 * deg)
    # depth of frame 0 moved into frame 1 agrees with frame 1's own depth (inverse depth, bilinear: exact on planes)
    K = seq["K"].astype(np.float64)
    vv, uu = np.mgrid[0:24, 0:64].astype(np.float64)
    z = seq["depths"][0, 0].astype(np.float64)
    pts = np.stack([z * (uu - K[2]) / K[0], z * (vv - K[3]) / K[1], z], -1).reshape(-1, 3)
    next_T_cam = np.linalg.inv(T[1]) @ T[0]
    q = pts @ next_T_cam[:3, :3].T + next_T_cam[:3, 3]
    us, vs = K[0] * q[:, 0] / q[:, 2] + K[2], K[1] * q[:, 1] / q[:, 2] + K[3]
    inside = (us >= 0) & (us <= 63) & (vs >= 0) & (vs <= 23) & (q[:, 2] > 0)
    inv_next = cv2.remap((1.0 / seq["depths"][1, 0]).astype(np.float32), us.astype(np.float32).reshape(24, 64),
                         vs.astype(np.float32).reshape(24, 64), cv2.INTER_LINEAR).reshape(-1)
    agree = np.abs(inv_next[inside] * q[inside, 2] - 1) < 0.01
    assert inside.mean() > 0.7 and agree.mean() > 0.8, (inside.mean(), agree.mean())
    np.testing.assert_array_equal(render_sequence(7, n_frames=6, height=24, width=64, supersample=1)["images"],
                                  seq["images"])
    with pytest.raises(ValueError, match="n_frames must be >= 2"):
        render_sequence(1, n_frames=1)
