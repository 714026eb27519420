"""Gradient perturbations: what the client does to ``g = dL/dh`` right before it crosses to the server.

Each is a small callable ``(grad, h, step, generator) -> grad'``. The client's own parameter updates always
use the clean gradient; only what is sent is perturbed.
"""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor

from s2nerf_ns.defenses.schedules import DecaySchedule


class IdentityPerturbation:
    """SplitNeRF: the gradient is sent as computed."""

    last_sigma: Optional[Tensor] = None

    def __call__(self, grad: Tensor, h: Tensor, step: int, generator: torch.Generator) -> Tensor:
        return grad


def clip_rows_to_median(grad: Float[Tensor, "*batch dim"]) -> Float[Tensor, "*batch dim"]:
    """Scale down every row whose L2 norm exceeds the median row norm to exactly the median."""
    norms = grad.norm(dim=-1, keepdim=True)
    median = norms.reshape(-1).median()
    factor = torch.clamp(median / norms.clamp_min(1e-30), max=1.0)
    return grad * factor


def max_row_norm(grad: Float[Tensor, "*batch dim"]) -> Tensor:
    """Largest per-sample gradient row norm, as a 0-dim tensor (no host sync)."""
    if grad.numel() == 0:
        return grad.new_zeros(())
    return grad.reshape(-1, grad.shape[-1]).norm(dim=-1).max()


class S2NeRFNoise:
    """S²NeRF: ``g' = g + N(0, sigma_t^2)`` with ``sigma_t = c * max_i ||g_i|| * schedule(t)``, and its variants."""

    def __init__(self, noise_scale: float, schedule: DecaySchedule, variant: str = "random",
                 partial_noise_scale: float = 10.0, mix_probability: float = 0.5, clip_to_median: bool = False) -> None:
        self.noise_scale = noise_scale
        self.schedule = schedule
        self.variant = variant
        self.partial_noise_scale = partial_noise_scale
        self.mix_probability = mix_probability
        self.clip_to_median = clip_to_median
        self.last_sigma: Optional[Tensor] = None

    def sigma(self, grad: Tensor, step: int) -> Tensor:
        """sigma_t = c * max_i ||g_i|| * schedule(t), computed on the gradient's device (float64, no sync)."""
        return (self.noise_scale * max_row_norm(grad).double()) * self.schedule(step)

    def __call__(self, grad: Tensor, h: Tensor, step: int, generator: torch.Generator) -> Tensor:
        if self.clip_to_median:
            grad = clip_rows_to_median(grad)
        sigma = self.sigma(grad, step)
        self.last_sigma = sigma
        noise = torch.randn(grad.shape, generator=generator, device=grad.device, dtype=grad.dtype)
        if self.variant == "random":
            return grad + sigma.to(grad.dtype) * noise
        # partial and mix: large noise on the entries where h is exactly zero.
        zero = h == 0
        ratio = self.partial_noise_scale / max(self.noise_scale, 1e-12) if self.noise_scale > 0 else 0.0
        out = torch.where(zero, grad + (ratio * sigma).to(grad.dtype) * noise, grad)
        if self.variant == "mix":
            coin = torch.rand(grad.shape, generator=generator, device=grad.device) < self.mix_probability
            noise2 = torch.randn(grad.shape, generator=generator, device=grad.device, dtype=grad.dtype)
            out = torch.where(~zero & coin, out + sigma.to(grad.dtype) * noise2, out)
        return out


class MaxNormNoise:
    """Max-norm (Li et al., "Label Leakage and Protection in Two-party Split Learning", ICLR 2022), per row.

    The paper perturbs each example's gradient so that no example's norm stands out: example ``j`` gets
    ``N(0, sigma_j^2 I_d)`` with ``sigma_j^2 = (max_i ||g_i||^2 - ||g_j||^2) / d``, so that every perturbed
    row has the expected squared norm of the batch's largest, ``E||g_j + n_j||^2 = max_i ||g_i||^2``. Here an
    example is one sample row of ``dL/dh`` (``d`` = width of ``h``); ``scale`` multiplies every ``sigma_j``
    (1 = the paper's heuristic). The largest row itself gets no noise. Parameter-free at ``scale = 1``.
    """

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.last_sigma: Optional[Tensor] = None

    def sigmas(self, grad: Tensor) -> Tensor:
        """Per-row std ``scale * sqrt((max ||g_i||^2 - ||g_j||^2) / d)``, shape ``[*batch, 1]``."""
        sq = grad.double().pow(2).sum(dim=-1, keepdim=True)
        top = sq.max() if sq.numel() else sq.new_zeros(())
        return self.scale * ((top - sq).clamp_min(0.0) / grad.shape[-1]).sqrt()

    def __call__(self, grad: Tensor, h: Tensor, step: int, generator: torch.Generator) -> Tensor:
        sig = self.sigmas(grad)
        self.last_sigma = sig.pow(2).mean().sqrt() if sig.numel() else sig.new_zeros(())
        noise = torch.randn(grad.shape, generator=generator, device=grad.device, dtype=grad.dtype)
        return grad + sig.to(grad.dtype) * noise
