"""The renderer is the independent ground truth: check it against analytic geometry, not against the layers."""
import numpy as np
import pytest

from pygeometry.render import (Rectangle, Scene, TEXTURE_NAMES, default_K, load_texture, matrix_from_pose_vector,
                               pose_vector_from_matrix, render, render_pair, sample_motion)

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
