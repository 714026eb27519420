"""The judging preset's undefended victims (issue 23): splitnerf trained and attacked at ``--preset judge`` exactly as
a frontier point is (``s2nerf_ns.bench.frontier.run_point``, every attack on, the learned inversion included), one
run at a time, seeds outer and rooms inner. What it measures: the wall time of one judging frontier point on this
machine (hence the hours of the whole frontier) and, from splitnerf's own leakage with its intervals, the share of
the verdict's cells the instrument resolves at this size (``s2nerf_ns.bench.judge_report.resolved_cells``).

From the repository root of a clean checkout:
    OMP_NUM_THREADS=2 python scripts/judge_baseline.py --out FOLDER [--rooms ...] [--seeds ...]
Writes FOLDER/frontier.json (resumable); ``python -m s2nerf_ns.bench.judge_report FOLDER`` writes FOLDER/resolved.md.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from s2nerf_ns.bench import frontier
from s2nerf_ns.bench.common import PRESETS, checked_provenance, environment, synced_clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="results folder (frontier.json is resumed from it)")
    parser.add_argument("--rooms", nargs="+", default=["office", "bedroom", "livingroom"], help="built-in rooms")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43], help="training seeds")
    parser.add_argument("--allow-dirty", action="store_true", help="write results from an uncommitted tree")
    args = parser.parse_args()
    provenance = checked_provenance(allow_dirty=args.allow_dirty)  # refused before anything is written
    preset = PRESETS["judge"]
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    path = args.out / "frontier.json"
    results = json.loads(path.read_text()) if path.exists() else {"records": []}
    command = "OMP_NUM_THREADS=2 python " + " ".join(sys.argv)
    earlier = results.get("commands", [results["command"]] if "command" in results else [])
    results.update(preset="judge", preset_values=preset.__dict__, environment=environment(), provenance=provenance,
                   command=command, commands=earlier + [command])  # every invocation that added records
    done = {(r["room"], r["seed"]) for r in results["records"]}
    for seed in args.seeds:
        for room in args.rooms:
            if (room, seed) in done:
                continue
            print(f"judge: {room} seed {seed}", flush=True)
            start = synced_clock()
            record = frontier.run_point(room, None, 0.0, preset, args.out / "runs", seed, False)
            record.update(provenance=provenance, wall_seconds=synced_clock() - start)
            results["records"].append(record)
            path.write_text(json.dumps(results, indent=2))
            print(f"judge: {record['wall_seconds']:.0f} s, psnr {record['psnr']:.2f}", flush=True)


if __name__ == "__main__":
    main()
