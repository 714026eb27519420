# feature-cv objective through the trained split model of tests/test_pose_search_trained.py (the victim head's colour
# activations composited, as SurrogateAttacker.render_features does); run from the repository root:
#   python docs/results/pose_fullres_cpu/trained_scene/feature_cv.py
import sys, os, time, math, torch
sys.path.insert(0, "tests")
from test_pose_search_trained import *
from test_pose_search_trained import trained_room as fixture
from s2nerf_ns.protocol.rendering import samples_from_bins
torch.set_num_threads(1)
model, train = fixture.__wrapped__() if hasattr(fixture, "__wrapped__") else fixture.__pytest_wrapped__.obj()
mix = torch.tensor([[0.7, 0.2, 0.05], [-0.1, 0.8, 0.2], [0.15, -0.05, 0.6]])
head = model.client_head
def feats(h, origins, directions, bins):
    samples = samples_from_bins(origins, directions, bins)
    density, hidden = head.colour_features(h, samples.frustums.directions)
    weights = samples.get_weights(density)
    rgb = model.renderer.rgb(rgb=head.rgb_from_features(hidden), weights=weights).clamp(1e-4, 1) ** 1.3 @ mix.T
    return torch.cat([rgb, (weights * hidden).sum(dim=1), weights.sum(dim=1)], dim=-1)
model.server_renders["feat"] = feats
@torch.no_grad()
def render(o, d):
    return model(bundle(o, d, torch.zeros(len(o), dtype=torch.long)))["feat"]
cfg = PoseSearchConfig(objective="feature-cv", num_positions=24, panorama_size=(32, 64), num_directions=192,
                       local_iters=6, pyramid_sizes=(16, 32), pyramid_iters=4, refine_steps=0, final_size=48)
t0 = time.time()
res = search_pose(render, render_photo(LEAK_C2W), INTRINSICS, train, cfg, seed=0)
print("feature-cv trained-scene", pose_errors(res.c2w, LEAK_C2W), time.time() - t0, res.timings)
