"""The defense option on the command line: one config, a ``kind`` and the knobs of every kind.

One flat dataclass (not a tyro subcommand union) so that the natural spelling works:
``ns-train s2nerf --pipeline.model.defense.decay-ratio 1.0`` or
``ns-train splitnerf --pipeline.model.defense.kind s2nerf --pipeline.model.defense.noise-scale 0.5``.
:meth:`DefenseConfig.setup` composes the small strategy objects of :mod:`s2nerf_ns.defenses`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal, Optional, Type

from nerfstudio.configs.base_config import InstantiateConfig

from s2nerf_ns.defenses.defense import Defense
from s2nerf_ns.errors import InputError

DefenseKind = Literal["none", "s2nerf", "label-noise", "max-norm", "residual-noise", "density-noise"]
KINDS = ("none", "s2nerf", "label-noise", "max-norm", "residual-noise", "density-noise")
FLAG_PREFIX = "--pipeline.model.defense."
"""Where ns-train exposes this config: error lines name the flag as the user types it."""
KNOBS = {
    "none": (),
    "s2nerf": ("noise_scale", "decay_ratio", "decay_steps", "noise_floor", "variant", "partial_noise_scale",
               "mix_probability", "clip_to_median"),
    "label-noise": ("label_noise_std",),
    "max-norm": ("max_norm_scale",),
    "residual-noise": ("residual_noise_std", "residual_client", "dp_delta"),
    "density-noise": ("density_clip", "density_noise_scale", "dp_delta"),
}
"""The knobs each kind reads (``nonfinite`` applies to every kind)."""
ALL_KNOBS = tuple(dict.fromkeys(name for kind in KINDS for name in KNOBS[kind]))


@dataclass
class DefenseConfig(InstantiateConfig):
    """What the client does before anything derived from its pixels crosses to the server."""

    _target: Type = field(default_factory=lambda: Defense)
    kind: DefenseKind = "none"
    """none: SplitNeRF, the gradient is sent as computed; s2nerf: decaying Gaussian noise on dL/dh (the paper);
    label-noise: Gaussian noise on the client's target pixels, gradient sent as computed (a baseline);
    max-norm: per-row noise that lifts every row's expected norm to the batch's largest (Li et al., ICLR 2022);
    residual-noise: noise on each ray's colour residual, sent as J^T(e + n); the client head trains on the clean
    gradient (residual-client clean) and the release per pixel has a Gaussian-mechanism (epsilon, delta);
    density-noise: against the geometry read-out under client appearance (every row is a scalar times the client's
    w): each ray's density scalars clipped and noised, only their direction sent; per-pixel (epsilon, delta)."""
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
    """residual-noise, density-noise: the delta of the reported per-pixel (epsilon, delta)."""
    density_clip: float = 0.02
    """density-noise, C: each ray's density scalars (dL/d(w.h) over its samples, in units of the ray's own loss)
    are clipped to this L2 norm (measured on a tiny office run: the median ray's norm is about 0.004, the 90th
    percentile about 0.02)."""
    density_noise_scale: float = 1.0
    """density-noise, m: std of the Gaussian noise on every sample's density scalar, relative to C (noise
    multiplier m / 2 per pixel)."""
    nonfinite: Literal["error", "sanitize"] = "error"
    """NaN/Inf in dL/dh: fail the step with a clear error (default), or zero those entries before the defense runs.
    Either way the client never sends a non-finite value."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse, in one line naming the flag as typed, a value that cannot work, a knob the chosen kind ignores
        and a noisy kind that would add no noise (fail closed: no run that believes it is defended and is not).

        "Given by the user" is read as "differs from the field's default": the method presets build this config
        with ``kind`` and their knobs, and a knob left at its default is indistinguishable from one not given
        (``--pipeline.model.defense.noise-scale 1.2`` with kind none is therefore not caught: it changes nothing).
        Run when the config is built (tyro) and again by the split trainer before training (a config changed in
        code); not when ``ns-eval`` rebuilds a finished run."""
        checks = [
            (self.kind in KINDS, "kind", f"must be one of {', '.join(KINDS)}"),
            (_finite_nonneg(self.noise_scale), "noise_scale", "must be a finite number >= 0"),
            (0 < self.decay_ratio <= 1, "decay_ratio", "must be in (0, 1] (1: no decay)"),
            (self.decay_steps is None or self.decay_steps > 0, "decay_steps", "must be a positive number of steps"),
            (0 <= self.noise_floor <= 1, "noise_floor", "must be in [0, 1]"),
            (self.variant in ("random", "partial", "mix"), "variant", "must be random, partial or mix"),
            (_finite_nonneg(self.partial_noise_scale), "partial_noise_scale", "must be a finite number >= 0"),
            (0 <= self.mix_probability <= 1, "mix_probability", "must be in [0, 1]"),
            (_finite_nonneg(self.label_noise_std), "label_noise_std", "must be a finite number >= 0"),
            (_finite_nonneg(self.max_norm_scale), "max_norm_scale", "must be a finite number >= 0"),
            (_finite_nonneg(self.residual_noise_std), "residual_noise_std", "must be a finite number >= 0"),
            (self.residual_client in ("clean", "noisy"), "residual_client", "must be clean or noisy"),
            (0 < self.dp_delta < 1, "dp_delta", "must be in (0, 1)"),
            (_finite_nonneg(self.density_clip) and self.density_clip > 0, "density_clip",
             "must be a finite number > 0"),
            (_finite_nonneg(self.density_noise_scale), "density_noise_scale", "must be a finite number >= 0"),
            (self.nonfinite in ("error", "sanitize"), "nonfinite", "must be error or sanitize"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise InputError(f"{flag(name)} {getattr(self, name)}: {rule}")
        self._check_knobs_of_other_kinds()
        self._check_adds_noise()

    def _check_knobs_of_other_kinds(self) -> None:
        ignored = [name for name in ALL_KNOBS if name not in KNOBS[self.kind] and _given(self, name)]
        if ignored:
            common = [kind for kind in KINDS if all(name in KNOBS[kind] for name in ignored)]
            owners = [" or ".join(common)] if common else sorted({_owner(name) for name in ignored})
            given = " and ".join(f"{flag(n)} {getattr(self, n)}" for n in ignored)
            if len(owners) > 1:
                which = ", ".join(f"{flag(n)}: {_owner(n)}" for n in ignored)
                raise InputError(f"{given} are knobs of different kinds ({which}) and the kind is {self.kind!r}: a run "
                                 f"has one defense, choose it with {flag('kind')} and keep only its knobs")
            one = len(ignored) == 1
            raise InputError(f"{given} {'is a knob' if one else 'are knobs'} of {flag('kind')} {owners[0]}, but the "
                             f"kind is {self.kind!r}, which ignores {'it' if one else 'them'}: add {flag('kind')} "
                             f"{owners[0]} (or drop the {'knob' if one else 'knobs'})")
        if self.kind == "s2nerf":
            if self.variant == "random" and _given(self, "partial_noise_scale"):
                raise InputError(f"{flag('partial_noise_scale')} {self.partial_noise_scale} applies to "
                                 f"{flag('variant')} partial or mix, but the variant is 'random': add "
                                 f"{flag('variant')} partial (or mix), or drop the knob")
            if self.variant != "mix" and _given(self, "mix_probability"):
                raise InputError(f"{flag('mix_probability')} {self.mix_probability} applies to {flag('variant')} "
                                 f"mix, but the variant is {self.variant!r}: add {flag('variant')} mix, or drop "
                                 "the knob")

    def _check_adds_noise(self) -> None:
        zero = {
            "s2nerf": ("noise_scale" if self.noise_scale == 0 else
                       "partial_noise_scale" if self.partial_noise_scale == 0 and (
                           self.variant == "partial" or (self.variant == "mix" and self.mix_probability == 0))
                       else None),
            "label-noise": "label_noise_std" if self.label_noise_std == 0 else None,
            "max-norm": "max_norm_scale" if self.max_norm_scale == 0 else None,
            "residual-noise": "residual_noise_std" if self.residual_noise_std == 0 else None,
            "density-noise": "density_noise_scale" if self.density_noise_scale == 0 else None,
        }.get(self.kind)
        if zero is not None:
            raise InputError(f"{flag(zero)} {getattr(self, zero)}: the {self.kind} defense would add no noise, an "
                             f"undefended run that reports a defense; for no defense use {flag('kind')} none")

    def public(self) -> dict:
        """The defense's public configuration as plain numbers and strings (protocol knowledge the server has:
        Kerckhoffs). No seed, no state."""
        keys = {"none": (), "label-noise": ("label_noise_std",), "max-norm": ("max_norm_scale",),
                "residual-noise": ("residual_noise_std", "residual_client"),
                "density-noise": ("density_clip", "density_noise_scale"),
                "s2nerf": ("noise_scale", "decay_ratio", "decay_steps", "noise_floor", "variant", "partial_noise_scale",
                           "mix_probability", "clip_to_median")}[self.kind]
        return {"kind": self.kind, **{k: getattr(self, k) for k in keys}}


def flag(name: str) -> str:
    """The command-line flag of a field, as typed: ``noise_scale`` -> ``--pipeline.model.defense.noise-scale``."""
    return FLAG_PREFIX + name.replace("_", "-")


def _given(config: DefenseConfig, name: str) -> bool:
    """Whether a knob differs from its field default (see :meth:`DefenseConfig.__post_init__`)."""
    return getattr(config, name) != _DEFAULTS[name]


def _owner(name: str) -> str:
    return " or ".join(kind for kind in KINDS if name in KNOBS[kind])


def _finite_nonneg(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x >= 0


_DEFAULTS = {f.name: f.default for f in fields(DefenseConfig) if f.name in ALL_KNOBS}
