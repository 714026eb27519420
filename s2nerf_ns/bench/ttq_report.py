"""The README's time-to-quality block, generated from a committed ``ttq.json`` (``s2nerf-bench speed --ttq-only``).

Recomputed from the raw held-out curves (step, seconds, CPU seconds, PSNR every ``eval_every`` steps) and the
threshold, never from the stored ``reached``/``seconds``/``steps`` fields:
``python -m s2nerf_ns.bench.ttq_report docs/results/ttq_cpu/ttq.json README.md``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, Optional

from s2nerf_ns.bench.report import block_matches, replace_block

BEGIN, END = "<!-- results:ttq -->", "<!-- /results -->"


def load(path: Path) -> Dict:
    """The committed record; a missing file is an error (the README's numbers need it)."""
    return json.loads(Path(path).read_text())


def first_reaching(curve, threshold: float) -> Optional[Dict]:
    """The first held-out evaluation at or above ``threshold`` dB, or None."""
    return next((point for point in curve if point["psnr"] >= threshold), None)


def row(name: str, curve, threshold: float, reference: Optional[Dict]) -> str:
    hit = first_reaching(curve, threshold)
    last = curve[-1]
    if hit is None:
        return (f"| {name} | not within {last['step']:,} steps | > {last['seconds']:.1f} | "
                f"> {last['cpu_seconds']:.1f} | - | {last['psnr']:.2f} |")
    ratio = f"{hit['cpu_seconds'] / reference['cpu_seconds']:.2f}" if reference else "-"
    return (f"| {name} | {hit['step']:,} | {hit['seconds']:.1f} | {hit['cpu_seconds']:.1f} | {ratio} | "
            f"{last['psnr']:.2f} |")


def markdown(record: Dict) -> str:
    threshold = float(record["threshold_psnr"])
    runs = record["time_to_quality"]
    prov, env, load_avg = record["provenance"], record["environment"], record["load_average_1min"]
    reference = first_reaching(runs["nerfacto"]["curve"], threshold) if "nerfacto" in runs else None
    dirty = " (dirty tree, --allow-dirty)" if prov.get("git_dirty") else ""
    lines = [
        f"Time to {threshold:g} dB held-out PSNR on office at {record['resolution']} px, {record['rays_per_step']:,} "
        f"rays per step, model {record['model']} (preset `{record['preset']}`, at most {record['max_steps']:,} "
        f"steps, held-out PSNR every {record['eval_every']} steps, evaluation not timed); {env['device']}, "
        f"{env['cpu_count']} cores; commit {str(prov['git_commit'])[:7]}{dirty}; one run per method. "
        f"Load average (1 min) {load_avg['before']:.1f} before, {load_avg['after']:.1f} after: wall and CPU seconds "
        f"(this process, all threads) both carry the machine's load, the steps (the first held-out check at or "
        f"above the threshold) do not.",
        "",
        "| method | steps to reach | wall seconds | CPU seconds | CPU time vs nerfacto | last held-out PSNR (dB) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [row(name, run["curve"], threshold, reference) for name, run in runs.items()]
    return "\n".join(lines) + "\n"


def block(record: Dict) -> str:
    return f"{BEGIN}\n{markdown(record)}{END}"


def readme_matches(readme: Path, path: Path) -> bool:
    return block_matches(readme, BEGIN, END, block(load(path)))


def main() -> None:
    path, readme = Path(sys.argv[1]), Path(sys.argv[2])
    changed = replace_block(readme, BEGIN, END, block(load(path)))
    print(f"{readme}: time-to-quality block {'updated' if changed else 'unchanged'}")


if __name__ == "__main__":
    main()
