"""Keypoint (MeshLoc-style) pose of the rooms' leaked photos at their own 128 px (issue 25): SIFT matches of the photo
to the server's renders (surrogate colour, read-out depth) at the training poses, lifted to 3D by that depth, RANSAC
PnP, then rounds at the estimate (``s2nerf_ns.attacks.pose.keypoint_search``).

Two measurements, one JSON line per leaked photo in FOLDER/records.jsonl (resumable), with the commit, seeds and
settings in FOLDER/run.json:

- ``victim``: a 128 px victim (600 steps x 1,024 rays, 32 samples, 8 levels; the SMA attacker on, no leaked photo
  used before the search) trained per room and victim, then the search through its server's renders;
- ``upper-bound``: the same matching against the training photos themselves with their rendered depth (a server whose
  renders at the training poses were perfect; no rounds, since it cannot render elsewhere).

From the repository root of a clean checkout (about 10 minutes per victim on the 2-core CPU):
    OMP_NUM_THREADS=2 python scripts/pose_keypoints_128.py --out FOLDER [--rooms ...] [--victims ...]
    python -m s2nerf_ns.bench.pose_keypoints_report FOLDER [--readme README.md]     # FOLDER/results.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from s2nerf_ns.attacks.pose.keypoint_search import (KeypointSearchConfig, PhotoKeypoints, best_view, describe,
                                                    keypoint_pose_search)
from s2nerf_ns.bench.common import (Preset, checked_provenance, environment, sized_config, synced_clock,
                                    train_seeded, with_values)
from s2nerf_ns.compat import register_numpy_safe_globals
from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.integration.methods import method_config

PRESET = Preset(128, 32, 120, 600, 1024, 32, 8, 512, 17, 0, 100)
"""The rooms' default render (128 px, 32 spp, 120 views, 4 extra views): the cached rooms are reused."""
VICTIMS = {"splitnerf": {"defense": DefenseConfig()},
           "s2nerf-plus": {"defense": DefenseConfig(), "client_appearance": True},
           "s2nerf": {"defense": DefenseConfig(kind="s2nerf", noise_scale=1.2, decay_ratio=1e-4)}}
SEARCH = KeypointSearchConfig()
SEED = 42


def train_victim(room: str, victim: str, out: Path, preset: Preset = PRESET):
    """Train (and attack with the SMA) one victim; returns the trainer's pipeline and the seconds."""
    config = sized_config(method_config("s2nerf-ssma"), preset, room, out, victim, **VICTIMS[victim])
    pipe = {"report_sma_phase": False, "pose": "estimate", "pose_search": "retrieval", "pose_rounds": 0,
            "leaked.num_leaked": 4, "leak_during_training": False, "post_training_steps": 0,
            "leak_rays_per_step": preset.rays, "attack.replay_steps": preset.replay_steps,
            "datamanager.dataparser.num_extra_views": 4}
    config = with_values(config, {"machine.seed": SEED, **{f"pipeline.{k}": v for k, v in pipe.items()}})
    start = synced_clock()
    trainer = train_seeded(config, SEED)
    return trainer.pipeline, synced_clock() - start


def victim_records(room: str, victim: str, out: Path, search: KeypointSearchConfig, preset: Preset = PRESET):
    pipeline, seconds = train_victim(room, victim, out / "runs", preset)
    pipeline.eval()
    attacker = pipeline.scene_attacker

    def render(origins, directions):  # SERVER: its surrogate's colour and its read-out depth, through its fields
        h, bins = pipeline.embed(origins, directions)
        return torch.cat([attacker.surrogate.render_rays(h, origins, directions, bins),
                          pipeline.readout_depth(h, origins, directions, bins)], dim=-1)

    candidates = pipeline.datamanager.train_dataset.cameras.camera_to_worlds.to(pipeline.device)
    photos = pipeline.leak_datamanager.train_dataset
    for i in range(len(photos)):
        start = synced_clock()
        image = photos.get_image_float32(i)[..., :3].to(pipeline.device)
        result = keypoint_pose_search(render, image, attacker.intrinsics[i], candidates, search)
        yield {"room": room, "victim": victim, "leaked": i, "train_seconds": seconds,
               "search_seconds": synced_clock() - start, **describe(result),
               "estimated_c2w": result.c2w.tolist(), "first_stage_c2w": candidates[result.candidate].tolist(),
               "true_c2w": pipeline.true_leak_c2w[i].tolist()}  # EVALUATION: the truth, for scoring only


def upper_bound_records(room: str, search: KeypointSearchConfig):
    """The training photos and their rendered depth in place of the server's renders (scene units as the victims')."""
    from s2nerf_ns.data.leaked_views import LeakedViewsDataParserConfig
    from s2nerf_ns.data.rooms_dataparser import RoomsDataParserConfig
    from s2nerf_ns.evaluation import geometry as geo
    parser = RoomsDataParserConfig(scene=room, resolution=PRESET.resolution, spp=PRESET.spp,
                                   num_views=PRESET.num_views, num_extra_views=4)
    train = parser.setup().get_dataparser_outputs("train")
    leaked = LeakedViewsDataParserConfig(num_leaked=4, victim=parser).setup().get_dataparser_outputs("train")
    from PIL import Image
    cams = train.cameras
    k = (float(cams.fx[0]), float(cams.fy[0]), float(cams.cx[0]), float(cams.cy[0]))
    size = int(cams.height[0])
    views = []
    for index, path in enumerate(train.image_filenames):
        rgb = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)
        z = geo.reference_depth(train.metadata, index, size, size)  # z-depth, scene units
        views.append((index, rgb, z, cams.camera_to_worlds[index]))
    for i, path in enumerate(leaked.image_filenames):
        start = synced_clock()
        image = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)
        photo = PhotoKeypoints(image, k, search)
        cos = -photo.dirs[:, 2].reshape(size, size)  # unit ray . viewing axis: z-depth -> distance along the ray
        pose, inliers, index = best_view(photo, ((j, rgb, z / cos, c2w) for j, rgb, z, c2w in views))
        truth = leaked.cameras.camera_to_worlds[i]
        yield {"room": room, "victim": "upper-bound", "leaked": i, "search_seconds": synced_clock() - start,
               "search": "keypoints", "inliers": inliers, "first_stage_candidate": index,
               "estimated_c2w": (pose if pose is not None else views[index][3]).tolist(),
               "first_stage_c2w": views[index][3].tolist(), "true_c2w": truth.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="results folder (records.jsonl is resumed from it)")
    parser.add_argument("--rooms", nargs="+", default=["office", "bedroom", "livingroom"], help="built-in rooms")
    parser.add_argument("--victims", nargs="+", default=["upper-bound", "splitnerf"],
                        help=f"servers to search through: upper-bound, {', '.join(VICTIMS)}")
    parser.add_argument("--photo-blur", type=float, default=SEARCH.photo_blur,
                        help="Gaussian blur (sigma, pixels) of the photo before keypoint detection")
    parser.add_argument("--reprojection-px", type=float, default=SEARCH.reprojection_px,
                        help="RANSAC inlier threshold, in pixels of the photo")
    parser.add_argument("--steps", type=int, default=PRESET.steps,
                        help="victim training steps (the preset's 600 by default; more gives a better-trained geometry)")
    parser.add_argument("--allow-dirty", action="store_true", help="write results from an uncommitted tree")
    args = parser.parse_args()
    if args.steps < 1:
        sys.exit(f"--steps {args.steps}: give 1 or more")
    preset = dataclasses.replace(PRESET, steps=args.steps)
    unknown = [v for v in args.victims if v != "upper-bound" and v not in VICTIMS]
    if unknown:
        sys.exit(f"--victims {' '.join(unknown)}: unknown; choose from upper-bound {' '.join(VICTIMS)}")
    if args.photo_blur < 0:
        sys.exit(f"--photo-blur {args.photo_blur}: give a sigma >= 0 (0: no blur)")
    if args.reprojection_px <= 0:
        sys.exit(f"--reprojection-px {args.reprojection_px}: give a threshold > 0")
    provenance = checked_provenance(allow_dirty=args.allow_dirty)
    search = dataclasses.replace(SEARCH, photo_blur=args.photo_blur, reprojection_px=args.reprojection_px)
    register_numpy_safe_globals()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "run.json").write_text(json.dumps({
        "provenance": provenance, "environment": environment(), "seed": SEED, "preset": preset.__dict__,
        "search": search.__dict__, "command": "OMP_NUM_THREADS=2 python " + " ".join(sys.argv)}, indent=2))
    path = args.out / "records.jsonl"
    done = {(r["room"], r["victim"]) for r in map(json.loads, path.read_text().splitlines())} if path.exists() else set()
    for victim in args.victims:
        for room in args.rooms:
            if (room, victim) in done:
                continue
            records = (upper_bound_records(room, search) if victim == "upper-bound"
                       else victim_records(room, victim, args.out, search, preset))
            for record in records:
                print(json.dumps(record), flush=True)
                with path.open("a") as f:
                    f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
