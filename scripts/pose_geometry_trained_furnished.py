"""The geometry objective and search through a *trained* split NeRF's geometry (the furnished analytic room).

A tiny client-appearance SplitNerfModel (the s2nerf-plus architecture: the density read-out applies) is trained
in-process on the furnished room (tests/furnished_room.py) from the 24 steep views of tests/steep_views.py, with the
server's DensityReadout observing the gradient channel. Depth at the leaked view from (a) the client's own density
(an upper bound the server does not have) and (b) the read-out, against the exact depth; then the geometry
objective of the true pose against perturbed poses, and the geometry search through the read-out depth
(docs/results/pose_geometry_tiny/trained_furnished.log). From the repository root, with the tests' scene modules
on the path:

    PYTHONPATH=tests OMP_NUM_THREADS=1 python scripts/pose_geometry_trained_furnished.py [--steps 1500]
"""

import argparse

import torch

from s2nerf_ns.attacks.geometry import DensityReadout, HeadDensity, render_density
from s2nerf_ns.attacks.pose.camera import pixel_rays, pose_errors
from s2nerf_ns.attacks.pose.config import GeometrySearchConfig
from s2nerf_ns.attacks.pose.geometry_search import score_poses, search_pose_geometry
from s2nerf_ns.bench.common import synced_clock
from s2nerf_ns.integration.model import SplitNerfModelConfig
from s2nerf_ns.protocol.rendering import VolumeRenderer
from s2nerf_ns.protocol.server import ServerFieldConfig
from analytic_room import H, INTRINSICS, W, single_thread
from furnished_room import LEAK_C2W, furnished_depth, furnished_photo, furnished_render, perturbed
from steep_views import steep_view_model, train_on_steep_views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps of the tiny split model")
    steps = parser.parse_args().steps
    server = ServerFieldConfig(num_levels=8, max_res=128, log2_hashmap_size=14, num_samples=16, hidden_dim=32,
                               near_plane=0.0)
    model = steep_view_model(SplitNerfModelConfig(server=server, color_hidden_dim=32, run_seed=42, run_steps=steps,
                                                  client_appearance=True))
    readout = DensityReadout(model.client_head.in_dim)
    model.channel.add_observer(readout.observe)  # SERVER: what it receives
    start = synced_clock()
    train_c2w = train_on_steep_views(model, furnished_render, steps)
    print(f"trained {steps} steps in {synced_clock() - start:.0f} s", flush=True)
    readout.fit(model.server.embed)
    renderer = VolumeRenderer("last_sample")
    client = HeadDensity(model.client_head)

    @torch.no_grad()
    def client_depth(o, d):
        h, bins = model.server.embed(o, d)
        return render_density(renderer, client, h, o, d, bins)["depth"]

    @torch.no_grad()
    def readout_depth(o, d):
        h, bins = model.server.embed(o, d)
        return readout.render(h, o, d, bins)["depth"]

    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    o, d = pixel_rays(LEAK_C2W, *INTRINSICS, rows.reshape(-1), cols.reshape(-1))
    exact = furnished_depth(o, d)
    for name, fn in (("client", client_depth), ("readout", readout_depth)):
        rel = ((fn(o, d) - exact).abs() / exact).median()
        print(f"{name} depth at the leaked view: median abs-rel {float(rel):.4f}", flush=True)
    image = furnished_photo(LEAK_C2W)
    poses = torch.cat([LEAK_C2W[None], perturbed(2.0, 0.0, 8, 1), perturbed(8.0, 0.0, 8, 2),
                       perturbed(0.0, 0.05, 8, 3), perturbed(0.0, 0.2, 8, 4)])
    for name, fn in (("exact", furnished_depth), ("client", client_depth), ("readout", readout_depth)):
        with single_thread():
            table = score_poses(fn, image, INTRINSICS, poses, sizes=(16, 32, 64))
        print(name, {s: [round(float(v[0]), 3)] + [round(float(v[1 + 8 * k:9 + 8 * k].mean()), 3) for k in range(4)]
                     for s, v in table.items()}, "(true; rot 2, rot 8 deg; shift 0.05, 0.2: means)", flush=True)
    cfg = GeometrySearchConfig(panorama_size=(32, 64), num_directions=192, local_iters=6, pyramid_iters=4, pnp_rounds=2)
    start = synced_clock()
    with single_thread():
        result = search_pose_geometry(readout_depth, image, INTRINSICS, train_c2w, cfg, seed=0)
    print(f"geometry search (read-out depth): {pose_errors(result.c2w, LEAK_C2W)}, {result.rays_rendered} rays, "
          f"{synced_clock() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
