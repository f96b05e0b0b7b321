"""Gradient-checking your own Caffe Python layers with pygeometry.testing (run by `make test`).

Run alone: .venv/bin/python -m pytest -q examples/test_my_layers.py
"""
import numpy as np
import pytest

from pygeometry.testing import GradientCheckError, check_layer


def test_scaled_square_gradient_is_right():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    report = check_layer({"x": x}, module="my_layers", layer="ScaledSquare", param_str={"a": 2.0})
    print(report)  # which blobs, how many elements, the worst relative error


def test_the_checker_catches_the_buggy_square():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    with pytest.raises(GradientCheckError, match=r"x \(2, 3, 4, 5\): FAILED") as failure:
        check_layer({"x": x}, module="my_layers", layer="BuggySquare", param_str={"a": 2.0})
    print(failure.value)  # the report a failing test shows: element, analytic vs numeric
