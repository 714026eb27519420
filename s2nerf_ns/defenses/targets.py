"""Target perturbations: what the client does to its own target pixels before computing the loss."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


class IdentityTargets:
    """The loss uses the true pixels."""

    def __call__(self, rgb: Float[Tensor, "*batch 3"], generator: torch.Generator) -> Float[Tensor, "*batch 3"]:
        return rgb


class LabelNoise:
    """Label-noise baseline: Gaussian noise on the target RGB values; the gradient is then sent unmodified."""

    def __init__(self, std: float) -> None:
        self.std = std

    def __call__(self, rgb: Float[Tensor, "*batch 3"], generator: torch.Generator) -> Float[Tensor, "*batch 3"]:
        noise = torch.randn(rgb.shape, generator=generator, device=rgb.device, dtype=rgb.dtype)
        return rgb + self.std * noise
