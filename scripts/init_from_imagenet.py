#!/usr/bin/env python
"""Net surgery: initial weights for the pose networks from a BVLC-layout AlexNet caffemodel (bvlc_alexnet:
layers conv1..conv5, fc6, fc7 (fc8 is ignored)).

- late fusion / supervised (siamese, shared trunk): conv1..conv5 copied into src_conv*/tgt_conv* (one shared
  parameter set);
- early fusion (6 input channels, source then target): conv1's pretrained 3-channel kernel copied to both halves
  and halved, so that feeding the same image twice gives the pretrained conv1 response; conv2..conv5 copied;
- fc6/fc7 are copied only with --fc and when their shapes fit the input size (fc6 needs pool5 = 256x6x6,
  e.g. 227x227 or 128x416 inputs), else they keep their random initialisation (reported).

Check: the script feeds one image to both inputs and compares the pose net's conv1 response (mean |response|
and max difference) with the pretrained conv1 applied to that image.

Example: scripts/init_from_imagenet.py bvlc_alexnet.caffemodel --network early_fusion_photometric \
             --out runs/init_early.caffemodel && scripts/train.py --weights runs/init_early.caffemodel
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from pygeometry.files import atomic_output  # noqa: E402
from pygeometry.nets import EARLY_FUSION, NETWORKS, pose_net  # noqa: E402

TRUNK = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("caffemodel", type=Path, help="BVLC-layout AlexNet weights (conv1..conv5, fc6, fc7)")
    p.add_argument("--network", choices=NETWORKS, default="early_fusion_photometric", help="target network")
    p.add_argument("--out", type=Path, required=True, help="output .caffemodel")
    p.add_argument("--height", type=int, default=64, help="input height of the pose net (default 64)")
    p.add_argument("--width", type=int, default=208, help="input width of the pose net (default 208)")
    p.add_argument("--fc", action="store_true", help="the pose net keeps fc6/fc7 (copy them when they fit)")
    return p.parse_args(argv)


def read_caffemodel(path: Path) -> dict:
    """{layer name: [blob arrays]} from a .caffemodel (new- or V1-style layers)."""
    from caffe.proto import caffe_pb2

    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    msg = caffe_pb2.NetParameter()
    try:
        msg.ParseFromString(path.read_bytes())
    except Exception as e:  # protobuf raises DecodeError subclasses
        raise ValueError(f"{path} is not a Caffe model (protobuf parse failed: {e})") from None
    layers = {}
    for layer in list(msg.layer) + list(msg.layers):
        blobs = []
        for b in layer.blobs:
            shape = tuple(b.shape.dim) if b.HasField("shape") else (b.num, b.channels, b.height, b.width)
            blobs.append(np.asarray(b.data, np.float32).reshape(shape))
        if blobs:
            layers[layer.name] = blobs
    missing = [name for name in TRUNK[:5] if name not in layers]
    if missing:
        raise ValueError(f"{path}: not a BVLC AlexNet layout, missing layers {missing} (has {sorted(layers)})")
    return layers


def _net_from(spec, phase):
    import caffe

    fd, tmp = tempfile.mkstemp(suffix=".prototxt")
    with os.fdopen(fd, "w") as f:
        f.write(str(spec.to_proto()))
    try:
        return caffe.Net(tmp, phase)
    finally:
        os.remove(tmp)


def surgery(source: dict, network: str, height: int, width: int, fc: bool):
    """Build the pose net (deploy), fill its trunk from `source`; returns (net, report lines)."""
    import caffe

    net = _net_from(pose_net(network, "deploy", batch_size=1, height=height, width=width, fc=fc), caffe.TEST)
    prefix = "" if network in EARLY_FUSION else "src_"
    report = []
    for name in TRUNK if fc else TRUNK[:5]:
        target = prefix + name
        if name not in source or target not in net.params:
            report.append(f"{name}: not in {'the source' if name not in source else 'the pose net'}, skipped")
            continue
        weights, bias = source[name][0], source[name][1]
        dst_w = net.params[target][0].data
        if name == "conv1" and network in EARLY_FUSION:
            weights = np.concatenate([weights, weights], axis=1) / 2.0
            note = "3 -> 6 input channels, copied to both halves and halved"
        else:
            note = "copied"
        if weights.shape != dst_w.shape:
            report.append(f"{name}: shape {weights.shape} does not fit {dst_w.shape}, kept random")
            continue
        dst_w[...] = weights
        net.params[target][1].data[...] = bias.reshape(net.params[target][1].data.shape)
        report.append(f"{name} -> {target}: {note} {tuple(weights.shape)}")
    return net, report


def check_conv1(net, source: dict, network: str, rng=None):
    """Same image into both inputs: the pose net's conv1 response vs the pretrained conv1 alone."""
    import caffe
    from caffe import layers as L

    rng = rng or np.random.default_rng(0)
    image = rng.uniform(size=net.blobs["src"].data.shape).astype(np.float32)
    net.blobs["src"].data[...] = image
    net.blobs["tgt"].data[...] = image
    net.forward()
    ours = net.blobs["conv1" if network in EARLY_FUSION else "src_conv1"].data.copy()
    ref_spec = caffe.NetSpec()
    pre = net.blobs["src_pre"].data  # the same preprocessing (255 * BGR - mean, at the trunk's resolution)
    ref_spec.data = L.Input(shape=dict(dim=list(pre.shape)))
    ref_spec.conv1 = L.Convolution(ref_spec.data, kernel_size=11, stride=4, num_output=source["conv1"][0].shape[0])
    ref_spec.relu1 = L.ReLU(ref_spec.conv1, in_place=True)
    ref = _net_from(ref_spec, caffe.TEST)
    ref.params["conv1"][0].data[...] = source["conv1"][0]
    ref.params["conv1"][1].data[...] = source["conv1"][1]
    ref.blobs["data"].data[...] = pre
    ref.forward()
    expected = ref.blobs["conv1"].data
    return float(np.abs(expected).mean()), float(np.abs(ours).mean()), float(np.abs(ours - expected).max())


def main(argv=None):
    args = parse_args(argv)
    source = read_caffemodel(args.caffemodel)
    net, report = surgery(source, args.network, args.height, args.width, args.fc)
    for line in report:
        print(line)
    ref_mean, our_mean, max_diff = check_conv1(net, source, args.network)
    print(f"conv1 check (same image into both inputs): mean |response| pretrained {ref_mean:.4f}, "
          f"pose net {our_mean:.4f}, max difference {max_diff:.2e}")
    if max_diff > 1e-3 * max(1.0, ref_mean):
        sys.exit("conv1 responses differ: the surgery is wrong")
    with atomic_output(args.out) as tmp:
        net.save(str(tmp))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
