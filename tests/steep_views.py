"""Steep training views of the analytic rooms, and a split model trained on them (the trained-scene pose tests and
the pose scripts of docs/results/ use the same views and the same training).

24 wide-angle views that all look steeply up or down (pitch +-65 degrees, from below and above the room's middle): together
they see every wall, but none of them looks the way a nearly level leaked photo does.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from s2nerf_ns.attacks.pose.camera import pixel_rays
from s2nerf_ns.integration.model import RAY_INDICES_KEY, SplitNerfModelConfig
from s2nerf_ns.protocol.server import ServerFieldConfig
from analytic_room import H, W, look_at, room_render, single_thread, yaw_pitch

WIDE = (24.0, 24.0, 32.0, 24.0)
"""Training intrinsics (fx, fy, cx, cy) at H x W: 106 x 90 degrees, so steep views still see the walls."""
ANALYTIC_LEAK_C2W = look_at((-0.1, -0.04, 0.12), yaw_pitch(95.0, 2.0), roll_deg=5.0)
"""The analytic room's leaked view: nearly level, 60-120 degrees from every steep view."""


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


def steep_view_model(config: SplitNerfModelConfig):
    """The split model of ``config`` in the unit box, for the steep views (torch seeded 0 first)."""
    torch.manual_seed(0)
    return config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])),
                        num_train_data=len(steep_training_poses()))


def train_on_steep_views(model, render: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], steps: int,
                         rays: int = 1024) -> torch.Tensor:
    """Train ``model`` in process (Adam, lr 1e-2) for ``steps`` batches of ``rays`` pixels drawn from the steep views
    rendered by ``render`` (origins, directions -> rgb), on one thread; returns the training poses (the model is left
    in eval mode)."""
    train_c2w = steep_training_poses()
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    all_rays = [pixel_rays(c2w, *WIDE, rows.reshape(-1), cols.reshape(-1)) for c2w in train_c2w]
    origins, directions = torch.cat([o for o, _ in all_rays]), torch.cat([d for _, d in all_rays])
    pixels = render(origins, directions)
    optimizers = [torch.optim.Adam(group, lr=1e-2, eps=1e-15) for group in model.get_param_groups().values()]
    gen = torch.Generator().manual_seed(0)
    model.train()
    with single_thread():
        for step in range(steps):
            model.channel.step = step
            idx = torch.randint(0, len(origins), (rays,), generator=gen)
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
    return train_c2w


def trained_analytic_room(steps: int = 1500, rays: int = 1024):
    """(model, training poses): the tiny split model trained on the analytic room's steep views (1,500 steps of 1024
    rays: about a minute on one CPU thread)."""
    server = ServerFieldConfig(num_levels=8, max_res=128, log2_hashmap_size=14, num_samples=16, hidden_dim=32,
                               near_plane=0.0)
    model = steep_view_model(SplitNerfModelConfig(server=server, color_hidden_dim=32, run_seed=42, run_steps=steps))
    return model, train_on_steep_views(model, room_render, steps, rays)
