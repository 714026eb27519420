"""How far from a leaked photo's pose the keypoint search still converges (issue 25): the search started from a
pose exactly ``deg`` degrees (about a random axis through the camera centre) and ``dist`` scene units (in a random
direction) from the true one, through the server's renders (its surrogate's colour, its read-out depth) and, as an
oracle, through the victim's own colour with the same depth. A diagnostic: the true pose only places the start; the
search itself sees the photo's pixels and the renders alone. It separates the two halves of the problem: finding a
start (a global search) and converging from it (the keypoint rounds).

Takes the victims trained by ``scripts/pose_keypoints_128.py`` (FOLDER/runs/ROOM/s2nerf-ssma/VICTIM/config.yml) and
appends one JSON line per (run, colour, photo, start) to OUT/records.jsonl, and per (run, colour, photo) what a
render at the photo's *true* pose gives (OUT/at_truth.jsonl: its PSNR against the photo, the photo's SIFT keypoints,
the ratio-test matches and the correct ones within 2 px, the PnP inliers from that render, and the read-out depth's
median relative error against the client's own depth there), with the commit:
    OMP_NUM_THREADS=2 python scripts/pose_keypoints_basin.py --victims FOLDER --out OUT [--starts 5:0.025 15:0.075]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import cv2
import numpy as np
import torch

from s2nerf_ns.attacks.pose.camera import camera_directions, pose_errors
from s2nerf_ns.attacks.pose.keypoint_search import (KeypointSearchConfig, PhotoKeypoints, correct_matches, describe,
                                                    gray8, keypoint_pose_search)
from s2nerf_ns.attacks.pose.views import render_views
from s2nerf_ns.bench.common import checked_provenance, synced_clock
from s2nerf_ns.evaluation import geometry as geo
from s2nerf_ns.compat import register_numpy_safe_globals


def offset_pose(c2w: torch.Tensor, deg: float, dist: float, rng: np.random.Generator) -> torch.Tensor:
    """``c2w`` [3,4] rotated by exactly ``deg`` about a random axis through its centre and moved exactly ``dist``."""
    axis = rng.normal(size=3)
    rot = torch.from_numpy(cv2.Rodrigues(axis / np.linalg.norm(axis) * math.radians(deg))[0]).to(c2w)
    step = rng.normal(size=3)
    move = torch.from_numpy(step / np.linalg.norm(step) * dist).to(c2w)
    return torch.cat([rot @ c2w[:, :3], (c2w[:, 3] + move)[:, None]], dim=1)


def client_depth(pipeline, origins: torch.Tensor, directions: torch.Tensor, h: torch.Tensor, bins: torch.Tensor
                 ) -> torch.Tensor:
    """EVALUATION: the client's own depth [R,1], composited like its colour (the ray's last sample behind what it
    leaves transparent), as the geometry evaluation scores the victim's depth."""
    out = pipeline.model.client_render(SimpleNamespace(origins=origins, directions=directions), bins, h)
    acc = out["accumulation"].clamp(0, 1)
    return out["depth"] * acc + (1 - acc) * (bins[:, -2:-1] + bins[:, -1:]) / 2


def depth_errors(readout: torch.Tensor, own: torch.Tensor, dirs: torch.Tensor, true_z: Optional[torch.Tensor]) -> dict:
    """The read-out's distances [P] against the client's own [P] and, where given, the room's z-depth [P] (``dirs``
    [P,3]: unit camera-frame directions, OpenGL axes)."""
    out = {"readout_vs_client_depth_median_relerr": float(((readout - own).abs() / own.clamp_min(1e-6)).median())}
    if true_z is not None:
        z, t = readout * (-dirs[:, 2]), true_z.reshape(-1).to(readout)  # distance along the unit ray -> z-depth
        err = (z - t).abs() / t.clamp_min(1e-6)
        out.update(readout_vs_true_depth_median_relerr=float(err.median()),
                   readout_over_true_depth_median=float((z / t.clamp_min(1e-6)).median()),
                   readout_within10_of_true_depth=float((err <= 0.1).float().mean()))
    return out


@torch.no_grad()
def at_truth(pipeline, render, image: torch.Tensor, intrinsics, truth: torch.Tensor, cfg: KeypointSearchConfig,
             true_depth: Optional[torch.Tensor]) -> dict:
    """What the server's render at the photo's true pose offers: PSNR, correct matches, PnP inliers, and its read-out
    depth's error against the client's own depth and (``true_depth`` [h,w], z) the room's."""
    h, w = image.shape[:2]
    dirs = camera_directions(intrinsics, h, w, image.device)
    out = render_views(render, truth[None], dirs, cfg.max_rays_per_call)[0].reshape(h, w, -1)
    rgb, distance = out[..., :3], out[..., 3]
    keypoints, matches, correct = correct_matches(gray8(image), gray8(rgb), cfg)
    _, inliers = PhotoKeypoints(image, intrinsics, cfg).pose_from_view(rgb, distance, truth, guess=truth)

    def own_depth(origins, directions):
        h_, bins = pipeline.embed(origins, directions)
        return client_depth(pipeline, origins, directions, h_, bins)

    own = render_views(own_depth, truth[None], dirs, cfg.max_rays_per_call)[0].reshape(-1)
    mse = float(((rgb.clamp(0, 1) - image) ** 2).mean())
    return {"psnr": -10 * math.log10(max(mse, 1e-12)), "photo_keypoints": keypoints, "matches": matches,
            "correct": correct, "pnp_inliers": inliers, **depth_errors(distance.reshape(-1), own, dirs, true_depth)}


def leaked_depth(pipeline, i: int, height: int, width: int) -> Optional[torch.Tensor]:
    """EVALUATION: the rendered ground-truth z-depth of leaked photo ``i`` (a built-in room's extra view), or None."""
    parser = pipeline.leak_datamanager.dataparser
    meta = parser.get_dataparser_outputs("train").metadata
    if meta.get("leaked_source") != "extra":
        return None
    victim = parser.config.victim.setup()
    extra = victim.get_extra_views()
    scale = victim.get_dataparser_outputs("train").metadata["depth_to_normalized_scale"]
    return geo.reference_depth({"depth_filenames": extra.depth_filenames, "depth_to_normalized_scale": scale},
                               meta["leaked_indices"][i], height, width)


@torch.no_grad()
def training_view_depth(pipeline, count: int) -> list:
    """The read-out depth's error against the client's and the room's at ``count`` evenly spaced training views."""
    dataset = pipeline.datamanager.train_dataset
    cameras, meta = dataset.cameras, dataset._dataparser_outputs.metadata
    out = []
    for index in np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist():
        k = (float(cameras.fx[index]), float(cameras.fy[index]), float(cameras.cx[index]), float(cameras.cy[index]))
        h, w = int(cameras.height[index]), int(cameras.width[index])
        dirs = camera_directions(k, h, w, pipeline.device)
        c2w = cameras.camera_to_worlds[index].to(pipeline.device)

        def depths(origins, directions):  # SERVER read-out, then EVALUATION: the client's own (composited)
            h_, bins = pipeline.embed(origins, directions)
            return torch.cat([pipeline.readout_depth(h_, origins, directions, bins),
                              client_depth(pipeline, origins, directions, h_, bins)], dim=-1)

        both = render_views(depths, c2w[None], dirs, 1 << 14)[0]
        true_z = geo.reference_depth(meta, index, h, w)
        out.append({"view": index, **depth_errors(both[:, 0], both[:, 1], dirs, true_z)})
    return out


def parse_start(text: str):
    deg, dist = text.split(":")
    return float(deg), float(dist)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victims", type=Path, required=True, help="folder written by scripts/pose_keypoints_128.py")
    parser.add_argument("--out", type=Path, required=True, help="folder for records.jsonl and run.json")
    parser.add_argument("--starts", nargs="+", type=parse_start, default=[(5.0, 0.025), (15.0, 0.075), (30.0, 0.15)],
                        help="DEG:UNITS of each start's offset from the true pose")
    parser.add_argument("--repeats", type=int, default=2, help="random starts per offset and photo")
    parser.add_argument("--rooms", nargs="+", default=None, help="only these rooms (default: all)")
    parser.add_argument("--victim-kinds", nargs="+", default=None, help="only these victims (default: all)")
    parser.add_argument("--colours", nargs="+", default=["surrogate", "client"], choices=["surrogate", "client"],
                        help="surrogate: the server's colour; client: the victim's own (an oracle)")
    parser.add_argument("--train-views", type=int, default=8,
                        help="training views (evenly spaced) whose read-out depth is compared with the room's too")
    parser.add_argument("--allow-dirty", action="store_true", help="write results from an uncommitted tree")
    args = parser.parse_args()
    configs = [c for c in sorted((args.victims / "runs").glob("*/s2nerf-ssma/*/config.yml"))
               if (args.rooms is None or c.parts[-4] in args.rooms)
               and (args.victim_kinds is None or c.parts[-2] in args.victim_kinds)]
    if not configs:
        sys.exit(f"--victims {args.victims}: no trained victims under runs/ (run scripts/pose_keypoints_128.py first)")
    provenance = checked_provenance(allow_dirty=args.allow_dirty)  # refused before anything is written
    register_numpy_safe_globals()
    from nerfstudio.utils.eval_utils import eval_setup
    torch.set_num_threads(2)
    run = json.loads((args.victims / "run.json").read_text())
    cfg = KeypointSearchConfig(**run["search"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "run.json").write_text(json.dumps({
        "search": dataclasses.asdict(cfg), "victims_provenance": run.get("provenance"), "starts": args.starts,
        "repeats": args.repeats, "provenance": provenance,
        "command": "OMP_NUM_THREADS=2 python " + " ".join(sys.argv), "victims_from": str(args.victims)}, indent=2))
    path = args.out / "records.jsonl"
    done = {(r["room"], r["victim"], r["colour"], r["leaked"], r["start_deg"], r["repeat"])
            for r in map(json.loads, path.read_text().splitlines())} if path.exists() else set()
    truth_path = args.out / "at_truth.jsonl"
    done_truth = {(r["room"], r["victim"], r["colour"], r["leaked"])
                  for r in map(json.loads, truth_path.read_text().splitlines())} if truth_path.exists() else set()
    train_file = args.out / "train_depth.jsonl"
    done_train = {(r["room"], r["victim"]) for r in map(json.loads, train_file.read_text().splitlines())
                  } if train_file.exists() else set()
    for config in configs:
        _, pipeline, _, _ = eval_setup(config, test_mode="test")
        pipeline.eval()
        room, victim = config.parts[-4], config.parts[-2]
        photos = pipeline.leak_datamanager.train_dataset

        def surrogate(origins, directions, h, bins):  # SERVER: its surrogate's colour
            return pipeline.scene_attacker.surrogate.render_rays(h, origins, directions, bins)

        def client(origins, directions, h, bins):  # EVALUATION: the victim's own colour (an oracle)
            rays = SimpleNamespace(origins=origins, directions=directions)
            return pipeline.model.client_render(rays, bins, h)["rgb"]

        train_path = args.out / "train_depth.jsonl"
        if args.train_views and (room, victim) not in done_train:
            for record in training_view_depth(pipeline, args.train_views):
                record.update(room=room, victim=victim, commit=provenance["git_commit"],
                              git_dirty=provenance["git_dirty"])
                print(json.dumps(record), flush=True)
                with train_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
        for colour_name in args.colours:
            colour = surrogate if colour_name == "surrogate" else client

            def render(origins, directions):  # one pass through the server's fields for colour and depth
                h, bins = pipeline.embed(origins, directions)
                return torch.cat([colour(origins, directions, h, bins),
                                  pipeline.readout_depth(h, origins, directions, bins)], dim=-1)

            for i in range(len(photos)):
                image = photos.get_image_float32(i)[..., :3].to(pipeline.device)
                truth = pipeline.true_leak_c2w[i].to(pipeline.device)
                if (room, victim, colour_name, i) not in done_truth:
                    record = at_truth(pipeline, render, image, pipeline.scene_attacker.intrinsics[i], truth, cfg,
                                      leaked_depth(pipeline, i, *image.shape[:2]))
                    record.update(room=room, victim=victim, colour=colour_name, leaked=i,
                                  commit=provenance["git_commit"], git_dirty=provenance["git_dirty"])
                    print(json.dumps(record), flush=True)
                    with truth_path.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                rng = np.random.default_rng([i, 7])
                for deg, dist in args.starts:
                    for repeat in range(args.repeats):
                        start_pose = offset_pose(truth, deg, dist, rng)  # drawn even when done: same starts
                        if (room, victim, colour_name, i, deg, repeat) in done:
                            continue
                        clock = synced_clock()
                        result = keypoint_pose_search(render, image, pipeline.scene_attacker.intrinsics[i],
                                                      start_pose[None], cfg)
                        record = {"room": room, "victim": victim, "colour": colour_name, "leaked": i,
                                  "start_deg": deg, "start_units": dist, "repeat": repeat,
                                  "search_seconds": synced_clock() - clock, **describe(result),
                                  "start_c2w": start_pose.tolist(), "estimated_c2w": result.c2w.tolist(),
                                  "true_c2w": truth.tolist(), "commit": provenance["git_commit"],
                                  "git_dirty": provenance["git_dirty"]}
                        error = pose_errors(result.c2w, truth)
                        print(room, victim, colour_name, i, deg, repeat, result.history,
                              f"{error['rotation_error_deg']:.2f} deg {error['translation_error']:.3f}", flush=True)
                        with path.open("a") as f:
                            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
