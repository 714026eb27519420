"""Small geometry helpers: 4x4 transforms, camera look-at frames, Mitsuba transforms.

Camera convention: camera-to-world matrices are in the nerfstudio/OpenGL convention (camera +x right,
+y up, looking along -z).  Mitsuba's camera frame looks along +z with +y up and +x to the *left*, so
``c2w_mitsuba = c2w_nerfstudio @ FLIP_YZ`` with ``FLIP_YZ = diag(-1, 1, -1, 1)`` (its own inverse).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

FLIP_YZ = np.diag([-1.0, 1.0, -1.0, 1.0])
"""nerfstudio camera frame <-> Mitsuba camera frame."""


def translate(t: Sequence[float]) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = t
    return m


def scale(s: Sequence[float]) -> np.ndarray:
    return np.diag([float(s[0]), float(s[1]), float(s[2]), 1.0])


def rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    return m


def frame(x: np.ndarray, y: np.ndarray, z: np.ndarray, origin: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, origin
    return m


def normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def mi_tf(m: np.ndarray):
    """A Mitsuba ``ScalarTransform4f`` from a 4x4 matrix (needs a Mitsuba variant to be set)."""
    import mitsuba as mi

    return mi.ScalarTransform4f(np.asarray(m, dtype=np.float64).tolist())


def look_rotation(forward: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """3x3 camera-to-world rotation in the nerfstudio convention (columns: right, up, back)."""
    f = normalize(forward)
    right = normalize(np.cross(f, [0.0, 0.0, 1.0]))
    up = np.cross(right, f)
    c, s = math.cos(roll), math.sin(roll)
    right, up = c * right + s * up, -s * right + c * up
    return np.stack([right, up, -f], axis=1)


def c2w(pos: np.ndarray, forward: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """4x4 camera-to-world (nerfstudio convention) of a camera at ``pos`` looking along ``forward``."""
    m = np.eye(4)
    m[:3, :3] = look_rotation(forward, roll)
    m[:3, 3] = pos
    return m
