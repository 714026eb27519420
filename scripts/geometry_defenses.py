"""Geometry defenses on every built-in room (issue 22 item 4): cost, colour leakage and geometry leakage of splitnerf,
s2nerf-plus (client appearance), density-noise, client-geometry and client-density-layers, each trained with the SMA
pipeline exactly as a frontier point is (``s2nerf_ns.bench.frontier.run_point``), seeds outer, rooms inner (a partial
run still covers every room). The learned inversion is off (it trains on the public rooms for up to 120 s per run);
``--pictures`` adds one run with it on and its eval images saved, for the README's pictures.

From the repository root of a clean checkout:
    OMP_NUM_THREADS=2 python scripts/geometry_defenses.py --out FOLDER [--seeds 42 43] [--rooms ...]
Writes FOLDER/frontier.json (the records with their per-view raw scores; resumable). The tables and the verdict are
generated from it by ``python -m s2nerf_ns.bench.geometry_report FOLDER``.
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from s2nerf_ns.bench import frontier, geometry_report
from s2nerf_ns.bench.common import PRESETS, checked_provenance, environment, synced_clock

POINTS = geometry_report.POINTS


def compose(out: Path, room: str, seed: int, view: int) -> None:
    """One picture: per setting (POINTS' order) its eval view's geometry panel (ground-truth depth | the server's
    read-out | the server surrogate's depth) and the client's own depth (nerfstudio's colour map), then the pictures
    run's attack panel (every render, inversion too), each scaled by 2 (nearest) and left-aligned on black."""
    import numpy as np
    from PIL import Image

    folders = [out / "runs" / room / "splitnerf-sma" / f"{family or 'splitnerf'}_{value:g}_seed{seed}" / "eval_images"
               for family, value in POINTS]
    groups = [[f / f"eval_geometry_{view:04d}.png", f / f"eval_depth_{view:04d}.png"] for f in folders]
    inversion = sorted((out / "pictures_run").glob(f"{room}/splitnerf-sma/*_seed{seed}/eval_images/"
                                                   f"eval_attack_{view:04d}.png"))
    if len(inversion) > 1:
        raise SystemExit(f"--compose: {len(inversion)} pictures runs on {room}, seed {seed}: keep one")
    groups += [inversion] if inversion else []
    missing = [str(f) for g in groups for f in g if not f.is_file()]
    if missing:
        raise SystemExit(f"--compose: missing {', '.join(missing)} (run the points, and --pictures {room}, first)")
    rows = [np.concatenate([np.asarray(Image.open(f).convert("RGB")) for f in g], 1).repeat(2, 0).repeat(2, 1)
            for g in groups]
    width = max(r.shape[1] for r in rows)
    canvas = np.concatenate([np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows], 0)
    Image.fromarray(canvas).save(out / geometry_report.PICTURES)
    meta = {"room": room, "seed": seed, "view": view, "rows": [[family, value] for family, value in POINTS],
            "inversion_row": bool(inversion)}
    (out / geometry_report.PICTURES_META).write_text(json.dumps(meta, indent=2))
    print(f"{out / 'pictures.png'}: {len(rows)} rows, {canvas.shape[1]} x {canvas.shape[0]} px")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="results folder (frontier.json is resumed from it)")
    parser.add_argument("--rooms", nargs="+", default=["office", "bedroom", "livingroom"], help="built-in rooms")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43], help="training seeds")
    parser.add_argument("--resolution", type=int, default=64, help="room image size (px)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per victim")
    parser.add_argument("--rays", type=int, default=512, help="rays per step")
    parser.add_argument("--pictures", default=None, metavar="ROOM",
                        help="instead: one s2nerf-plus run on ROOM (first seed) with the inversion on and eval images")
    parser.add_argument("--compose", action="store_true",
                        help="instead: FOLDER/pictures.png from the saved eval images (first room, first seed, eval "
                             "view --view; the pictures run's panels last)")
    parser.add_argument("--view", type=int, default=0, help="eval view of --compose")
    parser.add_argument("--allow-dirty", action="store_true", help="write results from an uncommitted tree")
    args = parser.parse_args()
    preset = replace(PRESETS["cpu"], resolution=args.resolution, steps=args.steps, rays=args.rays,
                     post_training_steps=0, replay_steps=50)
    out = args.out
    if args.compose:
        compose(out, args.rooms[0], args.seeds[0], args.view)
        return
    provenance = checked_provenance(allow_dirty=args.allow_dirty)  # refused before anything is written
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    if args.pictures:
        start = synced_clock()
        record = frontier.run_point(args.pictures, "client-appearance", 0.0, preset, out / "pictures_run",
                                    args.seeds[0], False, images=True)
        record.update(provenance=provenance, wall_seconds=synced_clock() - start, inversion=True)
        (out / "pictures_record.json").write_text(json.dumps(record, indent=2))
        return
    path = out / "frontier.json"
    results = json.loads(path.read_text()) if path.exists() else {"records": []}
    if results["records"] and results.get("preset_values") != preset.__dict__:
        raise SystemExit(f"--out {out}: its records were made at another size ({results.get('preset_values')}); "
                         "resume with the same --resolution, --steps and --rays, or use another folder")
    results.update(preset="geometry", preset_values=preset.__dict__, environment=environment(), provenance=provenance,
                   command="OMP_NUM_THREADS=2 python " + " ".join(sys.argv), inversion=False)
    done = {(r["room"], r["family"], r["value"], r["seed"]) for r in results["records"]}
    for seed in args.seeds:
        for room in args.rooms:
            for family, value in POINTS:
                if (room, family or "splitnerf", value, seed) in done:
                    continue
                print(f"geometry: {room} seed {seed} {family or 'splitnerf'} = {value:g}", flush=True)
                start = synced_clock()
                record = frontier.run_point(room, family, value, preset, out / "runs", seed, False,
                                            images=(room, seed) == (args.rooms[0], args.seeds[0]), inversion=False)
                record["provenance"] = provenance
                record["wall_seconds"] = synced_clock() - start
                results["records"].append(record)
                path.write_text(json.dumps(results, indent=2))
                print(f"geometry: {synced_clock() - start:.0f} s, psnr {record['psnr']:.2f}", flush=True)
    results["records"] = frontier.with_loss(results)
    path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
