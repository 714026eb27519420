"""Privacy benchmark statistics: per room and defense, mean, sample standard deviation, min, max and n over seeds of
every scalar score of the cells in a ``results.json``, the derived scores recomputed from each render's raw ones
(used by the benchmark when it writes its results and by ``s2nerf-bench report`` when it renders the tables)."""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from s2nerf_ns.evaluation.run_scores import derived_leakage


def summarise(results: dict) -> Dict[str, dict]:
    """Per room/defense: mean, sample standard deviation, min, max and n over seeds of every scalar score."""
    groups: Dict[str, List[dict]] = {}
    for stored in results["cells"].values():
        # the derived scores (floor, leakage, per-attack margins, gradient share) are recomputed from each
        # render's raw scores, never read: a table cannot disagree with the raw scores it is made from
        cell = dict(stored)
        for part, attacks in (("sma", ("attack", "embedding_attack")), ("ssma", ("attack", "embedding_attack"))):
            if cell.get(part):
                cell[part] = {**cell[part], **derived_leakage(cell[part], attacks)}
        if cell.get("dummies"):
            cell["dummies"] = {**cell["dummies"], **derived_leakage(cell["dummies"], ("attack",), out_prefix="dummy_")}
        groups.setdefault(f"{cell['room']}/{cell['defense']}", []).append(cell)
    out: Dict[str, dict] = {}
    for key, cells in groups.items():
        entry: Dict[str, object] = {"room": cells[0]["room"], "defense": cells[0]["defense"],
                                    "seeds": sorted(c["seed"] for c in cells)}
        for part in ("victim", "sma", "ssma", "dummies"):
            stats = {}
            for metric in sorted({m for c in cells for m in c.get(part, {})}):
                vals = [float(c[part][metric]) for c in cells if metric in c.get(part, {})]
                vals = [v for v in vals if np.isfinite(v)]
                if not vals:
                    continue
                stats[metric] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1
                                 else 0.0, "min": float(min(vals)), "max": float(max(vals)), "n": len(vals)}
            entry[part] = stats
        out[key] = entry
    return out
