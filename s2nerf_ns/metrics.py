"""Image metrics that work offline: PSNR, SSIM, and LPIPS when its AlexNet weights are present."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
from torch import nn

LOG = logging.getLogger(__name__)
ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"
_warned = False


def lpips_weights_path() -> Path:
    """Where torchvision keeps the AlexNet weights that torchmetrics' LPIPS needs."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS


def build_lpips() -> Optional[nn.Module]:
    """LPIPS (AlexNet) when its weights are already on disk; ``None`` (reported as unavailable) otherwise.

    torchmetrics would download the weights while constructing the metric, which crashes offline; we never
    trigger a download. Put ``alexnet-owt-7be5be79.pth`` into ``$TORCH_HOME/hub/checkpoints`` to enable it.
    """
    global _warned
    if not lpips_weights_path().exists():
        if not _warned:
            LOG.warning("LPIPS unavailable: %s not found (no download is attempted).", lpips_weights_path())
            _warned = True
        return None
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        return LearnedPerceptualImagePatchSimilarity(normalize=True)
    except Exception as err:  # a corrupt weights file must not crash training or evaluation
        LOG.warning("LPIPS unavailable: %s", err)
        return None
