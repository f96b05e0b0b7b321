"""Running a trained pose network: load a deploy net with its weights for a split's image size, and predict the
pose of every pair in batches. Used by scripts/train.py (the test-split evaluation at the end of training),
scripts/evaluate.py and scripts/report.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .kernels.mirror import POSE_SIGNS
from .progress import progress_bar


class InferenceError(Exception):
    """A deploy net, weights or split that do not fit together (the message says how)."""


def load_net(deploy: Path, weights: Path, height: int, width: int, split, batch: int):
    """The deploy net with weights, inputs src and tgt reshaped to (batch, 3, height, width); checks the blobs and
    that the net was made for this image size (split names the data in the message)."""
    import caffe

    deploy, weights = Path(deploy), Path(weights)

    if not deploy.is_file():
        raise InferenceError(f"deploy prototxt {deploy} does not exist")
    if not weights.is_file():
        raise InferenceError(f"weights {weights} do not exist")
    caffe.set_mode_cpu()
    net = caffe.Net(str(deploy), caffe.TEST)
    for blob in ("src", "tgt"):
        if blob not in net.inputs:
            raise InferenceError(f"{deploy}: the net has no input blob '{blob}' (inputs: {list(net.inputs)})")
    if "xi" not in net.blobs:
        raise InferenceError(f"{deploy}: the net has no blob 'xi' (the pose output)")
    shape = net.blobs["src"].data.shape
    if shape[1] != 3 or tuple(shape[2:]) != (height, width):
        raise InferenceError(
            f"image size mismatch: the split {split} has {height}x{width} images (H x W) but the net {deploy} expects "
            f"{shape[2]}x{shape[3]} (input 'src' {tuple(shape)}); make a deploy net for {height}x{width} "
            f"(pygeometry.nets.pose_net(..., 'deploy', height={height}, width={width})) or convert the split")
    net.copy_from(str(weights))
    for blob in ("src", "tgt"):
        net.blobs[blob].reshape(batch, 3, height, width)
    if "tgt_depth" in net.inputs:  # an oracle net (pose_net(..., depth_input=True)) also reads the target's depth
        net.blobs["tgt_depth"].reshape(batch, 1, height, width)
    net.reshape()
    return net


def predict(net, src, tgt, batch: int, progress=True, tgt_depth=None, mirror_average=False) -> np.ndarray:
    """Poses xi (N, 6) float64 of the pairs src, tgt (N, 3, H, W) through a net from load_net, `batch` at a time
    (the last batch is padded with zeros and the padding dropped); InferenceError for NaN/inf predictions.
    tgt_depth (N, 1, H, W): the target depths, for a net with that input (an oracle net), else unused.

    mirror_average: also predict every pair mirrored left-right and average the two, the mirrored prediction mapped
    back by kernels.mirror.POSE_SIGNS (Monodepth's post-processing, for pose): twice the forward passes, and a
    prediction that is exactly mirror-equivariant. Exact geometry when the principal point is at the image's centre,
    cx = (W - 1) / 2 (the renderer's default_K); otherwise the mirrored pair is one of a camera with cx' = W - 1 - cx.
    """
    xi = _predict_once(net, src, tgt, batch, progress, tgt_depth)
    if mirror_average:
        flip = (lambda a: None if a is None else np.ascontiguousarray(np.asarray(a)[..., ::-1]))
        xi_mirrored = _predict_once(net, flip(src), flip(tgt), batch, progress, flip(tgt_depth))
        xi = 0.5 * (xi + xi_mirrored * POSE_SIGNS)
    return xi


def _predict_once(net, src, tgt, batch, progress, tgt_depth) -> np.ndarray:
    n = len(src)
    xi = np.zeros((n, 6))
    inputs = {"src": src, "tgt": tgt}
    if "tgt_depth" in net.inputs:
        if tgt_depth is None:
            raise InferenceError("this net reads the target's depth (input 'tgt_depth', an oracle net); pass "
                                 "tgt_depth")
        inputs["tgt_depth"] = tgt_depth
    for start in progress_bar(range(0, n, batch), enabled=progress, desc="network", unit="batch", leave=False):
        stop = min(n, start + batch)
        for key, values in inputs.items():
            net.blobs[key].data[...] = 1.0 if key == "tgt_depth" else 0.0  # padding (a depth of 0 has no inverse)
            net.blobs[key].data[:stop - start] = values[start:stop]
        net.forward()
        out = net.blobs["xi"].data
        if out.shape[0] != batch or out.reshape(batch, -1).shape[1] != 6:
            raise InferenceError(f"the net's 'xi' has shape {out.shape}, expected ({batch}, 6)")
        xi[start:stop] = out.reshape(batch, 6)[:stop - start]
    if not np.all(np.isfinite(xi)):
        raise InferenceError(f"the network predicted NaN/inf poses for {int((~np.isfinite(xi)).any(1).sum())} pairs")
    return xi


def predict_depth_pose(net, data: dict, batch: int, progress=True):
    """Depth (N, 1, H, W) of every target and poses xi_prev, xi_next (N, 6) of a triplet split's data (src_prev,
    tgt, src_next arrays) through a depth_pose deploy net (pygeometry.depth_nets) whose inputs hold `batch`
    triplets; the last batch is padded. InferenceError for NaN/inf outputs."""
    from .depth_nets import source_pose_vectors

    n, (_, _, h, w) = len(data["tgt"]), data["tgt"].shape
    depth, xi_prev, xi_next = np.zeros((n, 1, h, w), np.float32), np.zeros((n, 6)), np.zeros((n, 6))
    for start in progress_bar(range(0, n, batch), enabled=progress, desc="network", unit="batch", leave=False):
        stop = min(n, start + batch)
        for key in ("src_prev", "tgt", "src_next"):
            net.blobs[key].data[...] = 0
            net.blobs[key].data[:stop - start] = data[key][start:stop]
        net.forward()
        depth[start:stop] = net.blobs["depth"].data[:stop - start]
        p, q = source_pose_vectors(net.blobs)
        xi_prev[start:stop], xi_next[start:stop] = p[:stop - start], q[:stop - start]
    if not (np.all(np.isfinite(depth)) and np.all(np.isfinite(xi_prev)) and np.all(np.isfinite(xi_next))):
        raise InferenceError("the network predicted NaN/inf depth or poses")
    return depth, xi_prev, xi_next
