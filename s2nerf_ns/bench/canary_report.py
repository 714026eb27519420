"""The README's canary-audit block, generated from the committed audit records (docs/results/canary_audit/*.json,
written by scripts/canary_audit.py). Recomputed from the raw confusion counts and the run's settings, never from
the stored epsilons: ``python -m s2nerf_ns.bench.canary_report docs/results/canary_audit README.md``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List

from s2nerf_ns.bench.report import block_matches, replace_block
from s2nerf_ns.defenses.residual import PIXEL_L2_SENSITIVITY, per_pixel_privacy
from s2nerf_ns.evaluation.canary import epsilon_lower_bound

BEGIN, END = "<!-- results:canary -->", "<!-- /results -->"


def load(folder: Path) -> List[Dict]:
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{folder}: no canary audit records")
    return sorted((json.loads(f.read_text()) for f in files), key=lambda r: r["config"]["std"])


def row(record: Dict) -> str:
    cfg, audit = record["config"], record["audit"]
    tp, fn, fp, tn = (int(audit[k]) for k in ("tp", "fn", "fp", "tn"))
    lower = epsilon_lower_bound(tp, fn, fp, tn, audit["delta"], audit["confidence"])
    accountant = per_pixel_privacy(cfg["std"] / PIXEL_L2_SENSITIVITY, cfg["rays"], cfg["pixels"], cfg["steps"],
                                   audit["delta"])
    accuracy = (tp + tn) / max(tp + fn + fp + tn, 1)
    return (f"| {cfg['std']:g} | {cfg['pixels']:,} px, {cfg['rays']:,} rays x {cfg['steps']:,} steps | "
            f"{tp + fn + fp + tn:,} of {audit['canaries']:,} | {audit['median_releases']:g} "
            f"(bound {accountant['releases_bound']}) | {accuracy:.3f} | {lower:.2f} | {accountant['epsilon']:.2f} |")


def markdown(records: List[Dict]) -> str:
    commits = sorted({r["commit"][:7] + (" (dirty tree)" if r.get("dirty_tree") else "") for r in records})
    seeds = sorted({r["config"]["seed"] for r in records})
    lines = [
        f"Canary audit, residual noise (per-pixel unit, delta = {records[0]['audit']['delta']:g}, "
        f"{records[0]['audit']['confidence']:.0%} Clopper-Pearson); commit {', '.join(commits)}; seed "
        f"{', '.join(map(str, seeds))}; one run per setting (scripts/canary_audit.py).",
        "",
        "| s | training set, schedule | canaries observed | releases per canary, median (accountant's bound) "
        "| distinguisher accuracy | epsilon lower bound (audit) | epsilon (accountant) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [row(r) for r in records]
    return "\n".join(lines) + "\n"


def block(records: List[Dict]) -> str:
    return f"{BEGIN}\n{markdown(records)}{END}"


def readme_matches(readme: Path, folder: Path) -> bool:
    return block_matches(readme, BEGIN, END, block(load(folder)))


def main() -> None:
    folder, readme = Path(sys.argv[1]), Path(sys.argv[2])
    changed = replace_block(readme, BEGIN, END, block(load(folder)))
    print(f"{readme}: canary block {'updated' if changed else 'unchanged'}")


if __name__ == "__main__":
    main()
