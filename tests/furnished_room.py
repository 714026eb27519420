"""A furnished analytic room for the geometry pose-search tests: the box [-1, 1]^3 of ``analytic_room.py`` with four
boxes and a ball in it, so that its geometry (unlike the bare room's, a cube: the same depth map from 24 rotations)
pins down a camera's pose. Its look follows the built-in rooms (``docs/rooms``): walls and ceiling nearly plain (fine
low-contrast stripes), a planked floor, shaded furniture of distinct colours, and a high-contrast poster on a wall
(texture edges with no geometry behind them). Rendered by ray casting, with the depth along each ray."""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F

from s2nerf_ns.attacks.pose.camera import pixel_rays
from s2nerf_ns.attacks.pose.candidates import perturb_poses
from analytic_room import H, INTRINSICS, W, look_at, yaw_pitch

BOXES = (  # (min corner, max corner, base colour); all clear of the training cameras' ring (radius 0.5)
    ((0.55, -1.0, -0.92), (0.88, 0.55, -0.6), (0.75, 0.45, 0.25)),    # tall pillar in the (+x, -z) corner
    ((0.4, -1.0, 0.2), (0.88, -0.55, 0.85), (0.25, 0.55, 0.7)),       # low table along the +x wall
    ((-0.85, -1.0, -0.95), (-0.45, -0.3, -0.62), (0.6, 0.7, 0.3)),    # cabinet against the -z wall
    ((-1.0, 0.05, -0.35), (-0.78, 0.3, 0.4), (0.8, 0.3, 0.5)),        # shelf on the -x wall
)
BALL = ((-0.55, -0.72, 0.62), 0.28, (0.35, 0.35, 0.8))
WALL_TINT = ((0.55, 0.62, 0.75), (0.55, 0.62, 0.75), (0.85, 0.85, 0.82), (0.5, 0.33, 0.2), (0.55, 0.62, 0.75),
             (0.55, 0.62, 0.75))
"""Base colours of the walls +x, -x, ceiling (+y), floor (-y), +z, -z."""
POSTER = ((-0.25, 0.0), (0.2, 0.45))
"""(z, y) corners of a poster on the +x wall."""
LIGHT = F.normalize(torch.tensor([0.4, 0.8, 0.45]), dim=0)
LEAK_C2W = look_at((-0.45, -0.2, 0.45), yaw_pitch(68.0, -2.0), roll_deg=4.0)
"""A nearly level view towards the pillar and the table (the bare room's test photo looks at one flat wall)."""


def _walls(p: torch.Tensor, wall: torch.Tensor) -> torch.Tensor:
    """Colours [N,3] of points ``p`` on walls ``wall`` [N] (0..5: +x, -x, +y, -y, +z, -z)."""
    x, y, z = p.unbind(-1)
    along = torch.where(wall < 2, z, x)  # vertical stripes on the walls, planks on the floor
    stripes = 1.0 + 0.05 * torch.sin(40.0 * along)
    planks = 1.0 + 0.12 * torch.sin(9.0 * x + 2.0 * torch.floor(4.0 * z)) - 0.25 * (torch.sin(12.57 * z).abs() < 0.06)
    colour = torch.tensor(WALL_TINT)[wall] * torch.where(wall == 3, planks, stripes)[:, None]
    normals = torch.zeros_like(p)
    normals.scatter_(1, (wall // 2)[:, None], torch.where(wall % 2 == 0, -1.0, 1.0)[:, None])
    colour = colour * (0.6 + 0.4 * (normals @ LIGHT).clamp_min(0))[:, None]
    (z0, y0), (z1, y1) = POSTER
    on_poster = (wall == 0) & (z > z0) & (z < z1) & (y > y0) & (y < y1)
    art = torch.stack([0.5 + 0.45 * torch.sin(14.0 * z), 0.5 + 0.45 * torch.cos(11.0 * y), 0.5 + 0.4 * torch.sin(
        17.0 * (y + z))], dim=-1)
    return torch.where(on_poster[:, None], art, colour)


def _texture(p: torch.Tensor, base) -> torch.Tensor:
    """Procedural texture of the furniture: the base colour modulated by a 3D pattern."""
    x, y, z = p.unbind(-1)
    pattern = 0.5 + 0.25 * torch.sin(9.0 * x + 2.0) * torch.sin(8.0 * y - 1.0) + 0.25 * torch.sin(7.0 * z + 3.0 * x)
    return torch.tensor(base) * (0.6 + 0.4 * pattern)[:, None]


def _box_hit(origins, directions, lo, hi) -> Tuple[torch.Tensor, torch.Tensor]:
    """Entry distance [N] (inf on a miss) and outward normal [N,3] of rays from outside the box ``lo``-``hi``."""
    lo, hi = torch.tensor(lo), torch.tensor(hi)
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0, t1 = (lo - origins) / safe, (hi - origins) / safe
    near, far = torch.minimum(t0, t1), torch.maximum(t0, t1)
    t_in, axis = near.max(dim=-1)
    t_out = far.min(dim=-1).values
    hit = (t_in <= t_out) & (t_in > 1e-6)
    normal = torch.zeros_like(origins)
    normal.scatter_(1, axis[:, None], -torch.sign(safe.gather(1, axis[:, None])))
    return torch.where(hit, t_in, torch.full_like(t_in, math.inf)), normal


def _ball_hit(origins, directions) -> Tuple[torch.Tensor, torch.Tensor]:
    centre, radius = torch.tensor(BALL[0]), BALL[1]
    oc = origins - centre
    b = (oc * directions).sum(-1)
    disc = b * b - (oc * oc).sum(-1) + radius * radius
    t = -b - disc.clamp_min(0).sqrt()
    t = torch.where((disc > 0) & (t > 1e-6), t, torch.full_like(t, math.inf))
    normal = F.normalize(origins + t.clamp(max=10.0)[:, None] * directions - centre, dim=-1)
    return t, normal


def furnished_render(origins: torch.Tensor, directions: torch.Tensor, depth: bool = False) -> torch.Tensor:
    """Colours [N,3] of rays from inside the room (and outside the furniture); with ``depth`` also the distance
    along each (unit) ray to the surface hit, as a fourth channel."""
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t_axis = (torch.where(safe > 0, 1.0, -1.0) - origins) / safe
    t, axis = t_axis.min(dim=-1)
    wall = 2 * axis + (safe.gather(1, axis[:, None])[:, 0] < 0).long()
    p = origins + t[:, None] * directions
    colour = _walls(p, wall)
    for i, (lo, hi, base) in enumerate(BOXES + ((None, None, BALL[2]),)):
        t_obj, normal = _ball_hit(origins, directions) if lo is None else _box_hit(origins, directions, lo, hi)
        closer = t_obj < t
        q = origins + t_obj.clamp(max=10.0)[:, None] * directions
        shaded = _texture(q, base) * (0.55 + 0.45 * (normal @ LIGHT).clamp_min(0))[:, None]
        colour = torch.where(closer[:, None], shaded, colour)
        t = torch.where(closer, t_obj, t)
    colour = colour.clamp(0.0, 1.0)
    return torch.cat([colour, t[:, None]], dim=-1) if depth else colour


def furnished_depth(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """The exact geometry: depth [N,1] along each unit ray (what a perfect density read-out would render)."""
    return furnished_render(origins, directions, depth=True)[:, 3:]


def furnished_photo(c2w: torch.Tensor, supersample: int = 2) -> torch.Tensor:
    """The leaked photo (H x W, true colours, anti-aliased)."""
    s = supersample
    fx, fy, cx, cy = INTRINSICS
    rows, cols = torch.meshgrid(torch.arange(H * s), torch.arange(W * s), indexing="ij")
    o, d = pixel_rays(c2w, fx * s, fy * s, cx * s, cy * s, rows.reshape(-1), cols.reshape(-1))
    img = furnished_render(o, d).reshape(H * s, W * s, 3).permute(2, 0, 1)[None]
    return F.avg_pool2d(img, s)[0].permute(1, 2, 0)


def perturbed(rot_deg: float, trans: float, n: int, seed: int) -> torch.Tensor:
    """``n`` random perturbations of the leaked pose (rotation about its centre ~ rot_deg, centre ~ trans)."""
    return perturb_poses(LEAK_C2W[None], torch.tensor([rot_deg * torch.pi / 180 / 3 ** 0.5]),
                         torch.tensor([trans / 3 ** 0.5]), n, torch.Generator().manual_seed(seed))[0]
