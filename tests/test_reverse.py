"""RandomReverse / kernels.reverse: a pair read backwards (source and target swapped, the pose inverted) is exact."""
import numpy as np
import pytest

import caffe
from caffe import layers as L
from pygeometry import netspec as G
from pygeometry.config import ParamError
from pygeometry.evaluation import warp_source
from pygeometry.kernels.reverse import reverse_pairs, reverse_pose_vectors
from pygeometry.kernels.se3 import se3_forward
from pygeometry.nets import pose_net
from pygeometry.render import render_pair


@pytest.fixture(scope="module")
def pair():
    return render_pair(5, height=48, width=64, motion="handheld", supersample=1)


def test_reversed_pose_is_the_inverse_transform(rng):
    xi = np.concatenate([rng.uniform(-0.5, 0.5, (6, 3)), rng.uniform(-0.4, 0.4, (6, 3))], axis=1)
    reversed_xi = reverse_pose_vectors(xi)
    np.testing.assert_allclose(se3_forward(reversed_xi), np.linalg.inv(se3_forward(xi)), atol=1e-12)
    np.testing.assert_allclose(reverse_pose_vectors(reversed_xi), xi, atol=1e-12)  # an involution
    np.testing.assert_array_equal(reversed_xi[:, 3:], -xi[:, 3:])


def test_the_reversed_pair_is_a_pair(pair):
    """The target warped into the source's view with the source's depth and the inverted pose matches the source
    image as well as the original warp matches the target (the same renderer; only resampling and occlusions
    differ), and clearly better than unwarped or warped with the pose not inverted."""
    src, tgt = pair["src"][None].astype(np.float64), pair["tgt"][None].astype(np.float64)
    K, xi = pair["K"][None].astype(np.float64), pair["xi_gt"][None]
    src_r, tgt_r, src_depth_r, tgt_depth_r, xi_r = reverse_pairs(src, tgt, xi, np.ones(1, bool),
                                                                 src_depth=pair["src_depth"][None],
                                                                 tgt_depth=pair["tgt_depth"][None])
    np.testing.assert_array_equal(src_r, tgt)
    np.testing.assert_array_equal(tgt_depth_r, pair["src_depth"][None])

    def l1(s, t, depth, T):
        warped, inside = warp_source(s, depth, K, T)
        mask = np.broadcast_to(inside.reshape(1, 1, *warped.shape[-2:]).astype(bool), warped.shape)
        return np.abs(warped - t)[mask].mean()

    original = l1(src, tgt, pair["tgt_depth"][None], se3_forward(xi))
    reversed_ = l1(src_r, tgt_r, tgt_depth_r, se3_forward(xi_r))
    assert reversed_ < 1.2 * original
    assert reversed_ < 0.6 * l1(src_r, tgt_r, tgt_depth_r, np.eye(4)[None])
    assert reversed_ < 0.6 * l1(src_r, tgt_r, tgt_depth_r, se3_forward(xi))  # the pose must be inverted


def test_only_the_chosen_pairs_reverse(rng):
    src, tgt = rng.normal(size=(4, 3, 5, 7)), rng.normal(size=(4, 3, 5, 7))
    sd, td = rng.uniform(1, 5, (4, 1, 5, 7)), rng.uniform(1, 5, (4, 1, 5, 7))
    xi = rng.normal(size=(4, 6)) * 0.2
    flip = np.array([True, False, False, True])
    s, t, sd_r, td_r, xi_r = reverse_pairs(src, tgt, xi, flip, src_depth=sd, tgt_depth=td)
    for out, same, swapped in ((s, src, tgt), (t, tgt, src), (sd_r, sd, td), (td_r, td, sd)):
        np.testing.assert_array_equal(out[~flip], same[~flip])
        np.testing.assert_array_equal(out[flip], swapped[flip])
    np.testing.assert_array_equal(xi_r[~flip], xi[~flip])
    np.testing.assert_allclose(xi_r[flip], reverse_pose_vectors(xi[flip]), atol=0)
    with pytest.raises(ValueError, match="both depths"):
        reverse_pairs(src, tgt, xi, flip, src_depth=sd)


SHAPES = dict(src=(4, 3, 5, 7), tgt=(4, 3, 5, 7), sd=(4, 1, 5, 7), td=(4, 1, 5, 7), xi=(4, 6))


def _reverse_net(tmp_path, phase, probability=1.0, shapes=None, depths=True):
    shapes = dict(shapes or SHAPES)
    if not depths:
        shapes = {k: v for k, v in shapes.items() if k not in ("sd", "td")}
    n = caffe.NetSpec()
    for name, shape in shapes.items():
        setattr(n, name, L.Input(shape=dict(dim=list(shape))))
    tops = G.random_reverse(n.src, n.tgt, n.xi, depths=(n.sd, n.td) if depths else None, probability=probability)
    for name, top in zip(["r_" + k for k in shapes], tops):
        setattr(n, name, top)
    path = tmp_path / "reverse.prototxt"
    path.write_text(str(n.to_proto()))
    return caffe.Net(str(path), phase)


def _run(net, rng):
    keys = [k for k in SHAPES if k in net.blobs]
    data = {k: rng.normal(size=net.blobs[k].data.shape).astype(np.float32) for k in keys}
    data["xi"] *= 0.2
    for k, v in data.items():
        net.blobs[k].data[...] = v
    net.forward()
    return data, {k: net.blobs["r_" + k].data.copy() for k in keys}


@pytest.mark.parametrize("depths", [True, False])
@pytest.mark.parametrize("phase,probability,reversed_", [(caffe.TRAIN, 1.0, True), (caffe.TRAIN, 0.0, False),
                                                          (caffe.TEST, 1.0, False)])
def test_layer_in_a_net(tmp_path, rng, phase, probability, reversed_, depths):
    """Training with p = 1 reverses every pair (as the kernel), p = 0 none; the TEST phase never reverses."""
    net = _reverse_net(tmp_path, phase, probability, depths=depths)
    data, out = _run(net, rng)
    flip = np.full(4, reversed_)
    extra = dict(src_depth=data["sd"], tgt_depth=data["td"]) if depths else {}
    expected = reverse_pairs(data["src"], data["tgt"], data["xi"], flip, **extra)
    for k, v in zip([k for k in SHAPES if k in out], expected):
        np.testing.assert_allclose(out[k], v, atol=1e-6)  # xi rounds once to float32


def test_layer_reverses_about_half_the_pairs_at_random(tmp_path, rng):
    shapes = {k: (64,) + v[1:] for k, v in SHAPES.items()}
    net = _reverse_net(tmp_path, caffe.TRAIN, 0.5, shapes=shapes)
    counts = []
    for _ in range(4):
        data, out = _run(net, rng)
        swapped = np.all(out["src"] == data["tgt"], axis=(1, 2, 3))
        np.testing.assert_array_equal(out["tgt"][swapped], data["src"][swapped])
        np.testing.assert_array_equal(out["xi"][~swapped], data["xi"][~swapped])
        np.testing.assert_array_equal(out["xi"][swapped, 3:], -data["xi"][swapped, 3:])
        counts.append(int(swapped.sum()))
    assert 16 < np.mean(counts) < 48 and len(set(counts)) > 1


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ParamError, match="probability' must be a number in \\[0, 1\\]"):
        G.random_reverse("a", "b", "xi", probability=-0.1)
    bad = dict(SHAPES, tgt=(4, 3, 5, 8))
    with pytest.raises(ValueError, match=r"bottom 'target' must have shape \(4, 3, 5, 7\), got \(4, 3, 5, 8\)"):
        _reverse_net(tmp_path, caffe.TRAIN, shapes=bad)
    bad = dict(SHAPES, sd=(4, 2, 5, 7))
    with pytest.raises(ValueError, match=r"bottom 'source depth' must have shape \(4, 1, 5, 7\)"):
        _reverse_net(tmp_path, caffe.TRAIN, shapes=bad)
    n = caffe.NetSpec()
    for name in ("src", "tgt", "sd", "xi"):
        setattr(n, name, L.Input(shape=dict(dim=list(SHAPES[name]))))
    n.a, n.b, n.c, n.d = G.random_reverse(n.src, n.tgt, n.xi, depths=(n.sd,))
    path = tmp_path / "four.prototxt"
    path.write_text(str(n.to_proto()))
    with pytest.raises(ValueError, match="needs 3 bottoms .* or 5 .* got 4"):
        caffe.Net(str(path), caffe.TRAIN)


def test_pose_nets_read_pairs_backwards():
    """The supervised nets reverse images and pose; the photometric ones also read and swap the depths."""
    supervised = str(pose_net("supervised_early_fusion", "train", source="x.txt", reverse=0.5).to_proto())
    assert "RandomReverse" in supervised and 'top: "src_depth"' not in supervised
    photometric = pose_net("early_fusion_photometric", "train", source="x.txt", reverse=0.5, mirror=0.5)
    text = str(photometric.to_proto())
    assert 'top: "src_depth"' in text and "RandomReverse" in text
    assert text.index("RandomReverse") < text.index("RandomMirror")
    # the loss warps with the reversed pair's target depth, which the mirror then flips
    assert 'bottom: "tgt_depth_reversed"' in text
    for phase in ("val", "deploy"):
        assert "RandomReverse" not in str(pose_net("early_fusion_photometric", phase, source="x.txt", reverse=0.5)
                                          .to_proto())
