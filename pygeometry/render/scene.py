"""Ray casting of scenes made of textured rectangles: exact per-pixel depth, independent of the warping layers.

Conventions (DESIGN.md): camera frame x right, y down, z forward (OpenCV); K = [fx, fy, cx, cy] with pixel
centres at integers; `world_T_cam` maps camera points to the world. The ray of pixel (x, y) in the camera
frame is r = [(x - cx)/fx, (y - cy)/fy, 1], so the ray parameter of a hit IS its depth z (not the ray length).
Images are float32 RGB (3, H, W) in [0, 1]; depth is float32 (1, H, W), 0 where no surface is hit.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from .textures import TEXTURE_NAMES, load_texture

NEAR = 1e-3


@dataclasses.dataclass
class Rectangle:
    """A textured rectangle {origin + s u + r v : 0 <= s, r <= 1}; u and v must be orthogonal.

    Attributes:
        origin, u, v: (3,) world coordinates of a corner and the two edge vectors.
        texture: (h, w, 3) float32 RGB in [0, 1].
        repeat: how many times the texture tiles along u and v.
        brightness: constant shading factor of this face (the same from every view).
    """

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    texture: np.ndarray
    repeat: tuple = (1.0, 1.0)
    brightness: float = 1.0

    def __post_init__(self):
        self.origin, self.u, self.v = (np.asarray(a, np.float64) for a in (self.origin, self.u, self.v))
        if abs(np.dot(self.u, self.v)) > 1e-9 * np.linalg.norm(self.u) * np.linalg.norm(self.v):
            raise ValueError("Rectangle edges u and v must be orthogonal")


@dataclasses.dataclass
class Scene:
    rectangles: list


def box(center, size, textures, repeat=1.0, brightness=(1.0, 0.8, 0.9, 0.7, 0.85, 0.75)):
    """The 6 faces of an axis-aligned box. textures: list of 6 (h, w, 3) arrays."""
    c, (sx, sy, sz) = np.asarray(center, float), size
    h = np.array([sx, sy, sz]) / 2
    ex, ey, ez = np.array([sx, 0, 0]), np.array([0, sy, 0]), np.array([0, 0, sz])
    lo = c - h
    faces = [(lo, ex, ey), (lo + ez, ex, ey), (lo, ey, ez), (lo + ex, ey, ez), (lo, ex, ez), (lo + ey, ex, ez)]
    return [Rectangle(o, u, v, t, (repeat, repeat), b) for (o, u, v), t, b in zip(faces, textures, brightness)]


def room_scene(rng, size=(6.0, 3.0, 16.0), n_boxes=4, texture_size=256):
    """A closed room (walls, floor, ceiling, front and back) with boxes at several depths, random textures.

    The room spans x in [-w/2, w/2], y in [-h/2, h/2] (y down: the floor is at +h/2), z in [-2, d - 2]; the
    cameras of render_pair stay near the origin looking along +z.
    """
    w, h, d = size
    tex = lambda: _random_texture(rng, texture_size)  # noqa: E731
    rep = lambda: tuple(rng.uniform(1, 3, size=2))  # noqa: E731
    z0, z1 = -2.0, d - 2.0
    x0, x1, y0, y1 = -w / 2, w / 2, -h / 2, h / 2
    rects = [
        Rectangle([x0, y0, z0], [0, h, 0], [0, 0, d], tex(), rep(), 0.8),        # left wall
        Rectangle([x1, y0, z0], [0, h, 0], [0, 0, d], tex(), rep(), 0.9),        # right wall
        Rectangle([x0, y1, z0], [w, 0, 0], [0, 0, d], tex(), rep(), 1.0),        # floor
        Rectangle([x0, y0, z0], [w, 0, 0], [0, 0, d], tex(), rep(), 0.7),        # ceiling
        Rectangle([x0, y0, z1], [w, 0, 0], [0, h, 0], tex(), rep(), 0.95),       # back wall
        Rectangle([x0, y0, z0], [w, 0, 0], [0, h, 0], tex(), rep(), 0.95),       # front wall (behind)
    ]
    for _ in range(n_boxes):
        sx, sy, sz = rng.uniform(0.4, 1.4, size=3)
        sy = min(sy, h - 0.2)
        cx = rng.uniform(x0 + sx / 2 + 0.05, x1 - sx / 2 - 0.05)
        cz = rng.uniform(3.0, z1 - sz / 2 - 0.5)
        on_floor = rng.uniform() < 0.7
        cy = y1 - sy / 2 - 1e-3 if on_floor else rng.uniform(y0 + sy / 2 + 0.1, y1 - sy / 2 - 0.1)
        rects += box([cx, cy, cz], (sx, sy, sz), [tex() for _ in range(6)], repeat=rng.uniform(0.5, 1.5))
    return Scene(rects)


def _random_texture(rng, size):
    name = TEXTURE_NAMES[rng.integers(len(TEXTURE_NAMES))]
    return load_texture(name, size, seed=int(rng.integers(1 << 30)))


def _cast(scene, world_T_cam, K, xs, ys):
    """Cast rays through pixel positions xs, ys (arrays of equal shape) -> (rgb (..., 3), depth (...)).

    Visibility first (nearest hit per ray over all rectangles), then one texture lookup per visible ray.
    """
    fx, fy, cx, cy = K
    R, c = world_T_cam[:3, :3], world_T_cam[:3, 3]
    rays_cam = np.stack([(xs - cx) / fx, (ys - cy) / fy, np.ones_like(xs)], axis=-1).reshape(-1, 3)
    d = rays_cam @ R.T                                  # world directions; hit = c + z d with z the depth
    best = np.full(len(d), np.inf)
    owner = np.full(len(d), -1)
    coord_s, coord_r = np.zeros(len(d)), np.zeros(len(d))
    for k, rect in enumerate(scene.rectangles):
        normal = np.cross(rect.u, rect.v)
        offset = np.dot(rect.origin - c, normal)
        if abs(offset) < 1e-12:
            continue  # the camera lies in the plane: the rectangle is seen edge-on
        denom = d @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            z = offset / denom
        hit = np.flatnonzero((z > NEAR) & (z < best))
        if hit.size == 0:
            continue
        p = c + z[hit, None] * d[hit] - rect.origin
        s = p @ rect.u / np.dot(rect.u, rect.u)
        r = p @ rect.v / np.dot(rect.v, rect.v)
        inside = (s >= 0) & (s <= 1) & (r >= 0) & (r <= 1)
        idx = hit[inside]
        best[idx], owner[idx], coord_s[idx], coord_r[idx] = z[idx], k, s[inside], r[inside]
    rgb = np.zeros((len(d), 3), np.float32)
    for k in np.unique(owner[owner >= 0]):
        rect = scene.rectangles[k]
        idx = np.flatnonzero(owner == k)
        th, tw = rect.texture.shape[:2]
        # Bilinear texture filtering with wrap-around (tiling), centres of texels at integers.
        map_x = (coord_s[idx] * rect.repeat[0] * tw - 0.5).astype(np.float32)[:, None]
        map_y = (coord_r[idx] * rect.repeat[1] * th - 0.5).astype(np.float32)[:, None]
        colour = cv2.remap(rect.texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        rgb[idx] = colour.reshape(-1, 3) * rect.brightness
    depth = np.where(np.isfinite(best), best, 0.0)
    return rgb.reshape(xs.shape + (3,)), depth.reshape(xs.shape)


def render(scene, world_T_cam, K, height, width, supersample=1):
    """Render a view.

    Args:
        scene: Scene.
        world_T_cam: (4, 4) camera pose.
        K: [fx, fy, cx, cy].
        height, width: image size.
        supersample: s > 1 averages the colour of s x s sub-pixel rays (anti-aliasing); depth always comes
            from the ray through the exact pixel centre.

    Returns:
        image (3, H, W) float32 RGB in [0, 1], depth (1, H, W) float32 (0 = no hit).
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb, depth = _cast(scene, world_T_cam, K, xs, ys)
    if supersample > 1:
        acc = np.zeros_like(rgb)
        offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
        for oy in offsets:
            for ox in offsets:
                acc += _cast(scene, world_T_cam, K, xs + ox, ys + oy)[0]
        rgb = acc / supersample ** 2
    image = np.clip(rgb, 0, 1).transpose(2, 0, 1).astype(np.float32)
    return np.ascontiguousarray(image), depth[None].astype(np.float32)
