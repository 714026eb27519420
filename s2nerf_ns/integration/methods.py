"""The split methods' trainer configurations, by name (registered with nerfstudio in ``method_configs/``).

splitnerf       undefended split training (the paper's SplitNeRF)
s2nerf          split training with the S²NeRF gradient-noise defense (c = 1.2, r = 1e-4)
s2nerf-central  the unsplit twin of the same architecture (for equivalence tests and overhead numbers)
s2nerf-lite     S²NeRF with the smallest client the protocol allows
s2nerf-plus     appearance kept on the client (the server's fields carry density only): the frontier's best setting
splitnerf-sma   surrogate model attack on undefended SplitNeRF
s2nerf-sma      surrogate model attack against S²NeRF
splitnerf-ssma  scene-aided surrogate model attack (leaked photos) on SplitNeRF
s2nerf-ssma     scene-aided surrogate model attack against S²NeRF
splitnerf-remote, s2nerf-remote  the same as splitnerf / s2nerf, the server part in an s2nerf-server process
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch

from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig

from s2nerf_ns.attacks.surrogate import SurrogateAttackConfig
from s2nerf_ns.data.rooms_dataparser import RoomsDataParserConfig
from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.integration.attack_pipeline import AttackPipelineConfig
from s2nerf_ns.integration.model import SplitNerfModelConfig
from s2nerf_ns.integration.scene_aided_pipeline import SceneAidedAttackPipelineConfig
from s2nerf_ns.integration.split_pipeline import SplitPipelineConfig
from s2nerf_ns.integration.trainer import SplitTrainerConfig
from s2nerf_ns.protocol.server import ServerFieldConfig

MAX_ITERATIONS = 5000
CUDA = torch.cuda.is_available()
RAYS_PER_BATCH = 4096 if CUDA else 1024
"""Reference: 4096 rays per step. Without a GPU the default drops to 1024 so that a CPU run is usable."""


@dataclass
class AdamBetasOptimizerConfig(AdamOptimizerConfig):
    """Adam with configurable betas (reference: 0.9, 0.99)."""

    betas: Tuple[float, float] = (0.9, 0.99)


def optimizer(lr: float = 1e-2, max_steps: int = MAX_ITERATIONS) -> dict:
    """Reference optimiser: Adam(lr 1e-2, eps 1e-15), learning rate decaying to 0.1x over training."""
    return {
        "optimizer": AdamBetasOptimizerConfig(lr=lr, eps=1e-15),
        "scheduler": ExponentialDecaySchedulerConfig(lr_final=lr * 0.1, max_steps=max_steps),
    }


def split_trainer(method_name: str, model: SplitNerfModelConfig, pipeline_cls: type = SplitPipelineConfig,
                  pipeline_kwargs: Optional[dict] = None) -> TrainerConfig:
    """A TrainerConfig for a split-NeRF method on the built-in rooms (any nerfstudio dataparser works)."""
    optimizers = {"server_fields": optimizer(), "client_head": optimizer(),
                  "client_appearance": optimizer()}  # used only with --pipeline.model.client-appearance True
    if model.server.sampler == "proposal":
        optimizers["server_proposal"] = optimizer()
    return SplitTrainerConfig(  # checks the command line's values when tyro builds it
        method_name=method_name,
        steps_per_eval_batch=500,
        steps_per_eval_image=500,
        steps_per_eval_all_images=1_000_000,
        steps_per_save=1000,
        max_num_iterations=MAX_ITERATIONS,
        mixed_precision=False,
        machine=MachineConfig(device_type="cuda" if CUDA else "cpu"),
        pipeline=pipeline_cls(
            datamanager=VanillaDataManagerConfig(
                dataparser=RoomsDataParserConfig(),
                train_num_rays_per_batch=RAYS_PER_BATCH,
                eval_num_rays_per_batch=RAYS_PER_BATCH,
            ),
            model=model,
            **(pipeline_kwargs or {}),
        ),
        optimizers=optimizers,
        viewer=ViewerConfig(num_rays_per_chunk=1 << 14),
        vis="viewer",
    )


def remote_trainer(method_name: str, model: SplitNerfModelConfig) -> TrainerConfig:
    """A two-process method. Its default address is set after the config is built, so that the client's checks
    (token file, TLS; transport/client.py check_remote) run on the command line's values, when tyro builds it."""
    config = split_trainer(method_name, model)
    config.pipeline.model.server_address = "127.0.0.1:50051"
    return config


def paper_defense(**overrides) -> DefenseConfig:
    """The paper's headline S²NeRF setting: c = 1.2, r = 1e-4."""
    return DefenseConfig(**{"kind": "s2nerf", "noise_scale": 1.2, "decay_ratio": 1e-4, **overrides})


def lite_model(**kwargs) -> SplitNerfModelConfig:
    """s2nerf-lite: the client keeps as little as the protocol allows. The server runs the sampler, the hash
    grid and two of three density layers; the client keeps the last density layer (64 -> 16), a degree-2
    direction encoding and a 2-layer, 32-wide colour head, plus volume rendering and the loss."""
    return SplitNerfModelConfig(server=ServerFieldConfig(num_density_layers=3, cut_depth=2), sh_levels=2,
                                color_hidden_dim=32, num_color_layers=2, **kwargs)


def ssma_pipeline(**kwargs) -> dict:
    """SSMA defaults: one leaked off-trajectory photo, known pose, replayed gradients after training."""
    return {"attack": SurrogateAttackConfig(replay_steps=200, replay_buffer_rays=1 << 18), **kwargs}


METHODS: Dict[str, Tuple[Callable[[], TrainerConfig], str]] = {
    "splitnerf": (lambda: split_trainer("splitnerf", SplitNerfModelConfig()),
                  "SplitNeRF: NeRF split between server fields and a client head, undefended gradient channel."),
    "s2nerf": (lambda: split_trainer("s2nerf", SplitNerfModelConfig(defense=paper_defense())),
               "S²NeRF: split NeRF with decaying gradient noise (c=1.2, r=1e-4) on the gradient channel."),
    "s2nerf-central": (lambda: split_trainer("s2nerf-central", SplitNerfModelConfig(split=False)),
                       "Unsplit twin of the split NeRF architecture (no channel), for equivalence and overhead checks."),
    "s2nerf-lite": (lambda: split_trainer("s2nerf-lite", lite_model(defense=paper_defense())),
                    "S²NeRF-lite: minimal client (last density layer + small colour head), S²NeRF defense."),
    "s2nerf-plus": (lambda: split_trainer("s2nerf-plus", SplitNerfModelConfig(client_appearance=True)),
                    "S²NeRF+: appearance kept on the client (tri-plane), the server's fields carry density only; "
                    "the frontier's best setting (docs/results/frontier_cpu_2core), no gradient noise."),
    "splitnerf-sma": (lambda: split_trainer("splitnerf-sma", SplitNerfModelConfig(), AttackPipelineConfig),
                      "Surrogate model attack by a curious server on undefended SplitNeRF training."),
    "s2nerf-sma": (lambda: split_trainer("s2nerf-sma", SplitNerfModelConfig(defense=paper_defense()),
                                         AttackPipelineConfig),
                   "Surrogate model attack against S²NeRF (c=1.2, r=1e-4) training."),
    "splitnerf-ssma": (lambda: split_trainer("splitnerf-ssma", SplitNerfModelConfig(), SceneAidedAttackPipelineConfig,
                                             ssma_pipeline()),
                       "Scene-aided surrogate model attack (one leaked photo) on undefended SplitNeRF training."),
    "s2nerf-ssma": (lambda: split_trainer("s2nerf-ssma", SplitNerfModelConfig(defense=paper_defense()),
                                          SceneAidedAttackPipelineConfig, ssma_pipeline()),
                    "Scene-aided surrogate model attack (one leaked photo) against S²NeRF training."),
    # Two processes (README, "Two machines"): the server part runs in `s2nerf-server` at --pipeline.model.server-address.
    "splitnerf-remote": (lambda: remote_trainer("splitnerf-remote", SplitNerfModelConfig()),
                         "SplitNeRF with the server part in a separate s2nerf-server process (gRPC), undefended."),
    "s2nerf-remote": (lambda: remote_trainer("s2nerf-remote", SplitNerfModelConfig(defense=paper_defense())),
                      "S²NeRF with the server part in a separate s2nerf-server process (gRPC), c=1.2, r=1e-4."),
}


def method_config(name: str) -> TrainerConfig:
    """A fresh TrainerConfig of a registered split method."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; the split methods are {', '.join(METHODS)}")
    return METHODS[name][0]()
