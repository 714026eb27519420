# feature-cv objective through the trained split model of tests/test_pose_search_trained.py (the victim head's colour
# activations composited, as SurrogateAttacker.render_features does); run from the repository root:
#   python docs/results/pose_fullres_cpu/trained_scene/feature_cv.py
import sys, os, time, math, torch
sys.path.insert(0, "tests")
from test_pose_search_trained import *
from test_pose_search_trained import trained_room as fixture
from types import SimpleNamespace
from s2nerf_ns.attacks.surrogate import SurrogateAttacker
torch.set_num_threads(1)
model, train = fixture.__wrapped__() if hasattr(fixture, "__wrapped__") else fixture.__pytest_wrapped__.obj()
mix = torch.tensor([[0.7, 0.2, 0.05], [-0.1, 0.8, 0.2], [0.15, -0.05, 0.6]])
victim_as_surrogate = SimpleNamespace(head=model.client_head, renderer=model.renderer)
def feats(h, origins, directions, bins):  # SurrogateAttacker.render_features with the victim's head; rgb distorted
    out = SurrogateAttacker.render_features(victim_as_surrogate, h, origins, directions, bins)
    return torch.cat([out[:, :3].clamp(1e-4, 1) ** 1.3 @ mix.T, out[:, 3:]], dim=-1)
model.server_renders["feat"] = feats
@torch.no_grad()
def render(o, d):
    return model(bundle(o, d, torch.zeros(len(o), dtype=torch.long)))["feat"]
cfg = PoseSearchConfig(objective="feature-cv", num_positions=24, panorama_size=(32, 64), num_directions=192,
                       local_iters=6, pyramid_sizes=(16, 32), pyramid_iters=4, refine_steps=0, final_size=48)
t0 = time.time()
res = search_pose(render, render_photo(LEAK_C2W), INTRINSICS, train, cfg, seed=0)
print("feature-cv trained-scene", pose_errors(res.c2w, LEAK_C2W), time.time() - t0, res.timings)
