"""Build and train registered methods in-process on a tiny room (CPU, seconds), train a bare tiny model without a
trainer (:func:`train_model`), and the synthetic split scene the attacker unit tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, NamedTuple, Optional, Tuple

import torch

from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig

from s2nerf_ns.bench.common import Preset, sized_config
from s2nerf_ns.integration.methods import method_config
from s2nerf_ns.transport.server import sampler_seed
from conftest import random_batch


def tiny_config(method: str, out_dir: Path, steps: int = 20, rays: int = 256, **model_overrides) -> TrainerConfig:
    preset = Preset(resolution=24, spp=2, num_views=16, steps=steps, rays=rays, num_samples=16, num_levels=4,
                    max_res=64, log2_hashmap_size=12, post_training_steps=10, replay_steps=5)
    config = sized_config(method_config(method), preset, "office", out_dir, method,
                          **{"eval_num_rays_per_chunk": 1024, **model_overrides})  # checked as tyro would
    config.machine.device_type = "cpu"
    config.pipeline.datamanager.dataparser.num_extra_views = 2
    return config


def train(config: TrainerConfig):
    """ns-train in process: the method's own trainer, datamanager and callbacks (a :func:`tiny_config`)."""
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return trainer


SERVER_SEED = 0
"""The remote server's ``--seed`` in the two-process tests (tiny_model seeds 0 before building the server field)."""


def make_optimizer(params) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The methods' optimizer and schedule (integration/methods.py), as s2nerf-server builds them."""
    opt = torch.optim.Adam(params, lr=1e-2, eps=1e-15, betas=(0.9, 0.99))
    sched = ExponentialDecaySchedulerConfig(lr_final=1e-3, max_steps=5000).setup().get_scheduler(opt, 1e-2)
    return opt, sched


def train_model(model, steps: int, first: int = 0, batch_seed: int = 0, opts: Optional[list] = None,
                during: Optional[Callable[[int], None]] = None) -> Tuple[List[float], list]:
    """A bare model (conftest.tiny_model, in process or with a remote server) trained without a trainer: step ``t``
    seeds torch as the remote server seeds its jitter (``sampler_seed(SERVER_SEED, t)``) and uses
    ``random_batch(seed=batch_seed + t % 2)``; ``during(t)`` runs after the loss and before the backward. Returns the
    losses and the (optimizer, scheduler) pairs, :func:`make_optimizer`'s unless ``opts`` are given."""
    opts = opts or [make_optimizer(v) for v in model.get_param_groups().values()]
    losses = []
    model.train()
    for step in range(first, first + steps):
        model.channel.step = step
        torch.manual_seed(sampler_seed(SERVER_SEED, step))
        bundle, batch = random_batch(seed=batch_seed + step % 2)
        loss = sum(model.get_loss_dict(model(bundle), batch).values())
        if during is not None:
            during(step)
        for opt, _ in opts:
            opt.zero_grad()
        loss.backward()
        for opt, sched in opts:
            opt.step()
            sched.step()
        losses.append(loss.item())
    return losses, opts


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
