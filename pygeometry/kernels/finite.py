"""Finding NaN/inf values quickly, for the layers' input checks.

Every kernel that reads an input in full counts its non-finite values on the way (`not abs(x) < inf`, an integer
sum that vectorises), so the layers need no separate pass; count_nonfinite is for the inputs a kernel reads only
in part (a warped image) or not at all. Kernels compile with FASTMATH: LLVM's fast-math flags without the no-NaN /
no-inf assumptions, which would fold these tests (and the kernels' NaN-safe comparisons) away.
"""
from __future__ import annotations

import numba
import numpy as np

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@numba.njit(inline="always", fastmath=FASTMATH)
def nonfinite_in(flat):
    """Number of NaN/inf values of a 1-D array (for use inside kernels, e.g. on one image row)."""
    count = 0
    for i in range(flat.size):
        count += not abs(flat[i]) < np.inf
    return count


@numba.njit(fastmath=FASTMATH, cache=True)
def _count_nonfinite_flat(flat):
    return nonfinite_in(flat)


def count_nonfinite(array: np.ndarray) -> int:
    """Number of NaN or inf elements of a float array (any shape; 0 for other dtypes)."""
    array = np.asarray(array)
    if array.dtype.kind != "f" or array.size == 0:
        return 0
    if array.flags.c_contiguous and array.dtype in (np.float32, np.float64):
        return int(_count_nonfinite_flat(array.reshape(-1)))
    return int(array.size - np.count_nonzero(np.isfinite(array)))
