"""pygeometry: Caffe Python layers for differentiable multi-view geometry.

Importing this package does not import caffe; only :mod:`pygeometry.layers` does. The math lives in
:mod:`pygeometry.kernels` (pure numpy/numba, forward and analytic backward side by side).
Conventions are in DESIGN.md and in each kernel's docstring.
"""
__version__ = "0.1.0"
