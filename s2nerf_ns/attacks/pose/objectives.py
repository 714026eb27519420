"""SERVER SIDE (attacker): how the global pose search (``colour_search.py``) compares a candidate's render with the
leaked photo: a colour map of the surrogate's rgb ("colour-map") or a cross-validated regression from its per-ray
features ("feature-cv"); see ``PoseSearchConfig.objective``."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from s2nerf_ns.attacks.pose.camera import camera_directions
from s2nerf_ns.attacks.pose.config import PoseSearchConfig
from s2nerf_ns.attacks.pose.views import RenderFn, downsample, render_views


def colour_fit(pred: Float[Tensor, "C P 3"], target: Float[Tensor, "P 3"], model: str = "quadratic") -> Tensor:
    """Each render [C,P,3] mapped onto the target by its own least-squares colour map: ``"affine"`` (3x4, as
    ``retrieval.affine_invariant_mse``) or ``"quadratic"`` (affine in rgb and rgb^2: also absorbs gamma-like tone
    curves)."""
    feats = [pred, pred * pred] if model == "quadratic" else [pred]
    if model not in ("affine", "quadratic"):
        raise ValueError(f"unknown colour model {model!r}")
    x = torch.cat(feats + [torch.ones_like(pred[..., :1])], dim=-1)
    gram = x.transpose(1, 2) @ x + 1e-4 * torch.eye(x.shape[-1], device=pred.device, dtype=pred.dtype)
    coef = torch.linalg.solve(gram, x.transpose(1, 2) @ target.expand(len(pred), -1, -1))
    return x @ coef


def checkerboard_folds(h: int, w: int, blocks: int, device=None) -> Tensor:
    """Fold (0 or 1) [h*w] of each pixel (row-major): a checkerboard of about ``blocks`` blocks per side."""
    size = max(1, min(h, w) // max(1, blocks))
    rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return ((rows // size + cols // size) % 2).reshape(-1)


def cv_fit(pred: Float[Tensor, "C P F"], target: Float[Tensor, "P 3"], h: int, w: int, blocks: int = 6,
           ridge: float = 1e-4) -> Float[Tensor, "C P 3"]:
    """Held-out predictions of the target from each candidate's features: a ridge regression (with offset) fitted on
    one fold of a pixel checkerboard (``checkerboard_folds``) predicts the other fold, and vice versa. Gram matrices
    in the input precision, solves in float64."""
    folds = checkerboard_folds(h, w, blocks, pred.device)
    out = torch.empty(*pred.shape[:2], target.shape[-1], device=pred.device, dtype=pred.dtype)
    if bool((folds == 0).all()) or bool((folds == 1).all()):  # a single pixel: no held-out fold exists
        folds = torch.zeros_like(folds)
        pairs = [(folds == 0, folds == 0)]
    else:
        pairs = [(folds != f, folds == f) for f in (0, 1)]
    for train, test in pairs:
        x, y = pred[:, train], target[train]
        mx, my = x.mean(dim=1, keepdim=True), y.mean(dim=0)
        xc = x - mx
        gram = (xc.transpose(1, 2) @ xc).double()
        scale = gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-12)[:, None, None]
        gram = gram + ridge * scale * torch.eye(gram.shape[-1], device=pred.device, dtype=gram.dtype)
        coef = torch.linalg.solve(gram, (xc.transpose(1, 2) @ (y - my)).double()).to(pred.dtype)
        out[:, test] = (pred[:, test] - mx) @ coef + my
    return out


def feature_transform(render: RenderFn, training_c2w: Tensor, dirs_cam: Tensor, components: int,
                      chunk: int = 1 << 16, max_views: int = 16) -> RenderFn:
    """The render function of the "feature-cv" objective: ``render``'s rgb (its first 3 channels), rgb^2 and the
    first ``components`` principal components of its other channels. The components are fitted on renders at (up
    to ``max_views`` of) the training poses, with camera-frame directions ``dirs_cam`` [P,3]: what the attacker
    has, nothing of the photo."""
    if components <= 0:
        def colours_only(origins: Tensor, directions: Tensor) -> Tensor:
            rgb = render(origins, directions).float()[:, :3]
            return torch.cat([rgb, rgb * rgb], dim=-1)
        return colours_only
    idx = torch.linspace(0, len(training_c2w) - 1, min(len(training_c2w), max_views)).round().long()
    sample = render_views(render, training_c2w[idx.to(training_c2w.device)], dirs_cam, chunk)
    aux = sample[..., 3:].reshape(-1, sample.shape[-1] - 3)
    if aux.shape[1] == 0:
        raise ValueError("feature-cv: the render returned only rgb; give it further per-ray features")
    mean = aux.mean(dim=0)
    basis = torch.linalg.svd(aux - mean, full_matrices=False).Vh[:components].T  # F-3 k

    def transformed(origins: Tensor, directions: Tensor) -> Tensor:
        x = render(origins, directions).float()
        rgb = x[:, :3]
        return torch.cat([rgb, rgb * rgb, (x[:, 3:] - mean) @ basis], dim=-1)
    return transformed


def photo_feature_render(render: RenderFn, image: Float[Tensor, "H W 3"], intrinsics, training_c2w: Tensor,
                         cfg: PoseSearchConfig) -> RenderFn:
    """``feature_transform`` of ``render`` for one photo, as the "feature-cv" search uses it: the principal
    components fitted with the pixel directions of the photo at the coarse stage's size (``cfg.coarse_size``)."""
    small, small_k = downsample(image, intrinsics, cfg.coarse_size)
    dirs_cam = camera_directions(small_k, small.shape[0], small.shape[1], image.device)
    return feature_transform(render, training_c2w, dirs_cam, cfg.feature_components, cfg.max_rays_per_call)


def fit_to_target(pred: Float[Tensor, "C P F"], target: Float[Tensor, "P 3"], h: int, w: int,
                  cfg: PoseSearchConfig) -> Float[Tensor, "C P 3"]:
    """Each candidate's render mapped onto the target, as ``cfg.objective`` says (see ``PoseSearchConfig``)."""
    if cfg.objective == "feature-cv":
        return cv_fit(pred, target, h, w, cfg.cv_blocks, cfg.ridge)
    if cfg.objective != "colour-map":
        raise ValueError(f"unknown pose-search objective {cfg.objective!r} (colour-map or feature-cv)")
    return colour_fit(pred[..., :3], target, cfg.colour_model)


def batched_scores(pred: Float[Tensor, "C P F"], target: Float[Tensor, "P 3"], h: int, w: int,
                   cfg: PoseSearchConfig) -> Tensor:
    """Colour-invariant dissimilarity [C] of each candidate render with the target (lower is better).

    Each render is first mapped onto the target (``fit_to_target``: its own best colour map, or the held-out
    predictions of a per-candidate regression from its features); the score is the residual divided by the target's
    variance, plus ``gradient_weight * (1 - NCC)`` of the image gradients of the mapped render and of the target
    (edges, insensitive to smooth shading errors)."""
    fitted = fit_to_target(pred, target, h, w, cfg)  # C P 3
    resid = (fitted - target).pow(2).mean(dim=(1, 2))
    score = resid / target.var(dim=0).sum().clamp_min(1e-8) * 3
    if cfg.gradient_weight > 0 and h > 1 and w > 1:
        score = score + cfg.gradient_weight * (1.0 - gradient_ncc(fitted, target, h, w))
    return score


def gradient_ncc(pred: Tensor, target: Tensor, h: int, w: int) -> Tensor:
    """NCC [C] of the (x, y) per-channel gradient images of ``pred`` [C,P,3] and ``target`` [P,3]. Only invariant to
    a common gain and offset: colour-map ``pred`` onto the target first (as ``batched_scores`` does)."""
    def grads(img: Tensor) -> Tensor:
        img = img.reshape(-1, h, w, img.shape[-1])
        gx = img[:, :, 1:] - img[:, :, :-1]
        gy = img[:, 1:, :] - img[:, :-1, :]
        g = torch.cat([gx.reshape(len(img), -1), gy.reshape(len(img), -1)], dim=1)
        g = g - g.mean(1, keepdim=True)
        return g / g.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return (grads(pred) * grads(target[None])).sum(-1)


def fitted_residuals(pred: Float[Tensor, "C P F"], target: Float[Tensor, "P 3"], h: int, w: int,
                     cfg: PoseSearchConfig) -> Tensor:
    """Residuals [C, P*3] of each render mapped onto the target (``fit_to_target``), over the target's standard
    deviation."""
    scale = target.var(dim=0).sum().clamp_min(1e-8).sqrt()
    return ((fit_to_target(pred, target, h, w, cfg) - target) / scale).reshape(len(pred), -1)
