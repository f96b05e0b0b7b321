"""Textures for rendered scenes: natural photographs shipped inside scikit-image's wheel, and procedural ones.

Every texture is float32 RGB (h, w, 3) in [0, 1]. Procedural textures are deterministic from their seed.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

PHOTOS = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel", "rocket", "moon",
          "clock", "immunohistochemistry", "hubble_deep_field", "retina")
PROCEDURAL = ("value_noise", "checker", "stripes")
TEXTURE_NAMES = PHOTOS + PROCEDURAL
ALIASES = {"checkerboard": "checker", "noise": "value_noise"}


@functools.lru_cache(maxsize=None)
def _photo(name: str, size: int) -> np.ndarray:
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3].astype(np.float32) / 255.0
    out = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    out.setflags(write=False)
    return out


def _value_noise(rng, size):
    """Smooth multi-octave colour noise (sum of upsampled random grids)."""
    out = np.zeros((size, size, 3), np.float32)
    for octave, cells in enumerate((4, 8, 16, 32)):
        grid = rng.uniform(size=(cells + 1, cells + 1, 3)).astype(np.float32)
        out += cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC) / 2 ** octave
    out -= out.min()
    return out / max(out.max(), 1e-6)


def procedural(name: str, seed: int, size: int = 256) -> np.ndarray:
    """A procedural texture (h, w, 3) float32 in [0, 1], deterministic from seed."""
    rng = np.random.default_rng(seed)
    if name == "value_noise":
        return _value_noise(rng, size)
    ys, xs = np.mgrid[0:size, 0:size] / size
    c1, c2 = rng.uniform(0.1, 0.9, size=(2, 3)).astype(np.float32)
    if name == "checker":
        k = rng.integers(4, 12)
        mask = ((np.floor(xs * k) + np.floor(ys * k)) % 2)[:, :, None]
    elif name == "stripes":
        k, angle = rng.integers(3, 10), rng.uniform(0, np.pi)
        mask = (0.5 + 0.5 * np.sin(2 * np.pi * k * (xs * np.cos(angle) + ys * np.sin(angle))))[:, :, None]
    else:
        raise ValueError(f"unknown procedural texture {name!r}; known: {PROCEDURAL}")
    tex = c1 * mask + c2 * (1 - mask)
    # A little noise so no region is perfectly flat (flat regions carry no photometric signal).
    tex = 0.85 * tex + 0.15 * _value_noise(rng, size)
    return np.clip(tex, 0, 1).astype(np.float32)


def load_texture(name: str, size: int = 256, seed: int = 0) -> np.ndarray:
    """Texture by name as a square float32 RGB image in [0, 1].

    Photographs come from the images bundled with scikit-image (no download), resized with area averaging;
    grayscale ones are replicated to RGB. Procedural ones are made from a numpy RNG seeded with seed.

    Args:
        name: one of TEXTURE_NAMES (or an alias in ALIASES: "checkerboard", "noise").
        size: output side length in pixels.
        seed: seed of the procedural textures (ignored for photographs).

    Returns:
        (size, size, 3) float32 RGB in [0, 1] (photographs are cached and read-only).
    """
    name = ALIASES.get(name, name)
    if name in PHOTOS:
        return _photo(name, size)
    if name in PROCEDURAL:
        return procedural(name, seed, size)
    raise ValueError(f"unknown texture {name!r}; known: {TEXTURE_NAMES}")
