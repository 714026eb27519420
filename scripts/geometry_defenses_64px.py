"""Geometry defenses at 64 px on office, one seed (issue 22 item 4): cost and geometry leakage of splitnerf,
s2nerf-plus (client appearance), density-noise and client-geometry, each trained with the SMA pipeline exactly as a
frontier point is (``s2nerf_ns.bench.frontier.run_point``): the cpu frontier preset's model at 64 px, 150 steps of 256
rays (a quarter of its rays x steps: the full schedule ran at ~12 s per step on the shared CPU), no learned inversion.

From the repository root:  OMP_NUM_THREADS=2 python scripts/geometry_defenses_64px.py [--out FOLDER] [family=value ...]
Writes frontier.json (the records, resumable) and summary.json (the cells: colour and geometry leakage with intervals).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from s2nerf_ns.bench import frontier, frontier_cells
from s2nerf_ns.bench.common import Preset, checked_provenance, environment

PRESET = Preset(64, 16, 64, 150, 256, 32, 8, 256, 16, 0, 50)  # the cpu preset's model, 64 px, a quarter of its rays x steps
POINTS = [("client-appearance", 0.0), ("density-noise", 1.0), ("client-geometry", 32), (None, 0.0)]
method_config = frontier.method_config


def without_inversion(name: str):
    """The SMA pipeline without the learned inversion (a colour attack; it renders the public rooms and trains for up
    to 120 s per run: it does not fit the shared 2-core CPU here). The geometry attacks and floors are all kept."""
    config = method_config(name)
    config.pipeline.inversion = False
    return config


def row(cell: dict) -> dict:
    text = lambda iv: [iv.point, iv.low, iv.high]  # noqa: E731
    return {"psnr_lost": text(cell["psnr_lost"]),
            "colour_leakage": {f"{s}|{m}": text(iv) for (s, m), iv in cell["leakage"].items()},
            "colour_ratio": {f"{s}|{m}": text(iv) for (s, m), iv in cell["ratio"].items()},
            "geometry_leakage": {f"{s}|{m}": text(iv) for (s, m), iv in cell["geometry_leakage"].items()},
            "geometry_ratio": {f"{s}|{m}": text(iv) for (s, m), iv in cell["geometry_ratio"].items()},
            "geometry_vs_victim": {m: {k: text(iv) for k, iv in v.items()} for m, v in cell["geometry_vs_victim"].items()},
            "geometry_against": cell["geometry_against"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/results/geometry_defenses_64"),
                        help="results folder (frontier.json is resumed from it)")
    parser.add_argument("points", nargs="*", help="extra family=value points")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    frontier.method_config = without_inversion
    points = POINTS + [tuple(p.split("=")) for p in args.points]  # extra family=value points

    torch.set_num_threads(2)
    path = out / "frontier.json"
    results = json.loads(path.read_text()) if path.exists() else {"records": []}
    results.update(preset="geometry64", preset_values=PRESET.__dict__, environment=environment(),
                   provenance=checked_provenance(allow_dirty=True), command="OMP_NUM_THREADS=2 python " + " ".join(sys.argv))
    done = {(r["family"], r["value"]) for r in results["records"]}
    for family, value in points:
        value = float(value)
        if (family or "splitnerf", value) in done:
            continue
        print(f"geometry64: {family or 'splitnerf'} = {value:g}", flush=True)
        start = time.perf_counter()
        record = frontier.run_point("office", family, value, PRESET, out / "runs", 42, False)
        record["provenance"] = results["provenance"]
        record["wall_seconds"] = time.perf_counter() - start
        results["records"].append(record)
        path.write_text(json.dumps(results, indent=2))
    results["records"] = frontier.with_loss(results)
    path.write_text(json.dumps(results, indent=2))
    cells = frontier_cells.cells(results["records"])
    summary = {f"{family} {value:g}": row(cell) for (room, family, value), cell in sorted(cells.items())}
    for r in results["records"]:
        summary[f"{r['family']} {r['value']:g}"].update(
            psnr=r["psnr"], epsilon=r["epsilon"], wall_seconds=r.get("wall_seconds"),
            readout={k: r["leakage"].get(f"geometry_readout_{k}") for k in ("direction_cos", "scale_ratio", "confidence")},
            stored={k: r["leakage"].get(k) for k in ("geometry_leakage_absrel", "geometry_leakage_within10",
                                                     "geometry_readout_vs_victim_absrel", "geometry_readout_vs_victim_within10",
                                                     "geometry_surrogate_vs_victim_absrel", "geometry_surrogate_vs_victim_within10",
                                                     "geometry_victim_absrel", "geometry_victim_within10",
                                                     "geometry_floor_absrel", "geometry_floor_within10",
                                                     "leakage_cmpsnr", "leakage_cm_lum_ssim", "leakage_nmi")})
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: (v["psnr"], v["stored"]) for k, v in summary.items()}, indent=1))


if __name__ == "__main__":
    main()
