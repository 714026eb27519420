"""Build and train registered methods in-process on a tiny room (CPU, seconds)."""

from __future__ import annotations

import copy
from pathlib import Path

from nerfstudio.engine.trainer import TrainerConfig

from method_configs import s2nerf_methods as methods

TINY_ROOM = dict(resolution=24, spp=2, num_views=16, num_extra_views=2)
TINY_MODEL = dict(num_levels=4, max_res=64, log2_hashmap_size=12, num_samples=16, eval_num_rays_per_chunk=1024)


def tiny_config(method: str, out_dir: Path, steps: int = 20, rays: int = 256, **model_overrides) -> TrainerConfig:
    spec = getattr(methods, method.replace("-", "_"))
    config: TrainerConfig = copy.deepcopy(spec.config)
    config.output_dir = out_dir
    config.max_num_iterations = steps
    config.vis = "tensorboard"
    config.steps_per_eval_batch = config.steps_per_eval_image = 1_000_000
    config.steps_per_save = 1_000_000
    config.machine.device_type = "cpu"
    config.viewer.quit_on_train_completion = True
    dm = config.pipeline.datamanager
    dm.train_num_rays_per_batch = dm.eval_num_rays_per_batch = rays
    for key, value in TINY_ROOM.items():
        setattr(dm.dataparser, key, value)
    for key, value in {**TINY_MODEL, **model_overrides}.items():
        setattr(config.pipeline.model, key, value)
    config.set_timestamp()
    return config


def train(config: TrainerConfig):
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return trainer
