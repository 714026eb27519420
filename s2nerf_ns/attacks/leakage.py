"""How much of the private scene an attacker's image reveals: metrics and a no-information baseline.

The surrogate model attack tends to recover structure without the right colours, so besides PSNR/SSIM we
report colour-invariant scores — PSNR after the best per-image affine colour map (a 3x4 least-squares fit)
and SSIM on luminance — and the same scores for the best constant image, which knows nothing of the
scene. Leakage is the margin over that baseline.
"""

from __future__ import annotations

from typing import Dict

import torch
from jaxtyping import Float
from torch import Tensor
from torchmetrics.functional import structural_similarity_index_measure

LUMA = torch.tensor([0.299, 0.587, 0.114])


def psnr(a: Tensor, b: Tensor) -> float:
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean().clamp_min(1e-12)
    return float(-10 * torch.log10(mse))


def ssim(a: Float[Tensor, "H W C"], b: Float[Tensor, "H W C"]) -> float:
    x, y = (torch.moveaxis(t.clamp(0, 1), -1, 0)[None] for t in (a, b))
    return float(structural_similarity_index_measure(x, y, data_range=1.0))


def luminance(img: Float[Tensor, "H W 3"]) -> Float[Tensor, "H W 1"]:
    return (img * LUMA.to(img.device)).sum(-1, keepdim=True)


def affine_color_fit(pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"]) -> Float[Tensor, "H W 3"]:
    """The best affine colour map of ``pred`` onto ``gt`` (least squares over the image's pixels)."""
    x = torch.cat([pred.reshape(-1, 3), torch.ones_like(pred.reshape(-1, 3)[:, :1])], dim=-1).double()
    y = gt.reshape(-1, 3).double()
    coef = torch.linalg.lstsq(x, y).solution
    return (x @ coef).float().reshape(gt.shape).clamp(0, 1)


def leakage_metrics(pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"], prefix: str) -> Dict[str, float]:
    """PSNR/SSIM, colour-invariant PSNR and luminance SSIM of ``pred``, their baseline and margins."""
    const = gt.reshape(-1, 3).mean(0).expand_as(gt)  # the best constant image (minimises MSE)
    out = {
        f"{prefix}psnr": psnr(pred, gt),
        f"{prefix}ssim": ssim(pred, gt),
        f"{prefix}cipsnr": psnr(affine_color_fit(pred, gt), gt),
        f"{prefix}lum_ssim": ssim(luminance(affine_color_fit(pred, gt)), luminance(gt)),
        f"{prefix}baseline_psnr": psnr(const, gt),
        f"{prefix}baseline_lum_ssim": ssim(luminance(const), luminance(gt)),
    }
    out[f"{prefix}cipsnr_margin"] = out[f"{prefix}cipsnr"] - out[f"{prefix}baseline_psnr"]
    out[f"{prefix}lum_ssim_margin"] = out[f"{prefix}lum_ssim"] - out[f"{prefix}baseline_lum_ssim"]
    return out
