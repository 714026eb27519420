"""The analytic textured room the pose-search tests share: the box [-1, 1]^3 with six distinctly textured walls,
rendered by ray-box intersection (torch ops, differentiable in ray origins and directions); a colour-distorted
"surrogate" of it; camera helpers; the leaked photo's renderer."""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from s2nerf_ns.attacks.pose.camera import pixel_rays


def _blob(u, v, cu, cv, s):
    return torch.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * s * s))


def _rgb(r, g, b):
    return torch.stack([r, g, b], dim=-1)


def wall_colours(p: torch.Tensor) -> torch.Tensor:
    """Colours [6, N, 3] of points ``p`` [N,3] on each wall (+x, -x, +y, -y, +z, -z), procedural textures."""
    x, y, z = p.unbind(-1)
    one = torch.ones_like(x)
    # +x: vertical stripes, a horizontal band and blobs
    s = 0.5 + 0.4 * torch.sin(7.0 * z)
    b = _blob(z, y, 0.3, 0.2, 0.25) + _blob(z, y, -0.5, -0.4, 0.15) - 0.8 * _blob(z, y, -0.1, 0.6, 0.12)
    band = torch.sigmoid(8.0 * torch.sin(3.0 * y + 0.5))
    px = _rgb(0.7 * s + 0.2 * b, 0.2 + 0.3 * b + 0.3 * band, 0.2 + 0.4 * (1 - s) * band)
    # -x: soft checkerboard and a blob
    c = torch.tanh(2.5 * torch.sin(5.0 * z) * torch.sin(5.0 * y))
    b = _blob(z, y, 0.2, -0.3, 0.2)
    nx = _rgb(0.5 + 0.3 * c, 0.5 - 0.2 * c + 0.3 * b, 0.3 + 0.1 * one)
    # +y (ceiling): smooth colour gradients and a ring
    ring = torch.exp(-((torch.sqrt((x + 0.3) ** 2 + (z - 0.2) ** 2 + 1e-9) - 0.45) ** 2) / 0.01)
    py = _rgb(0.5 + 0.35 * x, 0.5 + 0.35 * z, 0.4 + 0.4 * ring)
    # -y (floor): diagonal stripes and blobs
    d = 0.5 + 0.4 * torch.sin(6.0 * (x + z))
    bl = _blob(x, z, -0.4, 0.5, 0.2) + _blob(x, z, 0.5, -0.3, 0.15)
    ny = _rgb(0.3 + 0.3 * d, 0.2 + 0.5 * bl, 0.6 * d)
    # +z: concentric rings and a blob
    r = torch.sqrt((x - 0.3) ** 2 + (y + 0.2) ** 2 + 1e-9)
    rr = 0.5 + 0.45 * torch.cos(8.0 * r)
    b = _blob(x, y, -0.5, 0.4, 0.2)
    pz = _rgb(0.2 + 0.2 * rr + 0.5 * b, 0.6 * rr, 0.7 - 0.3 * rr)
    # -z: blobs on a horizontal gradient
    bb = _blob(x, y, -0.4, 0.3, 0.2) - _blob(x, y, 0.4, -0.2, 0.25) + 0.6 * _blob(x, y, 0.1, 0.5, 0.12)
    nz = _rgb(0.5 + 0.3 * bb, 0.4 + 0.2 * x, 0.5 - 0.3 * bb)
    return torch.stack([px, nx, py, ny, pz, nz])


def room_render(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Colours of rays from inside the box [-1,1]^3 at the wall they hit (differentiable in both inputs)."""
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    bound = torch.where(safe > 0, torch.ones_like(safe), -torch.ones_like(safe))
    t_axis = (bound - origins) / safe  # positive for points inside
    t, axis = t_axis.min(dim=-1)
    p = origins + t[:, None] * directions
    wall = 2 * axis + (safe.gather(1, axis[:, None])[:, 0] < 0).long()  # +x, -x, +y, -y, +z, -z
    colours = wall_colours(p)  # 6 N 3
    return colours.gather(0, wall[None, :, None].expand(1, -1, 3))[0].clamp(0.0, 1.0)


def surrogate_render(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """What the server can render: the room's colours through an unknown gamma + affine colour map."""
    rgb = room_render(origins, directions).clamp_min(1e-4) ** 1.3
    mix = torch.tensor([[0.7, 0.2, 0.05], [-0.1, 0.8, 0.2], [0.15, -0.05, 0.6]])
    return rgb @ mix.T + torch.tensor([0.1, -0.05, 0.2])


def look_at(centre, forward, roll_deg: float = 0.0, up=(0.0, 1.0, 0.0)) -> torch.Tensor:
    f = F.normalize(torch.tensor(forward, dtype=torch.float32), dim=0)
    right = F.normalize(torch.linalg.cross(f, torch.tensor(up)), dim=0)
    cam_up = torch.linalg.cross(right, f)
    a = math.radians(roll_deg)
    right, cam_up = math.cos(a) * right + math.sin(a) * cam_up, -math.sin(a) * right + math.cos(a) * cam_up
    return torch.cat([torch.stack([right, cam_up, -f], dim=1), torch.tensor(centre)[:, None]], dim=1)


def yaw_pitch(yaw_deg: float, pitch_deg: float):
    """Forward vector: yaw 0 looks along -z, positive yaw turns towards +x; pitch up is positive."""
    yw, pt = math.radians(yaw_deg), math.radians(pitch_deg)
    return (math.sin(yw) * math.cos(pt), math.sin(pt), -math.cos(yw) * math.cos(pt))


H, W = 48, 64
INTRINSICS = (56.0, 56.0, 32.0, 24.0)


def render_photo(c2w: torch.Tensor, supersample: int = 2) -> torch.Tensor:
    """The leaked photo (true colours, anti-aliased)."""
    s = supersample
    fx, fy, cx, cy = INTRINSICS
    rows, cols = torch.meshgrid(torch.arange(H * s), torch.arange(W * s), indexing="ij")
    o, d = pixel_rays(c2w, fx * s, fy * s, cx * s, cy * s, rows.reshape(-1), cols.reshape(-1))
    img = room_render(o, d).reshape(H * s, W * s, 3).permute(2, 0, 1)[None]
    return F.avg_pool2d(img, s)[0].permute(1, 2, 0)


def training_poses(n: int = 20) -> torch.Tensor:
    """A small loop of cameras all looking roughly along -z (yaw within +-20 degrees)."""
    poses = []
    for i in range(n):
        th = 2 * math.pi * i / n
        centre = (0.35 * math.cos(th), 0.05 * math.sin(2 * th), 0.35 * math.sin(th))
        poses.append(look_at(centre, yaw_pitch(20.0 * math.sin(th), 5.0 * math.cos(th)), roll_deg=3.0 * math.sin(th)))
    return torch.stack(poses)


LEAK_C2W = look_at((-0.1, -0.04, 0.12), yaw_pitch(95.0, 22.0), roll_deg=8.0)


@contextlib.contextmanager
def single_thread():
    """On a shared, oversubscribed CPU, torch's spinning intra-op threads make the search 4-10x slower; one thread
    is both faster and steadier there. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
