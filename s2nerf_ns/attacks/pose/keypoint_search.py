"""SERVER SIDE (attacker): MeshLoc-style pose of a leaked photo from keypoints matched to the server's own renders.

The server renders, through its fields, colour (its surrogate's) and depth (its geometry: the density read-out) at
candidate poses: the training poses it was sent. Keypoints of the photo (SIFT by default; OpenCV, no weights) are
matched to each render's; the render's depth lifts its keypoints to 3D points, so every match is a 2D-3D
correspondence, and ``cv2.solvePnPRansac`` gives a pose. The candidate with the most inliers wins; then rounds of
(render at the estimate, match, PnP) close the viewpoint gap: a render near the photo's pose matches far more
keypoints than one from the training trajectory. Nothing here sees the true pose."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Literal, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from s2nerf_ns.attacks.pose.camera import camera_directions
from s2nerf_ns.attacks.pose.matching import keypoint_detector, match_and_lift, ratio_matches
from s2nerf_ns.attacks.pose.pnp import c2w_to_cv, cv_to_c2w
from s2nerf_ns.attacks.pose.views import render_views

ColourDepthFn = Callable[[Tensor, Tensor], Tensor]
"""(origins [N,3], unit directions [N,3]) -> [N,4]: rgb (any tone curve) then depth along the ray."""


@dataclass
class KeypointSearchConfig:
    """Knobs of :func:`keypoint_pose_search`. Cost: ``candidates + rounds`` renders of the photo's size per photo."""

    candidates: int = 36
    """Training poses rendered and matched (evenly subsampled from those the server was sent)."""
    rounds: int = 4
    """Re-render at the estimate, match and PnP again; stops early when the inliers stop growing."""
    detector: Literal["sift", "orb"] = "sift"
    """"sift" or "orb" (OpenCV, no downloaded weights)."""
    ratio: float = 0.8
    """Lowe's ratio test on the two nearest descriptors."""
    photo_blur: float = 1.0
    """Gaussian blur (sigma, pixels) of the photo before detection: the renders are smoother than a photo, whose
    noise otherwise gives keypoints no render has."""
    reprojection_px: float = 3.0
    """RANSAC inlier threshold, in pixels of the photo."""
    min_inliers: int = 6
    """A candidate with fewer PnP inliers does not count."""
    depth_edge: float = 1.05
    """A keypoint whose 3x3 neighbourhood spans more than this depth ratio sits on a depth edge and is not lifted."""
    max_rays_per_call: int = 1 << 14
    """Rays per render call."""
    max_distance_ratio: float = 4.0
    """A PnP pose whose centre lies farther from its inliers' centroid than this many times their spread is rejected
    (few inliers can fit a camera far outside the room)."""
    seed: int = 0
    """OpenCV's random generator (RANSAC's samples) is seeded with it before each photo."""

    def __post_init__(self) -> None:
        # A ValueError (the attacks import nothing of the package's error module): tyro's hook prints it as one line.
        flag = "--pipeline.pose-keypoints."
        checks = {"candidates": self.candidates >= 1, "rounds": self.rounds >= 0, "ratio": 0 < self.ratio <= 1,
                  "photo-blur": self.photo_blur >= 0, "reprojection-px": self.reprojection_px > 0,
                  "min-inliers": self.min_inliers >= 6, "depth-edge": self.depth_edge >= 1,
                  "max-distance-ratio": self.max_distance_ratio > 0,
                  "max-rays-per-call": self.max_rays_per_call >= 1}
        for name, ok in checks.items():
            if not ok:
                value = getattr(self, name.replace("-", "_"))
                raise ValueError(f"{flag}{name} {value}: out of range (candidates, max-rays-per-call >= 1; rounds, "
                                 "photo-blur >= 0; 0 < ratio <= 1; reprojection-px > 0; min-inliers >= 6, what PnP "
                                 "needs; depth-edge >= 1; max-distance-ratio > 0)")


@dataclass
class KeypointSearchResult:
    c2w: Tensor
    """[3,4] the estimate (OpenGL camera-to-world), or the best candidate when no PnP succeeded."""
    inliers: int
    """PnP inliers of the estimate (0: no candidate reached ``min_inliers``)."""
    candidate: int
    """Index (into the candidates given) of the pose whose render won the first stage."""
    history: List[int] = field(default_factory=list)
    """Inliers of the first stage's winner, then of each round kept."""
    rays_rendered: int = 0


def gray8(image: Tensor) -> np.ndarray:
    """[h,w,3] in [0,1] (any tone curve) -> uint8 gray, stretched to its own 1st-99th percentiles."""
    g = image.float().mean(-1)
    lo, hi = torch.quantile(g, 0.01), torch.quantile(g, 0.99)
    g = ((g - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)
    return (g * 255).round().byte().cpu().numpy()


def lift_matches(kp_photo, des_photo, render_gray: np.ndarray, points: Float[Tensor, "h w 3"],
                 depth: Float[Tensor, "h w"], cfg: KeypointSearchConfig) -> Tuple[np.ndarray, np.ndarray]:
    """2D-3D matches of the photo's keypoints to a render's, with this search's detector, ratio and depth-edge test
    (:func:`~s2nerf_ns.attacks.pose.matching.match_and_lift`)."""
    return match_and_lift(kp_photo, des_photo, render_gray, points, depth, cfg.detector, cfg.ratio, cfg.depth_edge)


def correct_matches(photo_gray: np.ndarray, render_gray: np.ndarray, cfg: KeypointSearchConfig,
                    within_px: float = 2.0) -> Tuple[int, int, int]:
    """A diagnostic for a render made *at the photo's own pose*: (the photo's keypoints, ratio-test matches to the
    render's, of them within ``within_px`` of the same pixel, i.e. correct), with this search's detector, ratio and
    photo blur."""
    detector, norm = keypoint_detector(cfg.detector)
    if cfg.photo_blur > 0:
        photo_gray = cv2.GaussianBlur(photo_gray, (0, 0), cfg.photo_blur)
    kp_p, des_p = detector.detectAndCompute(photo_gray, None)
    kp_r, des_r = detector.detectAndCompute(render_gray, None)
    if des_p is None or des_r is None or len(kp_p) < 2 or len(kp_r) < 2:
        return len(kp_p), 0, 0
    pairs = ratio_matches(des_p, des_r, norm, cfg.ratio)
    good = sum(np.hypot(*np.subtract(kp_p[m.queryIdx].pt, kp_r[m.trainIdx].pt)) <= within_px for m in pairs)
    return len(kp_p), len(pairs), int(good)


def solve_pnp(world: np.ndarray, uv: np.ndarray, intrinsics: Sequence[float], like: Tensor,
              guess: Optional[Tensor], cfg: KeypointSearchConfig) -> Tuple[Optional[Tensor], int]:
    """RANSAC PnP (then Levenberg-Marquardt on the inliers): (OpenGL c2w [3,4] or None, inliers)."""
    if len(world) < max(6, cfg.min_inliers):
        return None, 0
    fx, fy, cx, cy = intrinsics
    camera = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    kwargs = dict(iterationsCount=1000, reprojectionError=cfg.reprojection_px, confidence=0.999)
    if guess is not None:
        rvec, tvec = c2w_to_cv(guess)
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(world, uv, camera, None, rvec, tvec, useExtrinsicGuess=True,
                                                     flags=cv2.SOLVEPNP_ITERATIVE, **kwargs)
    else:
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(world, uv, camera, None, flags=cv2.SOLVEPNP_EPNP, **kwargs)
    if not ok or inliers is None or len(inliers) < cfg.min_inliers:
        return None, 0
    rvec, tvec = cv2.solvePnPRefineLM(world[inliers[:, 0]], uv[inliers[:, 0]], camera, None, rvec, tvec)
    pose = cv_to_c2w(rvec, tvec, like)
    points = world[inliers[:, 0]]
    centroid = points.mean(axis=0)
    spread = float(np.linalg.norm(points - centroid, axis=1).max())
    if float(np.linalg.norm(pose[:, 3].double().cpu().numpy() - centroid)) > cfg.max_distance_ratio * spread:
        return None, 0  # degenerate: a camera far outside the scene its own inliers span
    return pose, int(len(inliers))


class PhotoKeypoints:
    """The leaked photo's keypoints (detected once) and its 2D-3D matches to any view with depth."""

    def __init__(self, image: Float[Tensor, "H W 3"], intrinsics: Sequence[float], cfg: KeypointSearchConfig) -> None:
        self.cfg, self.intrinsics = cfg, tuple(float(v) for v in intrinsics)
        self.h, self.w = image.shape[:2]
        cv2.setRNGSeed(cfg.seed)  # RANSAC draws from OpenCV's generator: the same photo gives the same pose
        photo = gray8(image)
        if cfg.photo_blur > 0:
            photo = cv2.GaussianBlur(photo, (0, 0), cfg.photo_blur)
        self.keypoints, self.descriptors = keypoint_detector(cfg.detector)[0].detectAndCompute(photo, None)
        self.dirs = camera_directions(self.intrinsics, self.h, self.w, image.device)
        """[h*w, 3] unit camera-frame directions of the photo's pixels (also those of views rendered for it)."""

    def pose_from_view(self, rgb: Float[Tensor, "h w 3"], distance: Float[Tensor, "h w"], c2w: Float[Tensor, "3 4"],
                       guess: Optional[Tensor] = None) -> Tuple[Optional[Tensor], int]:
        """PnP from the matches to one view (colours, distance along each unit ray, its pose; the view has the photo's
        intrinsics). Returns (pose or None, inliers)."""
        points = c2w[:, 3] + distance[..., None] * (self.dirs.reshape(self.h, self.w, 3) @ c2w[:, :3].T)
        world, uv = lift_matches(self.keypoints, self.descriptors, gray8(rgb), points, distance, self.cfg)
        return solve_pnp(world, uv, self.intrinsics, c2w, guess, self.cfg)


def best_view(photo: PhotoKeypoints, views: Iterable[Tuple[int, Tensor, Tensor, Tensor]]
              ) -> Tuple[Optional[Tensor], int, int]:
    """First stage: the view (index, rgb, distance, c2w) whose matches give the most PnP inliers -> (pose or None,
    inliers, index)."""
    best: Tuple[Optional[Tensor], int, int] = (None, 0, -1)
    for index, rgb, distance, c2w in views:
        pose, inliers = photo.pose_from_view(rgb, distance, c2w)
        if best[2] < 0 or (pose is not None and inliers > best[1]):  # the first view stands until one succeeds
            best = (pose, inliers, index)
    return best


@torch.no_grad()
def keypoint_pose_search(render: ColourDepthFn, image: Float[Tensor, "H W 3"], intrinsics: Sequence[float],
                         candidates: Float[Tensor, "N 3 4"], cfg: Optional[KeypointSearchConfig] = None
                         ) -> KeypointSearchResult:
    """The photo's pose from keypoint matches to the server's renders at the candidate poses, then rounds at the
    estimate (see the module's docstring)."""
    cfg = cfg or KeypointSearchConfig()
    photo = PhotoKeypoints(image, intrinsics, cfg)
    rays = 0

    def rendered(c2w: Tensor) -> Tuple[Tensor, Tensor]:
        nonlocal rays
        out = render_views(render, c2w[None], photo.dirs, cfg.max_rays_per_call)[0].reshape(photo.h, photo.w, -1)
        rays += photo.h * photo.w
        return out[..., :3], out[..., 3]

    pick = torch.linspace(0, len(candidates) - 1, min(cfg.candidates, len(candidates))).round().long().unique()
    pose, inliers, index = best_view(photo, ((i, *rendered(candidates[i]), candidates[i]) for i in pick.tolist()))
    if pose is None:
        return KeypointSearchResult(candidates[index].clone(), 0, index, [0], rays)
    history = [inliers]
    for _ in range(cfg.rounds):
        new, n = photo.pose_from_view(*rendered(pose), pose, guess=pose)
        if new is None or n <= inliers:
            break
        pose, inliers = new, n
        history.append(n)
    return KeypointSearchResult(pose, inliers, index, history, rays)


def describe(result: KeypointSearchResult) -> Dict[str, object]:
    """The result's report entry (no pose error: that is scored elsewhere)."""
    return {"search": "keypoints", "inliers": result.inliers, "first_stage_candidate": result.candidate,
            "inlier_history": result.history, "rays_rendered": result.rays_rendered}
