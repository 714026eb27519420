"""Global pose search on a tiny *trained* split model (issue 14): the server's embeddings come from a split NeRF
trained on the analytic textured room of ``test_pose_search``; the leaked photo is 60-120 degrees away from every
training view; the search sees only the attacker's per-ray features (an untrained surrogate head on the server's own
embeddings: no colour knowledge at all), the photo's pixels, the training poses and the scene box."""

from __future__ import annotations

import math

import pytest
import torch

from nerfstudio.cameras.rays import RayBundle

from conftest import tiny_model
from s2nerf_ns.attacks.pose import pixel_rays, pose_errors
from s2nerf_ns.attacks.pose_search import attack_search_config, search_pose
from s2nerf_ns.attacks.surrogate import SurrogateAttackConfig
from s2nerf_ns.integration.model import RAY_INDICES_KEY
from s2nerf_ns.attacks.pose_search_parts import rotation_angle_deg
from test_pose_search import H, INTRINSICS, LEAK_C2W, W, look_at, render_photo, room_render, single_thread


def training_views(n: int = 40, seed: int = 0) -> torch.Tensor:
    """Random cameras inside the room whose rotations are 60-120 degrees from the leaked photo's."""
    gen = torch.Generator().manual_seed(seed)
    poses = []
    while len(poses) < n:
        centre = ((torch.rand(3, generator=gen) - 0.5) * 1.0).tolist()
        forward = torch.nn.functional.normalize(torch.randn(3, generator=gen), dim=0)
        if abs(float(forward[1])) > 0.8:
            continue
        c2w = look_at(centre, forward.tolist(), roll_deg=float(torch.randn(1, generator=gen)) * 10.0)
        angle = float(rotation_angle_deg(c2w[:, :3], LEAK_C2W[:, :3]))
        if 60.0 <= angle <= 120.0:
            poses.append(c2w)
    return torch.stack(poses)


def train_split_model(train_c2w: torch.Tensor, steps: int, rays: int = 1024):
    model = tiny_model(num_levels=8, max_res=128, log2_hashmap_size=14, num_samples=16)
    groups = model.get_param_groups()
    opts = [torch.optim.Adam(v, lr=1e-2, eps=1e-15) for v in groups.values()]
    gen = torch.Generator().manual_seed(1)
    fx, fy, cx, cy = INTRINSICS
    model.train()
    for step in range(steps):
        model.channel.step = step
        cam = torch.randint(0, len(train_c2w), (rays,), generator=gen)
        rows, cols = torch.randint(0, H, (rays,), generator=gen), torch.randint(0, W, (rays,), generator=gen)
        o, d = [], []
        for c in cam.unique().tolist():
            sel = cam == c
            oc, dc = pixel_rays(train_c2w[c], fx, fy, cx, cy, rows[sel], cols[sel])
            o.append(oc)
            d.append(dc)
        o, d = torch.cat(o), torch.cat(d)
        bundle = RayBundle(origins=o, directions=d, pixel_area=torch.full((rays, 1), 1e-4),
                           camera_indices=torch.zeros(rays, 1, dtype=torch.long), metadata={})
        indices = torch.stack([torch.zeros(rays, dtype=torch.long), rows % 8, cols % 8], dim=-1)
        bundle.metadata[RAY_INDICES_KEY] = indices
        batch = {"image": room_render(o, d), "indices": indices}
        loss = sum(model.get_loss_dict(model(bundle), batch).values())
        for opt in opts:
            opt.zero_grad()
        loss.backward()
        for opt in opts:
            opt.step()
    model.eval()
    return model, float(loss)


def test_search_on_a_trained_split_model_recovers_a_view_far_from_every_training_view():
    train_c2w = training_views()
    angles = rotation_angle_deg(train_c2w[:, :3], LEAK_C2W[:, :3])
    assert float(angles.min()) >= 60.0 and float(angles.max()) <= 120.0
    with single_thread():
        torch.manual_seed(0)
        model, loss = train_split_model(train_c2w, steps=300)
        surrogate = SurrogateAttackConfig().setup(num_images=1, image_height=H, image_width=W,
                                                  head_kwargs=model.client_architecture(),
                                                  background_color=model.config.background_color, max_steps=1)

        def features(origins, directions):  # what the server has: its fields and its own (untrained) head
            h, bins = model.server.embed(origins, directions)
            return surrogate.render_features(h, origins, directions, bins)

        image = render_photo(LEAK_C2W)
        box = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
        cfg = attack_search_config(num_positions=64, gradient_weight=0.0)
        with torch.no_grad():
            result = search_pose(features, image, INTRINSICS, train_c2w, cfg, seed=0, region=box)
    errors = pose_errors(result.c2w, LEAK_C2W)
    print("trained split model: final training loss", loss, "search errors", errors, "timings", result.timings)
    assert errors["rotation_error_deg"] <= 3.0 and errors["translation_error"] <= 0.05
