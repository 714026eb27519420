"""``frontier.png``: the frontier's figure, recomputed from the records' raw scores like its tables.

x = victim PSNR lost against the undefended victim of the same room and seeds, y = one leakage over the floor
(default: the render's cm lum-SSIM), both from :func:`s2nerf_ns.bench.frontier_cells.cells` (raw per-view scores,
never the stored ``leakage_*`` / ``psnr_lost`` fields). Each room's cell is drawn faint with its bootstrap
interval; each setting's mean over its rooms bold; the Pareto front of those means dashed; labelled settings
(the paper's point, the authors' README example) annotated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from s2nerf_ns.bench.frontier_cells import METRICS, cells

Point = Tuple[str, float]
DEFAULT_AXIS = ("render", "cm_lum_ssim")
AXIS_PREFIXES = (("dummy_leakage_private_", "dummies private"), ("dummy_leakage_", "dummies"),
                 ("leakage_private_", "private"), ("leakage_", "render"))
"""A leakage key as the runs name it -> the scope of the recomputed cell (longest prefix first)."""


def axis(key: Optional[str]) -> Tuple[Tuple[str, str], Optional[str]]:
    """The (scope, metric) a leakage key names, and a note when it names none that can be recomputed from raw
    scores (the default axis is used then)."""
    if key:
        for prefix, scope in AXIS_PREFIXES:
            if key.startswith(prefix) and key[len(prefix):] in METRICS:
                return (scope, key[len(prefix):]), None
        return DEFAULT_AXIS, f"{key} is not a leakage recomputable from raw scores"
    return DEFAULT_AXIS, None


def pareto(xs: Sequence[float], ys: Sequence[float]) -> List[int]:
    """Indices of the points no other point beats in both PSNR lost (x) and leakage (y), lower being better."""
    front = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        if not any((x2 <= x and y2 <= y) and (x2 < x or y2 < y) for x2, y2 in zip(xs, ys)):
            front.append(i)
    return sorted(front, key=lambda i: xs[i])


def setting_points(records: Sequence[dict], sm: Tuple[str, str] = DEFAULT_AXIS) -> Dict[Point, dict]:
    """Per setting: its rooms' cells (x and y with their intervals) and the mean over rooms of the point values
    (rooms whose value is not finite are left out of the mean)."""
    out: Dict[Point, dict] = {}
    for (room, family, value), c in sorted(cells(records).items()):
        entry = out.setdefault((family, value), {"rooms": {}, "seeds": set()})
        entry["rooms"][room] = (c["psnr_lost"], c["leakage"][sm])
        entry["seeds"].add(len(c["seeds"]))
    for entry in out.values():
        pairs = [(x.point, y.point) for x, y in entry["rooms"].values() if math.isfinite(x.point) and
                 math.isfinite(y.point)]
        entry["x"], entry["y"] = (tuple(float(np.mean(v)) for v in zip(*pairs)) if pairs else (math.nan, math.nan))
    return out


def _err(interval) -> List[List[float]]:
    if not interval.resolved:
        return [[0.0], [0.0]]
    return [[max(interval.point - interval.low, 0.0)], [max(interval.high - interval.point, 0.0)]]


def plot(results: dict, path: Path, requested_key: Optional[str] = None, labels: Mapping[Point, str] = {}) -> None:
    """Write the figure of ``results`` (a frontier.json) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sm, note = axis(requested_key)
    points = setting_points(results["records"], sm)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colours = {f: f"C{i % 10}" for i, f in enumerate(dict.fromkeys(f for f, _ in points))}
    for (family, value), entry in points.items():
        for x, y in entry["rooms"].values():
            if math.isfinite(x.point) and math.isfinite(y.point):
                ax.errorbar([x.point], [y.point], xerr=_err(x), yerr=_err(y), fmt=".", ms=4, alpha=0.3, lw=0.6,
                            color=colours[family])
    for family, colour in colours.items():
        mine = sorted((v, e) for (f, v), e in points.items() if f == family and math.isfinite(e["x"]))
        ax.plot([e["x"] for _, e in mine], [e["y"] for _, e in mine], "o", color=colour, ms=5, label=family)
        for v, e in mine:
            if family != "splitnerf":
                ax.annotate(f"{v:g}", (e["x"], e["y"]), fontsize=7, xytext=(4, 3), textcoords="offset points",
                            color=colour)
    means = [(p, e) for p, e in points.items() if math.isfinite(e["x"]) and math.isfinite(e["y"])]
    front = pareto([e["x"] for _, e in means], [e["y"] for _, e in means])
    if front:
        ax.plot([means[i][1]["x"] for i in front], [means[i][1]["y"] for i in front], "k--", lw=1,
                label="Pareto front (means over rooms)")
    for point, text in labels.items():
        if point in points and math.isfinite(points[point]["x"]):
            ax.annotate(text, (points[point]["x"], points[point]["y"]), fontsize=8, xytext=(8, 10),
                        textcoords="offset points", arrowprops=dict(arrowstyle="-", lw=0.6))
    ax.set_ylabel(f"leakage over the floor, {sm[0]} {sm[1]} (recomputed from raw scores)"
                  + (f"\n({note})" if note else ""), fontsize=8)
    ax.set_xlabel("victim PSNR lost vs splitnerf (dB): each room's cell faint with its 95 % interval, "
                  "the mean over rooms bold", fontsize=8)
    ax.axhline(0.0, color="gray", lw=0.8, ls=":")
    if colours:
        ax.legend(fontsize=7)
    rooms = sorted({r["room"] for r in results["records"]})
    seeds = sorted({n for e in points.values() for n in e["seeds"]})
    seed_text = "-".join(map(str, (seeds[0], seeds[-1]) if len(seeds) > 1 else seeds)) or "0"
    defended = sum(f != "splitnerf" for f, _ in points)
    ax.set_title(f"Defense frontier, preset {results.get('preset')}: {', '.join(rooms)}; {defended} defended "
                 f"settings, {seed_text} seeds each", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
