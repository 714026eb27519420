"""Bootstrap confidence intervals over seeds and eval views (the frontier's verdict, issue 23).

A benchmark cell (one defended setting on one room) has, per training seed, a table of raw per-view scores
(rows: eval views or dummy images; columns: the raw scores of every render, NaN where a view has none, e.g.
no private item in sight). Its leakage values and its ratios to the undefended victim are functions of the
per-seed means of those columns, averaged over seeds. :func:`two_stage_means` draws the bootstrap
replicates of those per-seed means (seeds with replacement, then, for every drawn seed, its views with
replacement); :func:`percentile_interval` turns a statistic's replicates into an interval, and
:func:`judge` compares an interval with a goal: **pass** only where its upper end is at most the goal,
**fail** only where its lower end is over it, otherwise **not resolved**.

A cell whose records carry no per-view rows is bootstrapped over seeds only (each seed is one row, its
means); one seed without per-view rows gives no interval at all (:func:`resolvable` is False) and is never
judged pass or fail. The random generator is seeded, so a table generated from the same records is the
same text on every machine.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

LEVEL = 0.95
"""Two-sided coverage of every interval."""
REPLICATES = 2000
"""Bootstrap replicates per cell."""
RNG_SEED = 0
"""Seed of the resampling generator (the same records always give the same intervals)."""
PASS, FAIL, UNRESOLVED = "pass", "fail", "not resolved"


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile bootstrap interval (``low``/``high`` are NaN when unresolvable)."""

    point: float
    low: float
    high: float

    @property
    def resolved(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high))

    def text(self, digits: int = 2, signed: bool = False) -> str:
        fmt = f"{'+' if signed else ''}.{digits}f"
        if not np.isfinite(self.point):
            return "n/a"
        if not self.resolved:
            return f"{self.point:{fmt}} [no interval]"
        return f"{self.point:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


def resolvable(num_seeds: int, rows_per_seed: Sequence[int]) -> bool:
    """Whether resampling can vary anything: at least two seeds, or at least two rows in some seed."""
    return num_seeds >= 2 or any(n >= 2 for n in rows_per_seed)


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():  # an all-NaN slice (no private item in the drawn views) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def seed_means(samples: Sequence[np.ndarray]) -> np.ndarray:
    """The observed per-seed means, ``[S, K]`` (NaN ignored within a column)."""
    return np.stack([_nanmean(np.asarray(s, dtype=float), 0) for s in samples])


def two_stage_means(samples: Sequence[np.ndarray], replicates: int = REPLICATES,
                    rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Bootstrap replicates of the per-seed column means, ``[B, S, K]``.

    ``samples``: one ``[V_s, K]`` array per seed (rows: views). Replicate ``b`` draws ``S`` seeds with
    replacement and, for each draw, ``V_s`` of that seed's rows with replacement (independently per draw);
    entry ``[b, j]`` is the column means of the ``j``-th drawn seed's drawn rows.
    """
    rng = rng or np.random.default_rng(RNG_SEED)
    arrays = [np.asarray(s, dtype=float) for s in samples]
    num_seeds, width = len(arrays), arrays[0].shape[1]
    picks = rng.integers(0, num_seeds, size=(replicates, num_seeds))
    out = np.empty((replicates, num_seeds, width))
    for j in range(num_seeds):
        for s, rows in enumerate(arrays):
            chosen = picks[:, j] == s
            if not chosen.any():
                continue
            views = rng.integers(0, rows.shape[0], size=(int(chosen.sum()), rows.shape[0]))
            out[chosen, j] = _nanmean(rows[views], 1)
    return out


def percentile_interval(point: float, replicates: np.ndarray, level: float = LEVEL) -> Interval:
    """Percentile interval of a statistic's replicates (NaN replicates ignored; none finite: no interval)."""
    values = np.asarray(replicates, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Interval(float(point), float("nan"), float("nan"))
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Interval(float(point), float(low), float(high))


def judge(interval: Optional[Interval], goal: float) -> str:
    """``pass`` if the interval lies at or under ``goal``, ``fail`` if entirely over it, else not resolved."""
    if interval is None or not interval.resolved:
        return UNRESOLVED
    if interval.high <= goal:
        return PASS
    if interval.low > goal:
        return FAIL
    return UNRESOLVED
