"""SERVER SIDE (attacker): pose maths of the pose searches: pixel rays and camera-frame directions (OpenGL
convention: x right, y up, looking along -z), candidate orientations, pose corrections and pose errors."""

from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from nerfstudio.cameras.lie_groups import exp_map_SO3xR3


def pixel_rays(
    c2w: Float[Tensor, "3 4"], fx: float, fy: float, cx: float, cy: float, rows: Tensor, cols: Tensor
) -> Tuple[Tensor, Tensor]:
    """Rays of pixel centres for an OpenGL-convention camera (x right, y up, looking along -z)."""
    d_cam = torch.stack([(cols.float() + 0.5 - cx) / fx, -(rows.float() + 0.5 - cy) / fy,
                         -torch.ones_like(cols, dtype=torch.float32)], dim=-1)
    directions = torch.nn.functional.normalize(d_cam @ c2w[:, :3].T, dim=-1)
    return c2w[:, 3].expand_as(directions), directions


def camera_directions(intrinsics: Sequence[float], h: int, w: int, device) -> Tensor:
    """Unit camera-frame directions [h*w, 3] of the pixel centres (OpenGL convention), row-major."""
    fx, fy, cx, cy = intrinsics
    rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    d = torch.stack([(cols.reshape(-1) + 0.5 - cx) / fx, -(rows.reshape(-1) + 0.5 - cy) / fy,
                     -torch.ones(h * w, device=device)], dim=-1)
    return F.normalize(d, dim=-1)


def pose_errors(estimate: Float[Tensor, "3 4"], truth: Float[Tensor, "3 4"]) -> Dict[str, float]:
    """Rotation error (degrees) and camera-centre error (scene units)."""
    rel = estimate[:, :3].T @ truth[:, :3]
    cos = ((torch.trace(rel) - 1) / 2).clamp(-1.0, 1.0)
    return {"rotation_error_deg": math.degrees(float(torch.arccos(cos))),
            "translation_error": float((estimate[:, 3] - truth[:, 3]).norm())}


def rotation_angle_deg(a: Tensor, b: Tensor) -> Tensor:
    """Angles (degrees) between rotations ``a`` [..., 3, 3] and ``b`` [..., 3, 3] (broadcast)."""
    cos = (((a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos))


def fibonacci_sphere(n: int) -> Tensor:
    """``n`` nearly uniform unit vectors [n, 3]."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = (1.0 - z * z).clamp_min(0.0).sqrt()
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1).float()


def look_rotations(forward: Tensor, up: Tensor, roll_rad: Tensor) -> Tensor:
    """OpenGL camera-to-world rotations [F*R, 3, 3] looking along each ``forward`` [F,3], rolled by each angle [R]
    about the viewing axis relative to the reference ``up`` [3]."""
    forward = F.normalize(forward, dim=-1)
    right = torch.cross(forward, up.expand_as(forward), dim=-1)
    # Looking (nearly) along the up-vector: any right-vector will do.
    other = torch.tensor([1.0, 0.0, 0.0], device=up.device) if abs(float(up[0])) < 0.9 else \
        torch.tensor([0.0, 0.0, 1.0], device=up.device)
    fallback = torch.cross(forward, other.expand_as(forward), dim=-1)
    small = right.norm(dim=-1, keepdim=True) < 1e-4
    right = F.normalize(torch.where(small, fallback, right), dim=-1)
    cam_up = torch.cross(right, forward, dim=-1)
    c, s = torch.cos(roll_rad)[None, :, None], torch.sin(roll_rad)[None, :, None]
    right_r = c * right[:, None] + s * cam_up[:, None]
    up_r = -s * right[:, None] + c * cam_up[:, None]
    back = -forward[:, None].expand_as(right_r)
    return torch.stack([right_r, up_r, back], dim=-1).reshape(-1, 3, 3)


def apply_correction(tangent: Tensor, c2w: Tensor, centre: Tensor) -> Tensor:
    """Rotate about the camera centre and translate: a well-conditioned parametrisation for refinement."""
    delta = exp_map_SO3xR3(tangent)[0]
    rotated = torch.cat([delta[:, :3] @ c2w[:, :3], (centre + delta[:, 3])[:, None]], dim=1)
    return rotated


def apply_tangent(c2w: Tensor, tangent: Tensor) -> Tensor:
    """Left SE(3) corrections [M,6] of poses [M,3,4]: rotation about each camera's own centre, then translation."""
    delta = exp_map_SO3xR3(tangent)
    return torch.cat([delta[:, :, :3] @ c2w[:, :, :3], (c2w[:, :, 3] + delta[:, :, 3])[:, :, None]], dim=2)
