"""The ``feature-cv`` pose search through a trained split NeRF: the leaked view of the analytic room recovered from
the trained model's colour activations (the victim head's, composited as ``SurrogateAttacker.render_features``
does, colours through an unknown tone curve and colour mix). The model and the views are those of
tests/test_pose_search_trained.py (tests/steep_views.py); the search is the same CPU-sized one. Prints the pose
error, the seconds and the stages' timings (docs/results/pose_fullres_cpu/trained_scene/feature_cv.txt). From the
repository root, with the tests' scene modules on the path (about 4 minutes on one thread):

    PYTHONPATH=tests python scripts/pose_trained_scene_feature_cv.py
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch

from s2nerf_ns.attacks.pose.camera import pose_errors
from s2nerf_ns.attacks.pose.colour_search import search_pose
from s2nerf_ns.attacks.pose.config import PoseSearchConfig
from s2nerf_ns.attacks.surrogate import SurrogateAttacker
from analytic_room import INTRINSICS, render_photo
from steep_views import ANALYTIC_LEAK_C2W, bundle, trained_analytic_room

MIX = torch.tensor([[0.7, 0.2, 0.05], [-0.1, 0.8, 0.2], [0.15, -0.05, 0.6]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps of the split model")
    steps = parser.parse_args().steps
    torch.set_num_threads(1)
    model, train = trained_analytic_room(steps)
    victim_as_surrogate = SimpleNamespace(head=model.client_head, renderer=model.renderer)

    def features(h, origins, directions, bins):  # the victim's head as the surrogate's; its rgb distorted
        out = SurrogateAttacker.render_features(victim_as_surrogate, h, origins, directions, bins)
        return torch.cat([out[:, :3].clamp(1e-4, 1) ** 1.3 @ MIX.T, out[:, 3:]], dim=-1)

    model.register_server_render("feat", features)

    @torch.no_grad()
    def render(origins, directions):
        return model(bundle(origins, directions, torch.zeros(len(origins), dtype=torch.long)))["feat"]

    cfg = PoseSearchConfig(objective="feature-cv", num_positions=24, panorama_size=(32, 64), num_directions=192,
                           local_iters=6, pyramid_sizes=(16, 32), pyramid_iters=4, refine_steps=0, final_size=48)
    start = time.time()
    result = search_pose(render, render_photo(ANALYTIC_LEAK_C2W), INTRINSICS, train, cfg, seed=0)
    print("feature-cv trained-scene", pose_errors(result.c2w, ANALYTIC_LEAK_C2W), time.time() - start, result.timings)


if __name__ == "__main__":
    main()
