"""SERVER SIDE (attacker): global pose search for a leaked photo that may lie far from every training view.

``retrieve_pose`` only compares the leaked photo with renders at the *training* poses, so a photo taken off the
training trajectory (e.g. looking at a wall no training camera faced) is matched to a wrong view and the iNeRF
refinement that follows cannot recover. ``search_pose`` instead searches the whole region spanned by the training
cameras and the whole sphere of viewing directions, coarse to fine:

1. **Coarse (panoramas).** Candidate camera centres fill the bounding box of the training camera centres (enlarged
   by a margin) or the scene box (``PoseSearchConfig.region``), plus the centres themselves. At each centre a
   low-resolution equirectangular panorama is rendered once; the low-resolution view of *every* orientation
   candidate (a Fibonacci sphere of viewing directions x a few roll angles about the training cameras' mean
   up-vector) is then resampled from that panorama rather than rendered. Rendering cost is therefore
   ``positions x panorama pixels`` however many orientations are tried.
2. **Scoring** is colour-invariant: each render is mapped onto the downsampled photo by its own best colour map
   (objective "colour-map": affine or quadratic least squares, as ``retrieval.affine_invariant_mse``) or, from per-ray
   features, by a ridge regression fitted on half the photo's pixels and scored on the other half (objective
   "feature-cv", see ``PoseSearchConfig.objective``); the score is the residual over the photo's variance plus
   ``gradient_weight * (1 - NCC)`` of the image gradients. Renders are filtered like the downsampled photo
   (``ImageLevel``), otherwise blur mismatch dominates the low-resolution loss.
3. **Local search.** The ``top_k`` best mutually distinct coarse candidates are improved by a batched random
   perturbation search (rotation about the camera centre + translation, per-candidate step sizes shrinking after
   failures, successive halving of the candidates).
4. **Coarse-to-fine Gauss-Newton.** The ``pyramid_candidates`` best are optimised together by Levenberg-Marquardt
   on an image pyramid (finite-difference Jacobians, batched renders), which follows the rotation/translation
   valleys that random search and first-order iNeRF crawl along.
5. **Refinement and choice.** The ``num_refine`` best are refined with iNeRF (``retrieval.refine_pose``, jittered rays;
   "colour-map" only) and, among refined and unrefined finalists, the pose with the lowest colour-invariant loss
   against the photo (at up to ``final_size`` pixels) is returned.

The search never receives the true pose of the photo: it sees only the render function, the photo's pixels, its
intrinsics and the training camera poses. Pose errors are for the caller to compute (``camera.pose_errors``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from nerfstudio.cameras.lie_groups import exp_map_SO3xR3

from s2nerf_ns.attacks.pose.camera import camera_directions, fibonacci_sphere, look_rotations
from s2nerf_ns.attacks.pose.candidates import (candidate_positions, distinct_best, local_random_search,
                                               panorama_directions, panorama_frame, panorama_grid)
from s2nerf_ns.attacks.pose.config import GeometrySearchConfig, PoseSearchConfig, PoseSearchResult
from s2nerf_ns.attacks.pose.geometry_search import search_pose_geometry  # issue 25 hook
from s2nerf_ns.attacks.pose.objectives import batched_scores, fit_to_target, fitted_residuals, photo_feature_render
from s2nerf_ns.attacks.pose.retrieval import refine_pose
from s2nerf_ns.attacks.pose.views import ImageLevel, RenderFn, blur121, downsample, render_batched


@dataclass
class CoarseCandidates:
    """The coarse stage's best mutually distinct candidates, and what the later stages need of the grid."""

    c2w: Tensor
    """[K, 3, 4], best first."""
    score: Tensor
    """[K] their coarse scores (lower is better)."""
    spacing: float
    """Grid spacing of the candidate positions (scene units)."""
    extent: float
    """Largest side of the box the positions fill."""
    num_candidates: int
    """Poses scored (positions x directions x rolls)."""
    rays_rendered: int


@torch.no_grad()
def coarse_candidates(render: RenderFn, image: Float[Tensor, "H W 3"], intrinsics: Sequence[float],
                      training_c2w: Float[Tensor, "N 3 4"], cfg: PoseSearchConfig,
                      region: Optional[Float[Tensor, "2 3"]] = None) -> CoarseCandidates:
    """Stage 1 of ``search_pose``: a panorama at every candidate position, every orientation candidate resampled
    from it and scored against the photo downsampled to ``cfg.coarse_size``; the ``cfg.top_k`` best distinct
    poses (``render`` as ``search_pose`` calls it: for "feature-cv", already ``feature_transform``-ed)."""
    device = image.device
    chunk = cfg.max_rays_per_call
    small, small_k = downsample(image, intrinsics, cfg.coarse_size)
    sh, sw = small.shape[:2]
    target = small.reshape(-1, 3)
    dirs_cam = camera_directions(small_k, sh, sw, device)
    positions, spacing = candidate_positions(training_c2w[:, :, 3], cfg, region)
    extent = float((positions.max(0).values - positions.min(0).values).max().clamp_min(1e-6))
    up = F.normalize(training_c2w[:, :, 1].mean(0), dim=0)
    rolls = torch.deg2rad(torch.tensor(cfg.roll_deg, dtype=torch.float32, device=device))
    rotations = look_rotations(fibonacci_sphere(cfg.num_directions).to(device), up, rolls)  # O 3 3
    frame = panorama_frame(up, training_c2w[:, :, :3])
    ph, pw = cfg.panorama_size
    ss = max(1, cfg.panorama_supersample)
    pano_dirs = panorama_directions(frame, ph * ss, pw * ss)
    view_dirs = torch.einsum("oij,pj->opi", rotations, dirs_cam)  # O P 3 (same at every position)
    grid = panorama_grid(view_dirs, frame, ph, pw)[None]  # 1 O P 2
    scores = torch.empty(len(positions), len(rotations), device=device)
    for i, p in enumerate(positions):
        rgb = render_batched(render, p.expand_as(pano_dirs), pano_dirs, chunk)
        pano = rgb.reshape(ph * ss, pw * ss, -1).permute(2, 0, 1)[None]
        if ss > 1:
            pano = F.avg_pool2d(pano, ss)
        pano = torch.cat([pano[..., -1:], pano, pano[..., :1]], dim=-1)  # circular in longitude
        views = F.grid_sample(pano, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]  # 3 O P
        if (sh, sw) != tuple(image.shape[:2]):  # filtered like the downsampled photo (see ImageLevel)
            views = blur121(views.reshape(len(views), -1, sh, sw)).reshape(len(views), -1, sh * sw)
        scores[i] = batched_scores(views.permute(1, 2, 0), target, sh, sw, cfg)
    c2w, best = distinct_best(scores, rotations, positions, cfg.top_k, cfg.nms_deg, cfg.nms_dist * extent)
    return CoarseCandidates(c2w=c2w, score=best, spacing=spacing, extent=extent,
                            num_candidates=int(scores.numel()), rays_rendered=len(positions) * len(pano_dirs))


@torch.no_grad()
def pyramid_refine(render: RenderFn, image: Tensor, intrinsics: Sequence[float], init: Tensor,
                   cfg: PoseSearchConfig, depth_scale: float = 1.0) -> Tuple[Tensor, int]:
    """Levenberg-Marquardt on an image pyramid for every pose [K,3,4] at once.

    Parameters are a left SE(3) correction (rotation about the camera's own centre + translation, as iNeRF). The
    residual is the affine-colour-fitted render minus the downsampled photo; its Jacobian is taken by central
    finite differences (12 extra renders per pose, all batched), so ``render`` need not be differentiable here and
    the rotation/translation valleys that slow first-order methods are handled by the Gauss-Newton step. Several
    damping values are tried in one batch and the best one is kept if it lowers the cost. Returns the poses sorted
    by their cost at the finest level, and the number of rays rendered."""
    device = image.device
    current = init.detach().clone()
    k = len(current)
    ss = max(1, cfg.supersample)
    lambdas = torch.tensor(cfg.pyramid_lambdas, device=device)
    nl = len(lambdas)
    rays = 0

    def apply(c2w: Tensor, tangent: Tensor) -> Tensor:  # c2w [M,3,4], tangent [M,6]
        delta = exp_map_SO3xR3(tangent)
        return torch.cat([delta[:, :, :3] @ c2w[:, :, :3], (c2w[:, :, 3] + delta[:, :, 3])[:, :, None]], dim=2)

    done = set()
    for size in cfg.pyramid_sizes:
        # coarse levels are supersampled more: their loss is then as smooth in the pose as the finer levels'
        level = ImageLevel.make(image, intrinsics, size, max(ss, math.ceil(cfg.pyramid_samples / size)))
        h, w = level.h, level.w
        if (h, w) in done:
            continue
        done.add((h, w))
        fx, fy = level.intrinsics[:2]
        target = level.target

        def residuals(c2w: Tensor) -> Tensor:
            return fitted_residuals(level.render(render, c2w, cfg.max_rays_per_call), target, h, w, cfg)

        eps_rot = cfg.fd_pixels / max(fx, fy)
        eps = torch.tensor([eps_rot * depth_scale] * 3 + [eps_rot] * 3, device=device)
        steps = torch.cat([torch.diag(eps), -torch.diag(eps)])  # 12 6
        res = residuals(current)
        rays += k * level.rays_per_view
        for _ in range(cfg.pyramid_iters):
            probes = apply(current.repeat_interleave(12, 0), steps.repeat(k, 1))
            r_probe = residuals(probes).reshape(k, 12, -1)
            rays += 12 * k * level.rays_per_view
            jac = ((r_probe[:, :6] - r_probe[:, 6:]) / (2 * eps[None, :, None])).transpose(1, 2)  # K R 6
            jtj = jac.transpose(1, 2) @ jac
            jtr = jac.transpose(1, 2) @ res[:, :, None]
            diag = torch.diag_embed(jtj.diagonal(dim1=1, dim2=2).clamp_min(1e-12))
            system = jtj[:, None] + lambdas[None, :, None, None] * diag[:, None]  # K L 6 6
            delta = -torch.linalg.solve(system, jtr[:, None].expand(-1, nl, -1, -1))[..., 0]  # K L 6
            trial = apply(current.repeat_interleave(nl, 0), delta.reshape(-1, 6))
            r_trial = residuals(trial).reshape(k, nl, -1)
            rays += nl * k * level.rays_per_view
            cost_trial = r_trial.pow(2).sum(-1)
            best_cost, best = cost_trial.min(dim=1)
            better = best_cost < res.pow(2).sum(-1)
            idx = torch.arange(k, device=device)
            current = torch.where(better[:, None, None], trial.reshape(k, nl, 3, 4)[idx, best], current)
            res = torch.where(better[:, None], r_trial[idx, best], res)
        cost = res.pow(2).sum(-1)
    order = cost.argsort()  # by the cost at the finest level
    return current[order], rays


def final_loss(render: RenderFn, image: Tensor, c2w: Tensor, intrinsics: Sequence[float], cfg: PoseSearchConfig
               ) -> Tuple[Tensor, int]:
    """MSE of each pose's [C,3,4] render mapped onto the photo (``fit_to_target``), the photo downsampled to
    ``cfg.final_size`` (full resolution if smaller), renders supersampled and filtered like it; and the rays
    rendered."""
    level = ImageLevel.make(image, intrinsics, cfg.final_size, cfg.supersample)
    losses = []
    for i in range(0, len(c2w), max(1, cfg.max_rays_per_call // level.rays_per_view)):
        pred = level.render(render, c2w[i:i + max(1, cfg.max_rays_per_call // level.rays_per_view)],
                            cfg.max_rays_per_call)
        fitted = fit_to_target(pred, level.target, level.h, level.w, cfg)
        losses.append((fitted - level.target).pow(2).mean(dim=(1, 2)))
    return torch.cat(losses), len(c2w) * level.rays_per_view


def search_pose(
    render: RenderFn,
    image: Float[Tensor, "H W 3"],
    intrinsics: Sequence[float],
    training_c2w: Float[Tensor, "N 3 4"],
    config: Optional[Union[PoseSearchConfig, GeometrySearchConfig]] = None,
    seed: int = 0,
    region: Optional[Float[Tensor, "2 3"]] = None,
) -> PoseSearchResult:
    """Estimate the camera pose of ``image`` (pixels only) without assuming it is near a training view.

    ``render(origins, unit_directions)`` gives rgb that may be wrong by an unknown (roughly affine) colour map
    (``config.objective`` "colour-map"), or per-ray features regressed onto the photo per candidate ("feature-cv");
    ``intrinsics`` = (fx, fy, cx, cy) of ``image``; ``training_c2w`` are the training camera poses the server was
    sent (they define the search region, unless ``region``, and the up-vector prior only); ``region`` is the scene
    box [2,3] (min, max corners), searched with ``config.region == "scene-box"``. The true pose is never an input.

    With a :class:`~s2nerf_ns.attacks.pose.config.GeometrySearchConfig` (issue 25), ``render`` is a *depth* render
    of the server's geometry and the search is :func:`~s2nerf_ns.attacks.pose.geometry_search.search_pose_geometry`.
    """
    if isinstance(config, GeometrySearchConfig):  # issue 25 hook: the geometry objective
        return search_pose_geometry(render, image, intrinsics, training_c2w, config, seed, region)
    cfg = config or PoseSearchConfig()
    t_start = time.perf_counter()
    device = image.device
    image = image[..., :3].float()
    training_c2w = training_c2w[:, :3, :4].to(device).float()
    gen = torch.Generator().manual_seed(seed)
    chunk = cfg.max_rays_per_call
    timings: Dict[str, float] = {}
    rays = 0

    if cfg.objective == "feature-cv":  # rgb, rgb^2 and a few principal components of the other features
        render = photo_feature_render(render, image, intrinsics, training_c2w, cfg)
    coarse = coarse_candidates(render, image, intrinsics, training_c2w, cfg, region)
    coarse_c2w, coarse_score, spacing, extent = coarse.c2w, coarse.score, coarse.spacing, coarse.extent
    rays += coarse.rays_rendered
    timings["coarse"] = time.perf_counter() - t_start

    # ---------------------------------------------------------------- local: batched perturbation search
    t0 = time.perf_counter()
    level = ImageLevel.make(image, intrinsics, cfg.local_size, cfg.local_supersample)
    lh, lw, target = level.h, level.w, level.target

    def score(poses: Tensor) -> Tensor:
        return batched_scores(level.render(render, poses, chunk), target, lh, lw, cfg)

    local_c2w, local_score, scored = local_random_search(
        score, coarse_c2w, score(coarse_c2w), cfg.local_rot_deg, cfg.local_trans * spacing, cfg.local_iters,
        cfg.local_halvings, cfg.local_samples, cfg.local_decay, max(1, cfg.pyramid_candidates, cfg.num_refine), gen)
    rays += (len(coarse_c2w) + scored) * level.rays_per_view
    timings["local"] = time.perf_counter() - t0

    # ---------------------------------------------------------------- pyramid: batched Levenberg-Marquardt
    t0 = time.perf_counter()
    pyramid_c2w = local_c2w[:cfg.pyramid_candidates]
    if len(pyramid_c2w) and cfg.pyramid_iters > 0 and cfg.pyramid_sizes:
        pyramid_c2w, n_rays = pyramid_refine(render, image, intrinsics, pyramid_c2w, cfg, depth_scale=extent)
        rays += n_rays
    timings["pyramid"] = time.perf_counter() - t0

    # ---------------------------------------------------------------- refine: iNeRF on the best few
    t0 = time.perf_counter()
    starts = pyramid_c2w if len(pyramid_c2w) else local_c2w  # best first
    refined = []
    if cfg.refine_steps > 0 and cfg.objective == "colour-map":  # iNeRF compares rgb (see PoseSearchConfig.objective)
        for r, start in enumerate(starts[:cfg.num_refine]):
            with torch.enable_grad():
                refined.append(refine_pose(render, image, start, intrinsics, steps=cfg.refine_steps,
                                           lr=cfg.refine_lr, rays_per_step=cfg.refine_rays, seed=seed + r,
                                           jitter=cfg.refine_jitter).detach())
            rays += cfg.refine_steps * cfg.refine_rays
    # refined and unrefined finalists compete: refinement is kept only where it lowers the loss
    all_c2w = torch.cat([torch.stack(refined), starts]) if refined else starts
    losses, n_rays = final_loss(render, image, all_c2w, intrinsics, cfg)
    rays += n_rays
    final_order = losses.argsort()
    timings["refine"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    best = int(final_order[0])
    return PoseSearchResult(
        c2w=all_c2w[best], loss=float(losses[best]), top_c2w=all_c2w[final_order], top_loss=losses[final_order],
        coarse_c2w=coarse_c2w, coarse_score=coarse_score, local_c2w=local_c2w, local_score=local_score,
        pyramid_c2w=pyramid_c2w, num_candidates=coarse.num_candidates, rays_rendered=rays,
        timings=timings)
