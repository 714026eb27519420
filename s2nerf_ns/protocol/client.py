"""CLIENT SIDE of the split NeRF: the rest of the density MLP, the direction encoding and the colour MLP.

Runs on the client, which keeps its images. Input: the embeddings ``h`` received from the server and
the ray directions the client itself sent. Volume rendering and the loss against the private pixels
happen in the model's client section.
"""

from __future__ import annotations

from typing import Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio.field_components.activations import trunc_exp
from nerfstudio.field_components.encodings import SHEncoding

from s2nerf_ns.protocol.cut import density_mlp_dims, linear_stack


class ClientHead(nn.Module):
    """Last ``num_density_layers - cut_depth`` density layers -> (density, geo features) -> colour MLP."""

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
    ) -> None:
        super().__init__()
        dims = density_mlp_dims(encoding_dim, hidden_dim, num_density_layers, 1 + geo_feat_dim)
        self.in_dim = dims[cut_depth]
        self.density_layers = linear_stack(dims[cut_depth:], final_activation=False)
        self.direction_encoding = SHEncoding(levels=sh_levels, implementation="torch")
        color_dims = [self.direction_encoding.get_out_dim() + geo_feat_dim] + [color_hidden_dim] * (
            num_color_layers - 1
        ) + [3]
        self.color_mlp = linear_stack(color_dims, final_activation=False)

    def forward(
        self, h: Float[Tensor, "*bs dim"], directions: Float[Tensor, "*bs 3"]
    ) -> Tuple[Float[Tensor, "*bs 1"], Float[Tensor, "*bs 3"]]:
        raw = self.density_layers(h)
        density = trunc_exp(raw[..., :1])
        geo = raw[..., 1:]
        d = self.direction_encoding(directions.reshape(-1, 3)).reshape(*directions.shape[:-1], -1)
        rgb = torch.sigmoid(self.color_mlp(torch.cat([d, geo], dim=-1)))
        return density, rgb
