import sys, math, torch
import torch.nn.functional as F
from s2nerf_ns.attacks.pose_search import *
torch.set_num_threads(2)
d = torch.load(sys.argv[1]); cfg = attack_search_config(panorama_size=(48, 96))
pos, ng, panos, frame, up = d["positions"], d["n_grid"], d["panos"], d["frame"], d["up"]
ph, pw = 48, 96
g = torch.Generator().manual_seed(1)
def rotate(R, axis, deg):
    axis = axis / axis.norm(); K = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = math.radians(deg); return (torch.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K) @ R
offset = 0
for i, (img, truth) in enumerate(zip(d["images"], d["truths"])):
    j = ng + i * 13  # exact true position
    small, k = downsample(img, d["intr"][i], cfg.coarse_size); sh, sw = small.shape[:2]
    dirs_cam = camera_directions(k, sh, sw, "cpu")
    rots = [truth[:, :3]]; labels = ["true"]
    for deg in (1, 2, 3, 5, 7, 10, 15):
        for r in range(4):
            rots.append(rotate(truth[:, :3], torch.randn(3, generator=g), deg)); labels.append(str(deg))
    rot = torch.stack(rots)
    grid = panorama_grid(torch.einsum("oij,pj->opi", rot, dirs_cam), frame, ph, pw)[None]
    pano = panos[j].reshape(ph, pw, -1).permute(2, 0, 1)[None]
    pano = torch.cat([pano[..., -1:], pano, pano[..., :1]], dim=-1)
    views = F.grid_sample(pano, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    views = blur121(views.reshape(len(views), -1, sh, sw)).reshape(len(views), -1, sh * sw).permute(1, 2, 0)
    s = batched_scores(views, small.reshape(-1, 3), sh, sw, cfg)
    out = {}
    for l, v in zip(labels, s.tolist()): out.setdefault(l, []).append(round(v, 3))
    print("photo", i, out)
