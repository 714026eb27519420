"""Image metrics that work offline: PSNR, SSIM, luminance, and LPIPS when its AlexNet weights are present.

This module is the one home of the plain image metrics. Images are ``H x W x C`` tensors with values in
``[0, 1]`` (on any device). The leakage metrics (colour maps, structure scores, masks, floors) build on
these in :mod:`s2nerf_ns.evaluation.leakage`.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor, nn
from torchmetrics.functional import structural_similarity_index_measure

LOG = logging.getLogger(__name__)
ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"

LUMA = torch.tensor([0.299, 0.587, 0.114])
"""ITU-R BT.601 luma weights, used by :func:`luminance`."""


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two images in ``[0, 1]`` (both are clamped to that range first); MSE floored at 1e-12."""
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean().clamp_min(1e-12)
    return float(-10 * torch.log10(mse))


def ssim(a: Float[Tensor, "H W C"], b: Float[Tensor, "H W C"]) -> float:
    """torchmetrics' SSIM (Gaussian window 11, sigma 1.5, data range 1) of two ``H x W x C`` images."""
    x, y = (torch.moveaxis(t.clamp(0, 1), -1, 0)[None] for t in (a, b))
    return float(structural_similarity_index_measure(x, y, data_range=1.0))


def luminance(img: Float[Tensor, "H W 3"]) -> Float[Tensor, "H W 1"]:
    """BT.601 luma of an RGB image, keeping a trailing channel axis."""
    return (img * LUMA.to(device=img.device, dtype=img.dtype)).sum(-1, keepdim=True)


def lpips_weights_path() -> Path:
    """Where torchvision keeps the AlexNet weights that torchmetrics' LPIPS needs."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    """Log ``message`` as a warning the first time it is seen in this process (cached per message)."""
    LOG.warning(message)


def build_lpips() -> Optional[nn.Module]:
    """LPIPS (AlexNet) when its weights are already on disk; ``None`` (reported as unavailable) otherwise.

    torchmetrics would download the weights while constructing the metric, which crashes offline; we never
    trigger a download. Put ``alexnet-owt-7be5be79.pth`` into ``$TORCH_HOME/hub/checkpoints`` to enable it.
    """
    path = lpips_weights_path()
    if not path.exists():
        _warn_once(f"LPIPS unavailable: {path} not found (no download is attempted).")
        return None
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        return LearnedPerceptualImagePatchSimilarity(normalize=True)
    except Exception as err:  # a corrupt weights file must not crash training or evaluation
        LOG.warning("LPIPS unavailable: %s", err)
        return None
