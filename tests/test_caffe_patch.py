"""What the project's patch changes in Caffe (scripts/install/caffe-bookworm.patch) computes what Caffe computed:
the batched convolution path, the per-image one and the depthwise loops, the loop-based cross-channel LRN (with the square-root power
for beta 0.75 and powf otherwise), Threshold's backward, and the fused CPU Adam update (L2 decay, iter_size 1)
next to Caffe's own passes (L1, iter_size 2), each against float64 references and by central differences."""
import numpy as np
import pytest

import caffe
from caffe import layers as L
from pygeometry.testing import bottom_blob, check_net_gradients, layer_net, stock_layer

F32 = np.float32

# name: input (N, C, H, W), num_output, kernel, stride, pad, group. The patch multiplies the whole batch at once
# where an image's output has at most 64 pixels and N > 1, else image by image.
CONVS = {
    "batched grouped (AlexNet conv2 at 64 x 208)": ((4, 8, 3, 12), 6, 5, 1, 2, 2),
    "batched 3x3 with a 1x6 output": ((3, 5, 1, 6), 4, 3, 1, 1, 1),
    "batched 1x1": ((2, 3, 4, 5), 4, 1, 1, 0, 1),
    "per image (80 output pixels)": ((2, 4, 8, 10), 3, 3, 1, 1, 1),
    "per image (one image)": ((1, 4, 3, 4), 3, 3, 1, 1, 1),
    # depthwise (group == channels == num_output): the patch's direct loops, whatever the output size
    "depthwise 3x3 (EfficientNet's stride-1 blocks)": ((3, 6, 7, 9), 6, 3, 1, 1, 6),
    "depthwise 5x5 stride 2 pad 3 (TF 'SAME' before the crop)": ((2, 4, 8, 11), 4, 5, 2, 3, 4),
    "depthwise 3x3 stride 2 without padding": ((2, 3, 5, 6), 3, 3, 2, 0, 3),
    "depthwise, one image, 144 output pixels": ((1, 5, 12, 12), 5, 3, 1, 1, 5),
    "grouped with 2 outputs per channel (not depthwise)": ((2, 4, 6, 7), 8, 3, 1, 1, 4),
}


def _conv_reference(x, w, b, stride, pad, group):
    import torch
    import torch.nn.functional as F

    return F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), torch.from_numpy(b).double(),
                    stride, pad, 1, group).numpy()


@pytest.mark.blas
@pytest.mark.parametrize("name", sorted(CONVS))
def test_convolution_forward_and_gradients(name):
    shape, nout, k, s, pad, group = CONVS[name]
    rng = np.random.default_rng(5)
    x = rng.normal(size=shape).astype(F32)
    make = stock_layer("Convolution", convolution_param=dict(num_output=nout, kernel_size=k, stride=s, pad=pad,
                                                             group=group, weight_filler=dict(type="gaussian", std=0.3),
                                                             bias_filler=dict(type="gaussian", std=0.3)))
    net = layer_net({"x": x}, make, ["y"])
    w, b = net.params["y"][0].data.copy(), net.params["y"][1].data.copy()
    net.forward()
    np.testing.assert_allclose(net.blobs["y"].data, _conv_reference(x, w, b, s, pad, group), rtol=1e-5, atol=1e-5)
    g = rng.normal(size=net.blobs["y"].data.shape)
    check_net_gradients(net, ["x", ("y", 0), ("y", 1)], top_diffs={"y": g}, samples=None, what=name)


def _lrn_reference(x, size, alpha, beta, k=1.0):
    x = x.astype(np.float64)
    C = x.shape[1]
    pre = (size - 1) // 2
    scale = np.full_like(x, k)
    for c in range(C):
        lo, hi = max(0, c - pre), min(C, c - pre + size)
        scale[:, c] += alpha / size * (x[:, lo:hi] ** 2).sum(axis=1)
    return x * scale ** -beta


@pytest.mark.parametrize("beta", [0.75, 0.5])
@pytest.mark.parametrize("size", [5, 3])
def test_lrn_across_channels(beta, size):
    """Inputs large enough (std 60, as AlexNet's conv1 outputs) that the normalisation is far from 1, so the cross-
    channel term of the gradient matters."""
    rng = np.random.default_rng(11)
    x = (rng.normal(size=(2, 7, 3, 5)) * 60).astype(F32)
    net = layer_net({"x": x}, stock_layer("LRN", lrn_param=dict(local_size=size, alpha=1e-4, beta=beta)), ["y"])
    net.forward()
    ref = _lrn_reference(x, size, 1e-4, beta)
    assert np.abs(ref / x - 1).max() > 0.2, "the normalisation must matter for this test"
    np.testing.assert_allclose(net.blobs["y"].data, ref, rtol=2e-6, atol=1e-5)
    g = rng.normal(size=x.shape)
    check_net_gradients(net, ["x"], top_diffs={"y": g}, samples=None, step=0.5, what=f"LRN size {size} beta {beta}")


def test_threshold_backward_is_zero():
    """The step function's derivative (zero) instead of Caffe's 'Not Implemented' abort."""
    x = np.array([[-1.0, 0.0, 0.5, 2.0]], F32)
    net = layer_net({"x": x}, stock_layer("Threshold", threshold_param=dict(threshold=0.2)), ["y"])
    net.forward()
    assert net.blobs["y"].data.tolist() == [[0.0, 0.0, 1.0, 1.0]]
    bottom_blob(net, "x").diff[...] = 7.0
    net.backward(y=np.ones((1, 4), F32))
    assert np.all(bottom_blob(net, "x").diff == 0)


# ------------------------------------------------------------------------------------------------ the Adam update
def _adam_net(tmp_path):
    n = caffe.NetSpec()
    n.w = L.Parameter(parameter_param=dict(shape=dict(dim=[3, 4])), param=dict(lr_mult=1, decay_mult=1))
    n.b = L.Parameter(parameter_param=dict(shape=dict(dim=[3, 4])), param=dict(lr_mult=2, decay_mult=0))
    n.t = L.DummyData(shape=dict(dim=[3, 4]), data_filler=dict(type="constant", value=0.5))
    n.s = L.Eltwise(n.w, n.b)
    n.loss = L.EuclideanLoss(n.s, n.t)
    path = tmp_path / "net.prototxt"
    path.write_text(str(n.to_proto()))
    return path


def _adam_reference(w, b, steps, lr, decay, clip, regularization, iter_size, beta1=0.9, beta2=0.999, eps=1e-8):
    """Caffe's SGDSolver::ApplyUpdate for Adam in float64: the gradients summed over iter_size passes, clipped by
    their global norm (before Caffe's Normalize divides by iter_size), the decay added, the Adam step."""
    params = [w.astype(np.float64), b.astype(np.float64)]
    lr_mult, decay_mult = [1.0, 2.0], [1.0, 0.0]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        grad_s = (params[0] + params[1] - 0.5) / 3  # EuclideanLoss: sum (s - t)^2 / (2 N), N = 3
        grads = [iter_size * grad_s, iter_size * grad_s]
        norm = np.sqrt(sum((g ** 2).sum() for g in grads))
        if norm > clip:
            grads = [g * clip / norm for g in grads]
        grads = [g / iter_size for g in grads]
        for i in range(2):
            reg = params[i] if regularization == "L2" else np.sign(params[i])
            g = grads[i] + decay * decay_mult[i] * reg
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            rate = lr * lr_mult[i] * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
            params[i] = params[i] - rate * m[i] / (np.sqrt(v[i]) + eps)
    return params


@pytest.mark.blas  # the clipping norm is a BLAS dot product
@pytest.mark.parametrize("regularization,iter_size", [("L2", 1), ("L1", 1), ("L2", 2)])
def test_adam_update(tmp_path, regularization, iter_size):
    """L2 with iter_size 1 takes the patch's fused pass, L1 and iter_size 2 Caffe's passes: all equal Caffe's
    formula, with gradient clipping active and per-parameter lr_mult / decay_mult."""
    net_path = _adam_net(tmp_path)
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{net_path}"\ntype: "Adam"\nbase_lr: 0.05\nmomentum: 0.9\nmomentum2: 0.999\nlr_policy: "fixed"\n'
        f'weight_decay: 0.1\nregularization_type: "{regularization}"\nclip_gradients: 0.2\niter_size: {iter_size}\n'
        f"max_iter: 10\nsolver_mode: CPU\nsnapshot_after_train: false\n")
    solver = caffe.get_solver(str(tmp_path / "solver.prototxt"))
    rng = np.random.default_rng(2)
    w0, b0 = rng.normal(size=(3, 4)).astype(F32), rng.normal(size=(3, 4)).astype(F32)
    solver.net.params["w"][0].data[...] = w0
    solver.net.params["b"][0].data[...] = b0
    solver.step(3)
    w, b = _adam_reference(w0, b0, 3, 0.05, 0.1, 0.2, regularization, iter_size)
    assert np.abs(w - w0).max() > 0.05, "the steps must move the parameters"
    np.testing.assert_allclose(solver.net.params["w"][0].data, w, rtol=0, atol=2e-6)
    np.testing.assert_allclose(solver.net.params["b"][0].data, b, rtol=0, atol=2e-6)
