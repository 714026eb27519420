"""The client's defense: a gradient perturbation, a target perturbation, and the non-finite policy.

Constructed once, at model setup, with everything it needs: the run's seed and, for a decaying noise, the
schedule length. A defense whose schedule length is unknown refuses to start.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from s2nerf_ns.defenses.config import DefenseConfig
from s2nerf_ns.defenses.perturbations import IdentityPerturbation, S2NeRFNoise
from s2nerf_ns.defenses.schedules import DecaySchedule
from s2nerf_ns.defenses.targets import IdentityTargets, LabelNoise


class NonFiniteGradientError(RuntimeError):
    """Raised when the client is about to send a NaN/Inf gradient to the server."""


class ScheduleLengthUnknownError(ValueError):
    """Raised when a decaying defense is built without knowing how long the run is."""


class Defense:
    """Everything the client applies before pixel-derived data crosses: built by :meth:`DefenseConfig.setup`."""

    def __init__(self, config: DefenseConfig, seed: int, schedule_steps: Optional[int]) -> None:
        self.config = config
        self.seed = int(seed)
        steps = config.decay_steps or schedule_steps
        if config.kind == "s2nerf":
            if steps is None or steps <= 0:
                raise ScheduleLengthUnknownError(
                    "the s2nerf defense decays its noise over the run, but the run's length is unknown: train with "
                    "ns-train (or the method's trainer), or set --pipeline.model.defense.decay-steps"
                )
            self.gradient = S2NeRFNoise(config.noise_scale, DecaySchedule(config.decay_ratio, int(steps),
                                                                          config.noise_floor),
                                        config.variant, config.partial_noise_scale, config.mix_probability,
                                        config.clip_to_median)
        else:
            self.gradient = IdentityPerturbation()
        self.targets = LabelNoise(config.label_noise_std) if config.kind == "label-noise" else IdentityTargets()
        self.schedule_steps = steps
        self._generators: Dict[str, torch.Generator] = {}
        self._stats: Dict[str, Tensor] = {}

    def generator(self, device: torch.device) -> torch.Generator:
        """Noise generator seeded from the run's seed (one per device), so runs are reproducible."""
        key = str(device)
        if key not in self._generators:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed * 7919 + 17)
            self._generators[key] = gen
        return self._generators[key]

    # ------------------------------------------------------------------ what the channel calls
    def gradient_to_send(
        self, grad: Float[Tensor, "*batch dim"], h: Float[Tensor, "*batch dim"], step: int
    ) -> Float[Tensor, "*batch dim"]:
        """The gradient that crosses to the server at training step ``step``. Never non-finite."""
        finite = torch.isfinite(grad)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            if self.config.nonfinite == "error":
                raise NonFiniteGradientError(
                    f"step {step}: the client's gradient dL/dh has {bad} NaN/Inf entries of {grad.numel()}; "
                    "refusing to send it to the server. Lower the learning rate, or set "
                    "--pipeline.model.defense.nonfinite sanitize to zero them."
                )
            grad = torch.where(finite, grad, torch.zeros_like(grad))
        out = self.gradient(grad, h, step, self.generator(grad.device))
        self._record_stats(grad, out)
        if self.config.nonfinite == "sanitize" and not bool(torch.isfinite(out).all()):
            raise NonFiniteGradientError(
                f"step {step}: the defended gradient is not finite (the noise scale overflowed); nothing was sent"
            )
        return out

    # ------------------------------------------------------------------ what the client's loss calls
    def targets_for_loss(self, rgb: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
        """The client's target pixels as its loss sees them (label noise perturbs them)."""
        return self.targets(rgb, self.generator(rgb.device))

    # ------------------------------------------------------------------ telemetry (read on logging steps only)
    def _record_stats(self, grad: Tensor, out: Tensor) -> None:
        """Keep the statistics as device tensors: reading them forces a sync, so only loggers do."""
        norms = grad.reshape(-1, grad.shape[-1]).norm(dim=-1) if grad.numel() else grad.new_zeros(1)
        sigma = getattr(self.gradient, "last_sigma", None)
        self._stats = {
            "grad_row_norm_max": norms.max(), "grad_row_norm_median": norms.median(),
            "grad_row_norm_mean": norms.mean(), "noise_power": (out - grad).pow(2).mean(),
            "signal_power": grad.pow(2).mean(), "noise_std": sigma if sigma is not None else grad.new_zeros(()),
        }

    @property
    def last_stats(self) -> Dict[str, float]:
        """Statistics of the last gradient sent (host floats; reading them synchronises the device)."""
        if not self._stats:
            return {}
        s = {k: float(v) for k, v in self._stats.items()}
        noise, signal = s.pop("noise_power"), s.pop("signal_power")
        s["snr_db"] = 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else math.inf
        if self.config.kind == "label-noise":
            s["label_noise_std"] = self.config.label_noise_std
        return s
