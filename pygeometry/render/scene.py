"""Ray casting of scenes made of textured rectangles: exact per-pixel depth, independent of the warping layers.

Conventions (docs/conventions.md): camera frame x right, y down, z forward (OpenCV); K = [fx, fy, cx, cy] with pixel
centres at integers ((0, 0) is the centre of the top-left pixel, coordinates are (x, y) = (column, row));
`world_T_cam` (4, 4) maps camera points to the world. The ray of pixel (x, y) in the camera frame is
r = [(x - cx)/fx, (y - cy)/fy, 1], so the ray parameter of a hit IS its depth z (not the ray length).
Images are float32 RGB (3, H, W) in [0, 1]; depth is float32 (1, H, W), 0 where no surface is hit.

This module imports only numpy and cv2 (texture filtering); never caffe, pygeometry.kernels or
pygeometry.layers, so that it can serve as an independent reference for them.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from .textures import TEXTURE_NAMES, load_texture

NEAR = 1e-3       # hits closer than this (m, along z) are ignored
EDGE_EPS = 1e-9   # tolerance on the rectangle's (s, r) in [0, 1]: no cracks where two rectangles meet


@dataclasses.dataclass
class Rectangle:
    """A textured, two-sided rectangle {origin + s u + r v : 0 <= s, r <= 1}; u and v must be orthogonal.

    The texture is mapped with (s, r) -> texel (s * repeat[0] * w, r * repeat[1] * h), tiled (wrap addressing)
    and filtered bilinearly.

    Attributes:
        origin: (3,) world coordinates of a corner (m).
        u, v: (3,) world edge vectors from that corner (m), orthogonal.
        texture: (h, w, 3) float32 RGB in [0, 1], or a name from TEXTURE_NAMES (loaded at 256 x 256, seed 0).
        repeat: (2,) how many times the texture tiles along u and v.
        brightness: constant shading factor of this face (view-independent: the same from every camera).
    """

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    texture: np.ndarray
    repeat: tuple = (1.0, 1.0)
    brightness: float = 1.0

    def __post_init__(self):
        self.origin, self.u, self.v = (np.asarray(a, np.float64).reshape(3) for a in (self.origin, self.u, self.v))
        if isinstance(self.texture, str):
            self.texture = load_texture(self.texture)
        self.texture = np.ascontiguousarray(self.texture, np.float32)
        if self.texture.ndim != 3 or self.texture.shape[2] != 3:
            raise ValueError(f"Rectangle texture must be (h, w, 3), got {self.texture.shape}")
        if np.linalg.norm(self.u) == 0 or np.linalg.norm(self.v) == 0:
            raise ValueError("Rectangle edges u and v must be non-zero")
        if abs(np.dot(self.u, self.v)) > 1e-9 * np.linalg.norm(self.u) * np.linalg.norm(self.v):
            raise ValueError("Rectangle edges u and v must be orthogonal")

    def corners(self) -> np.ndarray:
        """(4, 3) world corners in order origin, +u, +u+v, +v."""
        o, u, v = self.origin, self.u, self.v
        return np.stack([o, o + u, o + u + v, o + v])


@dataclasses.dataclass
class Scene:
    """A list of Rectangle; render() draws the nearest one along each ray."""

    rectangles: list


def box(center, size, textures, repeat=1.0, brightness=(1.0, 0.8, 0.9, 0.7, 0.85, 0.75)):
    """The 6 faces of an axis-aligned box.

    Args:
        center: (3,) world centre (m).
        size: (sx, sy, sz) edge lengths (m).
        textures: 6 textures ((h, w, 3) arrays or names), one per face: -z, +z, -x, +x, -y, +y.
        repeat: texture tiling along both edges of every face.
        brightness: 6 constant shading factors, one per face (so the faces are distinguishable).

    Returns:
        list of 6 Rectangle.
    """
    c, (sx, sy, sz) = np.asarray(center, float), size
    h = np.array([sx, sy, sz]) / 2
    ex, ey, ez = np.array([sx, 0, 0]), np.array([0, sy, 0]), np.array([0, 0, sz])
    lo = c - h
    faces = [(lo, ex, ey), (lo + ez, ex, ey), (lo, ey, ez), (lo + ex, ey, ez), (lo, ex, ez), (lo + ey, ex, ez)]
    return [Rectangle(o, u, v, t, (repeat, repeat), b) for (o, u, v), t, b in zip(faces, textures, brightness)]


def room_scene(rng, size=(6.0, 3.0, 16.0), n_boxes=4, texture_size=256):
    """A closed room (walls, floor, ceiling, front and back) with boxes at several depths, random textures.

    The room spans x in [-w/2, w/2], y in [-h/2, h/2] (y down: the floor is at +h/2), z in [-2, d - 2]; the
    cameras of render_pair stay near the origin looking along +z. Boxes stand at z >= 3 - 0.7 m.

    Args:
        rng: numpy Generator (or seed); the scene is a deterministic function of it.
        size: (w, h, d) room size (m).
        n_boxes: number of boxes (70% stand on the floor, the rest float).
        texture_size: texture resolution (square).

    Returns:
        Scene with 6 + 6 * n_boxes rectangles.
    """
    rng = np.random.default_rng(rng)
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


def corridor_scene(rng, width=3.0, height=2.6, length=40.0, n_boxes=8, texture_size=256):
    """A long closed corridor (street-like) with boxes along both walls: suits forward "driving" motion.

    The corridor spans x in [-width/2, width/2], y in [-height/2, height/2] (the floor at +height/2),
    z in [-2, length - 2]; textures tile about every 2 m along it. Boxes stand against the side walls at
    z in [3, length - 6], leaving the middle third of the width free.

    Args:
        rng: numpy Generator (or seed); the scene is a deterministic function of it.
        width, height, length: corridor size (m).
        n_boxes: number of boxes.
        texture_size: texture resolution (square).

    Returns:
        Scene with 6 + 6 * n_boxes rectangles.
    """
    rng = np.random.default_rng(rng)
    w, h, d = width, height, length
    tex = lambda: _random_texture(rng, texture_size)  # noqa: E731
    along = lambda: d / rng.uniform(1.5, 3.0)  # noqa: E731  (tiles along the corridor)
    z0, z1 = -2.0, d - 2.0
    x0, x1, y0, y1 = -w / 2, w / 2, -h / 2, h / 2
    rects = [
        Rectangle([x0, y0, z0], [0, h, 0], [0, 0, d], tex(), (rng.uniform(1, 2), along()), 0.8),   # left wall
        Rectangle([x1, y0, z0], [0, h, 0], [0, 0, d], tex(), (rng.uniform(1, 2), along()), 0.9),   # right wall
        Rectangle([x0, y1, z0], [w, 0, 0], [0, 0, d], tex(), (rng.uniform(1, 2), along()), 1.0),   # floor
        Rectangle([x0, y0, z0], [w, 0, 0], [0, 0, d], tex(), (rng.uniform(1, 2), along()), 0.7),   # ceiling
        Rectangle([x0, y0, z1], [w, 0, 0], [0, h, 0], tex(), (1.0, 1.0), 0.95),                     # far end
        Rectangle([x0, y0, z0], [w, 0, 0], [0, h, 0], tex(), (1.0, 1.0), 0.95),                     # behind
    ]
    for _ in range(n_boxes):
        sx = rng.uniform(0.2, w / 3 - 0.05)
        sy, sz = rng.uniform(0.3, h - 0.3), rng.uniform(0.4, 2.0)
        side = rng.choice([-1.0, 1.0])
        cx = side * (w / 2 - sx / 2 - 1e-3)
        cz = rng.uniform(3.0, z1 - 4.0)
        cy = y1 - sy / 2 - 1e-3
        rects += box([cx, cy, cz], (sx, sy, sz), [tex() for _ in range(6)], repeat=rng.uniform(0.5, 1.5))
    return Scene(rects)


def _random_texture(rng, size):
    name = TEXTURE_NAMES[rng.integers(len(TEXTURE_NAMES))]
    return load_texture(name, size, seed=int(rng.integers(1 << 30)))


def _clip_near(points):
    """Clip a convex polygon (n, 3) in the camera frame to z >= NEAR (Sutherland-Hodgman, one plane)."""
    out = []
    for a, b in zip(points, np.roll(points, -1, axis=0)):
        a_in, b_in = a[2] >= NEAR, b[2] >= NEAR
        if a_in:
            out.append(a)
        if a_in != b_in:
            out.append(a + (NEAR - a[2]) / (b[2] - a[2]) * (b - a))
    return np.array(out).reshape(-1, 3)


def _cast(scene, world_T_cam, K, xs, ys, shade=True):
    """Cast the rays of the pixel grid ys (H,) x xs (W,) (both ascending, pixel units).

    Visibility first (nearest hit per ray over all rectangles), then one texture lookup per visible ray. Each
    rectangle is only tested against the rays inside the bounding box of its projection (clipped to z >= NEAR).

    Returns:
        rgb (H, W, 3) float32 (None when shade is False), depth (H, W) float64 (0 = no hit).
    """
    fx, fy, cx, cy = (float(k) for k in np.asarray(K, np.float64).reshape(4))
    world_T_cam = np.asarray(world_T_cam, np.float64)
    R, c = world_T_cam[:3, :3], world_T_cam[:3, 3]
    a = (np.asarray(xs, np.float64) - cx) / fx          # (W,) ray x / z
    b = (np.asarray(ys, np.float64) - cy) / fy          # (H,) ray y / z
    H, W = b.size, a.size
    best = np.full((H, W), np.inf)
    owner = np.full((H, W), -1, np.int32)
    coord_s, coord_r = np.zeros((H, W)), np.zeros((H, W))
    for k, rect in enumerate(scene.rectangles):
        o = R.T @ (rect.origin - c)                      # camera-frame corner and edges
        u, v = R.T @ rect.u, R.T @ rect.v
        n = np.cross(u, v)
        n /= np.linalg.norm(n)
        offset = np.dot(n, o)                            # plane: n . X = offset (m)
        if abs(offset) < 1e-12:
            continue  # the camera lies in the plane: the rectangle is seen edge-on
        poly = _clip_near((rect.corners() - c) @ R)        # (n, 3) camera-frame polygon
        if len(poly) == 0:
            continue  # entirely behind the camera
        px, py = poly[:, 0] / poly[:, 2], poly[:, 1] / poly[:, 2]
        j0, j1 = np.searchsorted(a, px.min() - 1 / fx), np.searchsorted(a, px.max() + 1 / fx, side="right")
        i0, i1 = np.searchsorted(b, py.min() - 1 / fy), np.searchsorted(b, py.max() + 1 / fy, side="right")
        if j0 >= j1 or i0 >= i1:
            continue  # projects outside the image
        aa, bb = a[None, j0:j1], b[i0:i1, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = offset / (n[0] * aa + n[1] * bb + n[2])  # ray X = z [a, b, 1] meets the plane
            s = (z * (u[0] * aa + u[1] * bb + u[2]) - np.dot(u, o)) / np.dot(u, u)
            r = (z * (v[0] * aa + v[1] * bb + v[2]) - np.dot(v, o)) / np.dot(v, v)
        sub = best[i0:i1, j0:j1]
        hit = ((z > NEAR) & (z < sub) & (s >= -EDGE_EPS) & (s <= 1 + EDGE_EPS)
               & (r >= -EDGE_EPS) & (r <= 1 + EDGE_EPS))
        np.copyto(sub, z, where=hit)
        np.copyto(owner[i0:i1, j0:j1], k, where=hit)
        np.copyto(coord_s[i0:i1, j0:j1], s, where=hit)
        np.copyto(coord_r[i0:i1, j0:j1], r, where=hit)
    depth = np.where(np.isfinite(best), best, 0.0)
    if not shade:
        return None, depth
    rgb = np.zeros((H * W, 3), np.float32)
    owner, coord_s, coord_r = owner.reshape(-1), coord_s.reshape(-1), coord_r.reshape(-1)
    for k in np.unique(owner[owner >= 0]):
        rect = scene.rectangles[k]
        idx = np.flatnonzero(owner == k)
        th, tw = rect.texture.shape[:2]
        # Bilinear texture filtering with wrap-around (tiling); texel centres at integers + 0.5 in (s, r) units.
        map_x = (coord_s[idx] * rect.repeat[0] * tw - 0.5).astype(np.float32)[:, None]
        map_y = (coord_r[idx] * rect.repeat[1] * th - 0.5).astype(np.float32)[:, None]
        colour = cv2.remap(rect.texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        rgb[idx] = colour.reshape(-1, 3) * rect.brightness
    return rgb.reshape(H, W, 3), depth


def render(scene, world_T_cam, K, height, width, supersample=1):
    """Render a view of a scene by ray casting.

    Args:
        scene: Scene.
        world_T_cam: (4, 4) camera pose (maps camera-frame points to the world).
        K: (4,) intrinsics [fx, fy, cx, cy] in pixels.
        height, width: image size H, W.
        supersample: s > 1 averages the colour of an s x s grid of sub-pixel rays per pixel (anti-aliasing,
            at offsets (i + 0.5)/s - 0.5); depth always comes from the ray through the exact pixel centre.

    Returns:
        image (3, H, W) float32 RGB in [0, 1]; depth (1, H, W) float32, the camera-frame z of the nearest hit
        (m), 0 where the ray hits nothing. Never NaN or inf.
    """
    supersample = int(supersample)
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    xs, ys = np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)
    rgb, depth = _cast(scene, world_T_cam, K, xs, ys, shade=supersample == 1)
    if supersample > 1:
        rgb = np.zeros((height, width, 3), np.float32)
        offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
        for oy in offsets:
            for ox in offsets:
                rgb += _cast(scene, world_T_cam, K, xs + ox, ys + oy)[0]
        rgb /= supersample ** 2
    image = np.clip(rgb, 0, 1).transpose(2, 0, 1).astype(np.float32)
    return np.ascontiguousarray(image), depth[None].astype(np.float32)
