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

DefenseKind = Literal["none", "s2nerf", "label-noise"]


@dataclass
class DefenseConfig(InstantiateConfig):
    """What the client does before anything derived from its pixels crosses to the server."""

    _target: Type = field(default_factory=lambda: _defense_class())
    kind: DefenseKind = "none"
    """none: SplitNeRF, the gradient is sent as computed; s2nerf: decaying Gaussian noise on dL/dh (the paper);
    label-noise: Gaussian noise on the client's target pixels, gradient sent as computed (a baseline)."""
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
    nonfinite: Literal["error", "sanitize"] = "error"
    """NaN/Inf in dL/dh: fail the step with a clear error (default), or zero those entries before the defense runs.
    Either way the client never sends a non-finite value."""

    def __post_init__(self) -> None:
        checks = [
            (self.kind in ("none", "s2nerf", "label-noise"), f"kind must be none, s2nerf or label-noise, got {self.kind!r}"),
            (_finite_nonneg(self.noise_scale), f"noise_scale c must be a finite number >= 0, got {self.noise_scale}"),
            (0 < self.decay_ratio <= 1, f"decay_ratio r must be in (0, 1], got {self.decay_ratio}"),
            (self.decay_steps is None or self.decay_steps > 0, f"decay_steps T must be positive, got {self.decay_steps}"),
            (0 <= self.noise_floor <= 1, f"noise_floor f must be in [0, 1], got {self.noise_floor}"),
            (self.variant in ("random", "partial", "mix"), f"variant must be random, partial or mix, got {self.variant!r}"),
            (_finite_nonneg(self.partial_noise_scale),
             f"partial_noise_scale must be a finite number >= 0, got {self.partial_noise_scale}"),
            (0 <= self.mix_probability <= 1, f"mix_probability p must be in [0, 1], got {self.mix_probability}"),
            (_finite_nonneg(self.label_noise_std), f"label_noise_std must be a finite number >= 0, got {self.label_noise_std}"),
            (self.nonfinite in ("error", "sanitize"), f"nonfinite must be 'error' or 'sanitize', got {self.nonfinite!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def needs_schedule(self) -> bool:
        """Whether :meth:`setup` needs the run's length (the s2nerf noise decays over it)."""
        return self.kind == "s2nerf" and self.decay_steps is None


def _finite_nonneg(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x >= 0


def _defense_class():
    from s2nerf_ns.defenses.defense import Defense

    return Defense
