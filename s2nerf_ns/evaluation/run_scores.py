"""EVALUATOR: from per-image scores to a run's leakage numbers: the mean over images, each render's scores, the
best floor, and the leakage of every attack over it (pure functions of score dictionaries; used by the attack
pipelines at eval time and by the benchmarks when they recompute derived scores from raw ones)."""

from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np

from s2nerf_ns.evaluation.leakage import best_of, leakage

SCORE_KEYS = ("psnr", "ssim", "nmi", "raw_lum_ssim", "cmpsnr", "cm_lum_ssim", "cm_nmi", "upper_cipsnr",
              "upper_lum_ssim")
"""The leakage scores (higher = more leaked) compared across attacks and floors."""
PRIVATE_KEYS = tuple(f"private_{k}" for k in SCORE_KEYS if k != "upper_lum_ssim")


def aggregate(rows: Sequence[Dict[str, float]]) -> Dict[str, float]:
    """Mean over images of every key, ignoring NaN; keys with no finite value are omitted (never NaN)."""
    out: Dict[str, float] = {}
    for key in {k for r in rows for k in r}:
        vals = [float(r[key]) for r in rows if key in r and math.isfinite(float(r[key]))]
        if vals:
            out[key] = float(np.mean(vals))
    return out


def strip(metrics: Dict[str, float], prefix: str) -> Dict[str, float]:
    """The leakage scores under ``prefix`` (``prefix_psnr`` -> ``psnr``)."""
    keys = SCORE_KEYS + PRIVATE_KEYS
    return {k: metrics[f"{prefix}_{k}"] for k in keys if f"{prefix}_{k}" in metrics}


def derived_leakage(metrics: Dict[str, float], attacks: Sequence[str], gradient_attack: str = "attack",
                    floors: Sequence[str] = ("floor_constant", "floor_surrogate"),
                    out_prefix: str = "") -> Dict[str, float]:
    """``floor_*`` (best of the floors), ``leakage_*`` (best attack - floor), ``<attack>_leakage_*`` (each
    attack - floor) and, with an embedding attack, ``gradient_share_*`` (gradient attack - embedding attack),
    from averaged scores."""
    p = out_prefix
    floor = best_of([strip(metrics, f"{p}{f}") for f in floors])
    best = best_of([strip(metrics, f"{p}{a}") for a in attacks])
    out = {f"{p}floor_{k}": v for k, v in floor.items()}
    out.update({f"{p}leakage_{k}": v for k, v in leakage(best, floor).items()})
    for attack in attacks:  # each attack's own margin over the floor
        out.update({f"{p}{attack}_leakage_{k}": v for k, v in leakage(strip(metrics, f"{p}{attack}"), floor).items()})
    if f"{p}embedding_attack" in [f"{p}{a}" for a in attacks]:
        share = leakage(strip(metrics, f"{p}{gradient_attack}"), strip(metrics, f"{p}embedding_attack"))
        out.update({f"{p}gradient_share_{k}": v for k, v in share.items()})
    return out
