"""SERVER SIDE (attacker): what the two global pose searches take and return: the colour search's knobs
(``PoseSearchConfig``, and the scene-aided attack's choice of them) and result, the geometry search's knobs and
result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple

from torch import Tensor


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


@dataclass
class GeometrySearchConfig:
    """Knobs of ``search_pose_geometry``. Render cost (rays): coarse ``positions x panorama pixels``; local
    ``~1.75 top_k x local_iters/3 x local_samples x (local_size x supersample)^2 x 3/4``; Levenberg-Marquardt
    ``pyramid_candidates x pyramid_iters x (13 + len(pyramid_lambdas))`` renders per level; PnP ``pnp_rounds`` renders
    at ``pnp_size`` per candidate."""

    # --- candidate positions (same meaning as PoseSearchConfig's)
    region: Literal["cameras", "scene-box"] = "cameras"
    """Candidate centres: the training cameras' box enlarged by ``position_margin``, or the scene box shrunk by
    ``wall_margin``."""
    wall_margin: float = 0.08
    num_positions: int = 48
    position_margin: float = 0.15
    min_margin: float = 0.05
    include_training_centres: bool = True
    max_training_centres: int = 16
    min_clearance: float = 0.05
    """Positions whose panorama has half its depths below this fraction of the region's extent are dropped (inside
    or against geometry)."""
    # --- candidate orientations
    num_directions: int = 384
    roll_deg: Tuple[float, ...] = (-30.0, -15.0, 0.0, 15.0, 30.0)
    # --- structure fields
    depth_weight: float = 1.0
    """Weight of log depth (silhouettes) in the geometry's structure tensor."""
    normal_weight: float = 1.0
    """Weight of the normals (creases) in the geometry's structure tensor."""
    appearance_weight: float = 1.0
    """Weight of the render's appearance channels, if ``depth_fn`` gives any (0: geometry only)."""
    magnitude_power: float = 0.5
    """Orientation-field magnitudes are raised to this power (< 1: weak edges count more, strong ones less)."""
    supersample: int = 2
    """Fields are computed at this many times a level's resolution, then pooled (caps at the photo's size)."""
    # --- coarse stage
    coarse_size: int = 16
    panorama_size: Tuple[int, int] = (64, 128)
    top_k: int = 12
    nms_deg: float = 12.0
    nms_dist: float = 0.15
    # --- local search
    local_size: int = 24
    local_iters: int = 12
    local_halvings: int = 2
    local_samples: int = 24
    local_rot_deg: float = 6.0
    local_trans: float = 0.5
    """Initial translation step, as a fraction of the position grid spacing."""
    local_decay: float = 0.7
    # --- Levenberg-Marquardt pyramid
    pyramid_candidates: int = 3
    pyramid_sizes: Tuple[int, ...] = (16, 32, 64)
    pyramid_iters: int = 6
    pyramid_lambdas: Tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0)
    fd_pixels: float = 0.5
    # --- PnP rounds (MeshLoc-style)
    pnp_rounds: int = 3
    """Rounds of (render depth, 2D-3D matches, solvePnPRansac) from each pyramid result (0 disables)."""
    pnp_size: int = 128
    """Longer side (pixels, capped at the photo's) of the renders matched in the PnP rounds."""
    pnp_search_px: float = 4.0
    """Edge correspondences are searched this far (pixels at ``pnp_size``) along each geometric edge's normal."""
    pnp_reprojection_px: float = 1.5
    """RANSAC inlier threshold (pixels at ``pnp_size``)."""
    keypoints: Literal["sift", "orb", "none"] = "sift"
    """Keypoint matches of the photo against a shading render of the geometry, added to the edge matches."""
    # --- choice
    final_size: int = 64
    """Longer side (pixels, capped at the photo's) at which the finalists are compared."""
    max_rays_per_call: int = 1 << 16


@dataclass
class GeometrySearchResult(PoseSearchResult):
    pnp_c2w: Optional[Tensor] = None
    """Results of the PnP rounds [P, 3, 4] (one per pyramid result; empty if disabled)."""
    pnp_matches: List[int] = field(default_factory=list)
    """RANSAC inliers of each PnP result's last accepted round (0: no round was accepted)."""
    chosen_stage: str = ""
    """Which stage's pose was chosen: "pnp" or "pyramid"."""
