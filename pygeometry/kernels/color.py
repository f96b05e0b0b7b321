"""Colour augmentation of training pairs: the same random channel permutation and gain for both images of a pair.

Applied alike to the source and the target, a permutation of the channels and a positive gain keep the pose that
aligns the two images: the L1 term of the photometric loss scales with the gain and is invariant to the permutation,
and SSIM changes only through its small stabilising constants. What changes is the appearance a network could
memorise (every rendered scene has its own textures, and the nets fit the training pairs' poses much better than
new ones'): it has to read the geometry instead.
"""
from __future__ import annotations

import itertools

import numpy as np

PERMUTATIONS = np.array(list(itertools.permutations(range(3))))  # (6, 3): the orders of 3 channels


def recolour_pairs(images, order, gain, out=None):
    """images[k][i] -> gain[i] * images[k][i][order[i]] for every image k (all with 3 channels) and pair i.

    Args:
        images: list of arrays (N, 3, H, W) (the source and the target of the same pairs).
        order: (N, 3) int, a permutation of (0, 1, 2) per pair (identity: [0, 1, 2]).
        gain: (N,) float, the gain per pair (1: none).
        out: optional list of arrays like `images` to write into (a layer's tops), else new arrays.

    Returns:
        the list of arrays written (`out`, or new arrays with the dtypes of `images`). Each pair is computed in
        float64 (float32 input times a float64 gain) and rounded once to the output dtype.
    """
    order = np.asarray(order)
    gain = np.asarray(gain, dtype=np.float64)
    if out is None:
        out = [np.empty_like(a) for a in images]
    for a, b in zip(images, out):
        if a.ndim != 4 or a.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {a.shape}")
        for i in range(a.shape[0]):
            b[i] = a[i][order[i]] * gain[i]
    return out


def random_colour(rng, n, max_gain_change):
    """Draw (order (n, 3), gain (n,)) for recolour_pairs: a uniform permutation and a gain uniform in
    [1 - max_gain_change, 1 + max_gain_change]."""
    return PERMUTATIONS[rng.integers(len(PERMUTATIONS), size=n)], rng.uniform(1 - max_gain_change, 1 + max_gain_change, n)
