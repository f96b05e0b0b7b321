"""RandomMirror / kernels.mirror: the left-right mirror of a pair is the pair of the mirrored scene, exactly."""
import numpy as np
import pytest

import caffe
from caffe import layers as L
from pygeometry import netspec as G
from pygeometry.config import ParamError
from pygeometry.evaluation import warp_source
from pygeometry.kernels.mirror import POSE_SIGNS, mirror_pairs
from pygeometry.kernels.se3 import se3_forward
from pygeometry.poses import pose_vector_from_matrix
from pygeometry.render import render_pair


@pytest.fixture(scope="module")
def pair():
    return render_pair(3, height=24, width=40, motion="handheld", supersample=1)


def test_pose_mirror_is_the_conjugation_by_the_x_reflection(rng):
    xi = np.concatenate([rng.uniform(-0.3, 0.3, (5, 3)), rng.uniform(-0.2, 0.2, (5, 3))], axis=1)
    M = np.diag([-1.0, 1.0, 1.0, 1.0])
    expected = pose_vector_from_matrix(M @ se3_forward(xi) @ M)  # independent: through the 4 x 4 matrices
    _, _, mirrored = mirror_pairs([np.zeros((5, 1, 2, 3))], None, xi, np.ones(5, bool))
    np.testing.assert_allclose(mirrored, expected, atol=1e-12)
    np.testing.assert_allclose(mirrored, xi * POSE_SIGNS, atol=0)


def test_the_mirrored_pair_warps_like_the_mirrored_warp(pair):
    """warp(mirror(src), mirror(depth), K', T') == mirror(warp(src, depth, K, T)) pixel for pixel: the mirrored
    pair is as exact as the original for the photometric loss."""
    src, depth = pair["src"][None], pair["tgt_depth"][None]
    K, xi = pair["K"][None].astype(np.float64), pair["xi_gt"][None]
    warped, inside = warp_source(src.astype(np.float64), depth, K, se3_forward(xi))
    (src_m, depth_m), K_m, xi_m = mirror_pairs([src, depth], K, xi, np.ones(1, bool))
    warped_m, inside_m = warp_source(src_m.astype(np.float64), depth_m, K_m, se3_forward(xi_m))
    assert inside.mean() > 0.5
    np.testing.assert_array_equal(inside_m, inside[..., ::-1])
    np.testing.assert_allclose(warped_m, warped[..., ::-1], atol=1e-9)
    assert K_m[0, 2] == pytest.approx(39 - K[0, 2]) and np.all(K_m[0, [0, 1, 3]] == K[0, [0, 1, 3]])


def test_only_the_chosen_pairs_mirror(rng):
    images = [rng.normal(size=(4, 3, 5, 7)), rng.normal(size=(4, 1, 5, 7))]
    K, xi = rng.uniform(1, 5, (4, 4)), rng.normal(size=(4, 6))
    flip = np.array([True, False, False, True])
    out, K_m, xi_m = mirror_pairs(images, K, xi, flip)
    for a, b in zip(images, out):
        np.testing.assert_array_equal(b[~flip], a[~flip])
        np.testing.assert_array_equal(b[flip], a[flip][..., ::-1])
    np.testing.assert_array_equal(K_m[~flip], K[~flip])
    np.testing.assert_array_equal(xi_m[~flip], xi[~flip])
    np.testing.assert_array_equal(K_m[flip, 2], 6 - K[flip, 2])


def _mirror_net(tmp_path, phase, probability=1.0, shapes=None, seed=0):
    shapes = shapes or dict(src=(4, 3, 5, 7), tgt=(4, 3, 5, 7), depth=(4, 1, 5, 7), K=(4, 4), xi=(4, 6))
    n = caffe.NetSpec()
    for name, shape in shapes.items():
        setattr(n, name, L.Input(shape=dict(dim=list(shape))))
    tops = G.random_mirror([n.src, n.tgt, n.depth], n.K, n.xi, probability=probability, seed=seed)
    for name, top in zip(["m_src", "m_tgt", "m_depth", "m_K", "m_xi"], tops):
        setattr(n, name, top)
    path = tmp_path / "mirror.prototxt"
    path.write_text(str(n.to_proto()))
    return caffe.Net(str(path), phase)


def _run(net, rng):
    data = {k: rng.normal(size=net.blobs[k].data.shape).astype(np.float32) for k in ("src", "tgt", "depth", "K", "xi")}
    for k, v in data.items():
        net.blobs[k].data[...] = v
    net.forward()
    return data, {k: net.blobs["m_" + k].data.copy() for k in data}


@pytest.mark.parametrize("phase,probability,mirrored", [(caffe.TRAIN, 1.0, True), (caffe.TRAIN, 0.0, False),
                                                         (caffe.TEST, 1.0, False)])
def test_layer_in_a_net(tmp_path, rng, phase, probability, mirrored):
    """Training with p = 1 mirrors every pair (as the kernel), p = 0 none; the TEST phase never mirrors."""
    net = _mirror_net(tmp_path, phase, probability)
    data, out = _run(net, rng)
    flip = np.full(4, mirrored)
    (src, tgt, depth), K, xi = mirror_pairs([data["src"], data["tgt"], data["depth"]], data["K"], data["xi"], flip)
    for k, v in dict(src=src, tgt=tgt, depth=depth, K=K, xi=xi).items():
        np.testing.assert_array_equal(out[k], v)


def test_layer_mirrors_about_half_the_pairs_at_random(tmp_path, rng):
    net = _mirror_net(tmp_path, caffe.TRAIN, 0.5, shapes=dict(src=(64, 1, 2, 3), tgt=(64, 1, 2, 3),
                                                              depth=(64, 1, 2, 3), K=(64, 4), xi=(64, 6)))
    counts = []
    for _ in range(4):
        data, out = _run(net, rng)
        flipped = out["xi"][:, 0] == -data["xi"][:, 0]
        np.testing.assert_array_equal(out["src"][flipped], data["src"][flipped][..., ::-1])
        np.testing.assert_array_equal(out["src"][~flipped], data["src"][~flipped])
        counts.append(int(flipped.sum()))
    assert 16 < np.mean(counts) < 48 and len(set(counts)) > 1


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ParamError, match="probability' must be a number in \\[0, 1\\]"):
        G.random_mirror(["a", "b"], "K", "xi", probability=1.5)
    with pytest.raises(ParamError, match="'seed' must be an integer"):
        G.random_mirror(["a", "b"], "K", "xi", seed=1.5)
    bad = dict(src=(4, 3, 5, 7), tgt=(4, 3, 5, 8), depth=(4, 1, 5, 7), K=(4, 4), xi=(4, 6))
    with pytest.raises(ValueError, match=r"bottom 'image 1' must have shape \(4, \*, 5, 7\), got \(4, 3, 5, 8\)"):
        _mirror_net(tmp_path, caffe.TRAIN, shapes=bad)
    bad = dict(src=(4, 3, 5, 7), tgt=(4, 3, 5, 7), depth=(4, 1, 5, 7), K=(4, 3), xi=(4, 6))
    with pytest.raises(ValueError, match=r"bottom 'K' must have shape \(4, 4\)"):
        _mirror_net(tmp_path, caffe.TRAIN, shapes=bad)


def test_nan_passes_through_mirrored(rng):
    """A data layer's job is to move values, not judge them: NaN stays NaN, at its mirrored place (the geometry
    layers downstream raise on it, naming themselves)."""
    a = rng.normal(size=(2, 1, 3, 4))
    a[0, 0, 1, 0] = np.nan
    (out,), _, _ = mirror_pairs([a], None, None, np.array([True, False]))
    assert np.isnan(out[0, 0, 1, 3]) and np.isnan(out).sum() == 1
