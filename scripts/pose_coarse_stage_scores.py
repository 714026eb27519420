"""Does the pose search's coarse stage identify a leaked photo's orientation at the right place?

Two steps. ``cache``: renders the attack's feature panoramas (``feature-cv`` at the coarse stage's size) at the
search's own grid positions plus the leaked photos' true centres and points 0.05-0.25 units from them, and saves
them with the photos and their true poses. ``score``: scores every coarse orientation (the search's directions x
rolls) at every cached position against each photo, as the coarse stage does, and prints the best grid positions,
the grid points nearest the truth and the near-truth points with their ranks
(docs/results/pose_competitors_cpu/explore/score_<room>_pano48x96_coarse16.txt):

    python scripts/pose_coarse_stage_scores.py cache <victim run>/config.yml panos_<room>.pt --positions 400
    python scripts/pose_coarse_stage_scores.py score panos_<room>.pt > score_<room>_pano48x96_coarse16.txt

``score`` also writes the five best grid proposals of each photo next to the cache (``<cache>.wins.json``).
Further ``name=value`` arguments of ``score`` override fields of the search's config (e.g. ``coarse_size=24``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from s2nerf_ns.attacks.pose.camera import camera_directions, fibonacci_sphere, look_rotations, rotation_angle_deg
from s2nerf_ns.attacks.pose.candidates import candidate_positions, panorama_directions, panorama_frame, panorama_grid
from s2nerf_ns.attacks.pose.config import attack_search_config
from s2nerf_ns.attacks.pose.objectives import batched_scores, feature_transform
from s2nerf_ns.attacks.pose.views import blur121, downsample, render_batched

PANORAMA = (48, 96)


def cache(config: Path, out: Path, num_positions: int) -> None:
    """Feature panoramas at the grid positions and near the true centres, with the photos and their poses."""
    from nerfstudio.utils.eval_utils import eval_setup

    torch.set_num_threads(2)
    _, pipe, _, _ = eval_setup(config, test_mode="inference")
    pipe.eval()
    dev = pipe.device
    att = pipe.scene_attacker
    feat = lambda o, d: att.features(pipe.embed, o, d)  # noqa: E731
    ds = pipe.leak_datamanager.train_dataset
    training = pipe.datamanager.train_dataset.cameras.camera_to_worlds.to(dev)[:, :3, :4]
    aabb = pipe.datamanager.train_dataparser_outputs.scene_box.aabb
    cfg = attack_search_config(num_positions=num_positions, panorama_size=PANORAMA)
    small, k = downsample(ds.get_image_float32(0)[..., :3], att.intrinsics[0], cfg.coarse_size)
    render = feature_transform(feat, training, camera_directions(k, small.shape[0], small.shape[1], dev),
                               cfg.feature_components)
    positions, spacing = candidate_positions(training[:, :, 3], cfg, aabb)
    truths = [pipe.true_leak_c2w[i].cpu() for i in range(len(ds))]
    extra = []
    g = torch.Generator().manual_seed(0)
    for t in truths:
        extra.append(t[:, 3])
        for d in (0.05, 0.1, 0.15, 0.25):
            for _ in range(3):
                s = torch.randn(3, generator=g)
                extra.append(t[:, 3] + d * s / s.norm())
    allpos = torch.cat([positions, torch.stack(extra)])
    up = F.normalize(training[:, :, 1].mean(0), dim=0)
    frame = panorama_frame(up, training[:, :, :3])
    ph, pw = cfg.panorama_size
    pano_dirs = panorama_directions(frame, ph, pw)
    panos = torch.empty(len(allpos), ph * pw, 14)
    t0 = time.time()
    for i, p in enumerate(allpos):
        panos[i] = render_batched(render, p.expand_as(pano_dirs), pano_dirs, cfg.max_rays_per_call)
        if i % 50 == 0:
            print(i, time.time() - t0, flush=True)
    torch.save({"positions": allpos, "n_grid": len(positions), "spacing": spacing, "panos": panos, "frame": frame,
                "up": up, "truths": truths, "intr": [list(att.intrinsics[i]) for i in range(len(ds))],
                "images": [ds.get_image_float32(i)[..., :3] for i in range(len(ds))], "training": training}, out)
    print("done", time.time() - t0)


def score(cache_file: Path, overrides: list) -> None:
    """Per position, the best coarse score of each photo; the ranks of the grid points nearest the truth."""
    torch.set_num_threads(1)
    d = torch.load(cache_file)
    cfg = attack_search_config(panorama_size=PANORAMA)
    for kv in overrides:
        k, v = kv.split("=")
        cfg = dataclasses.replace(cfg, **{k: type(getattr(cfg, k))(json.loads(v))})
    pos, ng, panos, frame, up = d["positions"], d["n_grid"], d["panos"], d["frame"], d["up"]
    ph, pw = PANORAMA
    rolls = torch.deg2rad(torch.tensor(cfg.roll_deg))
    rot = look_rotations(fibonacci_sphere(cfg.num_directions), up, rolls)
    wins_all = []
    for i, (img, truth) in enumerate(zip(d["images"], d["truths"])):
        small, k = downsample(img, d["intr"][i], cfg.coarse_size)
        sh, sw = small.shape[:2]
        dirs_cam = camera_directions(k, sh, sw, "cpu")
        view_dirs = torch.einsum("oij,pj->opi", rot, dirs_cam)
        grid = panorama_grid(view_dirs, frame, ph, pw)[None]
        best = torch.empty(len(pos))
        arg = torch.empty(len(pos), dtype=torch.long)
        for j in range(len(pos)):
            pano = panos[j].reshape(ph, pw, -1).permute(2, 0, 1)[None]
            pano = torch.cat([pano[..., -1:], pano, pano[..., :1]], dim=-1)
            views = F.grid_sample(pano, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
            views = blur121(views.reshape(len(views), -1, sh, sw)).reshape(len(views), -1, sh * sw).permute(1, 2, 0)
            s = batched_scores(views, small.reshape(-1, 3), sh, sw, cfg)
            best[j], arg[j] = s.min(0)
        dist = (pos - truth[:, 3]).norm(dim=-1)
        angs = rotation_angle_deg(rot[arg], truth[:, :3])
        order = best[:ng].argsort()
        print(f"photo {i}: grid best scores {best[order[:5]].tolist()}")
        for r in range(8):
            j = int(order[r])
            print(f"   rank {r}: dist {dist[j]:.3f} ang {angs[j]:.1f} score {best[j]:.4f}")
        for j in dist[:ng].argsort()[:3].tolist():
            print(f"   nearest grid: dist {dist[j]:.3f} rank {(best[:ng] < best[j]).sum()} ang {angs[j]:.1f} "
                  f"score {best[j]:.4f}")
        for j in range(ng, len(pos)):
            if dist[j] < 0.3:
                print(f"   extra: dist {dist[j]:.3f} rank-in-grid {(best[:ng] < best[j]).sum()} ang {angs[j]:.1f} "
                      f"score {best[j]:.4f}")
        wins_all.append([torch.cat([rot[arg[int(j)]], pos[int(j)][:, None]], 1).tolist() for j in order[:5]])
    Path(f"{cache_file}.wins.json").write_text(json.dumps(wins_all))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    c = sub.add_parser("cache", help="render and save the feature panoramas")
    c.add_argument("config", type=Path, help="config.yml of a scene-aided victim run (s2nerf-bench privacy)")
    c.add_argument("out", type=Path, help="the cache file to write (.pt)")
    c.add_argument("--positions", type=int, default=400, help="grid positions of the search's coarse stage")
    s = sub.add_parser("score", help="score the coarse orientations at every cached position")
    s.add_argument("cache", type=Path, help="a file written by the cache step")
    s.add_argument("overrides", nargs="*", help="name=value: fields of the search's config to change")
    args = parser.parse_args()
    if args.step == "cache":
        cache(args.config, args.out, args.positions)
    else:
        score(args.cache, args.overrides)


if __name__ == "__main__":
    main()
