"""RandomColour / kernels.color: one channel permutation and gain per pair, the same for its source and target."""
import numpy as np
import pytest

import caffe
from caffe import layers as L
from pygeometry import netspec as G
from pygeometry.config import ParamError
from pygeometry.kernels.color import PERMUTATIONS, random_colour, recolour_pairs
from pygeometry.kernels.photometric import photometric_forward


def test_recolour_by_hand(rng):
    a = rng.uniform(size=(2, 3, 4, 5))
    (b,) = recolour_pairs([a], np.array([[2, 0, 1], [0, 1, 2]]), np.array([0.5, 1.0]))
    np.testing.assert_array_equal(b[0, 0], 0.5 * a[0, 2])
    np.testing.assert_array_equal(b[0, 1], 0.5 * a[0, 0])
    np.testing.assert_array_equal(b[0, 2], 0.5 * a[0, 1])
    np.testing.assert_array_equal(b[1], a[1])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        recolour_pairs([a[:, :1]], np.array([[0, 1, 2]] * 2), np.ones(2))


def test_the_l1_loss_only_scales_with_the_gain(rng):
    """Recoloured alike, the warped source and the target keep their per-pixel L1 error times the gain, so the pose
    that aligns them is unchanged (SSIM's constants make its term change slightly, hence alpha 0 here)."""
    warped, target = rng.uniform(size=(3, 3, 6, 7)), rng.uniform(size=(3, 3, 6, 7))
    order, gain = PERMUTATIONS[[1, 4, 5]], np.array([0.8, 1.0, 1.2])
    w2, t2 = recolour_pairs([warped, target], order, gain)
    for i in range(3):
        before = photometric_forward(warped[i:i + 1], target[i:i + 1], alpha=0.0)
        after = photometric_forward(w2[i:i + 1], t2[i:i + 1], alpha=0.0)
        np.testing.assert_allclose(np.asarray(after), gain[i] * np.asarray(before), rtol=1e-12)


def test_random_colour_draws_every_permutation_and_bounded_gains():
    order, gain = random_colour(np.random.default_rng(0), 600, 0.2)
    assert len({tuple(o) for o in order}) == 6 and all(sorted(o) == [0, 1, 2] for o in order)
    assert 0.8 <= gain.min() < 0.85 and 1.15 < gain.max() <= 1.2


def _net(tmp_path, phase, gain=0.2):
    n = caffe.NetSpec()
    n.src = L.Input(shape=dict(dim=[16, 3, 4, 5]))
    n.tgt = L.Input(shape=dict(dim=[16, 3, 4, 5]))
    n.src_c, n.tgt_c = G.random_colour([n.src, n.tgt], gain=gain, seed=3)
    path = tmp_path / "colour.prototxt"
    path.write_text(str(n.to_proto()))
    return caffe.Net(str(path), phase)


def test_layer_recolours_both_images_alike_in_training_only(tmp_path, rng):
    for phase in (caffe.TRAIN, caffe.TEST):
        net = _net(tmp_path, phase)
        src = rng.uniform(size=(16, 3, 4, 5)).astype(np.float32)
        net.blobs["src"].data[...] = src
        net.blobs["tgt"].data[...] = src  # the same image twice: the two outputs must stay equal
        net.forward()
        out_src, out_tgt = net.blobs["src_c"].data, net.blobs["tgt_c"].data
        np.testing.assert_array_equal(out_src, out_tgt)
        if phase == caffe.TEST:
            np.testing.assert_array_equal(out_src, src)
            continue
        changed = 0
        for i in range(16):  # each pair is some permutation of the input's channels times one gain
            matches = [np.allclose(out_src[i], src[i][list(p)] * (out_src[i].sum() / src[i].sum()), rtol=1e-5)
                       for p in PERMUTATIONS]
            assert any(matches)
            changed += not np.allclose(out_src[i], src[i])
        assert changed >= 12


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ParamError, match=r"'gain' must be a number in \[0, 1\)"):
        G.random_colour(["a", "b"], gain=1.0)
    n = caffe.NetSpec()
    n.src = L.Input(shape=dict(dim=[2, 1, 4, 5]))
    n.src_c = G.random_colour([n.src])
    path = tmp_path / "bad.prototxt"
    path.write_text(str(n.to_proto()))
    with pytest.raises(ValueError, match=r"bottom 'image 0' must have shape \(2, 3, \*, \*\)"):
        caffe.Net(str(path), caffe.TRAIN)
