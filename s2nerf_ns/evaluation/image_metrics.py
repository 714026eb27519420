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

from s2nerf_ns.errors import DataSetupError

LOG = logging.getLogger(__name__)
ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"

LUMA = torch.tensor([0.299, 0.587, 0.114])
"""ITU-R BT.601 luma weights, used by :func:`luminance`."""

SSIM_WINDOW = 11
"""Side of SSIM's Gaussian window (torchmetrics: ``int(3.5 * sigma + 0.5) * 2 + 1`` with sigma 1.5)."""
MIN_IMAGE_SIZE = SSIM_WINDOW // 2 + 1
"""Smallest image side SSIM can score (6 px): torchmetrics reflection-pads by half the window (5 px), which
needs more pixels than the padding on each side. The data checks refuse smaller images before a run starts."""
LPIPS_MIN_SIZE = 31
"""Smallest image side LPIPS (AlexNet features up to ``relu5``) can score; smaller images get no LPIPS."""


def too_small_for_ssim(height: int, width: int) -> Optional[str]:
    """Why SSIM cannot score ``height x width`` images (one phrase), or ``None`` when it can."""
    if min(height, width) >= MIN_IMAGE_SIZE:
        return None
    return (f"{width}x{height} px images are too small for SSIM (its {SSIM_WINDOW}x{SSIM_WINDOW} window needs "
            f"at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} px)")


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two images in ``[0, 1]`` (both are clamped to that range first); MSE floored at 1e-12."""
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean().clamp_min(1e-12)
    return float(-10 * torch.log10(mse))


def ssim(a: Float[Tensor, "H W C"], b: Float[Tensor, "H W C"]) -> float:
    """torchmetrics' SSIM (Gaussian window 11, sigma 1.5, data range 1) of two ``H x W x C`` images.

    Images smaller than :data:`MIN_IMAGE_SIZE` are refused with a one-line :class:`DataSetupError` (``ns-eval``
    of a run on such images prints that line) rather than torchmetrics' padding error."""
    problem = too_small_for_ssim(int(a.shape[0]), int(a.shape[1]))
    if problem is not None:
        raise DataSetupError(f"cannot evaluate: {problem}; train on larger images")
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


def lpips_score(metric: Optional[nn.Module], a: Float[Tensor, "H W 3"], b: Float[Tensor, "H W 3"]) -> Optional[float]:
    """LPIPS of two ``H x W x 3`` images with ``metric`` (from :func:`build_lpips`); ``None`` without one, or
    for images smaller than :data:`LPIPS_MIN_SIZE` (AlexNet's pooling needs that much; a warning says so once)."""
    if metric is None:
        return None
    if min(int(a.shape[0]), int(a.shape[1])) < LPIPS_MIN_SIZE:
        _warn_once(f"LPIPS skipped: {a.shape[1]}x{a.shape[0]} px images are smaller than the "
                   f"{LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE} px its AlexNet features need.")
        return None
    x, y = (torch.moveaxis(t, -1, 0)[None].clamp(0, 1) for t in (a, b))
    return float(metric.to(x.device)(x, y))


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
