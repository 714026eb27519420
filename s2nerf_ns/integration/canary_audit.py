"""Run the canary audit (:mod:`s2nerf_ns.evaluation.canary`) on a split model: plant, train, distinguish.

The victim is the real :class:`~s2nerf_ns.integration.model.SplitNerfModel` (server fields, gradient channel with
the configured defense, client head) trained on a fixed set of training pixels: one ray each, drawn uniformly
with replacement every step, like nerfstudio's pixel sampler. The white-box reader sits on the channel as an
observer and sees exactly what the server receives.
"""

from __future__ import annotations

from typing import Dict

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio.cameras.rays import RayBundle

from s2nerf_ns.evaluation.canary import CanaryReader, Canaries, audit_result
from s2nerf_ns.integration.model import RAY_INDICES_KEY, SplitNerfModel


def train_with_canaries(
    model: SplitNerfModel,
    origins: Float[Tensor, "P 3"],
    directions: Float[Tensor, "P 3"],
    colours: Float[Tensor, "P 3"],
    canaries: Canaries,
    steps: int,
    rays_per_step: int,
    seed: int = 0,
    lr: float = 1e-2,
) -> Dict[str, object]:
    """Train ``model`` on the pixels with the canaries planted; return the audit and the accountant's report.

    Pixel ``i`` has ray indices ``(0, i, 0)``: what the server is told of a ray, and how the reader finds it."""
    num_pixels = len(colours)
    planted = canaries.planted(colours)
    reader = CanaryReader(model.client_head, model.renderer, canaries, lambda view: view.ray_indices[:, 1])
    model.channel.add_observer(reader)
    model.channel.defense.training_pixels = num_pixels
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-15)
    sampler = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        picked = torch.randint(0, num_pixels, (rays_per_step,), generator=sampler)
        bundle = RayBundle(origins=origins[picked], directions=directions[picked],
                           pixel_area=torch.full((rays_per_step, 1), 1e-4),
                           camera_indices=torch.zeros(rays_per_step, 1, dtype=torch.long), metadata={})
        bundle.metadata[RAY_INDICES_KEY] = torch.stack(
            [torch.zeros_like(picked), picked, torch.zeros_like(picked)], dim=-1)
        model.step = model.channel.step = step
        outputs = model(bundle)
        loss = model.get_loss_dict(outputs, {"image": planted[picked]})["rgb_loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.channel.observers.remove(reader)
    return {"audit": audit_result(reader, model.channel.defense.config.dp_delta),
            "accountant": model.channel.defense.privacy()}
