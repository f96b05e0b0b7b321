"""A training run's folder, shared by the training scripts (scripts/train.py, scripts/train_depth.py): clean stops
on SIGINT/SIGTERM, snapshots that a kill never leaves looking complete (checkpoint.json), resuming from the newest
intact one, and the settings a resumed run must share with the run it continues. No caffe import (the solver is
passed in).
"""
from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

from .files import atomic_output, write_atomic


class Stopper:
    """Turns SIGINT/SIGTERM into a flag checked between iterations."""

    def __init__(self):
        self.stop = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.stop:  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.stop = True


def read_checkpoint(out: Path) -> list:
    """The complete snapshots recorded in <out>/checkpoint.json, oldest first: dicts with iter, solverstate,
    caffemodel and bytes (each file's size when it was complete; absent in checkpoints of older versions)."""
    ckpt = out / "checkpoint.json"
    if not ckpt.exists():
        return []
    record = json.loads(ckpt.read_text())
    if "snapshots" in record:  # (an empty list when every snapshot was dropped)
        return record["snapshots"]
    return [{k: record[k] for k in ("iter", "solverstate", "caffemodel")}]


def snapshot_intact(entry: dict) -> bool:
    """Both files of a recorded snapshot exist with the sizes they had when they were complete."""
    for kind in ("solverstate", "caffemodel"):
        path = Path(entry[kind])
        if not path.is_file() or ("bytes" in entry and path.stat().st_size != entry["bytes"][kind]):
            return False
    return True


def last_intact_snapshot(recorded: list):
    """The newest snapshot of read_checkpoint()'s list whose files are intact (see snapshot()), or None."""
    return next((e for e in reversed(recorded) if snapshot_intact(e)), None)


def snapshot(solver, out: Path) -> Path:
    """Write <out>/snap_iter_<N>.caffemodel and .solverstate, then record them in checkpoint.json.

    Caffe writes both files in place (the solverstate names the caffemodel by its final path, so they cannot be
    written under temporary names): a process killed meanwhile leaves them half-written. So checkpoint.json,
    replaced atomically, names only complete files: a new snapshot is added after both files are written, with
    their sizes; one at an iteration already recorded (the final snapshot after a periodic one, or a run resumed
    from an earlier snapshot reaching it again) is first removed from the record, then rewritten. `--resume auto`
    takes the newest recorded snapshot whose files still have their sizes (last_intact_snapshot).

    Returns:
        The snapshot's .caffemodel.
    """
    it = solver.iter
    recorded = read_checkpoint(out)
    earlier = [e for e in recorded if e["iter"] < it]  # later ones belong to a run this one has replaced
    if len(earlier) != len(recorded):
        write_atomic(out / "checkpoint.json", json.dumps(dict(earlier[-1] if earlier else {}, snapshots=earlier),
                                                         indent=1))
    solver.snapshot()
    state = out / f"snap_iter_{it}.solverstate"
    model = out / f"snap_iter_{it}.caffemodel"
    entry = {"iter": it, "solverstate": str(state), "caffemodel": str(model),
             "bytes": {"solverstate": state.stat().st_size, "caffemodel": model.stat().st_size}}
    write_atomic(out / "checkpoint.json", json.dumps(dict(entry, snapshots=earlier + [entry]), indent=1))
    return model


def settings_of(args, ignore) -> dict:
    """What defines a run: every argparse option but those in `ignore` (paths resolved), for :func:`check_resume`."""
    return {k: (str(Path(v).resolve()) if isinstance(v, Path) else v)
            for k, v in sorted(vars(args).items()) if k not in ignore}


def check_resume(out: Path, settings: dict, resume) -> str | None:
    """None when a run with these settings may write into `out` (with --resume auto: the run recorded there, if any,
    was made with the same settings); else the reason it may not. Records the settings in <out>/settings.json.
    An option missing from the record counts as None (its default), so adding an option does not orphan old runs."""
    if resume == "auto" and read_checkpoint(out):
        recorded = json.loads((out / "settings.json").read_text()) if (out / "settings.json").exists() else None
        differing = [] if recorded is None else [k for k in sorted(set(recorded) | set(settings))
                                                 if recorded.get(k) != settings.get(k)]
        if recorded is None or differing:
            changed = ("it records no settings (an older version made it)" if recorded is None else
                       "; ".join(f"{k}: {recorded.get(k)!r} then, {settings.get(k)!r} now" for k in differing))
            return (f"--resume auto: the run in {out} was made with other settings ({changed}); resuming would mix "
                    f"two recipes. Use another --out, or delete {out} to start again")
    write_atomic(out / "settings.json", json.dumps(settings, indent=1))
    return None


def resume_state(out: Path, resume, log):
    """The .solverstate to restore: `resume` itself, or with 'auto' the newest intact snapshot recorded in `out`
    (a damaged newer one is logged), or None to start at iteration 0."""
    if resume != "auto":
        return resume
    recorded = read_checkpoint(out)
    last = last_intact_snapshot(recorded)
    if recorded and last is not recorded[-1]:
        log(f"{out / 'checkpoint.json'}: the files of the snapshot at iteration {recorded[-1]['iter']} are "
            f"damaged (missing or another size); " + (f"using the one at iteration {last['iter']}" if last else
                                                      "no intact snapshot, starting at iteration 0"))
    return last["solverstate"] if last else None


def finish(solver, out: Path, stopper: Stopper, iters: int, started: float, log):
    """The end of a training loop: a last snapshot; then, unless the run was stopped (the message says how to
    continue), <out>/final.caffemodel, written atomically. Returns its path, or None when stopped."""
    model = snapshot(solver, out)
    if stopper.stop:
        log(f"stopped at iteration {solver.iter}; snapshot {model}. Continue with: --resume auto")
        return None
    final = out / "final.caffemodel"
    with atomic_output(final) as tmp:
        shutil.copyfile(model, tmp)
    log(f"trained {iters} iterations in {time.time() - started:.0f} s; {final}")
    return final


def open_log(out: Path, argv):
    """A log function for a run: each message is appended to <out>/train.log (flushed) and written above the
    progress bar (tqdm.write). The first line logged is the command, argv."""
    from tqdm import tqdm

    log_file = open(out / "train.log", "a")

    def log(msg):
        log_file.write(msg + "\n")
        log_file.flush()
        tqdm.write(msg)

    log(f"$ {' '.join(argv)}")
    return log


def make_solver(solver_prototxt: Path, seed: int):
    """A CPU Caffe solver with a seeded random generator, in a thread whose denormals are flushed to zero: Adam's
    moment estimates of dead units decay into float32 denormals, which made iterations 3x slower after ~1400
    iterations (pygeometry/denormals.py); Caffe runs in this thread."""
    import caffe

    from .denormals import flush_denormals

    flush_denormals()
    caffe.set_mode_cpu()
    caffe.set_random_seed(seed)
    return caffe.get_solver(str(solver_prototxt))
