"""The audit's numbers and page: bootstrap intervals of every leakage value over eval views, a one-sentence
verdict, and ``report.html`` (one self-contained file: images inlined as PNG data URIs)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from s2nerf_ns.evaluation.confidence import LEVEL, Interval, percentile_interval, seed_means, two_stage_means

HEADLINE = ("leakage_cmpsnr", "leakage_cm_lum_ssim", "leakage_cm_nmi", "leakage_nmi", "leakage_private_cmpsnr",
            "leakage_private_cm_lum_ssim", "leakage_private_cm_nmi", "geometry_leakage_absrel",
            "geometry_leakage_within10", "geometry_leakage_private_absrel", "geometry_leakage_private_within10")
"""The leakage values the verdict and the table lead with (present ones only; more are in audit.json)."""
MIN_VIEWS = 5
"""Fewer eval views than this give no interval: a bootstrap over two or three views only restates them."""


def leakage_intervals(rows: Sequence[Dict[str, float]], derive: Callable[[Dict[str, float]], Dict[str, float]],
                      replicates: int = 2000) -> Dict[str, Dict[str, float]]:
    """Percentile bootstrap over eval views of every ``leakage_*`` and ``geometry_leakage_*`` value: ``derive``
    (best attack minus floor) is applied to the means of each resampled set of views, as to the means of all."""
    keys = sorted({k for r in rows for k in r})
    if not keys:
        return {}
    table = np.array([[float(r.get(k, np.nan)) for k in keys] for r in rows])
    replicate_means = two_stage_means([table], replicates)[:, 0]  # [B, K]
    point = derive(_means(keys, seed_means([table])[0]))
    out: Dict[str, Dict[str, float]] = {}
    samples: Dict[str, List[float]] = {k: [] for k in point if k.startswith(("leakage_", "geometry_leakage_"))}
    for means in replicate_means:
        derived = derive(_means(keys, means))
        for key in samples:
            samples[key].append(derived.get(key, np.nan))
    for key, values in samples.items():
        interval = percentile_interval(point[key], np.array(values if len(rows) >= MIN_VIEWS else []))
        if not np.isfinite(interval.point):
            continue
        out[key] = {"value": interval.point, "low": _finite(interval.low), "high": _finite(interval.high),
                    "level": LEVEL}
    return out


def _means(keys: Sequence[str], values: np.ndarray) -> Dict[str, float]:
    return {k: float(v) for k, v in zip(keys, values) if np.isfinite(v)}


def _finite(x: float) -> Optional[float]:
    return float(x) if np.isfinite(x) else None


def verdict(metrics: Dict[str, float], intervals: Dict[str, Dict[str, float]]) -> str:
    """One sentence: which leakage values are resolved above the floor (their interval's low end > 0)."""
    shown = [k for k in HEADLINE if k in intervals] or sorted(intervals)
    above = [k for k in shown if intervals[k]["low"] is not None and intervals[k]["low"] > 0.0]
    resolved_zero = [k for k in shown if intervals[k]["high"] is not None and intervals[k]["high"] <= 0.0]
    if not shown:
        return "No leakage value could be computed."
    if all(intervals[k]["low"] is None for k in shown):
        values = ", ".join(f"{k} {intervals[k]['value']:+.3f}" for k in shown)
        return (f"Not resolved: too few eval views for an interval (fewer than {MIN_VIEWS}); point values {values}.")
    if above:
        parts = ", ".join(f"{k} {_interval_text(intervals[k])}" for k in above)
        return (f"The server recovers more of this scene than a floor that knows nothing of it: {parts} "
                f"({len(above)} of {len(shown)} headline values resolved above 0 at {LEVEL:.0%}).")
    return (f"No headline leakage value is resolved above the floor ({len(resolved_zero)} of {len(shown)} resolved at "
            f"or below 0, the rest within noise at {LEVEL:.0%}).")


def _interval_text(entry: Dict[str, float]) -> str:
    return Interval(entry["value"], entry["low"] if entry["low"] is not None else np.nan,
                    entry["high"] if entry["high"] is not None else np.nan).text(3, signed=True)


def _png(image: torch.Tensor) -> str:
    array = (image.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def write_report(result: Dict[str, object], rows: List[Dict], path: Path) -> None:
    """``report.html``: verdict, leakage table with intervals, attacks run, provenance, every view side by side
    (``rows``: each view's ``panels``, a list of (label, [H, W, 3] image))."""
    esc = html.escape
    intervals: Dict[str, Dict[str, float]] = result["intervals"]  # type: ignore[assignment]
    table = "".join(f"<tr><td>{esc(k)}</td><td>{esc(_interval_text(v))}</td></tr>"
                    for k, v in sorted(intervals.items(), key=lambda kv: (kv[0] not in HEADLINE, kv[0])))
    attacks = "".join(f"<li><b>{esc(k)}</b>: {esc(str(v))}</li>" for k, v in dict(result["attacks"]).items())
    prov = dict(result["provenance"])  # type: ignore[arg-type]
    views = []
    for i, row in enumerate(rows):
        cells = "".join(f"<figure><img src='{_png(im)}'><figcaption>{esc(label)}</figcaption></figure>"
                        for label, im in row["panels"])
        views.append(f"<h3>eval view {i}</h3><div class='row'>{cells}</div>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>s2nerf-audit: {esc(str(result['run']))}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}} .row{{display:flex;flex-wrap:wrap;gap:.5em}}
figure{{margin:0}} img{{width:12em;image-rendering:pixelated;display:block}} figcaption{{font-size:.8em}}
.verdict{{font-size:1.2em;background:#f4f4f4;padding:.6em}}</style></head><body>
<h1>What could the server learn from this run?</h1>
<p class="verdict">{esc(str(result['verdict']))}</p>
<h2>Leakage over the floor ({LEVEL:.0%} bootstrap intervals over {result['eval_views']} eval views)</h2>
<table><tr><th>value (best attack minus floor; higher = more leaked)</th><th>estimate [interval]</th></tr>{table}</table>
<h2>Attacks run</h2><ul>{attacks}</ul>
<h2>Eval views</h2>{''.join(views)}
<h2>Provenance</h2><p>run {esc(str(result['run']))}; checkpoint step {result['checkpoint_step']};
commit {esc(str(prov.get('commit')))}{' (dirty tree)' if prov.get('dirty_tree') else ''}; {esc(str(prov.get('time')))}</p>
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
