"""Where the photometric gradient points: the alignment of -d loss / d xi with the direction to the true pose.

A network trained through a loss follows that loss's gradient with respect to its pose output. If, at the pose the
network starts from, the gradient does not point towards the true pose, no amount of training fixes it. This
module measures it on a depth_pose train net (pygeometry.depth_nets, built with gt_depth=True so that the warp uses
the true depth and only the pose matters):

    for a start xi_0 = f * xi_true (f = 0: the identity; f = 0.5: half-way), the loss's gradient g = d loss / d xi
    at xi_0 (a forward and a backward from the SE3 layer on), and per pair k
        cos_t = -g_t . (xi_true - xi_0)_t / (|g_t| |(xi_true - xi_0)_t|)     (translation part)
        cos_w = the same for the rotation part,
    averaged over the pairs whose camera moves, for the previous and the next frame separately; with it the
    fraction of pairs with cos_t > 0 (the translation gradient has the right sign).

The net's xi is the source poses (src_T_tgt, direct pose vectors); nets built with temporal_order are not
supported (their xi is a forward step).
"""
from __future__ import annotations

import numpy as np

SOURCES = ("prev", "next")


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


def pose_gradient_alignment(net, starts=(0.0, 0.5), batches: int = 5) -> dict:
    """The alignment statistics of the module docstring.

    Args:
        net: a caffe.Net of depth_pose_net("train", ..., gt_depth=True), TRAIN phase (it reads its HDF5 split).
        starts: the fractions f of the true pose to start from.
        batches: training batches to average over.

    Returns:
        {f: {source: {"cos_t": mean, "right_sign_t": fraction, "cos_w": mean, "pairs": count}}}.
    """
    if "xi_warp" in net.blobs:
        raise ValueError("pose_gradient_alignment needs a net without temporal_order (its xi is a forward step)")
    names = list(net._layer_names)
    if "src_T_tgt" not in names:
        raise ValueError("the net has no src_T_tgt layer (a depth_pose train net is needed)")
    values = {f: {s: {"cos_t": [], "cos_w": []} for s in SOURCES} for f in starts}
    for _ in range(batches):
        net.forward()
        truth = np.concatenate([net.blobs["xi_prev"].data, net.blobs["xi_next"].data]).astype(np.float64)
        half = len(truth) // 2
        for f in starts:
            net.blobs["xi"].data[...] = f * truth
            net.forward(start="src_T_tgt")
            net.backward(end="src_T_tgt")
            grad = net.blobs["xi"].diff.astype(np.float64)
            to_truth = (1 - f) * truth
            for k in range(len(truth)):
                if not np.abs(truth[k]).max() > 0:
                    continue  # a still camera: no direction to the truth
                entry = values[f][SOURCES[k // half]]
                entry["cos_t"].append(_cos(-grad[k, :3], to_truth[k, :3]))
                entry["cos_w"].append(_cos(-grad[k, 3:], to_truth[k, 3:]))
    out = {}
    for f, per_source in values.items():
        out[f] = {}
        for source, entry in per_source.items():
            cos_t, cos_w = np.array(entry["cos_t"]), np.array(entry["cos_w"])
            out[f][source] = {"cos_t": float(np.nanmean(cos_t)), "right_sign_t": float(np.mean(cos_t > 0)),
                              "cos_w": float(np.nanmean(cos_w)), "pairs": int(len(cos_t))}
    return out
