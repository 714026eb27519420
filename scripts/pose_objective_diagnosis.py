"""Why the global pose search misses: is the true pose the minimum of the search's own objective?

Loads a scene-aided run (``s2nerf-bench privacy ... --pose known --num-leaked 2``), and for each leaked
photo scores, with the search's final colour-invariant loss (``pose_search.final_loss``), the true pose, the
true pose perturbed by growing rotations and translations, and every training pose. Render functions: the
attacker's (surrogate through the server's fields: what the "colour-map" search uses), the surrogate's per-ray
features regressed onto the photo with cross-validation (``feature_cv``: what the "feature-cv" search uses), the
victim's own render (an oracle with the client's true colours: what a perfect surrogate could reach) and the embedding attack's
false colours (a PCA of the server's own ``h``: no training at all). If the true pose is not
the lowest loss even for the oracle, no search over this objective can find it at this resolution.

    python scripts/pose_objective_diagnosis.py --config <run>/config.yml --out diagnosis.json [--size 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import torch

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.utils.eval_utils import eval_setup

from s2nerf_ns.attacks.pose.camera import pose_errors
from s2nerf_ns.attacks.pose.colour_search import coarse_candidates, final_loss
from s2nerf_ns.attacks.pose.config import PoseSearchConfig, attack_search_config
from s2nerf_ns.attacks.pose.objectives import photo_feature_render
from s2nerf_ns.bench.common import provenance


def rotate(c2w: torch.Tensor, axis: torch.Tensor, degrees: float) -> torch.Tensor:
    axis = axis / axis.norm()
    k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = math.radians(degrees)
    rot = torch.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    out = c2w.clone()
    out[:, :3] = rot @ c2w[:, :3]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("pose_diagnosis.json"))
    parser.add_argument("--views", type=int, nargs="*", default=None, help="leaked photos to score (default: all)")
    parser.add_argument("--renders", nargs="*", default=["surrogate", "victim_oracle"],
                        choices=["surrogate", "feature_cv", "victim_oracle", "embedding"],
                        help="render functions to score with (embedding: the PCA of the server's own h, no training)")
    parser.add_argument("--summary", type=Path, nargs="*", default=None,
                        help="print the markdown table of these diagnosis files (nothing is rendered)")
    parser.add_argument("--size", type=int, default=None,
                        help="longer side (pixels) at which poses are compared (default: the search's final_size)")
    parser.add_argument("--competitors", type=int, default=0,
                        help="also score the K best distinct poses of the attack search's own coarse stage (feature-cv "
                             "over the scene box): the poses a search finds, not just fixed probes (0: none)")
    parser.add_argument("--positions", type=int, default=400, help="grid positions of that coarse stage")
    parser.add_argument("--panorama-size", type=int, nargs=2, default=[64, 128], help="its panoramas (rows cols)")
    args = parser.parse_args()
    if args.summary is not None:
        print(summarise(args.summary), end="")
        return
    if args.config is None:
        parser.error("--config is required (or --summary FILES)")
    _, pipeline, _, _ = eval_setup(args.config, test_mode="inference")
    pipeline.eval()
    device = pipeline.device
    cfg = PoseSearchConfig() if args.size is None else PoseSearchConfig(final_size=args.size)
    cv_cfg = dataclasses.replace(cfg, objective="feature-cv")
    attacker = pipeline.scene_attacker

    def surrogate(origins, directions):
        return attacker.render(pipeline.embed, origins, directions)

    def victim(origins, directions):
        bundle = RayBundle(origins=origins, directions=directions, pixel_area=torch.full_like(origins[:, :1], 1e-6),
                           camera_indices=torch.zeros_like(origins[:, :1], dtype=torch.long))
        return pipeline.model(bundle)["rgb"]

    def embedding(origins, directions):
        h, _ = pipeline.embed(origins, directions)
        return pipeline.embedding_attack.render(h).to(origins.device)

    def features(origins, directions):
        return attacker.features(pipeline.embed, origins, directions)

    functions = {"surrogate": surrogate, "feature_cv": features, "victim_oracle": victim, "embedding": embedding}
    dataset = pipeline.leak_datamanager.train_dataset
    training = pipeline.datamanager.train_dataset.cameras.camera_to_worlds.to(device)
    search_cfg = attack_search_config(num_positions=args.positions, panorama_size=tuple(args.panorama_size),
                                      top_k=max(1, args.competitors))
    aabb = pipeline.datamanager.train_dataparser_outputs.scene_box.aabb
    report = {"config": str(args.config), "size": cfg.final_size, "views": [], "provenance": provenance(),
              "competitor_search": dataclasses.asdict(search_cfg) if args.competitors else None}
    gen = torch.Generator().manual_seed(0)
    for i in (range(len(dataset)) if args.views is None else args.views):
        image = dataset.get_image_float32(i)[..., :3].to(device)
        truth = pipeline.true_leak_c2w[i].cpu()
        intr = attacker.intrinsics[i]
        probes = {"true": truth}
        for deg in (2, 5, 10, 20, 45, 90, 180):
            for j in range(3):
                probes[f"rot{deg}_{j}"] = rotate(truth, torch.randn(3, generator=gen), deg)
        for dist in (0.05, 0.1, 0.25, 0.5):
            for j in range(3):
                moved = truth.clone()
                step = torch.randn(3, generator=gen)
                moved[:, 3] += dist * step / step.norm()
                probes[f"move{dist}_{j}"] = moved
        entry = {"leaked": i}
        with torch.no_grad():
            if "feature_cv" in args.renders or args.competitors:  # as search_pose does
                functions["feature_cv"] = photo_feature_render(features, image, intr, training[:, :3, :4], cv_cfg)
            if args.competitors:  # the attack search's coarse proposals (it never sees the true pose)
                found = coarse_candidates(functions["feature_cv"], image, intr, training[:, :3, :4], search_cfg,
                                          region=aabb)
                entry["competitors"] = []
                for r, c2w in enumerate(found.c2w.cpu()):
                    errs = pose_errors(c2w, truth)
                    near = errs["rotation_error_deg"] < 10 and errs["translation_error"] < 0.1
                    probes[f"{'near' if near else 'far'}_competitor{r}"] = c2w
                    entry["competitors"].append({"rank": r, "coarse_score": float(found.score[r]), **errs})
        names = list(probes)
        poses = torch.stack([probes[n] for n in names]).to(device)
        with torch.no_grad():
            for label, render in ((name, functions[name]) for name in args.renders):
                objective = cv_cfg if label == "feature_cv" else cfg
                probe_loss, _ = final_loss(render, image, poses, intr, objective)
                train_loss, _ = final_loss(render, image, training, intr, objective)
                losses = dict(zip(names, probe_loss.tolist()))
                best_train = int(train_loss.argmin())
                errs = pose_errors(training[best_train].cpu(), truth)
                entry[label] = {
                    "loss_true": losses["true"],
                    "probes_below_true": sorted(n for n, v in losses.items() if n != "true" and v < losses["true"]),
                    "min_probe": min(losses.items(), key=lambda kv: kv[1]),
                    "training_poses_below_true": int((train_loss < losses["true"]).sum()),
                    "num_training": len(training),
                    "best_training_pose": {"index": best_train, "loss": float(train_loss[best_train]), **errs},
                    "losses": losses,
                }
        report["views"].append(entry)
        for label in args.renders:
            e = entry[label]
            print(f"photo {i} {label}: loss at true pose {e['loss_true']:.4f}; probes below it: "
                  f"{len(e['probes_below_true'])}/{len(names) - 1} {e['probes_below_true'][:6]}; training poses below: "
                  f"{e['training_poses_below_true']}/{len(training)}; best training pose {e['best_training_pose']}",
                  flush=True)
        args.out.write_text(json.dumps(report, indent=2))  # after every photo: a long run keeps what it has


NEAR_PROBES = ("rot2_", "rot5_", "move0.05_", "near_competitor")
"""Probes within the tolerance the issue asks of the search (a few degrees, a few hundredths of a unit), and
competitors within 10 degrees and 0.1 units of the true pose."""


def far_below_true(entry: dict) -> int:
    """Poses that are NOT near the true one (probes of >= 10 degrees or >= 0.1 units, and every training pose)
    whose loss is below the true pose's: 0 means the true pose's basin is the objective's minimum over these."""
    far = [n for n in entry["probes_below_true"] if not n.startswith(NEAR_PROBES)]
    return len(far) + int(entry["training_poses_below_true"])


def num_far(entry: dict) -> int:
    """Poses scored that are not near the true one (far probes and competitors, and every training pose)."""
    return sum(1 for n in entry["losses"] if n != "true" and not n.startswith(NEAR_PROBES)) + \
        int(entry.get("num_training", 0))


def summarise(paths) -> str:
    """Markdown table of diagnosis files: per room and photo and render function, the far poses below the true
    one; "yes" where there are none (the objective singles out the true pose's neighbourhood)."""
    rows, labels = [], []
    for path in paths:
        report = json.loads(Path(path).read_text())
        room = Path(report["config"]).parts[-4] if len(Path(report["config"]).parts) >= 4 else report["config"]
        for view in report["views"]:
            cells = {k: v for k, v in view.items() if isinstance(v, dict)}
            labels += [k for k in cells if k not in labels]
            rows.append((room, view["leaked"], cells))
    head = "| room | photo | " + " | ".join(labels) + " |"
    lines = [head, "|" + "---|" * (2 + len(labels))]
    for room, photo, cells in rows:
        out = []
        for label in labels:
            e = cells.get(label)
            out.append("-" if e is None else
                       f"{'yes' if far_below_true(e) == 0 else 'no'} ({far_below_true(e)} of "
                       f"{num_far(e)})")
        lines.append(f"| {room} | {photo} | " + " | ".join(out) + " |")
    if any("competitor" in n for _, _, cells in rows for e in cells.values() for n in e["losses"]):
        lines.append("")
        lines.append("Of these, the attack search's own coarse proposals (competitors) scoring below the true pose:")
        lines.append("")
        lines += [head, "|" + "---|" * (2 + len(labels))]
        for room, photo, cells in rows:
            out = []
            for label in labels:
                e = cells.get(label)
                comps = [n for n in e["losses"] if "competitor" in n] if e else []
                below = [n for n in e["probes_below_true"] if n.startswith("far_competitor")] if e else []
                out.append("-" if not comps else f"{len(below)} of {len(comps)}")
            lines.append(f"| {room} | {photo} | " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
