"""pygeometry: Caffe Python layers for differentiable multi-view geometry.

Importing this package does not import caffe; only :mod:`pygeometry.layers` does. The math lives in
:mod:`pygeometry.kernels` (pure numpy/numba, forward and analytic backward side by side).
Conventions are in docs/conventions.md and in each kernel's docstring.

Importing it first sets process-wide runtime settings (:mod:`pygeometry.runtime`): numba's threading layer, chosen
so that no process hangs at exit; every entry point (scripts, tests, Caffe's command line through the Python
layers) imports this package before any kernel runs.
"""
from .runtime import configure_threading

configure_threading()

__version__ = "0.1.0"
