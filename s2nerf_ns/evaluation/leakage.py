"""How much of the private scene an attacker's image reveals: scores, colour maps, floors and leakage.

An attacker that recovers structure without the right colours scores badly on plain PSNR/SSIM, so we also
score it after a colour map. *Which* colour map matters:

- The **per-image** affine fit (:func:`affine_color_fit`, reported as ``upper_cipsnr``) chooses 12
  parameters per image *with the ground truth*. A constant image is among the maps it can reach, so its
  margin over the constant-image floor is >= 0 by construction, and it rewards blur (faint structure gets
  12 free parameters fitted with the answer). It is kept only as a labelled **upper bound**.
- The **scene-level** colour map (:class:`ColourMap`, reported as ``cmpsnr`` / ``cm_lum_ssim``) is one
  3x4 affine map fitted *once per scene* on the training views and then applied unchanged to every view
  scored. A constant render maps to a constant, which can never beat the best constant image.
- **Fit-free** structure scores need no map at all: the normalized mutual information of luminance
  (``nmi``; 1.0 = independent, 2.0 = identical) and plain luminance SSIM (``raw_lum_ssim``).

Private-item regions are scored with a boolean ``H x W`` mask (``private_`` keys), looking only at pixels
inside it. Leakage is the difference between the best attack's scores and the **floor**: the same scores
for the best constant image (the mean colour), which knows nothing of the scene (:func:`floor_scores`,
:func:`leakage`).

All least-squares fits run in float64 on the CPU with a rank-revealing solver (QR, then LAPACK ``gelsd``:
minimum-norm least squares via SVD), so rank-deficient renders (a flat gray image, a grayscale image) give
exact, finite fits on every device; results are moved back to the input's device. (``torch.linalg.lstsq``
on CUDA only has the ``gels`` driver, which assumes full rank.)
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from skimage.metrics import normalized_mutual_information
from torch import Tensor

from s2nerf_ns.evaluation.image_metrics import LUMA, luminance, psnr, ssim

__all__ = [
    "LUMA", "NMI_BINS", "NMI_PERMUTATIONS", "ColourMap", "affine_color_fit", "best_of", "constant_image", "floor_scores",
    "leakage", "leakage_metrics", "luminance", "masked_psnr", "masked_ssim", "nmi", "psnr", "score_image",
    "ssim", "ssim_map",
]

NMI_BINS = 32
"""Histogram bins per axis for :func:`nmi`. Fixed so scores compare across image sizes and runs.

With ``N`` pixels, the plug-in estimate is biased upward for independent images by roughly
``(NMI_BINS - 1)**2 / (2 N (H0 + H1))``: measured for uniform noise, about +0.07 at 32x32, +0.018 at
64x64, +0.005 at 128x128, and +0.32 on a 200-pixel private-item mask. :func:`nmi` therefore subtracts the
NMI the same pixels score in random order (the permutation baseline), so that independent images score
about 1.0 at any size, as the constant-image floor does exactly.
"""
NMI_PERMUTATIONS = 4
"""Random orders averaged for :func:`nmi`'s permutation baseline (fixed seed: scores are reproducible)."""

SSIM_KERNEL = 11
SSIM_SIGMA = 1.5
_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2

LOWER_IS_BETTER = ("lpips", "mse", "loss")
"""Key suffixes :func:`leakage` and :func:`best_of` treat as lower-is-better (skipped / minimised)."""


# ----------------------------------------------------------------------------------------------- colour maps
def _rows(img: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """``H x W x C`` (any device/dtype) -> ``N x C`` float64 on the CPU, optionally only the masked pixels."""
    x = img.detach().to("cpu", torch.float64).reshape(-1, img.shape[-1])
    if mask is not None:
        x = x[_flat_mask(mask, img)]
    return x


def _flat_mask(mask: Tensor, img: Tensor) -> Tensor:
    m = mask.detach().to("cpu").reshape(-1).bool()
    if m.numel() != img.reshape(-1, img.shape[-1]).shape[0]:
        raise ValueError(f"mask of {tuple(mask.shape)} does not match image of {tuple(img.shape)}")
    return m


class ColourMap:
    """A 3x4 affine colour map ``rgb -> [r, g, b, 1] @ coef`` (``coef`` is 4x3, float64, on the CPU).

    Fit it once per scene with :meth:`fit` on the training views (attacker renders vs ground truth) and
    apply it unchanged to every view scored. It holds 12 numbers for the whole scene, so unlike a per-image
    fit it cannot paint each image with the answer, and a constant render stays a constant.
    """

    def __init__(self, coef: Tensor, num_pixels: int = 0):
        coef = torch.as_tensor(coef, dtype=torch.float64).detach().cpu()
        if coef.shape != (4, 3):
            raise ValueError(f"coef must be 4x3, got {tuple(coef.shape)}")
        if not torch.isfinite(coef).all():
            raise ValueError("non-finite colour map (non-finite render or ground truth?)")
        self.coef = coef
        self.num_pixels = int(num_pixels)

    @classmethod
    def identity(cls) -> "ColourMap":
        return cls(torch.cat([torch.eye(3), torch.zeros(1, 3)]).double())

    @classmethod
    def fit(
        cls,
        preds: Sequence[Float[Tensor, "H W 3"]],
        gts: Sequence[Float[Tensor, "H W 3"]],
        masks: Optional[Sequence[Optional[Bool[Tensor, "H W"]]]] = None,
    ) -> "ColourMap":
        """Least-squares affine map of all ``preds`` onto all ``gts`` together (pixels pooled over images).

        ``masks`` (optional, one per image, ``None`` = all pixels) selects the pixels used. Streams the
        images through a tall-skinny QR (only a 7x7 factor is kept, so a whole scene's views fit in memory),
        then solves the 4x4 system with ``gelsd`` (SVD, minimum norm). The singular-value cutoff is
        ``eps * num_pixels`` relative to the largest, what ``gelsd`` would use on the pooled pixels: rank
        deficient renders give the exact minimum-norm fit (a constant render maps to the mean colour).
        """
        if len(preds) != len(gts):
            raise ValueError("need as many predictions as ground-truth images")
        masks = [None] * len(preds) if masks is None else list(masks)
        if len(masks) != len(preds):
            raise ValueError("need one mask (or None) per image")
        r = torch.zeros(0, 7, dtype=torch.float64)
        n = 0
        for pred, gt, mask in zip(preds, gts, masks):
            if pred.shape[-1] != 3 or gt.shape[-1] != 3 or pred.shape[:-1] != gt.shape[:-1]:
                raise ValueError(f"need matching H x W x 3 images, got {tuple(pred.shape)} and {tuple(gt.shape)}")
            x, y = _rows(pred, mask), _rows(gt, mask)
            if x.shape[0] == 0:
                continue
            block = torch.cat([x, torch.ones_like(x[:, :1]), y], dim=1)
            r = torch.linalg.qr(torch.cat([r, block]), mode="r").R
            n += x.shape[0]
        if n == 0:
            raise ValueError("no pixels to fit a colour map on")
        rcond = torch.finfo(torch.float64).eps * max(n, 7)
        coef = torch.linalg.lstsq(r[:, :4], r[:, 4:], rcond=rcond, driver="gelsd").solution
        return cls(coef, num_pixels=n)

    def apply(self, pred: Float[Tensor, "*B 3"], clamp: bool = True) -> Float[Tensor, "*B 3"]:
        """The mapped image, computed in float64 on the CPU, returned on ``pred``'s device and dtype."""
        x = _rows(pred)
        out = (x @ self.coef[:3] + self.coef[3]).reshape(pred.shape)
        if clamp:
            out = out.clamp(0, 1)
        return out.to(device=pred.device, dtype=pred.dtype)

    def to_list(self) -> List[List[float]]:
        """JSON-friendly 4x3 nested list (rows: weights of r, g, b, then the offset)."""
        return self.coef.tolist()

    @classmethod
    def from_list(cls, coef: Sequence[Sequence[float]]) -> "ColourMap":
        return cls(torch.tensor(coef, dtype=torch.float64))

    def __repr__(self) -> str:
        return f"ColourMap(coef={self.coef.tolist()}, num_pixels={self.num_pixels})"


def affine_color_fit(
    pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"], mask: Optional[Bool[Tensor, "H W"]] = None
) -> Float[Tensor, "H W 3"]:
    """UPPER BOUND only: the best affine colour map of ``pred`` onto ``gt``, fitted per image with ``gt``.

    Least squares over the image's (masked) pixels, exact for rank-deficient renders (see
    :meth:`ColourMap.fit`); the whole image is mapped and clamped to ``[0, 1]``.
    """
    return ColourMap.fit([pred], [gt], None if mask is None else [mask]).apply(pred)


# --------------------------------------------------------------------------------------- structure scores
def nmi(
    pred: Float[Tensor, "H W 3"],
    gt: Float[Tensor, "H W 3"],
    mask: Optional[Bool[Tensor, "H W"]] = None,
    bins: int = NMI_BINS,
) -> float:
    """Normalized mutual information ``(H(a) + H(b)) / H(a, b)`` of the luminances (clamped to [0, 1]),
    less its permutation baseline: ``1 + NMI(a, b) - mean_k NMI(perm_k(a), b)``.

    skimage's estimator with ``bins`` equal-width bins per axis spanning each image's own range, so it needs
    no colour fit and is invariant to affine changes of either luminance (gain, offset, inversion); a
    nonlinear monotone remap moves pixels between bins and lowers it somewhat. The plug-in estimate is biased
    upward for few pixels (see :data:`NMI_BINS`); the same pixels in random order carry no spatial
    information and score exactly that bias, which is subtracted. 1.0 = independent at any size (a constant
    image scores exactly 1.0), just under 2.0 = identical up to such a change. Only masked pixels count; an
    empty mask or a non-finite image gives NaN.
    """
    a = _rows(luminance(pred.clamp(0, 1)), mask)[:, 0].numpy()
    b = _rows(luminance(gt.clamp(0, 1)), mask)[:, 0].numpy()
    if a.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.nan
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0  # no mutual information; skimage would divide 0 by 0
    raw = float(normalized_mutual_information(b, a, bins=bins))
    rng = np.random.default_rng(0)
    baseline = np.mean([normalized_mutual_information(b, rng.permutation(a), bins=bins)
                        for _ in range(NMI_PERMUTATIONS)])
    return 1.0 + raw - float(baseline)


def _gaussian_1d(size: int, sigma: float) -> Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(
    pred: Float[Tensor, "H W C"], gt: Float[Tensor, "H W C"], mask: Optional[Bool[Tensor, "H W"]] = None
) -> Float[Tensor, "H W"]:
    """Per-pixel SSIM (averaged over channels) whose local statistics use only the pixels inside ``mask``.

    Same window and constants as torchmetrics' SSIM (Gaussian 11 x 11, sigma 1.5, data range 1), but the
    local means and (co)variances are mask-normalised convolutions: ``mu = G*(m x) / G*m``. Pixels outside
    the mask never enter any statistic, so changing them changes nothing; near the image border the window
    is truncated instead of reflected (the only difference from torchmetrics without a mask). Computed in
    float64 on the CPU; the map is returned there.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch {tuple(pred.shape)} vs {tuple(gt.shape)}")
    h, w, c = pred.shape
    x = torch.moveaxis(pred.detach().to("cpu", torch.float64).clamp(0, 1), -1, 0)[None]
    y = torch.moveaxis(gt.detach().to("cpu", torch.float64).clamp(0, 1), -1, 0)[None]
    if mask is None:
        m = torch.ones(1, 1, h, w, dtype=torch.float64)
    else:
        m = _flat_mask(mask, pred).double().view(1, 1, h, w)
    g = _gaussian_1d(SSIM_KERNEL, SSIM_SIGMA)
    pad = SSIM_KERNEL // 2

    def blur(t: Tensor) -> Tensor:  # separable Gaussian with zero padding, per channel
        k = t.shape[1]
        t = F.conv2d(t, g.view(1, 1, -1, 1).expand(k, 1, -1, 1), padding=(pad, 0), groups=k)
        return F.conv2d(t, g.view(1, 1, 1, -1).expand(k, 1, 1, -1), padding=(0, pad), groups=k)

    wsum = blur(m).clamp_min(1e-300)
    mx, my = blur(m * x) / wsum, blur(m * y) / wsum
    sxx = (blur(m * x * x) / wsum - mx**2).clamp_min(0)
    syy = (blur(m * y * y) / wsum - my**2).clamp_min(0)
    sxy = blur(m * x * y) / wsum - mx * my
    s = ((2 * mx * my + _SSIM_C1) * (2 * sxy + _SSIM_C2)) / ((mx**2 + my**2 + _SSIM_C1) * (sxx + syy + _SSIM_C2))
    return s[0].mean(0)


def masked_ssim(
    pred: Float[Tensor, "H W C"], gt: Float[Tensor, "H W C"], mask: Optional[Bool[Tensor, "H W"]] = None
) -> float:
    """Mean of :func:`ssim_map` over the pixels inside ``mask`` (all pixels without one); NaN if empty."""
    s = ssim_map(pred, gt, mask)
    if mask is None:
        return float(s.mean())
    m = _flat_mask(mask, pred)
    return float(s.reshape(-1)[m].mean()) if m.any() else math.nan


def masked_psnr(pred: Float[Tensor, "H W C"], gt: Float[Tensor, "H W C"], mask: Bool[Tensor, "H W"]) -> float:
    """PSNR over the pixels inside ``mask`` (values clamped to [0, 1], MSE floored at 1e-12); NaN if empty."""
    a, b = _rows(pred.clamp(0, 1), mask), _rows(gt.clamp(0, 1), mask)
    if a.shape[0] == 0:
        return math.nan
    return float(-10 * torch.log10((a - b).pow(2).mean().clamp_min(1e-12)))


# ------------------------------------------------------------------------------------ scores and floors
def score_image(
    pred: Float[Tensor, "H W 3"],
    gt: Float[Tensor, "H W 3"],
    colour_map: Optional[ColourMap] = None,
    mask: Optional[Bool[Tensor, "H W"]] = None,
    prefix: str = "",
) -> Dict[str, float]:
    """Every leakage score of one attacker image, as ``{prefix + name: value}`` (higher = more leaked).

    Always: ``psnr``, ``ssim`` (plain), ``nmi`` (luminance NMI, fit-free), ``raw_lum_ssim`` (luminance SSIM,
    no colour map), ``upper_cipsnr`` / ``upper_lum_ssim`` (after the per-image affine fit with the ground
    truth: an UPPER BOUND, not a leakage estimate).
    With ``colour_map`` (the scene's :class:`ColourMap`): ``cmpsnr``, ``cm_lum_ssim`` and ``cm_nmi``
    (after it; ``cm_nmi`` matters for false-colour renders, whose raw luminance mixes arbitrary channels).
    With ``mask`` (private-item region, boolean ``H x W``): the same scores on the masked pixels only, as
    ``private_psnr``, ``private_ssim``, ``private_nmi``, ``private_raw_lum_ssim``, ``private_upper_cipsnr``
    (per-image fit on the masked pixels), and with a map ``private_cmpsnr``, ``private_cm_lum_ssim``,
    ``private_cm_nmi``. An empty mask gives NaN for all ``private_`` keys (skip them when aggregating).
    """
    out: Dict[str, float] = {
        "psnr": psnr(pred, gt),
        "ssim": ssim(pred, gt),
        "nmi": nmi(pred, gt),
        "raw_lum_ssim": ssim(luminance(pred), luminance(gt)),
    }
    mapped = None
    if colour_map is not None:
        mapped = colour_map.apply(pred)
        out["cmpsnr"] = psnr(mapped, gt)
        out["cm_lum_ssim"] = ssim(luminance(mapped), luminance(gt))
        out["cm_nmi"] = nmi(mapped, gt)
    fitted = affine_color_fit(pred, gt)
    out["upper_cipsnr"] = psnr(fitted, gt)
    out["upper_lum_ssim"] = ssim(luminance(fitted), luminance(gt))
    if mask is not None:
        keys = ["private_psnr", "private_ssim", "private_nmi", "private_raw_lum_ssim", "private_upper_cipsnr"]
        keys += ["private_cmpsnr", "private_cm_lum_ssim", "private_cm_nmi"] if mapped is not None else []
        if not bool(_flat_mask(mask, gt).any()):
            out.update({k: math.nan for k in keys})
        else:
            out["private_psnr"] = masked_psnr(pred, gt, mask)
            out["private_ssim"] = masked_ssim(pred, gt, mask)
            out["private_nmi"] = nmi(pred, gt, mask)
            out["private_raw_lum_ssim"] = masked_ssim(luminance(pred), luminance(gt), mask)
            out["private_upper_cipsnr"] = masked_psnr(affine_color_fit(pred, gt, mask), gt, mask)
            if mapped is not None:
                out["private_cmpsnr"] = masked_psnr(mapped, gt, mask)
                out["private_cm_lum_ssim"] = masked_ssim(luminance(mapped), luminance(gt), mask)
                out["private_cm_nmi"] = nmi(mapped, gt, mask)
    return {f"{prefix}{k}": v for k, v in out.items()}


def constant_image(gt: Float[Tensor, "H W 3"], mask: Optional[Bool[Tensor, "H W"]] = None) -> Float[Tensor, "H W 3"]:
    """The best constant image (least MSE): ``gt``'s mean colour (over the masked pixels when given)."""
    px = gt.reshape(-1, gt.shape[-1])
    if mask is not None:
        px = px[_flat_mask(mask, gt).to(gt.device)]
    if px.shape[0] == 0:
        return torch.full_like(gt, math.nan)
    return px.mean(0).expand_as(gt).clone()


def floor_scores(
    gt: Float[Tensor, "H W 3"],
    colour_map: Optional[ColourMap] = None,
    mask: Optional[Bool[Tensor, "H W"]] = None,
    prefix: str = "",
) -> Dict[str, float]:
    """:func:`score_image`'s keys for the no-information floor: the best constant image.

    The constant is scored as is (identity colour map: the best constant needs no map) so that ``cm*`` keys
    are present when ``colour_map`` is; ``private_`` keys use the best constant *for the masked region*
    (its mean colour), the most favourable floor for that region.
    """
    ident = ColourMap.identity() if colour_map is not None else None
    out = score_image(constant_image(gt), gt, ident, prefix=prefix)
    if mask is not None:
        region_const = constant_image(gt, mask) if bool(_flat_mask(mask, gt).any()) else constant_image(gt)
        private = score_image(region_const, gt, ident, mask=mask, prefix=prefix)  # NaN if the mask is empty
        out.update({k: v for k, v in private.items() if k.startswith(f"{prefix}private_")})
    return out


def _lower_is_better(key: str) -> bool:
    return key.endswith(LOWER_IS_BETTER)


def best_of(scores: Iterable[Mapping[str, float]]) -> Dict[str, float]:
    """Per-metric best over several attacks (max, or min for :data:`LOWER_IS_BETTER`), ignoring NaN."""
    best: Dict[str, float] = {}
    for s in scores:
        for k, v in s.items():
            v = float(v)
            if math.isnan(v):
                best.setdefault(k, math.nan)
                continue
            old = best.get(k, math.nan)
            if math.isnan(old) or (v < old if _lower_is_better(k) else v > old):
                best[k] = v
    return best


def leakage(best_attack: Mapping[str, float], floor: Mapping[str, float]) -> Dict[str, float]:
    """``best_attack[k] - floor[k]`` for every higher-is-better metric both hold (positive = leaked).

    Keys ending in :data:`LOWER_IS_BETTER` are skipped; NaN in either gives NaN.
    """
    return {k: float(best_attack[k]) - float(floor[k]) for k in best_attack if k in floor and not _lower_is_better(k)}


# ------------------------------------------------------------------------------------------------ legacy
def leakage_metrics(pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"], prefix: str) -> Dict[str, float]:
    """Legacy scores (kept for existing callers): PSNR/SSIM, PER-IMAGE-fit ``cipsnr`` and luminance SSIM
    after that fit (``lum_ssim``), the best-constant baseline and the margins over it.

    The per-image fit makes ``cipsnr_margin`` >= 0 by construction (see the module docstring); new code
    should use :func:`score_image` with a scene-level :class:`ColourMap` and :func:`floor_scores`.
    """
    const = gt.reshape(-1, 3).mean(0).expand_as(gt)  # the best constant image (minimises MSE)
    fitted = affine_color_fit(pred, gt)
    out = {
        f"{prefix}psnr": psnr(pred, gt),
        f"{prefix}ssim": ssim(pred, gt),
        f"{prefix}cipsnr": psnr(fitted, gt),
        f"{prefix}lum_ssim": ssim(luminance(fitted), luminance(gt)),
        f"{prefix}baseline_psnr": psnr(const, gt),
        f"{prefix}baseline_lum_ssim": ssim(luminance(const), luminance(gt)),
    }
    out[f"{prefix}cipsnr_margin"] = out[f"{prefix}cipsnr"] - out[f"{prefix}baseline_psnr"]
    out[f"{prefix}lum_ssim_margin"] = out[f"{prefix}lum_ssim"] - out[f"{prefix}baseline_lum_ssim"]
    return out
