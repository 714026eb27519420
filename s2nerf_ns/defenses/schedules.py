"""Noise schedules: how a defense's noise level changes over training."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecaySchedule:
    """``max(r^(t/T), f)``: decays from 1 to ``r`` over ``T`` steps, then stays; never below the floor ``f``."""

    ratio: float
    """r in (0, 1]."""
    steps: int
    """T > 0."""
    floor: float = 0.0
    """f in [0, 1]."""

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise ValueError(f"a decay schedule needs T > 0 steps, got {self.steps}")

    def __call__(self, step: int) -> float:
        progress = min(max(step, 0) / self.steps, 1.0)
        return max(self.ratio**progress, self.floor)
