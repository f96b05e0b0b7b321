#!/usr/bin/env python
"""Generate the synthetic dataset: rendered image pairs with exact depth and pose, in the project's HDF5 format
(pygeometry/data/hdf5.py), with list files train.txt, val.txt and test.txt that Caffe's HDF5Data layer reads.

Every pair is its own scene (a room with boxes, textures drawn from natural photographs and procedural ones),
so the splits never share a scene: split s uses scene seeds seed + s * 10^7 + i. Images are RGB in [0, 1],
depth is z in metres (exact at pixel centres), K is [fx, fy, cx, cy].

The job resumes: files are written under a temporary name and renamed when complete, and a file that already
exists complete for the same settings (dataset.json) is kept. The list files are written last.

Example: scripts/make_dataset.py --out data/synthetic --train 1600 --val 96 --test 200 --motion handheld

The defaults (64 x 208, driving motion, 1600/96/200 pairs) are the embedded default dataset of `make train`.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import h5py
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pygeometry.data.hdf5 import KEYS, DatasetWriter, write_list_file  # noqa: E402
from pygeometry.render import MOTIONS, render_pair  # noqa: E402

SPLITS = ("train", "val", "test")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "data" / "synthetic", help="output folder")
    p.add_argument("--train", type=int, default=1600, help="training pairs (default 1600)")
    p.add_argument("--val", type=int, default=96, help="validation pairs (default 96)")
    p.add_argument("--test", type=int, default=200, help="test pairs (default 200)")
    p.add_argument("--height", type=int, default=64, help="image height (default 64)")
    p.add_argument("--width", type=int, default=208, help="image width (default 208)")
    p.add_argument("--motion", choices=MOTIONS, default="driving",
                   help="camera motion distribution (default driving: forward 0.3-1 m, yaw within 3 deg)")
    p.add_argument("--motion-scale", type=float, default=1.0, help="multiplies every motion magnitude")
    p.add_argument("--jitter", type=float, default=0.1,
                   help="photometric jitter between views: exposure, colour cast, noise (default 0.1)")
    p.add_argument("--supersample", type=int, default=2, help="anti-aliasing rays per pixel side (default 2)")
    p.add_argument("--pairs-per-file", type=int, default=250, help="pairs per HDF5 file (default 250)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="render processes (default: cores)")
    return p.parse_args(argv)


def _render(job):
    seed, cfg = job
    pair = render_pair(seed, height=cfg["height"], width=cfg["width"], motion=cfg["motion"],
                       supersample=cfg["supersample"], motion_scale=cfg["motion_scale"],
                       photometric_jitter=cfg["jitter"])
    return {k: pair[k] for k in KEYS}


def _complete(path: Path, count: int, cfg) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return all(f[k].shape[0] == count for k in KEYS) and f["src"].shape[2:] == (cfg["height"], cfg["width"])
    except (OSError, KeyError):
        return False


def main(argv=None):
    args = parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = {k: getattr(args, k) for k in ("height", "width", "motion", "motion_scale", "jitter", "supersample",
                                          "pairs_per_file", "seed")}
    manifest = out / "dataset.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("config") != cfg:
        sys.exit(f"{out} holds a dataset made with other settings ({manifest}); choose another --out or delete it")
    manifest.write_text(json.dumps({"config": cfg, "complete": False}, indent=2))
    counts = {"train": args.train, "val": args.val, "test": args.test}
    t0 = time.time()
    ctx = mp.get_context("fork")
    with ctx.Pool(max(1, args.workers)) as pool:
        for split_index, split in enumerate(SPLITS):
            n = counts[split]
            files = []
            bar = tqdm(total=n, desc=f"{split:5s}", unit="pair")
            for start in range(0, n, args.pairs_per_file):
                count = min(args.pairs_per_file, n - start)
                path = out / f"{split}_{start // args.pairs_per_file:03d}.h5"
                files.append(path)
                if _complete(path, count, cfg):
                    bar.update(count)
                    continue
                seeds = [args.seed + split_index * 10_000_000 + i for i in range(start, start + count)]
                with DatasetWriter(path, args.height, args.width) as writer:
                    for pair in pool.imap(_render, [(s, cfg) for s in seeds], chunksize=4):
                        writer.append(**pair)
                        bar.update(1)
            bar.close()
            if files:
                write_list_file(out / f"{split}.txt", files)
    seconds = time.time() - t0
    manifest.write_text(json.dumps({"config": cfg, "complete": True, "pairs": counts,
                                    "seconds": round(seconds, 1)}, indent=2))
    print(f"wrote {sum(counts.values())} pairs to {out} in {seconds:.0f} s "
          f"(lists: {', '.join(str(out / f'{s}.txt') for s in SPLITS if counts[s])})")


if __name__ == "__main__":
    main()
