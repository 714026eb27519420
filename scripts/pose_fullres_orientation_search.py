"""Does a full-resolution coarse stage find a leaked photo's orientation near its true centre?

For each leaked photo of a scene-aided victim run, panoramas of the attack's features (``feature-cv``, principal
components fitted at the photo's full resolution) are rendered at the true centre, at two random points 0.05, 0.1
and 0.2 units from it and at the three nearest points of the search's own position grid; every orientation of each
``--directions`` grid (x 5 rolls) is resampled from the panorama and scored against the full-resolution photo as
the coarse stage scores (``batched_scores``). The true rotation is scored too. One line per position; the
results of docs/results/pose_fullres_cpu/ (``fullres_<room>.log``) are this script's output:

    python scripts/pose_fullres_orientation_search.py <victim run>/config.yml --panorama 192 384 \
        --directions 384 1536 > fullres_<room>.log
    python scripts/pose_fullres_summary.py docs/results/pose_fullres_cpu > summary.md
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from nerfstudio.utils.eval_utils import eval_setup

from s2nerf_ns.attacks.pose.camera import camera_directions, fibonacci_sphere, look_rotations, rotation_angle_deg
from s2nerf_ns.attacks.pose.candidates import candidate_positions, panorama_directions, panorama_frame, panorama_grid
from s2nerf_ns.attacks.pose.config import attack_search_config
from s2nerf_ns.attacks.pose.objectives import batched_scores, photo_feature_render
from s2nerf_ns.attacks.pose.views import downsample, render_batched


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="config.yml of a scene-aided victim run (s2nerf-bench privacy)")
    parser.add_argument("--panorama", type=int, nargs=2, default=(192, 384), metavar=("H", "W"),
                        help="panorama size (samples)")
    parser.add_argument("--directions", type=int, nargs="+", default=(384, 1536),
                        help="orientation grids to score: viewing directions (each with the search's 5 rolls)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    ph, pw = args.panorama
    _, pipe, _, _ = eval_setup(args.config, test_mode="inference")
    pipe.eval()
    dev = pipe.device
    att = pipe.scene_attacker
    feat = lambda o, d: att.features(pipe.embed, o, d)  # noqa: E731
    ds = pipe.leak_datamanager.train_dataset
    training = pipe.datamanager.train_dataset.cameras.camera_to_worlds.to(dev)[:, :3, :4]
    aabb = pipe.datamanager.train_dataparser_outputs.scene_box.aabb
    up = F.normalize(training[:, :, 1].mean(0), dim=0)
    frame = panorama_frame(up, training[:, :, :3])
    pano_dirs = panorama_directions(frame, ph, pw)
    g = torch.Generator().manual_seed(0)
    for i in range(len(ds)):
        img = ds.get_image_float32(i)[..., :3]
        intr = list(att.intrinsics[i])
        truth = pipe.true_leak_c2w[i].cpu()
        H, W = img.shape[:2]
        cfg = attack_search_config(panorama_size=(ph, pw), coarse_size=max(H, W))
        render = photo_feature_render(feat, img, intr, training, cfg)
        grid_pos, spacing = candidate_positions(training[:, :, 3], cfg, aabb)
        dist = (grid_pos - truth[:, 3]).norm(dim=-1)
        pos = [("true", truth[:, 3])]
        for d in (0.05, 0.1, 0.2):
            for _ in range(2):
                s = torch.randn(3, generator=g)
                pos.append((f"off{d}", truth[:, 3] + d * s / s.norm()))
        for j in dist.argsort()[:3].tolist():
            pos.append((f"grid{dist[j]:.2f}", grid_pos[j]))
        small, k = downsample(img, intr, cfg.coarse_size)
        sh, sw = small.shape[:2]
        target = small.reshape(-1, 3)
        dirs_cam = camera_directions(k, sh, sw, "cpu")
        print(f"photo {i}: {H}x{W} fx {intr[0]:.1f} hfov {2 * math.degrees(math.atan(W / 2 / intr[0])):.0f} "
              f"spacing {spacing:.3f}", flush=True)
        for name, p in pos:
            t0 = time.time()
            pano = render_batched(render, p.expand_as(pano_dirs), pano_dirs, 1 << 16)
            pano = pano.reshape(ph, pw, -1).permute(2, 0, 1)[None]
            pano = torch.cat([pano[..., -1:], pano, pano[..., :1]], dim=-1)
            line = f"  {name:10s} render {time.time() - t0:.0f}s"
            for nd in args.directions:
                rolls = torch.deg2rad(torch.tensor(cfg.roll_deg))
                rot = torch.cat([look_rotations(fibonacci_sphere(nd), up, rolls), truth[None, :, :3]])
                sc = []
                for c in range(0, len(rot), 256):
                    vd = torch.einsum("oij,pj->opi", rot[c:c + 256], dirs_cam)
                    views = F.grid_sample(pano, panorama_grid(vd, frame, ph, pw)[None], mode="bilinear",
                                          padding_mode="border", align_corners=False)[0]
                    sc.append(batched_scores(views.permute(1, 2, 0), target, sh, sw, cfg))
                sc = torch.cat(sc)
                s_true, sc = sc[-1], sc[:-1]
                angs = rotation_angle_deg(rot[:-1], truth[:, :3])
                o = sc.argsort()
                top = [f"{angs[j]:.0f}" for j in o[:5].tolist()]
                near = angs < 12
                line += (f" | {nd}x5: best {angs[o[0]]:.1f}deg {sc[o[0]]:.4f} top5 {','.join(top)} "
                         f"bestnear12 {sc[near].min():.4f} truerot {s_true:.4f}")
            print(line, f"({time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
