"""The geometry pose search on the furnished analytic room (tests/furnished_room.py) with exact depth.

A leaked 48 x 64 photo 63 degrees from every training view; the search gets the photo's pixels, the training poses
and a render, never the pose. Three renders: exact depth only ("geometry"), exact depth + the room's colours through
an unknown gamma + colour mix ("hybrid"), and the existing colour-map search on those colours ("colour-map"). Prints
the chosen pose's error, and the geometry objective of the true pose against the chosen one at 64 px
(docs/results/pose_geometry_tiny/search_furnished.log). From the repository root, with the tests' scene modules on
the path:

    PYTHONPATH=tests OMP_NUM_THREADS=1 python scripts/pose_geometry_furnished_search.py [--positions 48]
"""

import argparse

import torch

from s2nerf_ns.attacks.pose.camera import pose_errors
from s2nerf_ns.attacks.pose.colour_search import search_pose
from s2nerf_ns.attacks.pose.config import GeometrySearchConfig, PoseSearchConfig
from s2nerf_ns.attacks.pose.geometry_search import refine_pose_geometry, score_poses, search_pose_geometry
from s2nerf_ns.bench.common import synced_clock
from analytic_room import INTRINSICS
from furnished_room import LEAK_C2W, furnished_depth, furnished_photo, furnished_render
from steep_views import steep_training_poses

MIX = torch.tensor([[0.7, 0.2, 0.05], [-0.1, 0.8, 0.2], [0.15, -0.05, 0.6]])


def colours(o, d):
    return furnished_render(o, d).clamp_min(1e-4) ** 1.3 @ MIX.T + torch.tensor([0.1, -0.05, 0.2])


def hybrid(o, d):
    return torch.cat([furnished_depth(o, d), colours(o, d)], dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=48, help="positions of the searches' coarse stage")
    positions = parser.parse_args().positions
    torch.set_num_threads(1)
    image, train = furnished_photo(LEAK_C2W), steep_training_poses()
    geo = GeometrySearchConfig(num_positions=positions, panorama_size=(32, 64), num_directions=192, local_iters=6,
                               pyramid_iters=4, pnp_rounds=2)
    for name, render in (("geometry", furnished_depth), ("hybrid", hybrid)):
        start = synced_clock()
        result = search_pose_geometry(render, image, INTRINSICS, train, geo, seed=0)
        table = score_poses(render, image, INTRINSICS, torch.stack([LEAK_C2W, result.c2w]), geo, (64,))[64]
        print(f"{name}: chosen {pose_errors(result.c2w, LEAK_C2W)} ({result.chosen_stage}); objective at 64 px: "
              f"true {float(table[0]):.3f}, chosen {float(table[1]):.3f}; {synced_clock() - start:.0f} s",
              flush=True)
    cfg = PoseSearchConfig(num_positions=positions, panorama_size=(32, 64), num_directions=192, local_iters=6,
                           pyramid_sizes=(16, 32), pyramid_iters=4, refine_steps=0, final_size=48)
    start = synced_clock()
    result = search_pose(colours, image, INTRINSICS, train, cfg, seed=0)
    print(f"colour-map: chosen {pose_errors(result.c2w, LEAK_C2W)}; {synced_clock() - start:.0f} s")
    refine = GeometrySearchConfig(local_size=32, local_rot_deg=3.0, local_iters=6, pyramid_sizes=(32, 64),
                                  pyramid_iters=8, pnp_rounds=3)
    refined = refine_pose_geometry(hybrid, image, INTRINSICS, result.top_c2w[:3], refine, seed=0, step=0.05)
    table = score_poses(hybrid, image, INTRINSICS, torch.stack([LEAK_C2W, refined.c2w]), refine, (64,))[64]
    print(f"colour-map then hybrid refinement: chosen {pose_errors(refined.c2w, LEAK_C2W)}; objective at 64 px: "
          f"true {float(table[0]):.3f}, chosen {float(table[1]):.3f}")


if __name__ == "__main__":
    main()
