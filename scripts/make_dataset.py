#!/usr/bin/env python
"""Generate the synthetic dataset: rendered image pairs with exact depth and pose, in the project's HDF5 format
(pygeometry/data/hdf5.py), with list files train.txt, val.txt and test.txt that Caffe's HDF5Data layer reads.

Every pair is its own scene (a room with boxes, textures drawn from natural photographs and procedural ones),
so the splits never share a scene: split s uses scene seeds seed + s * 10^7 + i. Images are RGB in [0, 1],
depth is z in metres (exact at pixel centres), K is [fx, fy, cx, cy].

The job resumes: files are written under a temporary name and renamed when complete, and a file that already
exists complete for the same settings (dataset.json) is kept; the temporary files of a killed run are deleted.
A split's list file is written (atomically) after all of its files are complete, so it only names complete files.

Example: scripts/make_dataset.py --out data/synthetic --train 1600 --val 96 --test 200 --motion handheld

The defaults (64 x 208, driving motion, 1600/96/200 pairs) are the embedded default dataset of `make train`.

With --sequence N it renders instead one camera path of N frames through a corridor (render_sequence: driving
motion that curves and comes back) and writes the N - 1 consecutive pairs (target frame k, source frame k + 1)
as the split `sequence` (<out>/sequence_000.h5, <out>/sequence.txt) with frame numbers and timestamps (10 Hz),
so scripts/evaluate.py chains them into a trajectory:
    scripts/make_dataset.py --sequence 24 --out data/sequence

With --triplets it renders instead, per sample, three frames of a short clip (render_triplet: the target and the
frames one motion step before and after it) in a scene varied in layout, size and camera height (varied_scene),
in the triplet format (src_prev, tgt, src_next, tgt_depth, K, prev_T_tgt, next_T_tgt, xi_prev, xi_next), for
learning depth and pose from video. --static P renders a fraction P of them with a still camera (counted in
dataset.json). --snippets S (default 50) also renders S test-only 5-frame snippets (render_snippet: five
consecutive frames of a clip, each stored as its three consecutive triplets with the snippet's number and the
target's frame) into snippets.txt, for SfMLearner's 5-frame snippet ATE. The embedded default data of
`make train-depth`:
    scripts/make_dataset.py --triplets --out data/synthetic_depth
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
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pygeometry.data.hdf5 import (KEYS, SNIPPET_KEYS, SRC_DEPTH_KEYS, STEREO_KEYS, TRIPLET_KEYS, DatasetWriter,  # noqa: E402
                                  remove_stale_partials, write_list_file)
from pygeometry.files import write_atomic  # noqa: E402
from pygeometry.progress import progress_bar  # noqa: E402
from pygeometry.render import (MOTIONS, pose_vector_from_matrix, render_pair, render_sequence,  # noqa: E402
                               render_snippet, render_triplet, snippet_triplets)

SPLITS = ("train", "val", "test")
SNIPPET_FRAMES = 5  # SfMLearner's snippet length
SNIPPET_SEED = 3  # the snippets' scenes use seeds seed + 3 * 10^7 + i (the splits use 0, 1, 2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "data" / "synthetic", help="output folder")
    p.add_argument("--train", type=int, default=1600, help="training pairs (default 1600)")
    p.add_argument("--val", type=int, default=96, help="validation pairs (default 96)")
    p.add_argument("--test", type=int, default=200, help="test pairs (default 200)")
    p.add_argument("--height", type=int, default=64, help="image height (default 64)")
    p.add_argument("--width", type=int, default=None,
                   help="image width (default 208; with --triplets 224, a multiple of the depth encoder's stride 32)")
    p.add_argument("--motion", choices=MOTIONS, default="driving",
                   help="camera motion distribution (default driving: forward 0.3-1 m, yaw within 3 deg)")
    p.add_argument("--motion-scale", type=float, default=1.0, help="multiplies every motion magnitude")
    p.add_argument("--jitter", type=float, default=0.1,
                   help="photometric jitter between views: exposure, colour cast, noise (default 0.1)")
    p.add_argument("--supersample", type=int, default=2, help="anti-aliasing rays per pixel side (default 2)")
    p.add_argument("--pairs-per-file", type=int, default=250, help="pairs per HDF5 file (default 250)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="render processes (default: cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (a bar shows only on a terminal)")
    p.add_argument("--sequence", type=int, default=0, metavar="N",
                   help="render one N-frame camera path (a trajectory) instead of the train/val/test splits")
    p.add_argument("--triplets", action="store_true",
                   help="render triplets (previous frame, target, next frame) for depth learning instead of pairs")
    p.add_argument("--stereo", type=float, default=0.0, metavar="B",
                   help="with --triplets: also render each target's stereo partner B metres to its right (a "
                        "calibrated rig, for the scale-aware stereo mode of train_depth.py; default 0: none)")
    p.add_argument("--snippets", type=int, default=50, metavar="S",
                   help=f"with --triplets: test-only {SNIPPET_FRAMES}-frame snippets for the snippet ATE, written as "
                        "their consecutive triplets to snippets.txt (default 50; 0: none)")
    p.add_argument("--src-depth", action="store_true",
                   help="pairs also carry the source's depth (src_depth), so that a photometric net can read them "
                        "backwards (train.py --reverse)")
    p.add_argument("--static", type=float, default=0.05,
                   help="with --triplets: fraction of triplets with a still camera (default 0.05)")
    args = p.parse_args(argv)
    if args.width is None:
        args.width = 224 if args.triplets else 208
    if args.src_depth and (args.triplets or args.sequence):
        p.error("--src-depth is for pair datasets (not --triplets or --sequence)")
    if not 0 <= args.static <= 1:
        p.error(f"--static must be in [0, 1], got {args.static}")
    return args


def _is_static(seed: int, cfg) -> bool:
    """Whether the triplet of this seed has a still camera (a fraction cfg['static'] of them, by the seed alone)."""
    return bool(np.random.default_rng([seed, 7]).uniform() < cfg["static"])


def _render(job):
    seed, cfg = job
    if cfg.get("triplets"):
        t = render_triplet(seed, height=cfg["height"], width=cfg["width"], motion=cfg["motion"],
                           supersample=cfg["supersample"], photometric_jitter=cfg["jitter"],
                           static=_is_static(seed, cfg), motion_scale=cfg["motion_scale"],
                           stereo_baseline=cfg.get("stereo", 0.0))
        return {k: t[k] for k in TRIPLET_KEYS + (STEREO_KEYS if cfg.get("stereo", 0.0) > 0 else ())}
    pair = render_pair(seed, height=cfg["height"], width=cfg["width"], motion=cfg["motion"],
                       supersample=cfg["supersample"], motion_scale=cfg["motion_scale"],
                       photometric_jitter=cfg["jitter"])
    return {k: pair[k] for k in _pair_keys(cfg)}


def _pair_keys(cfg) -> tuple:
    return KEYS + (SRC_DEPTH_KEYS if cfg.get("src_depth") else ())


def _render_snippet(job):
    index, seed, cfg = job
    snippet = render_snippet(seed, SNIPPET_FRAMES, height=cfg["height"], width=cfg["width"], motion=cfg["motion"],
                             supersample=cfg["supersample"], photometric_jitter=cfg["jitter"],
                             motion_scale=cfg["motion_scale"])
    return [dict(t, snippet=index, tgt_frame=k + 1) for k, t in enumerate(snippet_triplets(snippet))]


def write_snippets(args, cfg, out: Path, pool):
    """The --snippets split: S snippets, each as its SNIPPET_FRAMES - 2 triplets, whole snippets per file."""
    per_file = max(1, args.pairs_per_file // (SNIPPET_FRAMES - 2))
    bar = progress_bar(total=args.snippets, enabled=not args.no_progress, desc="snippets", unit="snippet")
    files = []
    for start in range(0, args.snippets, per_file):
        count = min(per_file, args.snippets - start)
        path = out / f"snippets_{start // per_file:03d}.h5"
        files.append(path)
        if _complete(path, count * (SNIPPET_FRAMES - 2), dict(cfg, stereo=0.0)):
            bar.update(count)
            continue
        jobs = [(i, args.seed + SNIPPET_SEED * 10_000_000 + i, cfg) for i in range(start, start + count)]
        with DatasetWriter(path, args.height, args.width, triplet=True, snippet=True) as writer:
            for triplets in pool.imap(_render_snippet, jobs, chunksize=2):
                for t in triplets:
                    writer.append(**{k: t[k] for k in TRIPLET_KEYS + SNIPPET_KEYS})
                bar.update(1)
    bar.close()
    write_list_file(out / "snippets.txt", files)


def _complete(path: Path, count: int, cfg) -> bool:
    """Whether path holds its `count` pairs at the configured size, written uncompressed. A gzip file from an
    older version counts as incomplete and is rendered again (the same pairs: every scene comes from its seed),
    because Caffe's HDF5Data reads it 7x slower in the training loop (pygeometry.data.hdf5.DatasetWriter)."""
    try:
        keys = (TRIPLET_KEYS + (STEREO_KEYS if cfg.get("stereo", 0.0) > 0 else ())) if cfg.get("triplets") \
            else _pair_keys(cfg)
        with h5py.File(path, "r") as f:
            return (all(f[k].shape[0] == count for k in keys) and f["tgt"].shape[2:] == (cfg["height"], cfg["width"])
                    and f["tgt"].compression is None)
    except (OSError, KeyError):
        return False


def write_manifest(path: Path, record: dict):
    """Write dataset.json atomically (a kill mid-write must not leave a file the next run cannot parse)."""
    write_atomic(path, json.dumps(record, indent=2))


def write_sequence(args, out: Path):
    """The --sequence mode: one rendered path, its consecutive pairs in <out>/sequence_000.h5 + sequence.txt."""
    if args.sequence < 2:
        sys.exit(f"--sequence needs at least 2 frames, got {args.sequence}")
    t0 = time.time()
    seq = render_sequence(args.seed, args.sequence, args.height, args.width, args.supersample, args.jitter)
    T = seq["world_T_cam"]
    path = out / "sequence_000.h5"
    with DatasetWriter(path, args.height, args.width, sequence=True) as writer:
        for k in progress_bar(range(args.sequence - 1), enabled=not args.no_progress, desc="sequence", unit="pair"):
            src_T_tgt = np.linalg.inv(T[k + 1]) @ T[k]
            writer.append(src=seq["images"][k + 1], tgt=seq["images"][k], tgt_depth=seq["depths"][k], K=seq["K"],
                          src_T_tgt=src_T_tgt, xi_gt=pose_vector_from_matrix(src_T_tgt), sequence=0, tgt_frame=k,
                          src_frame=k + 1, tgt_time=k / 10.0, src_time=(k + 1) / 10.0)
    write_list_file(out / "sequence.txt", [path])
    print(f"wrote {args.sequence - 1} pairs of a {args.sequence}-frame sequence to {path} in {time.time() - t0:.0f} s "
          f"(list: {out / 'sequence.txt'})")


def main(argv=None):
    args = parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)  # what a killed run was writing; it is written again below
    if args.sequence:
        return write_sequence(args, out)
    cfg = {k: getattr(args, k) for k in ("height", "width", "motion", "motion_scale", "jitter", "supersample",
                                          "pairs_per_file", "seed")}
    if args.src_depth and not args.triplets:  # (recorded only when asked: older pair datasets keep their settings)
        cfg.update(src_depth=True)
    if args.triplets:  # (pair datasets keep their recorded settings unchanged)
        cfg.update(triplets=True, static=args.static, **({"stereo": args.stereo} if args.stereo > 0 else {}),
                   **({"snippets": args.snippets} if args.snippets > 0 else {}))
    manifest = out / "dataset.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("config") != cfg:
        sys.exit(f"{out} holds a dataset made with other settings ({manifest}); choose another --out or delete it")
    write_manifest(manifest, {"config": cfg, "complete": False})
    counts = {"train": args.train, "val": args.val, "test": args.test}
    t0 = time.time()
    ctx = mp.get_context("fork")
    with ctx.Pool(max(1, args.workers)) as pool:
        for split_index, split in enumerate(SPLITS):
            n = counts[split]
            files = []
            bar = progress_bar(total=n, enabled=not args.no_progress, desc=f"{split:5s}", unit="pair")
            for start in range(0, n, args.pairs_per_file):
                count = min(args.pairs_per_file, n - start)
                path = out / f"{split}_{start // args.pairs_per_file:03d}.h5"
                files.append(path)
                if _complete(path, count, cfg):
                    bar.update(count)
                    continue
                seeds = [args.seed + split_index * 10_000_000 + i for i in range(start, start + count)]
                with DatasetWriter(path, args.height, args.width, triplet=args.triplets,
                                   stereo=args.triplets and args.stereo > 0,
                                   src_depth=bool(cfg.get("src_depth"))) as writer:
                    for pair in pool.imap(_render, [(s, cfg) for s in seeds], chunksize=4):
                        writer.append(**pair)
                        bar.update(1)
            bar.close()
            if files:
                write_list_file(out / f"{split}.txt", files)
        if args.triplets and args.snippets > 0:
            write_snippets(args, cfg, out, pool)
    seconds = time.time() - t0
    record = {"config": cfg, "complete": True, "pairs": counts, "seconds": round(seconds, 1)}
    if args.triplets and args.snippets > 0:
        record["snippets"] = {"snippets": args.snippets, "frames": SNIPPET_FRAMES,
                              "triplets": args.snippets * (SNIPPET_FRAMES - 2)}
    if args.triplets:
        record["static_triplets"] = {split: sum(_is_static(args.seed + i * 10_000_000 + k, cfg) for k in range(counts[split]))
                                     for i, split in enumerate(SPLITS)}
    write_manifest(manifest, record)
    print(f"wrote {sum(counts.values())} {'triplets' if args.triplets else 'pairs'} to {out} in {seconds:.0f} s "
          f"(lists: {', '.join(str(out / f'{s}.txt') for s in SPLITS if counts[s])})")


if __name__ == "__main__":
    main()
