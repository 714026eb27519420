"""The global pose search through a *trained* split NeRF (issue 14): a leaked view 60-120 degrees from every training
view is recovered to within a few degrees.

The scene is the analytic room of ``analytic_room.py``. A tiny ``SplitNerfModel`` (server field + client head,
joined by the gradient channel) is trained on 24 wide-angle views that all look steeply up or down (pitch +-65
degrees, from below and above the room's middle), so together they see every wall but none of them looks the way the
leaked photo does (nearly level). The search sees the trained model's colours through an unknown gamma + colour mix,
as the server sees the surrogate's after the surrogate model attack, and the photo's pixels; never its pose.
"""

from __future__ import annotations

import math

import pytest
import torch

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from s2nerf_ns.attacks.pose import pixel_rays, pose_errors
from s2nerf_ns.attacks.pose_search import PoseSearchConfig, rotation_angle_deg, search_pose
from s2nerf_ns.integration.model import RAY_INDICES_KEY, SplitNerfModelConfig
from analytic_room import H, INTRINSICS, W, look_at, render_photo, room_render, single_thread, yaw_pitch

WIDE = (24.0, 24.0, 32.0, 24.0)
"""Training intrinsics (fx, fy, cx, cy) at H x W: 106 x 90 degrees, so steep views still see the walls."""
LEAK_C2W = look_at((-0.1, -0.04, 0.12), yaw_pitch(95.0, 2.0), roll_deg=5.0)
STEPS, RAYS = 1500, 1024


def steep_training_poses(n: int = 24) -> torch.Tensor:
    """Cameras on a ring of radius 0.5: even ones low (y = -0.45) looking 65 degrees up, odd ones high looking 65
    degrees down, their yaws going round the room."""
    poses = []
    for i in range(n):
        th = 2 * math.pi * i / n
        up = i % 2 == 0
        centre = (0.5 * math.cos(th), -0.45 if up else 0.45, 0.5 * math.sin(th))
        yaw = 360.0 * (i // 2) / (n // 2) + (15.0 if up else 0.0)
        poses.append(look_at(centre, yaw_pitch(yaw, 65.0 if up else -65.0)))
    return torch.stack(poses)


def bundle(origins: torch.Tensor, directions: torch.Tensor, camera: torch.Tensor, metadata=None) -> RayBundle:
    """Rays [R,3] of cameras ``camera`` [R] as the model takes them."""
    return RayBundle(origins=origins, directions=directions, pixel_area=torch.full_like(origins[:, :1], 1e-6),
                     camera_indices=camera[:, None], metadata=metadata or {})


@pytest.fixture(scope="module")
def trained_room():
    """The split model trained on the steep views (1,500 steps of 1024 rays; about a minute on one CPU thread)."""
    train_c2w = steep_training_poses()
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    rays = [pixel_rays(c2w, *WIDE, rows.reshape(-1), cols.reshape(-1)) for c2w in train_c2w]
    origins, directions = torch.cat([o for o, _ in rays]), torch.cat([d for _, d in rays])
    pixels = room_render(origins, directions)
    torch.manual_seed(0)
    config = SplitNerfModelConfig(num_levels=8, max_res=128, log2_hashmap_size=14, num_samples=16, hidden_dim=32,
                                  color_hidden_dim=32, near_plane=0.0, run_seed=42, run_steps=STEPS)
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])),
                         num_train_data=len(train_c2w))
    optimizers = [torch.optim.Adam(group, lr=1e-2, eps=1e-15) for group in model.get_param_groups().values()]
    gen = torch.Generator().manual_seed(0)
    model.train()
    with single_thread():
        for step in range(STEPS):
            model.channel.step = step
            idx = torch.randint(0, len(origins), (RAYS,), generator=gen)
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
    return model, train_c2w


def test_leaked_view_is_60_to_120_degrees_from_the_nearest_training_view():
    angles = rotation_angle_deg(steep_training_poses()[:, :, :3], LEAK_C2W[:, :3])
    assert 60.0 <= float(angles.min()) <= 120.0


def test_search_through_a_trained_split_nerf_recovers_the_off_trajectory_view(trained_room):
    model, train = trained_room
    mix = torch.tensor([[0.7, 0.2, 0.05], [-0.1, 0.8, 0.2], [0.15, -0.05, 0.6]])

    @torch.no_grad()
    def server_render(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """The trained model's colours through an unknown tone curve and colour mix (as a surrogate's)."""
        camera = torch.zeros(len(origins), dtype=torch.long)
        rgb = model(bundle(origins, directions, camera))["rgb"].clamp(1e-4, 1.0) ** 1.3
        return rgb @ mix.T + torch.tensor([0.1, -0.05, 0.2])

    # The model is good where the photo looks (it was never trained on this view): the search's input is sound.
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    o, d = pixel_rays(LEAK_C2W, *INTRINSICS, rows.reshape(-1), cols.reshape(-1))
    with torch.no_grad():
        learned = model(bundle(o, d, torch.zeros(len(o), dtype=torch.long)))["rgb"]
    psnr = float(-10 * torch.log10((learned - room_render(o, d)).pow(2).mean()))
    assert psnr > 25.0
    # A CPU-sized search (the default one renders ~6M rays: minutes through a NeRF on one thread).
    cfg = PoseSearchConfig(num_positions=24, panorama_size=(32, 64), num_directions=192, local_iters=6,
                           pyramid_sizes=(16, 32), pyramid_iters=4, refine_steps=0, final_size=48)
    with single_thread():
        result = search_pose(server_render, render_photo(LEAK_C2W), INTRINSICS, train, cfg, seed=0)
    errors = pose_errors(result.c2w, LEAK_C2W)  # scored here; the search never saw LEAK_C2W
    print("trained-scene search: psnr at the leaked view", psnr, "errors", errors, "timings", result.timings)
    assert errors["rotation_error_deg"] <= 3.0 and errors["translation_error"] <= 0.05
