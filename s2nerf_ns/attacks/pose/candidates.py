"""SERVER SIDE (attacker): candidate poses of the global pose searches: the grid of candidate positions, the
panoramas every orientation is resampled from, the best mutually distinct candidates (non-maximum suppression), and
the batched random local search around them."""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from nerfstudio.cameras.lie_groups import exp_map_SO3xR3

from s2nerf_ns.attacks.pose.camera import rotation_angle_deg
from s2nerf_ns.attacks.pose.config import PoseSearchConfig


def candidate_positions(centres: Tensor, cfg: PoseSearchConfig, aabb: Optional[Tensor] = None) -> Tuple[Tensor, float]:
    """Grid filling the search region (``cfg.region``: the enlarged bounding box of the training centres, or the
    scene box ``aabb`` [2,3] shrunk by ``cfg.wall_margin``), plus the training centres; also the grid spacing."""
    if cfg.region == "scene-box":
        if aabb is None:
            raise ValueError('region "scene-box" needs the scene box (search_pose(region=aabb))')
        lo, hi = aabb[0].to(centres), aabb[1].to(centres)
        inset = cfg.wall_margin * float((hi - lo).max())
        lo, hi = lo + inset, hi - inset
        if bool((hi <= lo).any()):
            raise ValueError(f"wall_margin {cfg.wall_margin} leaves nothing of the scene box {aabb.tolist()}")
    elif cfg.region == "cameras":
        lo, hi = centres.min(0).values, centres.max(0).values
        extent = float((hi - lo).max())
        margin = max(cfg.position_margin * extent, cfg.min_margin)
        lo, hi = lo - margin, hi + margin
    else:
        raise ValueError(f"unknown search region {cfg.region!r} (cameras or scene-box)")
    size = hi - lo
    spacing = float((size.prod() / max(cfg.num_positions, 1)) ** (1.0 / 3.0))
    counts = [max(1, int(round(float(s) / spacing))) for s in size]
    axes = [lo[i] + (torch.arange(n, device=centres.device, dtype=torch.float32) + 0.5) * size[i] / n
            for i, n in enumerate(counts)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    spacing = float(max(float(s) / n for s, n in zip(size, counts)))
    if cfg.include_training_centres and cfg.max_training_centres > 0:
        idx = torch.linspace(0, len(centres) - 1, min(len(centres), cfg.max_training_centres)).round().long()
        grid = torch.cat([grid, centres[idx.to(centres.device)]])
    return grid, spacing


def panorama_frame(up: Tensor, training_rot: Tensor) -> Tensor:
    """Orthonormal world frame [3,3] (columns a, b, up) whose poles are along the up-vector."""
    fwd = -training_rot[:, :, 2].mean(0)
    a = fwd - (fwd @ up) * up
    if float(a.norm()) < 1e-3:
        a = torch.tensor([1.0, 0.0, 0.0], device=up.device)
        a = a - (a @ up) * up
    a = F.normalize(a, dim=0)
    return torch.stack([a, torch.cross(up, a, dim=0), up], dim=1)


def panorama_directions(frame: Tensor, rows: int, cols: int) -> Tensor:
    lat = math.pi / 2 - (torch.arange(rows, device=frame.device) + 0.5) / rows * math.pi
    lon = -math.pi + (torch.arange(cols, device=frame.device) + 0.5) / cols * 2 * math.pi
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    local = torch.stack([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()], dim=-1)
    return local.reshape(-1, 3) @ frame.T


def panorama_grid(dirs_world: Tensor, frame: Tensor, rows: int, cols: int) -> Tensor:
    """grid_sample coordinates of world directions [..., 3] in a panorama circularly padded by one column."""
    local = dirs_world @ frame
    lat = torch.asin(local[..., 2].clamp(-1.0, 1.0))
    lon = torch.atan2(local[..., 1], local[..., 0])
    px = (lon + math.pi) / (2 * math.pi) * cols - 0.5 + 1.0  # +1: padding column
    py = (math.pi / 2 - lat) / math.pi * rows - 0.5
    return torch.stack([(px + 0.5) / (cols + 2) * 2 - 1, (py + 0.5) / rows * 2 - 1], dim=-1)


def _distinct(c2w: Tensor, order: Tensor, k: int, max_deg: float, max_dist: float) -> List[int]:
    """Greedy non-maximum suppression: the first ``k`` candidates (in ``order``) pairwise distinct."""
    keep: List[int] = []
    for i in order.tolist():
        if keep:
            kept = c2w[keep]
            ang = rotation_angle_deg(kept[:, :, :3], c2w[i, :, :3])
            dist = (kept[:, :, 3] - c2w[i, :, 3]).norm(dim=-1)
            if bool(((ang < max_deg) & (dist < max_dist)).any()):
                continue
        keep.append(i)
        if len(keep) == k:
            break
    return keep


def distinct_best(scores: Tensor, rotations: Tensor, positions: Tensor, top_k: int, nms_deg: float,
                  nms_dist: float) -> Tuple[Tensor, Tensor]:
    """The best-scoring (lowest) distinct poses of a coarse grid: ``scores`` [positions, rotations] -> poses [K,3,4]
    and their scores, after non-maximum suppression over the best few thousand only (on the CPU: a sequential,
    data-dependent loop)."""
    flat = scores.reshape(-1)
    order = flat.argsort()
    pos_idx, rot_idx = order // len(rotations), order % len(rotations)
    head = min(len(order), max(50 * top_k, 2000))
    head_c2w = torch.cat([rotations[rot_idx[:head]], positions[pos_idx[:head]][:, :, None]], dim=2)
    keep = torch.tensor(_distinct(head_c2w.cpu(), torch.arange(head), top_k, nms_deg, nms_dist),
                        device=scores.device)
    return head_c2w[keep], flat[order[:head]][keep]


def perturb_poses(c2w: Tensor, rot_sigma: Tensor, trans_sigma: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """``n`` random perturbations of each pose [K,3,4] -> [K, n, 3, 4] (rotation about the camera centre), with
    per-pose step sizes [K]."""
    k = len(c2w)
    noise = torch.randn(k, n, 6, generator=gen).to(c2w.device)
    noise[..., :3] *= trans_sigma[:, None, None]
    noise[..., 3:] *= rot_sigma[:, None, None]
    delta = exp_map_SO3xR3(noise.reshape(-1, 6)).reshape(k, n, 3, 4)
    rot = delta[..., :3] @ c2w[:, None, :, :3]
    centre = c2w[:, None, :, 3] + delta[..., 3]
    return torch.cat([rot, centre[..., None]], dim=-1)


def local_random_search(score: Callable[[Tensor], Tensor], init: Tensor, init_score: Tensor, rot_deg: float,
                        trans: float, iters: int, halvings: int, samples: int, decay: float, min_alive: int,
                        gen: torch.Generator) -> Tuple[Tensor, Tensor, int]:
    """Batched random search from poses ``init`` [K,3,4] (scores ``init_score`` [K], lower is better): each
    iteration scores ``samples`` perturbations of every candidate still alive (``score``: [N,3,4] -> [N]), keeps a
    better one, keeps its step size after a success and shrinks it by ``decay`` after a failure; successive halving
    drops the worse half ``halvings`` times. Returns (poses, scores) best first and the number of poses scored."""
    device = init.device
    current, current_score = init.clone(), init_score.clone()
    k = len(current)
    rot_sigma = torch.full((k,), math.radians(rot_deg), device=device)
    trans_sigma = torch.full((k,), trans, device=device)
    alive = torch.arange(k, device=device)
    halve_every = max(1, iters // max(1, halvings + 1))
    scored = 0
    for it in range(iters):
        if it > 0 and it % halve_every == 0 and len(alive) > min_alive:
            alive = alive[current_score[alive].argsort()[:max(min_alive, (len(alive) + 1) // 2)]]
        trial = perturb_poses(current[alive], rot_sigma[alive], trans_sigma[alive], samples, gen)  # A S 3 4
        a, n = trial.shape[:2]
        scores = score(trial.reshape(-1, 3, 4)).reshape(a, n)
        scored += a * n
        best_score, best = scores.min(dim=1)
        better = best_score < current_score[alive]
        current[alive] = torch.where(better[:, None, None], trial[torch.arange(a, device=device), best], current[alive])
        current_score[alive] = torch.where(better, best_score, current_score[alive])
        shrink = torch.where(better, torch.ones_like(best_score), torch.full_like(best_score, decay))
        rot_sigma[alive] *= shrink
        trans_sigma[alive] *= shrink
    order = current_score.argsort()
    return current[order], current_score[order], scored
