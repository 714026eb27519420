# coarse stage diagnostics: cache panoramas at grid positions + near-truth positions; score photos
import json, sys, time, math, dataclasses, torch
import torch.nn.functional as F
from pathlib import Path
from nerfstudio.utils.eval_utils import eval_setup
from s2nerf_ns.attacks.pose_search import *
torch.set_num_threads(2)
cfgpath = sys.argv[1]; out = sys.argv[2]; npos = int(sys.argv[3])
_, pipe, _, _ = eval_setup(Path(cfgpath), test_mode="inference")
pipe.eval(); dev = pipe.device
att = pipe.scene_attacker
feat = lambda o, d: att.features(pipe.embed, o, d)
ds = pipe.leak_datamanager.train_dataset
training = pipe.datamanager.train_dataset.cameras.camera_to_worlds.to(dev)[:, :3, :4]
aabb = pipe.datamanager.train_dataparser_outputs.scene_box.aabb
cfg = attack_search_config(num_positions=npos, panorama_size=(48, 96))
image0 = ds.get_image_float32(0)[..., :3]
intr = att.intrinsics[0]
small, k = downsample(image0, intr, cfg.coarse_size)
dirs_cam = camera_directions(k, small.shape[0], small.shape[1], dev)
render = feature_transform(feat, training, dirs_cam, cfg.feature_components)
positions, spacing = candidate_positions(training[:, :, 3], cfg, aabb)
truths = [pipe.true_leak_c2w[i].cpu() for i in range(len(ds))]
extra = []
g = torch.Generator().manual_seed(0)
for t in truths:
    extra.append(t[:, 3])
    for d in (0.05, 0.1, 0.15, 0.25):
        for j in range(3):
            s = torch.randn(3, generator=g); extra.append(t[:, 3] + d * s / s.norm())
allpos = torch.cat([positions, torch.stack(extra)])
up = F.normalize(training[:, :, 1].mean(0), dim=0)
frame = panorama_frame(up, training[:, :, :3])
ph, pw = cfg.panorama_size
pano_dirs = panorama_directions(frame, ph, pw)
panos = torch.empty(len(allpos), ph * pw, 14)
t0 = time.time()
for i, p in enumerate(allpos):
    panos[i] = render_batched(render, p.expand_as(pano_dirs), pano_dirs, cfg.max_rays_per_call)
    if i % 50 == 0: print(i, time.time() - t0, flush=True)
torch.save({"positions": allpos, "n_grid": len(positions), "spacing": spacing, "panos": panos, "frame": frame, "up": up,
            "truths": truths, "intr": [list(att.intrinsics[i]) for i in range(len(ds))],
            "images": [ds.get_image_float32(i)[..., :3] for i in range(len(ds))], "training": training}, out)
print("done", time.time() - t0)
