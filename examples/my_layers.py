"""A user's own small Caffe Python layers, to show pygeometry.testing on code that is not pygeometry's.

    ScaledSquare  x (any shape) -> a * x**2       param_str {"a": 2.0}
    BuggySquare   the same forward, with the factor 2 of the derivative forgotten (kept to show the checker
                  catching it: examples/test_my_layers.py expects its check to fail)
"""
import json

import caffe
import numpy as np


class ScaledSquare(caffe.Layer):
    """top = a * bottom**2, elementwise; d top / d bottom = 2 a bottom."""

    def setup(self, bottom, top):
        params = json.loads(self.param_str or "{}")
        unknown = set(params) - {"a"}
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown param_str keys {sorted(unknown)}; allowed: ['a']")
        self.a = float(params.get("a", 1.0))

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.a * np.square(bottom[0].data)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * self.gradient(bottom[0].data)

    def gradient(self, x):
        return 2 * self.a * x


class BuggySquare(ScaledSquare):
    """Deliberately wrong: the derivative of x**2 taken as x."""

    def gradient(self, x):
        return self.a * x
