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

from nerfstudio.configs.base_config import InstantiateConfig

from s2nerf_ns.defenses.density_noise import DensityNoise
from s2nerf_ns.defenses.perturbations import IdentityPerturbation, MaxNormNoise, S2NeRFNoise
from s2nerf_ns.defenses.residual import ResidualNoise, per_pixel_privacy
from s2nerf_ns.defenses.schedules import DecaySchedule
from s2nerf_ns.defenses.targets import IdentityTargets, LabelNoise


PRIVACY_SCOPE = {
    "noisy": "end to end: everything the server receives that depends on pixels is computed from noisy residuals "
             "(the client head trains on them too). Covers one pixel; a k-pixel region costs up to k x epsilon "
             "(group privacy), and correlated neighbouring pixels are not protected individually.",
    "clean": "per release, given the client head: J_r and rgb_r are treated as fixed. The client head trains on "
             "clean pixels and shapes J_r, which the server observes indirectly; that dependence is not covered. "
             "Covers one pixel; a k-pixel region costs up to k x epsilon (group privacy).",
    "density": "per release, given the client head: each ray's density scalars are clipped and noised, and their "
               "direction u = w / |w| is sent in clear. The client head trains on clean pixels and shapes w (and the "
               "server's field trains on the noisy scalars); that dependence is not covered. Covers one pixel; a "
               "k-pixel region costs up to k x epsilon (group privacy).",
}
"""What the per-pixel guarantee covers, by ``residual_client``."""


class NonFiniteGradientError(RuntimeError):
    """Raised when the client is about to send a NaN/Inf gradient to the server."""


class ScheduleLengthUnknownError(ValueError):
    """Raised when a decaying defense is built without knowing how long the run is."""


class Defense:
    """Everything the client applies before pixel-derived data crosses: built by :meth:`DefenseConfig.setup`."""

    def __init__(self, config: InstantiateConfig, seed: int, schedule_steps: Optional[int]) -> None:
        """``config``: the :class:`~s2nerf_ns.defenses.config.DefenseConfig` that builds it (``setup`` passes itself;
        that module imports this one to name its ``_target``, so this one does not import it back)."""
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
        elif config.kind == "max-norm":
            self.gradient = MaxNormNoise(config.max_norm_scale)
        elif config.kind == "density-noise":
            self.gradient = DensityNoise(config.density_clip, config.density_noise_scale)
        else:
            self.gradient = IdentityPerturbation()
        self.targets = LabelNoise(config.label_noise_std) if config.kind == "label-noise" else IdentityTargets()
        self.residual = ResidualNoise(config.residual_noise_std) if config.kind == "residual-noise" else None
        self.releases = 0
        """Training steps whose pixels were released through the residual-noise mechanism."""
        self.rays_per_step = 0
        self.training_pixels: Optional[int] = None
        """Pixels of the training set (set by the model from the datamanager; needed for the sampling rate)."""
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

    # ------------------------------------------------------------------ state a resumed run must restore
    def generator_states(self) -> Dict[str, Tensor]:
        """The noise generators' states by device (CPU byte tensors): saved with the run's checkpoint, so that a
        resumed run draws exactly the noise an uninterrupted one would have drawn."""
        return {key: gen.get_state().clone() for key, gen in self._generators.items()}

    def load_generator_states(self, states: Dict[str, Tensor]) -> None:
        """Restore :meth:`generator_states`. A device without a saved state starts from the seed; a saved CUDA
        state is skipped where CUDA is unavailable (a run resumed on another device cannot draw the same noise)."""
        for key, state in states.items():
            if torch.device(key).type == "cuda" and not torch.cuda.is_available():
                continue
            gen = torch.Generator(device=torch.device(key))
            gen.set_state(state.to(torch.uint8).cpu())
            self._generators[key] = gen

    # ------------------------------------------------------------------ what the channel calls
    def gradient_to_send(
        self, grad: Float[Tensor, "*batch dim"], h: Float[Tensor, "*batch dim"], step: int,
        extra: Optional[Tensor] = None,
    ) -> Float[Tensor, "*batch dim"]:
        """The gradient that crosses to the server at training step ``step``. Never non-finite.

        ``extra``: residual-noise only, ``J^T n`` (the second VJP of the client head with the residual noise),
        added to the clean ``J^T e`` so that ``J^T (e + n)`` crosses."""
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
        if isinstance(self.gradient, DensityNoise):  # one release of every ray of the batch (per-pixel accountant)
            self.releases += 1
            self.rays_per_step = max(self.rays_per_step, int(grad.shape[0]))
        if extra is not None:
            out = out + extra.to(out.dtype)
        self._record_stats(grad, out)
        if self.config.nonfinite == "sanitize" and not bool(torch.isfinite(out).all()):
            raise NonFiniteGradientError(
                f"step {step}: the defended gradient is not finite (the noise scale overflowed); nothing was sent"
            )
        return out

    def public(self) -> Dict[str, object]:
        """The public configuration (plain values) with the schedule length resolved: what a server that knows the
        protocol knows of this defense (handed to observers with every step)."""
        out = self.config.public()
        if "decay_steps" in out:
            out["decay_steps"] = self.schedule_steps
        return out

    # ------------------------------------------------------------------ what the client's loss calls
    def targets_for_loss(self, rgb: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
        """The client's target pixels as its loss sees them (label noise perturbs them)."""
        if self.residual is not None:
            if self.config.residual_client == "noisy":
                self._count_release(rgb)
                return self.residual(rgb, self.generator(rgb.device))
            return rgb.clamp(0.0, 1.0)
        return self.targets(rgb, self.generator(rgb.device))

    def server_targets(self, rgb: Float[Tensor, "*batch 3"]) -> Optional[Float[Tensor, "*batch 3"]]:
        """residual-noise with a clean client: the noisy targets whose loss gradient is sent (``J^T (e + n)``);
        ``None`` for every other defense (the sent gradient is then the client's own, perturbed at the channel)."""
        if self.residual is None or self.config.residual_client != "clean":
            return None
        self._count_release(rgb)
        return self.residual(rgb, self.generator(rgb.device))

    def _count_release(self, rgb: Tensor) -> None:
        self.releases += 1
        self.rays_per_step = max(self.rays_per_step, int(rgb.reshape(-1, rgb.shape[-1]).shape[0]))

    def privacy(self) -> Optional[Dict[str, object]]:
        """Per-pixel (epsilon, delta) of the residual-noise releases so far (opacus RDP); None for other kinds
        or before the training-set size is known."""
        mechanism = self.residual if self.residual is not None else (
            self.gradient if isinstance(self.gradient, DensityNoise) else None)
        if mechanism is None or not self.training_pixels:
            return None
        report = per_pixel_privacy(mechanism.noise_multiplier, max(self.rays_per_step, 1), self.training_pixels,
                                   self.releases, self.config.dp_delta)
        if self.residual is None:  # density-noise
            report.update(density_clip=self.config.density_clip, density_noise_scale=self.config.density_noise_scale,
                          scope=PRIVACY_SCOPE["density"])
            return report
        report["noise_std_pixels"] = self.config.residual_noise_std
        report["client_trains_on"] = self.config.residual_client
        report["scope"] = PRIVACY_SCOPE[self.config.residual_client]
        return report

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
        if self.residual is not None:
            s["residual_noise_std"] = self.config.residual_noise_std
        if isinstance(self.gradient, DensityNoise) and self.gradient.last_clipped is not None:
            s["density_clipped_share"] = float(self.gradient.last_clipped)
            s["density_off_axis_share"] = float(self.gradient.last_off_axis)
        return s
