"""Counting NaN/inf values quickly, for the layers' input checks.

One vectorised sum tells whether anything is off (NaN and inf propagate through a sum; a sum of finite values
can only overflow for huge magnitudes, and then the exact count below decides); the exact count runs only then.
"""
from __future__ import annotations

import numpy as np


def count_nonfinite(array: np.ndarray) -> int:
    """Number of NaN or inf elements of a float array (any shape)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(array)):
            return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))
