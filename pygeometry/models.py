"""NetSpec building blocks for pose networks. Layer names follow BVLC's bvlc_alexnet (conv1..conv5, fc6, fc7)
so that `--weights bvlc_alexnet.caffemodel` initialises them by name."""
from __future__ import annotations


INPUT_STD = 58.0  # standard deviation of the trunk's input 255 * BGR - 117 over ImageNet (about 58)


def _he_std(fan_in, gain_input=1.0):
    """He (msra) standard deviation sqrt(2 / fan_in), divided by the input's standard deviation for the first
    layer, so that every layer's output starts at unit scale whatever the input range."""
    return float((2.0 / fan_in) ** 0.5 / gain_input)


NORMS = ("lrn", "batch")


def alexnet_trunk(n, data, prefix="", share=False, fc=True, lr_mult=1.0, init="he", in_channels=3,
                  cut="pool5", conv_std=0.01, fc_std=0.005, norm="lrn", conv1_pad=0, start="conv1", stop=None,
                  conv2_group=2):
    """Add BVLC AlexNet conv1..conv5 (+ fc6, fc7 when fc) on `data` to NetSpec `n`; returns the last top.

    Args:
        n: caffe.NetSpec.
        data: input top (N, 3 or 6, H, W).
        prefix: prefix for layer/top names (siamese branches), parameter names stay shared when share=True.
        share: name the parameters (conv1_w, conv1_b, ...) so that several trunks share weights.
        fc: include fc6 and fc7 (4096 each, ReLU, no dropout in this helper).
        lr_mult: learning-rate multiplier of the trunk's weights (0 freezes it).
        init: "he" (default): Gaussian with He's standard deviation sqrt(2 / fan_in), conv1's divided by
            INPUT_STD, so every layer starts at unit scale despite the 0..255 input range (plain msra gave
            features in the hundreds and 4.5 m poses after 100 iterations; BVLC's fixed 0.01 shrinks the
            signal about 3x per layer, and early fusion then learned nothing in 400 supervised iterations).
            "bvlc": BVLC's fixed Gaussians conv_std and fc_std.
        in_channels: channels of `data` (3, or 6 for early fusion), for conv1's fan-in.
        cut: "pool5" (AlexNet's last pooling, the default) or "conv5" (before it: keeps the spatial layout of
            the features, 3 x 12 cells at 64 x 208 instead of 1 x 6); fc must be False with "conv5".
        norm: "lrn" (BVLC AlexNet: LRN after conv1 and conv2) or "batch": batch normalisation after every
            convolution, before its ReLU, and no LRN (layers <conv>_bn (BatchNorm: the batch's statistics in
            training, the running averages in the TEST phase) and <conv>_scale (Scale with bias: the learned
            per-channel gain and offset, started at 1 and 0)). The convolutions keep their BVLC names and biases,
            so ImageNet weights still load by name. The siamese branches share the statistics and the gains.
        conv1_pad: conv1's zero padding (BVLC: 0). 5 makes conv1's output exactly H/4 x W/4 and, with Caffe's
            ceil-mode pooling, pool1, pool2 and pool5 exactly 1/8, 1/16 and 1/32 when H and W are multiples of 32
            (what an encoder-decoder with skips needs); the weights' shapes do not change.
        start, stop: build only part of the trunk: start "conv1" (default) or "pool1" (`data` is then what pool1
            reads, with in_channels channels); stop None (the whole trunk) or "norm1" (return conv1's normalised
            output, before pool1). The correlation net (pygeometry.nets) runs conv1 on each image, correlates, and
            continues from pool1.
        conv2_group: conv2's groups (BVLC: 2, its two-GPU split).
    """
    from caffe import layers as L, params as P

    def param(name):
        w = dict(lr_mult=lr_mult, decay_mult=1)
        b = dict(lr_mult=2 * lr_mult, decay_mult=0)
        if share:
            w["name"], b["name"] = f"{name}_w", f"{name}_b"
        return [w, b]

    if init not in ("he", "bvlc"):
        raise ValueError(f"init must be 'he' or 'bvlc', got {init!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")

    def filler(name, fan_in=None):
        if init == "bvlc":
            return dict(type="gaussian", std=fc_std if name.startswith("fc") else conv_std)
        if name == "conv1":
            return dict(type="gaussian", std=_he_std(fan_in, INPUT_STD))
        return dict(type="msra")  # Caffe's MSRAFiller: sqrt(2 / fan_in) with fan_in from the blob shape

    def conv(bottom, name, nout, ks, stride=1, pad=0, group=1):
        top = L.Convolution(bottom, kernel_size=ks, stride=stride, pad=pad, group=group, num_output=nout,
                            param=param(name), weight_filler=filler(name, in_channels // group * ks * ks),
                            bias_filler=dict(type="constant", value=0))
        setattr(n, prefix + name, top)
        if norm == "batch":
            # The running statistics are not learned (lr_mult 0); named like the other parameters when shared.
            stats = [dict(lr_mult=0, decay_mult=0, **({"name": f"{name}_bn_{i}"} if share else {}))
                     for i in range(3)]
            top = L.BatchNorm(top, param=stats, in_place=True)
            setattr(n, prefix + name + "_bn", top)
            gain = [dict(lr_mult=lr_mult, decay_mult=0, **({"name": f"{name}_scale_{k}"} if share else {}))
                    for k in ("w", "b")]
            top = L.Scale(top, bias_term=True, param=gain, in_place=True)
            setattr(n, prefix + name + "_scale", top)
        relu = L.ReLU(top, in_place=True)
        setattr(n, prefix + "relu" + name[4:], relu)
        return relu

    def lrn(x, name):
        if norm != "lrn":
            return x
        x = L.LRN(x, local_size=5, alpha=1e-4, beta=0.75)
        setattr(n, prefix + name, x)
        return x

    def pool(bottom, name):
        top = L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=3, stride=2)
        setattr(n, prefix + name, top)
        return top

    if start not in ("conv1", "pool1") or stop not in (None, "norm1"):
        raise ValueError(f"start must be 'conv1' or 'pool1' and stop None or 'norm1', got {start!r}, {stop!r}")
    x = data
    if start == "conv1":
        x = lrn(conv(data, "conv1", 96, 11, stride=4, pad=conv1_pad), "norm1")
        if stop == "norm1":
            return x
    x = pool(x, "pool1")
    x = lrn(conv(x, "conv2", 256, 5, pad=2, group=conv2_group), "norm2")
    x = pool(x, "pool2")
    x = conv(x, "conv3", 384, 3, pad=1)
    x = conv(x, "conv4", 384, 3, pad=1, group=2)
    x = conv(x, "conv5", 256, 3, pad=1, group=2)
    if cut == "conv5":
        if fc:
            raise ValueError("cut='conv5' leaves out pool5, so fc6/fc7 cannot follow (use fc=False)")
        return x
    if cut != "pool5":
        raise ValueError(f"cut must be 'pool5' or 'conv5', got {cut!r}")
    x = pool(x, "pool5")
    if fc:
        for name in ("fc6", "fc7"):
            top = L.InnerProduct(x, num_output=4096, param=param(name), weight_filler=filler(name),
                                 bias_filler=dict(type="constant", value=0))
            setattr(n, prefix + name, top)
            x = L.ReLU(top, in_place=True)
            setattr(n, prefix + "relu" + name[2:], x)
    return x
