"""SERVER SIDE of the split NeRF: the spatial hash-grid encoding and the first density layers.

Runs on the (curious) server. Input: sample positions the server drew along the client's rays.
Output: per-sample embeddings ``h`` that cross the :class:`~s2nerf_ns.split.channel.GradientChannel`.
"""

from __future__ import annotations

from typing import Literal, Optional

from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.encodings import HashEncoding
from nerfstudio.field_components.spatial_distortions import SceneContraction

from s2nerf_ns.split.mlp import density_mlp_dims, linear_stack


class ServerField(nn.Module):
    """Hash grid + the first ``cut_depth`` layers of the density MLP (reference cut: one layer, 64 wide)."""

    def __init__(
        self,
        aabb: Float[Tensor, "2 3"],
        num_levels: int = 16,
        features_per_level: int = 2,
        min_res: int = 16,
        max_res: int = 2048,
        log2_hashmap_size: int = 19,
        hidden_dim: int = 64,
        num_density_layers: int = 2,
        geo_feat_dim: int = 15,
        cut_depth: int = 1,
        unbounded: bool = False,
        implementation: Literal["tcnn", "torch"] = "torch",
    ) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.clone().float())
        self.contraction: Optional[SceneContraction] = SceneContraction(order=float("inf")) if unbounded else None
        self.encoding = HashEncoding(
            num_levels=num_levels,
            min_res=min_res,
            max_res=max_res,
            log2_hashmap_size=log2_hashmap_size,
            features_per_level=features_per_level,
            implementation=implementation,
        )
        dims = density_mlp_dims(self.encoding.get_out_dim(), hidden_dim, num_density_layers, 1 + geo_feat_dim)
        self.layers = linear_stack(dims[: cut_depth + 1], final_activation=True)
        self.out_dim = dims[cut_depth]

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
