# score cached panoramas: per position best coarse score; rank of near-truth positions
import sys, math, torch, dataclasses
import torch.nn.functional as F
from s2nerf_ns.attacks.pose_search import *
from s2nerf_ns.attacks.pose import pose_errors
torch.set_num_threads(1)
d = torch.load(sys.argv[1])
cfg = attack_search_config(panorama_size=(48, 96))
for kv in sys.argv[2:]:
    k, v = kv.split("="); cfg = dataclasses.replace(cfg, **{k: type(getattr(cfg, k))(eval(v))})
pos, ng, panos, frame, up = d["positions"], d["n_grid"], d["panos"], d["frame"], d["up"]
ph, pw = 48, 96
rolls = torch.deg2rad(torch.tensor(cfg.roll_deg))
rot = look_rotations(fibonacci_sphere(cfg.num_directions), up, rolls)
for i, (img, truth) in enumerate(zip(d["images"], d["truths"])):
    small, k = downsample(img, d["intr"][i], cfg.coarse_size)
    sh, sw = small.shape[:2]
    dirs_cam = camera_directions(k, sh, sw, "cpu")
    view_dirs = torch.einsum("oij,pj->opi", rot, dirs_cam)
    grid = panorama_grid(view_dirs, frame, ph, pw)[None]
    best = torch.empty(len(pos)); arg = torch.empty(len(pos), dtype=torch.long)
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
        j = int(order[r]); print(f"   rank {r}: dist {dist[j]:.3f} ang {angs[j]:.1f} score {best[j]:.4f}")
    near = dist[:ng].argsort()[:3]
    for j in near.tolist():
        print(f"   nearest grid: dist {dist[j]:.3f} rank {(best[:ng] < best[j]).sum()} ang {angs[j]:.1f} score {best[j]:.4f}")
    for j in range(ng, len(pos)):
        if dist[j] < 0.3:
            print(f"   extra: dist {dist[j]:.3f} rank-in-grid {(best[:ng] < best[j]).sum()} ang {angs[j]:.1f} score {best[j]:.4f}")
    wins_all = globals().setdefault("wins_all", [])
    wins_all.append([torch.cat([rot[arg[int(j)]], pos[int(j)][:, None]], 1).tolist() for j in order[:5]])
import json; json.dump(wins_all, open(sys.argv[1] + ".wins.json", "w"))
