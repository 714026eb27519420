"""Why the keypoint pose search fails through a trained server (issue 25): how many of a training photo's SIFT
keypoints the server's render *at that photo's own pose* matches correctly. The same pose, so a correct match lies
within 2 pixels; no viewpoint change is involved. Compared for the server's surrogate colour (what the attack has)
and the victim's own colour (the client's head: what a perfect colour attack would have).

Takes the victims trained by ``scripts/pose_keypoints_128.py`` (FOLDER/runs/ROOM/s2nerf-ssma/VICTIM/config.yml) and
appends one JSON line per (run, view) to FOLDER/self_match.jsonl, with the commit:
    OMP_NUM_THREADS=2 python scripts/pose_keypoints_self_match.py --out FOLDER [--views 8]

``--oracle-search OTHER``: also run the keypoint pose search on every leaked photo with the victim's own colour (an
oracle: a perfect colour attack) and the server's read-out depth, rounds included, writing OTHER/records.jsonl and
OTHER/run.json in the format of ``scripts/pose_keypoints_128.py`` (server "VICTIM, client colour"); only the runs of
``--oracle-victims``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from s2nerf_ns.attacks.pose.camera import camera_directions
from s2nerf_ns.attacks.pose.keypoint_search import (KeypointSearchConfig, correct_matches, describe, gray8,
                                                    keypoint_pose_search)
from s2nerf_ns.attacks.pose.views import render_views
from s2nerf_ns.bench.common import checked_provenance, synced_clock
from s2nerf_ns.compat import register_numpy_safe_globals


def oracle_search(pipeline, colour, room: str, victim: str, cfg: KeypointSearchConfig, path: Path) -> None:
    """The keypoint search with ``colour`` (the victim's own) and the server's read-out depth, every leaked photo."""
    done = {(r["room"], r["victim"]) for r in map(json.loads, path.read_text().splitlines())} if path.exists() else set()
    server = f"{victim}, client colour"
    if (room, server) in done:
        return

    def render(origins, directions):  # one pass through the server's fields for both
        h, bins = pipeline.embed(origins, directions)
        return torch.cat([colour(origins, directions, h, bins), pipeline.readout_depth(h, origins, directions, bins)],
                         dim=-1)

    candidates = pipeline.datamanager.train_dataset.cameras.camera_to_worlds.to(pipeline.device)
    photos = pipeline.leak_datamanager.train_dataset
    for i in range(len(photos)):
        start = synced_clock()
        image = photos.get_image_float32(i)[..., :3].to(pipeline.device)
        result = keypoint_pose_search(render, image, pipeline.scene_attacker.intrinsics[i], candidates, cfg)
        record = {"room": room, "victim": server, "leaked": i, "search_seconds": synced_clock() - start,
                  **describe(result), "estimated_c2w": result.c2w.tolist(),
                  "first_stage_c2w": candidates[result.candidate].tolist(),
                  "true_c2w": pipeline.true_leak_c2w[i].tolist()}
        print(json.dumps(record), flush=True)
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder written by scripts/pose_keypoints_128.py")
    parser.add_argument("--views", type=int, default=8, help="training views per run (evenly spaced)")
    parser.add_argument("--rooms", nargs="+", default=None, help="only the runs of these rooms (default: all)")
    parser.add_argument("--oracle-search", type=Path, default=None, help="folder for the oracle search's records")
    parser.add_argument("--oracle-victims", nargs="+", default=["splitnerf"], help="victims the oracle search runs on")
    parser.add_argument("--allow-dirty", action="store_true", help="write results from an uncommitted tree")
    args = parser.parse_args()
    configs = [c for c in sorted((args.out / "runs").glob("*/s2nerf-ssma/*/config.yml"))
               if args.rooms is None or c.parts[-4] in args.rooms]
    if not configs:
        sys.exit(f"--out {args.out}: no trained victims under runs/ (run scripts/pose_keypoints_128.py first)")
    provenance = checked_provenance(allow_dirty=args.allow_dirty)
    register_numpy_safe_globals()
    from nerfstudio.utils.eval_utils import eval_setup
    torch.set_num_threads(2)
    run = json.loads((args.out / "run.json").read_text())
    cfg = KeypointSearchConfig(**{k: v for k, v in run["search"].items()})
    out = args.out / "self_match.jsonl"
    done = {(r["room"], r["victim"]) for r in map(json.loads, out.read_text().splitlines())} if out.exists() else set()
    if args.oracle_search is not None:
        args.oracle_search.mkdir(parents=True, exist_ok=True)
        (args.oracle_search / "run.json").write_text(json.dumps({
            **run, "provenance": provenance, "command": "OMP_NUM_THREADS=2 python " + " ".join(sys.argv),
            "victims_from": str(args.out)}, indent=2))
    for config in configs:
        _, pipeline, _, _ = eval_setup(config, test_mode="test")
        pipeline.eval()
        model, attacker = pipeline.model, pipeline.scene_attacker
        dataset = pipeline.datamanager.train_dataset
        cameras = dataset.cameras
        room, victim = config.parts[-4], config.parts[-2]

        def server(origins, directions):  # SERVER: the surrogate's colour through its fields
            h, bins = pipeline.embed(origins, directions)
            return attacker.surrogate.render_rays(h, origins, directions, bins)

        def client(origins, directions, h=None, bins=None):  # EVALUATION: the victim's own colour (its client head)
            if h is None:
                h, bins = pipeline.embed(origins, directions)
            return model.client_render(SimpleNamespace(origins=origins, directions=directions), bins, h)["rgb"]

        if args.oracle_search is not None and victim in args.oracle_victims:
            oracle_search(pipeline, client, room, victim, cfg, args.oracle_search / "records.jsonl")
        if (room, victim) in done:
            continue
        for index in np.linspace(0, len(dataset) - 1, args.views).round().astype(int).tolist():
            k = (float(cameras.fx[index]), float(cameras.fy[index]), float(cameras.cx[index]), float(cameras.cy[index]))
            h, w = int(cameras.height[index]), int(cameras.width[index])
            dirs = camera_directions(k, h, w, pipeline.device)
            c2w = cameras.camera_to_worlds[index].to(pipeline.device)
            photo = gray8(dataset.get_image_float32(index)[..., :3])
            record = {"room": room, "victim": victim, "view": index, "commit": provenance["git_commit"],
                      "git_dirty": provenance["git_dirty"]}
            with torch.no_grad():
                for name, fn in (("surrogate", server), ("client", client)):
                    image = render_views(fn, c2w[None], dirs, cfg.max_rays_per_call)[0].reshape(h, w, 3)
                    keypoints, matches, correct = correct_matches(photo, gray8(image), cfg)
                    record.update({"photo_keypoints": keypoints, f"{name}_matches": matches,
                                   f"{name}_correct": correct})
            print(json.dumps(record), flush=True)
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
