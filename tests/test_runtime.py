"""pygeometry/runtime.py: importing pygeometry puts numba's parallel kernels on a threading layer that cannot hang
at exit (TBB could spin for minutes in tbb::finalize), and processes that run parallel kernels end."""
import os
import subprocess
import sys
from pathlib import Path

from pygeometry import runtime

REPO = Path(__file__).resolve().parents[1]

# A short process like every entry point: import pygeometry, run parallel kernels (Transform3DGrid, the warp)
# forward and backward many times, print the threading layer numba used, exit.
RUN_PARALLEL_KERNELS = """
import sys
{before}
import numpy as np
import numba
from pygeometry.kernels import bilinear_backward, bilinear_forward, se3_forward, transform_grid_forward
depth = np.full((2, 1, 24, 40), 3.0, np.float32)
image = np.random.default_rng(0).random((2, 3, 24, 40), dtype=np.float32)
K = np.array([30.0, 30.0, 19.5, 11.5], np.float32)
T = se3_forward(np.full((2, 6), 0.01)).astype(np.float32)
for _ in range(30):
    points = transform_grid_forward(depth, T, K)
    coords = points[:, :2] / points[:, 2:] * 30.0 + np.array([19.5, 11.5], np.float32).reshape(1, 2, 1, 1)
    warped, valid = bilinear_forward(image, coords, padding="border")
    bilinear_backward(image, coords, np.ones_like(warped), padding="border")
print(numba.threading_layer())
"""


def _env_without_layer():
    """The environment of a new process that has not chosen a threading layer (this test process has: importing
    pygeometry set NUMBA_THREADING_LAYER, and children inherit it)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env["PYTHONPATH"] = str(REPO)
    return env


def _run(before="", timeout=120):
    return subprocess.run([sys.executable, "-c", RUN_PARALLEL_KERNELS.format(before=before)], capture_output=True,
                          text=True, env=_env_without_layer(), timeout=timeout, cwd=REPO)


def test_parallel_kernels_run_on_the_chosen_threading_layer():
    assert runtime.THREADING_LAYER == "workqueue"
    proc = _run()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [runtime.THREADING_LAYER], proc.stdout
    # numba imported before pygeometry (its configuration already read from the environment) gets it too
    proc = _run(before="import numba")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [runtime.THREADING_LAYER], proc.stdout


def test_an_explicit_threading_layer_in_the_environment_is_respected():
    proc = subprocess.run([sys.executable, "-c", RUN_PARALLEL_KERNELS.format(before="")], capture_output=True,
                          text=True, env=dict(_env_without_layer(), NUMBA_THREADING_LAYER="omp"), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["omp"], proc.stdout


def test_processes_running_parallel_kernels_always_exit():
    """The TBB hang at exit came in about 1 run of 5: 20 runs, each given 60 s (a run takes about 2 s), all end."""
    for attempt in range(20):
        try:
            proc = _run(timeout=60)
        except subprocess.TimeoutExpired:  # the process is killed by subprocess.run
            raise AssertionError(f"run {attempt + 1} of 20 did not exit within 60 s") from None
        assert proc.returncode == 0, (attempt, proc.stderr[-3000:])
        assert proc.stdout.split() == [runtime.THREADING_LAYER]
