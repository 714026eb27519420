"""SERVER SIDE (attacker): rendering views at candidate poses, and the photo at the searches' image levels:
the render functions' types, batched renders, downsampling, and renders filtered like the downsampled photo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from s2nerf_ns.attacks.pose.camera import camera_directions


RenderFn = Callable[[Tensor, Tensor], Tensor]
"""(origins [N,3], unit directions [N,3]) -> rgb [N,3]; differentiable w.r.t. both."""


DepthFn = Callable[[Tensor, Tensor], Tensor]
"""(origins [N,3], unit directions [N,3]) -> depth along each ray [N,1] (e.g. the read-out's composited depth), or
[N,1+K]: depth then K appearance channels (e.g. the surrogate's rgb) whose edges join the geometry's."""


@torch.no_grad()
def render_batched(render: RenderFn, origins: Tensor, directions: Tensor, chunk: int) -> Tensor:
    out = [render(origins[i:i + chunk], directions[i:i + chunk]) for i in range(0, len(origins), chunk)]
    return torch.cat(out).float()


@torch.no_grad()
def render_views(render: RenderFn, c2w: Tensor, dirs_cam: Tensor, chunk: int) -> Tensor:
    """Renders [C, P, F] of cameras ``c2w`` [C,3,4] at camera-frame pixel directions ``dirs_cam`` [P,3]."""
    dirs = torch.einsum("cij,pj->cpi", c2w[:, :, :3], dirs_cam)
    origins = c2w[:, None, :, 3].expand_as(dirs)
    out = render_batched(render, origins.reshape(-1, 3), dirs.reshape(-1, 3), chunk)
    return out.reshape(len(c2w), dirs.shape[1], -1)


def downsample(image: Tensor, intrinsics: Sequence[float], longer: int) -> Tuple[Tensor, Tuple[float, ...]]:
    """Downsample ``image`` [H,W,3] so its longer side is ``longer`` (never upsampled); intrinsics scaled to match."""
    h, w = image.shape[:2]
    scale = min(1.0, longer / max(h, w))
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if (nh, nw) == (h, w):
        return image, tuple(float(v) for v in intrinsics)
    # Antialiased bilinear keeps pixel centres where the scaled intrinsics put them ("area" with a non-integer
    # factor would shift them by up to a quarter pixel).
    small = F.interpolate(image.permute(2, 0, 1)[None], size=(nh, nw), mode="bilinear", antialias=True,
                          align_corners=False)[0].permute(1, 2, 0)
    sx, sy = nw / w, nh / h
    fx, fy, cx, cy = intrinsics
    return small, (fx * sx, fy * sy, cx * sx, cy * sy)


def blur121(images: Tensor) -> Tensor:
    """Separable [1, 2, 1] / 4 blur over the last two dimensions (rows, cols) of ``images`` (replicate padding)."""
    x = torch.cat([images[..., :1], images, images[..., -1:]], dim=-1)
    x = 0.25 * (x[..., :-2] + x[..., 2:]) + 0.5 * x[..., 1:-1]
    x = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)
    return 0.25 * (x[..., :-2, :] + x[..., 2:, :]) + 0.5 * x[..., 1:-1, :]


@dataclass
class ImageLevel:
    """The photo at one resolution, and how to render candidates so that they are filtered like it.

    A downsampled photo is an antialiased-bilinear (triangle-filtered) resampling of the original; renders are
    made to match: supersampled renders go through the same resampling, single-sample renders get a [1,2,1] blur
    (the same triangle, sampled at pixel spacing). At full resolution, supersamples are box-averaged (pixel area).
    Without this the filters differ and the low-resolution loss is dominated by blur mismatch, flat around the
    true pose."""

    target: Tensor
    """[h*w, 3]"""
    h: int
    w: int
    intrinsics: Tuple[float, ...]
    dirs_cam: Tensor
    """[h*ss*w*ss, 3] camera-frame directions of the (super)samples."""
    ss: int
    downsampled: bool

    @staticmethod
    def make(image: Tensor, intrinsics: Sequence[float], longer: int, ss: int) -> "ImageLevel":
        small, k = downsample(image, intrinsics, longer)
        h, w = small.shape[:2]
        ss = max(1, ss)
        fx, fy, cx, cy = k
        dirs = camera_directions((fx * ss, fy * ss, cx * ss, cy * ss), h * ss, w * ss, image.device)
        return ImageLevel(small.reshape(-1, 3), h, w, k, dirs, ss, (h, w) != tuple(image.shape[:2]))

    def filter(self, samples: Tensor) -> Tensor:
        """Per-candidate samples [C, h*ss*w*ss, F] -> pixels [C, h*w, F] filtered like the target."""
        c, ss, nf = len(samples), self.ss, samples.shape[-1]
        img = samples.reshape(c, self.h * ss, self.w * ss, nf)
        if ss > 1:
            x = img.permute(0, 3, 1, 2)
            x = F.interpolate(x, size=(self.h, self.w), mode="bilinear", antialias=True, align_corners=False) \
                if self.downsampled else F.avg_pool2d(x, ss)
            img = x.permute(0, 2, 3, 1)
        elif self.downsampled:
            img = blur121(img.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return img.reshape(c, self.h * self.w, nf)

    def render(self, render: RenderFn, c2w: Tensor, chunk: int) -> Tensor:
        return self.filter(render_views(render, c2w, self.dirs_cam, chunk))

    @property
    def rays_per_view(self) -> int:
        return len(self.dirs_cam)
