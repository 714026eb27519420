"""Procedurally generated indoor rooms rendered with Mitsuba 3.

Three built-in rooms (``bedroom``, ``office``, ``livingroom``) are assembled from Mitsuba primitives
(``cube``, ``sphere``, ``cylinder``, ``disk``, ``rectangle``) with diffuse / plastic / rough-plastic
materials, procedural bitmap textures on walls/floor/ceiling, area lights (ceiling panels, lamps,
windows) and a few textured "private" items: framed photographs (scikit-image sample photos) and
documents with text (rendered with PIL's default font).

:func:`render_room` renders a handheld-like indoor capture of a room into a folder in the nerfstudio
"nerfstudio-data" format (``transforms.json`` + ``images/`` + ``depths/``), plus off-trajectory
"leaked" extra views in ``extra/`` and a metadata file ``s2nerf_room.json``.

Conventions
-----------
* World frame: metres, **+z up**, floor at ``z = 0``; the room occupies ``[0, W] x [0, D] x [0, H]``.
* ``transform_matrix`` in ``transforms.json`` is camera-to-world in the nerfstudio/OpenGL convention
  (camera +x right, +y up, looking along -z).  Mitsuba's camera frame looks along +z with +y up and
  +x to the *left*, so ``c2w_mitsuba = c2w_nerfstudio @ diag(-1, 1, -1, 1)`` (the matrix is its own
  inverse).  ``tests/test_rooms.py`` checks this by reprojecting depth maps between views.
* Depth maps are **z-depth** (distance along the optical axis) in metres, float32 ``.npy`` of shape
  ``(H, W)``, averaged over the pixel (box filter, ``DEPTH_SPP`` samples).  Mitsuba's ``depth`` AOV is
  *not* z-depth: it is the ray parameter ``t`` measured from the ray origin, which the perspective
  sensor places on the near clipping plane (``o = c + d * near/d_z`` with unit ``d``), i.e.
  ``z = t * d_z + near_clip`` (:func:`_aov_to_zdepth`).  Because ``d_z`` varies within a jittered
  pixel, the depth pass instead renders the ``position`` AOV and computes the exact
  ``z = (p - c) . forward`` per pixel (:func:`_position_to_zdepth`); the ``depth`` AOV is only used
  as the hit mask.  ``tests/test_rooms.py`` checks both against an analytic plane.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RENDER_VERSION = 1
"""Bump whenever the room layouts / rendering change, so cached renders are invalidated."""

SCENES: Tuple[str, ...] = ("bedroom", "office", "livingroom")
"""Names of the built-in rooms."""

VARIANT = "scalar_rgb"
FOV_DEG = 65.0
"""Horizontal (= vertical, images are square) field of view of every camera, in degrees."""
NEAR_CLIP = 0.01
FAR_CLIP = 100.0
MAX_DEPTH = 5
"""Path-tracer maximum path depth (global illumination with a few bounces)."""
RR_DEPTH = 3
"""Russian roulette starts at this path depth (unbiased; ~20% faster than without it)."""
DEPTH_SPP = 4
"""Samples per pixel for the depth (AOV) pass; box filter, so depth is averaged within the pixel."""
EVAL_INTERVAL = 8
"""Every ``EVAL_INTERVAL``-th view (``i % EVAL_INTERVAL == 0``) is held out for evaluation."""
TEX_PPM = 96
"""Pixels per metre of the procedural wall / floor textures."""

_FLIP_YZ = np.diag([-1.0, 1.0, -1.0, 1.0])  # nerfstudio camera frame <-> mitsuba camera frame


# --------------------------------------------------------------------------------------------------
# small geometry helpers
# --------------------------------------------------------------------------------------------------


def _translate(t: Sequence[float]) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = t
    return m


def _scale(s: Sequence[float]) -> np.ndarray:
    return np.diag([float(s[0]), float(s[1]), float(s[2]), 1.0])


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    return m


def _frame(x: np.ndarray, y: np.ndarray, z: np.ndarray, origin: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, origin
    return m


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _mi_tf(m: np.ndarray):
    import mitsuba as mi

    return mi.ScalarTransform4f(np.asarray(m, dtype=np.float64).tolist())


# --------------------------------------------------------------------------------------------------
# materials
# --------------------------------------------------------------------------------------------------


def _rgb(c: Sequence[float]) -> Dict[str, Any]:
    return {"type": "rgb", "value": [float(v) for v in c]}


def diffuse(c: Sequence[float]) -> Dict[str, Any]:
    return {"type": "diffuse", "reflectance": _rgb(c)}


def plastic(c: Sequence[float]) -> Dict[str, Any]:
    return {"type": "plastic", "diffuse_reflectance": _rgb(c), "int_ior": 1.5}


def roughplastic(c: Sequence[float], alpha: float = 0.25) -> Dict[str, Any]:
    return {"type": "roughplastic", "diffuse_reflectance": _rgb(c), "alpha": float(alpha), "distribution": "ggx"}


def textured(path: Path, kind: str = "diffuse", alpha: float = 0.3) -> Dict[str, Any]:
    """A material whose albedo is an (upright, sRGB) image file.

    Mitsuba's bitmap puts uv=(0,0) at the *top-left* pixel while the rectangle's v grows with its local
    +y, so v is flipped with ``to_uv`` to show the image upright (checked visually: text is readable).
    """
    import mitsuba as mi

    tex = {
        "type": "bitmap",
        "filename": str(path),
        "to_uv": mi.ScalarTransform3f([[1, 0, 0], [0, -1, 1], [0, 0, 1]]),
    }
    if kind == "roughplastic":
        return {"type": "roughplastic", "diffuse_reflectance": tex, "alpha": float(alpha), "distribution": "ggx"}
    return {"type": "diffuse", "reflectance": tex}


def _twosided(bsdf: Dict[str, Any]) -> Dict[str, Any]:
    return {"type": "twosided", "material": bsdf}


# --------------------------------------------------------------------------------------------------
# procedural textures (uint8 sRGB images)
# --------------------------------------------------------------------------------------------------


def _to_u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Value noise in [0, 1]: random grid upsampled bilinearly."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.random((gh, gw)).astype(np.float32)
    img = Image.fromarray((grid * 255).astype(np.uint8)).resize((gw * cell, gh * cell), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)[:h, :w] / 255.0


def _wood_floor(rng, w_m: float, h_m: float, base: Sequence[float], plank_w: float = 0.16) -> np.ndarray:
    w, h = max(8, int(w_m * TEX_PPM)), max(8, int(h_m * TEX_PPM))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pw = plank_w * TEX_PPM
    row = (yy // pw).astype(int)
    nrows = int(row.max()) + 1
    plank_len = 1.2 * TEX_PPM
    offsets = rng.random(nrows) * plank_len
    seg = ((xx + offsets[row]) // plank_len).astype(int)
    tone = rng.normal(0.0, 0.07, size=(nrows, int(seg.max()) + 2))[row, seg]
    grain = 0.05 * np.sin(yy * 0.9 + 3.0 * _smooth_noise(rng, h, w, 24) * 6.0) + 0.05 * (_smooth_noise(rng, h, w, 6) - 0.5)
    img = np.asarray(base, np.float32)[None, None, :] * (1.0 + tone + grain)[..., None]
    gap = ((yy % pw) < 1.2) | (((xx + offsets[row]) % plank_len) < 1.2)
    img[gap] *= 0.45
    return _to_u8(img)


def _carpet_tiles(rng, w_m: float, h_m: float, base: Sequence[float], tile: float = 0.5) -> np.ndarray:
    w, h = max(8, int(w_m * TEX_PPM)), max(8, int(h_m * TEX_PPM))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = tile * TEX_PPM
    ti, tj = (yy // t).astype(int), (xx // t).astype(int)
    checker = ((ti + tj) % 2).astype(np.float32)
    tones = rng.normal(0, 0.05, size=(int(ti.max()) + 1, int(tj.max()) + 1))[ti, tj]
    fibre = 0.12 * (rng.random((h, w)).astype(np.float32) - 0.5)
    stripes = 0.06 * np.sin((xx * (1 - checker) + yy * checker) * 1.3)
    img = np.asarray(base, np.float32)[None, None, :] * (1.0 + 0.12 * checker + tones + fibre + stripes)[..., None]
    return _to_u8(img)


def _wallpaper(rng, w_m: float, h_m: float, base: Sequence[float], style: str) -> np.ndarray:
    w, h = max(8, int(w_m * TEX_PPM)), max(8, int(h_m * TEX_PPM))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / TEX_PPM  # metres
    if style == "stripes":
        pat = 0.07 * np.sign(np.sin(2 * math.pi * xx / 0.22)) + 0.03 * np.sin(2 * math.pi * xx / 0.055)
    elif style == "trellis":
        a = np.abs(((xx + yy) / 0.3) % 1.0 - 0.5)
        b = np.abs(((xx - yy) / 0.3) % 1.0 - 0.5)
        pat = -0.10 * ((a < 0.06) | (b < 0.06)).astype(np.float32) + 0.05 * (
            (np.hypot((xx % 0.3) - 0.15, (yy % 0.3) - 0.15) < 0.04).astype(np.float32)
        )
    else:  # "panels": large acoustic panels with a grid
        gx = (xx % 0.8) < 0.015
        gy = (yy % 0.8) < 0.015
        pat = -0.12 * (gx | gy).astype(np.float32) + 0.04 * np.sin(2 * math.pi * yy / 0.4) * np.sin(2 * math.pi * xx / 0.4)
    blotch = 0.06 * (_smooth_noise(rng, h, w, 40) - 0.5) + 0.03 * (rng.random((h, w)).astype(np.float32) - 0.5)
    img = np.asarray(base, np.float32)[None, None, :] * (1.0 + pat + blotch)[..., None]
    return _to_u8(img)


def _ceiling(rng, w_m: float, h_m: float, tiles: bool) -> np.ndarray:
    w, h = max(8, int(w_m * TEX_PPM)), max(8, int(h_m * TEX_PPM))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / TEX_PPM
    pat = 0.04 * (_smooth_noise(rng, h, w, 30) - 0.5) + 0.04 * (rng.random((h, w)).astype(np.float32) - 0.5)
    if tiles:
        pat = pat - 0.15 * (((xx % 0.6) < 0.012) | ((yy % 0.6) < 0.012)).astype(np.float32)
    img = np.full((h, w, 3), 0.9, np.float32) * (1.0 + pat)[..., None]
    return _to_u8(img)


def _rug(rng, w_m: float, h_m: float, c1, c2, c3) -> np.ndarray:
    w, h = max(8, int(w_m * TEX_PPM)), max(8, int(h_m * TEX_PPM))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / TEX_PPM
    cx, cy = w_m / 2, h_m / 2
    d = np.maximum(np.abs(xx - cx) / w_m, np.abs(yy - cy) / h_m)
    ring = (np.floor(d * 14) % 3).astype(int)
    cols = np.stack([np.asarray(c, np.float32) for c in (c1, c2, c3)])
    img = cols[ring]
    diamond = (np.abs(xx - cx) / w_m + np.abs(yy - cy) / h_m) < 0.18
    img[diamond] = cols[(ring[diamond] + 1) % 3]
    img *= (1.0 + 0.1 * (rng.random((h, w)).astype(np.float32) - 0.5))[..., None]
    return _to_u8(img)


def _text_image(title: str, lines: Sequence[str], *, width: int = 110, height: int = 150,
                paper=(250, 248, 240), ink=(20, 20, 40), upscale: int = 4) -> np.ndarray:
    """Render a small "document" with PIL's default font, then scale it up (nearest) for legibility."""
    img = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((6, 5), title, fill=(150, 20, 20), font=font)
    draw.line([(6, 18), (width - 6, 18)], fill=ink, width=1)
    y = 22
    for line in lines:
        draw.text((6, y), line, fill=ink, font=font)
        y += 12
    draw.rectangle([0, 0, width - 1, height - 1], outline=(170, 170, 170))
    img = img.resize((width * upscale, height * upscale), Image.NEAREST)
    return np.asarray(img)


def _photo(name: str, max_side: int = 320) -> np.ndarray:
    """A bundled scikit-image sample photo as an uint8 RGB array (downscaled)."""
    import skimage.data

    arr = getattr(skimage.data, name)()
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    arr = arr[..., :3].astype(np.uint8)
    img = Image.fromarray(arr)
    s = max_side / max(img.size)
    if s < 1:
        img = img.resize((max(1, round(img.size[0] * s)), max(1, round(img.size[1] * s))), Image.LANCZOS)
    return np.asarray(img)


# --------------------------------------------------------------------------------------------------
# room builder
# --------------------------------------------------------------------------------------------------


@dataclass
class _Room:
    name: str
    size: Tuple[float, float, float]  # W (x), D (y), H (z)
    tex_dir: Path
    rng: np.random.Generator
    shapes: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    obstacles: List[Tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)
    private_items: List[Dict[str, Any]] = field(default_factory=list)
    lights: List[str] = field(default_factory=list)
    loop: Tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    """Camera loop (centre x, centre y, radius x, radius y) through the free floor space."""

    # -- bookkeeping ---------------------------------------------------------------------------
    def _add(self, name: str, shape: Dict[str, Any], lo=None, hi=None) -> None:
        name = name.replace(".", "_")  # '.' is reserved in Mitsuba object ids
        key = name
        k = 1
        while key in self.shapes:
            k += 1
            key = f"{name}_{k}"
        self.shapes[key] = shape
        if lo is not None:
            self.obstacles.append((key, np.asarray(lo, float), np.asarray(hi, float)))

    def save_texture(self, name: str, img: np.ndarray) -> Path:
        path = self.tex_dir / f"{name}.png"
        Image.fromarray(img).save(path)
        return path

    def jitter(self, scale: float = 0.04) -> float:
        return float(self.rng.uniform(-scale, scale))

    # -- primitives ----------------------------------------------------------------------------
    def box(self, name: str, center, size, bsdf, yaw: float = 0.0, obstacle: bool = True) -> None:
        center, size = np.asarray(center, float), np.asarray(size, float)
        m = _translate(center) @ _rot_z(yaw) @ _scale(size / 2)
        corners = np.array([[sx, sy, sz, 1.0] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        pts = (m @ corners.T).T[:, :3]
        lo, hi = (pts.min(0), pts.max(0)) if obstacle else (None, None)
        self._add(name, {"type": "cube", "to_world": _mi_tf(m), "bsdf": bsdf}, lo, hi)

    def sphere(self, name: str, center, radius: float, bsdf=None, emitter=None, obstacle: bool = True) -> None:
        c = np.asarray(center, float)
        shape: Dict[str, Any] = {"type": "sphere", "center": c.tolist(), "radius": float(radius)}
        if bsdf is not None:
            shape["bsdf"] = bsdf
        if emitter is not None:
            shape["emitter"] = emitter
        lo, hi = (c - radius, c + radius) if obstacle else (None, None)
        self._add(name, shape, lo, hi)

    def cylinder(self, name: str, base, height: float, radius: float, bsdf, caps: bool = True, obstacle: bool = True) -> None:
        """Vertical cylinder from ``base`` (x, y, z) up by ``height``, closed with disks."""
        b = np.asarray(base, float)
        top = b + [0, 0, height]
        self._add(name, {"type": "cylinder", "p0": b.tolist(), "p1": top.tolist(), "radius": float(radius), "bsdf": bsdf})
        if caps:
            self._add(name + "_top", {"type": "disk", "to_world": _mi_tf(_translate(top) @ _scale([radius, radius, 1])), "bsdf": bsdf})
            flip = np.diag([1.0, -1.0, -1.0, 1.0])
            self._add(name + "_bot", {"type": "disk", "to_world": _mi_tf(_translate(b) @ flip @ _scale([radius, radius, 1])), "bsdf": bsdf})
        if obstacle:
            self.obstacles.append((name, b - [radius, radius, 0], top + [radius, radius, 0]))

    def rect(self, name: str, center, right, up, width: float, height: float, bsdf=None, emitter=None) -> None:
        """Rectangle whose local +x is ``right`` and +y is ``up``; it faces ``right x up``."""
        r, u = _normalize(np.asarray(right, float)), _normalize(np.asarray(up, float))
        n = np.cross(r, u)
        m = _frame(r * width / 2, u * height / 2, n, np.asarray(center, float))
        shape: Dict[str, Any] = {"type": "rectangle", "to_world": _mi_tf(m)}
        if bsdf is not None:
            shape["bsdf"] = bsdf
        if emitter is not None:
            shape["emitter"] = emitter
        self._add(name, shape)

    # -- walls -----------------------------------------------------------------------------------
    def wall_frame(self, wall: str):
        """(origin of the wall's u axis, u direction, inward normal) for wall in south/north/west/east."""
        W, D, _ = self.size
        if wall == "south":
            return np.array([0.0, 0, 0]), np.array([1.0, 0, 0]), np.array([0.0, 1, 0])
        if wall == "north":
            return np.array([0.0, D, 0]), np.array([1.0, 0, 0]), np.array([0.0, -1, 0])
        if wall == "west":
            return np.array([0.0, 0, 0]), np.array([0.0, 1, 0]), np.array([1.0, 0, 0])
        if wall == "east":
            return np.array([W, 0.0, 0]), np.array([0.0, 1, 0]), np.array([-1.0, 0, 0])
        raise ValueError(wall)

    def wall_point(self, wall: str, u: float, z: float, offset: float = 0.0) -> np.ndarray:
        o, du, n = self.wall_frame(wall)
        return o + du * u + np.array([0, 0, z]) + n * offset

    def wall_rect(self, name: str, wall: str, u: float, z: float, width: float, height: float,
                  bsdf=None, emitter=None, offset: float = 0.002) -> None:
        _, _, n = self.wall_frame(wall)
        up = np.array([0.0, 0, 1])
        right = np.cross(-n, up)  # viewer faces the wall (looking along -n): their right-hand side
        self.rect(name, self.wall_point(wall, u, z, offset), right, up, width, height, bsdf=bsdf, emitter=emitter)

    def wall_box(self, name: str, wall: str, u: float, z: float, width: float, height: float, depth: float, bsdf,
                 obstacle: bool = False) -> None:
        _, du, n = self.wall_frame(wall)
        c = self.wall_point(wall, u, z, depth / 2)
        size = np.abs(du) * width + np.abs(n) * depth + np.array([0, 0, height])
        self.box(name, c, size, bsdf, obstacle=obstacle)

    def framed_picture(self, name: str, wall: str, u: float, z: float, img: np.ndarray, height: float,
                       frame_bsdf=None, source: str = "") -> None:
        path = self.save_texture(name, img)
        width = height * img.shape[1] / img.shape[0]
        border, depth = 0.05, 0.03
        self.wall_box(name + "_frame", wall, u, z, width + 2 * border, height + 2 * border, depth,
                      frame_bsdf or roughplastic([0.05, 0.04, 0.03], 0.2))
        self.wall_rect(name, wall, u, z, width, height, bsdf=_twosided(textured(path)), offset=depth + 0.002)
        self.private_items.append({"name": name, "kind": "photo", "source": source, "wall": wall,
                                   "texture": f"textures/{path.name}"})

    def document(self, name: str, img: np.ndarray, center, right, up, height: float, kind: str = "document",
                 glossy: bool = False) -> None:
        path = self.save_texture(name, img)
        width = height * img.shape[1] / img.shape[0]
        bsdf = textured(path, "roughplastic", 0.15) if glossy else textured(path)
        self.rect(name, center, right, up, width, height, bsdf=_twosided(bsdf))
        self.private_items.append({"name": name, "kind": kind, "texture": f"textures/{path.name}"})

    def wall_document(self, name: str, img: np.ndarray, wall: str, u: float, z: float, height: float,
                      offset: float = 0.004, kind: str = "document", glossy: bool = False) -> None:
        _, _, n = self.wall_frame(wall)
        up = np.array([0.0, 0, 1])
        self.document(name, img, self.wall_point(wall, u, z, offset), np.cross(-n, up), up, height, kind=kind,
                      glossy=glossy)

    def shell(self, wall_img: np.ndarray, floor_img: np.ndarray, ceil_img: np.ndarray, skirting_bsdf) -> None:
        W, D, H = self.size
        floor = self.save_texture("floor", floor_img)
        ceil = self.save_texture("ceiling", ceil_img)
        self.rect("floor", [W / 2, D / 2, 0], [1, 0, 0], [0, 1, 0], W, D, bsdf=roughplastic_tex(floor, 0.35))
        self.rect("ceiling", [W / 2, D / 2, H], [1, 0, 0], [0, -1, 0], W, D, bsdf=_twosided(textured(ceil)))
        for wall in ("south", "north", "west", "east"):
            length = W if wall in ("south", "north") else D
            img = wall_img if wall in ("south", "north") else wall_img[:, : max(8, int(D * TEX_PPM))]
            tex = self.save_texture(f"wall_{wall}", img)
            self.wall_rect(f"wall_{wall}", wall, length / 2, H / 2, length, H, bsdf=_twosided(textured(tex)), offset=0.0)
            self.wall_box(f"skirting_{wall}", wall, length / 2, 0.05, length, 0.1, 0.02, skirting_bsdf)

    def ceiling_panel(self, name: str, x: float, y: float, sx: float, sy: float, radiance) -> None:
        H = self.size[2]
        self.box(name + "_housing", [x, y, H - 0.015], [sx + 0.06, sy + 0.06, 0.03], diffuse([0.8, 0.8, 0.8]), obstacle=False)
        self.rect(name, [x, y, H - 0.031], [1, 0, 0], [0, -1, 0], sx, sy,
                  emitter={"type": "area", "radiance": _rgb(radiance)})
        self.lights.append(name)

    def window(self, name: str, wall: str, u: float, z: float, width: float, height: float, radiance) -> None:
        self.wall_rect(name, wall, u, z, width, height, emitter={"type": "area", "radiance": _rgb(radiance)}, offset=0.004)
        frame = roughplastic([0.85, 0.85, 0.82], 0.3)
        t = 0.05
        for k, (du, dz, w, h) in enumerate([(0, height / 2, width + 2 * t, t), (0, -height / 2, width + 2 * t, t),
                                            (-width / 2, 0, t, height), (width / 2, 0, t, height), (0, 0, t * 0.6, height)]):
            self.wall_box(f"{name}_frame{k}", wall, u + du, z + dz, w, h, 0.05, frame)
        self.wall_box(name + "_sill", wall, u, z - height / 2 - 0.04, width + 0.2, 0.04, 0.18, frame)
        self.lights.append(name)

    def lamp(self, name: str, base, pole: float, shade_r: float, radiance) -> None:
        b = np.asarray(base, float)
        metal = roughplastic([0.15, 0.15, 0.15], 0.2)
        self.cylinder(name + "_base", b, 0.03, 0.12 if pole > 0.8 else 0.07, metal)
        self.cylinder(name + "_pole", b + [0, 0, 0.03], pole, 0.015, metal, caps=False)
        self.sphere(name + "_bulb", b + [0, 0, 0.03 + pole + shade_r * 0.9], shade_r,
                    emitter={"type": "area", "radiance": _rgb(radiance)})
        self.lights.append(name)

    def table(self, name: str, center, size, top_bsdf, leg_bsdf, yaw: float = 0.0, leg_r: float = 0.025) -> None:
        c, s = np.asarray(center, float), np.asarray(size, float)  # centre on the floor, size (w, d, height)
        top_t = 0.04
        self.box(name + "_top", c + [0, 0, s[2] - top_t / 2], [s[0], s[1], top_t], top_bsdf, yaw=yaw)
        R = _rot_z(yaw)[:3, :3]
        for sx in (-1, 1):
            for sy in (-1, 1):
                off = R @ np.array([sx * (s[0] / 2 - 0.06), sy * (s[1] / 2 - 0.06), 0])
                self.cylinder(f"{name}_leg", c + off, s[2] - top_t, leg_r, leg_bsdf, obstacle=False)

    def chair(self, name: str, center, yaw: float, bsdf, leg_bsdf, seat_h: float = 0.45) -> None:
        """Simple chair; ``yaw`` rotates it, the backrest is on the local +y side."""
        c = np.asarray(center, float)
        R = _rot_z(yaw)[:3, :3]
        self.box(name + "_seat", c + [0, 0, seat_h], [0.46, 0.46, 0.05], bsdf, yaw=yaw)
        self.box(name + "_back", c + R @ [0, 0.21, seat_h + 0.28], [0.46, 0.04, 0.5], bsdf, yaw=yaw)
        for sx in (-1, 1):
            for sy in (-1, 1):
                self.cylinder(f"{name}_leg", c + R @ [sx * 0.19, sy * 0.19, 0], seat_h - 0.025, 0.018, leg_bsdf, obstacle=False)

    def office_chair(self, name: str, center, yaw: float, bsdf) -> None:
        c = np.asarray(center, float)
        R = _rot_z(yaw)[:3, :3]
        metal = roughplastic([0.05, 0.05, 0.05], 0.2)
        self.cylinder(name + "_foot", c, 0.04, 0.3, metal)
        self.cylinder(name + "_post", c + [0, 0, 0.04], 0.38, 0.03, metal, caps=False, obstacle=False)
        self.box(name + "_seat", c + [0, 0, 0.47], [0.5, 0.5, 0.08], bsdf, yaw=yaw)
        self.box(name + "_back", c + R @ [0, 0.24, 0.82], [0.46, 0.06, 0.6], bsdf, yaw=yaw)

    def bookshelf(self, name: str, wall: str, u: float, width: float, height: float, depth: float, n_shelves: int,
                  wood) -> None:
        _, du, n = self.wall_frame(wall)
        t = 0.025
        self.wall_box(name + "_back", wall, u, height / 2, width, height, 0.02, wood, obstacle=True)
        for s in (-1, 1):
            self.wall_box(name + "_side", wall, u + s * (width / 2 - t / 2), height / 2, t, height, depth, wood, obstacle=True)
        gap = (height - t) / n_shelves
        palette = [[0.45, 0.05, 0.04], [0.05, 0.15, 0.4], [0.08, 0.3, 0.1], [0.6, 0.45, 0.08], [0.5, 0.5, 0.45],
                   [0.25, 0.08, 0.3], [0.05, 0.05, 0.05], [0.7, 0.25, 0.05]]
        for k in range(n_shelves + 1):
            z = t / 2 + k * gap
            self.wall_box(name + "_shelf", wall, u, z, width - 2 * t, t, depth, wood)
            if k == n_shelves:
                break
            x = -width / 2 + t + 0.02
            while True:
                bw = float(self.rng.uniform(0.025, 0.06))
                if x + bw > width / 2 - t - 0.02:
                    break
                bh = float(self.rng.uniform(0.55, 0.85)) * (gap - t)
                bd = float(self.rng.uniform(0.6, 0.9)) * depth
                col = palette[int(self.rng.integers(len(palette)))]
                c = self.wall_point(wall, u + x + bw / 2, z + t / 2 + bh / 2, 0.02 + bd / 2)
                self.box(name + "_book", c, np.abs(du) * bw + np.abs(n) * bd + [0, 0, bh], diffuse(col), obstacle=False)
                x += bw + (0.03 if self.rng.random() < 0.08 else 0.002)

    def plant(self, name: str, base, scale: float = 1.0) -> None:
        b = np.asarray(base, float)
        self.cylinder(name + "_pot", b, 0.35 * scale, 0.16 * scale, roughplastic([0.55, 0.22, 0.1], 0.4))
        greens = [[0.06, 0.25, 0.05], [0.1, 0.35, 0.08], [0.04, 0.18, 0.06]]
        top = b + [0, 0, 0.35 * scale]
        for k in range(5):
            off = np.array([self.rng.uniform(-0.12, 0.12), self.rng.uniform(-0.12, 0.12), self.rng.uniform(0.12, 0.55)]) * scale
            self.sphere(name + "_leaves", top + off, float(self.rng.uniform(0.13, 0.2)) * scale, bsdf=diffuse(greens[k % 3]))


def roughplastic_tex(path: Path, alpha: float) -> Dict[str, Any]:
    return textured(path, "roughplastic", alpha)


# --------------------------------------------------------------------------------------------------
# the three rooms
# --------------------------------------------------------------------------------------------------

_FAKE_TEXTS = {
    "letter": ("PRIVATE LETTER", ["Dear Anna,", "the code for the", "safe is 4-7-1-9.", "Key under the", "blue flower pot.",
                                  "Don't tell Tom!", "", "Love, Mia", "12 Elm St, Apt 3"]),
    "diary": ("DIARY  12 MAY", ["Dr. Weber 10:30", "blood test result", "due on Friday.", "Rent 1450 EUR", "IBAN DE44 5001",
                                "0517 5407 3249 31"]),
    "whiteboard": ("Q3 PLANNING - CONFIDENTIAL", ["WIFI: corp-guest", "PASS: Tr0ub4dor&3", "Launch: 14 Oct", "Budget cut -12%",
                                                   "Layoffs: team B?", "Server root pw", "  -> ask Sam"]),
    "email": ("INBOX  (3 unread)", ["From: ceo@acme.co", "Re: acquisition", "Offer 42.5M USD", "NDA until Dec 1",
                                    "Do not forward!"]),
    "memo": ("MEMO - HR", ["Salary review:", "J. Smith 84,000", "K. Lee   91,500", "R. Diaz  77,250", "Confidential"]),
    "bank": ("BANK STATEMENT", ["Acct 0042-1337-88", "Name: M. Rivera", "Balance 12,408.55", "Card ****-9921",
                                "PIN letter sent", "Due: 03/28"]),
    "calendar": ("MARCH", ["Mo  3  dentist 9h", "We  5  pay rent", "Fr  7  Mia bday", "Sa 15  trip: Rome", "Tu 18  MRI 14:00",
                           "Alarm code 2580"]),
}


def _text(key: str, **kw) -> np.ndarray:
    title, lines = _FAKE_TEXTS[key]
    return _text_image(title, lines, **kw)


def _build_bedroom(r: _Room) -> None:
    W, D, H = r.size
    rng = r.rng
    r.shell(_wallpaper(rng, W, H, [0.62, 0.7, 0.78], "stripes"), _wood_floor(rng, W, D, [0.55, 0.36, 0.2]),
            _ceiling(rng, W, D, tiles=False), diffuse([0.85, 0.85, 0.85]))
    wood = roughplastic([0.35, 0.2, 0.1], 0.3)
    blanket = [[0.1, 0.15, 0.45], [0.5, 0.08, 0.1], [0.15, 0.35, 0.2]][int(rng.integers(3))]
    bx = 1.3 + r.jitter(0.03)
    # bed in the north-west corner (headboard against the north wall)
    r.box("bed_frame", [bx, D - 1.07, 0.2], [1.7, 2.1, 0.4], wood)
    r.box("mattress", [bx, D - 1.07, 0.5], [1.6, 2.0, 0.2], diffuse([0.85, 0.85, 0.82]))
    r.box("blanket", [bx, D - 1.4, 0.625], [1.66, 1.4, 0.05], diffuse(blanket))
    r.box("blanket_fold", [bx, D - 0.72, 0.64], [1.66, 0.2, 0.07], diffuse([0.9, 0.9, 0.85]))
    for s in (-1, 1):
        r.box("pillow", [bx + s * 0.38, D - 0.32, 0.66], [0.62, 0.36, 0.14], diffuse([0.9, 0.88, 0.8]))
    r.box("headboard", [bx, D - 0.05, 0.62], [1.8, 0.1, 1.24], roughplastic([0.45, 0.4, 0.55], 0.5))
    # nightstand + bedside lamp
    r.box("nightstand", [bx + 1.15, D - 0.25, 0.27], [0.45, 0.42, 0.54], roughplastic([0.85, 0.82, 0.75], 0.2))
    r.lamp("bedside_lamp", [bx + 1.15, D - 0.25, 0.54], 0.3, 0.09, [9.0, 6.5, 3.5])
    # private photo over the bed
    r.framed_picture("photo_astronaut", "north", bx, 1.72, _photo("astronaut"), 0.62, source="skimage.data.astronaut")
    # wardrobe on the east wall
    wy = D - 1.25
    r.box("wardrobe", [W - 0.31, wy, 1.0], [0.6, 1.4, 2.0], roughplastic([0.9, 0.88, 0.82], 0.3))
    for s in (-1, 1):
        r.box("wardrobe_door", [W - 0.62, wy + s * 0.35, 1.0], [0.02, 0.68, 1.9], plastic([0.75, 0.55, 0.35]))
        r.sphere("wardrobe_knob", [W - 0.645, wy + s * 0.06, 1.05], 0.025, bsdf=roughplastic([0.1, 0.1, 0.1], 0.1))
    # desk + chair on the south wall, with a letter on the desk and a diary note pinned above
    dx = 2.8 + r.jitter()
    r.table("desk", [dx, 0.33, 0], [1.2, 0.6, 0.75], roughplastic([0.6, 0.45, 0.3], 0.25), diffuse([0.1, 0.1, 0.1]))
    r.chair("desk_chair", [dx + 0.1, 0.92, 0], 0.15, roughplastic([0.7, 0.1, 0.08], 0.3), diffuse([0.2, 0.2, 0.2]))
    # documents lying on furniture are oriented to be read from the room centre
    r.document("letter_desk", _text("letter"), [dx - 0.2, 0.36, 0.752], [-math.cos(0.2), -math.sin(0.2), 0],
               [math.sin(0.2), -math.cos(0.2), 0], 0.36)
    r.box("laptop", [dx + 0.3, 0.3, 0.76], [0.34, 0.24, 0.02], roughplastic([0.6, 0.6, 0.62], 0.15), yaw=-0.2)
    r.box("corkboard", r.wall_point("south", dx, 1.55, 0.01), [0.9, 0.02, 0.6], diffuse([0.6, 0.42, 0.25]), obstacle=False)
    r.wall_document("diary_note", _text("diary"), "south", dx - 0.12, 1.55, 0.5, offset=0.023)
    # low bookshelf + cat photo on the west wall
    r.bookshelf("shelf", "west", 1.1, 1.0, 0.9, 0.32, 2, roughplastic([0.4, 0.25, 0.12], 0.3))
    r.framed_picture("photo_cat", "west", 1.1, 1.55, _photo("chelsea"), 0.45, source="skimage.data.chelsea",
                     frame_bsdf=roughplastic([0.7, 0.6, 0.3], 0.2))
    # plant, rug, ceiling light
    r.plant("plant", [W - 0.4, 0.4, 0], 1.1)
    rug = r.save_texture("rug", _rug(rng, 1.8, 1.2, [0.6, 0.1, 0.1], [0.85, 0.75, 0.55], [0.1, 0.1, 0.3]))
    r.rect("rug", [2.9, 1.9, 0.004], [1, 0, 0], [0, 1, 0], 1.8, 1.2, bsdf=textured(rug))
    r.ceiling_panel("ceiling_light", W / 2, D / 2, 1.2, 1.2, [8.5, 8.2, 7.6])
    r.loop = (2.95, 2.0, 1.2, 0.9)


def _build_office(r: _Room) -> None:
    W, D, H = r.size
    rng = r.rng
    r.shell(_wallpaper(rng, W, H, [0.72, 0.7, 0.66], "panels"), _carpet_tiles(rng, W, D, [0.32, 0.34, 0.38]),
            _ceiling(rng, W, D, tiles=True), diffuse([0.2, 0.2, 0.22]))
    desk_top = roughplastic([0.75, 0.72, 0.66], 0.2)
    steel = roughplastic([0.3, 0.3, 0.32], 0.25)
    black = plastic([0.02, 0.02, 0.02])
    # two desks with monitors along the north wall
    screens = [("screen_email", _text("email", paper=(230, 240, 255)), "document"),
               ("screen_photo", _photo("camera"), "photo")]
    for k, x in enumerate([1.45 + r.jitter(), 3.65 + r.jitter()]):
        r.box("desk_top", [x, D - 0.42, 0.74], [1.6, 0.75, 0.04], desk_top)
        for s in (-1, 1):
            r.box("desk_side", [x + s * 0.76, D - 0.42, 0.36], [0.04, 0.7, 0.72], steel)
        r.cylinder("monitor_stand", [x, D - 0.3, 0.76], 0.18, 0.03, steel)
        r.box("monitor", [x, D - 0.3, 1.12], [0.62, 0.04, 0.38], black)
        name, img, kind = screens[k]
        r.document(name, img, [x, D - 0.3 - 0.022, 1.12], [1, 0, 0], [0, 0, 1], 0.34, kind=kind, glossy=True)
        if kind == "photo":
            r.private_items[-1]["source"] = "skimage.data.camera"
        r.box("keyboard", [x, D - 0.62, 0.77], [0.45, 0.15, 0.02], diffuse([0.12, 0.12, 0.12]))
        r.cylinder("mug", [x + 0.45, D - 0.55, 0.76], 0.1, 0.04, plastic([[0.7, 0.1, 0.1], [0.1, 0.3, 0.7]][k]))
        r.office_chair("office_chair", [x + 0.1 * (k - 0.5), D - 1.2, 0], math.pi + 0.2 * (k - 0.5), roughplastic([0.08, 0.1, 0.25], 0.4))
    # window above the desks
    r.window("window", "north", 2.55, 1.85, 2.4, 0.8, [2.2, 2.6, 3.2])
    # bookshelf on the west wall
    r.bookshelf("bookshelf", "west", 2.1, 1.5, 2.0, 0.35, 4, roughplastic([0.55, 0.4, 0.25], 0.3))
    # whiteboard with confidential notes on the east wall
    r.wall_box("whiteboard_frame", "east", 2.2, 1.45, 1.7, 1.08, 0.025, roughplastic([0.6, 0.6, 0.62], 0.15))
    r.wall_document("whiteboard", _text("whiteboard", width=170, height=105, paper=(245, 245, 245), ink=(10, 40, 120)),
                    "east", 2.2, 1.45, 1.0, offset=0.028, glossy=True)
    # coffee photo + rocket poster on the south wall
    r.framed_picture("photo_coffee", "south", 1.4, 1.6, _photo("coffee"), 0.5, source="skimage.data.coffee")
    r.framed_picture("poster_rocket", "south", 3.9, 1.55, _photo("rocket"), 0.75, source="skimage.data.rocket",
                     frame_bsdf=roughplastic([0.8, 0.8, 0.8], 0.2))
    # round meeting table with two chairs and a memo
    tx, ty = 3.95 + r.jitter(), 1.3 + r.jitter()
    r.cylinder("meeting_table_top", [tx, ty, 0.72], 0.04, 0.6, roughplastic([0.9, 0.9, 0.88], 0.2))
    r.cylinder("meeting_table_post", [tx, ty, 0.03], 0.69, 0.05, steel, caps=False)
    r.cylinder("meeting_table_foot", [tx, ty, 0.0], 0.03, 0.3, steel)
    r.chair("meeting_chair", [tx - 0.85, ty - 0.1, 0], math.pi / 2 + 0.1, roughplastic([0.85, 0.5, 0.1], 0.3), steel)
    r.chair("meeting_chair", [tx + 0.85, ty + 0.1, 0], -math.pi / 2 - 0.2, roughplastic([0.85, 0.5, 0.1], 0.3), steel)
    r.document("memo_table", _text("memo"), [tx, ty, 0.762], [1, 0, 0], [0, 1, 0], 0.32)
    # filing cabinet + plant
    r.box("cabinet", [W - 0.3, D - 0.35, 0.55], [0.5, 0.6, 1.1], roughplastic([0.45, 0.5, 0.55], 0.2))
    for k in range(3):
        r.box("drawer", [W - 0.3, D - 0.66, 0.2 + 0.35 * k], [0.44, 0.02, 0.3], roughplastic([0.55, 0.6, 0.65], 0.2))
    r.plant("plant", [W - 0.4, 0.4, 0], 1.3)
    r.plant("plant_small", [0.4, 0.4, 0], 0.9)
    for i, x in enumerate([W * 0.3, W * 0.7]):
        for j, y in enumerate([D * 0.33, D * 0.7]):
            r.ceiling_panel(f"panel_{i}{j}", x, y, 0.6, 1.2, [6.0, 6.0, 6.0])
    r.loop = (2.55, 2.05, 1.75, 0.95)


def _build_livingroom(r: _Room) -> None:
    W, D, H = r.size
    rng = r.rng
    r.shell(_wallpaper(rng, W, H, [0.78, 0.68, 0.55], "trellis"), _wood_floor(rng, W, D, [0.62, 0.45, 0.28], 0.2),
            _ceiling(rng, W, D, tiles=False), diffuse([0.9, 0.9, 0.88]))
    fabric = diffuse([[0.1, 0.35, 0.38], [0.45, 0.3, 0.2], [0.3, 0.3, 0.35]][int(rng.integers(3))])
    sx = 3.0 + r.jitter()
    # sofa against the south wall
    r.box("sofa_base", [sx, 0.5, 0.22], [2.2, 0.9, 0.44], fabric)
    r.box("sofa_back", [sx, 0.14, 0.65], [2.2, 0.26, 0.42], fabric)
    for s in (-1, 1):
        r.box("sofa_arm", [sx + s * 1.0, 0.55, 0.55], [0.2, 0.86, 0.24], fabric)
    for k in (-1, 0, 1):
        r.box("cushion", [sx + k * 0.6, 0.58, 0.5], [0.58, 0.7, 0.12], fabric)
    r.box("throw_pillow", [sx - 0.65, 0.36, 0.68], [0.4, 0.14, 0.36], diffuse([0.8, 0.6, 0.1]), yaw=0.1)
    r.box("throw_pillow", [sx + 0.65, 0.36, 0.68], [0.4, 0.14, 0.36], diffuse([0.7, 0.15, 0.2]), yaw=-0.1)
    r.framed_picture("photo_cat", "south", sx, 1.62, _photo("chelsea"), 0.62, source="skimage.data.chelsea")
    # coffee table with a bank statement and magazines
    r.table("coffee_table", [sx, 1.65, 0], [1.1, 0.6, 0.42], plastic([0.3, 0.18, 0.08]), diffuse([0.1, 0.1, 0.1]))
    r.document("bank_statement", _text("bank"), [sx - 0.18, 1.65, 0.422], [-math.cos(0.25), -math.sin(0.25), 0],
               [math.sin(0.25), -math.cos(0.25), 0], 0.34)
    r.box("magazine", [sx + 0.3, 1.62, 0.43], [0.22, 0.3, 0.02], diffuse([0.1, 0.4, 0.7]), yaw=0.4, obstacle=False)
    # TV on the north wall, showing the rocket photo
    r.box("tv_stand", [sx, D - 0.25, 0.25], [1.8, 0.45, 0.5], roughplastic([0.15, 0.12, 0.1], 0.25))
    r.box("tv", [sx, D - 0.05, 1.2], [1.3, 0.06, 0.78], plastic([0.02, 0.02, 0.02]))
    r.document("tv_screen", _photo("rocket"), [sx, D - 0.082, 1.2], [1, 0, 0], [0, 0, 1], 0.7, kind="photo", glossy=True)
    r.private_items[-1]["source"] = "skimage.data.rocket"
    r.plant("plant_tv", [sx + 0.7, D - 0.25, 0.5], 0.6)
    # armchair (east side, turned towards the room)
    ax, ay, yaw = W - 0.9, 1.6 + r.jitter(), -1.1
    R = _rot_z(yaw)[:3, :3]
    arm = diffuse([0.55, 0.2, 0.15])
    c = np.array([ax, ay, 0])
    r.box("armchair_base", c + [0, 0, 0.22], [0.85, 0.8, 0.44], arm, yaw=yaw)
    r.box("armchair_back", c + R @ [0, 0.32, 0.65], [0.85, 0.18, 0.45], arm, yaw=yaw)
    for s in (-1, 1):
        r.box("armchair_arm", c + R @ [s * 0.37, 0, 0.55], [0.12, 0.8, 0.22], arm, yaw=yaw)
    # floor lamp in the north-west corner, window on the west wall
    r.lamp("floor_lamp", [0.4, D - 0.4, 0], 1.55, 0.16, [9.0, 7.0, 4.0])
    r.window("window", "west", 2.2, 1.45, 1.6, 1.2, [2.6, 2.9, 3.3])
    # bookshelf + family photo + calendar on the east wall
    r.bookshelf("bookshelf", "east", D - 1.1, 1.2, 1.8, 0.33, 4, roughplastic([0.7, 0.7, 0.68], 0.25))
    r.framed_picture("photo_family", "east", D - 2.55, 1.6, _photo("astronaut"), 0.5, source="skimage.data.astronaut",
                     frame_bsdf=roughplastic([0.75, 0.6, 0.25], 0.2))
    r.wall_document("calendar", _text("calendar"), "east", 1.0, 1.55, 0.55, offset=0.006)
    # plant, rug, ceiling lights
    r.plant("plant", [0.45, 0.45, 0], 1.2)
    rug = r.save_texture("rug", _rug(rng, 2.6, 1.8, [0.75, 0.7, 0.6], [0.2, 0.3, 0.5], [0.6, 0.3, 0.15]))
    r.rect("rug", [sx, 1.9, 0.004], [1, 0, 0], [0, 1, 0], 2.6, 1.8, bsdf=textured(rug))
    for x in (W * 0.35, W * 0.65):
        r.ceiling_panel(f"ceiling_light_{x:.0f}", x, D / 2, 0.8, 0.8, [7.5, 7.1, 6.5])
    r.loop = (3.0, 2.65, 1.7, 1.05)


_ROOM_SPECS = {
    "bedroom": ((5.0, 4.2, 2.6), _build_bedroom),
    "office": ((5.6, 4.4, 2.7), _build_office),
    "livingroom": ((6.0, 4.8, 2.6), _build_livingroom),
}


def room_size(scene: str) -> Tuple[float, float, float]:
    """(W, D, H) of a room in metres."""
    _check_scene(scene)
    return _ROOM_SPECS[scene][0]


def room_aabb(scene: str) -> np.ndarray:
    """Axis-aligned bounding box ``[[0, 0, 0], [W, D, H]]`` of a room in world units (metres)."""
    return np.array([[0.0, 0.0, 0.0], list(room_size(scene))])


def _check_scene(scene: str) -> None:
    if scene not in _ROOM_SPECS:
        raise ValueError(f"Unknown scene {scene!r}; valid scenes are: {', '.join(SCENES)}")


def _scene_rng(scene: str, seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), SCENES.index(scene), stream])


def build_room(scene: str, tex_dir: Path, seed: int = 0) -> _Room:
    """Construct a room description (shapes, obstacles, private items); textures are written to ``tex_dir``."""
    _check_scene(scene)
    import mitsuba as mi

    if mi.variant() is None:
        mi.set_variant(VARIANT)
    size, builder = _ROOM_SPECS[scene]
    tex_dir = Path(tex_dir)
    tex_dir.mkdir(parents=True, exist_ok=True)
    room = _Room(scene, size, tex_dir, _scene_rng(scene, seed, 0))
    builder(room)
    return room


# --------------------------------------------------------------------------------------------------
# cameras
# --------------------------------------------------------------------------------------------------


def _look_rotation(forward: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """3x3 camera-to-world rotation in the nerfstudio convention (columns: right, up, back)."""
    f = _normalize(forward)
    right = _normalize(np.cross(f, [0.0, 0.0, 1.0]))
    up = np.cross(right, f)
    c, s = math.cos(roll), math.sin(roll)
    right, up = c * right + s * up, -s * right + c * up
    return np.stack([right, up, -f], axis=1)


def _c2w(pos: np.ndarray, forward: np.ndarray, roll: float = 0.0) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = _look_rotation(forward, roll)
    m[:3, 3] = pos
    return m


def _is_free(room: _Room, p: np.ndarray, margin: float = 0.22) -> bool:
    """A camera position is valid if it is inside the room (away from walls, floor and ceiling) and a
    person could stand there: outside the floor footprint (+ ``margin``) of every piece of furniture
    taller than 0.25 m (so cameras are never inside furniture, nor hovering over beds / tables)."""
    W, D, H = room.size
    if not (0.3 <= p[0] <= W - 0.3 and 0.3 <= p[1] <= D - 0.3 and 0.3 <= p[2] <= H - 0.25):
        return False
    for _, lo, hi in room.obstacles:
        in_footprint = lo[0] - margin <= p[0] <= hi[0] + margin and lo[1] - margin <= p[1] <= hi[1] + margin
        if in_footprint and (hi[2] > 0.25 or p[2] <= hi[2] + margin):
            return False
    return True


def _nearest_free(room: _Room, p: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Closest valid position to ``p``: searched along the radial line through ``centre`` first
    (inwards and outwards alternately), then on growing circles around ``p``."""
    if _is_free(room, p):
        return p
    radial = p[:2] - centre[:2]
    radial = radial / (np.linalg.norm(radial) + 1e-9)
    for step in np.arange(0.05, 2.0, 0.05):
        for sgn in (-1.0, 1.0):
            q = p.copy()
            q[:2] += sgn * step * radial
            if _is_free(room, q):
                return q
    for rad in np.arange(0.1, 3.0, 0.1):
        for ang in np.linspace(0, 2 * math.pi, 24, endpoint=False):
            q = p + [rad * math.cos(ang), rad * math.sin(ang), 0.0]
            if _is_free(room, q):
                return q
    raise RuntimeError(f"could not place a camera near {p} in room {room.name}")


def _loop_profile(room: _Room, n: int = 360, window_deg: float = 12.0) -> np.ndarray:
    """Largest free radius scale ``k(theta)`` (<= 1.2) of the camera loop, eroded and smoothed over
    ``window_deg`` so that the loop bends smoothly around furniture instead of jumping."""
    cx, cy, rx, ry = room.loop
    ks = np.empty(n)
    for j in range(n):
        th = 2 * math.pi * j / n
        k = 1.2
        while k > 0.15 and not (_is_free(room, np.array([cx + k * rx * math.cos(th), cy + k * ry * math.sin(th), 1.25]),
                                         margin=0.27)):
            k -= 0.01
        ks[j] = k
    w = max(1, int(round(window_deg / 360 * n)))
    idx = (np.arange(n)[:, None] + np.arange(-w, w + 1)[None, :]) % n
    eroded = ks[idx].min(axis=1)
    return eroded[idx].mean(axis=1)


def trajectory_poses(room: _Room, num_views: int, seed: int) -> np.ndarray:
    """Handheld-like loop through the room's free floor space: ``[N, 4, 4]`` camera-to-world
    (nerfstudio convention).  Cameras at ~1.2-1.7 m look across the room (through the loop centre)
    with smooth yaw / pitch / roll sway and small per-frame jitter."""
    rng = _scene_rng(room.name, seed, 1)
    cx, cy, rx, ry = room.loop
    centre = np.array([cx, cy, 0.0])
    phase = rng.uniform(0, 2 * math.pi)
    ph = rng.uniform(0, 2 * math.pi, size=8)
    profile = _loop_profile(room)
    poses = []
    for i in range(num_views):
        th = phase + 2 * math.pi * i / num_views
        rmod = 1.0 + 0.1 * math.sin(3 * th + ph[0]) + 0.05 * math.sin(5 * th + ph[1])
        rmod = min(rmod, float(profile[int(round((th % (2 * math.pi)) / (2 * math.pi) * len(profile))) % len(profile)]))
        z = 1.45 + 0.14 * math.sin(2 * th + ph[2]) + 0.06 * math.sin(7 * th + ph[3])
        pos = np.array([cx + rx * rmod * math.cos(th), cy + ry * rmod * math.sin(th), z])
        pos = pos + rng.normal(0, [0.02, 0.02, 0.015])
        pos = _nearest_free(room, pos, centre)
        # look across the room (through the loop centre, towards the opposite side), with a smooth yaw sway
        az = math.atan2(cy - pos[1], cx - pos[0])
        az += math.radians(28) * math.sin(2 * th + ph[4]) + math.radians(10) * math.sin(5 * th + ph[5])
        az += rng.normal(0, math.radians(2))
        pitch = math.radians(-13 + 6 * math.sin(3 * th + ph[6])) + rng.normal(0, math.radians(1.5))
        roll = math.radians(2.5) * math.sin(4 * th + ph[7]) + rng.normal(0, math.radians(1.0))
        fwd = np.array([math.cos(pitch) * math.cos(az), math.cos(pitch) * math.sin(az), math.sin(pitch)])
        poses.append(_c2w(pos, fwd, roll))
    return np.stack(poses)


def extra_poses(room: _Room, num_extra: int, seed: int) -> np.ndarray:
    """Off-trajectory views (room corners / wall middles at unusual heights, e.g. 2.1 m or 0.95 m),
    looking at the room centre: ``[M, 4, 4]`` camera-to-world (nerfstudio convention)."""
    rng = _scene_rng(room.name, seed, 2)
    W, D, H = room.size
    m = 0.45
    candidates = [(m, m), (W - m, D - m), (W - m, m), (m, D - m), (W / 2, m), (W / 2, D - m), (m, D / 2), (W - m, D / 2)]
    heights = [2.15, 0.95, 1.95, 1.1]
    centre = np.array([W / 2, D / 2, 0.0])
    poses = []
    for k in range(num_extra):
        if k < len(candidates):
            x, y = candidates[k]
        else:
            x, y = rng.uniform(m, W - m), rng.uniform(m, D - m)
        z = min(heights[k % len(heights)] + rng.uniform(-0.05, 0.05), H - 0.3)
        pos = _nearest_free(room, np.array([x, y, z]), centre)
        target = np.array([W / 2 + rng.uniform(-0.5, 0.5), D / 2 + rng.uniform(-0.5, 0.5), 0.8 + rng.uniform(-0.2, 0.2)])
        poses.append(_c2w(pos, target - pos, rng.normal(0, math.radians(1.5))))
    return np.stack(poses) if poses else np.zeros((0, 4, 4))


def intrinsics(resolution: int, fov_deg: float = FOV_DEG) -> Dict[str, float]:
    """Pinhole intrinsics of the square images (pixel centres at ``i + 0.5``, like nerfstudio)."""
    f = 0.5 * resolution / math.tan(math.radians(fov_deg) / 2)
    return {"fl_x": f, "fl_y": f, "cx": resolution / 2.0, "cy": resolution / 2.0, "w": resolution, "h": resolution}


# --------------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------------


def linear_to_srgb8(img: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(img, np.float64), 0.0, 1.0)
    s = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return (np.clip(s, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def _aov_to_zdepth(t: np.ndarray, resolution: int, near_clip: float = NEAR_CLIP) -> np.ndarray:
    """Approximate z-depth from Mitsuba's ``depth`` AOV alone (kept for reference / tests).

    The perspective sensor shoots unit-length rays ``d`` from ``o = c + d * near / d_z``, so a hit at
    ray parameter ``t`` has z-depth ``(t + near / d_z) * d_z = t * d_z + near``.  ``d_z`` is taken at
    the pixel centre, which is only approximate when the pixel's samples are jittered (box filter).
    """
    k = intrinsics(resolution)
    u = (np.arange(resolution) + 0.5 - k["cx"]) / k["fl_x"]
    v = (np.arange(resolution) + 0.5 - k["cy"]) / k["fl_y"]
    dz = 1.0 / np.sqrt(1.0 + u[None, :] ** 2 + v[:, None] ** 2)
    z = t * dz + near_clip
    return np.where(t > 0, z, 0.0).astype(np.float32)


def _position_to_zdepth(pos: np.ndarray, t: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Exact z-depth from the ``position`` AOV: ``z = (p - c) . forward`` (forward = -z axis of the
    nerfstudio camera).  z is affine in p, so the box-filtered average over a pixel's samples is the
    pixel-average z-depth (no pixel-centre approximation as in :func:`_aov_to_zdepth`).  Pixels whose
    rays hit nothing (``t == 0``; cannot happen in the closed rooms) are set to 0."""
    fwd = -np.asarray(c2w, np.float64)[:3, 2]
    z = (pos.astype(np.float64) - np.asarray(c2w, np.float64)[:3, 3]) @ fwd
    return np.where(t > 0, z, 0.0).astype(np.float32)


def _sensor(c2w_ns: np.ndarray, resolution: int, spp: int):
    import mitsuba as mi

    return mi.load_dict({
        "type": "perspective",
        "fov": FOV_DEG,
        "fov_axis": "x",
        "near_clip": NEAR_CLIP,
        "far_clip": FAR_CLIP,
        "to_world": _mi_tf(c2w_ns @ _FLIP_YZ),
        "sampler": {"type": "independent", "sample_count": int(spp)},
        "film": {"type": "hdrfilm", "width": int(resolution), "height": int(resolution),
                 "rfilter": {"type": "box"}, "pixel_format": "rgb", "component_format": "float32"},
    })


class _Renderer:
    def __init__(self, room: _Room, resolution: int, spp: int):
        import mitsuba as mi

        self.mi = mi
        self.resolution, self.spp = resolution, spp
        scene_dict = {"type": "scene", "integrator": {"type": "path", "max_depth": MAX_DEPTH, "rr_depth": RR_DEPTH}}
        scene_dict.update(room.shapes)
        # parallel=False, optimize=False: otherwise the shape / emitter order (and thus the random streams)
        # varies between loads of the same scene and renders are not reproducible
        self.scene = mi.load_dict(scene_dict, parallel=False, optimize=False)
        # "depth" is the ray distance from the near plane (NOT z-depth); "position" is the hit point in world space
        self.aov = mi.load_dict({"type": "aov", "aovs": "dd.y:depth,pp:position"})

    def render(self, c2w: np.ndarray, seed: int) -> Tuple[np.ndarray, np.ndarray]:
        mi = self.mi
        sensor = _sensor(c2w, self.resolution, self.spp)
        rgb = np.array(mi.render(self.scene, sensor=sensor, spp=self.spp, seed=seed), dtype=np.float32)[..., :3]
        aov = np.array(mi.render(self.scene, sensor=sensor, integrator=self.aov, spp=DEPTH_SPP, seed=seed),
                       dtype=np.float32)
        t, pos = aov[..., 0], aov[..., 1:4]
        return linear_to_srgb8(rgb), _position_to_zdepth(pos, t, c2w)


def _versions() -> Dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("s2nerf-ns", "mitsuba", "drjit", "numpy", "scikit-image", "pillow", "nerfstudio"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def render_params(scene: str, resolution: int, spp: int, num_views: int, num_extra_views: int, seed: int) -> Dict[str, Any]:
    """Every parameter that determines the rendered output (used for the cache key)."""
    return {"scene": scene, "resolution": int(resolution), "spp": int(spp), "num_views": int(num_views),
            "num_extra_views": int(num_extra_views), "seed": int(seed), "render_version": RENDER_VERSION}


def params_hash(params: Dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def validate_render_args(scene: str, resolution: int, spp: int, num_views: int, num_extra_views: int, seed: int) -> None:
    _check_scene(scene)
    for name, val in (("resolution", resolution), ("spp", spp), ("num_views", num_views)):
        if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val <= 0:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    if not isinstance(num_extra_views, (int, np.integer)) or num_extra_views < 0:
        raise ValueError(f"num_extra_views must be a non-negative integer, got {num_extra_views!r}")
    if not isinstance(seed, (int, np.integer)) or not (0 <= seed < 2**31):
        raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}")


def _frame_entry(file_path: str, depth_path: str, c2w: np.ndarray) -> Dict[str, Any]:
    return {"file_path": file_path, "depth_file_path": depth_path,
            "transform_matrix": [[float(v) for v in row] for row in c2w]}


def _camera_header(resolution: int) -> Dict[str, Any]:
    k = intrinsics(resolution)
    return {**k, "w": int(resolution), "h": int(resolution), "camera_model": "OPENCV",
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}


def render_room(scene: str, out_dir: Path, resolution: int = 128, spp: int = 32, num_views: int = 120,
                num_extra_views: int = 4, seed: int = 0, progress: bool = True) -> Path:
    """Render a built-in room into ``out_dir`` (nerfstudio-data format) and return ``out_dir``.

    The folder is written atomically: everything is rendered into a temporary sibling directory that
    is then renamed to ``out_dir`` (an existing ``out_dir`` is replaced).
    """
    validate_render_args(scene, resolution, spp, num_views, num_extra_views, seed)
    import mitsuba as mi
    from tqdm import tqdm

    out_dir = Path(out_dir).expanduser().absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    prev_variant = mi.variant()
    try:
        mi.set_variant(VARIANT)
        t_start = time.perf_counter()
        room = build_room(scene, tmp / "textures", seed)
        renderer = _Renderer(room, resolution, spp)
        t_setup = time.perf_counter() - t_start
        poses = trajectory_poses(room, num_views, seed)
        extras = extra_poses(room, num_extra_views, seed)
        for sub in ("images", "depths", "extra/images", "extra/depths"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)

        times: List[float] = []
        frames, extra_frames = [], []
        bar = tqdm(total=num_views + num_extra_views, desc=f"Rendering {scene} ({resolution}px, {spp} spp)",
                   unit="view", disable=not progress)
        jobs = [(i, poses[i], False) for i in range(num_views)] + [(k, extras[k], True) for k in range(len(extras))]
        for idx, c2w, is_extra in jobs:
            t0 = time.perf_counter()
            view_seed = (int(seed) * 1_000_003 + idx + (num_views if is_extra else 0)) % (2**32)
            rgb, depth = renderer.render(c2w, view_seed)
            prefix = "extra/" if is_extra else ""
            stem = f"extra_{idx:05d}" if is_extra else f"frame_{idx:05d}"
            Image.fromarray(rgb).save(tmp / f"{prefix}images/{stem}.png")
            np.save(tmp / f"{prefix}depths/{stem}.npy", depth)
            (extra_frames if is_extra else frames).append(_frame_entry(f"images/{stem}.png", f"depths/{stem}.npy", c2w))
            times.append(time.perf_counter() - t0)
            bar.update(1)
        bar.close()
        total = time.perf_counter() - t_start

        train = [f["file_path"] for i, f in enumerate(frames) if i % EVAL_INTERVAL != 0]
        evals = [f["file_path"] for i, f in enumerate(frames) if i % EVAL_INTERVAL == 0]
        transforms = {**_camera_header(resolution), "frames": frames, "train_filenames": train,
                      "val_filenames": evals, "test_filenames": evals}
        extra_transforms = {**_camera_header(resolution), "frames": extra_frames,
                            "note": "off-trajectory 'leaked' views; not part of train/eval; poses for scoring only"}
        aabb = room_aabb(scene)
        meta = {
            "format": "s2nerf-room",
            "room": scene,
            "params": {**render_params(scene, resolution, spp, num_views, num_extra_views, seed),
                       "variant": VARIANT, "integrator": {"type": "path", "max_depth": MAX_DEPTH, "rr_depth": RR_DEPTH},
                       "sensor": {"type": "perspective", "fov_deg": FOV_DEG, "fov_axis": "x", "near_clip": NEAR_CLIP},
                       "sampler": "independent", "rfilter": "box", "film": "hdrfilm",
                       "depth_pass": {"integrator": "aov", "aovs": "dd.y:depth,pp:position", "spp": DEPTH_SPP,
                                      "zdepth": "(position - camera_origin) . camera_forward, box-filtered"},
                       "eval_interval": EVAL_INTERVAL},
            "seed": int(seed),
            "units": "metres",
            "world_up": "+z",
            "room_aabb": aabb.tolist(),
            "room_size": list(room_size(scene)),
            "depth": "z-depth (distance along the camera's optical axis) in metres, float32 .npy (H, W)",
            "camera_convention": "camera-to-world, nerfstudio/OpenGL (x right, y up, camera looks along -z)",
            "num_views": num_views,
            "train_indices": [i for i in range(num_views) if i % EVAL_INTERVAL != 0],
            "eval_indices": [i for i in range(num_views) if i % EVAL_INTERVAL == 0],
            "extra_views": {"count": len(extra_frames), "transforms": "extra/extra_transforms.json"},
            "private_items": room.private_items,
            "lights": room.lights,
            "num_shapes": len(room.shapes),
            "render_time_s": {"total": total, "setup": t_setup, "mean_per_view": float(np.mean(times)) if times else 0.0,
                              "per_view": [round(t, 4) for t in times]},
            "versions": _versions(),
        }
        with open(tmp / "extra" / "extra_transforms.json", "w") as f:
            json.dump(extra_transforms, f, indent=2)
        with open(tmp / "s2nerf_room.json", "w") as f:
            json.dump(meta, f, indent=2)
        # transforms.json last: its presence marks a complete render
        with open(tmp / "transforms.json", "w") as f:
            json.dump(transforms, f, indent=2)

        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp creates 0700 folders
        old = None
        if out_dir.exists() or out_dir.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rename(out_dir, old / "x")
        os.rename(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return out_dir
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if prev_variant and prev_variant != VARIANT:
            mi.set_variant(prev_variant)


def load_room_metadata(folder: Path) -> Dict[str, Any]:
    with open(Path(folder) / "s2nerf_room.json") as f:
        return json.load(f)


def save_preview(out_dir: Path, path: Path, indices: Optional[Sequence[int]] = None, scale: int = 2,
                 columns: int = 2) -> Path:
    """Write a PNG preview of a rendered room folder.

    With ``indices=None`` a single view (the first training view) is written; with several indices a
    contact sheet (grid with ``columns`` columns) is written.  Images are upscaled by ``scale``.
    """
    out_dir, path = Path(out_dir), Path(path)
    with open(out_dir / "transforms.json") as f:
        frames = json.load(f)["frames"]
    if indices is None:
        indices = [1 if len(frames) > 1 else 0]
    imgs = []
    for i in indices:
        im = Image.open(out_dir / frames[int(i) % len(frames)]["file_path"]).convert("RGB")
        if scale != 1:
            im = im.resize((im.width * scale, im.height * scale), Image.LANCZOS)
        imgs.append(im)
    cols = max(1, min(columns, len(imgs)))
    rows = (len(imgs) + cols - 1) // cols
    w, h = imgs[0].size
    pad = 4 if len(imgs) > 1 else 0
    sheet = Image.new("RGB", (cols * w + (cols - 1) * pad, rows * h + (rows - 1) * pad), (255, 255, 255))
    for k, im in enumerate(imgs):
        sheet.paste(im, ((k % cols) * (w + pad), (k // cols) * (h + pad)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
