"""The frontier's cells recomputed from the records' raw scores, each with a bootstrap interval.

A cell is one defended setting on one room. Everything here is computed from the raw scores a record holds:
the victim's ``psnr`` and every render's own scores (``attack_*``, ``embedding_attack_*``,
``floor_constant_*``, ``floor_surrogate_*`` and their ``private_`` variants; the dummies' ``dummy_attack_*``
and ``dummy_floor_*``), per eval view (``per_view``) and per dummy image (``dummies.per_image``) where the
record has them, else the record's means (one row per seed). The stored derived fields (``leakage_*``,
``floor_*``, ``psnr_lost``, ``dummy_leakage_*``) are never read: the leakage is the best attack minus the best
floor per metric, exactly as :func:`s2nerf_ns.evaluation.run_scores.derived_leakage` derives it, and the
PSNR lost is the undefended victim's PSNR minus the defended one's on the same seed.
"""

from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from s2nerf_ns.evaluation.confidence import Interval, percentile_interval, resolvable, seed_means, two_stage_means

METRICS = ("cmpsnr", "cm_lum_ssim", "cm_nmi", "nmi")
SCOPES = ("render", "private", "dummies", "dummies private")
from s2nerf_ns.evaluation import geometry as geo
from s2nerf_ns.integration import attack_pipeline, geometry_attacks

EVAL_ATTACKS = tuple(getattr(attack_pipeline, "COLOUR_ATTACKS", ("attack", "embedding_attack")))
"""The renders whose best defines the leakage, as the attack pipeline derives it (a record without one of
them, e.g. one written before the shading attack existed, is scored on those it has)."""
SOURCES = {  # rows (eval views or dummy images): (attacks, floors), whose best-of per metric are compared
    "eval": (EVAL_ATTACKS, ("floor_constant", "floor_surrogate")),
    "dummies": (("dummy_attack",), ("dummy_floor_constant", "dummy_floor_surrogate")),
}
SCOPE_SOURCE = {"render": ("eval", ""), "private": ("eval", "private_"), "dummies": ("dummies", ""),
                "dummies private": ("dummies", "private_")}
ROW_ID = {"eval": "view", "dummies": "image", "geometry": "view"}
"""The key naming a row's eval view or dummy image (rows of two records are paired on it)."""
Cell = Tuple[str, str]  # (scope, metric)


def columns(source: str) -> List[str]:
    """The raw score columns of a row of ``source`` (eval rows also carry the victim's ``psnr``)."""
    if source == "geometry":
        return geometry_columns()
    attacks, floors = SOURCES[source]
    cols = [f"{r}_{p}{m}" for r in attacks + floors for p in ("", "private_") for m in METRICS]
    return (["psnr"] if source == "eval" else []) + cols


def mean_row(record: dict, source: str) -> dict:
    """The record's means over its views (what every record has)."""
    if source in ("eval", "geometry"):
        return {**record["leakage"], "psnr": record["psnr"]}
    return record.get("dummies", {}).get("dummy_metrics", {})


def rows(record: dict, source: str) -> Tuple[List[dict], bool]:
    """The record's raw rows for ``source`` and whether they are per view (else: one row, the means)."""
    per_view = record.get("per_view") if source in ("eval", "geometry") else record.get("dummies", {}).get("per_image")
    return (list(per_view), True) if per_view else ([mean_row(record, source)], False)


def _matrix(table: Sequence[dict], cols: Sequence[str]) -> np.ndarray:
    def value(row: dict, c: str) -> float:
        v = row.get(c)
        return float("nan") if v is None else float(v)

    return np.array([[value(row, c) for c in cols] for row in table], dtype=float)


def paired(defended: dict, reference: dict, source: str) -> Tuple[np.ndarray, bool]:
    """``[V, 2K]``: the defended record's raw columns beside the undefended one's, rows paired by view (the
    same eval views or dummy images of the same room); the records' means when either has no per-view rows."""
    cols = columns(source)
    (d_rows, d_per), (r_rows, r_per) = rows(defended, source), rows(reference, source)
    if not (d_per and r_per):
        d_rows, r_rows, d_per = [mean_row(defended, source)], [mean_row(reference, source)], False
    elif all(ROW_ID[source] in r for r in d_rows + r_rows):
        key = ROW_ID[source]
        ref_by_view = {r[key]: r for r in r_rows}
        d_rows = [r for r in d_rows if r[key] in ref_by_view]
        r_rows = [ref_by_view[r[key]] for r in d_rows]
    elif len(d_rows) != len(r_rows):
        raise ValueError(f"{defended.get('run_dir')}: {len(d_rows)} {source} rows against {len(r_rows)} undefended")
    return np.concatenate([_matrix(d_rows, cols), _matrix(r_rows, cols)], axis=1), d_per


def _nanmax(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(x, axis=-1)


def _nanmean(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=-1)


def statistics(means: np.ndarray, source: str) -> Dict[str, np.ndarray]:
    """From per-seed means ``[..., S, 2K]``: per (scope, metric) of ``source``, the defended and undefended
    leakage (best attack minus best floor, averaged over seeds) and, for eval rows, the PSNR lost."""
    cols = columns(source)
    width = len(cols)
    index = {c: i for i, c in enumerate(cols)}
    attacks, floors = SOURCES[source]
    out: Dict[str, np.ndarray] = {}
    for side, offset in (("defended", 0), ("reference", width)):
        for scope, (src, prefix) in SCOPE_SOURCE.items():
            if src != source:
                continue
            for m in METRICS:
                best = _nanmax(np.stack([means[..., offset + index[f"{a}_{prefix}{m}"]] for a in attacks], -1))
                floor = _nanmax(np.stack([means[..., offset + index[f"{f}_{prefix}{m}"]] for f in floors], -1))
                out[f"{side}|{scope}|{m}"] = _nanmean(best - floor)
    if source == "eval":
        out["psnr_lost"] = _nanmean(means[..., width + index["psnr"]] - means[..., index["psnr"]])
    return out


def _interval(point: Dict[str, np.ndarray], reps: Optional[Dict[str, np.ndarray]], key: str) -> Interval:
    """``point[key]`` with its percentile interval over the replicates (NaN ends when nothing can be resampled)."""
    if reps is None:
        return Interval(float(point[key]), float("nan"), float("nan"))
    return percentile_interval(float(point[key]), reps[key])


def _sides(point: Dict[str, np.ndarray], reps: Optional[Dict[str, np.ndarray]], d_key: str, r_key: str
           ) -> Tuple[Interval, Interval, Interval]:
    """The defended leakage, the undefended one and their ratio (point and replicates divided alike), with intervals."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(point[d_key] / point[r_key])
        ratio_reps = None if reps is None else reps[d_key] / reps[r_key]
    return (_interval(point, reps, d_key), _interval(point, reps, r_key),
            Interval(ratio, float("nan"), float("nan")) if ratio_reps is None else percentile_interval(ratio, ratio_reps))


def cell(defended: Sequence[dict], reference: Sequence[dict]) -> dict:
    """One setting on one room: ``defended`` and ``reference`` are its records and the undefended victim's
    on the same seeds, in the same order. Returns the point values with intervals: ``psnr_lost``, and per
    (scope, metric) the defended ``leakage``, the undefended ``reference`` leakage and their ``ratio``;
    ``per_view`` says whether views were resampled (else seeds only)."""
    out: dict = {"seeds": [r["seed"] for r in defended], "leakage": {}, "reference": {}, "ratio": {}}
    per_view_all = True
    for source in SOURCES:
        pairs = [paired(d, r, source) for d, r in zip(defended, reference)]
        samples = [p[0] for p in pairs]
        per_view_all &= all(p[1] for p in pairs)
        point = statistics(seed_means(samples), source)
        can = resolvable(len(samples), [s.shape[0] for s in samples])
        reps = statistics(two_stage_means(samples), source) if can else None
        if source == "eval":
            out["psnr_lost"] = _interval(point, reps, "psnr_lost")
        for scope, (src, _) in SCOPE_SOURCE.items():
            if src != source:
                continue
            for m in METRICS:
                out["leakage"][(scope, m)], out["reference"][(scope, m)], out["ratio"][(scope, m)] = _sides(
                    point, reps, f"defended|{scope}|{m}", f"reference|{scope}|{m}")
    out.update(geometry_cell(defended, reference))
    out["per_view"] = per_view_all
    return out


# ------------------------------------------------------------------------------------------------------- geometry
GEOMETRY_METRICS = geo.METRICS
"""Depth abs-rel (lower is better) and the share of pixels within 10 % (higher is better)."""
GEOMETRY_SCOPES = ("render", "private", "vs_victim", "vs_victim private")
"""Whole view and private items against the reference depth (the ground truth where the room has it), then the
same against the client's own depth (what the server learns of the client's model, whatever the ground truth)."""
GEOMETRY_PREFIX = {"render": "", "private": "private_", "vs_victim": "vs_victim_", "vs_victim private": "vs_victim_private_"}
"""Scope -> the infix of its raw per-view columns (``geometry_<name>_<infix><metric>``)."""
GEOMETRY_SOURCES = (geometry_attacks.GEOMETRY_ATTACKS, geometry_attacks.GEOMETRY_FLOORS)
"""(attacks, floors) whose depth maps are scored per eval view (``geometry_<name>_[private_]<metric>``)."""


def geometry_columns() -> List[str]:
    """The raw geometry columns of an eval view: every attack's and floor's depth scores in every scope of
    :data:`GEOMETRY_SCOPES` (against the reference depth, and against the client's own, ``_vs_victim_``; whole view
    and private items). Records made before a column existed read NaN there (judged ``missing``)."""
    attacks, floors = GEOMETRY_SOURCES
    return [f"geometry_{r}_{p}{m}" for r in attacks + floors for p in GEOMETRY_PREFIX.values() for m in GEOMETRY_METRICS]


def _best(x: np.ndarray, metric: str) -> np.ndarray:
    """Per metric the best over the last axis (min abs-rel, max within10), NaN ignored."""
    return -_nanmax(-x) if metric in geo.LOWER_IS_BETTER else _nanmax(x)


def geometry_statistics(means: np.ndarray) -> Dict[str, np.ndarray]:
    """From per-seed means ``[..., S, 2K]`` of :func:`geometry_columns`: per side (defended, reference), scope and
    metric the geometry leakage (the best floor's error minus the best attack's, as
    :func:`s2nerf_ns.evaluation.geometry.geometry_leakage` derives it: positive = leaked) and, per metric, the best
    attack's score against the client's own depth, averaged over seeds."""
    cols = geometry_columns()
    width, index = len(cols), {c: i for i, c in enumerate(cols)}
    attacks, floors = GEOMETRY_SOURCES
    out: Dict[str, np.ndarray] = {}
    for side, offset in (("defended", 0), ("reference", width)):
        col = lambda name: means[..., offset + index[name]]  # noqa: E731
        for scope in GEOMETRY_SCOPES:
            prefix = GEOMETRY_PREFIX[scope]
            for m in GEOMETRY_METRICS:
                best = _best(np.stack([col(f"geometry_{a}_{prefix}{m}") for a in attacks], -1), m)
                floor = _best(np.stack([col(f"geometry_{f}_{prefix}{m}") for f in floors], -1), m)
                sign = -1.0 if m in geo.LOWER_IS_BETTER else 1.0
                out[f"{side}|{scope}|{m}"] = _nanmean(sign * (best - floor))
        for m in GEOMETRY_METRICS:
            out[f"{side}|vs_victim_best|{m}"] = _nanmean(_best(np.stack([col(f"geometry_{a}_vs_victim_{m}")
                                                                     for a in attacks], -1), m))
    return out


def geometry_cell(defended: Sequence[dict], reference: Sequence[dict]) -> dict:
    """The geometry part of :func:`cell`: ``geometry_leakage``, ``geometry_reference`` (splitnerf's) and
    ``geometry_ratio`` per (scope, metric), ``geometry_vs_victim`` per metric (``defended`` and ``reference``: the best
    attack's depth score against the client's own depth, no floor), and ``geometry_against`` (``ground_truth`` or
    ``victim``: what the leakage's depth was scored against). Intervals as the colour cells' (seeds and views)."""
    samples = [paired(d, r, "geometry")[0] for d, r in zip(defended, reference)]
    point = geometry_statistics(seed_means(samples))
    can = resolvable(len(samples), [s.shape[0] for s in samples])
    reps = geometry_statistics(two_stage_means(samples)) if can else None
    out: dict = {"geometry_leakage": {}, "geometry_reference": {}, "geometry_ratio": {}, "geometry_vs_victim": {}}
    for scope in GEOMETRY_SCOPES:
        for m in GEOMETRY_METRICS:
            sm = (scope, m)
            out["geometry_leakage"][sm], out["geometry_reference"][sm], out["geometry_ratio"][sm] = _sides(
                point, reps, f"defended|{scope}|{m}", f"reference|{scope}|{m}")
    for m in GEOMETRY_METRICS:
        out["geometry_vs_victim"][m] = {"defended": _interval(point, reps, f"defended|vs_victim_best|{m}"),
                                        "reference": _interval(point, reps, f"reference|vs_victim_best|{m}")}
    victim = [r["leakage"].get("geometry_reference_victim") for r in list(defended) + list(reference)]
    out["geometry_against"] = ("victim" if any(v == 1 for v in victim) else
                               "ground_truth" if any(v == 0 for v in victim) else "unknown")
    return out


def cells(records: Sequence[dict], adaptive: Optional[bool] = None) -> Dict[Tuple[str, str, float], dict]:
    """Every (room, family, value) with an undefended victim on at least one of its seeds: :func:`cell` over
    the seeds both have (splitnerf's own entry compares it with itself and is used for its leakage only)."""
    groups: Dict[Tuple[str, str, float], Dict[int, dict]] = {}
    for r in records:
        if adaptive is None or r["adaptive_attacker"] == adaptive:
            groups.setdefault((r["room"], r["family"], r["value"]), {})[r["seed"]] = r
    out = {}
    for (room, family, value), by_seed in groups.items():
        ref = groups.get((room, "splitnerf", 0.0), {})
        seeds = sorted(s for s in by_seed if s in ref)
        if seeds:
            out[(room, family, value)] = cell([by_seed[s] for s in seeds], [ref[s] for s in seeds])
    return out
