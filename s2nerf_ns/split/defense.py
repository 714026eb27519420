"""Defenses applied by the client to what it sends back to the server.

A gradient defense is a small object called by the :class:`~s2nerf_ns.split.channel.GradientChannel`
on the client side, right before the gradient ``g = dL/dh`` crosses to the server. It never changes
the client's own parameter updates: those are computed from the clean gradient.

The label-noise baseline is different: it perturbs the client's target pixels (client side), and the
gradient goes out unmodified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Literal, Optional, Type, Union

import torch
import tyro
from jaxtyping import Float
from torch import Tensor
from typing_extensions import Annotated

from nerfstudio.configs.base_config import InstantiateConfig


class NonFiniteGradientError(RuntimeError):
    """Raised when the client is about to send a NaN/Inf gradient to the server."""


@dataclass
class GradientDefenseConfig(InstantiateConfig):
    """Options shared by every defense."""

    _target: Type = field(default_factory=lambda: GradientDefense)
    nonfinite: Literal["error", "sanitize"] = "error"
    """What to do with NaN/Inf entries in the gradient: fail the step with a clear error (default), or
    replace them by 0 (and +-max finite value) before the defense runs."""

    def __post_init__(self) -> None:
        if self.nonfinite not in ("error", "sanitize"):
            raise ValueError(f"nonfinite must be 'error' or 'sanitize', got {self.nonfinite!r}")


class GradientDefense:
    """Identity defense (SplitNeRF): the gradient goes out as computed.

    Subclasses override :meth:`perturb`. :meth:`__call__` handles non-finite values and statistics.
    """

    config: GradientDefenseConfig

    def __init__(self, config: GradientDefenseConfig, seed: int = 0, max_steps: int = 1) -> None:
        self.config = config
        self.seed = seed
        self.max_steps = max(int(max_steps), 1)
        self._generators: Dict[str, torch.Generator] = {}
        self.last_stats: Dict[str, float] = {}

    # --- helpers -------------------------------------------------------------------------------
    def generator(self, device: torch.device) -> torch.Generator:
        """Noise generator seeded from the run's seed (one per device), so runs are reproducible."""
        key = str(device)
        if key not in self._generators:
            gen = torch.Generator(device=device)
            gen.manual_seed(int(self.seed) * 7919 + 17)
            self._generators[key] = gen
        return self._generators[key]

    # --- the defense ---------------------------------------------------------------------------
    def __call__(
        self, grad: Float[Tensor, "*batch dim"], h: Float[Tensor, "*batch dim"], step: int
    ) -> Float[Tensor, "*batch dim"]:
        """Return the gradient that is sent to the server at training step ``step``."""
        if not torch.isfinite(grad).all():
            bad = int((~torch.isfinite(grad)).sum())
            if self.config.nonfinite == "error":
                raise NonFiniteGradientError(
                    f"step {step}: the client's gradient dL/dh has {bad} NaN/Inf entries of {grad.numel()}; "
                    "refusing to send it to the server. Lower the learning rate, or set "
                    "--pipeline.model.defense.nonfinite sanitize to replace them by finite values."
                )
            grad = torch.nan_to_num(grad, nan=0.0)
        out = self.perturb(grad, h, step)
        rows = grad.reshape(-1, grad.shape[-1])
        norms = rows.norm(dim=-1)
        noise_power = (out - grad).pow(2).mean()
        signal_power = grad.pow(2).mean()
        self.last_stats = {
            "grad_row_norm_max": float(norms.max()) if norms.numel() else 0.0,
            "grad_row_norm_median": float(norms.median()) if norms.numel() else 0.0,
            "grad_row_norm_mean": float(norms.mean()) if norms.numel() else 0.0,
            "snr_db": float(10 * torch.log10(signal_power / noise_power)) if noise_power > 0 else math.inf,
            **self.extra_stats(),
        }
        return out

    def perturb(self, grad: Tensor, h: Tensor, step: int) -> Tensor:
        return grad

    def extra_stats(self) -> Dict[str, float]:
        return {"noise_std": 0.0}


@dataclass
class NoDefenseConfig(GradientDefenseConfig):
    """No defense (SplitNeRF): the gradient is sent as computed."""

    _target: Type = field(default_factory=lambda: GradientDefense)


@dataclass
class S2NeRFDefenseConfig(GradientDefenseConfig):
    """S²NeRF gradient noise: ``g' = g + N(0, sigma_t^2)``, ``sigma_t = c * max_i ||g_i|| * r^(t/T)``."""

    _target: Type = field(default_factory=lambda: S2NeRFDefense)
    noise_scale: float = 1.2
    """c: noise std relative to the largest per-sample gradient row norm in the batch."""
    decay_ratio: float = 1e-4
    """r in (0, 1]: the noise decays to r times its initial scale at step T (r = 1: no decay)."""
    decay_steps: Optional[int] = None
    """T: steps over which the noise decays; defaults to the run's max iterations."""
    variant: Literal["random", "partial", "mix"] = "random"
    """random: noise on every entry; partial: (large) noise only where h is exactly 0 (dead ReLU units,
    whose gradient never reaches the server's parameters); mix: partial on zero entries plus random noise,
    applied with probability p, on the others."""
    partial_noise_scale: float = 10.0
    """c used on the zero entries of h by the partial and mix variants."""
    mix_probability: float = 0.5
    """p: probability that a non-zero entry receives random noise in the mix variant."""
    clip_to_median: bool = False
    """Clip every gradient row to the median row norm before the noise scale is computed (and sent)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.noise_scale >= 0 and math.isfinite(self.noise_scale)):
            raise ValueError(f"noise_scale c must be a finite number >= 0, got {self.noise_scale}")
        if not (0 < self.decay_ratio <= 1):
            raise ValueError(f"decay_ratio r must be in (0, 1], got {self.decay_ratio}")
        if not (self.partial_noise_scale >= 0 and math.isfinite(self.partial_noise_scale)):
            raise ValueError(f"partial_noise_scale must be a finite number >= 0, got {self.partial_noise_scale}")
        if not (0 <= self.mix_probability <= 1):
            raise ValueError(f"mix_probability p must be in [0, 1], got {self.mix_probability}")
        if self.decay_steps is not None and self.decay_steps <= 0:
            raise ValueError(f"decay_steps T must be positive, got {self.decay_steps}")
        if self.variant not in ("random", "partial", "mix"):
            raise ValueError(f"variant must be random, partial or mix, got {self.variant!r}")


def clip_rows_to_median(grad: Float[Tensor, "*batch dim"]) -> Float[Tensor, "*batch dim"]:
    """Scale down every row whose L2 norm exceeds the median row norm to exactly the median."""
    norms = grad.norm(dim=-1, keepdim=True)
    median = norms.reshape(-1).median()
    factor = torch.clamp(median / norms.clamp_min(1e-30), max=1.0)
    return grad * factor


class S2NeRFDefense(GradientDefense):
    """The S²NeRF defense: decaying Gaussian noise proportional to the largest gradient row norm."""

    config: S2NeRFDefenseConfig

    def __init__(self, config: S2NeRFDefenseConfig, seed: int = 0, max_steps: int = 1) -> None:
        super().__init__(config, seed=seed, max_steps=max_steps)
        self._last_sigma = 0.0

    @property
    def decay_steps(self) -> int:
        return self.config.decay_steps or self.max_steps

    def sigma(self, grad: Tensor, step: int) -> float:
        """sigma_t = c * max_i ||g_i|| * r^(t/T)."""
        max_norm = float(grad.reshape(-1, grad.shape[-1]).norm(dim=-1).max()) if grad.numel() else 0.0
        progress = min(max(step, 0) / self.decay_steps, 1.0)
        return self.config.noise_scale * max_norm * self.config.decay_ratio**progress

    def perturb(self, grad: Tensor, h: Tensor, step: int) -> Tensor:
        cfg = self.config
        if cfg.clip_to_median:
            grad = clip_rows_to_median(grad)
        sigma = self.sigma(grad, step)
        self._last_sigma = sigma
        gen = self.generator(grad.device)
        noise = torch.randn(grad.shape, generator=gen, device=grad.device, dtype=grad.dtype)
        if cfg.variant == "random":
            return grad + sigma * noise
        # partial and mix: large noise on the entries where h is exactly zero.
        zero = h == 0
        scale_zero = cfg.partial_noise_scale / max(cfg.noise_scale, 1e-12) * sigma if cfg.noise_scale > 0 else 0.0
        out = torch.where(zero, grad + scale_zero * noise, grad)
        if cfg.variant == "mix":
            coin = torch.rand(grad.shape, generator=gen, device=grad.device) < cfg.mix_probability
            noise2 = torch.randn(grad.shape, generator=gen, device=grad.device, dtype=grad.dtype)
            out = torch.where(~zero & coin, out + sigma * noise2, out)
        return out

    def extra_stats(self) -> Dict[str, float]:
        return {"noise_std": self._last_sigma}


@dataclass
class LabelNoiseConfig(GradientDefenseConfig):
    """Label-noise baseline: Gaussian noise added to the client's target pixels; gradient sent as is."""

    _target: Type = field(default_factory=lambda: LabelNoiseDefense)
    label_noise_std: float = 0.1
    """Standard deviation of the Gaussian noise added to the target RGB values (in [0, 1] units)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.label_noise_std >= 0 and math.isfinite(self.label_noise_std)):
            raise ValueError(f"label_noise_std must be a finite number >= 0, got {self.label_noise_std}")


class LabelNoiseDefense(GradientDefense):
    """Client-side label noise; the gradient channel applies the identity."""

    config: LabelNoiseConfig

    def noisy_targets(self, rgb: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
        gen = self.generator(rgb.device)
        noise = torch.randn(rgb.shape, generator=gen, device=rgb.device, dtype=rgb.dtype)
        return rgb + self.config.label_noise_std * noise

    def extra_stats(self) -> Dict[str, float]:
        return {"noise_std": 0.0, "label_noise_std": self.config.label_noise_std}


DefenseConfig = Union[
    Annotated[NoDefenseConfig, tyro.conf.subcommand("defense-none", prefix_name=False)],
    Annotated[S2NeRFDefenseConfig, tyro.conf.subcommand("defense-s2nerf", prefix_name=False)],
    Annotated[LabelNoiseConfig, tyro.conf.subcommand("defense-label-noise", prefix_name=False)],
]
"""The defense choice on the command line: ``ns-train splitnerf defense-s2nerf --pipeline.model.defense.noise-scale 0.5``."""
