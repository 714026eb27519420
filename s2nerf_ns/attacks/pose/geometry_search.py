"""SERVER SIDE (attacker): the pose of a leaked photo from the geometry the server holds.

The server holds the density field (its own fields and, for a client-appearance model, the density read out of the
gradients: :class:`~s2nerf_ns.attacks.geometry.DensityReadout`), so it can render depth at any pose. Geometry does
not depend on the surrogate's colours, which off the training trajectory are poor. This search compares the
photo's *structure* with the *structure of the geometry* at candidate poses:

* **Photo structure**: the colour structure tensor ``J = sum_c grad I_c grad I_c^T`` (edges of any hue), smoothed;
  as an orientation field ``(Jxx - Jyy, 2 Jxy)`` (the doubled-angle vector: edge orientation without sign), its
  magnitude compressed by ``magnitude_power``.
* **Geometry structure**: the same field of the render's log depth and of its normals (from the depth,
  back-projected): depth edges (silhouettes) and creases. A pose is scored by ``1 - cos`` of the two fields:
  texture edges of the photo that the geometry lacks lower every pose's score alike; geometric edges that land on
  photo edges raise it.

Stages (``search_pose_geometry``): (1) coarse, a depth panorama at every candidate position (grid over the training
cameras' box or the scene box, plus training centres), every orientation (Fibonacci sphere x rolls) resampled from
it and scored at low resolution; (2) a batched random local search from the best distinct candidates; (3)
Levenberg-Marquardt on an image pyramid (finite-difference Jacobians of the field residual); (4) MeshLoc-style
PnP rounds (:mod:`~s2nerf_ns.attacks.pose.pnp`): 2D-3D matches from the render's depth (edge correspondences
along edge normals, and SIFT keypoints of the photo against a shading render of the geometry), ``cv2.solvePnPRansac``,
re-render, re-match; (5) the finalists compared at ``final_size``. The true pose is never an input.
``refine_pose_geometry`` runs stages 2-5 from given poses (e.g. the colour search's finalists). A render may add
appearance channels after the depth (e.g. the surrogate's colours): their edges join the geometry's
(``appearance_weight``), so that texture edges of the photo (posters, rugs) are explained too."""

from __future__ import annotations

import math
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from s2nerf_ns.attacks.pose.camera import apply_tangent, fibonacci_sphere, look_rotations
from s2nerf_ns.attacks.pose.candidates import (candidate_positions, distinct_best, local_random_search,
                                               panorama_directions, panorama_frame, panorama_grid)
from s2nerf_ns.attacks.pose.config import GeometrySearchConfig, GeometrySearchResult
from s2nerf_ns.attacks.pose.structure import StructureLevel
from s2nerf_ns.attacks.pose.views import DepthFn, render_batched, render_views


@torch.no_grad()
def coarse_geometry_candidates(depth_fn: DepthFn, image: Tensor, intrinsics: Sequence[float], training_c2w: Tensor,
                               cfg: GeometrySearchConfig, region: Optional[Tensor] = None
                               ) -> Tuple[Tensor, Tensor, float, float, int, int]:
    """Stage 1: (best distinct poses [K,3,4], their scores [K], grid spacing, region extent, poses scored, rays)."""
    device = image.device
    level = StructureLevel.make(image, intrinsics, cfg.coarse_size, cfg)
    positions, spacing = candidate_positions(training_c2w[:, :, 3], cfg, region)  # type: ignore[arg-type]
    extent = float((positions.max(0).values - positions.min(0).values).max().clamp_min(1e-6))
    up = F.normalize(training_c2w[:, :, 1].mean(0), dim=0)
    rolls = torch.deg2rad(torch.tensor(cfg.roll_deg, dtype=torch.float32, device=device))
    rotations = look_rotations(fibonacci_sphere(cfg.num_directions).to(device), up, rolls)  # O 3 3
    frame = panorama_frame(up, training_c2w[:, :, :3])
    ph, pw = cfg.panorama_size
    pano_dirs = panorama_directions(frame, ph, pw)
    view_dirs = torch.einsum("oij,pj->opi", rotations, level.dirs_cam)
    grid = panorama_grid(view_dirs, frame, ph, pw)[None]
    scores = torch.full((len(positions), len(rotations)), math.inf, device=device)
    for i, p in enumerate(positions):
        rendered = render_batched(depth_fn, p.expand_as(pano_dirs), pano_dirs, cfg.max_rays_per_call)
        if float(rendered[:, 0].median()) < cfg.min_clearance * extent:
            continue
        pano = rendered.T.reshape(1, -1, ph, pw)
        pano = torch.cat([pano[..., -1:], pano, pano[..., :1]], dim=-1)
        views = F.grid_sample(pano, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]  # F O P
        scores[i] = 1.0 - level.fields(views.permute(1, 2, 0)) @ level.target
    c2w, best = distinct_best(scores, rotations, positions, cfg.top_k, cfg.nms_deg, cfg.nms_dist * extent)
    return c2w, best, spacing, extent, int(scores.numel()), len(positions) * len(pano_dirs)


@torch.no_grad()
def local_geometry_search(depth_fn: DepthFn, level: StructureLevel, init: Tensor, spacing: float,
                          cfg: GeometrySearchConfig, gen: torch.Generator) -> Tuple[Tensor, Tensor, int]:
    """Stage 2: batched random search with per-candidate step sizes and successive halving; (poses, scores, rays),
    best first."""
    def score(poses: Tensor) -> Tensor:
        return level.scores(depth_fn, poses)

    poses, scores, scored = local_random_search(
        score, init, score(init), cfg.local_rot_deg, cfg.local_trans * spacing, cfg.local_iters, cfg.local_halvings,
        cfg.local_samples, cfg.local_decay, max(1, cfg.pyramid_candidates), gen)
    return poses, scores, (len(init) + scored) * level.rays_per_view


@torch.no_grad()
def levenberg_marquardt(residual_fn: Callable[[Tensor], Tensor], init: Tensor, eps: Tensor, lambdas: Tensor,
                        iters: int) -> Tuple[Tensor, Tensor, int]:
    """Batched Levenberg-Marquardt of poses [K,3,4] on ``residual_fn(poses [M,3,4]) -> [M, R]`` with central
    finite-difference Jacobians (steps ``eps`` [6]); several damping values per iteration, the best kept if it lowers
    the cost. Returns (poses, costs, residual evaluations)."""
    current, k, nl = init.clone(), len(init), len(lambdas)
    steps = torch.cat([torch.diag(eps), -torch.diag(eps)])
    res = residual_fn(current)
    calls = k
    idx = torch.arange(k, device=init.device)
    for _ in range(iters):
        r_probe = residual_fn(apply_tangent(current.repeat_interleave(12, 0), steps.repeat(k, 1))).reshape(k, 12, -1)
        jac = ((r_probe[:, :6] - r_probe[:, 6:]) / (2 * eps[None, :, None])).transpose(1, 2)
        jtj, jtr = jac.transpose(1, 2) @ jac, jac.transpose(1, 2) @ res[:, :, None]
        diag = torch.diag_embed(jtj.diagonal(dim1=1, dim2=2).clamp_min(1e-12))
        system = jtj[:, None] + lambdas[None, :, None, None] * diag[:, None]
        delta = -torch.linalg.solve(system, jtr[:, None].expand(-1, nl, -1, -1))[..., 0]
        trial = apply_tangent(current.repeat_interleave(nl, 0), delta.reshape(-1, 6))
        r_trial = residual_fn(trial).reshape(k, nl, -1)
        calls += 12 * k + nl * k
        best_cost, best = r_trial.pow(2).sum(-1).min(dim=1)
        better = best_cost < res.pow(2).sum(-1)
        current = torch.where(better[:, None, None], trial.reshape(k, nl, 3, 4)[idx, best], current)
        res = torch.where(better[:, None], r_trial[idx, best], res)
    return current, res.pow(2).sum(-1), calls


def pyramid_geometry_refine(depth_fn: DepthFn, image: Tensor, intrinsics: Sequence[float], init: Tensor,
                            cfg: GeometrySearchConfig, depth_scale: float) -> Tuple[Tensor, int]:
    """Stage 3: Levenberg-Marquardt on the structure fields, coarse to fine; poses sorted by the finest cost."""
    current, rays, done = init, 0, set()
    cost = torch.zeros(len(init), device=init.device)
    for size in cfg.pyramid_sizes:
        level = StructureLevel.make(image, intrinsics, size, cfg)
        if (level.h, level.w) in done:
            continue
        done.add((level.h, level.w))
        eps_rot = cfg.fd_pixels * (level.fine_w / level.w) / max(level.intrinsics[:2])  # a level pixel's angle
        eps = torch.tensor([eps_rot * depth_scale] * 3 + [eps_rot] * 3, device=init.device)
        current, cost, calls = levenberg_marquardt(lambda c: level.residuals(depth_fn, c), current, eps,
                                                   torch.tensor(cfg.pyramid_lambdas, device=init.device),
                                                   cfg.pyramid_iters)
        rays += calls * level.rays_per_view
    order = cost.argsort()
    return current[order], rays


def search_pose_geometry(depth_fn: DepthFn, image: Float[Tensor, "H W 3"], intrinsics: Sequence[float],
                         training_c2w: Float[Tensor, "N 3 4"], config: Optional[GeometrySearchConfig] = None,
                         seed: int = 0, region: Optional[Float[Tensor, "2 3"]] = None) -> GeometrySearchResult:
    """Estimate the pose of ``image`` from the server's geometry (``depth_fn``) and the photo's pixels only.

    ``intrinsics`` = (fx, fy, cx, cy) of ``image``; ``training_c2w`` the training poses the server was sent (search
    region unless ``region``, the up-vector prior); ``region`` the scene box [2,3] for ``config.region ==
    "scene-box"``. The true pose is never an input."""
    cfg = config or GeometrySearchConfig()
    t_start = time.perf_counter()
    image = image[..., :3].float()
    device = image.device
    training_c2w = training_c2w[:, :3, :4].to(device).float()
    gen = torch.Generator().manual_seed(seed)
    timings: Dict[str, float] = {}
    coarse_c2w, coarse_score, spacing, extent, n_cand, rays = coarse_geometry_candidates(
        depth_fn, image, intrinsics, training_c2w, cfg, region)
    timings["coarse"] = time.perf_counter() - t_start
    return _refine(depth_fn, image, intrinsics, coarse_c2w, coarse_score, cfg, gen, spacing, extent, timings, rays,
                   n_cand, t_start)


def refine_pose_geometry(depth_fn: DepthFn, image: Float[Tensor, "H W 3"], intrinsics: Sequence[float],
                         init: Float[Tensor, "K 3 4"], config: Optional[GeometrySearchConfig] = None, seed: int = 0,
                         step: float = 0.1) -> GeometrySearchResult:
    """Stages 2-5 of ``search_pose_geometry`` (local search, Levenberg-Marquardt, PnP rounds, choice) from given
    poses, e.g. the colour search's finalists (``PoseSearchResult.top_c2w``): the colour objective finds the basin,
    the geometry (and appearance edges) the precision. ``step``: the local search's first translation step (scene
    units); its rotation step is ``config.local_rot_deg``."""
    cfg = config or GeometrySearchConfig()
    t_start = time.perf_counter()
    image = image[..., :3].float()
    init = init[:, :3, :4].to(image.device).float()
    level = StructureLevel.make(image, intrinsics, cfg.local_size, cfg)
    score = level.scores(depth_fn, init)
    with torch.no_grad():  # finite-difference translation steps scale with the scene's depth
        depth = render_views(depth_fn, init[:1], level.dirs_cam, cfg.max_rays_per_call)[0, :, 0]
    scale = 2 * float(depth.median().clamp_min(1e-3))
    return _refine(depth_fn, image, intrinsics, init, score, cfg, torch.Generator().manual_seed(seed),
                   step / max(cfg.local_trans, 1e-6), scale, {}, 2 * len(init) * level.rays_per_view, len(init),
                   t_start)


def _refine(depth_fn: DepthFn, image: Tensor, intrinsics: Sequence[float], starts: Tensor, start_score: Tensor,
            cfg: GeometrySearchConfig, gen: torch.Generator, spacing: float, extent: float, timings: Dict[str, float],
            rays: int, n_cand: int, t_start: float) -> GeometrySearchResult:
    from s2nerf_ns.attacks.pose.pnp import pnp_rounds  # the PnP stage (OpenCV)

    device = image.device
    t0 = time.perf_counter()
    local_level = StructureLevel.make(image, intrinsics, cfg.local_size, cfg)
    local_c2w, local_score, n = local_geometry_search(depth_fn, local_level, starts, spacing, cfg, gen)
    rays += n
    timings["local"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pyramid_c2w = local_c2w[:max(1, cfg.pyramid_candidates)]
    if cfg.pyramid_iters > 0 and cfg.pyramid_sizes and cfg.pyramid_candidates > 0:
        pyramid_c2w, n = pyramid_geometry_refine(depth_fn, image, intrinsics, pyramid_c2w, cfg, extent)
        rays += n
    timings["pyramid"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pnp_c2w, matches = torch.empty(0, 3, 4, device=device), []
    final_level = StructureLevel.make(image, intrinsics, cfg.final_size, cfg)
    if cfg.pnp_rounds > 0:  # a round is kept only where it lowers the final level's score
        pnp_c2w, matches, n = pnp_rounds(depth_fn, image, intrinsics, pyramid_c2w, cfg,
                                         lambda c: final_level.scores(depth_fn, c))
        rays += n
    timings["pnp"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    moved = [i for i, n in enumerate(matches) if n > 0]  # PnP results that left their start
    all_c2w = torch.cat([pnp_c2w[moved], pyramid_c2w])  # ... compete with their starting points
    losses = final_level.scores(depth_fn, all_c2w)
    rays += len(all_c2w) * final_level.rays_per_view
    order = losses.argsort()
    timings["final"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    best = int(order[0])
    return GeometrySearchResult(
        c2w=all_c2w[best], loss=float(losses[best]), top_c2w=all_c2w[order], top_loss=losses[order],
        coarse_c2w=starts, coarse_score=start_score, local_c2w=local_c2w, local_score=local_score,
        pyramid_c2w=pyramid_c2w, num_candidates=n_cand, rays_rendered=rays, timings=timings, pnp_c2w=pnp_c2w,
        pnp_matches=matches, chosen_stage="pnp" if best < len(moved) else "pyramid")


@torch.no_grad()
def score_poses(depth_fn: DepthFn, image: Tensor, intrinsics: Sequence[float], c2w: Float[Tensor, "K 3 4"],
                config: Optional[GeometrySearchConfig] = None, sizes: Sequence[int] = (16, 32, 64)
                ) -> Dict[int, Tensor]:
    """The geometry objective (``1 - cos``, lower is better) of any poses at several levels: for diagnosis, e.g. the
    true pose (given by an evaluator) against a search's own proposals (``GeometrySearchResult.top_c2w`` etc.).
    Returns {size: scores [K]} (sizes capped at the photo's; repeated levels once)."""
    cfg = config or GeometrySearchConfig()
    image = image[..., :3].float()
    out: Dict[int, Tensor] = {}
    for size in sizes:
        level = StructureLevel.make(image, intrinsics, size, cfg)
        key = max(level.h, level.w)
        if key not in out:
            out[key] = level.scores(depth_fn, c2w.to(image.device).float())
    return out
