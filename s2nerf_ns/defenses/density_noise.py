"""Density noise: noise on the one direction that carries the density when the client keeps appearance.

Threat model: a curious server reading the client's geometry out of the received gradients (the density read-out,
:mod:`s2nerf_ns.attacks.geometry`). With client appearance and one client density layer, the client's density is
``trunc_exp(w . h)``, so every gradient row is ``g_i = s_i w`` with one scalar ``s_i = dL/d(w . h_i)`` per sample:
where ``s_i`` is non-zero along a ray is the ray's depth, and how it falls with ``w . h_i`` is the density's scale.
The client sends ``(clip(s) + n) u`` instead, with ``u = w / |w|`` (read off the batch: the rows are parallel):

- each ray's vector of scalars (over its samples, in units of that ray's own loss: ``s`` times the rays in the
  batch) is clipped to L2 norm ``C`` (``density_clip``), then every sample gets ``N(0, (m C)^2)``
  (``density_noise_scale`` ``m``);
- one pixel (one ray) replaced changes its clipped vector by at most ``2 C``: each release is a Gaussian mechanism on
  that pixel with noise multiplier ``z = m / 2``, composed per pixel by the residual-noise accountant
  (:func:`~s2nerf_ns.defenses.residual.per_pixel_privacy`), given the client head (the client trains on the clean
  gradient; ``w`` itself is the client head's and is sent as ``u``);
- anything off ``u`` (zero for the heads this kind accepts; the model refuses the others) is not sent.

What it cannot hide: the direction ``u`` crosses in clear, and the server's own field still learns the room's
layout from the (noisy) gradients it trains on; the noise hides the depth support and the scale only.
"""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor


class DensityNoise:
    """``g' = (clip_ray(s) + N(0, (m C)^2)) u``: Gaussian noise on the per-sample density scalar (see the module)."""

    def __init__(self, clip: float, noise_scale: float) -> None:
        self.clip = float(clip)
        self.noise_scale = float(noise_scale)
        self.last_sigma: Optional[Tensor] = None
        self.last_off_axis: Optional[Tensor] = None
        """Share of the gradient's energy off ``u`` that was dropped (0 for a linear density head)."""
        self.last_clipped: Optional[Tensor] = None
        """Share of the rays whose density scalars were clipped."""

    @property
    def noise_multiplier(self) -> float:
        """z = noise std / L2 sensitivity of one ray's clipped scalars under replacement (``2 C``)."""
        return self.noise_scale / 2.0

    def __call__(self, grad: Float[Tensor, "R S D"], h: Tensor, step: int, generator: torch.Generator) -> Tensor:
        if grad.dim() != 3:
            raise ValueError(f"density-noise expects gradients of shape [rays, samples, dim], got {tuple(grad.shape)}")
        rays = grad.shape[0]
        flat = grad.reshape(-1, grad.shape[-1])
        norms = flat.norm(dim=-1)
        if flat.shape[0] == 0:
            return grad
        top = int(norms.argmax())
        u = flat[top] / norms[top] if float(norms[top]) > 0 else torch.zeros_like(flat[top])
        scalars = grad @ u  # [R, S]
        off = (grad - scalars[..., None] * u).pow(2).sum()
        self.last_off_axis = off / grad.pow(2).sum().clamp_min(1e-30)
        per_ray = scalars * rays  # in units of one ray's own loss (the client's loss averages over the batch)
        ray_norm = per_ray.norm(dim=-1, keepdim=True)
        factor = (self.clip / ray_norm.clamp_min(1e-30)).clamp(max=1.0)
        self.last_clipped = (factor < 1).float().mean()
        noise = torch.randn(per_ray.shape, generator=generator, device=grad.device, dtype=grad.dtype)
        sent = (per_ray * factor + self.noise_scale * self.clip * noise) / rays
        self.last_sigma = torch.tensor(self.noise_scale * self.clip / rays, dtype=torch.float64)
        return sent[..., None] * u
