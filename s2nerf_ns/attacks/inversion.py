"""SERVER SIDE (attacker): the learned inversion of geometry into grayscale views (after ppNeSF, arXiv 2508.18971).

A curious server that holds a room's geometry (the density read-out's depth, :mod:`s2nerf_ns.attacks.geometry`) can
learn what rooms *look like* from public data: other rooms, with their photos and geometry. This attack trains a
small convolutional network on such public rooms (never the victim's) to map geometry images to grayscale photos,
then applies it to the geometry it reads out of the victim's room.

Input features per pixel (:func:`geometry_features`): the depth divided by the image's median depth, the normals in
the camera frame (from the depth map, :func:`normals_from_depth`) and the shading attack's three channels
(:func:`~s2nerf_ns.attacks.geometry.shade`). The same function builds them from the public rooms' depth and from the
read-out's depth, so training and use see the same kind of input. The network is CPU-sized (four 3 x 3 convolutions,
dilated for context) and its training is bounded in steps and seconds.

The attacker's training data are tensors handed over by whoever builds it (the public rooms' pixels and depth);
this module reads no dataset and nothing of the victim. ``public_rooms`` records which rooms it was trained on.
"""

from __future__ import annotations

import time
from typing import List, Sequence, Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

from s2nerf_ns.attacks.geometry import shade

NUM_FEATURES = 7
"""Depth / median depth, camera-frame normal (3), shading (3)."""


def normals_from_depth(depth: Float[Tensor, "H W"], origins: Float[Tensor, "H W 3"],
                       directions: Float[Tensor, "H W 3"]) -> Float[Tensor, "H W 3"]:
    """World normals of the surface ``o + t d`` seen by a depth map (distance along unit rays): the cross product
    of its central differences along the image axes, turned towards the camera."""
    p = origins + depth[..., None] * directions
    pad = nn.functional.pad(p.permute(2, 0, 1)[None], (1, 1, 1, 1), mode="replicate")[0].permute(1, 2, 0)
    dx = pad[1:-1, 2:] - pad[1:-1, :-2]
    dy = pad[2:, 1:-1] - pad[:-2, 1:-1]
    n = nn.functional.normalize(torch.cross(dx, dy, dim=-1), dim=-1)
    return torch.where((n * directions).sum(-1, keepdim=True) > 0, -n, n)


def geometry_features(depth: Float[Tensor, "H W"], origins: Float[Tensor, "H W 3"], directions: Float[Tensor, "H W 3"],
                      c2w: Float[Tensor, "3 4"]) -> Float[Tensor, "C H W"]:
    """The network's input for one view: depth / median depth, camera-frame normals, the shading attack's channels."""
    depth = torch.nan_to_num(depth.float(), nan=0.0).clamp_min(0)
    scale = float(depth.median().clamp_min(1e-6))
    normals = normals_from_depth(depth, origins.float(), directions.float())
    camera = normals @ c2w[:3, :3].float().to(normals)  # world -> camera frame (rotation transpose)
    shading = shade(normals.reshape(-1, 3), directions.reshape(-1, 3).float(), depth.reshape(-1, 1), scale)
    feats = torch.cat([(depth / scale)[..., None], camera, shading.reshape(*depth.shape, 3)], dim=-1)
    return feats.permute(2, 0, 1)


class InversionNet(nn.Module):
    """Geometry features [B, 7, H, W] -> grayscale [B, 1, H, W] in [0, 1]."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        dims = [NUM_FEATURES, width, width, width]
        for i, dilation in enumerate((1, 2, 4)):
            layers += [nn.Conv2d(dims[i], dims[i + 1], 3, padding=dilation, dilation=dilation, padding_mode="replicate"),
                       nn.ReLU()]
        layers.append(nn.Conv2d(width, 1, 3, padding=1, padding_mode="replicate"))
        self.net = nn.Sequential(*layers)

    def forward(self, feats: Tensor) -> Tensor:
        return torch.sigmoid(self.net(feats))


class InversionAttack(nn.Module):
    """The learned inversion: train on public rooms (:meth:`fit`), then render grayscale views (:meth:`render`)."""

    def __init__(self, width: int = 32, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = InversionNet(width)
        self.seed = int(seed)
        self.public_rooms: List[str] = []
        """The rooms it was trained on (the victim's is never among them: the builder's job, checked by the tests)."""
        self.register_buffer("trained_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("train_loss", torch.full((), float("nan")))

    @property
    def is_trained(self) -> bool:
        return int(self.trained_steps) > 0

    def fit(self, examples: Sequence[Tuple[Tensor, Tensor]], rooms: Sequence[str], steps: int = 400,
            seconds: float = 60.0, lr: float = 3e-3, batch: int = 8) -> "InversionAttack":
        """Train on ``(features [7, H, W], luminance [H, W])`` pairs of public rooms, at most ``steps`` Adam steps
        and ``seconds`` of wall time."""
        if not examples:
            raise ValueError("the learned inversion needs public training views")
        self.public_rooms = list(rooms)
        device = next(self.net.parameters()).device
        gen = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        start, step, loss = time.perf_counter(), 0, torch.zeros(())
        with torch.enable_grad():
            while step < steps and time.perf_counter() - start < seconds:
                pick = torch.randint(len(examples), (min(batch, len(examples)),), generator=gen).tolist()
                shape = examples[pick[0]][0].shape[1:]
                chosen = [examples[i] for i in pick if examples[i][0].shape[1:] == shape]
                x = torch.stack([f for f, _ in chosen]).to(device)
                y = torch.stack([g for _, g in chosen])[:, None].to(device)
                if bool(torch.rand((), generator=gen) < 0.5):  # a mirrored room is still a room
                    x, y = x.flip(-1), y.flip(-1)
                    x[:, 1] = -x[:, 1]  # the camera-frame normal's x flips with the image
                loss = (self.net(x) - y).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
        self.trained_steps.fill_(step)
        self.train_loss.fill_(float(loss.detach()))
        return self

    @torch.no_grad()
    def render(self, feats: Float[Tensor, "C H W"]) -> Float[Tensor, "H W 3"]:
        """The grayscale view the network predicts from one view's geometry features."""
        device = next(self.net.parameters()).device
        gray = self.net(feats[None].to(device))[0, 0]
        return gray[..., None].expand(-1, -1, 3).contiguous()
