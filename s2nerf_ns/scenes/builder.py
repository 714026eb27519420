"""The room builder: Mitsuba shapes of a room (walls, furniture, lights, private items) plus the
bookkeeping the cameras and the masks need (obstacles, lights, private items and their shapes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
from PIL import Image

from s2nerf_ns.scenes.geometry import frame, mi_tf, normalize, rot_z, scale, translate
from s2nerf_ns.scenes.materials import diffuse, rgb, roughplastic, roughplastic_tex, textured, twosided
from s2nerf_ns.scenes.textures import TEX_PPM


@dataclass
class RoomBuilder:
    """Collects the Mitsuba shapes of a room (``shapes``, in insertion order, which fixes the render) and
    what the cameras and masks need: furniture footprints (``obstacles``), ``lights``, and the
    ``private_items`` (photos, posters, documents), each with the id of its shape (``"shape"``)."""

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
    def _add(self, name: str, shape: Dict[str, Any], lo=None, hi=None) -> str:
        """Add a shape under a unique id derived from ``name``; returns the id."""
        name = name.replace(".", "_")  # '.' is reserved in Mitsuba object ids
        key = name
        k = 1
        while key in self.shapes:
            k += 1
            key = f"{name}_{k}"
        self.shapes[key] = shape
        if lo is not None:
            self.obstacles.append((key, np.asarray(lo, float), np.asarray(hi, float)))
        return key

    def _add_private(self, shape_key: str, name: str, kind: str, **info: Any) -> None:
        """Flag the rectangle ``shape_key`` as a private item (its visible pixels form the private mask);
        its world-space corners are recorded too (``"corners"``, metres)."""
        m = np.array(self.shapes[shape_key]["to_world"].matrix, dtype=np.float64)
        corners = m @ np.array([[-1.0, -1, 0, 1], [1, -1, 0, 1], [1, 1, 0, 1], [-1, 1, 0, 1]]).T
        self.private_items.append({"name": name, "kind": kind, **info, "shape": shape_key,
                                   "corners": [[round(float(v), 6) for v in c] for c in corners[:3].T]})

    @property
    def private_shapes(self) -> List[str]:
        """Ids of the shapes showing private content (the image / text surfaces, not their frames)."""
        return [item["shape"] for item in self.private_items]

    def save_texture(self, name: str, img: np.ndarray) -> Path:
        path = self.tex_dir / f"{name}.png"
        Image.fromarray(img).save(path)
        return path

    def jitter(self, scale: float = 0.04) -> float:
        return float(self.rng.uniform(-scale, scale))

    # -- primitives ----------------------------------------------------------------------------
    def box(self, name: str, center, size, bsdf, yaw: float = 0.0, obstacle: bool = True) -> None:
        center, size = np.asarray(center, float), np.asarray(size, float)
        m = translate(center) @ rot_z(yaw) @ scale(size / 2)
        corners = np.array([[sx, sy, sz, 1.0] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        pts = (m @ corners.T).T[:, :3]
        lo, hi = (pts.min(0), pts.max(0)) if obstacle else (None, None)
        self._add(name, {"type": "cube", "to_world": mi_tf(m), "bsdf": bsdf}, lo, hi)

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
            self._add(name + "_top", {"type": "disk", "to_world": mi_tf(translate(top) @ scale([radius, radius, 1])), "bsdf": bsdf})
            flip = np.diag([1.0, -1.0, -1.0, 1.0])
            self._add(name + "_bot", {"type": "disk", "to_world": mi_tf(translate(b) @ flip @ scale([radius, radius, 1])), "bsdf": bsdf})
        if obstacle:
            self.obstacles.append((name, b - [radius, radius, 0], top + [radius, radius, 0]))

    def rect(self, name: str, center, right, up, width: float, height: float, bsdf=None, emitter=None) -> str:
        """Rectangle whose local +x is ``right`` and +y is ``up``; it faces ``right x up``."""
        r, u = normalize(np.asarray(right, float)), normalize(np.asarray(up, float))
        n = np.cross(r, u)
        m = frame(r * width / 2, u * height / 2, n, np.asarray(center, float))
        shape: Dict[str, Any] = {"type": "rectangle", "to_world": mi_tf(m)}
        if bsdf is not None:
            shape["bsdf"] = bsdf
        if emitter is not None:
            shape["emitter"] = emitter
        return self._add(name, shape)

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
                  bsdf=None, emitter=None, offset: float = 0.002) -> str:
        _, _, n = self.wall_frame(wall)
        up = np.array([0.0, 0, 1])
        right = np.cross(-n, up)  # viewer faces the wall (looking along -n): their right-hand side
        return self.rect(name, self.wall_point(wall, u, z, offset), right, up, width, height, bsdf=bsdf, emitter=emitter)

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
        key = self.wall_rect(name, wall, u, z, width, height, bsdf=twosided(textured(path)), offset=depth + 0.002)
        self._add_private(key, name, "photo", source=source, wall=wall, texture=f"textures/{path.name}")

    def document(self, name: str, img: np.ndarray, center, right, up, height: float, kind: str = "document",
                 glossy: bool = False) -> None:
        path = self.save_texture(name, img)
        width = height * img.shape[1] / img.shape[0]
        bsdf = textured(path, "roughplastic", 0.15) if glossy else textured(path)
        key = self.rect(name, center, right, up, width, height, bsdf=twosided(bsdf))
        self._add_private(key, name, kind, texture=f"textures/{path.name}")

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
        self.rect("ceiling", [W / 2, D / 2, H], [1, 0, 0], [0, -1, 0], W, D, bsdf=twosided(textured(ceil)))
        for wall in ("south", "north", "west", "east"):
            length = W if wall in ("south", "north") else D
            img = wall_img if wall in ("south", "north") else wall_img[:, : max(8, int(D * TEX_PPM))]
            tex = self.save_texture(f"wall_{wall}", img)
            self.wall_rect(f"wall_{wall}", wall, length / 2, H / 2, length, H, bsdf=twosided(textured(tex)), offset=0.0)
            self.wall_box(f"skirting_{wall}", wall, length / 2, 0.05, length, 0.1, 0.02, skirting_bsdf)

    def ceiling_panel(self, name: str, x: float, y: float, sx: float, sy: float, radiance) -> None:
        H = self.size[2]
        self.box(name + "_housing", [x, y, H - 0.015], [sx + 0.06, sy + 0.06, 0.03], diffuse([0.8, 0.8, 0.8]), obstacle=False)
        self.rect(name, [x, y, H - 0.031], [1, 0, 0], [0, -1, 0], sx, sy,
                  emitter={"type": "area", "radiance": rgb(radiance)})
        self.lights.append(name)

    def window(self, name: str, wall: str, u: float, z: float, width: float, height: float, radiance) -> None:
        self.wall_rect(name, wall, u, z, width, height, emitter={"type": "area", "radiance": rgb(radiance)}, offset=0.004)
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
                    emitter={"type": "area", "radiance": rgb(radiance)})
        self.lights.append(name)

    def table(self, name: str, center, size, top_bsdf, leg_bsdf, yaw: float = 0.0, leg_r: float = 0.025) -> None:
        c, s = np.asarray(center, float), np.asarray(size, float)  # centre on the floor, size (w, d, height)
        top_t = 0.04
        self.box(name + "_top", c + [0, 0, s[2] - top_t / 2], [s[0], s[1], top_t], top_bsdf, yaw=yaw)
        R = rot_z(yaw)[:3, :3]
        for sx in (-1, 1):
            for sy in (-1, 1):
                off = R @ np.array([sx * (s[0] / 2 - 0.06), sy * (s[1] / 2 - 0.06), 0])
                self.cylinder(f"{name}_leg", c + off, s[2] - top_t, leg_r, leg_bsdf, obstacle=False)

    def chair(self, name: str, center, yaw: float, bsdf, leg_bsdf, seat_h: float = 0.45) -> None:
        """Simple chair; ``yaw`` rotates it, the backrest is on the local +y side."""
        c = np.asarray(center, float)
        R = rot_z(yaw)[:3, :3]
        self.box(name + "_seat", c + [0, 0, seat_h], [0.46, 0.46, 0.05], bsdf, yaw=yaw)
        self.box(name + "_back", c + R @ [0, 0.21, seat_h + 0.28], [0.46, 0.04, 0.5], bsdf, yaw=yaw)
        for sx in (-1, 1):
            for sy in (-1, 1):
                self.cylinder(f"{name}_leg", c + R @ [sx * 0.19, sy * 0.19, 0], seat_h - 0.025, 0.018, leg_bsdf, obstacle=False)

    def office_chair(self, name: str, center, yaw: float, bsdf) -> None:
        c = np.asarray(center, float)
        R = rot_z(yaw)[:3, :3]
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

