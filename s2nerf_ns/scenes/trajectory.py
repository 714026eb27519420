"""Cameras of a room: the handheld-like trajectory, the off-trajectory "leaked" views, and the intrinsics.

Poses are ``[N, 4, 4]`` camera-to-world matrices in the nerfstudio/OpenGL convention (see
:mod:`s2nerf_ns.scenes.geometry`).  Positions are kept where a person could stand (:func:`is_free`).
"""

from __future__ import annotations

import math
from typing import Dict

import numpy as np

from s2nerf_ns.scenes.builder import RoomBuilder
from s2nerf_ns.scenes.catalog import scene_rng
from s2nerf_ns.scenes.geometry import c2w

FOV_DEG = 65.0
"""Horizontal (= vertical, images are square) field of view of every camera, in degrees."""


def is_free(room: RoomBuilder, p: np.ndarray, margin: float = 0.22) -> bool:
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


def nearest_free(room: RoomBuilder, p: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Closest valid position to ``p``: searched along the radial line through ``centre`` first
    (inwards and outwards alternately), then on growing circles around ``p``."""
    if is_free(room, p):
        return p
    radial = p[:2] - centre[:2]
    radial = radial / (np.linalg.norm(radial) + 1e-9)
    for step in np.arange(0.05, 2.0, 0.05):
        for sgn in (-1.0, 1.0):
            q = p.copy()
            q[:2] += sgn * step * radial
            if is_free(room, q):
                return q
    for rad in np.arange(0.1, 3.0, 0.1):
        for ang in np.linspace(0, 2 * math.pi, 24, endpoint=False):
            q = p + [rad * math.cos(ang), rad * math.sin(ang), 0.0]
            if is_free(room, q):
                return q
    raise RuntimeError(f"could not place a camera near {p} in room {room.name}")


def loop_profile(room: RoomBuilder, n: int = 360, window_deg: float = 12.0) -> np.ndarray:
    """Largest free radius scale ``k(theta)`` (<= 1.2) of the camera loop, eroded and smoothed over
    ``window_deg`` so that the loop bends smoothly around furniture instead of jumping."""
    cx, cy, rx, ry = room.loop
    ks = np.empty(n)
    for j in range(n):
        th = 2 * math.pi * j / n
        k = 1.2
        while k > 0.15 and not (is_free(room, np.array([cx + k * rx * math.cos(th), cy + k * ry * math.sin(th), 1.25]),
                                         margin=0.27)):
            k -= 0.01
        ks[j] = k
    w = max(1, int(round(window_deg / 360 * n)))
    idx = (np.arange(n)[:, None] + np.arange(-w, w + 1)[None, :]) % n
    eroded = ks[idx].min(axis=1)
    return eroded[idx].mean(axis=1)


def trajectory_poses(room: RoomBuilder, num_views: int, seed: int) -> np.ndarray:
    """Handheld-like loop through the room's free floor space: ``[N, 4, 4]`` camera-to-world
    (nerfstudio convention).  Cameras at ~1.2-1.7 m look across the room (through the loop centre)
    with smooth yaw / pitch / roll sway and small per-frame jitter."""
    rng = scene_rng(room.name, seed, 1)
    cx, cy, rx, ry = room.loop
    centre = np.array([cx, cy, 0.0])
    phase = rng.uniform(0, 2 * math.pi)
    ph = rng.uniform(0, 2 * math.pi, size=8)
    profile = loop_profile(room)
    poses = []
    for i in range(num_views):
        th = phase + 2 * math.pi * i / num_views
        rmod = 1.0 + 0.1 * math.sin(3 * th + ph[0]) + 0.05 * math.sin(5 * th + ph[1])
        rmod = min(rmod, float(profile[int(round((th % (2 * math.pi)) / (2 * math.pi) * len(profile))) % len(profile)]))
        z = 1.45 + 0.14 * math.sin(2 * th + ph[2]) + 0.06 * math.sin(7 * th + ph[3])
        pos = np.array([cx + rx * rmod * math.cos(th), cy + ry * rmod * math.sin(th), z])
        pos = pos + rng.normal(0, [0.02, 0.02, 0.015])
        pos = nearest_free(room, pos, centre)
        # look across the room (through the loop centre, towards the opposite side), with a smooth yaw sway
        az = math.atan2(cy - pos[1], cx - pos[0])
        az += math.radians(28) * math.sin(2 * th + ph[4]) + math.radians(10) * math.sin(5 * th + ph[5])
        az += rng.normal(0, math.radians(2))
        pitch = math.radians(-13 + 6 * math.sin(3 * th + ph[6])) + rng.normal(0, math.radians(1.5))
        roll = math.radians(2.5) * math.sin(4 * th + ph[7]) + rng.normal(0, math.radians(1.0))
        fwd = np.array([math.cos(pitch) * math.cos(az), math.cos(pitch) * math.sin(az), math.sin(pitch)])
        poses.append(c2w(pos, fwd, roll))
    return np.stack(poses)


def extra_poses(room: RoomBuilder, num_extra: int, seed: int) -> np.ndarray:
    """Off-trajectory views (room corners / wall middles at unusual heights, e.g. 2.1 m or 0.95 m),
    looking at the room centre: ``[M, 4, 4]`` camera-to-world (nerfstudio convention)."""
    rng = scene_rng(room.name, seed, 2)
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
        pos = nearest_free(room, np.array([x, y, z]), centre)
        target = np.array([W / 2 + rng.uniform(-0.5, 0.5), D / 2 + rng.uniform(-0.5, 0.5), 0.8 + rng.uniform(-0.2, 0.2)])
        poses.append(c2w(pos, target - pos, rng.normal(0, math.radians(1.5))))
    return np.stack(poses) if poses else np.zeros((0, 4, 4))


def intrinsics(resolution: int, fov_deg: float = FOV_DEG) -> Dict[str, float]:
    """Pinhole intrinsics of the square images (pixel centres at ``i + 0.5``, like nerfstudio)."""
    f = 0.5 * resolution / math.tan(math.radians(fov_deg) / 2)
    return {"fl_x": f, "fl_y": f, "cx": resolution / 2.0, "cy": resolution / 2.0, "w": resolution, "h": resolution}
