"""SERVER SIDE of the split NeRF: the sampler, the spatial hash-grid encoding and the first density layers.

Runs on the (curious) server. Input: the client's rays. The server draws samples along them and computes
per-sample embeddings ``h``, which cross the :class:`~s2nerf_ns.protocol.channel.GradientChannel`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Dict, List, Literal, NamedTuple, Optional, Tuple, Type

import numpy as np
import torch
import tyro
from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.configs.base_config import InstantiateConfig
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.encodings import HashEncoding
from nerfstudio.field_components.spatial_distortions import SceneContraction
from nerfstudio.fields.density_fields import HashMLPDensityField
from nerfstudio.model_components.ray_samplers import ProposalNetworkSampler, UniformSampler
from nerfstudio.model_components.scene_colliders import AABBBoxCollider, NearFarCollider

from s2nerf_ns.protocol.cut import density_mlp_dims, linear_stack


@dataclass
class ServerFieldConfig(InstantiateConfig):
    """The server's architecture, written once: the sampler, the hash grid and the density layers it keeps.

    Nested in the model's config (its flags stay ``--pipeline.model.<name>``), sent in the two-process ``Hello``
    as :meth:`to_dict` and rebuilt by ``s2nerf-server`` with ``ServerFieldConfig(**d).setup(scene_box=...)``.
    The client head reads the shared numbers of the density MLP (``hidden_dim``, ``num_density_layers``,
    ``geo_feat_dim``, ``cut_depth``) from it."""

    _target: tyro.conf.Suppress[Type] = field(default_factory=lambda: ServerSide)  # flattened: not the model's
    cut_depth: int = 1
    """Number of density-MLP layers on the server (reference: 1, so h is the 64-wide first-layer output)."""
    num_density_layers: int = 2
    """Layers of the density MLP in total (server + client)."""
    hidden_dim: int = 64
    """Width of the density MLP (and of h when cut_depth >= 1)."""
    geo_feat_dim: int = 15
    """Geometry features passed from the density to the colour MLP."""
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
    near_plane: float = 0.02
    """Near plane (scene units)."""
    far_plane: float = 1000.0
    """Far plane, used with --unbounded."""
    unbounded: bool = False
    """Real captures with content outside the scene box: contract space and sample up to far_plane."""

    def to_dict(self) -> Dict[str, object]:
        """The architecture as plain JSON values (what ``Hello`` carries, without the scene box)."""
        return {name: list(v) if isinstance(v := getattr(self, name), tuple) else v for name in arch_fields()}


def arch_fields() -> Tuple[str, ...]:
    """The names of the server's architecture: the fields of :class:`ServerFieldConfig` (not ``_target``)."""
    return tuple(f.name for f in fields(ServerFieldConfig) if f.name != "_target")


class ServerField(nn.Module):
    """Hash grid + the first ``cut_depth`` layers of the density MLP (reference cut: one layer, 64 wide)."""

    def __init__(self, aabb: Float[Tensor, "2 3"], config: ServerFieldConfig) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.clone().float())
        c = config
        self.contraction: Optional[SceneContraction] = SceneContraction(order=float("inf")) if c.unbounded else None
        self.encoding = HashEncoding(num_levels=c.num_levels, min_res=c.min_res, max_res=c.max_res,
                                     log2_hashmap_size=c.log2_hashmap_size, features_per_level=c.features_per_level,
                                     implementation=c.implementation)
        dims = density_mlp_dims(self.encoding.get_out_dim(), c.hidden_dim, c.num_density_layers, 1 + c.geo_feat_dim)
        self.layers = linear_stack(dims[: c.cut_depth + 1], final_activation=True)
        self.out_dim = dims[c.cut_depth]

    def normalize(self, positions: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 3"]:
        """World positions -> [0, 1]^3 grid coordinates (box-normalised, or contracted when unbounded)."""
        if self.contraction is not None:
            centred = SceneBox.get_normalized_positions(positions, self.aabb) * 2 - 1
            return (self.contraction(centred) + 2.0) / 4.0
        return SceneBox.get_normalized_positions(positions, self.aabb).clamp(0.0, 1.0)

    def forward(self, positions: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs dim"]:
        x = self.normalize(positions)
        shape = x.shape[:-1]
        feats = self.encoding(x.reshape(-1, 3))
        return self.layers(feats).reshape(*shape, self.out_dim)


class ServerPass(NamedTuple):
    """What the server computes for a batch of rays. Only ``h`` and ``bins`` are sent to the client."""

    ray_samples: RaySamples
    positions: Float[Tensor, "num_rays num_samples 3"]
    h: Float[Tensor, "num_rays num_samples dim"]
    bins: Float[Tensor, "num_rays num_samples_plus_1"]
    proposal_weights: List[Tensor]
    proposal_samples: List[RaySamples]


class ServerSide(nn.Module):
    """Everything the server runs: the collider (near/far), the sampler and its proposal networks, the fields.

    Given the client's rays it draws samples and computes their embeddings. It holds nothing of the client.
    """

    def __init__(self, config: ServerFieldConfig, scene_box: SceneBox) -> None:
        super().__init__()
        c = config
        self.config = config
        self.field = ServerField(scene_box.aabb, config)
        self.sampler_kind = c.sampler
        if c.unbounded:
            self.collider = NearFarCollider(near_plane=c.near_plane, far_plane=c.far_plane)
        else:
            self.collider = AABBBoxCollider(scene_box, near_plane=c.near_plane)
        self.uniform_sampler = UniformSampler(num_samples=c.num_samples)
        self.proposal_networks = nn.ModuleList()
        if c.sampler == "proposal":
            contraction = SceneContraction(order=float("inf")) if c.unbounded else None
            for _ in c.num_proposal_samples:
                self.proposal_networks.append(
                    HashMLPDensityField(scene_box.aabb, spatial_distortion=contraction, num_levels=5, max_res=128,
                                        log2_hashmap_size=17, hidden_dim=16, implementation=c.implementation)
                )
            every, warmup = c.proposal_update_every, c.proposal_warmup
            self.proposal_sampler = ProposalNetworkSampler(
                num_nerf_samples_per_ray=c.num_samples,
                num_proposal_samples_per_ray=tuple(c.num_proposal_samples),
                num_proposal_network_iterations=len(c.num_proposal_samples),
                update_sched=lambda step: np.clip(np.interp(step, [0, warmup], [0, every]), 1, every),
                initial_sampler=UniformSampler(single_jitter=False),
            )

    def samples(self, ray_bundle: RayBundle) -> Tuple[RaySamples, List[Tensor], List[RaySamples]]:
        """Draw samples along the client's rays (and, with proposals, the proposal weights and samples)."""
        if self.sampler_kind == "proposal":
            density_fns = [net.density_fn for net in self.proposal_networks]
            return self.proposal_sampler(ray_bundle, density_fns=density_fns)
        return self.uniform_sampler(ray_bundle), [], []

    def forward(self, ray_bundle: RayBundle, ray_indices: Optional[Tensor] = None) -> ServerPass:
        """Samples along the rays (already collided), their positions, the embeddings h and the bin edges.
        ``ray_indices`` (the pixels of the rays, part of the client's message) do not change what is computed."""
        ray_samples, proposal_weights, proposal_samples = self.samples(ray_bundle)
        positions = ray_samples.frustums.get_positions()
        h = self.field(positions)
        bins = torch.cat([ray_samples.frustums.starts[..., 0], ray_samples.frustums.ends[..., -1:, 0]], dim=-1)
        return ServerPass(ray_samples, positions, h, bins, proposal_weights, proposal_samples)

    def embed(self, origins: Float[Tensor, "R 3"], directions: Float[Tensor, "R 3"]
              ) -> Tuple[Float[Tensor, "R S D"], Float[Tensor, "R S_plus_1"]]:
        """h and bins along arbitrary rays (the server can query its own fields anywhere); differentiable
        w.r.t. the rays, with the near/far bounds detached."""
        bundle = RayBundle(origins=origins, directions=directions, pixel_area=torch.ones_like(origins[:, :1]),
                           camera_indices=torch.zeros_like(origins[:, :1], dtype=torch.long))
        bundle = self.collider(bundle)
        bundle.nears, bundle.fars = bundle.nears.detach(), bundle.fars.detach()
        server = self(bundle)
        return server.h, server.bins.detach()
