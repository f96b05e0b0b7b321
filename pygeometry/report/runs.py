"""The runs of the experiment report (scripts/report.py): one scripts/train.py run per experiment and seed in
<runs>/<experiment>/seed<k>/, reused when finished with the same settings (run.json), resumed when not, refused
when the folder was made otherwise; and their evaluation (in-process on the test split, or scripts/evaluate.py
for the classical and refinement rows). `args` is scripts/report.py's parsed command line.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .. import evaluation as ev
from ..files import write_atomic
from ..inference import load_net, predict
from ..nets import EARLY_FUSION
from ..poses import pose_vector_from_matrix
from ..progress import progress_bar

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
WEIGHTS = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.caffemodel"


@dataclass(frozen=True)
class Experiment:
    name: str
    network: str
    imagenet: bool
    frozen: bool = False
    label: str = ""
    backbone: str = "efficientnet"
    options: tuple = ()  # further scripts/train.py options of this experiment

    @property
    def fusion(self):
        return "early" if self.network in EARLY_FUSION else "late"


class ReportError(Exception):
    pass


def run_dir(args, exp: Experiment, seed: int) -> Path:
    return args.runs / exp.name / f"seed{seed}"


def train_command(args, exp: Experiment, seed: int) -> list[str]:
    cmd = [PY, str(REPO / "scripts" / "train.py"), "--network", exp.network, "--data", str(args.data),
           "--out", str(run_dir(args, exp, seed)), "--iters", str(args.iters), "--lr", str(args.lr),
           "--backbone", exp.backbone, "--cut", args.cut if exp.backbone == "efficientnet" else "conv5",
           "--downsample", str(args.downsample),
           "--seed", str(seed), "--val-interval", str(max(1, args.iters // 4)),
           "--snapshot-interval", str(max(1, args.iters // 2)), "--resume", "auto", "--no-progress"]
    if getattr(args, "handheld", None):  # every run is also evaluated on handheld (6-DoF) motion
        cmd += ["--eval-split", "handheld", str(args.handheld / "test.txt")]
    if exp.imagenet:
        cmd += ["--weights", str(args.weights)]
    if exp.frozen:
        cmd += ["--trunk-lr-mult", "0"]
    return cmd + list(exp.options)


def settings_of(cmd: list[str]) -> list[str]:
    """The part of a train command that defines the run (not the interpreter path or the resume flag)."""
    out = list(cmd[2:])
    i = out.index("--resume")
    del out[i:i + 2]
    return out


def folder_state(folder: Path, settings: list[str]) -> str:
    """'done' (result.json for these settings), 'partial' (same settings, unfinished) or 'new'; a ReportError when
    the folder holds another run (other settings, or files without run.json)."""
    meta = folder / "run.json"
    if not meta.exists():
        if folder.exists() and any(folder.iterdir()):
            raise ReportError(f"{folder} holds files but no run.json: not made by this script; move it away or pick "
                              f"another --runs")
        return "new"
    recorded = json.loads(meta.read_text())["settings"]
    if recorded != settings:
        raise ReportError(f"{folder} was trained with other settings:\n  {' '.join(recorded)}\nnot\n  "
                          f"{' '.join(settings)}\nmove it away, or pick another --runs")
    return "done" if (folder / "result.json").exists() else "partial"


def run_state(args, exp, seed) -> str:
    """folder_state of one report run."""
    return folder_state(run_dir(args, exp, seed), settings_of(train_command(args, exp, seed)))


def train_folder(folder: Path, cmd: list[str], record: dict, one_thread: bool) -> float:
    """Run a scripts/train.py command into `folder` (run.json first: the record and the settings; stdout.log), with
    one OpenBLAS and numba thread when `one_thread` (several runs at once). Returns the seconds it took."""
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "run.json", json.dumps({**record, "command": " ".join(cmd),
                                                  "settings": settings_of(cmd)}, indent=2))
    env = dict(os.environ)
    if one_thread:  # one core per run: numba's and OpenBLAS's pools would fight the other runs
        env.update(NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    t0 = time.time()
    with open(folder / "stdout.log", "a") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if rc != 0 or not (folder / "result.json").exists():
        raise ReportError(f"training into {folder} failed (exit {rc}); see {folder / 'stdout.log'}")
    return time.time() - t0


def train_one(args, exp, seed) -> float:
    folder = run_dir(args, exp, seed)
    seconds = train_folder(folder, train_command(args, exp, seed), {"experiment": exp.name, "seed": seed},
                           one_thread=args.jobs > 1)
    if exp.imagenet and "initialised" not in (folder / "train.log").read_text():
        raise ReportError(f"{folder}: the run did not start from {args.weights} (no 'initialised' in train.log)")
    return seconds


def ensure_weights(weights: Path) -> None:
    """The converted ImageNet EfficientNet-Lite0 at `weights`: converted (scripts/convert_efficientnet_lite0.py) when
    it is the default WEIGHTS and missing; a ReportError naming any other missing file."""
    if weights.exists():
        return
    if weights != WEIGHTS:
        raise ReportError(f"--weights {weights} does not exist")
    print(f"{WEIGHTS} is missing: converting EfficientNet-Lite0 (scripts/convert_efficientnet_lite0.py)")
    subprocess.check_call([PY, str(REPO / "scripts" / "convert_efficientnet_lite0.py"), "--install-torch"])


def train_all(args, experiments, seeds) -> dict:
    if any(e.imagenet for e in experiments):
        ensure_weights(args.weights)
    handheld = getattr(args, "handheld", None)
    if handheld and not (handheld / "test.txt").exists():
        print(f"{handheld} has no dataset: rendering the handheld (6-DoF) one (scripts/make_dataset.py)")
        subprocess.check_call([PY, str(REPO / "scripts" / "make_dataset.py"), "--motion", "handheld", "--out",
                               str(handheld), "--no-progress"])
    jobs = [(e, s) for s in seeds for e in experiments]  # seed-major: one of each experiment comes first
    todo = [(e, s) for e, s in jobs if run_state(args, e, s) != "done"]
    print(f"{len(jobs)} runs ({len(experiments)} experiments x {len(seeds)} seeds, {args.iters} iterations each); "
          f"{len(jobs) - len(todo)} reused, {len(todo)} to train with {args.jobs} at once")
    times = {}
    with cf.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool, \
            progress_bar(total=len(todo), enabled=not args.no_progress, desc="training runs", unit="run") as bar:
        futures = {pool.submit(train_one, args, e, s): (e, s) for e, s in todo}
        for fut in cf.as_completed(futures):
            e, s = futures[fut]
            times[(e.name, s)] = fut.result()
            bar.update(1)
            tqdm.write(f"trained {e.name} seed {s} in {times[(e.name, s)]:.0f} s")
    return times


# ----------------------------------------------------------------------------------------------- evaluation
def evaluate_runs(args, experiments, seeds, test, split_path=None, desc="evaluating runs") -> dict:
    """Per-pair errors of every run's final network on the pairs `test` (loaded from split_path, default the test
    split): {(experiment, seed): {metric: (N,)}}."""

    H, W = test["src"].shape[2:]
    split_path = split_path or args.data / "test.txt"
    out = {}
    jobs = [(e, s) for e in experiments for s in seeds]
    for e, s in progress_bar(jobs, enabled=not args.no_progress, desc=desc, unit="run"):
        folder = run_dir(args, e, s)
        net = load_net(folder / "deploy.prototxt", folder / "final.caffemodel", H, W, split_path, 8)
        xi = predict(net, test["src"], test["tgt"], 8, progress=False)
        T = ev.se3_forward(xi)
        err = ev.transform_errors(T, test["src_T_tgt"])
        err["photometric_l1"] = ev.photometric_errors(test["src"], test["tgt"], test["tgt_depth"], test["K"], T)
        out[(e.name, s)] = err
    return out


def split_errors(args, experiments, seeds, split: str) -> dict:
    """The errors train.py wrote into each run's result.json for `split` ("train": its first 200 training pairs,
    "handheld": --eval-split), as {method: {metric: [per-seed mean over pairs]}} with method "network" and the
    trivial baselines; {} when a run lacks the split."""
    out = {}
    for e in experiments:
        results = [json.loads((run_dir(args, e, s) / "result.json").read_text()) for s in seeds]
        if not all(split in r for r in results):
            return {}
        for method in results[0][split]:
            key = e.name if method == "network" else f"baseline: {method}"
            out[key] = {m: [r[split][method][m]["mean"] for r in results] for m in results[0][split][method]}
    return out


def baseline_errors(args, test) -> dict:

    train = ev.load_split(args.data / "train.txt", keys=("src_T_tgt",), optional=("xi_gt",))
    xi_train = train["xi_gt"] if "xi_gt" in train else pose_vector_from_matrix(train["src_T_tgt"])
    out = {}
    for name, xi in ev.baseline_predictions(xi_train, len(test["src"])).items():
        T = ev.se3_forward(xi)
        err = ev.transform_errors(T, test["src_T_tgt"])
        err["photometric_l1"] = ev.photometric_errors(test["src"], test["tgt"], test["tgt_depth"], test["K"], T)
        out[name] = err
    return out


def run_evaluate_script(args, folder: Path, split: Path, out: Path, extra: list[str]) -> dict:
    """scripts/evaluate.py on one run (reused when its summary.json is newer than the weights)."""
    summary = out / "summary.json"
    weights = folder / "final.caffemodel"
    cmd = [PY, str(REPO / "scripts" / "evaluate.py"), "--deploy", str(folder / "deploy.prototxt"), "--weights",
           str(weights), "--split", str(split), "--out", str(out), "--no-progress"] + extra
    if summary.exists() and summary.stat().st_mtime > weights.stat().st_mtime and \
            json.loads(summary.read_text()).get("command", "").endswith(" ".join(cmd[2:])):
        return json.loads(summary.read_text())
    print(f"$ {' '.join(cmd)}")
    subprocess.check_call(cmd, stdout=subprocess.DEVNULL)
    return json.loads(summary.read_text())


# ------------------------------------------------------------------------------------------------- figures


def seed_report_main(prog: str, args, train_missing, collect, markdown, name: str, title: str, markers,
                     readme: Path) -> None:
    """The whole of a seed report script (diagnose.py, depth_report.py) after its arguments: train the missing runs
    (unless args.no_train), collect the finished ones, then <args.results>/<name>.json and <NAME>.md ("# title" +
    markdown), and with args.readme the README block between `markers`; print the markdown. Exits with a message
    naming `prog` when training fails, nothing is finished for every seed, or the README lacks its markers."""
    from ..files import replace_block

    if not args.no_train:
        try:
            train_missing(args)
        except ReportError as exc:
            sys.exit(f"{prog}: error: {exc}")
    found = collect(args)
    if not found:
        sys.exit(f"{prog}: nothing has finished runs for every seed")
    text = markdown(found, args)
    args.results.mkdir(parents=True, exist_ok=True)
    write_atomic(args.results / f"{name}.json", json.dumps(found, indent=1))
    write_atomic(args.results / f"{name.upper()}.md", f"# {title}\n\n" + text)
    if args.readme:
        try:
            replace_block(readme, *markers, text)
        except ValueError as exc:
            sys.exit(f"{prog}: error: {exc}")
    print(text)
