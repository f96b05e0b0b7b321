#!/usr/bin/env python
"""Write a PNG contact sheet of a dataset split: per pair, the source, the target, the target depth
(colour-mapped inverse depth, black = invalid) and the ground-truth optical flow target -> source (colour
wheel: hue = direction, saturation = magnitude), so a person can look at what the network will see.

The flow is computed here with plain numpy from tgt_depth, K and src_T_tgt (not with the layers).

Example: scripts/show_dataset.py data/synthetic/train.txt --pairs 6 --out runs/dataset_train.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pygeometry.data.hdf5 import KEYS, read_list_file  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("split", type=Path, help="split list file (e.g. data/synthetic/train.txt) or one .h5 file")
    p.add_argument("--pairs", type=int, default=6, help="pairs to show (default 6)")
    p.add_argument("--out", type=Path, default=None, help="PNG path (default: next to the split, <split>.png)")
    return p.parse_args(argv)


def gt_flow(depth, K, src_T_tgt):
    """Flow (2, H, W) from target pixels to their source positions; NaN where depth is invalid or z <= 0."""
    H, W = depth.shape[-2:]
    fx, fy, cx, cy = K
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    d = depth.reshape(H, W).astype(np.float64)
    P = np.stack([(xs - cx) / fx * d, (ys - cy) / fy * d, d]).reshape(3, -1)
    Q = src_T_tgt[:3, :3] @ P + src_T_tgt[:3, 3:4]
    ok = (d.reshape(-1) > 0) & (Q[2] > 1e-6)
    z = np.where(ok, Q[2], 1.0)
    flow = np.stack([fx * Q[0] / z + cx - xs.reshape(-1), fy * Q[1] / z + cy - ys.reshape(-1)])
    flow[:, ~ok] = np.nan
    return flow.reshape(2, H, W)


def flow_to_bgr(flow, max_mag=None):
    mag = np.hypot(flow[0], flow[1])
    valid = np.isfinite(mag)
    max_mag = max_mag or (np.percentile(mag[valid], 99) if valid.any() else 1.0) or 1.0
    hsv = np.zeros(flow.shape[1:] + (3,), np.uint8)
    hsv[..., 0] = ((np.degrees(np.arctan2(np.nan_to_num(flow[1]), np.nan_to_num(flow[0]))) % 360) / 2).astype(np.uint8)
    hsv[..., 1] = (np.clip(np.nan_to_num(mag) / max_mag, 0, 1) * 255).astype(np.uint8)
    hsv[..., 2] = np.where(valid, 255, 0).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def depth_to_bgr(depth):
    d = depth.reshape(depth.shape[-2:])
    inv = np.where(d > 0, 1.0 / np.maximum(d, 1e-6), 0)
    scale = inv.max() or 1.0
    bgr = cv2.applyColorMap((inv / scale * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    bgr[d <= 0] = 0
    return bgr


def rgb_to_bgr8(img):
    return np.ascontiguousarray((np.clip(img.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)[:, :, ::-1])


def load_pairs(path: Path, count: int):
    files = [path] if path.suffix == ".h5" else read_list_file(path)
    pairs = []
    for f in files:
        with h5py.File(f, "r") as h5:
            missing = [k for k in KEYS if k not in h5]
            if missing:
                raise KeyError(f"{f}: missing datasets {missing} (expected {list(KEYS)})")
            for i in range(min(count - len(pairs), h5["src"].shape[0])):
                pairs.append({k: h5[k][i] for k in KEYS})
        if len(pairs) >= count:
            break
    return pairs


def contact_sheet(pairs):
    rows = []
    for i, p in enumerate(pairs):
        tiles = [rgb_to_bgr8(p["src"]), rgb_to_bgr8(p["tgt"]), depth_to_bgr(p["tgt_depth"]),
                 flow_to_bgr(gt_flow(p["tgt_depth"], p["K"], p["src_T_tgt"]))]
        row = np.hstack(tiles)
        t, w = p["xi_gt"][:3], np.degrees(p["xi_gt"][3:])
        text = f"#{i} t=[{t[0]:+.2f} {t[1]:+.2f} {t[2]:+.2f}] m  w=[{w[0]:+.1f} {w[1]:+.1f} {w[2]:+.1f}] deg"
        cv2.putText(row, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(row)
    sheet = np.vstack(rows)
    header = np.zeros((20, sheet.shape[1], 3), np.uint8)
    W = pairs[0]["src"].shape[2]
    for j, label in enumerate(["source", "target", "target depth (inverse)", "GT flow target->source"]):
        cv2.putText(header, label, (4 + j * W, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([header, sheet])


def main(argv=None):
    args = parse_args(argv)
    pairs = load_pairs(args.split, args.pairs)
    if not pairs:
        sys.exit(f"{args.split}: no pairs found")
    out = args.out or args.split.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), contact_sheet(pairs))
    print(f"wrote {out} ({len(pairs)} pairs)")


if __name__ == "__main__":
    main()
