"""SERVER SIDE (attacker): the structure fields the geometry pose search compares (see ``geometry_search.py``):
the colour structure tensor of the photo and the same tensor of a render's log depth, normals and any appearance
channels, as unit orientation fields at one resolution (``StructureLevel``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from s2nerf_ns.attacks.pose.camera import camera_directions
from s2nerf_ns.attacks.pose.config import GeometrySearchConfig
from s2nerf_ns.attacks.pose.views import DepthFn, blur121, downsample, render_views


def _grad(x: Tensor) -> Tuple[Tensor, Tensor]:
    """Central differences (replicate padding) over the last two dims (rows, cols): (d/dx, d/dy)."""
    xp = torch.cat([x[..., :, :1], x, x[..., :, -1:]], dim=-1)
    gx = (xp[..., :, 2:] - xp[..., :, :-2]) / 2
    yp = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)
    gy = (yp[..., 2:, :] - yp[..., :-2, :]) / 2
    return gx, gy


def structure_tensor(channels: Float[Tensor, "C K h w"]) -> Float[Tensor, "C 3 h w"]:
    """(Jxx, Jxy, Jyy) of the channels' gradients, summed over the K channels."""
    gx, gy = _grad(channels)
    return torch.stack([(gx * gx).sum(1), (gx * gy).sum(1), (gy * gy).sum(1)], dim=1)


def depth_channels(depth: Float[Tensor, "C h w"], dirs_cam: Float[Tensor, "h w 3"], depth_weight: float,
                   normal_weight: float) -> Float[Tensor, "C 4 h w"]:
    """Weighted log depth and camera-frame normals (from the back-projected depth) of depth images."""
    depth = depth.clamp_min(1e-3)
    points = depth[..., None] * dirs_cam  # C h w 3
    dx, dy = _grad(points.permute(0, 3, 1, 2))
    normals = F.normalize(torch.cross(dx, dy, dim=1), dim=1)
    return torch.cat([depth_weight * depth.log()[:, None], normal_weight * normals], dim=1)


def orientation_field(tensor: Float[Tensor, "C 3 h w"], power: float) -> Float[Tensor, "C P"]:
    """Unit-norm doubled-angle fields [C, 2hw]: (Jxx - Jyy, 2 Jxy), magnitudes raised to ``power``."""
    v = torch.stack([tensor[:, 0] - tensor[:, 2], 2 * tensor[:, 1]], dim=1)
    mag = v.norm(dim=1, keepdim=True)
    v = v * mag.clamp_min(1e-12).pow(power - 1.0)
    v = v.reshape(len(v), -1)
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass
class StructureLevel:
    """The photo's structure at one resolution, and how to compute a render's the same way: both at the fine size
    (``longer x supersample``, capped at the photo's), structure tensors pooled to the level and [1,2,1]-blurred."""

    target: Tensor
    """[2hw] the photo's unit orientation field."""
    h: int
    w: int
    fine_h: int
    fine_w: int
    intrinsics: Tuple[float, ...]
    """Of the fine grid."""
    dirs_cam: Tensor
    """[fine_h*fine_w, 3] camera-frame directions of the fine grid."""
    cfg: GeometrySearchConfig

    @staticmethod
    def make(image: Tensor, intrinsics: Sequence[float], longer: int, cfg: GeometrySearchConfig) -> "StructureLevel":
        small, _ = downsample(image, intrinsics, longer)
        h, w = small.shape[:2]
        fine, k = downsample(image, intrinsics, longer * max(1, cfg.supersample))
        fh, fw = fine.shape[:2]
        dirs = camera_directions(k, fh, fw, image.device)
        level = StructureLevel(torch.empty(0), h, w, fh, fw, k, dirs, cfg)
        level.target = level.pool(structure_tensor(fine.permute(2, 0, 1)[None]))[0]
        return level

    def pool(self, tensor: Float[Tensor, "C 3 fh fw"]) -> Float[Tensor, "C P"]:
        if (self.fine_h, self.fine_w) != (self.h, self.w):
            tensor = F.interpolate(tensor, size=(self.h, self.w), mode="bilinear", antialias=True, align_corners=False)
        return orientation_field(blur121(tensor), self.cfg.magnitude_power)

    def fields(self, render: Float[Tensor, "C P F"]) -> Float[Tensor, "C Q"]:
        """Orientation fields of renders on the fine grid: depth, then any appearance channels (``DepthFn``)."""
        chans = depth_channels(render[..., 0].reshape(-1, self.fine_h, self.fine_w),
                               self.dirs_cam.reshape(self.fine_h, self.fine_w, 3), self.cfg.depth_weight,
                               self.cfg.normal_weight)
        if render.shape[-1] > 1 and self.cfg.appearance_weight > 0:
            extra = render[..., 1:].reshape(len(render), self.fine_h, self.fine_w, -1).permute(0, 3, 1, 2)
            chans = torch.cat([chans, self.cfg.appearance_weight * extra], dim=1)
        return self.pool(structure_tensor(chans))

    def render_fields(self, depth_fn: DepthFn, c2w: Tensor) -> Tensor:
        return self.fields(render_views(depth_fn, c2w, self.dirs_cam, self.cfg.max_rays_per_call))

    def scores(self, depth_fn: DepthFn, c2w: Tensor, batch: int = 64) -> Tensor:
        """``1 - cos`` [C] of each pose's geometry field with the photo's (0: identical, lower is better)."""
        out = [1.0 - self.render_fields(depth_fn, c2w[i:i + batch]) @ self.target for i in range(0, len(c2w), batch)]
        return torch.cat(out)

    def residuals(self, depth_fn: DepthFn, c2w: Tensor) -> Tensor:
        """[C, Q] whose squared norm is ``2 (1 - cos)``."""
        return self.render_fields(depth_fn, c2w) - self.target

    @property
    def rays_per_view(self) -> int:
        return len(self.dirs_cam)
