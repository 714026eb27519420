"""Shared pieces of the benchmarks: presets, building tiny-to-full trainer configs, environment facts."""

from __future__ import annotations

import copy
import platform
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Dict

import torch

from nerfstudio.engine.trainer import TrainerConfig


@dataclass(frozen=True)
class Preset:
    """Size of every run in a benchmark."""

    resolution: int
    spp: int
    num_views: int
    steps: int
    rays: int
    num_samples: int
    num_levels: int
    max_res: int
    log2_hashmap_size: int
    post_training_steps: int
    replay_steps: int


PRESETS: Dict[str, Preset] = {
    # CI: seconds per run, checks the plumbing only.
    "smoke": Preset(24, 2, 16, 15, 256, 16, 4, 64, 12, 10, 5),
    # 2-core CPU: about a minute per run.
    "cpu": Preset(48, 16, 64, 300, 512, 32, 8, 256, 16, 300, 100),
    # One GPU: the reference model and ray budget.
    "gpu": Preset(128, 32, 120, 3000, 4096, 64, 16, 2048, 19, 500, 500),
}


def environment() -> Dict[str, str]:
    return {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})",
        "python": platform.python_version(),
        **{pkg: version(pkg) for pkg in ("torch", "nerfstudio", "mitsuba", "s2nerf-ns")},
    }


def sized_config(base: TrainerConfig, preset: Preset, scene: str, out_dir: Path, name: str,
                 shrink_model: bool = True) -> TrainerConfig:
    """A copy of a method's TrainerConfig resized to the preset (data, rays, steps and, unless
    ``shrink_model`` is False, the hash grid and samples per ray), writing into ``out_dir``."""
    config = copy.deepcopy(base)
    config.output_dir = out_dir
    config.experiment_name = scene
    config.timestamp = name
    config.max_num_iterations = preset.steps
    config.vis = "tensorboard"
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 1 << 30
    config.steps_per_save = 1 << 30
    config.machine.device_type = "cuda" if torch.cuda.is_available() else "cpu"
    config.logging.local_writer.enable = False
    dm = config.pipeline.datamanager
    dm.train_num_rays_per_batch = dm.eval_num_rays_per_batch = preset.rays
    parser = dm.dataparser
    if hasattr(parser, "scene"):
        parser.scene, parser.resolution, parser.spp, parser.num_views = scene, preset.resolution, preset.spp, preset.num_views
    model = config.pipeline.model
    for key in ("num_samples", "num_levels", "max_res", "log2_hashmap_size") if shrink_model else ():
        if hasattr(model, key):
            setattr(model, key, getattr(preset, key))
    for opt in config.optimizers.values():
        if opt.get("scheduler") is not None and hasattr(opt["scheduler"], "max_steps"):
            opt["scheduler"].max_steps = preset.steps
    return config
