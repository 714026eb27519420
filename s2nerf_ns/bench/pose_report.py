"""Issue 14's verdict: the scene-aided attack with the global pose search against the same attack told the pose.

Inputs are two privacy-benchmark results (``s2nerf-bench privacy --pose estimate --pose-search global`` and
``--pose known``, same rooms, defenses, seeds and leaked photos), each possibly merged from one folder per
worker (:func:`merge`). Reported per room: every leaked photo's rotation / translation error, their
medians, and the SSMA attacker's leakage gain over the control (its SMA phase on the same victim, before any
photo leaked)
with the estimated pose as a share of the same with the known pose. The goal: median error <= 3 degrees and
<= 0.05 scene units, and share >= 90 %.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from s2nerf_ns.bench.report import block_matches, replace_block

MAX_ROTATION_DEG = 3.0
MAX_TRANSLATION = 0.05
MIN_SHARE = 0.90
GAIN_METRICS = ("attack_leakage_cmpsnr", "attack_leakage_cm_lum_ssim")
"""The SSMA attacker's own margin over the floor (the best-attack leakage would mostly show the embedding
attack, which does not use the leaked photos)."""
BEGIN, END = "<!-- results:pose -->", "<!-- /results -->"


def merge(sources: Sequence[Path]) -> dict:
    """Union of the cells of several ``results.json`` of one kind (same preset, pose, search, leaked count)."""
    merged: dict = {"cells": {}, "sources": []}
    for source in sources:
        part = json.loads(Path(source).read_text())
        for key in ("preset", "pose", "pose_search", "num_leaked", "preset_values"):
            if merged.get(key) not in (None, part.get(key)):
                raise SystemExit(f"{source}: {key} {part.get(key)!r} differs from the others' {merged[key]!r}")
            merged[key] = part.get(key)
        merged["sources"].append({"path": str(source), "provenance": part.get("provenance"),
                                  "command": part.get("command"), "environment": part.get("environment")})
        merged["cells"].update(part["cells"])
    return merged


def gain(cell: dict, metric: str) -> Optional[float]:
    """SSMA leakage minus the SMA-phase leakage of the same victim (what the leaked photos added)."""
    ssma, sma = cell.get("ssma", {}).get(metric), cell.get("sma", {}).get(metric)
    return None if ssma is None or sma is None else float(ssma) - float(sma)


def rows(estimate: dict, known: dict) -> List[dict]:
    """One row per (room, defense, seed) present in both."""
    out = []
    for key, cell in sorted(estimate["cells"].items()):
        twin = known["cells"].get(key)
        errors = [e for e in cell.get("leaked_pose_errors") or [] if e]
        row = {"key": key, "room": cell["room"], "defense": cell["defense"], "seed": cell["seed"],
               "rotation_deg": [e["rotation_error_deg"] for e in errors],
               "translation": [e["translation_error"] for e in errors],
               "leaked_indices": cell.get("leaked_indices")}
        for metric in GAIN_METRICS:
            row[f"estimate_{metric}"] = cell.get("ssma", {}).get(metric)
            row[f"estimate_gain_{metric}"] = gain(cell, metric)
            row[f"known_{metric}"] = None if twin is None else twin.get("ssma", {}).get(metric)
            row[f"known_gain_{metric}"] = None if twin is None else gain(twin, metric)
        out.append(row)
    return out


def _share(est: Optional[float], known: Optional[float]) -> Optional[float]:
    if est is None or known is None or known <= 0:
        return None
    return est / known


def _f(value: Optional[float], digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def markdown(estimate: dict, known: dict) -> str:
    table = rows(estimate, known)
    lines = [f"Preset `{estimate.get('preset')}`, {estimate.get('num_leaked')} leaked off-trajectory photos per run, "
             "pose search `global`. Errors: every leaked photo; gain: the SSMA attacker's margin over the floor minus "
             "its SMA-phase margin on the same victim (scene colour map); share: estimated-pose gain / known-pose "
             "gain.", "",
             "| room | defense | seed | rotation error (deg) | translation error | gain cmPSNR est / known (dB) | "
             "share | gain cm lum-SSIM est / known | share |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        shares = [_share(r[f"estimate_gain_{m}"], r[f"known_gain_{m}"]) for m in GAIN_METRICS]
        lines.append(f"| {r['room']} | {r['defense']} | {r['seed']} | {', '.join(_f(v, 1) for v in r['rotation_deg'])} | "
                     f"{', '.join(_f(v, 3) for v in r['translation'])} | {_f(r['estimate_gain_attack_leakage_cmpsnr'])} / "
                     f"{_f(r['known_gain_attack_leakage_cmpsnr'])} | {_f(shares[0])} | "
                     f"{_f(r['estimate_gain_attack_leakage_cm_lum_ssim'], 3)} / {_f(r['known_gain_attack_leakage_cm_lum_ssim'], 3)} | "
                     f"{_f(shares[1])} |")
    lines += ["", "| room | photos | median rotation (deg) | median translation | median share cmPSNR | "
              "median share cm lum-SSIM | goal |", "|---|---|---|---|---|---|---|"]
    for room in sorted({r["room"] for r in table}):
        sub = [r for r in table if r["room"] == room]
        rot = [v for r in sub for v in r["rotation_deg"]]
        tra = [v for r in sub for v in r["translation"]]
        shares = {m: [s for s in (_share(r[f"estimate_gain_{m}"], r[f"known_gain_{m}"]) for r in sub) if s is not None]
                  for m in GAIN_METRICS}
        med = lambda v: float(np.median(v)) if v else None  # noqa: E731
        ok = (med(rot) is not None and med(rot) <= MAX_ROTATION_DEG and med(tra) <= MAX_TRANSLATION
              and all(med(s) is not None and med(s) >= MIN_SHARE for s in shares.values()))
        lines.append(f"| {room} | {len(rot)} | {_f(med(rot), 1)} | {_f(med(tra), 3)} | "
                     f"{_f(med(shares[GAIN_METRICS[0]]))} | {_f(med(shares[GAIN_METRICS[1]]))} | "
                     f"{'**yes**' if ok else 'no'} |")
    lines += ["", f"Goal per room: median rotation <= {MAX_ROTATION_DEG:g} deg and translation <= "
              f"{MAX_TRANSLATION:g} units, and the estimated-pose gain >= {MIN_SHARE:.0%} of the known-pose gain "
              "(a share is n/a where the known pose added nothing)."]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, estimate: dict, known: dict) -> bool:
    return replace_block(readme, BEGIN, END, f"{BEGIN}\n{markdown(estimate, known)}{END}")


def readme_matches(readme: Path, estimate: dict, known: dict) -> bool:
    return block_matches(readme, BEGIN, END, f"{BEGIN}\n{markdown(estimate, known)}{END}")
