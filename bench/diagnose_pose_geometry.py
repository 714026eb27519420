"""Why the geometry pose search misses: is the true pose the minimum of the search's own geometry objective?

Loads a scene-aided run (``s2nerf-bench privacy ... --pose known --num-leaked 2``), runs the geometry search
(``pose_geometry.search_pose_geometry``, which never sees the true pose) on each leaked photo, then scores the true
pose against the search's own proposals (coarse, local-search and final candidates) with the geometry objective at
several resolutions (``pose_geometry.score_poses``). Depth from the server's density read-out (``readout``: what the
attack uses) or from the client's own density (``client``: an upper bound the server does not have). Proposals that
are far (>= 10 degrees or >= 0.1 units) from the true pose yet score below it mean no search over this objective can
find the pose at that resolution.

    python bench/diagnose_pose_geometry.py --config <run>/config.yml --out geometry_diagnosis.json [--depth client]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from nerfstudio.utils.eval_utils import eval_setup

from s2nerf_ns.attacks.geometry import HeadDensity, render_density
from s2nerf_ns.attacks.pose import pose_errors
from s2nerf_ns.attacks.pose_geometry import GeometrySearchConfig, score_poses, search_pose_geometry
from s2nerf_ns.bench.common import provenance
from s2nerf_ns.protocol.rendering import VolumeRenderer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("geometry_diagnosis.json"))
    parser.add_argument("--depth", choices=["readout", "client"], default="readout")
    parser.add_argument("--sizes", type=int, nargs="*", default=[16, 32, 64, 128])
    parser.add_argument("--positions", type=int, default=48, help="the search's grid positions")
    parser.add_argument("--region", choices=["cameras", "scene-box"], default="scene-box")
    args = parser.parse_args()
    _, pipeline, _, _ = eval_setup(args.config, test_mode="inference")
    pipeline.eval()
    device = pipeline.device
    renderer = VolumeRenderer("last_sample")
    readout = pipeline.ensure_readout() if args.depth == "readout" else None
    client_density = HeadDensity(pipeline.split_model.client_head)  # EVALUATION only: the upper bound

    @torch.no_grad()
    def depth_fn(origins, directions):
        h, bins = pipeline.embed(origins, directions)
        if readout is not None:
            return readout.render(h, origins, directions, bins)["depth"]
        return render_density(renderer, client_density, h, origins, directions, bins)["depth"]

    cfg = GeometrySearchConfig(num_positions=args.positions, region=args.region)
    dataset = pipeline.leak_datamanager.train_dataset
    training = pipeline.datamanager.train_dataset.cameras.camera_to_worlds.to(device)[:, :3, :4]
    aabb = pipeline.datamanager.train_dataparser_outputs.scene_box.aabb.to(device)
    report = {"config": str(args.config), "depth": args.depth, "search": dataclasses.asdict(cfg), "views": [],
              "provenance": provenance()}
    for i in range(len(dataset)):
        image = dataset.get_image_float32(i)[..., :3].to(device)
        truth = pipeline.true_leak_c2w[i].to(device)
        intr = pipeline.scene_attacker.intrinsics[i]
        result = search_pose_geometry(depth_fn, image, intr, training, cfg, seed=i, region=aabb)
        names = ["true", "chosen"] + [f"top{r}" for r in range(len(result.top_c2w))] + \
            [f"local{r}" for r in range(len(result.local_c2w))] + [f"coarse{r}" for r in range(len(result.coarse_c2w))]
        poses = torch.cat([truth[None], result.c2w[None], result.top_c2w, result.local_c2w, result.coarse_c2w])
        table = score_poses(depth_fn, image, intr, poses, cfg, args.sizes)
        errors = [pose_errors(p.cpu(), truth.cpu()) for p in poses]
        far = [e["rotation_error_deg"] >= 10 or e["translation_error"] >= 0.1 for e in errors]
        entry = {"leaked": i, "chosen": errors[1], "timings": result.timings, "chosen_stage": result.chosen_stage,
                 "poses": {n: {**e, **{f"score_{s}": float(v[j]) for s, v in table.items()}}
                           for j, (n, e) in enumerate(zip(names, errors))},
                 "far_below_true": {s: sum(1 for j in range(1, len(names)) if far[j] and v[j] < v[0])
                                    for s, v in table.items()},
                 "num_far": sum(far[1:])}
        report["views"].append(entry)
        print(f"photo {i}: chosen {errors[1]}; far proposals scoring below the true pose, per size: "
              f"{entry['far_below_true']} of {entry['num_far']}", flush=True)
        args.out.write_text(json.dumps(report, indent=2))  # after every photo


if __name__ == "__main__":
    main()
