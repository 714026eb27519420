"""Issue 25 record: the geometry objective and search through a *trained* split NeRF's geometry.

A tiny client-appearance SplitNerfModel (the s2nerf-plus architecture: the density read-out applies) is trained
in-process on the furnished room (tests/furnished_room.py) from the 24 steep views of test_pose_search_trained.py,
with the server's DensityReadout observing the gradient channel. Depth at the leaked view from (a) the client's own
density (an upper bound the server does not have) and (b) the read-out, against the exact depth; then the geometry
objective of the true pose against perturbed poses, and the geometry and hybrid searches (read-out depth).

    OMP_NUM_THREADS=1 python docs/results/pose_geometry_tiny/trained_furnished.py [steps]
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from analytic_room import H, INTRINSICS, W, single_thread  # noqa: E402
from furnished_room import LEAK_C2W, furnished_depth, furnished_photo, furnished_render  # noqa: E402
from test_pose_search_trained import WIDE, bundle, steep_training_poses  # noqa: E402
from test_pose_geometry import perturbed  # noqa: E402

from nerfstudio.data.scene_box import SceneBox  # noqa: E402

from s2nerf_ns.attacks.geometry import DensityReadout, HeadDensity, render_density  # noqa: E402
from s2nerf_ns.attacks.pose import pixel_rays, pose_errors  # noqa: E402
from s2nerf_ns.attacks.pose_geometry import GeometrySearchConfig, score_poses, search_pose_geometry  # noqa: E402
from s2nerf_ns.integration.model import RAY_INDICES_KEY, SplitNerfModelConfig  # noqa: E402
from s2nerf_ns.protocol.rendering import VolumeRenderer  # noqa: E402


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    train_c2w = steep_training_poses()
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    rays = [pixel_rays(c2w, *WIDE, rows.reshape(-1), cols.reshape(-1)) for c2w in train_c2w]
    origins, directions = torch.cat([o for o, _ in rays]), torch.cat([d for _, d in rays])
    pixels = furnished_render(origins, directions)
    torch.manual_seed(0)
    config = SplitNerfModelConfig(num_levels=8, max_res=128, log2_hashmap_size=14, num_samples=16, hidden_dim=32,
                                  color_hidden_dim=32, near_plane=0.0, run_seed=42, run_steps=steps,
                                  client_appearance=True)
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=len(train_c2w))
    readout = DensityReadout(model.client_head.in_dim)
    model.channel.add_observer(readout.observe)  # SERVER: what it receives
    optimizers = [torch.optim.Adam(g, lr=1e-2, eps=1e-15) for g in model.get_param_groups().values()]
    gen = torch.Generator().manual_seed(0)
    model.train()
    start = time.perf_counter()
    with single_thread():
        for step in range(steps):
            model.channel.step = step
            idx = torch.randint(0, len(origins), (1024,), generator=gen)
            image, pixel = idx // (H * W), idx % (H * W)
            indices = torch.stack([image, pixel // W, pixel % W], dim=-1)
            out = model(bundle(origins[idx], directions[idx], image, {RAY_INDICES_KEY: indices}))
            loss = sum(model.get_loss_dict(out, {"image": pixels[idx], "indices": indices}).values())
            for opt in optimizers:
                opt.zero_grad()
            loss.backward()
            for opt in optimizers:
                opt.step()
    model.eval()
    print(f"trained {steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
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
    start = time.perf_counter()
    with single_thread():
        result = search_pose_geometry(readout_depth, image, INTRINSICS, train_c2w, cfg, seed=0)
    print(f"geometry search (read-out depth): {pose_errors(result.c2w, LEAK_C2W)}, {result.rays_rendered} rays, "
          f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
