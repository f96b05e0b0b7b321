"""Correlation / kernels.correlation: the local cost volume against a direct sum, its peak at a known shift, and its
gradients (float64 central differences of the kernel; float32 ones through a caffe.Net)."""
import numpy as np
import pytest

import caffe
from caffe import layers as L
from pygeometry import netspec as G
from pygeometry.config import ParamError
from pygeometry.kernels.correlation import correlation_backward, correlation_forward, displacements
from pygeometry.testing import check_function, check_layer


def _direct(f1, f2, m):
    """The definition, one displacement and pixel at a time (independent of the kernel's loops)."""
    n, c, h, w = f1.shape
    out = np.zeros((n, (2 * m + 1) ** 2, h, w))
    for k, (dy, dx) in enumerate(displacements(m)):
        for y in range(h):
            for x in range(w):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    out[:, k, y, x] = np.mean(f1[:, :, y, x] * f2[:, :, y + dy, x + dx], axis=1)
    return out


@pytest.mark.parametrize("shape,m", [((2, 5, 6, 7), 2), ((1, 1, 3, 4), 0), ((1, 3, 2, 3), 4), ((2, 8, 9, 5), 1)])
def test_forward_matches_a_direct_sum(rng, shape, m):
    f1, f2 = rng.normal(size=shape), rng.normal(size=shape)
    np.testing.assert_allclose(correlation_forward(f1, f2, m), _direct(f1, f2, m), rtol=1e-12, atol=1e-14)
    out32 = correlation_forward(f1.astype(np.float32), f2.astype(np.float32), m)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, _direct(f1, f2, m), rtol=1e-4, atol=1e-5)


def test_a_shifted_copy_peaks_at_its_displacement(rng):
    """f2(y + dy, x + dx) = f1(y, x): away from the borders the channel of (dy, dx) holds mean_c f1^2 and is the
    largest at every pixel."""
    f2 = rng.normal(size=(1, 16, 12, 14))
    dy, dx = 1, -2
    f1 = np.zeros_like(f2)
    f1[:, :, 2:10, 3:11] = f2[:, :, 2 + dy:10 + dy, 3 + dx:11 + dx]
    out = correlation_forward(f1, f2, 3)
    k = displacements(3).index((dy, dx))
    inner = (slice(None), slice(2, 10), slice(3, 11))
    np.testing.assert_allclose(out[0, k][inner[1:]], np.mean(f1[0] ** 2, axis=0)[inner[1:]], rtol=1e-12)
    assert np.all(out[0].argmax(axis=0)[inner[1:]] == k)


def test_kernel_gradient(rng, m=2):
    inputs = {"f1": rng.normal(size=(2, 3, 5, 6)), "f2": rng.normal(size=(2, 3, 5, 6))}
    check_function(lambda f1, f2: correlation_forward(f1, f2, m),
                   lambda g, f1, f2: dict(zip(("f1", "f2"), correlation_backward(f1, f2, g, m))), inputs)


def _layer(m):
    return lambda f1, f2, **kwargs: G.correlation(f1, f2, max_displacement=m, **kwargs)


@pytest.mark.parametrize("propagate_down", [None, [True, False], [False, True]])
def test_layer_gradient_in_a_net(rng, propagate_down, m=1):
    """Through a real caffe.Net in float32, for the bottoms propagate_down asks for (both by default); the others
    keep a zero diff."""
    bottoms = {"f1": rng.normal(size=(2, 4, 4, 5)), "f2": rng.normal(size=(2, 4, 4, 5))}
    check_layer(bottoms, _layer(m), propagate_down=propagate_down)


def test_layer_equals_the_kernel_in_a_net(tmp_path, rng):
    n = caffe.NetSpec()
    n.f1 = L.Input(shape=dict(dim=[2, 3, 4, 6]))
    n.f2 = L.Input(shape=dict(dim=[2, 3, 4, 6]))
    n.cost = G.correlation(n.f1, n.f2, max_displacement=2)
    path = tmp_path / "corr.prototxt"
    path.write_text("force_backward: true\n" + str(n.to_proto()))
    net = caffe.Net(str(path), caffe.TRAIN)
    f1, f2 = rng.normal(size=(2, 3, 4, 6)).astype(np.float32), rng.normal(size=(2, 3, 4, 6)).astype(np.float32)
    net.blobs["f1"].data[...], net.blobs["f2"].data[...] = f1, f2
    net.forward()
    assert net.blobs["cost"].data.shape == (2, 25, 4, 6)
    np.testing.assert_allclose(net.blobs["cost"].data, _direct(f1.astype(np.float64), f2.astype(np.float64), 2),
                               rtol=1e-5, atol=1e-6)
    g = rng.normal(size=(2, 25, 4, 6)).astype(np.float32)
    net.blobs["cost"].diff[...] = g
    net.backward()
    g1, g2 = correlation_backward(f1.astype(np.float64), f2.astype(np.float64), g.astype(np.float64), 2)
    np.testing.assert_allclose(net.blobs["f1"].diff, g1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.blobs["f2"].diff, g2, rtol=1e-4, atol=1e-5)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ParamError, match="'max_displacement' must be an integer"):
        G.correlation("a", "b", max_displacement=1.5)
    with pytest.raises(ParamError, match="'max_displacement' must be an integer in \\[0, 32\\]"):
        G.correlation("a", "b", max_displacement=-1)

    def net_with(shape2, nan=False):
        n = caffe.NetSpec()
        n.f1 = L.Input(shape=dict(dim=[1, 2, 3, 4]))
        n.f2 = L.Input(shape=dict(dim=list(shape2)))
        n.cost = G.correlation(n.f1, n.f2, max_displacement=1)
        path = tmp_path / "bad.prototxt"
        path.write_text(str(n.to_proto()))
        net = caffe.Net(str(path), caffe.TRAIN)
        if nan:
            net.blobs["f2"].data[0, 0, 0, 0] = np.nan
            net.forward()
        return net

    with pytest.raises(ValueError, match=r"Correlation: bottom 'f2' must have shape \(1, 2, 3, 4\), got \(1, 3, 3, 4\)"):
        net_with((1, 3, 3, 4))
    with pytest.raises(ValueError, match=r"Correlation: bottom 'f2' contains 1 NaN/inf value"):
        net_with((1, 2, 3, 4), nan=True)
