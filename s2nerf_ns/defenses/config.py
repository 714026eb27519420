"""The defense option on the command line: one config, a ``kind`` and the knobs of every kind.

One flat dataclass (not a tyro subcommand union) so that the natural spelling works:
``ns-train s2nerf --pipeline.model.defense.decay-ratio 1.0`` or
``ns-train splitnerf --pipeline.model.defense.kind s2nerf --pipeline.model.defense.noise-scale 0.5``.
:meth:`DefenseConfig.setup` composes the small strategy objects of :mod:`s2nerf_ns.defenses`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional, Type

from nerfstudio.configs.base_config import InstantiateConfig

DefenseKind = Literal["none", "s2nerf", "label-noise", "max-norm", "residual-noise"]
KINDS = ("none", "s2nerf", "label-noise", "max-norm", "residual-noise")


@dataclass
class DefenseConfig(InstantiateConfig):
    """What the client does before anything derived from its pixels crosses to the server."""

    _target: Type = field(default_factory=lambda: _defense_class())
    kind: DefenseKind = "none"
    """none: SplitNeRF, the gradient is sent as computed; s2nerf: decaying Gaussian noise on dL/dh (the paper);
    label-noise: Gaussian noise on the client's target pixels, gradient sent as computed (a baseline);
    max-norm: per-row noise that lifts every row's expected norm to the batch's largest (Li et al., ICLR 2022);
    residual-noise: noise on each ray's colour residual, sent as J^T(e + n); the client head trains on the clean
    gradient (residual-client clean) and the release per pixel has a Gaussian-mechanism (epsilon, delta)."""
    noise_scale: float = 1.2
    """s2nerf, c: noise std relative to the largest per-sample gradient row norm of the batch."""
    decay_ratio: float = 1e-4
    """s2nerf, r in (0, 1]: the noise decays to r times its initial scale at step T (r = 1: no decay)."""
    decay_steps: Optional[int] = None
    """s2nerf, T: steps over which the noise decays (default: the run's --max-num-iterations)."""
    noise_floor: float = 0.0
    """s2nerf, f in [0, 1]: the decay never goes below f (sigma_t = c max||g_i|| max(r^(t/T), f)); 0: the paper."""
    variant: Literal["random", "partial", "mix"] = "random"
    """s2nerf. random: noise on every entry; partial: (large) noise only where h is exactly 0; mix: partial on the
    zero entries plus random noise, with probability p, on the others."""
    partial_noise_scale: float = 10.0
    """s2nerf partial/mix: c used on the zero entries of h."""
    mix_probability: float = 0.5
    """s2nerf mix, p: probability that a non-zero entry receives random noise."""
    clip_to_median: bool = False
    """s2nerf: clip every gradient row to the median row norm before the noise scale is computed (and sent)."""
    label_noise_std: float = 0.1
    """label-noise: std of the Gaussian noise added to the target RGB values (in [0, 1] units)."""
    max_norm_scale: float = 1.0
    """max-norm, k: row i gets N(0, k^2 (max_j ||g_j||^2 - ||g_i||^2) / d); k = 1 is Li et al.'s max-norm."""
    residual_noise_std: float = 0.1
    """residual-noise, s: std of the noise on each ray's colour residual, in pixel units ([0, 1] colour): the
    server receives the gradient of the MSE against y + N(0, s^2) (y clipped to [0, 1]). Noise multiplier s / sqrt(3)."""
    residual_client: Literal["clean", "noisy"] = "clean"
    """residual-noise: the client head trains on the clean gradient (clean; the guarantee then holds per step given
    the client head, see README) or on the same noisy residual it sends (noisy; the guarantee holds end to end)."""
    dp_delta: float = 1e-5
    """residual-noise: the delta of the reported per-pixel (epsilon, delta)."""
    nonfinite: Literal["error", "sanitize"] = "error"
    """NaN/Inf in dL/dh: fail the step with a clear error (default), or zero those entries before the defense runs.
    Either way the client never sends a non-finite value."""

    def __post_init__(self) -> None:
        checks = [
            (self.kind in KINDS, f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}"),
            (_finite_nonneg(self.noise_scale), f"noise_scale c must be a finite number >= 0, got {self.noise_scale}"),
            (0 < self.decay_ratio <= 1, f"decay_ratio r must be in (0, 1], got {self.decay_ratio}"),
            (self.decay_steps is None or self.decay_steps > 0, f"decay_steps T must be positive, got {self.decay_steps}"),
            (0 <= self.noise_floor <= 1, f"noise_floor f must be in [0, 1], got {self.noise_floor}"),
            (self.variant in ("random", "partial", "mix"), f"variant must be random, partial or mix, got {self.variant!r}"),
            (_finite_nonneg(self.partial_noise_scale),
             f"partial_noise_scale must be a finite number >= 0, got {self.partial_noise_scale}"),
            (0 <= self.mix_probability <= 1, f"mix_probability p must be in [0, 1], got {self.mix_probability}"),
            (_finite_nonneg(self.label_noise_std), f"label_noise_std must be a finite number >= 0, got {self.label_noise_std}"),
            (_finite_nonneg(self.max_norm_scale), f"max_norm_scale k must be a finite number >= 0, got {self.max_norm_scale}"),
            (_finite_nonneg(self.residual_noise_std),
             f"residual_noise_std s must be a finite number >= 0, got {self.residual_noise_std}"),
            (self.residual_client in ("clean", "noisy"), f"residual_client must be clean or noisy, got {self.residual_client!r}"),
            (0 < self.dp_delta < 1, f"dp_delta must be in (0, 1), got {self.dp_delta}"),
            (self.nonfinite in ("error", "sanitize"), f"nonfinite must be 'error' or 'sanitize', got {self.nonfinite!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def needs_schedule(self) -> bool:
        """Whether :meth:`setup` needs the run's length (the s2nerf noise decays over it)."""
        return self.kind == "s2nerf" and self.decay_steps is None

    def public(self) -> dict:
        """The defense's public configuration as plain numbers and strings (protocol knowledge the server has:
        Kerckhoffs). No seed, no state."""
        keys = {"none": (), "label-noise": ("label_noise_std",), "max-norm": ("max_norm_scale",),
                "residual-noise": ("residual_noise_std", "residual_client"),
                "s2nerf": ("noise_scale", "decay_ratio", "decay_steps", "noise_floor", "variant", "partial_noise_scale",
                           "mix_probability", "clip_to_median")}[self.kind]
        return {"kind": self.kind, **{k: getattr(self, k) for k in keys}}


def _finite_nonneg(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x >= 0


def _defense_class():
    from s2nerf_ns.defenses.defense import Defense

    return Defense
