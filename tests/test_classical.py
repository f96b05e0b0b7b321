"""Classical OpenCV baseline: recovers the ground-truth pose of rendered pairs (PnP with depth, essential matrix
with the scale from depth; SIFT and ORB), in the src_T_tgt direction, and reports its failures."""
import numpy as np
import pytest

from pygeometry.classical import STATUSES, classical_baseline, estimate_pose, failure_counts, sample_depth
from pygeometry.evaluation import transform_errors
from pygeometry.render import render_pair


@pytest.fixture(scope="module")
def pairs():
    # Seeds 0 and 2: rooms with textured walls (100-200 SIFT matches at 128 x 416).
    return [render_pair(seed, 128, 416) for seed in (0, 2)]


def _errors(T, pair):
    e = transform_errors(T[None], pair["src_T_tgt"][None])
    return e["translation_m"][0], e["rotation_deg"][0]


@pytest.mark.parametrize("method,features,max_cm,max_deg", [
    ("pnp", "sift", 1.0, 0.1), ("pnp", "orb", 2.0, 0.2), ("essential", "sift", 2.0, 0.2)])
def test_recovers_the_ground_truth_pose_of_rendered_pairs(pairs, method, features, max_cm, max_deg):
    for pair in pairs:
        r = estimate_pose(pair["src"], pair["tgt"], pair["tgt_depth"], pair["K"], method, features)
        assert r.status == "ok" and r.inliers >= 20, r
        t_err, r_err = _errors(r.src_T_tgt, pair)
        motion = np.linalg.norm(pair["src_T_tgt"][:3, 3])
        assert t_err < max_cm / 100 and r_err < max_deg, (t_err, r_err, motion)
        # Far better than the identity: the direction src_T_tgt (not its inverse) was estimated.
        assert t_err < 0.1 * motion


def test_the_estimate_is_src_T_tgt_not_its_inverse(pairs):
    pair = pairs[0]
    swapped = estimate_pose(pair["tgt"], pair["src"], pair["src_depth"], pair["K"], "pnp")
    assert swapped.status == "ok"
    t_err, r_err = _errors(np.linalg.inv(swapped.src_T_tgt), pair)
    assert t_err < 0.01 and r_err < 0.1


def test_failures_are_reported_and_fall_back_to_identity(pairs):
    pair = pairs[0]
    flat = np.full_like(pair["src"], 0.5)
    r = estimate_pose(flat, flat, pair["tgt_depth"], pair["K"], "pnp")
    assert r.status == "too_few_matches" and not r.ok and np.array_equal(r.src_T_tgt, np.eye(4))
    no_depth = np.zeros_like(pair["tgt_depth"])
    assert estimate_pose(pair["src"], pair["tgt"], no_depth, pair["K"], "pnp").status == "too_few_depth"
    r = estimate_pose(pair["src"], pair["tgt"], no_depth, pair["K"], "essential")
    assert r.status == "no_scale" and np.array_equal(r.src_T_tgt, np.eye(4))
    results = classical_baseline(np.stack([pair["src"], flat]), np.stack([pair["tgt"], flat]),
                                 np.stack([pair["tgt_depth"]] * 2), pair["K"], "pnp")
    counts = failure_counts(results)
    assert set(counts) == set(STATUSES) and counts["ok"] == 1 and counts["too_few_matches"] == 1


def test_depth_at_keypoints_skips_depth_edges_and_holes():
    depth = np.ones((6, 6))
    depth[:, 3:] = 5.0       # a depth edge between columns 2 and 3
    depth[0, 0] = 0.0        # a hole
    values, ok = sample_depth(depth, np.array([[1.5, 2.5], [2.5, 2.5], [0.5, 0.5], [4.25, 3.0], [-1.0, 2.0]]))
    assert ok.tolist() == [True, False, False, True, False]
    np.testing.assert_allclose(values, [1.0, 0.0, 0.0, 5.0, 0.0])


def test_implausible_estimates_are_rejected():
    from pygeometry.classical import plausible

    X = np.array([[0.0, 0.0, 4.0], [1.0, -0.5, 5.0], [-1.0, 0.5, 3.0]])
    move = np.eye(4)
    move[:3, 3] = [0.1, 0.0, -0.3]
    assert plausible(X, move)
    far = np.eye(4)
    far[:3, 3] = [0.0, 0.0, 200.0]           # all points 40-70x farther away: a degenerate consensus
    behind = np.diag([1.0, -1.0, -1.0, 1.0])  # 180 degrees about x: the points end up behind the camera
    assert not plausible(X, far) and not plausible(X, behind) and not plausible(X[:0], move)
