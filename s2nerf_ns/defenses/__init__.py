"""Client-side defenses at the gradient channel: small strategy objects composed by one config.

- :mod:`~s2nerf_ns.defenses.config`: ``DefenseConfig`` (the command-line option, ``kind`` + knobs);
- :mod:`~s2nerf_ns.defenses.perturbations`: gradient perturbations (identity, S²NeRF noise and variants, max-norm);
- :mod:`~s2nerf_ns.defenses.residual`: noise on the colour residual (sent as ``J^T (e + n)``) and its per-pixel
  (epsilon, delta) with opacus' RDP accountant;
- :mod:`~s2nerf_ns.defenses.targets`: target perturbations (label noise);
- :mod:`~s2nerf_ns.defenses.schedules`: noise schedules;
- :mod:`~s2nerf_ns.defenses.defense`: ``Defense``, the composed object the channel and the client call;
- :mod:`~s2nerf_ns.defenses.state`: ``DefenseCounters``, the accountant's counters and the schedule length in the
  model's state dict (checkpoints, ``--load-dir``, ``ns-eval``).
"""

from s2nerf_ns.defenses.config import DefenseConfig, DefenseKind
from s2nerf_ns.defenses.defense import Defense, NonFiniteGradientError, ScheduleLengthUnknownError

__all__ = ["Defense", "DefenseConfig", "DefenseKind", "NonFiniteGradientError", "ScheduleLengthUnknownError"]
