"""The one volume renderer of the protocol, used by the client head and by the attacker's surrogate.

Both render a ray from per-sample embeddings ``h`` and the sample spacing (bin edges) the server sent, so
their compositing (weights, background) must be the same code: nerfstudio's renderers on samples rebuilt
from the bin edges.
"""

from __future__ import annotations

from typing import Callable, Dict, Literal, Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer

BackgroundColor = Literal["black", "white", "last_sample"]
Head = Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]
"""(h [R, S, D], directions [R, S, 3]) -> (density [R, S, 1], rgb [R, S, 3]): a ClientHead or a surrogate."""


def samples_from_bins(origins: Float[Tensor, "R 3"], directions: Float[Tensor, "R 3"],
                      bins: Float[Tensor, "R S_plus_1"]) -> RaySamples:
    """Ray samples between consecutive bin edges (Euclidean t-values) of each ray."""
    bundle = RayBundle(origins=origins, directions=directions, pixel_area=torch.ones_like(origins[..., :1]))
    return bundle.get_ray_samples(bin_starts=bins[..., :-1, None], bin_ends=bins[..., 1:, None])


class VolumeRenderer(nn.Module):
    """Composite a head's per-sample density and colour along rays given by origins, directions and bins."""

    def __init__(self, background_color: BackgroundColor = "last_sample") -> None:
        super().__init__()
        self.background_color = background_color
        self.rgb = RGBRenderer(background_color=background_color)
        self.accumulation = AccumulationRenderer()
        self.depth = DepthRenderer(method="expected")

    def forward(self, head: Head, h: Float[Tensor, "R S D"], origins: Float[Tensor, "R 3"],
                directions: Float[Tensor, "R 3"], bins: Float[Tensor, "R S_plus_1"],
                with_depth: bool = True) -> Dict[str, Tensor]:
        """rgb [R, 3], weights [R, S, 1], accumulation [R, 1] and (unless ``with_depth`` is False) depth [R, 1]."""
        samples = samples_from_bins(origins, directions, bins)
        density, rgb = head(h, samples.frustums.directions)
        weights = samples.get_weights(density)
        out = {"rgb": self.rgb(rgb=rgb, weights=weights), "weights": weights,
               "accumulation": self.accumulation(weights=weights)}
        if with_depth:
            out["depth"] = self.depth(weights=weights, ray_samples=samples)
        return out
