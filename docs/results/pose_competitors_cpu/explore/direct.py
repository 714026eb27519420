# direct renders: score true pose, perturbations and coarse-grid winners at several sizes / settings
import sys, math, json, dataclasses, torch
from pathlib import Path
import torch.nn.functional as F
from nerfstudio.utils.eval_utils import eval_setup
from s2nerf_ns.attacks.pose_search import *
torch.set_num_threads(2)
cfgpath, pano_file = sys.argv[1], sys.argv[2]
_, pipe, _, _ = eval_setup(Path(cfgpath), test_mode="inference"); pipe.eval()
att = pipe.scene_attacker
feat = lambda o, d: att.features(pipe.embed, o, d)
d = torch.load(pano_file)
cfg = attack_search_config()
training = d["training"]
g = torch.Generator().manual_seed(1)
def rotate(R, axis, deg):
    axis = axis / axis.norm(); K = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = math.radians(deg); return (torch.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K) @ R
wins = json.load(open(pano_file + ".wins.json")) if Path(pano_file + ".wins.json").exists() else None
for i, (img, truth) in enumerate(zip(d["images"], d["truths"])):
    intr = d["intr"][i]
    small, k = downsample(img, intr, 16)
    render = feature_transform(feat, training, camera_directions(k, small.shape[0], small.shape[1], "cpu"), 8)
    poses = [truth]; labels = ["true"]
    for deg in (2, 5, 10):
        for r in range(3):
            p = truth.clone(); p[:, :3] = rotate(truth[:, :3], torch.randn(3, generator=g), deg); poses.append(p); labels.append(f"r{deg}")
    for dist in (0.05, 0.1, 0.2):
        for r in range(3):
            p = truth.clone(); s = torch.randn(3, generator=g); p[:, 3] += dist * s / s.norm(); poses.append(p); labels.append(f"t{dist}")
    if wins:
        for r, c in enumerate(wins[i]):
            poses.append(torch.tensor(c)); labels.append(f"win{r}")
    poses = torch.stack(poses)
    for size in (16, 24, 32):
        for ss in (1, 2):
            for gw in (0.0, 0.5):
                c = dataclasses.replace(cfg, gradient_weight=gw)
                level = ImageLevel.make(img, intr, size, ss)
                pred = level.render(render, poses, 1 << 16)
                s = batched_scores(pred, level.target, level.h, level.w, c)
                out = {}
                for l, v in zip(labels, s.tolist()): out.setdefault(l, []).append(round(v, 3))
                print(f"photo {i} size {size} ss {ss} gw {gw}: " + " ".join(f"{l}={v}" for l, v in out.items()), flush=True)
