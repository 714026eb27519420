"""SERVER SIDE (attacker): the pieces of the global pose search (``pose_search.py``): its configuration and
result, candidate poses and panoramas, image levels (the scores are in ``pose_objectives.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Literal, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from nerfstudio.cameras.lie_groups import exp_map_SO3xR3

from s2nerf_ns.attacks.pose import RenderFn


@dataclass
class PoseSearchConfig:
    """Knobs of ``search_pose``. The defaults score ~125k coarse candidates (~66 positions x 384 directions x 5
    rolls) and render ~6M rays in all (a few seconds on 2 CPU cores with a cheap analytic render; see
    ``PoseSearchResult.rays_rendered`` and ``timings``). Render cost: coarse ``positions x panorama pixels``; local
    ``~(top_k + top_k/2 + top_k/4) x local_iters/3 x local_samples x local_size^2``; Gauss-Newton
    ``pyramid_candidates x pyramid_iters x (13 + len(pyramid_lambdas)) x supersample^2 x pixels per level``;
    iNeRF ``num_refine x refine_steps x refine_rays`` (with gradients)."""

    # --- candidate positions
    region: Literal["cameras", "scene-box"] = "cameras"
    """Where candidate camera centres are searched: "cameras", the bounding box of the training camera centres
    (enlarged by ``position_margin``), or "scene-box", the scene's axis-aligned box (``search_pose(region=...)``, the
    box the server's fields are built on) shrunk by ``wall_margin``: photos taken from a corner of the room, far
    from the training trajectory, lie outside the cameras' box."""
    wall_margin: float = 0.08
    """scene-box: distance kept from the box's faces, as a fraction of its largest extent."""
    num_positions: int = 48
    """Approximate number of grid points filling the search region."""
    position_margin: float = 0.15
    """Enlargement of the bounding box on every side, as a fraction of its largest extent."""
    min_margin: float = 0.05
    """Minimum enlargement on every side, in scene units (keeps flat / collinear trajectories from giving a
    degenerate box)."""
    include_training_centres: bool = True
    """Also use the training camera centres themselves as candidate positions."""
    max_training_centres: int = 16
    """At most this many training centres (evenly subsampled) are added."""
    # --- candidate orientations
    num_directions: int = 384
    """Viewing directions on a Fibonacci sphere (all of the sphere, not just where training cameras look)."""
    roll_deg: Tuple[float, ...] = (-30.0, -15.0, 0.0, 15.0, 30.0)
    """Roll angles about the viewing direction, relative to the training cameras' mean up-vector (a prior)."""
    # --- coarse stage
    coarse_size: int = 16
    """Longer side, in pixels, of the downsampled photo scored in the coarse stage."""
    panorama_size: Tuple[int, int] = (64, 128)
    """Equirectangular panorama (rows, cols) rendered at each candidate position."""
    panorama_supersample: int = 1
    """Panorama rendered at this factor per side then average-pooled (anti-aliasing)."""
    # --- scoring
    objective: Literal["colour-map", "feature-cv"] = "colour-map"
    """What ``render`` returns and how a candidate is compared with the photo. "colour-map": ``render`` gives rgb,
    mapped onto the photo by its own best colour map (``colour_model``). "feature-cv": ``render`` gives rgb then
    further per-ray features (e.g. ``SurrogateAttacker.render_features``); from rgb, rgb^2 and the first
    ``feature_components`` principal components of the rest, a ridge regression to the photo's colours is fitted per
    candidate on half the photo's pixels (a checkerboard of ``cv_blocks`` blocks per side) and scored on the other
    half, and vice versa. Cross-validation is what makes a flexible map usable: at a wrong pose the features do not
    predict the held-out pixels, however well they fit the others. The iNeRF stage needs rgb and is skipped with
    "feature-cv" (the Gauss-Newton stage gives the final precision)."""
    feature_components: int = 8
    """feature-cv: principal components kept of the features after rgb (fitted once per search on renders at the
    training poses; 0 keeps none). Few: a regression on many features fits wrong poses too."""
    cv_blocks: int = 6
    """feature-cv: the checkerboard's blocks along each image side (blocks are at least 1 pixel)."""
    ridge: float = 1e-4
    """feature-cv: ridge penalty, relative to the mean diagonal of each fit's Gram matrix."""
    colour_model: str = "quadratic"
    """How the surrogate's colours may differ from the photo's: "affine" (3x4 map) or "quadratic" (affine in rgb and
    rgb^2, which also absorbs gamma-like tone curves; more discriminative when the map is not exactly affine)."""
    gradient_weight: float = 0.5
    """Weight of ``1 - NCC`` of image gradients (of the colour-mapped render vs the photo) added to the
    normalised affine-fit residual (0 disables)."""
    # --- local search
    top_k: int = 12
    """Distinct coarse candidates passed to the local search."""
    nms_deg: float = 12.0
    """Two candidates are distinct if their rotations differ by more than this many degrees ..."""
    nms_dist: float = 0.15
    """... or their centres by more than this distance (as a fraction of the box's largest extent)."""
    local_size: int = 24
    """Longer side, in pixels, of the renders scored in the local search."""
    local_supersample: int = 1
    """Rays per pixel and side of the local-search renders."""
    local_iters: int = 12
    """Rounds of the local search."""
    local_halvings: int = 2
    """The candidates still searched are halved (down to ``pyramid_candidates``) this many times, evenly spaced."""
    local_samples: int = 24
    """Random perturbations per candidate and round."""
    local_rot_deg: float = 8.0
    """Initial rotation perturbation scale (degrees); shrunk by ``local_decay`` every round."""
    local_trans: float = 0.5
    """Initial translation perturbation scale, as a fraction of the position grid spacing."""
    local_decay: float = 0.7
    """A candidate's step sizes are multiplied by this after a round that did not improve it."""
    # --- coarse-to-fine Gauss-Newton stage (all candidates in one batched render per step)
    pyramid_candidates: int = 3
    """Best local-search results optimised by Levenberg-Marquardt on whole low-resolution images (0 disables)."""
    pyramid_sizes: Tuple[int, ...] = (16, 32, 64)
    """Longer side (pixels) of the image-pyramid levels, coarse to fine (capped at the photo's size; repeated
    levels are skipped). Low resolution = wide basin, high resolution = precision."""
    pyramid_iters: int = 6
    """Levenberg-Marquardt iterations per pyramid level."""
    pyramid_lambdas: Tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0)
    """Marquardt damping values tried (in one batch) at every iteration; the best that lowers the cost is kept."""
    fd_pixels: float = 0.5
    """Finite-difference step of the Jacobian: this fraction of a pixel's angle for rotations, and that angle times
    the size of the search region for translations."""
    supersample: int = 2
    """Renders compared with downsampled images in the Gauss-Newton stage (and the final choice) use at least this
    many rays per pixel and side ..."""
    pyramid_samples: int = 64
    """... and at least this many rays along the longer side at every pyramid level (coarse levels are
    supersampled more, so that edges crossing a few samples do not make their loss rough in the pose)."""
    # --- refinement
    num_refine: int = 1
    """Best gradient-stage (then local-search) results refined with iNeRF (``refine_pose``); 0 disables it."""
    refine_steps: int = 100
    refine_lr: float = 3e-3
    refine_rays: int = 1024
    refine_jitter: bool = True
    """iNeRF rays through random points of their pixels (area-averaged in expectation, like the photo's pixels)."""
    final_size: int = 128
    """Longer side (pixels, capped at the photo's) at which the finalists' colour-invariant losses are compared."""
    # --- batching
    max_rays_per_call: int = 1 << 16
    """Largest number of rays passed to ``render`` at once."""


def attack_search_config(**overrides) -> PoseSearchConfig:
    """The scene-aided attack's global search: the surrogate's features regressed onto the photo with cross-validation
    (objective "feature-cv"), centres over the whole scene box (region "scene-box") on a grid of 400 (the box is
    larger than the cameras' box, and the objective's basin is narrow in position: ~3.3M panorama rays per photo, GPU
    work); ``overrides`` replace fields."""
    return PoseSearchConfig(**{"objective": "feature-cv", "region": "scene-box", "num_positions": 400, **overrides})


@dataclass
class PoseSearchResult:
    c2w: Tensor
    """The chosen camera-to-world pose [3, 4]."""
    loss: float
    """Its colour-invariant loss (affine-fit MSE against the photo at up to ``final_size`` pixels)."""
    top_c2w: Tensor
    """Finalists [K, 3, 4] (iNeRF-refined and unrefined Gauss-Newton results), best first."""
    top_loss: Tensor
    """Their final losses [K]."""
    coarse_c2w: Tensor
    """Best distinct coarse candidates [top_k, 3, 4] (before local search)."""
    coarse_score: Tensor
    """Their coarse scores [top_k] (lower is better)."""
    local_c2w: Tensor
    """The same candidates after the local search [top_k, 3, 4], best first."""
    local_score: Tensor
    """Their local-search scores [top_k]."""
    pyramid_c2w: Tensor
    """The best ``pyramid_candidates`` of those after the coarse-to-fine Gauss-Newton stage [P, 3, 4], best first."""
    num_candidates: int
    """Number of coarse candidates scored (positions x directions x rolls)."""
    rays_rendered: int
    timings: Dict[str, float] = field(default_factory=dict)
    """Seconds spent per stage ("coarse", "local", "pyramid", "refine" (iNeRF + final choice), "total")."""


# ----------------------------------------------------------------------------------------------------- geometry
def fibonacci_sphere(n: int) -> Tensor:
    """``n`` nearly uniform unit vectors [n, 3]."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = (1.0 - z * z).clamp_min(0.0).sqrt()
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1).float()


def look_rotations(forward: Tensor, up: Tensor, roll_rad: Tensor) -> Tensor:
    """OpenGL camera-to-world rotations [F*R, 3, 3] looking along each ``forward`` [F,3], rolled by each angle [R]
    about the viewing axis relative to the reference ``up`` [3]."""
    forward = F.normalize(forward, dim=-1)
    right = torch.cross(forward, up.expand_as(forward), dim=-1)
    # Looking (nearly) along the up-vector: any right-vector will do.
    other = torch.tensor([1.0, 0.0, 0.0], device=up.device) if abs(float(up[0])) < 0.9 else \
        torch.tensor([0.0, 0.0, 1.0], device=up.device)
    fallback = torch.cross(forward, other.expand_as(forward), dim=-1)
    small = right.norm(dim=-1, keepdim=True) < 1e-4
    right = F.normalize(torch.where(small, fallback, right), dim=-1)
    cam_up = torch.cross(right, forward, dim=-1)
    c, s = torch.cos(roll_rad)[None, :, None], torch.sin(roll_rad)[None, :, None]
    right_r = c * right[:, None] + s * cam_up[:, None]
    up_r = -s * right[:, None] + c * cam_up[:, None]
    back = -forward[:, None].expand_as(right_r)
    return torch.stack([right_r, up_r, back], dim=-1).reshape(-1, 3, 3)


def rotation_angle_deg(a: Tensor, b: Tensor) -> Tensor:
    """Angles (degrees) between rotations ``a`` [..., 3, 3] and ``b`` [..., 3, 3] (broadcast)."""
    cos = (((a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos))


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


# ----------------------------------------------------------------------------------------------------- images
def downsample(image: Tensor, intrinsics: Sequence[float], longer: int) -> Tuple[Tensor, Tuple[float, ...]]:
    """Downsample ``image`` [H,W,3] so its longer side is ``longer`` (never upsampled); intrinsics scaled to match."""
    h, w = image.shape[:2]
    scale = min(1.0, longer / max(h, w))
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if (nh, nw) == (h, w):
        return image, tuple(float(v) for v in intrinsics)
    # Antialiased bilinear keeps pixel centres where the scaled intrinsics put them ("area" with a non-integer
    # factor would shift them by up to a quarter pixel).
    small = F.interpolate(image.permute(2, 0, 1)[None], size=(nh, nw), mode="bilinear", antialias=True,
                          align_corners=False)[0].permute(1, 2, 0)
    sx, sy = nw / w, nh / h
    fx, fy, cx, cy = intrinsics
    return small, (fx * sx, fy * sy, cx * sx, cy * sy)


def camera_directions(intrinsics: Sequence[float], h: int, w: int, device) -> Tensor:
    """Unit camera-frame directions [h*w, 3] of the pixel centres (OpenGL convention), row-major."""
    fx, fy, cx, cy = intrinsics
    rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    d = torch.stack([(cols.reshape(-1) + 0.5 - cx) / fx, -(rows.reshape(-1) + 0.5 - cy) / fy,
                     -torch.ones(h * w, device=device)], dim=-1)
    return F.normalize(d, dim=-1)


# ----------------------------------------------------------------------------------------------------- render
@torch.no_grad()
def render_batched(render: RenderFn, origins: Tensor, directions: Tensor, chunk: int) -> Tensor:
    out = [render(origins[i:i + chunk], directions[i:i + chunk]) for i in range(0, len(origins), chunk)]
    return torch.cat(out).float()


@torch.no_grad()
def render_views(render: RenderFn, c2w: Tensor, dirs_cam: Tensor, chunk: int) -> Tensor:
    """Renders [C, P, F] of cameras ``c2w`` [C,3,4] at camera-frame pixel directions ``dirs_cam`` [P,3]."""
    dirs = torch.einsum("cij,pj->cpi", c2w[:, :, :3], dirs_cam)
    origins = c2w[:, None, :, 3].expand_as(dirs)
    out = render_batched(render, origins.reshape(-1, 3), dirs.reshape(-1, 3), chunk)
    return out.reshape(len(c2w), dirs.shape[1], -1)


def blur121(images: Tensor) -> Tensor:
    """Separable [1, 2, 1] / 4 blur over the last two dimensions (rows, cols) of ``images`` (replicate padding)."""
    x = torch.cat([images[..., :1], images, images[..., -1:]], dim=-1)
    x = 0.25 * (x[..., :-2] + x[..., 2:]) + 0.5 * x[..., 1:-1]
    x = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)
    return 0.25 * (x[..., :-2, :] + x[..., 2:, :]) + 0.5 * x[..., 1:-1, :]


@dataclass
class ImageLevel:
    """The photo at one resolution, and how to render candidates so that they are filtered like it.

    A downsampled photo is an antialiased-bilinear (triangle-filtered) resampling of the original; renders are
    made to match: supersampled renders go through the same resampling, single-sample renders get a [1,2,1] blur
    (the same triangle, sampled at pixel spacing). At full resolution, supersamples are box-averaged (pixel area).
    Without this the filters differ and the low-resolution loss is dominated by blur mismatch, flat around the
    true pose."""

    target: Tensor
    """[h*w, 3]"""
    h: int
    w: int
    intrinsics: Tuple[float, ...]
    dirs_cam: Tensor
    """[h*ss*w*ss, 3] camera-frame directions of the (super)samples."""
    ss: int
    downsampled: bool

    @staticmethod
    def make(image: Tensor, intrinsics: Sequence[float], longer: int, ss: int) -> "ImageLevel":
        small, k = downsample(image, intrinsics, longer)
        h, w = small.shape[:2]
        ss = max(1, ss)
        fx, fy, cx, cy = k
        dirs = camera_directions((fx * ss, fy * ss, cx * ss, cy * ss), h * ss, w * ss, image.device)
        return ImageLevel(small.reshape(-1, 3), h, w, k, dirs, ss, (h, w) != tuple(image.shape[:2]))

    def filter(self, samples: Tensor) -> Tensor:
        """Per-candidate samples [C, h*ss*w*ss, F] -> pixels [C, h*w, F] filtered like the target."""
        c, ss, nf = len(samples), self.ss, samples.shape[-1]
        img = samples.reshape(c, self.h * ss, self.w * ss, nf)
        if ss > 1:
            x = img.permute(0, 3, 1, 2)
            x = F.interpolate(x, size=(self.h, self.w), mode="bilinear", antialias=True, align_corners=False) \
                if self.downsampled else F.avg_pool2d(x, ss)
            img = x.permute(0, 2, 3, 1)
        elif self.downsampled:
            img = blur121(img.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return img.reshape(c, self.h * self.w, nf)

    def render(self, render: RenderFn, c2w: Tensor, chunk: int) -> Tensor:
        return self.filter(render_views(render, c2w, self.dirs_cam, chunk))

    @property
    def rays_per_view(self) -> int:
        return len(self.dirs_cam)


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


# ----------------------------------------------------------------------------------------------------- search
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


def _perturb(c2w: Tensor, rot_sigma: Tensor, trans_sigma: Tensor, n: int, gen: torch.Generator) -> Tensor:
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
        trial = _perturb(current[alive], rot_sigma[alive], trans_sigma[alive], samples, gen)  # A S 3 4
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
