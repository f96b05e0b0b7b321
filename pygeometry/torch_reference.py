"""PyTorch re-implementations of the pygeometry layers and of one training iteration of the pose networks: the
reference that scripts/bench_layers.py and scripts/bench_train.py time Caffe against, and that
tests/test_torch_reference.py checks the Caffe nets with.

torch is a benchmark/reference-only dependency: the library never imports this module, and this module imports
torch at import time (only the benchmarks and the tests import it; `make bench` and `make test` install
torch==2.13.0). Caffe is imported lazily, by the functions of the last section only.

Contents:
    The chain of scripts/bench_layers.py (one home): se3, T_from, pixel_rays, grid, project, warp, ssim, ssim_l1.
    The layer semantics of the training nets (what the Caffe layers compute, including their invalid-pixel rules):
        transform_3d_grid, pinhole_projection, photometric_loss, euclidean_loss, block_average_pyramid,
        coarse_coords, coarse_mask.
    PoseNetReplica: the train net of pygeometry.nets.pose_net(name, "train", ...) for the AlexNet backbone.
    CaffeAdam: Caffe's SGDSolver::ApplyUpdate for solver type "Adam" (clip, L2 decay, Adam) with torch._foreach ops.
    The Caffe side: caffe_train_solver, relative_error, norm_relative_error, check_against_caffe (losses, every
        parameter gradient, and Adam updates against a caffe.Solver).

Conventions as in pygeometry.kernels: NCHW float32; xi = [t, w] (N, 6) predicts src_T_tgt, which maps
target-camera points into the source camera; K = [fx, fy, cx, cy]; pixel centres at integers (cv2.remap, i.e.
grid_sample with align_corners=True).
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import nets
from .kernels.photometric import SSIM_C1, SSIM_C2
from .kernels.projection import DEFAULT_EPS, INVALID_COORD

BATCH_BLOBS = ("src", "tgt", "tgt_depth", "K", "xi_gt")  # the HDF5Data tops, fed to the replica as they are
LOSS_RTOL = 1e-4    # |loss_torch - loss_caffe| <= LOSS_RTOL * |loss_caffe|
# Gradients, per parameter blob: ||grad_torch - grad_caffe|| <= GRAD_RTOL * ||grad_caffe|| (L2 norms). Not the max
# |.|: two float32 evaluations of the same net differ by more than rounding where the function has kinks. Max pooling
# routes a window's gradient to its largest input, and where two inputs are equal up to rounding (flat or repeated
# texture) each side may pick another one: measured at 64 x 208, max|diff| / max|caffe| of conv1's weights up to 6e-2
# in a few per cent of the batches. SSIM's gradient has curvature of order 1 / C2, so warped images that differ by
# 5e-6 (coordinates rounded differently) give dL/dwarped that differ by 0.5 %. Measured over 46 checks (early and late
# fusion, 23 random initialisations x 2 batches): the norm-relative error was at most 6e-3 (typically 1e-5 to 1e-4);
# a wrong sign of one loss term gave at least 4.6e-2 (the 8 x 8 level at 48 x 80), of the full-resolution term 0.58.
GRAD_RTOL = 2e-2
UPDATE_RTOL = 1e-3  # after an update, per blob: max(|param_torch - param_caffe| - one ulp) <= UPDATE_RTOL *
#                     max |caffe's step|


# ----------------------------------------------------------------------------------- the chain (bench_layers)
def se3(xi):
    """xi (N, 6) = [t, w] -> (R (N, 3, 3), t (N, 3)) of src_T_tgt, R = exp(hat(w)) by Rodrigues' formula.

    theta = sqrt(|w|^2 + 1e-12) keeps the value and gradient finite at w = 0. In float32 the closed forms lose
    accuracy for small angles (Caffe's SE3Generator uses Taylor series, in float64); called with float64 xi (as
    PoseNetReplica does) they agree with it to float32 rounding.
    """
    t, w = xi[:, :3], xi[:, 3:]
    theta2 = (w * w).sum(1, keepdim=True)
    theta = torch.sqrt(theta2 + 1e-12)
    A = (torch.sin(theta) / theta)[:, :, None]
    B = ((1 - torch.cos(theta)) / (theta2 + 1e-12))[:, :, None]
    zero = torch.zeros_like(w[:, 0])
    Wm = torch.stack([zero, -w[:, 2], w[:, 1], w[:, 2], zero, -w[:, 0], -w[:, 1], w[:, 0], zero], 1).view(-1, 3, 3)
    R = torch.eye(3)[None] + A * Wm + B * (Wm @ Wm)
    return R, t


def T_from(xi):
    """xi (N, 6) -> src_T_tgt[:, :3] = [R | t] (N, 3, 4) (the constant bottom row left out)."""
    R, t = se3(xi)
    return torch.cat([R, t[:, :, None]], 2)


def _intrinsics(K):
    """(fx, fy, cx, cy): floats for K = 4 numbers (one camera), else (N, 1, 1, 1) tensors for K (N, 4)."""
    if torch.is_tensor(K):
        return tuple(K[:, i].reshape(-1, 1, 1, 1) for i in range(4))
    return tuple(float(k) for k in K)


def pixel_rays(K, H, W):
    """Target rays r = [(x - cx) / fx, (y - cy) / fy, 1] of every pixel (x, y): (3, H*W) for one camera K
    (4 numbers), (N, 3, H*W) for K (N, 4)."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                            indexing="ij")
    fx, fy, cx, cy = _intrinsics(K)
    if torch.is_tensor(K):
        fx, fy, cx, cy = (k[:, 0] for k in (fx, fy, cx, cy))  # (N, 1, 1)
        rx, ry = (xs - cx) / fx, (ys - cy) / fy
        return torch.stack([rx, ry, torch.ones_like(rx)], 1).reshape(K.shape[0], 3, -1)
    return torch.stack([(xs - cx) / fx, (ys - cy) / fy, torch.ones_like(xs)]).reshape(3, -1)


def grid(depth, R, t, rays):
    """Target depth (N, 1, H, W) -> points in the source camera R @ (depth * r) + t (N, 3, H, W), for rays from
    pixel_rays (every depth taken as valid)."""
    N, _, H, W = depth.shape
    P = depth.reshape(N, 1, -1) * rays
    return (R @ P + t[:, :, None]).reshape(N, 3, H, W)


def project(points, K):
    """Points (N, 3, H, W) in the source camera -> pixel coordinates (N, 2, H, W), z clamped at 1e-3 (the
    benchmark's chain; pinhole_projection has the layer's invalid-point rule). K: 4 numbers."""
    fx, fy, cx, cy = _intrinsics(K)
    z = points[:, 2:3].clamp(min=1e-3)
    return torch.cat([fx * points[:, 0:1] / z + cx, fy * points[:, 1:2] / z + cy], 1)


def warp(img, coords, padding="zeros"):
    """Sample img (N, C, Hs, Ws) at pixel coordinates (N, 2, H, W) (channel 0 = x), pixel centres at integers:
    grid_sample with align_corners=True after normalising x to 2 x / (Ws - 1) - 1. padding: "zeros" or
    "border" (BilinearWarp's: the coordinates are clamped to the image, their gradient is 0 along a clamped
    axis)."""
    gx = coords[:, 0] / (img.shape[3] - 1) * 2 - 1
    gy = coords[:, 1] / (img.shape[2] - 1) * 2 - 1
    return F.grid_sample(img, torch.stack([gx, gy], -1), mode="bilinear", padding_mode=padding, align_corners=True)


def ssim(x, y):
    """Per-pixel, per-channel SSIM (N, C, H, W) with 3x3 box windows and reflection padding, C1, C2 of
    pygeometry.kernels.photometric."""
    pad = lambda a: F.pad(a, (1, 1, 1, 1), mode="reflect")  # noqa: E731
    mx, my = F.avg_pool2d(pad(x), 3, 1), F.avg_pool2d(pad(y), 3, 1)
    sxx = F.avg_pool2d(pad(x * x), 3, 1) - mx ** 2
    syy = F.avg_pool2d(pad(y * y), 3, 1) - my ** 2
    sxy = F.avg_pool2d(pad(x * y), 3, 1) - mx * my
    return (2 * mx * my + SSIM_C1) * (2 * sxy + SSIM_C2) / ((mx ** 2 + my ** 2 + SSIM_C1) * (sxx + syy + SSIM_C2))


def ssim_l1(x, y, alpha=0.85):
    """Unmasked photometric loss: mean of alpha (1 - SSIM) / 2 + (1 - alpha) |x - y| over everything."""
    return (alpha * (1 - ssim(x, y)) / 2 + (1 - alpha) * (x - y).abs()).mean()


# ------------------------------------------------------------------------------- the layers of the train nets
def transform_3d_grid(depth, R, t, rays):
    """Transform3DGrid: as grid, but a pixel with depth <= 0 gets the point (0, 0, 0) and passes no gradient."""
    return torch.where(depth > 0, grid(depth, R, t, rays), 0.0)


def pinhole_projection(points, K, eps=DEFAULT_EPS):
    """PinholeProjection (coords output): points (N, 3, H, W) in the source camera, K (N, 4) or 4 numbers ->
    (coords (N, 2, H, W), valid (N, 1, H, W)). A point with z <= eps gets INVALID_COORD and no gradient."""
    fx, fy, cx, cy = _intrinsics(K)
    X, Y, Z = points[:, 0:1], points[:, 1:2], points[:, 2:3]
    valid = Z > eps
    inv_z = 1 / torch.where(valid, Z, 1.0)
    coords = torch.cat([torch.where(valid, fx * X * inv_z + cx, INVALID_COORD),
                        torch.where(valid, fy * Y * inv_z + cy, INVALID_COORD)], 1)
    return coords, valid.to(points.dtype)


def photometric_loss(warped, target, mask=None, alpha=0.0):
    """PhotometricLoss: sum_p m_p e_p / sum_p m_p with e_p = mean over channels of alpha (1 - SSIM) / 2 +
    (1 - alpha) |warped - target| (0 when the mask is all zero). mask (N, 1, H, W) or None (all ones)."""
    e = (1 - alpha) * (warped - target).abs().mean(1, keepdim=True)
    if alpha > 0:
        e = e + alpha * ((1 - ssim(warped, target)) / 2).mean(1, keepdim=True)
    if mask is None:
        return e.mean()
    total = mask.sum()
    return (mask * e).sum() / torch.where(total > 0, total, 1.0)


def photometric_error_map(warped, target, alpha=0.85):
    """Per-pixel error (N, 1, H, W): mean over channels of alpha (1 - SSIM) / 2 + (1 - alpha) |warped - target|."""
    e = (1 - alpha) * (warped - target).abs().mean(1, keepdim=True)
    if alpha > 0:
        e = e + alpha * ((1 - ssim(warped, target)) / 2).mean(1, keepdim=True)
    return e


def min_reprojection_loss(warped, target, unwarped=None, alpha=0.85):
    """MinReprojectionLoss as Monodepth2 computes it: the per-pixel minimum of the warped sources' errors (and,
    with auto-masking, of the unwarped sources' errors), averaged over all pixels. warped, unwarped: lists."""
    errors = torch.cat([photometric_error_map(w, target, alpha) for w in warped], 1).min(1)[0]
    if unwarped is not None:
        identity = torch.cat([photometric_error_map(u, target, alpha) for u in unwarped], 1).min(1)[0]
        errors = torch.where(errors <= identity, errors, identity)
    return errors.mean()


def edge_aware_smoothness(disp, image):
    """EdgeAwareSmoothness as Monodepth2's get_smooth_loss on the mean-normalised disparity."""
    d = disp / (disp.mean((2, 3), keepdim=True) + 1e-7)
    gx = (d[:, :, :, :-1] - d[:, :, :, 1:]).abs()
    gy = (d[:, :, :-1, :] - d[:, :, 1:, :]).abs()
    ix = (image[:, :, :, :-1] - image[:, :, :, 1:]).abs().mean(1, keepdim=True)
    iy = (image[:, :, :-1, :] - image[:, :, 1:, :]).abs().mean(1, keepdim=True)
    return (gx * torch.exp(-ix)).mean() + (gy * torch.exp(-iy)).mean()


def euclidean_loss(a, b):
    """Caffe's EuclideanLoss: sum((a - b)^2) / (2 N), N = a.shape[0]."""
    return ((a - b) ** 2).sum() / (2 * a.shape[0])


def block_average_pyramid(x, factors, levels=None):
    """{s: s x s block averages of x (N, C, H, W)} for every factor s > 1, each level averaging the finest level
    below it whose factor divides s (else x), as pygeometry.nets.block_average_pyramid arranges the Pooling layers.
    levels: a dict of levels of x computed before, reused and extended in place (a level is computed once)."""
    levels = {} if levels is None else levels
    for s in sorted({int(f) for f in factors if f > 1} - set(levels)):
        base_factor = next((f for f in sorted(levels, reverse=True) if s % f == 0 and f < s), 1)
        levels[s] = F.avg_pool2d(levels[base_factor] if base_factor > 1 else x, s // base_factor)
    return levels


def coarse_coords(coords_avg, s):
    """s x s block averages of full-resolution pixel coordinates (N, 2, H/s, W/s) -> coordinates on the coarse
    grid, x_s = (x + 0.5) / s - 0.5 (Power(scale 1/s, shift 0.5/s - 0.5), as pose_net)."""
    return coords_avg * (1.0 / s) + (0.5 / s - 0.5)


def coarse_mask(depth_fraction):
    """Coarse pixels whose whole block has a known depth: Threshold(block average of depth_valid, 0.999), strictly
    greater, as Caffe's Threshold."""
    return (depth_fraction > 0.999).to(depth_fraction.dtype)


# ----------------------------------------------------------------------------------------------- the network
POSE_NET_DEFAULTS = {k: p.default for k, p in inspect.signature(nets.pose_net).parameters.items()
                     if p.default is not inspect.Parameter.empty}
POSE_HEAD_HIDDEN = inspect.signature(nets.pose_head).parameters["hidden"].default
_TRUNK = (("conv1", dict(kernel_size=11, stride=4), 96), ("conv2", dict(kernel_size=5, padding=2, groups=2), 256),
          ("conv3", dict(kernel_size=3, padding=1), 384), ("conv4", dict(kernel_size=3, padding=1, groups=2), 384),
          ("conv5", dict(kernel_size=3, padding=1, groups=2), 256))  # pygeometry.models.alexnet_trunk, cut conv5


@dataclasses.dataclass
class ParamSpec:
    """A learnable parameter: the torch tensor, the Caffe blob it mirrors (layer name, blob index; late fusion's
    shared trunk is the src_ branch's blobs, which the tgt_ branch shares) and Caffe's lr_mult, decay_mult."""
    name: str
    param: torch.nn.Parameter
    caffe_layer: str
    caffe_index: int
    lr_mult: float
    decay_mult: float


class PoseNetReplica(torch.nn.Module):
    """The train net of pygeometry.nets.pose_net(name, "train", ...) with the AlexNet backbone, in torch.

    Args:
        name: one of pygeometry.nets.NETWORKS.
        height, width: the image size of the data (fc_pose1's input size follows from it).
        options: pose_net's keyword arguments alpha, trunk_lr_mult, rotation_weight, scales, scale_t, scale_w,
            downsample (defaults: pose_net's own, read from its signature); others are not replicated (fc,
            blur_sizes, backbone other than alexnet, cut other than conv5) and raise ValueError.

    Inputs (batch): src, tgt (N, 3, H, W) RGB in [0, 1], tgt_depth (N, 1, H, W) metres (<= 0 invalid), K (N, 4),
    xi_gt (N, 6): the HDF5Data tops. Segments, so that a benchmark can time each (pyramids: an optional dict in which
    trunk leaves the images' block averages that chain reuses, as Caffe computes each level of the images once):
        trunk(src, tgt, pyramids) -> xi (N, 6): block averages, 255 BGR - 117, AlexNet conv1..conv5 (early
            fusion: source and target stacked as 6 channels; late fusion: one trunk applied to each, features
            concatenated), pose head fc_pose1 (ReLU) -> fc_pose -> xi = [scale_t fc_pose[:3], scale_w fc_pose[3:]].
        chain(xi, batch, pyramids) -> {loss name: (prediction, target, mask or None)}: photometric nets: SE3Generator
            (float64, as the layer) -> Transform3DGrid -> PinholeProjection -> BilinearWarp (border) at full
            resolution, plus for each scale s the s x s block averages (block_average_pyramid) of the source, the
            target and the coordinates (mapped by coarse_coords) with coarse_mask; supervised_pose: xi and xi_gt
            split into t and w.
        losses(levels) -> {loss name: unweighted loss (scalar)}, the values of Caffe's loss blobs.
        total(losses) -> sum of loss_weights[name] * loss, what Caffe's Net::Forward returns.
    """

    def __init__(self, name, height, width, **options):
        super().__init__()
        if name not in nets.NETWORKS:
            raise ValueError(f"unknown network {name!r}; known: {nets.NETWORKS}")
        unknown = sorted(set(options) - set(POSE_NET_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown pose_net option(s) {unknown}")
        opts = {**POSE_NET_DEFAULTS, **options}
        if opts["backbone"] != "alexnet" or opts["cut"] not in (None, "conv5") or opts["fc"] or opts["blur_sizes"]:
            raise ValueError("PoseNetReplica replicates the alexnet trunk cut at conv5, without fc or blur losses; got "
                             f"backbone {opts['backbone']}, cut {opts['cut']}, fc {opts['fc']}, "
                             f"blur_sizes {opts['blur_sizes']}")
        self.name = name
        self.early = name in nets.EARLY_FUSION
        self.photometric = name not in nets.SUPERVISED
        self.alpha, self.scales, self.downsample = opts["alpha"], tuple(opts["scales"]), opts["downsample"]
        self.scale_t, self.scale_w, self.trunk_lr_mult = opts["scale_t"], opts["scale_w"], opts["trunk_lr_mult"]
        in_channels = 6 if self.early else 3
        for layer, kw, out in _TRUNK:
            setattr(self, layer, torch.nn.Conv2d(in_channels, out, **kw))
            in_channels = out
        self.lrn = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)  # Caffe's LRN across channels
        with torch.no_grad():
            features = self._features(torch.zeros(1, 3, height, width), torch.zeros(1, 3, height, width))
        self.fc_pose1 = torch.nn.Linear(features.shape[1], POSE_HEAD_HIDDEN)
        self.fc_pose = torch.nn.Linear(POSE_HEAD_HIDDEN, 6)
        if self.photometric:  # G.photometric_loss's loss_weight 1 for every level
            self.loss_weights = {"loss": 1.0, **{f"loss_s{s}": 1.0 for s in self.scales}}
        else:
            self.loss_weights = {"loss_t": 1.0, "loss_w": float(opts["rotation_weight"])}

    # -------------------------------------------------------------------------------------------- segments
    def _alexnet(self, x):
        x = self.lrn(F.relu(self.conv1(x)))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)  # Caffe's Pooling rounds its output size up
        x = self.lrn(F.relu(self.conv2(x)))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        for layer in (self.conv3, self.conv4, self.conv5):
            x = F.relu(layer(x))
        return x

    def _features(self, src, tgt, pyramids=None):
        pyramids = {} if pyramids is None else pyramids

        def preprocess(rgb, key):
            if self.downsample > 1:
                rgb = block_average_pyramid(rgb, (self.downsample,), pyramids.setdefault(key, {}))[self.downsample]
            return rgb.flip(1) * 255.0 - nets.MEAN  # 255 * BGR - MEAN

        src, tgt = preprocess(src, "src"), preprocess(tgt, "tgt")
        if self.early:
            return self._alexnet(torch.cat([src, tgt], 1)).flatten(1)
        return torch.cat([self._alexnet(src), self._alexnet(tgt)], 1).flatten(1)  # one trunk: shared weights

    def trunk(self, src, tgt, pyramids=None):
        """Images (N, 3, H, W) -> xi (N, 6) = [t, w] of src_T_tgt."""
        out = self.fc_pose(F.relu(self.fc_pose1(self._features(src, tgt, pyramids))))
        return torch.cat([out[:, :3] * self.scale_t, out[:, 3:] * self.scale_w], 1)

    def chain(self, xi, batch, pyramids=None):
        """xi (N, 6) and the batch -> {loss name: (prediction, target, mask or None)}."""
        pyramids = {} if pyramids is None else pyramids
        if not self.photometric:
            gt = batch["xi_gt"]
            return {"loss_t": (xi[:, :3], gt[:, :3], None), "loss_w": (xi[:, 3:], gt[:, 3:], None)}
        src, tgt, depth, K = batch["src"], batch["tgt"], batch["tgt_depth"], batch["K"]
        src_T_tgt = T_from(xi.double()).float()  # SE3Generator: float64 inside, the top in float32
        rays = pixel_rays(K, depth.shape[2], depth.shape[3])
        points_src = transform_3d_grid(depth, src_T_tgt[:, :, :3], src_T_tgt[:, :, 3], rays)
        coords_src, _ = pinhole_projection(points_src, K)
        depth_valid = (depth > 0).to(depth.dtype)
        levels = {"loss": (warp(src, coords_src, "border"), tgt, depth_valid)}
        src_s, tgt_s = (block_average_pyramid(x, self.scales, pyramids.setdefault(key, {}))
                        for x, key in ((src, "src"), (tgt, "tgt")))
        coords_avg, depth_fraction = (block_average_pyramid(x, self.scales) for x in (coords_src, depth_valid))
        for s in self.scales:
            levels[f"loss_s{s}"] = (warp(src_s[s], coarse_coords(coords_avg[s], s), "border"), tgt_s[s],
                                    coarse_mask(depth_fraction[s]))
        return levels

    def losses(self, levels):
        """{loss name: (prediction, target, mask)} -> {loss name: unweighted loss}."""
        if not self.photometric:
            return {k: euclidean_loss(a, b) for k, (a, b, _) in levels.items()}
        return {k: photometric_loss(a, b, m, alpha=self.alpha) for k, (a, b, m) in levels.items()}

    def total(self, losses):
        return sum(self.loss_weights[k] * v for k, v in losses.items())

    def forward(self, batch):
        """The batch (dict of tensors, BATCH_BLOBS) -> {loss name: unweighted loss}."""
        pyramids = {}
        return self.losses(self.chain(self.trunk(batch["src"], batch["tgt"], pyramids), batch, pyramids))

    # ------------------------------------------------------------------------------------ Caffe counterparts
    def param_specs(self):
        """ParamSpec of every learnable parameter, with pygeometry.models' and pose_head's lr_mult, decay_mult
        (trunk: weights trunk_lr_mult, 1; biases 2 trunk_lr_mult, 0; pose head: Caffe's defaults 1, 1)."""
        specs = []
        for layer, _, _ in _TRUNK:
            module = getattr(self, layer)
            caffe_layer = layer if self.early else f"src_{layer}"
            specs.append(ParamSpec(f"{layer}.weight", module.weight, caffe_layer, 0, self.trunk_lr_mult, 1.0))
            specs.append(ParamSpec(f"{layer}.bias", module.bias, caffe_layer, 1, 2 * self.trunk_lr_mult, 0.0))
        for layer in ("fc_pose1", "fc_pose"):
            module = getattr(self, layer)
            specs.append(ParamSpec(f"{layer}.weight", module.weight, layer, 0, 1.0, 1.0))
            specs.append(ParamSpec(f"{layer}.bias", module.bias, layer, 1, 1.0, 1.0))
        return specs

    def load_caffe(self, net):
        """Copy the weights of a caffe.Net of the same network (by layer name; late fusion's shared trunk once).

        Raises:
            ValueError: a blob of the net without counterpart here, a missing layer, a shape that differs, or
                late fusion's tgt_ trunk not sharing the src_ trunk's weights.
        """
        specs = self.param_specs()
        covered = {s.caffe_layer for s in specs}
        aliases = {} if self.early else {f"tgt_{s.caffe_layer[4:]}": s.caffe_layer for s in specs
                                         if s.caffe_layer.startswith("src_")}
        extra = sorted(set(net.params) - covered - set(aliases))
        if extra:
            raise ValueError(f"{self.name}: Caffe layers with parameters that the replica lacks: {extra}")
        for alias, owner in aliases.items():
            for a, b in zip(net.params[alias], net.params[owner]):
                if not np.array_equal(a.data, b.data):
                    raise ValueError(f"{self.name}: {alias} does not share {owner}'s weights")
        with torch.no_grad():
            for s in specs:
                if s.caffe_layer not in net.params:
                    raise ValueError(f"{self.name}: the Caffe net has no layer {s.caffe_layer} (for {s.name})")
                blob = net.params[s.caffe_layer][s.caffe_index].data
                if tuple(blob.shape) != tuple(s.param.shape):
                    raise ValueError(f"{self.name}: {s.caffe_layer}[{s.caffe_index}] is {blob.shape}, "
                                     f"{s.name} is {tuple(s.param.shape)}")
                s.param.copy_(torch.from_numpy(np.array(blob)))
        return self

    @classmethod
    def from_caffe(cls, name, net, **options):
        """A replica of caffe.Net `net` (its image size from the src blob) with the net's weights."""
        _, _, height, width = net.blobs["src"].data.shape
        return cls(name, height, width, **options).load_caffe(net)


# -------------------------------------------------------------------------------------------------- the solver
class CaffeAdam:
    """Caffe's SGDSolver<float>::ApplyUpdate for solver type "Adam", in torch._foreach ops (not torch.optim.Adam,
    which adds eps to sqrt(v / (1 - beta2^t)); here eps is added to sqrt(v), as Caffe does):

        rate = base_lr (lr_policy "fixed"), or base_lr * gamma^floor(iter / stepsize) ("step")
        clip: if clip_gradients >= 0 and the L2 norm of all gradients together > clip_gradients, scale every
            gradient by clip_gradients / norm;
        L2 decay: g += weight_decay * decay_mult * param;
        Adam, t = iter + 1: m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g^2,
            param -= rate * lr_mult * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps);
        iter += 1.
    The hyperparameters are rounded to float32 first (Caffe's SolverParameter stores them as float).

    Args:
        specs: ParamSpec list (PoseNetReplica.param_specs()); the gradients are the parameters' .grad (step clips
            and decays them in place, as Caffe does with the diffs).
        iteration: Caffe's solver.iter when the replica starts (the Adam state m, v starts at zero).
    """

    def __init__(self, specs, base_lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, clip_gradients=-1.0,
                 lr_policy="fixed", gamma=1.0, stepsize=1, iteration=0):
        if lr_policy not in ("fixed", "step"):
            raise ValueError(f"lr_policy {lr_policy!r} is not replicated (fixed, step)")
        f32 = lambda v: float(np.float32(v))  # noqa: E731
        self.params = [s.param for s in specs]
        self.lr_mults = [f32(s.lr_mult) for s in specs]
        self.decays = [f32(f32(weight_decay) * f32(s.decay_mult)) for s in specs]
        self.base_lr, self.beta1, self.beta2, self.eps = f32(base_lr), f32(beta1), f32(beta2), f32(eps)
        self.clip, self.lr_policy, self.gamma, self.stepsize = f32(clip_gradients), lr_policy, f32(gamma), stepsize
        self.iter = iteration
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @classmethod
    def from_solver_text(cls, text, specs, iteration=0):
        """From a solver prototxt (pygeometry.nets.solver_text); only type "Adam" with L2 decay."""
        from caffe.proto import caffe_pb2
        from google.protobuf import text_format

        p = text_format.Parse(text, caffe_pb2.SolverParameter())
        if p.type != "Adam" or p.regularization_type != "L2" or p.iter_size != 1:
            raise ValueError(f"only Adam with L2 decay and iter_size 1 is replicated, got {p.type}, "
                             f"{p.regularization_type}, iter_size {p.iter_size}")
        return cls(specs, p.base_lr, p.momentum, p.momentum2, p.delta, p.weight_decay, p.clip_gradients,
                   p.lr_policy, p.gamma, p.stepsize, iteration)

    def learning_rate(self):
        if self.lr_policy == "step":
            return self.base_lr * self.gamma ** (self.iter // self.stepsize)
        return self.base_lr

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        params = [p for p in self.params if p.grad is not None]
        if len(params) != len(self.params):
            raise RuntimeError("CaffeAdam.step: every parameter needs a gradient (Caffe updates them all)")
        grads = [p.grad for p in self.params]
        if self.clip >= 0:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            if norm > self.clip:
                torch._foreach_mul_(grads, self.clip / norm)
        decayed = [i for i, d in enumerate(self.decays) if d]
        if decayed:
            decay_terms = torch._foreach_mul([self.params[i] for i in decayed], [self.decays[i] for i in decayed])
            torch._foreach_add_([grads[i] for i in decayed], decay_terms)
        t = self.iter + 1
        correction = math.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
        rate = self.learning_rate()
        torch._foreach_mul_(self.m, self.beta1)
        torch._foreach_add_(self.m, grads, alpha=1 - self.beta1)
        torch._foreach_mul_(self.v, self.beta2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1 - self.beta2)
        denominator = torch._foreach_sqrt(self.v)
        torch._foreach_add_(denominator, self.eps)
        update = torch._foreach_div(self.m, denominator)
        torch._foreach_mul_(update, [rate * lr_mult * correction for lr_mult in self.lr_mults])
        torch._foreach_sub_(self.params, update)
        self.iter += 1


# ---------------------------------------------------------------------------------------------- the Caffe side
def caffe_train_solver(name, data_dir, work_dir, **pose_net_options):
    """Write the train and val nets of pose_net(name, ...) on data_dir's train.txt and val.txt and their solver
    (pygeometry.nets.solver_text, no periodic test or snapshot) into work_dir; returns (caffe solver, solver
    text). The image size for pose_net's checks is read from data_dir/dataset.json when present."""
    import json

    import caffe

    data_dir, work_dir = Path(data_dir), Path(work_dir)
    options = dict(pose_net_options)
    info = data_dir / "dataset.json"
    if info.exists() and "height" not in options:
        config = json.loads(info.read_text())["config"]
        options.update(height=config["height"], width=config["width"])
    paths = {}
    for phase, split in (("train", "train"), ("val", "val")):
        paths[phase] = work_dir / f"{name}_{phase}.prototxt"
        spec = nets.pose_net(name, phase, source=str(data_dir / f"{split}.txt"), **options)
        paths[phase].write_text(str(spec.to_proto()))
    text = nets.solver_text(name, str(paths["train"]), str(paths["val"]), str(work_dir / f"{name}_snap"),
                            test_interval=10 ** 7)
    solver_path = work_dir / f"{name}_solver.prototxt"
    solver_path.write_text(text)
    caffe.set_mode_cpu()
    return caffe.get_solver(str(solver_path)), text


def norm_relative_error(actual, expected):
    """||actual - expected|| / ||expected|| (L2; 0 when both are all zero, inf when only expected is, or the shapes
    differ)."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    diff, scale = float(np.linalg.norm(a - b)), float(np.linalg.norm(b))
    if scale == 0:
        return 0.0 if diff == 0 else math.inf
    return diff / scale


def relative_error(actual, expected, slack=0.0):
    """max(|actual - expected| - slack) / max |expected| (0 when both are all zero, inf when only expected is,
    or the shapes differ). slack: an allowance per element (array or number), e.g. one float32 ulp."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    diff = float(np.max(np.maximum(np.abs(a - b) - slack, 0.0))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    if scale == 0:
        return 0.0 if diff == 0 else math.inf
    return diff / scale


@dataclasses.dataclass
class Mismatch:
    kind: str   # "loss", "loss_weight", "gradient", "update"
    name: str
    message: str


@dataclasses.dataclass
class CheckReport:
    """What check_against_caffe compared: losses {name: (caffe, torch)}, the relative errors of every gradient
    and update {parameter name: error}, and the mismatches (empty: the replica computes what Caffe does)."""
    network: str
    losses: dict
    gradient_errors: dict
    gradient_max_errors: dict
    update_errors: dict
    mismatches: list
    update_checked: bool

    @property
    def ok(self):
        return not self.mismatches

    def kinds(self):
        return {m.kind for m in self.mismatches}

    def summary(self):
        lines = [f"{self.network}: " + ("replica == Caffe" if self.ok else f"{len(self.mismatches)} MISMATCHES")]
        lines.append("  losses (caffe / torch): " + ", ".join(f"{k} {c:.6g} / {t:.6g}"
                                                            for k, (c, t) in self.losses.items()))
        if self.gradient_errors:
            worst = max(self.gradient_errors, key=self.gradient_errors.get)
            worst_max = max(self.gradient_max_errors, key=self.gradient_max_errors.get)
            lines.append(f"  gradients: {len(self.gradient_errors)} blobs, worst ||diff||/||caffe|| "
                         f"{self.gradient_errors[worst]:.2e} ({worst}; tolerance {GRAD_RTOL:g}),")
            lines.append(f"    worst max|diff|/max|caffe| {self.gradient_max_errors[worst_max]:.2e} ({worst_max}; "
                         "not a criterion)")
        if self.update_errors:
            worst = max(self.update_errors, key=self.update_errors.get)
            lines.append(f"  Adam updates: worst {self.update_errors[worst]:.2e} ({worst}; tolerance {UPDATE_RTOL:g})")
        elif not self.update_checked:
            lines.append("  Adam update not checked (no optimizer given, or this pycaffe has no Solver.apply_update)")
        lines += [f"  {m.kind} {m.name}: {m.message}" for m in self.mismatches]
        return "\n".join(lines)


def _leading_data_layers(net):
    """The number of layers at the start of the net without bottoms (HDF5Data)."""
    k = 0
    for name in net._layer_names:
        if net.bottom_names[name]:
            break
        k += 1
    return k


def check_against_caffe(solver, replica, optimizer=None, edit_batch=None, loss_rtol=LOSS_RTOL, grad_rtol=GRAD_RTOL,
                        update_rtol=UPDATE_RTOL, rng=None):
    """Run one Caffe forward + backward of solver.net on its next batch and the replica on the same batch (the
    data tops copied after Caffe's forward) and weights, and compare.

    Compared: every loss blob (unweighted) and its loss_weight, every parameter gradient (the L2 norm of the
    difference relative to that of Caffe's gradient: see GRAD_RTOL), and, when the optimizer (CaffeAdam) is given
    and pycaffe has Solver.apply_update, two updates applied to the same parameters and gradients on both sides:
    first random parameters and gradients (a quarter of them zero, so that weight decay alone moves those, and
    scaled so that clipping acts), then Caffe's gradients of this batch. The net's weights are restored afterwards
    (the solver's iteration count and Adam state are not), and the replica reloads them.

    Args:
        solver: a caffe solver whose net is the train net of replica.name; with an optimizer, a fresh one
            (iteration 0, Adam state zero).
        replica: PoseNetReplica with the net's weights (load_caffe).
        optimizer: CaffeAdam over replica.param_specs() with the solver's settings, or None (no update check).
        edit_batch: optional function(dict of the data tops' arrays) that changes them in place after the data
            layer's forward, before the rest of the net runs (e.g. to make some depth invalid).
        loss_rtol, grad_rtol, update_rtol: tolerances (see the module constants).
        rng: numpy Generator for the random update check (default seed 0).

    Returns:
        CheckReport.
    """
    net = solver.net
    mismatches = []
    net.clear_param_diffs()
    k = _leading_data_layers(net)
    net._forward(0, k - 1)
    if edit_batch is not None:
        edit_batch({b: net.blobs[b].data for b in BATCH_BLOBS if b in net.blobs})
    net._forward(k, len(net.layers) - 1)
    net.backward()
    batch = {b: torch.from_numpy(net.blobs[b].data.copy()) for b in BATCH_BLOBS if b in net.blobs}
    replica.load_caffe(net)
    replica.zero_grad()
    torch_losses = replica(batch)
    replica.total(torch_losses).backward()

    caffe_weights = {n: float(w) for n, w in net.blob_loss_weights.items() if w}
    for name in sorted(set(caffe_weights) - set(torch_losses)):
        mismatches.append(Mismatch("loss", name, "a Caffe loss that the replica lacks"))
    losses = {}
    for name, value in torch_losses.items():
        if name not in net.blobs:
            mismatches.append(Mismatch("loss", name, "the Caffe net has no such loss blob"))
            continue
        c, t = float(net.blobs[name].data), float(value.detach())
        losses[name] = (c, t)
        if not abs(t - c) <= loss_rtol * abs(c):
            mismatches.append(Mismatch("loss", name, f"caffe {c:.8g}, torch {t:.8g} (rel {abs(t - c) / abs(c):.2e})"))
        if caffe_weights.get(name, 0.0) != replica.loss_weights[name]:
            mismatches.append(Mismatch("loss_weight", name, f"caffe {caffe_weights.get(name, 0.0)}, "
                                                            f"torch {replica.loss_weights[name]}"))
    specs = replica.param_specs()
    gradient_errors, gradient_max_errors = {}, {}
    for s in specs:
        expected = net.params[s.caffe_layer][s.caffe_index].diff
        actual = s.param.grad.numpy() if s.param.grad is not None else np.zeros_like(expected)
        gradient_max_errors[s.name] = relative_error(actual, expected)
        gradient_errors[s.name] = err = norm_relative_error(actual, expected)
        if not err <= grad_rtol:
            mismatches.append(Mismatch("gradient", s.name, f"||torch - caffe|| / ||caffe|| = {err:.3g} > {grad_rtol:g} "
                                                           f"(||caffe|| {np.linalg.norm(expected):.3g})"))
    update_errors = {}
    update_checked = optimizer is not None and hasattr(solver, "apply_update")
    if update_checked:
        if solver.iter != 0 or optimizer.iter != 0:
            raise ValueError("the update check needs a fresh solver and optimizer (iteration 0)")
        rng = rng if rng is not None else np.random.default_rng(0)
        caffe_grads = [np.array(net.params[s.caffe_layer][s.caffe_index].diff) for s in specs]
        saved = [np.array(net.params[s.caffe_layer][s.caffe_index].data) for s in specs]
        random_params = [0.05 * rng.standard_normal(w.shape, dtype=np.float32) for w in saved]
        random_grads = [10 * rng.standard_normal(w.shape, dtype=np.float32) * (rng.random(w.shape, np.float32) > 0.25)
                        for w in saved]
        for label, values, grads in (("random", random_params, random_grads), ("this batch", saved, caffe_grads)):
            for s, w, g in zip(specs, values, grads):
                blob = net.params[s.caffe_layer][s.caffe_index]
                blob.data[...] = w
                blob.diff[...] = g
                with torch.no_grad():
                    s.param.copy_(torch.from_numpy(w))
                s.param.grad = torch.from_numpy(g.copy())
            optimizer.step()
            solver.apply_update()
            for s, w in zip(specs, values):
                caffe_new = net.params[s.caffe_layer][s.caffe_index].data
                # (steps ~ lr are small against the parameters: one float32 ulp of the new value is allowed)
                err = relative_error(s.param.detach().numpy() - w, caffe_new - w,
                                     slack=np.spacing(np.abs(caffe_new)).astype(np.float64))
                update_errors[f"{s.name} ({label})"] = err
                if not err <= update_rtol:
                    mismatches.append(Mismatch("update", f"{s.name} ({label})",
                                               f"max|torch - caffe| / max|caffe's step| = {err:.3g} > {update_rtol:g}"))
        for s, w in zip(specs, saved):
            net.params[s.caffe_layer][s.caffe_index].data[...] = w
        net.clear_param_diffs()
        replica.load_caffe(net)
        optimizer.zero_grad()
    return CheckReport(replica.name, losses, gradient_errors, gradient_max_errors, update_errors, mismatches,
                       update_checked)
