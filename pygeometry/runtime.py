"""Process-wide settings every pygeometry process needs, in one place; applied when :mod:`pygeometry` is imported.

That import happens in every entry point before any kernel runs: the scripts, the tests, and Caffe's own
command-line tool (`.venv/bin/caffe train`), whose Python layers import :mod:`pygeometry.layers`.

Numba's threading layer (configure_threading)
---------------------------------------------
The kernels' `prange` loops run on numba's threading layer. Left to itself, numba picks TBB whenever a libtbb
is installed (Debian's libtbb12 is, as a dependency of OpenCV), and a process that used TBB can spin on every
core for minutes at exit, inside `tbb::finalize` called from numba's `unload_tbb`: seen with
`scripts/evaluate.py --no-net ... --refine 10`, which wrote its summary and then never ended in 1 run of 5;
scripts/train.py, scripts/report.py and the test suite go through the same exit path.

The layer used here is `workqueue`, numba's own simple pthread pool, which has nothing to finalise at exit.
Measured on 2 cores (150 training iterations of `make train`'s network, batch 8, 64 x 208, scripts/train.py;
and the kernel chain Transform3DGrid -> PinholeProjection -> BilinearWarp forward and backward, N = 8, float32):
    tbb        training 24 s; chain 3.8 ms at 64 x 208, 17 ms at 128 x 416; hangs at exit (above);
    omp        numba accepts GNU libgomp here, but training took 33 s and the chain was erratic (median 18-44 ms at
               64 x 208: its threads spin while waiting, against Caffe and OpenBLAS on the same cores), and GNU
               OpenMP is not fork-safe (scripts/make_dataset.py renders in a fork()ed pool);
    workqueue  training 22-24 s; chain 4.8 ms at 64 x 208, 17 ms at 128 x 416; fork-safe. It is not thread-safe:
               two Python threads must not run parallel kernels at the same time in one process (numba stops the
               process with a message if they do). Nothing here does: Caffe runs Python layers in its calling
               thread, and scripts/report.py runs its trainings as subprocesses.
An explicit NUMBA_THREADING_LAYER in the environment is respected (for experiments); the default is set in the
environment too, so child processes (e.g. `caffe train` started by scripts/train_pose_fit.py) get the same.
"""
from __future__ import annotations

import os
import sys

THREADING_LAYER = "workqueue"


def configure_threading(layer: str = THREADING_LAYER) -> str:
    """Make numba run parallel kernels on `layer` (default workqueue) unless NUMBA_THREADING_LAYER says otherwise.

    Must run before the first parallel kernel of the process: numba starts its thread pool once and never
    switches. Setting the environment variable covers a numba imported later (it reads the variable at import);
    a numba imported earlier gets numba.config.THREADING_LAYER set directly, as long as its pool has not started.

    Returns:
        The threading layer that parallel kernels will use (or already use, if the pool had started).
    """
    chosen = os.environ.setdefault("NUMBA_THREADING_LAYER", layer)
    numba = sys.modules.get("numba")
    if numba is not None:
        from numba.np.ufunc import parallel

        if parallel._threading_layer is not None:  # the pool runs already: it cannot change any more
            return parallel._threading_layer
        numba.config.THREADING_LAYER = chosen
    return chosen
