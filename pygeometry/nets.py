"""Pose networks as NetSpec: supervised sanity check, late fusion and early fusion with the photometric loss.

Every network has three versions written by scripts/make_prototxt.py into prototxt/: `<name>_train.prototxt`
(HDF5Data on the train split), `<name>_val.prototxt` (HDF5Data on the val split) and `<name>_deploy.prototxt`
(Input blobs src and tgt (N, 3, H, W) -> xi (N, 6)).

Convention (stated once, here): dataset images are RGB in [0, 1]. The AlexNet trunk (backbone "alexnet", the
default) sees 255 * BGR - 117, i.e. the BVLC AlexNet input range and channel order (117 is the mean of BVLC's
per-channel means 104, 117, 123), so bvlc_alexnet.caffemodel weights apply unchanged. The EfficientNet-Lite0
trunk (backbone "efficientnet", ImageNet weights converted by scripts/convert_efficientnet_lite0.py) sees its
own preprocessing, pygeometry.efficientnet.preprocess (RGB, (255 v - 127) / 128). The pose xi = [t, w] predicts
src_T_tgt; the last layer's outputs are multiplied by small scales so the network starts near the identity.
"""
from __future__ import annotations

import math
import numbers
import re

from . import netspec as G
from .models import alexnet_trunk

BACKBONES = ("alexnet", "efficientnet")

NETWORKS = ("supervised_pose", "late_fusion_photometric", "early_fusion_photometric", "supervised_early_fusion")
# supervised_pose (late fusion) and supervised_early_fusion regress the ground-truth pose (EuclideanLoss): the sanity
# check of what the trunk can learn from two images when the pose itself is the target.
SUPERVISED = ("supervised_pose", "supervised_early_fusion")
EARLY_FUSION = ("early_fusion_photometric", "supervised_early_fusion")
POSE_SCALE_T = 0.1   # m per unit of the pose head output
POSE_SCALE_W = 0.03  # rad per unit of the pose head output
MEAN = 117.0
DEPTH_INPUT_SCALE, DEPTH_INPUT_SHIFT = 500.0, 100.0  # the oracle depth channel: 3-13 m -> about -60..+65


def _layers():
    from caffe import layers as L, params as P  # noqa: F401  (lazy: pygeometry does not need caffe)

    return L, P


def preprocess(n, rgb, name):
    """RGB [0, 1] (N, 3, H, W) -> 255 * BGR - MEAN, as a top named `name`."""
    L, _ = _layers()
    r, g, b = L.Slice(rgb, slice_param=dict(axis=1, slice_point=[1, 2]), ntop=3)
    setattr(n, f"{name}_r", r)
    setattr(n, f"{name}_g", g)
    setattr(n, f"{name}_b", b)
    bgr = L.Concat(b, g, r, axis=1)
    setattr(n, f"{name}_bgr", bgr)
    out = L.Power(bgr, scale=255.0, shift=-MEAN)
    setattr(n, name, out)
    return out


def pose_head(n, features, hidden=512, scale_t=POSE_SCALE_T, scale_w=POSE_SCALE_W, dropout=0.0, identity_start=False):
    """features -> fc_pose1 (hidden, ReLU) -> fc_pose (6) -> xi = [scale_t * fc_pose[:3], scale_w * fc_pose[3:]].

    dropout > 0 adds Dropout with that ratio on the features and on fc_pose1's output (training phase only; Caffe
    scales the kept units by 1 / (1 - ratio), so the TEST phase needs no change).

    identity_start: the last layer starts at zero (weights and bias), so the pose starts exactly at the identity
    whatever the features' size (Depth-VO-Feat's choice; it still learns: its weights' gradient is the hidden
    activations times the pose's gradient). Otherwise its weights are Gaussian with std 0.01.

    The output scales put the typical motion (decimetres, degrees) at fc_pose values of order one, where Adam's
    fixed step size suits them; with both scales equal the network reached one metre in 0.01 steps of the last
    layer's output and learned very slowly.
    """
    L, _ = _layers()
    if dropout > 0:
        features = n.drop_features = L.Dropout(features, dropout_ratio=dropout)
    n.fc_pose1 = L.InnerProduct(features, num_output=hidden, weight_filler=dict(type="msra"),
                                bias_filler=dict(type="constant", value=0))
    n.relu_pose1 = L.ReLU(n.fc_pose1, in_place=True)
    hidden_top = n.relu_pose1
    if dropout > 0:
        hidden_top = n.drop_pose1 = L.Dropout(n.relu_pose1, dropout_ratio=dropout, in_place=True)
    n.fc_pose = L.InnerProduct(hidden_top, num_output=6, weight_filler=dict(type="constant", value=0.0)
                               if identity_start else dict(type="gaussian", std=0.01),
                               bias_filler=dict(type="constant", value=0))
    if scale_t == scale_w:
        n.xi = L.Power(n.fc_pose, scale=scale_t)
        return n.xi
    n.fc_pose_t, n.fc_pose_w = L.Slice(n.fc_pose, slice_param=dict(axis=1, slice_point=[3]), ntop=2)
    n.xi_t_scaled = L.Power(n.fc_pose_t, scale=scale_t)
    n.xi_w_scaled = L.Power(n.fc_pose_w, scale=scale_w)
    n.xi = L.Concat(n.xi_t_scaled, n.xi_w_scaled, axis=1)
    return n.xi


def block_average_pyramid(n, top, name, factors, comments=None):
    """s x s block averages of `top` for every factor s in `factors`, as tops named f"{name}_s{s}".

    Each level averages the finest level below it whose factor divides s (2 x 2 blocks of the s2 level for s4,
    ...), else `top` itself: the same mean as one s x s pooling of `top` (up to float rounding) at a fraction of
    the cost, since the largest level is read once. Returns {s: top}. Sizes must be multiples of every factor
    (check_image_size), so no level averages a partial block.
    """
    L, P = _layers()
    levels = {}
    for s in sorted(set(int(f) for f in factors if f > 1)):
        base, base_factor = top, 1
        for f in sorted(levels, reverse=True):
            if s % f == 0:
                base, base_factor = levels[f], f
                break
        k = s // base_factor
        levels[s] = L.Pooling(base, pool=P.Pooling.AVE, kernel_size=k, stride=k)
        setattr(n, f"{name}_s{s}", levels[s])
    return levels


def check_image_size(height: int, width: int, downsample: int = 1, scales=()) -> None:
    """Reject an image size that the net's block averages do not divide.

    The trunk sees downsample x downsample block averages of the images, and each coarse photometric loss at scale
    s compares s x s block averages, its coordinates mapped to the coarse grid by x_s = (x + 0.5) / s - 0.5. Caffe's
    Pooling rounds its output size up (ceil mode): where a side is not a multiple of the block, the last coarse pixel
    averages a partial block whose centre is not where that mapping puts it, so the coarse coordinates would be
    silently misaligned (and the EfficientNet trunk's padding, computed for height // downsample, would not match
    the blob). Hence height and width must be multiples of downsample and of every loss scale, i.e. of their least
    common multiple.

    Args:
        height, width: image size in pixels.
        downsample: block size of the trunk's input (1: none).
        scales: block sizes of the coarse photometric losses that the net has (none for deploy nets and the
            supervised net).

    Raises:
        ValueError: a factor that is not a positive integer, or a size that is not a multiple of every factor; the
            message names the size, each factor it is not a multiple of, and the nearest valid sizes.
    """
    def positive_int(value):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1

    for key, value in (("height", height), ("width", width), ("downsample", downsample)):
        if not positive_int(value):
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    scales = tuple(scales)
    if not all(positive_int(s) for s in scales):
        raise ValueError(f"loss scales must be positive integers, got {scales}")
    height, width, downsample = int(height), int(width), int(downsample)
    scales = tuple(sorted({int(s) for s in scales if s > 1}))  # a 1 x 1 block average divides every size
    factors = ([downsample] if downsample > 1 else []) + list(scales)
    if not factors:
        return
    multiple = math.lcm(*factors)

    def named(downsample_factors, scale_factors):
        parts = [f"downsample {d}" for d in downsample_factors]
        if scale_factors:
            parts.append(f"the loss scale{'s' if len(scale_factors) > 1 else ''} {', '.join(map(str, scale_factors))}")
        return parts

    problems, nearest = [], []
    for side, size in (("height", height), ("width", width)):
        offending = named([downsample] if downsample > 1 and size % downsample else [],
                          [s for s in scales if size % s])
        if offending:
            problems.append(f"{side} {size} is not a multiple of {' nor of '.join(offending)}")
            below = size // multiple * multiple
            valid = [v for v in (below, below + multiple) if v > 0]
            nearest.append(f"{side} {' or '.join(map(str, valid))}")
    if problems:
        raise ValueError(
            f"image size {height} x {width} (height x width): {'; '.join(problems)}. Caffe's average pooling "
            f"rounds its output size up (ceil mode), so the last coarse pixel would average a partial block and "
            f"the coarse grid would be silently misaligned. Height and width must be multiples of {multiple} "
            f"({'the least common multiple of ' if len(factors) > 1 else ''}"
            f"{' and '.join(named([downsample] if downsample > 1 else [], scales))}); "
            f"nearest valid sizes: {', '.join(nearest)}.")


def _check_alexnet_options(fc=False, norm="lrn", conv1_pad=0):
    """A ValueError naming the AlexNet-only options (fc, norm, conv1_pad) set for another backbone."""
    if fc or norm != "lrn":
        raise ValueError("fc and norm apply to the alexnet backbone only")
    if conv1_pad:
        raise ValueError("conv1_pad applies to the alexnet backbone only")


def _trunk(n, backbone, data, prefix="", share=False, fc=False, lr_mult=1.0, in_channels=3, cut=None,
           input_size=None, norm="lrn", conv1_pad=0):
    if backbone == "alexnet":
        return alexnet_trunk(n, data, prefix=prefix, share=share, fc=fc, lr_mult=lr_mult, in_channels=in_channels,
                             cut=cut or ("pool5" if fc else "conv5"), norm=norm, conv1_pad=conv1_pad)
    from . import efficientnet as E

    _check_alexnet_options(fc, norm, conv1_pad)
    return E.efficientnet_lite0_trunk(n, data, prefix=prefix, share=share, cut=cut or E.DEFAULT_CUT,
                                      lr_mult=lr_mult, in_channels=in_channels, input_size=input_size)


CORRELATION_REDIRECT = 32  # channels of the target's conv1 features kept beside the cost volume (FlowNetC's redir)


# The efficientnet trunk's correlation fusion: the siamese features end at block2 (24 channels at stride 4, where
# AlexNet's conv1 is), and the trunk continues from block3 on the fused cost volume.
EFFICIENTNET_CORRELATION_CUT = "block2"


def _correlation_features(n, src, tgt, max_displacement, lr_mult, cut, norm, backbone="alexnet", input_size=None):
    """Siamese features of each image at stride 4 (shared weights; learning-rate multiplier lr_mult, so 0 freezes
    them), the Correlation of the target's features with the source's (a (2m + 1)^2-channel cost volume) beside a
    1 x 1 projection of the target's (conv_redir, FlowNetC's redirection), then the rest of the trunk up to `cut`
    on the fused volume (always learning): the two images meet where their features still have the layout the
    motion moves, rather than at the trunk's end.

    alexnet: conv1 (+ norm1; padded to exactly 1/4 of the input), then AlexNet from pool1 on (conv2 ungrouped).
    efficientnet: EfficientNet-Lite0 up to block2 (EFFICIENTNET_CORRELATION_CUT), the fused volume normalised per
    channel over the image (MVN), a 1 x 1 convolution to block3's 24 input channels (fuse_project), then the trunk
    from block3 on with its own layer names, so that converted ImageNet weights fill the siamese features (src_
    prefix) and the blocks after the fusion alike. norm (an AlexNet option) is refused there.
    """
    from caffe import layers as L

    from .models import alexnet_trunk

    if backbone == "alexnet":
        features = {k: alexnet_trunk(n, image, prefix=f"{k}_", share=True, lr_mult=lr_mult, stop="norm1",
                                     conv1_pad=5, norm=norm, fc=False) for k, image in (("src", src), ("tgt", tgt))}
    else:
        from . import efficientnet as E

        _check_alexnet_options(norm=norm)
        features = {k: E.efficientnet_lite0_trunk(n, image, prefix=f"{k}_", share=True, lr_mult=lr_mult,
                                                  cut=EFFICIENTNET_CORRELATION_CUT, input_size=input_size)
                    for k, image in (("src", src), ("tgt", tgt))}
    n.cost = G.correlation(features["tgt"], features["src"], max_displacement=max_displacement)
    learn = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
    n.conv_redir = L.Convolution(features["tgt"], kernel_size=1, num_output=CORRELATION_REDIRECT, param=learn,
                                 weight_filler=dict(type="msra"), bias_filler=dict(type="constant", value=0))
    n.relu_redir = L.ReLU(n.conv_redir, in_place=True)
    n.fused = L.Concat(n.cost, n.relu_redir, axis=1)
    channels = (2 * max_displacement + 1) ** 2 + CORRELATION_REDIRECT
    if backbone == "alexnet":
        return alexnet_trunk(n, n.fused, lr_mult=1.0, start="pool1", in_channels=channels, conv2_group=1,
                             cut=cut or "conv5", fc=False, norm=norm)
    first = int(EFFICIENTNET_CORRELATION_CUT[len("block"):]) + 1  # the first block after the fusion
    width = E.BLOCKS[first].in_channels
    # ImageNet block2 features are large (std ~9), their correlation larger (~28, mostly a common offset): every
    # fused channel is normalised to zero mean and unit spread over the image (MVN) before the projection; without
    # it 1 of 3 frozen and 1 of 2 mirrored seeds diverged in the first 100-250 iterations (pose out of view).
    n.fused_mvn = L.MVN(n.fused)
    n.fuse_project = L.Convolution(n.fused_mvn, kernel_size=1, num_output=width, param=learn,
                                   weight_filler=dict(type="msra"), bias_filler=dict(type="constant", value=0))
    return E.efficientnet_lite0_trunk(n, n.fuse_project, cut=cut or E.DEFAULT_CUT, lr_mult=1.0, in_channels=width,
                                      input_size=input_size, start=f"block{first}")


PAIR_INPUTS = ("stack", "difference", "correlation")
# pair_input="correlation": a shared 3 x 3 convolution (conv0) of each image at the trunk's input resolution, and
# the Correlation of the two (displacements up to PAIR_COST_DISPLACEMENT pixels), scaled like the images
PAIR_COST_CHANNELS = 16
PAIR_COST_DISPLACEMENT = 3


def _pair_cost(n, src, tgt, lr_mult):
    """The early-fusion cost volume (N, (2m + 1)^2, H, W) of the trunk's input images, m = PAIR_COST_DISPLACEMENT:
    conv0 (3 x 3, PAIR_COST_CHANNELS, ReLU; shared by both images, on the images / INPUT_STD) then Correlation
    (target's features against the source's, the mean over channels), each channel normalised to zero mean and unit
    spread over the image (MVN). Unlike conv1's 4-pixel stride, it keeps every pixel's displacement."""
    L, _ = _layers()
    from .models import INPUT_STD

    features = {}
    for k, image in (("src", src), ("tgt", tgt)):
        unit = L.Power(image, scale=1.0 / INPUT_STD)
        setattr(n, f"{k}_unit", unit)
        conv = L.Convolution(unit, kernel_size=3, pad=1, num_output=PAIR_COST_CHANNELS,
                             param=[dict(name="conv0_w", lr_mult=lr_mult, decay_mult=1),
                                    dict(name="conv0_b", lr_mult=2 * lr_mult, decay_mult=0)],
                             weight_filler=dict(type="msra"), bias_filler=dict(type="constant", value=0))
        setattr(n, f"{k}_conv0", conv)
        features[k] = L.ReLU(conv, in_place=True)
        setattr(n, f"{k}_relu0", features[k])
    n.pair_cost = G.correlation(features["tgt"], features["src"], max_displacement=PAIR_COST_DISPLACEMENT)
    # Zero mean and unit spread per cost channel and image (MVN), at unit scale (not the images' 58): Adam's first
    # steps move every conv1 weight by about lr, so conv1's output moves with the sum of its inputs' magnitudes
    # over its fan-in, and the 49 cost channels at the images' scale moved it 10x more than the images do (a
    # seed diverged to 130 deg within 10 iterations, with or without MVN).
    n.pair_cost_normalised = L.MVN(n.pair_cost)
    return n.pair_cost_normalised


def _trunk_features(n, kind, src, tgt, fc, lr_mult, cut=None, backbone="alexnet", input_size=None, norm="lrn",
                    extra=None, correlation=0, pair_input="stack", conv1_pad=0):
    L, P = _layers()
    common = dict(fc=fc, lr_mult=lr_mult, cut=cut, input_size=input_size, norm=norm, conv1_pad=conv1_pad)
    if correlation:
        return _correlation_features(n, src, tgt, correlation, lr_mult, cut, norm, backbone, input_size)
    if kind == "early" and pair_input == "difference":
        # the same 6 numbers per pixel, linearly re-mixed: source, then target minus source (the temporal
        # difference, which brightness constancy ties to the motion: tgt - src ~ -grad(I) . flow)
        n.pair_difference = L.Eltwise(tgt, src, operation=P.Eltwise.SUM, coeff=[1.0, -1.0])
        tgt = n.pair_difference
    if kind == "early" and pair_input == "correlation":
        extra = _pair_cost(n, src, tgt, lr_mult)
        n.pair = L.Concat(src, tgt, extra, axis=1)  # source, target, then their cost volume
        return _trunk(n, backbone, n.pair, in_channels=6 + (2 * PAIR_COST_DISPLACEMENT + 1) ** 2, **common)
    if kind == "early":
        if extra is not None:  # a 7th channel (the oracle depth input)
            n.pair = L.Concat(src, tgt, extra, axis=1)
            return _trunk(n, backbone, n.pair, in_channels=7, **common)
        n.pair = L.Concat(src, tgt, axis=1)  # 6 channels: source, then target
        return _trunk(n, backbone, n.pair, in_channels=6, **common)
    feat_src = _trunk(n, backbone, src, prefix="src_", share=True, **common)
    feat_tgt = _trunk(n, backbone, tgt, prefix="tgt_", share=True, **common)
    n.features = L.Concat(feat_src, feat_tgt, axis=1)
    return n.features


def pose_net(name, phase, source=None, batch_size=8, height=64, width=208, fc=False, alpha=0.85,
             trunk_lr_mult=1.0, rotation_weight=100.0, blur_sizes=(), scales=(2, 4, 8), scale_t=POSE_SCALE_T,
             scale_w=POSE_SCALE_W, backbone="alexnet", cut=None, downsample=2, norm="lrn", dropout=0.0,
             mirror=0.0, mirror_seed=0, colour=0.0, reverse=0.0, depth_input=False, correlation=0,
             pair_input="stack", conv1_pad=0):
    """NetSpec of a pose network.

    Args:
        name: one of NETWORKS.
        phase: "train", "val" (HDF5Data from `source`) or "deploy" (Input src, tgt of batch_size, height, width).
        height, width: image size (the deploy input; every phase needs it for the efficientnet trunk's padding).
            Checked here (check_image_size): multiples of `downsample`, and in the train and val phases of the
            photometric nets of every loss scale in `scales`; a ValueError names the size, the factor and the
            nearest valid sizes.
        fc: include AlexNet's fc6/fc7 in the trunk (else the head sits on pool5).
        alpha: SSIM weight of the photometric loss.
        trunk_lr_mult: learning-rate multiplier of the trunk (0 freezes it).
        rotation_weight: weight of the rotation term of the supervised loss (radians are ~10x smaller than m).
        blur_sizes: box-blur sizes of extra photometric losses on blurred full-resolution images.
        scales: block sizes s of the extra photometric losses on s x s block-averaged images (photometric nets,
            train and val phases); height and width must be multiples of each.
        scale_t, scale_w: output scales of the pose head's translation and rotation (see pose_head).
        backbone: "alexnet" (BVLC layer names, random init or bvlc_alexnet.caffemodel) or "efficientnet"
            (EfficientNet-Lite0, ImageNet weights from scripts/convert_efficientnet_lite0.py).
        cut: where the trunk ends: "conv5" (default; keeps the features' layout) or "pool5" for alexnet; "block0".."block15" or "head" for
            efficientnet (default pygeometry.efficientnet.DEFAULT_CUT).
        downsample: the trunk sees the images block-averaged by this factor (the photometric loss stays at full
            resolution). At 64 x 208, AlexNet's 11 x 11 stride-4 conv1 sees a handheld motion of 5 to 10 pixels
            better at half resolution, and an iteration costs 3x less (measured: supervised early fusion learned
            rotation within 1000 iterations at 32 x 104 + conv5, and nothing in 1500 at 64 x 208 + pool5).
            height and width must be multiples of it.
        norm: the alexnet trunk's normalisation, "lrn" (BVLC's) or "batch" (see models.alexnet_trunk).
        dropout: dropout ratio in the pose head (see pose_head; 0: none).
        mirror: in the train phase, the probability that a pair is mirrored left-right (RandomMirror, an exact
            augmentation: the images, the depth, cx and the pose all mirror); 0: none. mirror_seed seeds it.
        colour: in the train phase, recolour every pair (RandomColour: a random channel permutation and a gain in
            [1 - colour, 1 + colour], the same for both images); 0: none. Seeded by mirror_seed + 1.
        reverse: in the train phase, the probability that a pair is read backwards (RandomReverse: source and
            target swap, the pose is inverted; an exact augmentation that makes driving forward and backward equally
            likely, so the mean pose no longer gives the direction of travel). Seeded by mirror_seed + 2. The
            photometric nets then warp the target into the source with the source's depth: their training split
            must carry src_depth (make_dataset.py --src-depth).
        correlation: m > 0 fuses the late-fusion nets (supervised_pose, late_fusion_photometric) by a Correlation
            of the two images' stride-4 features (AlexNet's conv1, EfficientNet's block2; displacements up to m
            cells) instead of concatenating the trunk's last features (see _correlation_features); 0: no. The
            trunk's learning-rate multiplier then applies to the siamese features only (0 freezes them; the
            fusion and the layers after it learn).
        depth_input: a diagnostic oracle for the early-fusion AlexNet nets: the target's true inverse depth, block-
            averaged like the images and scaled to their range (DEPTH_INPUT_SCALE / (depth + 0.1 m) - DEPTH_INPUT_SHIFT),
            is a 7th input channel, so the net knows the scene's scale and has only the motion to read. The deploy
            net then has a third input, tgt_depth (N, 1, H, W), which pygeometry.inference.predict fills.
        pair_input: how the early-fusion nets stack the pair: "stack" (source, then target: 6 channels) or
            "difference" (source, then target - source: the same information re-mixed linearly, so that conv1 sees
            the temporal difference that brightness constancy ties to the motion, not a small change on top of two
            large appearances), or "correlation" (source, target, and their cost volume at the trunk's input
            resolution, see _pair_cost: the early-fusion AlexNet nets read every pixel's displacement).
        conv1_pad: the AlexNet trunk's conv1 zero padding (BVLC: 0; 5 keeps the layout: conv1 at exactly 1/4 of the
            trunk's input, 8 x 26 cells instead of 6 x 24 at 32 x 104, and conv5 2 x 6 instead of 1 x 6).

    Raises:
        ValueError: an unknown name, phase or backbone, or an image size that downsample or a loss scale does not
            divide (see check_image_size).
    """
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; known: {NETWORKS}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; known: {BACKBONES}")
    if phase not in ("train", "val", "deploy"):
        raise ValueError(f"phase must be train, val or deploy, got {phase!r}")
    has_photometric_loss = phase != "deploy" and name not in SUPERVISED
    check_image_size(height, width, downsample, scales if has_photometric_loss else ())
    L, P = _layers()
    import caffe

    n = caffe.NetSpec()
    if correlation and (name in EARLY_FUSION or fc):
        raise ValueError(f"correlation fuses the late-fusion nets (no fc), not {name!r}{' with fc' if fc else ''}")
    if pair_input not in PAIR_INPUTS or (pair_input != "stack" and name not in EARLY_FUSION):
        raise ValueError(f"pair_input must be one of {PAIR_INPUTS} (not 'stack' only for the early-fusion nets "
                         f"{EARLY_FUSION}), got {pair_input!r} for {name!r}")
    if isinstance(conv1_pad, bool) or not isinstance(conv1_pad, numbers.Integral) or conv1_pad < 0:
        raise ValueError(f"conv1_pad must be an integer >= 0, got {conv1_pad!r}")
    if pair_input == "correlation" and (backbone != "alexnet" or depth_input):
        raise ValueError("pair_input 'correlation' is for the AlexNet early-fusion nets without depth_input")
    if depth_input and (name not in EARLY_FUSION or backbone != "alexnet"):
        raise ValueError(f"depth_input is for the early-fusion AlexNet nets {EARLY_FUSION}, not {name!r} with "
                         f"backbone {backbone!r}")
    if phase == "deploy":
        n.src = L.Input(shape=dict(dim=[batch_size, 3, height, width]))
        n.tgt = L.Input(shape=dict(dim=[batch_size, 3, height, width]))
        if depth_input:
            n.tgt_depth = L.Input(shape=dict(dim=[batch_size, 1, height, width]))
    else:  # train, val (HDF5Data reads the datasets named like its tops)
        reverse_depth = phase == "train" and reverse > 0 and has_photometric_loss
        tops = L.HDF5Data(source=source, batch_size=batch_size, shuffle=phase == "train", ntop=6 if reverse_depth else 5)
        n.src, n.tgt, n.tgt_depth, n.K, n.xi_gt = tops[:5]
        if reverse_depth:
            n.src_depth = tops[5]
    data = dict(src=n.src, tgt=n.tgt)
    if phase != "deploy":
        data.update(tgt_depth=n.tgt_depth, K=n.K, xi_gt=n.xi_gt)
    if phase == "train" and reverse > 0:
        if has_photometric_loss:
            (n.src_reversed, n.tgt_reversed, n.src_depth_reversed, n.tgt_depth_reversed,
             n.xi_gt_reversed) = G.random_reverse(data["src"], data["tgt"], data["xi_gt"],
                                                  depths=(n.src_depth, data["tgt_depth"]), probability=reverse,
                                                  seed=mirror_seed + 2)
            data.update(tgt_depth=n.tgt_depth_reversed)
        else:
            n.src_reversed, n.tgt_reversed, n.xi_gt_reversed = G.random_reverse(
                data["src"], data["tgt"], data["xi_gt"], probability=reverse, seed=mirror_seed + 2)
        data.update(src=n.src_reversed, tgt=n.tgt_reversed, xi_gt=n.xi_gt_reversed)
    if phase == "train" and mirror > 0:
        tops = G.random_mirror([data["src"], data["tgt"], data["tgt_depth"]], data["K"], data["xi_gt"],
                               probability=mirror, seed=mirror_seed)
        for key, top in zip(("src", "tgt", "tgt_depth", "K", "xi_gt"), tops):
            setattr(n, f"{key}_mirrored", top)
            data[key] = top
    if phase == "train" and colour > 0:
        n.src_recoloured, n.tgt_recoloured = G.random_colour([data["src"], data["tgt"]], gain=colour,
                                                             seed=mirror_seed + 1)
        data.update(src=n.src_recoloured, tgt=n.tgt_recoloured)
    # The images' block averages: the trunk's input (downsample) and the coarse losses' images (scales) share
    # one pyramid, src_s2, src_s4, ... (a level that is both is computed once).
    pyramid_factors = {downsample} | (set(scales) if has_photometric_loss else set())
    src_levels = block_average_pyramid(n, data["src"], "src", pyramid_factors)
    tgt_levels = block_average_pyramid(n, data["tgt"], "tgt", pyramid_factors)
    src_in, tgt_in = src_levels.get(downsample, data["src"]), tgt_levels.get(downsample, data["tgt"])
    if backbone == "alexnet":
        src = preprocess(n, src_in, "src_pre")
        tgt = preprocess(n, tgt_in, "tgt_pre")
    else:
        from . import efficientnet as E

        src = E.preprocess(n, src_in, "src_pre")
        tgt = E.preprocess(n, tgt_in, "tgt_pre")
    kind = "early" if name in EARLY_FUSION else "late"
    extra = None
    if depth_input:
        depth = data.get("tgt_depth", n.tgt_depth)
        if downsample > 1:
            depth = n.tgt_depth_avg = L.Pooling(depth, pool=P.Pooling.AVE, kernel_size=downsample, stride=downsample)
        n.tgt_inv_depth = L.Power(depth, power=-1.0, shift=0.1)
        extra = n.tgt_depth_input = L.Power(n.tgt_inv_depth, scale=DEPTH_INPUT_SCALE, shift=-DEPTH_INPUT_SHIFT)
    features = _trunk_features(n, kind, src, tgt, fc, trunk_lr_mult, cut=cut, backbone=backbone, extra=extra,
                               correlation=correlation, pair_input=pair_input, conv1_pad=conv1_pad,
                               input_size=(height // downsample, width // downsample), norm=norm)
    xi = pose_head(n, features, scale_t=scale_t, scale_w=scale_w, dropout=dropout)
    if phase == "deploy":
        return n
    if name in SUPERVISED:
        n.xi_t, n.xi_w = L.Slice(xi, slice_param=dict(axis=1, slice_point=[3]), ntop=2)
        n.gt_t, n.gt_w = L.Slice(data["xi_gt"], slice_param=dict(axis=1, slice_point=[3]), ntop=2)
        n.loss_t = L.EuclideanLoss(n.xi_t, n.gt_t, loss_weight=1.0)
        n.loss_w = L.EuclideanLoss(n.xi_w, n.gt_w, loss_weight=rotation_weight)
        n.silence = L.Silence(data["tgt_depth"], data["K"], ntop=0)
        return n
    n.src_T_tgt = G.se3_generator(xi)
    n.points_src = G.transform_3d_grid(data["tgt_depth"], n.src_T_tgt, K_blob=data["K"])
    n.coords_src, n.proj_valid = G.pinhole_projection(n.points_src, K_blob=data["K"], with_valid=True)
    # The loss averages over the pixels with a known target depth (a property of the data), never over a mask
    # that depends on the prediction: with the warp's inside-the-image mask or the projection's z > eps mask,
    # the network lowered the loss by pushing pixels out of view or behind the camera (seen here: 4 m and
    # 150 degree poses with loss 0 after 250 iterations). Border padding makes out-of-view samples cost.
    n.warped, n.warp_valid = G.bilinear_warp(data["src"], n.coords_src, padding="border", with_valid=True)
    n.depth_valid = L.Threshold(data["tgt_depth"], threshold=0.0)
    n.loss = G.photometric_loss(n.warped, data["tgt"], n.depth_valid, alpha=alpha)
    silenced = [n.proj_valid, n.warp_valid, data["xi_gt"]] + \
        ([n.src_depth_reversed] if "src_depth_reversed" in n.tops else [])
    # Coarse copies of the same comparison widen the basin of the loss (coarse to fine in one loss), as the
    # multi-scale losses of SfMLearner/Monodepth do. At scale s the source and target are s x s block averages
    # and the full-resolution coordinates are block-averaged too and mapped to the coarse pixel grid
    # (x_s = (x + 0.5) / s - 0.5), so the geometry (depth, K) is used once, at full resolution.
    # A coarse pixel is valid when its whole block has a known depth (its average of depth_valid is 1).
    coords_levels = block_average_pyramid(n, n.coords_src, "coords_avg", scales)
    valid_levels = block_average_pyramid(n, n.depth_valid, "depth_fraction", scales)
    for s in scales:
        src_s, tgt_s = src_levels[s], tgt_levels[s]
        coords_s = L.Power(coords_levels[s], scale=1.0 / s, shift=0.5 / s - 0.5)
        valid_s = L.Threshold(valid_levels[s], threshold=0.999)
        setattr(n, f"coords_s{s}", coords_s)
        setattr(n, f"depth_valid_s{s}", valid_s)
        warped, valid = G.bilinear_warp(src_s, coords_s, padding="border", with_valid=True)
        setattr(n, f"warped_s{s}", warped)
        setattr(n, f"warp_valid_s{s}", valid)
        silenced.append(valid)
        setattr(n, f"loss_s{s}", G.photometric_loss(warped, tgt_s, valid_s, alpha=alpha))
    # Blurred copies at full resolution (the source is blurred before warping and the target alike).
    for k in blur_sizes:
        src_blur = L.Pooling(data["src"], pool=P.Pooling.AVE, kernel_size=k, stride=1, pad=k // 2)
        tgt_blur = L.Pooling(data["tgt"], pool=P.Pooling.AVE, kernel_size=k, stride=1, pad=k // 2)
        setattr(n, f"src_blur{k}", src_blur)
        setattr(n, f"tgt_blur{k}", tgt_blur)
        warped, valid = G.bilinear_warp(src_blur, n.coords_src, padding="border", with_valid=True)
        setattr(n, f"warped_blur{k}", warped)
        setattr(n, f"warp_valid_blur{k}", valid)
        silenced.append(valid)
        setattr(n, f"loss_blur{k}", G.photometric_loss(warped, tgt_blur, n.depth_valid, alpha=alpha))
    n.silence = L.Silence(*silenced, ntop=0)
    return n


# Comments for the layers whose purpose a reader of the prototxt cannot guess (layer name pattern -> comment).
LAYER_COMMENTS = (
    (r"(src|tgt)_s(\d+)", lambda m: f"{m.group(2)} x {m.group(2)} block averages of the {m.group(1)} images (each "
                                      "level from the one below): the trunk's input and the coarse losses' images"),
    (r"(src|tgt)_pre", lambda m: "255 * BGR - 117: BVLC AlexNet's input range and channel order"),
    (r"xi_([tw])_scaled", lambda m: f"pose head output scale: {POSE_SCALE_T} m" if m.group(1) == "t"
     else f"pose head output scale: {POSE_SCALE_W} rad"),
    (r"depth_valid", lambda m: "1 where the target depth is known: the loss averages over these pixels (a property "
                               "of the data, never a mask that depends on the predicted pose)"),
    (r"coords_avg_s(\d+)", lambda m: f"the full-resolution source coordinates averaged over {m.group(1)} x "
                                      f"{m.group(1)} blocks"),
    (r"coords_s(\d+)", lambda m: f"coords_avg_s{m.group(1)} in the {m.group(1)}x coarser pixel grid: x_s = (x + 0.5) "
                                  f"/ {m.group(1)} - 0.5 (scale 1/{m.group(1)}, shift 0.5/{m.group(1)} - 0.5)"),
    (r"depth_fraction_s(\d+)", lambda m: f"the fraction of each {m.group(1)} x {m.group(1)} block with known depth"),
    (r"depth_valid_s(\d+)", lambda m: "a coarse pixel counts when its whole block has known depth"),
    (r"silence", lambda m: "tops nobody reads (valid masks, ground truth): silenced, so that Caffe does not make "
                           "them net outputs and log them"),
)


def annotate_prototxt(text: str) -> str:
    """text (a NetSpec's to_proto()) with a comment line before each layer of LAYER_COMMENTS."""
    def comment(match):
        name = match.group(2)
        for pattern, say in LAYER_COMMENTS:
            m = re.fullmatch(pattern, name)
            if m:
                return f"# {say(m)}\n{match.group(1)}"
        return match.group(1)
    return re.sub(r'(?m)^(layer \{\n  name: "([^"]+)")', comment, text)


def solver_text(name, train_net, val_net, snapshot_prefix, max_iter=3000, base_lr=2e-4, test_interval=500,
                test_iter=25, stepsize=None, clip_gradients=10.0, lr_policy="step"):
    """A solver for pose_net: Adam, a learning-rate schedule, snapshots, periodic tests on the val net.

    lr_policy: "step" (x0.1 at `stepsize`, default 60% of max_iter) or "poly" (Caffe's poly with power 1: a
    linear decay from base_lr to 0 at max_iter).
    """
    if lr_policy == "step":
        stepsize = stepsize or max(1, int(max_iter * 0.6))
        schedule = ['lr_policy: "step"', "gamma: 0.1", f"stepsize: {stepsize}"]
    elif lr_policy == "poly":
        schedule = ['lr_policy: "poly"', "power: 1.0"]
    else:
        raise ValueError(f"lr_policy must be 'step' or 'poly', got {lr_policy!r}")
    return "\n".join([
        f'train_net: "{train_net}"', f'test_net: "{val_net}"', f"test_iter: {test_iter}",
        f"test_interval: {test_interval}", "test_initialization: false", 'type: "Adam"', f"base_lr: {base_lr}",
        "momentum: 0.9", "momentum2: 0.999", "weight_decay: 0.0001", *schedule,
        f"max_iter: {max_iter}", f"clip_gradients: {clip_gradients}", "display: 50",
        f"snapshot: {test_interval * 2}",
        f'snapshot_prefix: "{snapshot_prefix}"', "solver_mode: CPU", ""])
