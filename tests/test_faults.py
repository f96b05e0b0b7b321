"""Faults tried and survived: processes killed with SIGKILL (training during a snapshot write, dataset generation
mid-file) resume from what was complete, and a bad dataset (truncated or corrupt HDF5 file, a list naming a
missing file, NaN in a depth map or an image, another image size than the net's) stops scripts/train.py and
scripts/evaluate.py with one clear error naming the file and the pair, never a Caffe abort or a NaN loss."""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from pygeometry.data.hdf5 import KEYS, DatasetWriter, SplitError, read_list_file, validate_split, write_list_file

REPO = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO / "scripts" / "train.py"
TRAIN = [sys.executable, str(TRAIN_SCRIPT), "--no-progress", "--batch", "2"]
EVALUATE = [sys.executable, str(REPO / "scripts" / "evaluate.py"), "--no-net", "--no-classical", "--no-progress"]
MAKE_DATASET = [sys.executable, str(REPO / "scripts" / "make_dataset.py")]
CAFFE_ABORT = ("Check failed", "*** Check failure stack trace")


def copy_split(src: Path, dst: Path) -> Path:
    """A copy of a dataset folder whose list files name the copied .h5 files (lists hold absolute paths)."""
    dst.mkdir(parents=True)
    for split in ("train", "val", "test"):
        files = []
        for f in read_list_file(src / f"{split}.txt"):
            files.append(dst / f.name)
            shutil.copyfile(f, files[-1])
        write_list_file(dst / f"{split}.txt", files)
    return dst


# ------------------------------------------------------------------------ scripts/train.py killed mid-snapshot

# Runs scripts/train.py with its Caffe solver wrapped: at the snapshot call number KILL_AT_CALL (1 = the first),
# after Caffe has written the files, they are cut to half their size (what a kill during the write leaves) and
# the process kills itself with SIGKILL, before train.py can record anything.
KILLED_MID_SNAPSHOT = """
import os, runpy, signal, sys
import caffe

KILL_AT_CALL, OUT = {kill_at_call}, {out!r}
calls = []
real_get_solver = caffe.get_solver


class KilledMidSnapshot:
    def __init__(self, solver):
        self._solver = solver

    def __getattr__(self, name):
        return getattr(self._solver, name)

    def snapshot(self):
        self._solver.snapshot()
        calls.append(self._solver.iter)
        if len(calls) == KILL_AT_CALL:
            for suffix in (".caffemodel", ".solverstate"):
                path = os.path.join(OUT, f"snap_iter_{{self._solver.iter}}{{suffix}}")
                os.truncate(path, os.path.getsize(path) // 2)
            os.kill(os.getpid(), signal.SIGKILL)


caffe.get_solver = lambda path: KilledMidSnapshot(real_get_solver(path))
sys.argv = {argv!r}
runpy.run_path({script!r}, run_name="__main__")
"""


def _train_killed_mid_snapshot(args, out: Path, kill_at_call: int):
    code = KILLED_MID_SNAPSHOT.format(kill_at_call=kill_at_call, out=str(out), argv=[str(TRAIN_SCRIPT)] + args,
                                      script=str(TRAIN_SCRIPT))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)


def _checkpoint(out: Path) -> dict:
    return json.loads((out / "checkpoint.json").read_text())


@pytest.mark.parametrize("iters, kill_at_call", [
    (6, 2),  # snapshots at 2, 4, 6: killed while the new snapshot of iteration 4 is written
    (4, 3),  # snapshots at 2, 4 and the final one at 4 again: killed while iteration 4's files are rewritten
], ids=["new-snapshot", "rewritten-snapshot"])
def test_train_killed_during_a_snapshot_write_resumes_from_the_last_complete_snapshot(tmp_path, tiny_split, iters,
                                                                                      kill_at_call):
    out = tmp_path / "run"
    args = ["--no-progress", "--batch", "2", "--data", str(tiny_split), "--out", str(out), "--val-interval", "100",
            "--snapshot-interval", "2", "--iters", str(iters)]
    proc = _train_killed_mid_snapshot(args, out, kill_at_call)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    half_written = out / "snap_iter_4.caffemodel"
    assert half_written.exists()  # the killed write left a half-written snapshot behind...
    ckpt = _checkpoint(out)  # ...that checkpoint.json does not name
    assert ckpt["iter"] == 2 and [e["iter"] for e in ckpt["snapshots"]] == [2], ckpt
    assert Path(ckpt["caffemodel"]).stat().st_size == ckpt["bytes"]["caffemodel"]

    proc = subprocess.run(TRAIN + args[3:] + ["--resume", "auto"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    log = (out / "train.log").read_text()
    assert f"resumed from {out / 'snap_iter_2.solverstate'} at iteration 2" in log, log
    assert (out / "final.caffemodel").exists() and (out / "result.json").exists()
    ckpt = _checkpoint(out)
    assert ckpt["iter"] == iters and [e["iter"] for e in ckpt["snapshots"]] == list(range(2, iters + 1, 2))
    for entry in ckpt["snapshots"]:  # every recorded snapshot is complete (the half-written one was rewritten)
        for kind in ("caffemodel", "solverstate"):
            assert Path(entry[kind]).stat().st_size == entry["bytes"][kind], entry
    # The curves hold each iteration once up to the end (rows of the killed run after iteration 2 were dropped;
    # it saved curves.csv only if it reached its final validation).
    rows = [int(r.split(",")[0]) for r in (out / "curves.csv").read_text().splitlines()[1:] if r.endswith("train")]
    assert rows == list(range(rows[0], iters + 1)) and rows[0] in (1, 3), rows


def test_train_resume_skips_a_damaged_newest_snapshot(tmp_path, tiny_split):
    """A recorded snapshot whose file was cut afterwards (a disk that lost its tail) is not picked up either."""
    out = tmp_path / "run"
    args = ["--data", str(tiny_split), "--out", str(out), "--val-interval", "100", "--snapshot-interval", "2"]
    proc = subprocess.run(TRAIN + args + ["--iters", "4"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = out / "snap_iter_4.caffemodel"
    os.truncate(model, model.stat().st_size // 2)
    proc = subprocess.run(TRAIN + args + ["--iters", "6", "--resume", "auto"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "train.log").read_text()
    assert "snapshot at iteration 4 are damaged" in log and "using the one at iteration 2" in log, log
    assert f"resumed from {out / 'snap_iter_2.solverstate'} at iteration 2" in log
    assert _checkpoint(out)["iter"] == 6


def test_train_killed_at_random_times_always_resumes(tmp_path, tiny_split):
    """Real SIGKILLs at random moments of a run that snapshots every iteration (so that many kills land in a
    snapshot write); each `--resume auto` must start from a complete snapshot, and the run must finish."""
    out = tmp_path / "run"
    args = TRAIN + ["--data", str(tiny_split), "--out", str(out), "--val-interval", "100", "--snapshot-interval", "1",
                    "--iters", "60", "--resume", "auto"]
    rng = random.Random(7)
    for attempt in range(3):
        before = _checkpoint(out)["iter"] if (out / "checkpoint.json").exists() else 0
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and not (
                (out / "checkpoint.json").exists() and _checkpoint(out)["iter"] > before):
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))  # this run has resumed and snapshots: kill it somewhere in there
        assert proc.poll() is None, "the run ended before it was killed"
        proc.kill()
        stderr = proc.communicate(timeout=60)[1]
        assert not any(s in stderr for s in CAFFE_ABORT), stderr[-3000:]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "train.log").read_text()
    assert log.count("resumed from") == 3 and "trained 60 iterations" in log, log
    assert _checkpoint(out)["iter"] == 60


# ----------------------------------------------------------------------- scripts/make_dataset.py killed mid-file

def _start_and_kill_when(cmd, partial_glob: str, folder: Path):
    """Start cmd in its own process group; SIGKILL the whole group (the renderer and its worker processes) as soon
    as a temporary file matching partial_glob appears in folder, i.e. while that file is being written."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(folder.glob(partial_glob)):
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc


def test_make_dataset_killed_mid_file_resumes_and_lists_name_only_complete_files(tmp_path):
    out, reference = tmp_path / "killed", tmp_path / "reference"
    settings = ["--train", "24", "--val", "8", "--test", "4", "--pairs-per-file", "8", "--height", "48", "--width",
                "80", "--workers", "1"]
    proc = subprocess.run(MAKE_DATASET + ["--out", str(reference)] + settings, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]

    cmd = MAKE_DATASET + ["--out", str(out)] + settings
    for partial in (".train_001.h5.partial-*", ".val_000.h5.partial-*"):
        for attempt in range(5):  # the kill must land while the file is written: its temporary file is left
            proc = _start_and_kill_when(cmd, partial, out)
            if list(out.glob(partial)):
                break
        assert proc.returncode == -signal.SIGKILL and list(out.glob(partial)), f"never killed mid-file {partial}"
        assert not (out / partial[1:].split(".partial")[0]).exists()  # the file being written is not there...
        for split in ("train", "val", "test"):  # ...and every list file that exists names complete files only
            if (out / f"{split}.txt").exists():
                validate_split(out / f"{split}.txt", expected_hw=(48, 80))
        assert (out / "train.txt").exists() == (partial.startswith(".val")), partial
        assert not (out / "val.txt").exists()

    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(out.glob(".*partial*"))  # the killed runs' temporary files are gone
    for split, pairs in (("train", 24), ("val", 8), ("test", 4)):
        info = validate_split(out / f"{split}.txt", expected_hw=(48, 80))
        assert info.pairs == pairs
        for ours, theirs in zip(info.files, read_list_file(reference / f"{split}.txt")):
            with h5py.File(ours, "r") as a, h5py.File(theirs, "r") as b:
                for key in ("src", "tgt_depth", "xi_gt"):
                    np.testing.assert_array_equal(a[key][...], b[key][...])  # the same pairs as a run never killed


# ------------------------------------------------------------------------------------ bad datasets, clear errors

def _truncate(split: Path):
    path = read_list_file(split / "train.txt")[0]
    os.truncate(path, path.stat().st_size // 2)
    return path


def _overwrite_chunk(path: Path, key: str, index: int):
    """0xFF bytes over the middle of the chunk that holds pair `index` of `key`."""
    with h5py.File(path, "r") as f:
        chunk = f[key].id.get_chunk_info_by_coord((index, 0, 0, 0))
    with open(path, "r+b") as f:
        f.seek(chunk.byte_offset + chunk.size // 4)
        f.write(b"\xff" * (chunk.size // 2))


def _corrupt_a_compressed_chunk(split: Path):
    """The first file rewritten with gzip (the format allows it), then pair 5's target depth chunk no longer
    inflates."""
    path = read_list_file(split / "train.txt")[0]
    with h5py.File(path, "r") as f:
        data = {k: f[k][...] for k in KEYS}
    n, _, height, width = data["src"].shape
    path.unlink()
    with DatasetWriter(path, height, width, compression="gzip") as w:
        for i in range(n):
            w.append(**{k: v[i] for k, v in data.items()})
    _overwrite_chunk(path, "tgt_depth", 5)
    return path


def _corrupt_an_uncompressed_chunk(split: Path):
    """Files are written uncompressed: the same damage reads as NaN (0xFFFFFFFF) in pair 5's target depth."""
    path = read_list_file(split / "train.txt")[0]
    _overwrite_chunk(path, "tgt_depth", 5)
    return path


def _missing_file(split: Path):
    missing = split / "train_001.h5"
    write_list_file(split / "train.txt", read_list_file(split / "train.txt") + [missing])
    return missing


def _nan_in(key, index):
    def fault(split: Path):
        path = read_list_file(split / "train.txt")[0]
        with h5py.File(path, "r+") as f:
            values = f[key][index]
            values[0, 10, 20] = np.nan
            f[key][index] = values
        return path
    return fault


def _other_image_size(split: Path):
    """The val split becomes 56 x 80 images (the nets are generated for the train split's 48 x 80)."""
    path = split / "val_000.h5"
    rng = np.random.default_rng(0)
    with DatasetWriter(path, 56, 80) as w:
        for _ in range(4):
            w.append(src=rng.random((3, 56, 80)), tgt=rng.random((3, 56, 80)), tgt_depth=np.full((1, 56, 80), 2.0),
                     K=[40.0, 40.0, 39.5, 27.5], src_T_tgt=np.eye(4), xi_gt=np.zeros(6))
    write_list_file(split / "val.txt", [path])
    return path


FAULTS = {
    "truncated": (_truncate, "cannot be read as HDF5"),
    "corrupt-compressed": (_corrupt_a_compressed_chunk, "'tgt_depth' of pair 5 cannot be read"),
    "corrupt-uncompressed": (_corrupt_an_uncompressed_chunk, "'tgt_depth' of pair 5 contains NaN or inf"),
    "missing-file": (_missing_file, "train.txt: listed file"),
    "nan-depth": (_nan_in("tgt_depth", 3), "'tgt_depth' of pair 3 contains NaN or inf"),
    "nan-image": (_nan_in("src", 6), "'src' of pair 6 contains NaN or inf"),
    "other-size": (_other_image_size, "'src' is 56x80 (H x W) but the net's input is 48x80"),
}


def _assert_one_clear_error(proc, path: Path, text: str):
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert not any(s in proc.stderr for s in CAFFE_ABORT) and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert str(path) in errors[0] and text in errors[0], errors[0]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_bad_dataset_stops_training_with_one_error_naming_the_file(tmp_path, tiny_split, fault):
    make_fault, text = FAULTS[fault]
    data = copy_split(tiny_split, tmp_path / "data")
    path = make_fault(data)
    with pytest.raises(SplitError, match=re.escape(text)) as info:
        for split in ("train", "val"):
            validate_split(data / f"{split}.txt", expected_hw=(48, 80))
    assert str(path) in str(info.value)
    proc = subprocess.run(TRAIN + ["--data", str(data), "--out", str(tmp_path / "run"), "--iters", "2"],
                          capture_output=True, text=True, timeout=600)
    _assert_one_clear_error(proc, path, text)
    assert not (tmp_path / "run" / "checkpoint.json").exists()  # stopped before training


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "other-size"])
def test_a_bad_split_stops_evaluation_with_one_error_naming_the_file(tmp_path, tiny_split, fault):
    make_fault, text = FAULTS[fault]
    data = copy_split(tiny_split, tmp_path / "data")
    path = make_fault(data)
    proc = subprocess.run(EVALUATE + ["--split", str(data / "train.txt"), "--out", str(tmp_path / "eval")],
                          capture_output=True, text=True, timeout=600)
    _assert_one_clear_error(proc, path, text)
