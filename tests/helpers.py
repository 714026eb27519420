"""Build and train registered methods in-process on a tiny room (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

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
