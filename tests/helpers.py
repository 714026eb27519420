"""Build and train registered methods in-process on a tiny room (CPU, seconds), and the synthetic split
scene the attacker unit tests share."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from nerfstudio.engine.trainer import TrainerConfig

from s2nerf_ns.bench.common import Preset, sized_config
from s2nerf_ns.integration.methods import method_config


def tiny_config(method: str, out_dir: Path, steps: int = 20, rays: int = 256, **model_overrides) -> TrainerConfig:
    preset = Preset(resolution=24, spp=2, num_views=16, steps=steps, rays=rays, num_samples=16, num_levels=4,
                    max_res=64, log2_hashmap_size=12, post_training_steps=10, replay_steps=5)
    config = sized_config(method_config(method), preset, "office", out_dir, method)
    config.machine.device_type = "cpu"
    config.pipeline.datamanager.dataparser.num_extra_views = 2
    config.pipeline.model.eval_num_rays_per_chunk = 1024
    for key, value in model_overrides.items():
        setattr(config.pipeline.model, key, value)
    return config


def train(config: TrainerConfig):
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return trainer


TINY_HEAD = dict(encoding_dim=8, hidden_dim=16, num_density_layers=2, geo_feat_dim=7, cut_depth=1, sh_levels=2,
                 color_hidden_dim=16, num_color_layers=2)
"""Client-head architecture of the synthetic attack tests."""


class SyntheticRays(NamedTuple):
    pos: torch.Tensor
    h: torch.Tensor
    y: torch.Tensor
    origins: torch.Tensor
    dirs: torch.Tensor
    bins: torch.Tensor
    idx: torch.Tensor


def synthetic_rays(num_rays: int, num_samples: int = 12, dead_units: int = 0, width: int = 16) -> SyntheticRays:
    """A smooth synthetic "scene" for attack tests: server embeddings ``h`` [R, S, 16] of random sample
    positions ``pos``, pixels ``y`` [R, 3] that depend on them, rays, bins and (image, row, col) indices of
    ``width x width`` views. ``dead_units`` leading channels of ``h`` are zero (what partial noise fills).
    Draws from torch's global generator, always in the same order (seed it first)."""
    pos = torch.rand(num_rays, num_samples, 3)
    h = torch.relu(torch.sin(pos @ (torch.randn(3, 16) * 2)) + 0.2)
    h[..., :dead_units] = 0.0
    y = torch.sigmoid((h.mean(1) @ torch.randn(16, 3)) * 2)
    origins = torch.zeros(num_rays, 3)
    dirs = torch.nn.functional.normalize(torch.randn(num_rays, 3), dim=-1)
    bins = torch.linspace(0, 1, num_samples + 1).expand(num_rays, num_samples + 1).contiguous()
    n, pixels = torch.arange(num_rays), width * width
    idx = torch.stack([n // pixels, (n % pixels) // width, n % width], -1)
    return SyntheticRays(pos, h, y, origins, dirs, bins, idx)
