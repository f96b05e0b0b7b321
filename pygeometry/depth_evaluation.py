"""Depth metrics, the trivial depth baselines, a triplet's pose metrics and its snippet ATE (no caffe import).

Depth (Eigen et al.'s metrics, as SfMLearner and Monodepth2 report them), per image over its evaluated pixels
(ground truth in [MIN_EVAL_DEPTH, cap]):
    monocular (the default): the prediction is first multiplied by median(gt) / median(pred) over those pixels
    (per-image median scaling: a monocular network's depth has no scale), then clipped to [MIN_EVAL_DEPTH, cap];
    a scale-aware mode passes median_scaling=False.
    abs_rel = mean |d - g| / g     sq_rel = mean (d - g)^2 / g     rmse = sqrt(mean (d - g)^2)
    rmse_log = sqrt(mean (log d - log g)^2)     a1, a2, a3 = fraction with max(d / g, g / d) < 1.25, 1.25^2, 1.25^3
    Each metric is averaged over images (lower is better except a1..a3).

Trivial baselines (what the data's prior gives without looking at the image):
    "mean depth map": the per-pixel mean of the training targets' depth (over pixels with depth), median-scaled
        per test image like the network: the layout of an average scene;
    "constant": one depth everywhere; median-scaled it is the image's own ground-truth median.

Pose of a triplet: the network predicts prev_T_tgt and next_T_tgt; each is evaluated with
pygeometry.evaluation's per-pair metrics against its baselines (identity; the mean training pose of that source).
Monocular translation lengths have no scale: the direction and scale-aligned metrics are the meaningful ones then.

Snippet ATE (SfMLearner's pose metric, as its compute_ate defines it): the positions of the F cameras of a
snippet in its first frame, gt p_k and predicted q_k (k = 0 .. F-1; both start at the origin), one
least-squares scale s = sum(p . q) / sum(q . q) over the snippet, and
    ATE = sqrt(sum_k |s q_k - p_k|^2) / F     (metres: the square root of the summed squared error, divided by the
                                              number of frames, exactly as SfMLearner's code; not an RMS).
The predicted positions chain the network's consecutive poses: frame k's centre is the translation of
first_T_k = prev_T_tgt(target 1) @ ... @ prev_T_tgt(target k) (each triplet's predicted (k-1)_T_k), the last
frame's through the last triplet's inv(next_T_tgt). SfMLearner evaluates 5-frame snippets (the test snippets of
make_dataset.py --snippets); a triplet is the 3-frame case.
"""
from __future__ import annotations

import numpy as np

from .evaluation import METRICS, pose_metrics
from .kernels.se3 import se3_forward

MIN_EVAL_DEPTH = 1e-3
DEPTH_CAP = 80.0  # m; the rendered scenes are at most 40 m deep, so no rendered depth is capped
DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
HIGHER_IS_BETTER = ("a1", "a2", "a3")


def depth_metrics(pred: np.ndarray, gt: np.ndarray, median_scaling: bool = True, cap: float = DEPTH_CAP) -> dict:
    """Per-image depth metrics.

    Args:
        pred: (N, 1, H, W) or (N, H, W) predicted depth (m, > 0).
        gt: the same shape, ground-truth depth (0 where unknown).
        median_scaling: scale each prediction by median(gt) / median(pred) over the evaluated pixels.
        cap: largest ground-truth depth evaluated (m).

    Returns:
        {metric: (N,) float64} for every metric of DEPTH_METRICS, plus "scale" (N,) (the median ratio used, 1
        without median scaling). An image without an evaluated pixel gets NaN (counted by the caller).
    """
    pred = np.asarray(pred, np.float64).reshape(len(pred), -1)
    gt = np.asarray(gt, np.float64).reshape(len(gt), -1)
    out = {k: np.full(len(gt), np.nan) for k in DEPTH_METRICS + ("scale",)}
    for i in range(len(gt)):
        valid = (gt[i] > MIN_EVAL_DEPTH) & (gt[i] < cap)
        if not valid.any():
            continue
        g, d = gt[i][valid], np.maximum(pred[i][valid], MIN_EVAL_DEPTH)
        scale = float(np.median(g) / np.median(d)) if median_scaling else 1.0
        d = np.clip(d * scale, MIN_EVAL_DEPTH, cap)
        ratio = np.maximum(d / g, g / d)
        out["abs_rel"][i] = np.mean(np.abs(d - g) / g)
        out["sq_rel"][i] = np.mean((d - g) ** 2 / g)
        out["rmse"][i] = np.sqrt(np.mean((d - g) ** 2))
        out["rmse_log"][i] = np.sqrt(np.mean((np.log(d) - np.log(g)) ** 2))
        for k, p in (("a1", 1), ("a2", 2), ("a3", 3)):
            out[k][i] = np.mean(ratio < 1.25 ** p)
        out["scale"][i] = scale
    return out


def mean_depth_map(train_depth: np.ndarray) -> np.ndarray:
    """The per-pixel mean (1, H, W) of training depth maps (N, 1, H, W) over the maps where it is known (> 0);
    pixels never known get the mean of all known depths."""
    d = np.asarray(train_depth, np.float64)
    known = d > 0
    count = known.sum(axis=0)
    total = np.where(known, d, 0).sum(axis=0)
    fallback = total.sum() / max(count.sum(), 1)
    return np.where(count > 0, total / np.maximum(count, 1), fallback)


def depth_baselines(mean_map: np.ndarray, n: int) -> dict:
    """The trivial depth predictions for n test images: the mean depth map and a constant (both to be median-
    scaled: the constant's value does not matter then)."""
    return {"mean depth map": np.repeat(mean_map[None], n, axis=0),
            "constant": np.ones((n,) + mean_map.shape)}


def triplet_pose_metrics(xi_prev, xi_next, prev_T_tgt, next_T_tgt) -> dict:
    """Per-pair pose metrics (evaluation.METRICS) of both sources, concatenated (prev pairs, then next pairs)."""
    a, b = pose_metrics(xi_prev, prev_T_tgt), pose_metrics(xi_next, next_T_tgt)
    return {k: np.concatenate([a[k], b[k]]) for k in METRICS}


def snippet_positions(prev_T_tgt, next_T_tgt) -> np.ndarray:
    """Camera centres of an F-frame snippet in its first frame, from its F - 2 triplets (targets 1 .. F-2 in order).

    Args:
        prev_T_tgt, next_T_tgt: (S, F-2, 4, 4) each triplet's (k-1)_T_k and (k+1)_T_k; the chain uses every
            prev_T_tgt and the last triplet's next_T_tgt. (N, 4, 4) is read as N snippets of 3 frames.

    Returns:
        (S, F, 3): the translation of first_T_k (frame k's centre in the first frame's camera); frame 0 at 0.
    """
    prev_T_tgt, next_T_tgt = np.asarray(prev_T_tgt, np.float64), np.asarray(next_T_tgt, np.float64)
    if prev_T_tgt.ndim == 3:
        prev_T_tgt, next_T_tgt = prev_T_tgt[:, None], next_T_tgt[:, None]
    first_T_k = np.broadcast_to(np.eye(4), prev_T_tgt.shape[:1] + (4, 4))
    positions = [np.zeros(prev_T_tgt.shape[:1] + (3,))]
    for k in range(prev_T_tgt.shape[1]):
        first_T_k = first_T_k @ prev_T_tgt[:, k]
        positions.append(first_T_k[:, :3, 3])
    positions.append((first_T_k @ np.linalg.inv(next_T_tgt[:, -1]))[:, :3, 3])
    return np.stack(positions, axis=1)


def ate(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """SfMLearner's snippet ATE (module docstring) of (S, F, 3) positions: (S,) metres."""
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    pred = pred + (gt[:, :1] - pred[:, :1])  # the first frames coincide
    qq = np.einsum("nkc,nkc->n", pred, pred)
    scale = np.where(qq > 0, np.einsum("nkc,nkc->n", gt, pred) / np.maximum(qq, 1e-300), 0.0)
    err = scale[:, None, None] * pred - gt
    return np.sqrt(np.einsum("nkc,nkc->n", err, err)) / gt.shape[1]


def snippet_ate(xi_prev, xi_next, prev_T_tgt, next_T_tgt) -> np.ndarray:
    """Snippet ATE per snippet (S,) of predicted pose vectors xi_prev, xi_next ((S, F-2, 6), or (N, 6) for N
    3-frame snippets) against the ground truth (the same leading shape, 4 x 4)."""
    pred = snippet_positions(se3_forward(np.asarray(xi_prev, np.float64).reshape(-1, 6)).reshape(np.shape(prev_T_tgt)),
                             se3_forward(np.asarray(xi_next, np.float64).reshape(-1, 6)).reshape(np.shape(next_T_tgt)))
    return ate(snippet_positions(prev_T_tgt, next_T_tgt), pred)


# ------------------------------------------------------------------------------------------ failure modes
COLLAPSE_LOG_STD = 0.02   # depth's per-image std of log depth below this: a constant depth map
LIMIT_FRACTION = 0.5      # more pixels than this within 2% of the depth range's ends: stuck at the limits
STILL_ROTATION_DEG = 0.01  # |rotation| and |translation| of every predicted pose below these: stuck at the identity
STILL_TRANSLATION_M = 1e-4
MASKED_FRACTION = 0.95    # more auto-masked pixels than this: the warp explains (almost) nothing

REMEDIES = {
    "nan": "NaN/inf in the loss: lower --lr (the pose head or the depth range blew up); resume from the last "
           "snapshot with --resume auto after changing it is refused, so start a new --out",
    "collapse": "depth collapsed to a constant: the smoothness term dominates or the photometric term has no "
                "gradient; lower --smoothness, or check that the frames move (static triplets only teach nothing)",
    "limits": "depth stuck at the ends of its range: widen --min-depth/--max-depth around the scenes' depths, or "
              "set --init-depth to a typical depth of the data",
    "identity": "pose stuck at the identity: the sources are auto-masked or the pose head is dead; check the "
                "auto-mask fraction, raise --lr or restart with another --seed",
    "masked": "nearly every pixel is auto-masked (the unwarped sources match better): on static data that is "
              "right; otherwise the pose or depth is wrong everywhere (see the other warnings)",
}


def training_warnings(loss: float, depth: np.ndarray, xi: np.ndarray, reprojected: np.ndarray, min_depth: float,
                      max_depth: float, moving: bool = True) -> list:
    """The failure modes seen in one training batch, as keys of REMEDIES.

    Args:
        loss: the batch's total loss.
        depth: (N, 1, H, W) predicted depth at full resolution.
        xi: (M, 6) predicted poses.
        reprojected: (N, 1, H, W) 1 where a warped source is used, 0 where auto-masked.
        min_depth, max_depth: the network's depth range.
        moving: whether the batch's ground truth moves (the identity is then a failure).
    """
    if not np.isfinite(loss) or not np.all(np.isfinite(depth)) or not np.all(np.isfinite(xi)):
        return ["nan"]
    found = []
    logd = np.log(np.maximum(np.asarray(depth, np.float64).reshape(len(depth), -1), 1e-12))
    if np.median(logd.std(axis=1)) < COLLAPSE_LOG_STD:
        found.append("collapse")
    d = np.asarray(depth)
    if np.mean((d < min_depth * 1.02) | (d > max_depth * 0.98)) > LIMIT_FRACTION:
        found.append("limits")
    xi = np.asarray(xi, np.float64)
    if moving and np.all(np.linalg.norm(xi[:, 3:], axis=1) < np.radians(STILL_ROTATION_DEG)) and \
            np.all(np.linalg.norm(xi[:, :3], axis=1) < STILL_TRANSLATION_M):
        found.append("identity")
    if 1 - float(np.mean(reprojected)) > MASKED_FRACTION:
        found.append("masked")
    return found
