"""CLIENT SIDE of the split NeRF: the rest of the density MLP, the direction encoding and the colour MLP.

Runs on the client, which keeps its images. Input: the embeddings ``h`` received from the server and
the ray directions the client itself sent. Volume rendering and the loss against the private pixels
happen in the model's client section.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio.field_components.activations import trunc_exp
from nerfstudio.field_components.encodings import SHEncoding, TriplaneEncoding

from s2nerf_ns.protocol.cut import density_mlp_dims, linear_stack
from s2nerf_ns.protocol.fine_geometry import FineGeometry


class ClientHead(nn.Module):
    """Last ``num_density_layers - cut_depth`` density layers -> (density, geo features) -> colour MLP; with client
    geometry the log density also gets the client's own tri-plane term (:mod:`s2nerf_ns.protocol.fine_geometry`)."""

    def __init__(
        self,
        encoding_dim: int,
        hidden_dim: int = 64,
        num_density_layers: int = 2,
        geo_feat_dim: int = 15,
        cut_depth: int = 1,
        sh_levels: int = 4,
        color_hidden_dim: int = 64,
        num_color_layers: int = 3,
        appearance_resolution: int = 0,
        appearance_features: int = 0,
        appearance_bound: float = 1.0,
        geometry_resolution: int = 0,
        geometry_features: int = 0,
        geometry_bound: float = 1.0,
    ) -> None:
        super().__init__()
        self.appearance: Optional[TriplaneEncoding] = None
        if appearance_resolution > 0 and appearance_features > 0:
            # Appearance stays on the client: colour comes from the client's own tri-plane at the sample positions
            # and the direction; the server's embeddings only carry density (geometry).
            self.appearance = TriplaneEncoding(resolution=appearance_resolution, num_components=appearance_features,
                                               init_scale=0.1, reduce="sum")
            geo_feat_dim = 0
        self.appearance_bound = float(appearance_bound)
        self.fine_geometry: Optional[FineGeometry] = None
        if geometry_resolution > 0 and geometry_features > 0:  # client geometry: log sigma = w . h + p(x)
            self.fine_geometry = FineGeometry(geometry_resolution, geometry_features, geometry_bound)
        dims = density_mlp_dims(encoding_dim, hidden_dim, num_density_layers, 1 + geo_feat_dim)
        self.in_dim = dims[cut_depth]
        self.density_layers = linear_stack(dims[cut_depth:], final_activation=False)
        self.direction_encoding = SHEncoding(levels=sh_levels, implementation="torch")
        colour_in = appearance_features if self.appearance is not None else geo_feat_dim
        color_dims = [self.direction_encoding.get_out_dim() + colour_in] + [color_hidden_dim] * (
            num_color_layers - 1
        ) + [3]
        self.color_mlp = linear_stack(color_dims, final_activation=False)

    @property
    def needs_positions(self) -> bool:
        """With a client appearance encoding (or client geometry) the head also needs the sample positions (the
        client has its rays and the sample spacing, so it computes them itself: nothing extra crosses)."""
        return self.appearance is not None or self.fine_geometry is not None

    def forward(
        self, h: Float[Tensor, "*bs dim"], directions: Float[Tensor, "*bs 3"],
        positions: Optional[Float[Tensor, "*bs 3"]] = None,
    ) -> Tuple[Float[Tensor, "*bs 1"], Float[Tensor, "*bs 3"]]:
        density, hidden = self.colour_features(h, directions, positions)
        return density, self.rgb_from_features(hidden)

    def rgb_from_features(self, hidden: Float[Tensor, "*bs hidden"]) -> Float[Tensor, "*bs 3"]:
        """The colour MLP's output layer: last hidden activations (``colour_features``) -> rgb."""
        return torch.sigmoid(self.color_mlp[-1](hidden))

    def colour_features(
        self, h: Float[Tensor, "*bs dim"], directions: Float[Tensor, "*bs 3"],
        positions: Optional[Float[Tensor, "*bs 3"]] = None,
    ) -> Tuple[Float[Tensor, "*bs 1"], Float[Tensor, "*bs hidden"]]:
        """Density and the colour MLP's last hidden activations (its output layer maps them to rgb logits)."""
        raw = self.density_layers(h)
        if self.needs_positions and positions is None:
            raise ValueError("this client head keeps appearance or geometry on the client: it needs the sample "
                             "positions")
        log_density = raw[..., :1] if self.fine_geometry is None else raw[..., :1] + self.fine_geometry(positions)
        density = trunc_exp(log_density)
        geo = raw[..., 1:]
        if self.appearance is not None:
            x = (positions / self.appearance_bound).clamp(-1.0, 1.0)
            geo = self.appearance(x.reshape(-1, 3)).reshape(*x.shape[:-1], -1)
        d = self.direction_encoding(directions.reshape(-1, 3)).reshape(*directions.shape[:-1], -1)
        return density, self.color_mlp[:-1](torch.cat([d, geo], dim=-1))
