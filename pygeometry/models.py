"""NetSpec building blocks for pose networks. Layer names follow BVLC's bvlc_alexnet (conv1..conv5, fc6, fc7)
so that `--weights bvlc_alexnet.caffemodel` initialises them by name."""
from __future__ import annotations


def alexnet_trunk(n, data, prefix="", share=False, fc=True, lr_mult=1.0, conv_std=0.01, fc_std=0.005):
    """Add BVLC AlexNet conv1..conv5 (+ fc6, fc7 when fc) on `data` to NetSpec `n`; returns the last top.

    Args:
        n: caffe.NetSpec.
        data: input top (N, 3 or 6, H, W).
        prefix: prefix for layer/top names (siamese branches), parameter names stay shared when share=True.
        share: name the parameters (conv1_w, conv1_b, ...) so that several trunks share weights.
        fc: include fc6 and fc7 (4096 each, ReLU, no dropout in this helper).
        lr_mult: learning-rate multiplier of the trunk's weights (0 freezes it).
        conv_std, fc_std: Gaussian initialisation as BVLC's AlexNet (0.01 and 0.005); with its 0..255 input
            range, He (msra) initialisation gives features in the hundreds and Adam then moves the pose
            output by centimetres per step (seen here: 4.5 m predictions after 100 iterations).
    """
    from caffe import layers as L, params as P

    def param(name):
        w = dict(lr_mult=lr_mult, decay_mult=1)
        b = dict(lr_mult=2 * lr_mult, decay_mult=0)
        if share:
            w["name"], b["name"] = f"{name}_w", f"{name}_b"
        return [w, b]

    def conv(bottom, name, nout, ks, stride=1, pad=0, group=1):
        top = L.Convolution(bottom, kernel_size=ks, stride=stride, pad=pad, group=group,
                            num_output=nout, param=param(name), weight_filler=dict(type="gaussian", std=conv_std),
                            bias_filler=dict(type="constant", value=0))
        setattr(n, prefix + name, top)
        relu = L.ReLU(top, in_place=True)
        setattr(n, prefix + "relu" + name[4:], relu)
        return relu

    def pool(bottom, name):
        top = L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=3, stride=2)
        setattr(n, prefix + name, top)
        return top

    x = conv(data, "conv1", 96, 11, stride=4)
    x = L.LRN(x, local_size=5, alpha=1e-4, beta=0.75)
    setattr(n, prefix + "norm1", x)
    x = pool(x, "pool1")
    x = conv(x, "conv2", 256, 5, pad=2, group=2)
    x = L.LRN(x, local_size=5, alpha=1e-4, beta=0.75)
    setattr(n, prefix + "norm2", x)
    x = pool(x, "pool2")
    x = conv(x, "conv3", 384, 3, pad=1)
    x = conv(x, "conv4", 384, 3, pad=1, group=2)
    x = conv(x, "conv5", 256, 3, pad=1, group=2)
    x = pool(x, "pool5")
    if fc:
        for name in ("fc6", "fc7"):
            top = L.InnerProduct(x, num_output=4096, param=param(name),
                                 weight_filler=dict(type="gaussian", std=fc_std),
                                 bias_filler=dict(type="constant", value=0))
            setattr(n, prefix + name, top)
            x = L.ReLU(top, in_place=True)
            setattr(n, prefix + "relu" + name[2:], x)
    return x
