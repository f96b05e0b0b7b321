"""Caffe's BLAS products, checked directly against float64 (torch) under whatever OpenBLAS kernel this process
runs: .ci/run repeats this file under OPENBLAS_CORETYPE = Haswell, SkylakeX, Cooperlake and Zen.

Every layer that multiplies through BLAS in the project's nets (Convolution: 1x1, grouped, depthwise, strided,
tiny outputs; InnerProduct; BatchNorm with global statistics, whose broadcasts are K = 1 products) runs forward
and backward in a real caffe.Net. Each element of the top, the bottom diff and the parameter diffs must lie within
the float32 summation bound of the float64 result: |caffe - exact| <= 2 K eps32 * (the same sum over |terms|),
K the length of that sum. Different kernels sum in different orders and so differ inside that bound; a kernel
that computes a wrong result (a dropped block, a wrong stride, garbage for one alignment) leaves it.
"""
import numpy as np
import pytest

from pygeometry.blas import describe_openblas
from pygeometry.testing import bottom_blob, layer_net, stock_layer

pytestmark = pytest.mark.blas
EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def torch():
    import torch

    torch.set_num_threads(1)
    return torch


CONVS = {  # name: (input N, C, H, W), num_output, kernel, stride, pad, group
    "efficientnet_block8_expand_1x1": ((2, 80, 4, 13), 480, 1, 1, 0, 1),
    "efficientnet_depthwise_5x5_s2": ((2, 144, 17, 53), 144, 5, 2, 0, 144),
    "alexnet_conv1_6ch_s4": ((2, 6, 67, 211), 96, 11, 4, 0, 1),
    "alexnet_conv2_grouped": ((3, 96, 7, 25), 256, 5, 1, 2, 2),
    "alexnet_conv3_1x6_output": ((8, 256, 1, 6), 384, 3, 1, 1, 1),
}


def _within_bound(name, ours, exact, bound, terms):
    tol = 2 * terms * EPS32 * bound + 1e-30
    excess = np.abs(ours - exact) / tol
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    assert excess.max() <= 1.0, (f"{name}: element {worst} is {ours[worst]!r}, float64 says {exact[worst]!r}, "
                                 f"beyond the float32 bound {tol[worst]:.3e} ({describe_openblas()})")


@pytest.mark.parametrize("name", sorted(CONVS))
def test_convolution_forward_and_backward_within_the_float32_bound(name, torch):
    import torch.nn.functional as F

    shape, nout, k, s, pad, group = CONVS[name]
    rng = np.random.default_rng(7)
    x = rng.normal(size=shape).astype(np.float32)
    w = (rng.normal(size=(nout, shape[1] // group, k, k)) / np.sqrt(shape[1] // group * k * k)).astype(np.float32)
    make = stock_layer("Convolution", convolution_param=dict(num_output=nout, kernel_size=k, stride=s, pad=pad,
                                                             group=group, bias_term=False))
    net = layer_net({"x": x}, make, ["y"])  # loss weight 1 (Caffe then runs the backward); the diff is ours
    net.params["y"][0].data[...] = w
    net.forward()
    g = rng.normal(size=net.blobs["y"].data.shape).astype(np.float32)
    net.clear_param_diffs()
    net.blobs["y"].diff[...] = g
    net._backward(len(net.layers) - 1, 0)

    def conv(a, b):
        return F.conv2d(a, b, None, s, pad, 1, group)
    xt, wt, gt = (torch.from_numpy(v).double().requires_grad_(True) for v in (x, w, g))
    y = conv(xt, wt)
    (y * gt).sum().backward()
    ax, aw, ag = (torch.from_numpy(np.abs(v)).double().requires_grad_(True) for v in (x, w, g))
    bound = conv(ax, aw)
    (bound * ag).sum().backward()  # the same sums over |terms|: bounds for both gradients
    per_output = shape[1] // group * k * k
    _within_bound(f"{name} forward", net.blobs["y"].data, y.detach().numpy(), bound.detach().numpy(), per_output)
    _within_bound(f"{name} bottom diff", bottom_blob(net, "x").diff, xt.grad.numpy(), ax.grad.numpy(), nout * k * k)
    spatial = int(np.prod(net.blobs["y"].data.shape[2:])) * shape[0]
    _within_bound(f"{name} weight diff", net.params["y"][0].diff, wt.grad.numpy(), aw.grad.numpy(), spatial)


def test_inner_product_forward_and_backward_within_the_float32_bound():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 256, 2, 6)).astype(np.float32)
    w = (rng.normal(size=(512, 3072)) / 55).astype(np.float32)
    b = rng.normal(size=512).astype(np.float32)
    net = layer_net({"x": x}, stock_layer("InnerProduct", inner_product_param=dict(num_output=512)), ["y"])
    net.params["y"][0].data[...] = w
    net.params["y"][1].data[...] = b
    net.forward()
    g = rng.normal(size=(8, 512)).astype(np.float32)
    net.clear_param_diffs()
    net.blobs["y"].diff[...] = g
    net._backward(len(net.layers) - 1, 0)
    x2, w64, g64 = x.reshape(8, -1).astype(np.float64), w.astype(np.float64), g.astype(np.float64)
    _within_bound("fc forward", net.blobs["y"].data, x2 @ w64.T + b, np.abs(x2) @ np.abs(w64).T + np.abs(b), 3073)
    _within_bound("fc bottom diff", bottom_blob(net, "x").diff.reshape(8, -1), g64 @ w64, np.abs(g64) @ np.abs(w64),
                  512)
    _within_bound("fc weight diff", net.params["y"][0].diff, g64.T @ x2, np.abs(g64).T @ np.abs(x2), 8)
    _within_bound("fc bias diff", net.params["y"][1].diff, g64.sum(0), np.abs(g64).sum(0), 8)


def test_batchnorm_with_global_statistics_within_the_float32_bound():
    """Caffe broadcasts the mean and the variance with K = 1 products (num x channels, then (num*channels) x
    spatial); a kernel that gets a K = 1 product wrong for one batch item shows here."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 480, 4, 13)).astype(np.float32)
    mean, var = rng.normal(size=480).astype(np.float32), rng.uniform(0.1, 3, size=480).astype(np.float32)
    net = layer_net({"x": x}, stock_layer("BatchNorm", batch_norm_param=dict(use_global_stats=True, eps=1e-3)),
                    ["y"])
    net.params["y"][0].data[...] = mean
    net.params["y"][1].data[...] = var
    net.params["y"][2].data[...] = 1.0
    net.forward()
    g = rng.normal(size=x.shape).astype(np.float32)
    net.blobs["y"].diff[...] = g
    net._backward(len(net.layers) - 1, 0)
    std = np.sqrt(var.astype(np.float64) + 1e-3)[None, :, None, None]
    exact = (x - mean[None, :, None, None].astype(np.float64)) / std
    _within_bound("batchnorm forward", net.blobs["y"].data, exact, np.abs(exact) + 1e-6, 8)
    _within_bound("batchnorm bottom diff", bottom_blob(net, "x").diff, g / std, np.abs(g / std), 8)


def test_the_bound_catches_one_wrong_element(torch):
    """The criterion itself: a product that is right everywhere but one element, off by 0.1% of its size, fails."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(64, 300)), rng.normal(size=(300, 40))
    exact, bound = a @ b, np.abs(a) @ np.abs(b)
    ours = exact.astype(np.float32)
    _within_bound("float32 rounding of the exact product", ours, exact, bound, 300)
    ours[17, 3] += 1e-3 * abs(exact[17, 3]) + 1e-3
    with pytest.raises(AssertionError, match=r"element \(np.int64\(17\), np.int64\(3\)\)"):
        _within_bound("one wrong element", ours, exact, bound, 300)
