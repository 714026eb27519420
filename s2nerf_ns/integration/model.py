"""The split NeRF model: SERVER fields | gradient channel | CLIENT head.

``get_outputs`` is written in three labelled sections. Only the channel moves tensors between them:

* client -> server: the rays of the batch (origins, directions, pixel indices), the defended gradient
  ``dL/dh`` (backward), and with the proposal sampler the client's detached render weights;
* server -> client: the embeddings ``h`` and the sample spacing (bins) along each ray.

With ``split=False`` the same architecture is trained unsplit (the ``s2nerf-central`` twin).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from dataclasses import dataclass, field
from typing import Annotated, Callable, Dict, List, Literal, Optional, Tuple, Type

import numpy as np
import torch
import tyro
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.configs.config_utils import to_immutable_dict
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.model_components.losses import MSELoss, interlevel_loss
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps, writer
from torchmetrics.image import PeakSignalNoiseRatio

from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.defenses.residual import noise_gradient
from s2nerf_ns.defenses.state import DefenseCounters
from s2nerf_ns.errors import InputError
from s2nerf_ns.evaluation.image_metrics import build_lpips, lpips_score, psnr, ssim
from s2nerf_ns.protocol.channel import GradientChannel
from s2nerf_ns.protocol.client import ClientHead
from s2nerf_ns.protocol.cut import check_cut_depth
from s2nerf_ns.protocol.fine_geometry import GEOMETRY_KNOBS, check_client_geometry, coarse_levels
from s2nerf_ns.protocol.rendering import VolumeRenderer, samples_from_bins
from s2nerf_ns.protocol.server import ServerFieldConfig, arch_fields
from s2nerf_ns.transport.client import RemoteOptions, RemoteServerSide, check_remote, remote_arch

RAY_INDICES_KEY = "ray_indices"
"""Key under which the pipeline attaches the batch's (camera, row, column) indices to the ray bundle."""

ServerRender = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
"""(h [R, S, D], origins [R, 3], directions [R, 3], bins [R, S+1]) -> rgb [R, 3]: a server-side render."""
EvalImageHook = Callable[[Dict[str, Tensor], Tensor], Tuple[Dict[str, float], Dict[str, Tensor]]]
"""(outputs of one eval image, ground truth [H, W, 3]) -> (extra metrics, extra images)."""


@dataclass
class SplitNerfModelConfig(ModelConfig):
    """Split NeRF (SplitNeRF / S²NeRF). Defaults follow the reference implementation."""

    _target: Type = field(default_factory=lambda: SplitNerfModel)
    split: bool = True
    """Train across the gradient channel (True) or as the unsplit twin of the same architecture (False)."""
    server: Annotated[ServerFieldConfig, tyro.conf.arg(name="")] = field(default_factory=ServerFieldConfig)
    """The server's architecture (protocol/server.py), flattened: its flags are --pipeline.model.<name>."""
    color_hidden_dim: int = 64
    """Width of the colour MLP."""
    num_color_layers: int = 3
    """Layers of the colour MLP."""
    sh_levels: int = 4
    """Spherical-harmonics degree of the direction encoding."""
    interlevel_loss_mult: float = 1.0
    background_color: Literal["black", "white", "last_sample"] = "last_sample"
    """Colour of rays that leave the scene without hitting anything."""
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    """What the client does before pixel-derived data crosses (kind none = SplitNeRF)."""
    client_appearance: bool = False
    """Keep appearance on the client: colour comes from the client's own tri-plane at the sample positions (own
    optimizer group client_appearance); the server's embeddings then feed density only. Combinable with any defense."""
    client_appearance_resolution: int = 32
    """client-appearance: tri-plane resolution per axis."""
    client_appearance_features: int = 4
    """client-appearance: tri-plane features (summed over the three planes) fed to the colour MLP."""
    client_geometry: bool = False
    """Keep the fine geometry on the client (protocol/fine_geometry.py): the server's hash grid holds only its levels
    up to client-geometry-server-res; the client adds its own tri-plane term to the log density."""
    client_geometry_resolution: int = 64
    """client-geometry: the client's tri-plane resolution per axis."""
    client_geometry_features: int = 8
    """client-geometry: the client's tri-plane features (mapped to one log-density term)."""
    client_geometry_server_res: int = 32
    """client-geometry: the finest hash-grid resolution the server keeps (its levels above it are dropped)."""
    run_seed: tyro.conf.Suppress[Optional[int]] = None
    """The run's seed (set by the method's trainer from --machine.seed; seeds the defense's noise)."""
    run_steps: tyro.conf.Suppress[Optional[int]] = None
    """The run's length (set by the method's trainer from --max-num-iterations; the defense's schedule)."""
    hello_by_pipeline: tyro.conf.Suppress[bool] = False
    """Two processes: the split pipelines say Hello (``hello``) once the training images' size is known."""
    server_address: Optional[str] = None
    """host:port of an ``s2nerf-server``: the server part then runs in that process (README, "Two machines")."""
    server_token_file: Optional[Path] = None
    """File holding the token shared with ``s2nerf-server`` (with --pipeline.model.server-address)."""
    remote: RemoteOptions = field(default_factory=RemoteOptions)
    """Two processes: wire options (half precision, sparse h), timeouts and retries."""
    record_transcript: bool = True
    """Record every tensor that crosses the channel."""
    enable_collider: bool = False
    """Unused: the model builds its own collider (scene box, or near/far when unbounded)."""
    collider_params: Optional[Dict[str, float]] = to_immutable_dict({})
    eval_num_rays_per_chunk: int = 4096

    def __post_init__(self) -> None:
        """Refuse a value that cannot work, in one line naming the flag as typed (``--pipeline.model.<name>``)."""
        server = self.server
        check_cut_depth(server.cut_depth, server.num_density_layers)
        for name in ("hidden_dim", "num_samples", "num_levels", "features_per_level", "num_color_layers"):
            value = getattr(self if name == "num_color_layers" else server, name)
            if value <= 0:
                raise InputError(f"{model_flag(name)} {value}: must be a positive number")
        if not 1 <= self.sh_levels <= 4:
            raise InputError(f"{model_flag('sh_levels')} {self.sh_levels}: must be 1, 2, 3 or 4")
        if server.near_plane < 0 or server.far_plane <= server.near_plane:
            raise InputError(f"{model_flag('near_plane')} {server.near_plane} and {model_flag('far_plane')} "
                             f"{server.far_plane}: need 0 <= near plane < far plane")
        if self.server_address:  # two processes: address, token file, sampler and TLS (transport/client.py)
            check_remote(self.server_address, self.server_token_file, server.sampler, self.remote)
        self.check_geometry_defenses()

    def __setstate__(self, state: Dict[str, object]) -> None:
        """Loading (``config.yml``, copies): a run saved before the server's architecture was nested has its fields
        flat in the model's; they are moved into ``server`` (compatibility with those run folders, for ns-eval)."""
        flat = {name: state.pop(name) for name in list(state) if name in arch_fields()}
        if flat:
            state["server"] = ServerFieldConfig(**flat)
        self.__dict__.update(state)

    def check_geometry_defenses(self) -> None:
        """Fail closed on the geometry defenses: client-geometry knobs without it, and density-noise on a head whose
        gradient rows are not one scalar times the client's ``w`` (client appearance, one client density layer)."""
        server = self.server
        check_client_geometry(self.client_geometry, {k: getattr(self, k) for k in GEOMETRY_KNOBS}, server.min_res,
                              server.max_res)
        if self.defense.kind == "density-noise" and not (
                self.client_appearance and server.num_density_layers - server.cut_depth == 1):
            raise InputError(f"--pipeline.model.defense.kind density-noise needs a client head whose density is linear "
                             f"in h: add {model_flag('client_appearance')} True and keep one client density layer "
                             f"({model_flag('num_density_layers')} = {model_flag('cut_depth')} + 1)")


def model_flag(name: str) -> str:
    """The ns-train flag of a model field (or of its nested server architecture, whose flags are flattened into the
    model's), as typed: ``hidden_dim`` -> ``--pipeline.model.hidden-dim``."""
    return "--pipeline.model." + name.replace("_", "-")


def replace_model(model: SplitNerfModelConfig, **fields) -> SplitNerfModelConfig:
    """A copy of ``model`` with ``fields`` changed by ``dataclasses.replace``, so that its checks run on the new
    values. Fields are named as their flags are (``num_levels``, not ``server.num_levels``): the server
    architecture's go to the nested ``server`` config."""
    server = {name: fields.pop(name) for name in list(fields) if name in arch_fields()}
    return dataclasses.replace(model, server=dataclasses.replace(model.server, **server), **fields)


class SplitNerfModel(Model):
    """Split NeRF. Parameter groups: ``server_fields`` (+ ``server_proposal``) and ``client_head``."""

    config: SplitNerfModelConfig

    def hello(self, image_size: Optional[Tuple[int, int]] = None) -> None:
        """Introduce this client to s2nerf-server: public protocol knowledge only (the architectures, the number and
        size of the training images, the run's length, the defense's public settings)."""
        cfg, extra = self.config, {"image_size": [int(v) for v in image_size]} if image_size else {}
        self.server.hello(self.client_architecture(), num_images=self.num_train_data, run_steps=cfg.run_steps,
                          background_color=cfg.background_color, defense=self.channel.defense.public(), **extra)

    def client_architecture(self) -> Dict[str, int]:
        """The client head's architecture (public protocol knowledge), without its weights."""
        cfg, shared = self.config, self.config.server
        return dict(encoding_dim=self.server.field.encoding.get_out_dim(), hidden_dim=shared.hidden_dim,
                    num_density_layers=shared.num_density_layers, geo_feat_dim=shared.geo_feat_dim,
                    cut_depth=shared.cut_depth, sh_levels=cfg.sh_levels, color_hidden_dim=cfg.color_hidden_dim,
                    num_color_layers=cfg.num_color_layers, **self._appearance_architecture(),
                    **self._geometry_architecture())

    def _geometry_architecture(self) -> Dict[str, float]:
        cfg = self.config
        if not cfg.client_geometry:
            return {}
        bound = float(self.scene_box.aabb.abs().max()) if not cfg.server.unbounded else 2.0
        return dict(geometry_resolution=cfg.client_geometry_resolution,
                    geometry_features=cfg.client_geometry_features, geometry_bound=bound)

    def server_config(self) -> ServerFieldConfig:
        """The server's architecture; with client geometry its hash grid keeps only the coarse levels."""
        cfg = self.config
        if not cfg.client_geometry:
            return cfg.server
        levels, max_res = coarse_levels(cfg.server.num_levels, cfg.server.min_res, cfg.server.max_res,
                                        cfg.client_geometry_server_res)
        return dataclasses.replace(cfg.server, num_levels=levels, max_res=int(max_res))

    def _appearance_architecture(self) -> Dict[str, float]:
        cfg = self.config
        if not cfg.client_appearance:
            return {}
        bound = float(self.scene_box.aabb.abs().max()) if not cfg.server.unbounded else 2.0
        return dict(appearance_resolution=cfg.client_appearance_resolution,
                    appearance_features=cfg.client_appearance_features, appearance_bound=bound)

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        cfg.check_geometry_defenses()  # again: a config changed in code (the benchmarks) skipped tyro's checks
        # ------------------------------------------------------------------ SERVER
        if cfg.server_address:  # two processes: the server part runs in s2nerf-server (s2nerf_ns/transport)
            self.server = RemoteServerSide(cfg.server_address, cfg.server_token_file,
                                           remote_arch(self.server_config(), self.scene_box), lambda: self.channel.step,
                                           cfg.remote)
        else:
            self.server = self.server_config().setup(scene_box=self.scene_box)  # ServerSide
        self.collider = self.server.collider  # applied by nerfstudio's Model.forward before get_outputs
        # ------------------------------------------------------------------ CHANNEL
        seed = 42 if cfg.run_seed is None else cfg.run_seed  # nerfstudio's default --machine.seed
        defense = cfg.defense.setup(seed=seed, schedule_steps=cfg.run_steps)
        self.channel = GradientChannel(defense, record=cfg.record_transcript)
        self.defense_counters = DefenseCounters(defense)  # state dict: checkpoints keep the accountant's counters
        # ------------------------------------------------------------------ CLIENT
        self.client_head = ClientHead(**self.client_architecture())
        self.renderer = VolumeRenderer(background_color=cfg.background_color)
        self.rgb_loss = MSELoss()
        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.lpips = build_lpips()
        self.step = 0
        if cfg.server_address and not cfg.hello_by_pipeline:
            self.hello()
        # ------------------------------------------------------------------ hooks for pipelines
        self.server_renders: Dict[str, ServerRender] = {}
        self.eval_image_hooks: List[EvalImageHook] = []

    def register_server_render(self, name: str, render: ServerRender) -> None:
        """Add a server-side render of every eval ray (e.g. an attacker's ``attack_rgb``), shown next to ``rgb``."""
        self.server_renders[name] = render

    def register_eval_image_hook(self, hook: EvalImageHook) -> None:
        """Add metrics/images computed by whoever evaluates this run (e.g. an attack's leakage scores)."""
        self.eval_image_hooks.append(hook)

    # ---------------------------------------------------------------------------------------------
    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        appearance = self.client_head.appearance
        app_ids = {id(p) for p in appearance.parameters()} if appearance is not None else set()
        groups = {
            "server_fields": list(self.server.field.parameters()),
            "client_head": [p for p in self.client_head.parameters() if id(p) not in app_ids],
        }
        if appearance is not None:
            groups["client_appearance"] = list(appearance.parameters())
        if self.config.server_address:
            groups.pop("server_fields")  # held, and stepped, by s2nerf-server
        if self.config.server.sampler == "proposal":
            groups["server_proposal"] = list(self.server.proposal_networks.parameters())
        return groups

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        trainer = getattr(attrs, "trainer", None)
        log_every = trainer.config.logging.steps_per_log if trainer is not None else 10

        def set_step(step: int) -> None:
            self.step = step
            self.channel.step = step

        def log_defense(step: int) -> None:
            if self.config.split:
                for key, value in self.channel.defense.last_stats.items():
                    if np.isfinite(value):
                        writer.put_scalar(name=f"Defense/{key}", scalar=value, step=step)

        self._count_training_pixels(attrs)

        def write_privacy(step: int) -> None:
            report = self.channel.defense.privacy()
            base_dir = getattr(trainer, "base_dir", None)
            if report is not None and base_dir is not None:
                Path(base_dir).mkdir(parents=True, exist_ok=True)
                (Path(base_dir) / "privacy.json").write_text(json.dumps(report, indent=2, allow_nan=False))

        callbacks = [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_step, update_every_num_iters=1),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], write_privacy),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], log_defense,
                             update_every_num_iters=log_every),
        ]
        if self.config.server.sampler == "proposal":
            callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                                              self.server.proposal_sampler.step_cb, update_every_num_iters=1))
        return callbacks

    def _count_training_pixels(self, attrs: TrainingCallbackAttributes) -> None:
        """CLIENT: the size of its own training set (the sampling rate of the residual-noise accounting)."""
        try:
            cameras = attrs.pipeline.datamanager.train_dataset.cameras  # type: ignore[union-attr]
            self.channel.defense.training_pixels = int((cameras.height * cameras.width).sum())
        except AttributeError:
            pass

    # ---------------------------------------------------------------------------------------------
    def client_render(self, ray_bundle: RayBundle, bins: Tensor, h: Tensor) -> Dict[str, Tensor]:
        """CLIENT: its own rays + received bins and h -> rendered colour, depth, accumulation, weights."""
        head = self.client_head
        if head.needs_positions:  # client appearance: the client computes its samples' positions itself
            positions = samples_from_bins(ray_bundle.origins, ray_bundle.directions, bins).frustums.get_positions()
            return self.renderer(lambda hh, dd: head(hh, dd, positions), h, ray_bundle.origins,
                                 ray_bundle.directions, bins)
        return self.renderer(head, h, ray_bundle.origins, ray_bundle.directions, bins)

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
        server = self.server(ray_bundle, ray_indices)  # ServerSide here, or the RemoteServerSide stub
        h, bins = server.h, server.bins
        # ============================== SERVER -> CLIENT: h and the sample spacing
        if split:
            context = {"origins": ray_bundle.origins, "directions": ray_bundle.directions,
                       "positions": server.positions, "bins": bins,
                       "ray_indices": ray_indices if ray_indices is not None
                       else torch.full((len(ray_bundle), 3), -1, dtype=torch.long, device=h.device)}
            bins_client = self.channel.server_sends("sample_bins", bins)
            h_client, extra_port = self.channel.server_sends_embeddings(h, context)
            residual = self.channel.training and self.channel.defense.residual is not None
        else:
            bins_client, h_client, residual = bins.detach(), h, False
        # ============================== CLIENT
        outputs = self.client_render(ray_bundle, bins_client, h_client)
        if residual:  # CLIENT keeps its copy of h and the channel's extra port for the second VJP (J^T n)
            outputs.update(client_h=h_client, extra_port=extra_port)
        # ============================== CLIENT -> SERVER (proposal sampler only): render weights
        if self.config.server.sampler == "proposal":
            weights = outputs["weights"]
            if split:
                weights = self.channel.client_sends("proposal_weights", weights)
            outputs["weights_list"] = server.proposal_weights + [weights.detach()]
            outputs["ray_samples_list"] = server.proposal_samples + [server.ray_samples]
        if not torch.is_grad_enabled():
            # SERVER: extra renders of these rays from the server's own embeddings (registered by pipelines).
            for name, render in self.server_renders.items():
                outputs[name] = render(h.detach(), ray_bundle.origins, ray_bundle.directions, bins.detach())
        if not self.training:  # per-sample tensors are not images: keep rendering outputs only
            outputs.pop("weights")
        return outputs  # type: ignore[return-value]

    # ---------------------------------------------------------------------------------------------
    def client_targets(self, batch: Dict[str, Tensor]) -> Tensor:
        """CLIENT: the private target pixels (with label noise when that baseline defense is chosen)."""
        image = batch["image"][..., :3].to(self.device)
        return self.channel.defense.targets_for_loss(image) if self.training else image

    def _client_sends_residual_noise(self, loss: Tensor, outputs: Dict[str, Tensor], targets: Tensor) -> Tensor:
        """CLIENT (residual-noise, clean client): the clean ``loss``, same value, whose backward sends ``J^T (e + n)``:
        the channel adds ``J^T n`` (:func:`noise_gradient`, through this step's extra port) to the clean ``J^T e``.
        The client's own parameters are updated by the clean loss only."""
        noisy = self.channel.defense.server_targets(targets)
        if noisy is None:
            return loss
        extra = noise_gradient(self.rgb_loss, outputs["rgb"], targets, noisy, outputs["client_h"])
        return self.channel.client_adds_to_gradient(loss, outputs["extra_port"], extra)

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        image = batch["image"][..., :3].to(self.device)
        return {"psnr": self.psnr(outputs["rgb"].detach().clamp(0, 1), image)}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        targets = self.client_targets(batch)
        loss_dict = {"rgb_loss": self.rgb_loss(targets, outputs["rgb"])}
        if "extra_port" in outputs and self.training and torch.is_grad_enabled():
            loss_dict["rgb_loss"] = self._client_sends_residual_noise(loss_dict["rgb_loss"], outputs, targets)
        if self.training and self.config.server.sampler == "proposal":
            # SERVER: the proposal networks are trained on the server from the client's (sent) weights.
            loss_dict["interlevel_loss"] = self.config.interlevel_loss_mult * interlevel_loss(
                outputs["weights_list"], outputs["ray_samples_list"])
        return loss_dict

    def image_metrics(self, rgb: Tensor, image: Tensor, prefix: str = "") -> Dict[str, float]:
        """PSNR, SSIM and (when available) LPIPS of an [H, W, 3] render against the ground truth."""
        out = {f"{prefix}psnr": psnr(rgb, image), f"{prefix}ssim": ssim(rgb, image)}
        if (lpips := lpips_score(self.lpips, rgb, image)) is not None:  # None: no weights, or images under 31 px
            out[f"{prefix}lpips"] = lpips
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
        privacy = self.channel.defense.privacy() if self.config.split else None
        if privacy is not None:  # residual-noise: the per-pixel guarantee so far (opacus RDP); no key if null
            if privacy["epsilon"] is not None:
                metrics["dp_epsilon"] = float(privacy["epsilon"])
            metrics["dp_delta"] = float(privacy["delta"])
        for hook in self.eval_image_hooks:
            extra_metrics, extra_images = hook(outputs, image)
            metrics.update(extra_metrics)
            images.update(extra_images)
        return metrics, images
