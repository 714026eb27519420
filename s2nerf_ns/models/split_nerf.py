"""The split NeRF model: SERVER fields | gradient channel | CLIENT head.

``get_outputs`` is written in three labelled sections. Only the channel moves tensors between them:

* client -> server: the rays of the batch (origins, directions, pixel indices), the defended gradient
  ``dL/dh`` (backward), and with the proposal sampler the client's detached render weights;
* server -> client: the embeddings ``h`` and the sample spacing (bins) along each ray.

With ``split=False`` the same architecture is trained unsplit (the ``s2nerf-central`` twin).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Literal, NamedTuple, Optional, Tuple, Type

import numpy as np
import torch
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.configs.config_utils import to_immutable_dict
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.spatial_distortions import SceneContraction
from nerfstudio.fields.density_fields import HashMLPDensityField
from nerfstudio.model_components.losses import MSELoss, interlevel_loss
from nerfstudio.model_components.ray_samplers import ProposalNetworkSampler, UniformSampler
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer
from nerfstudio.model_components.scene_colliders import AABBBoxCollider, NearFarCollider
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps, writer
from torchmetrics.functional import structural_similarity_index_measure
from torchmetrics.image import PeakSignalNoiseRatio

from s2nerf_ns.attacks.leakage import leakage_metrics
from s2nerf_ns.metrics import build_lpips
from s2nerf_ns.split.channel import GradientChannel
from s2nerf_ns.split.client import ClientHead
from s2nerf_ns.split.defense import DefenseConfig, LabelNoiseDefense, NoDefenseConfig
from s2nerf_ns.split.mlp import check_cut_depth
from s2nerf_ns.split.server import ServerField

RAY_INDICES_KEY = "ray_indices"
"""Key under which the pipeline attaches the batch's (camera, row, column) indices to the ray bundle."""


class ServerPass(NamedTuple):
    """What the server computes for a batch of rays (all of it stays on the server but h and bins)."""

    ray_samples: RaySamples
    positions: Tensor
    h: Tensor
    bins: Tensor
    proposal_weights: List[Tensor]
    proposal_samples: List[RaySamples]


@dataclass
class SplitNerfModelConfig(ModelConfig):
    """Split NeRF (SplitNeRF / S²NeRF). Defaults follow the reference implementation."""

    _target: Type = field(default_factory=lambda: SplitNerfModel)
    split: bool = True
    """Train across the gradient channel (True) or as the unsplit twin of the same architecture (False)."""
    cut_depth: int = 1
    """Number of density-MLP layers on the server (reference: 1, so h is the 64-wide first-layer output)."""
    num_density_layers: int = 2
    """Layers of the density MLP in total (server + client)."""
    hidden_dim: int = 64
    """Width of the density MLP (and of h when cut_depth >= 1)."""
    geo_feat_dim: int = 15
    """Geometry features passed from the density to the colour MLP."""
    color_hidden_dim: int = 64
    """Width of the colour MLP."""
    num_color_layers: int = 3
    """Layers of the colour MLP."""
    sh_levels: int = 4
    """Spherical-harmonics degree of the direction encoding."""
    num_levels: int = 16
    """Hash-grid levels."""
    features_per_level: int = 2
    """Hash-grid features per level."""
    min_res: int = 16
    """Coarsest hash-grid resolution."""
    max_res: int = 2048
    """Finest hash-grid resolution."""
    log2_hashmap_size: int = 19
    """log2 of the hash-table size per level."""
    implementation: Literal["tcnn", "torch"] = "torch"
    """Hash-grid implementation (tcnn needs tiny-cuda-nn)."""
    sampler: Literal["uniform", "proposal"] = "uniform"
    """uniform: stratified samples between the box entry and exit (the server learns only the rays);
    proposal: nerfacto-style proposal networks on the server, which need the client's render weights."""
    num_samples: int = 64
    """Samples per ray evaluated by the server fields."""
    num_proposal_samples: Tuple[int, ...] = (128,)
    """Samples per ray of each proposal network (proposal sampler only)."""
    proposal_update_every: int = 5
    proposal_warmup: int = 1000
    interlevel_loss_mult: float = 1.0
    near_plane: float = 0.02
    """Near plane (scene units)."""
    far_plane: float = 1000.0
    """Far plane, used with --unbounded."""
    unbounded: bool = False
    """Real captures with content outside the scene box: contract space and sample up to far_plane."""
    background_color: Literal["black", "white", "last_sample"] = "last_sample"
    """Colour of rays that leave the scene without hitting anything."""
    defense: DefenseConfig = field(default_factory=NoDefenseConfig)
    """What the client does to the gradient before sending it (none = SplitNeRF)."""
    record_transcript: bool = True
    """Record every tensor that crosses the channel."""
    enable_collider: bool = False
    """Unused: the model builds its own collider (scene box, or near/far when unbounded)."""
    collider_params: Optional[Dict[str, float]] = to_immutable_dict({})
    eval_num_rays_per_chunk: int = 4096

    def __post_init__(self) -> None:
        check_cut_depth(self.cut_depth, self.num_density_layers)
        for name in ("hidden_dim", "num_samples", "num_levels", "features_per_level", "num_color_layers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_color_layers < 1 or not 1 <= self.sh_levels <= 4:
            raise ValueError("num_color_layers must be >= 1 and sh_levels in 1..4")
        if self.near_plane < 0 or self.far_plane <= self.near_plane:
            raise ValueError(f"need 0 <= near_plane < far_plane, got {self.near_plane}, {self.far_plane}")


class SplitNerfModel(Model):
    """Split NeRF. Parameter groups: ``server_fields`` (+ ``server_proposal``) and ``client_head``."""

    config: SplitNerfModelConfig

    def client_architecture(self) -> Dict[str, int]:
        """The client head's architecture (public protocol knowledge), without its weights."""
        cfg = self.config
        return dict(encoding_dim=self.server_field.encoding.get_out_dim(), hidden_dim=cfg.hidden_dim,
                    num_density_layers=cfg.num_density_layers, geo_feat_dim=cfg.geo_feat_dim,
                    cut_depth=cfg.cut_depth, sh_levels=cfg.sh_levels, color_hidden_dim=cfg.color_hidden_dim,
                    num_color_layers=cfg.num_color_layers)

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        aabb = self.scene_box.aabb
        # ------------------------------------------------------------------ SERVER
        self.server_field = ServerField(
            aabb, cfg.num_levels, cfg.features_per_level, cfg.min_res, cfg.max_res, cfg.log2_hashmap_size,
            cfg.hidden_dim, cfg.num_density_layers, cfg.geo_feat_dim, cfg.cut_depth, cfg.unbounded,
            cfg.implementation,
        )
        if cfg.unbounded:
            self.collider = NearFarCollider(near_plane=cfg.near_plane, far_plane=cfg.far_plane)
        else:
            self.collider = AABBBoxCollider(self.scene_box, near_plane=cfg.near_plane)
        self.uniform_sampler = UniformSampler(num_samples=cfg.num_samples)
        self.proposal_networks = torch.nn.ModuleList()
        if cfg.sampler == "proposal":
            contraction = SceneContraction(order=float("inf")) if cfg.unbounded else None
            for _ in cfg.num_proposal_samples:
                self.proposal_networks.append(
                    HashMLPDensityField(aabb, spatial_distortion=contraction, num_levels=5, max_res=128,
                                        log2_hashmap_size=17, hidden_dim=16, implementation=cfg.implementation)
                )
            self.proposal_sampler = ProposalNetworkSampler(
                num_nerf_samples_per_ray=cfg.num_samples,
                num_proposal_samples_per_ray=cfg.num_proposal_samples,
                num_proposal_network_iterations=len(cfg.num_proposal_samples),
                update_sched=lambda step: np.clip(
                    np.interp(step, [0, cfg.proposal_warmup], [0, cfg.proposal_update_every]), 1,
                    cfg.proposal_update_every),
                initial_sampler=UniformSampler(single_jitter=False),
            )
        # ------------------------------------------------------------------ CHANNEL
        defense = cfg.defense.setup(seed=42, max_steps=1)
        self.channel = GradientChannel(defense, record=cfg.record_transcript)
        # ------------------------------------------------------------------ CLIENT
        self.client_head = ClientHead(**self.client_architecture())
        self.renderer_rgb = RGBRenderer(background_color=cfg.background_color)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="expected")
        self.rgb_loss = MSELoss()
        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.lpips = build_lpips()
        self.step = 0
        # Set by the attack pipelines: a server-side attacker rendered as `attack_rgb` (never optimised here).
        self.attacker: Optional[torch.nn.Module] = None

    # ---------------------------------------------------------------------------------------------
    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = {
            "server_fields": list(self.server_field.parameters()),
            "client_head": list(self.client_head.parameters()),
        }
        if self.config.sampler == "proposal":
            groups["server_proposal"] = list(self.proposal_networks.parameters())
        return groups

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        trainer = getattr(attrs, "trainer", None)
        if trainer is not None:  # the defense is seeded from the run's seed and decays over the run's length
            self.channel.defense.seed = trainer.config.machine.seed
            self.channel.defense.max_steps = trainer.config.max_num_iterations
            log_every = trainer.config.logging.steps_per_log
        else:
            log_every = 10

        def set_step(step: int) -> None:
            self.step = step
            self.channel.step = step

        def log_defense(step: int) -> None:
            if self.config.split and self.channel.last_defense_stats:
                for key, value in self.channel.last_defense_stats.items():
                    if np.isfinite(value):
                        writer.put_scalar(name=f"Defense/{key}", scalar=value, step=step)

        callbacks = [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_step, update_every_num_iters=1),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], log_defense,
                             update_every_num_iters=log_every),
        ]
        if self.config.sampler == "proposal":
            callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                                              self.proposal_sampler.step_cb, update_every_num_iters=1))
        return callbacks

    # ---------------------------------------------------------------------------------------------
    def server_samples(self, ray_bundle: RayBundle) -> Tuple[RaySamples, List[Tensor], List[RaySamples]]:
        """SERVER: draw samples along the client's rays."""
        if self.config.sampler == "proposal":
            density_fns = [net.density_fn for net in self.proposal_networks]
            return self.proposal_sampler(ray_bundle, density_fns=density_fns)
        return self.uniform_sampler(ray_bundle), [], []

    def server_pass(self, ray_bundle: RayBundle) -> ServerPass:
        """SERVER: samples along the client's rays, their positions, the embeddings h and the bin edges."""
        ray_samples, proposal_weights, proposal_samples = self.server_samples(ray_bundle)
        positions = ray_samples.frustums.get_positions()
        h = self.server_field(positions)
        bins = torch.cat([ray_samples.frustums.starts[..., 0], ray_samples.frustums.ends[..., -1:, 0]], dim=-1)
        return ServerPass(ray_samples, positions, h, bins, proposal_weights, proposal_samples)

    def client_render(self, ray_bundle: RayBundle, bins: Tensor, h: Tensor) -> Dict[str, Tensor]:
        """CLIENT: its own rays + received bins and h -> rendered colour, depth, accumulation, weights."""
        samples = ray_bundle.get_ray_samples(bin_starts=bins[..., :-1, None], bin_ends=bins[..., 1:, None])
        density, rgb = self.client_head(h, samples.frustums.directions)
        weights = samples.get_weights(density)
        return {
            "rgb": self.renderer_rgb(rgb=rgb, weights=weights),
            "accumulation": self.renderer_accumulation(weights=weights),
            "depth": self.renderer_depth(weights=weights, ray_samples=samples),
            "weights": weights,
            "client_samples": samples,  # type: ignore[dict-item]
        }

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor | List]:
        metadata = dict(ray_bundle.metadata or {})
        ray_indices = metadata.pop(RAY_INDICES_KEY, None)
        ray_bundle.metadata = metadata
        split = self.config.split
        self.channel.training = self.training and torch.is_grad_enabled()
        # ============================== CLIENT -> SERVER: the rays of the batch
        if split:
            self.channel.client_sends_rays(ray_indices, ray_bundle.origins, ray_bundle.directions)
        # ============================== SERVER
        server = self.server_pass(ray_bundle)
        h, bins = server.h, server.bins
        # ============================== SERVER -> CLIENT: h and the sample spacing
        if split:
            context = {"origins": ray_bundle.origins, "directions": ray_bundle.directions,
                       "positions": server.positions, "bins": bins,
                       "ray_indices": ray_indices if ray_indices is not None
                       else torch.full((len(ray_bundle), 3), -1, dtype=torch.long, device=h.device)}
            bins_client = self.channel.server_sends("sample_bins", bins)
            h_client = self.channel.server_sends_embeddings(h, context)
        else:
            bins_client, h_client = bins.detach(), h
        # ============================== CLIENT
        outputs = self.client_render(ray_bundle, bins_client, h_client)
        # ============================== CLIENT -> SERVER (proposal sampler only): render weights
        if self.config.sampler == "proposal":
            weights = outputs["weights"]
            if split:
                weights = self.channel.client_sends("proposal_weights", weights)
            outputs["weights_list"] = server.proposal_weights + [weights.detach()]
            outputs["ray_samples_list"] = server.proposal_samples + [server.ray_samples]
        if self.attacker is not None and not torch.is_grad_enabled():
            # SERVER (attacker): its own render of these rays from the server's embeddings.
            outputs["attack_rgb"] = self.attacker.render(h.detach(), ray_bundle.origins, ray_bundle.directions, bins)
        if not self.training:  # per-sample tensors are not images: keep rendering outputs only
            outputs.pop("weights")
            outputs.pop("client_samples")
        return outputs  # type: ignore[return-value]

    # ---------------------------------------------------------------------------------------------
    def client_targets(self, batch: Dict[str, Tensor]) -> Tensor:
        """CLIENT: the private target pixels (with label noise when that baseline defense is chosen)."""
        image = batch["image"][..., :3].to(self.device)
        if self.training and isinstance(self.channel.defense, LabelNoiseDefense):
            image = self.channel.defense.noisy_targets(image)
        return image

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        image = batch["image"][..., :3].to(self.device)
        return {"psnr": self.psnr(outputs["rgb"].detach().clamp(0, 1), image)}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        loss_dict = {"rgb_loss": self.rgb_loss(self.client_targets(batch), outputs["rgb"])}
        if self.training and self.config.sampler == "proposal":
            # SERVER: the proposal networks are trained on the server from the client's (sent) weights.
            loss_dict["interlevel_loss"] = self.config.interlevel_loss_mult * interlevel_loss(
                outputs["weights_list"], outputs["ray_samples_list"])
        return loss_dict

    def image_metrics(self, rgb: Tensor, image: Tensor, prefix: str = "") -> Dict[str, float]:
        """PSNR, SSIM and (when available) LPIPS of an [H, W, 3] render against the ground truth."""
        a = torch.moveaxis(image, -1, 0)[None].clamp(0, 1)
        b = torch.moveaxis(rgb, -1, 0)[None].clamp(0, 1)
        out = {
            f"{prefix}psnr": float(self.psnr(b, a)),
            f"{prefix}ssim": float(structural_similarity_index_measure(b, a, data_range=1.0)),
        }
        if self.lpips is not None:
            out[f"{prefix}lpips"] = float(self.lpips.to(a.device)(b, a))
        return out

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        image = batch["image"][..., :3].to(outputs["rgb"].device)
        rgb = outputs["rgb"]
        metrics = self.image_metrics(rgb, image)
        metrics["lpips_available"] = float(self.lpips is not None)
        images = {
            "img": torch.cat([image, rgb], dim=1),
            "accumulation": colormaps.apply_colormap(outputs["accumulation"]),
            "depth": colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"]),
        }
        if "attack_rgb" in outputs:
            attack = outputs["attack_rgb"]
            metrics.update({k: v for k, v in self.image_metrics(attack, image, "attack_").items()})
            metrics.update(leakage_metrics(attack, image, "attack_"))
            images["attack"] = torch.cat([image, rgb, attack], dim=1)
        return metrics, images
