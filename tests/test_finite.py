"""count_nonfinite: the layers' NaN/inf check."""
import numpy as np

from pygeometry.kernels.finite import count_nonfinite


def test_counts_nan_and_inf_and_survives_overflowing_sums():
    a = np.random.default_rng(0).uniform(size=(2, 3, 64, 80)).astype(np.float32)
    assert count_nonfinite(a) == 0
    a[1, 2, 3, 4], a[0, 0, 0, 0] = np.nan, -np.inf
    assert count_nonfinite(a) == 2
    big = np.full((4, 4), 3e38, np.float32)  # the sum overflows, every value is finite
    assert count_nonfinite(big) == 0


def test_float64_noncontiguous_and_non_float_arrays():
    a = np.zeros((3, 4, 5))
    a[0, 1, 2], a[2, 3, 4] = np.inf, np.nan
    assert count_nonfinite(a) == 2
    assert count_nonfinite(a[:, :, ::2]) == 2 and count_nonfinite(a[:, :, 1::2]) == 0
    assert count_nonfinite(a.T) == 2
    assert count_nonfinite(np.arange(5)) == 0 and count_nonfinite(np.zeros(0, np.float32)) == 0
