"""SERVER SIDE (attacker): estimating the pose of a leaked photo from what the server has.

Retrieval over the training poses the server was sent, then iNeRF-style refinement of an SE(3) correction
by gradient descent on a colour-invariant photometric loss, rendering through the server's own fields and
the attacker's surrogate head."""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from s2nerf_ns.attacks.pose.camera import apply_correction, pixel_rays
from s2nerf_ns.attacks.pose.views import RenderFn


def affine_invariant_mse(pred: Float[Tensor, "N 3"], target: Float[Tensor, "N 3"]) -> Tensor:
    """MSE after the best affine colour map of ``pred`` onto ``target`` (differentiable)."""
    x = torch.cat([pred, torch.ones_like(pred[:, :1])], dim=-1)
    gram = x.T @ x + 1e-4 * torch.eye(4, device=pred.device)
    coef = torch.linalg.solve(gram, x.T @ target)
    return (x @ coef - target).pow(2).mean()


@torch.no_grad()
def retrieve_pose(
    render: RenderFn, image: Float[Tensor, "H W 3"], candidates: Float[Tensor, "N 3 4"],
    intrinsics: Sequence[float], stride: int = 4,
) -> Tuple[int, Tensor]:
    """Index of the candidate pose whose (subsampled) render best matches the image, colour-invariantly."""
    fx, fy, cx, cy = intrinsics
    rows, cols = torch.meshgrid(torch.arange(0, image.shape[0], stride), torch.arange(0, image.shape[1], stride),
                                indexing="ij")
    rows, cols = rows.reshape(-1).to(image.device), cols.reshape(-1).to(image.device)
    target = image[rows, cols]
    scores = []
    for c2w in candidates:
        o, d = pixel_rays(c2w, fx, fy, cx, cy, rows, cols)
        scores.append(float(affine_invariant_mse(render(o, d), target)))
    best = int(torch.tensor(scores).argmin())
    return best, torch.tensor(scores)


def refine_pose(
    render: RenderFn, image: Float[Tensor, "H W 3"], init_c2w: Float[Tensor, "3 4"], intrinsics: Sequence[float],
    steps: int = 200, lr: float = 5e-3, rays_per_step: int = 1024, seed: int = 0, colour_invariant: bool = True,
    jitter: bool = False,
) -> Tensor:
    """iNeRF: optimise a left-multiplied SE(3) correction of ``init_c2w`` on random pixels of the image.

    ``jitter``: cast each ray through a uniformly random point of its pixel instead of the pixel centre, so that in
    expectation the render is averaged over the pixel's area like the photo's pixel (less aliasing bias)."""
    fx, fy, cx, cy = intrinsics
    gen = torch.Generator().manual_seed(seed)
    tangent = torch.zeros(1, 6, device=image.device, requires_grad=True)
    opt = torch.optim.Adam([tangent], lr=lr)
    h, w = image.shape[:2]
    centre = init_c2w[:, 3].detach()
    for _ in range(steps):
        rows = torch.randint(h, (rays_per_step,), generator=gen).to(image.device)
        cols = torch.randint(w, (rays_per_step,), generator=gen).to(image.device)
        c2w = apply_correction(tangent, init_c2w, centre)
        if jitter:  # pixel_rays adds 0.5: offsets in [-0.5, 0.5) cover the pixel
            offsets = torch.rand(2, rays_per_step, generator=gen).to(image.device) - 0.5
            o, d = pixel_rays(c2w, fx, fy, cx, cy, rows + offsets[0], cols + offsets[1])
        else:
            o, d = pixel_rays(c2w, fx, fy, cx, cy, rows, cols)
        pred, target = render(o, d), image[rows, cols]
        loss = affine_invariant_mse(pred, target) if colour_invariant else (pred - target).pow(2).mean()
        opt.zero_grad()
        # Only the pose correction gets a gradient: nothing accumulates in the server's or head's parameters.
        (tangent.grad,) = torch.autograd.grad(loss, [tangent])
        opt.step()
    return apply_correction(tangent.detach(), init_c2w, centre)
