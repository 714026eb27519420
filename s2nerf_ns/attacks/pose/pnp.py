"""SERVER SIDE (attacker): MeshLoc-style PnP rounds of the geometry pose search (``geometry_search.py``).

From a pose estimate the server renders depth of its geometry; every render pixel then has a 3D point. 2D-3D
matches come from (a) the render's geometric edges (depth and normal discontinuities), each matched to the photo's
strongest edge along the edge's normal within ``pnp_search_px`` (the photo's gradient energy across that normal), and
(b) keypoints (SIFT or ORB) of the photo matched to a shading render of the geometry
(:func:`~s2nerf_ns.attacks.geometry.shade`). ``cv2.solvePnPRansac`` gives a new pose; the render and the matches are
redone from it (a few rounds), and a round is kept only where it lowers the search's own structure score."""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from s2nerf_ns.attacks.geometry import shade
from s2nerf_ns.attacks.pose.camera import camera_directions
from s2nerf_ns.attacks.pose.config import GeometrySearchConfig
from s2nerf_ns.attacks.pose.matching import keypoint_detector, match_and_lift
from s2nerf_ns.attacks.pose.structure import depth_channels, structure_tensor
from s2nerf_ns.attacks.pose.views import DepthFn, blur121, downsample, render_views


GL_TO_CV = np.diag([1.0, -1.0, -1.0])
"""OpenGL camera axes (x right, y up, looking along -z) to OpenCV's (x right, y down, looking along +z)."""


def c2w_to_cv(c2w: Tensor) -> Tuple[np.ndarray, np.ndarray]:
    """(rvec, tvec) of OpenCV's world-to-camera transform for an OpenGL camera-to-world pose [3,4]."""
    m = c2w.detach().double().cpu().numpy()
    r_w2c = (m[:, :3] @ GL_TO_CV).T
    return cv2.Rodrigues(r_w2c)[0], -r_w2c @ m[:, 3:4]


def cv_to_c2w(rvec: np.ndarray, tvec: np.ndarray, like: Tensor) -> Tensor:
    r_w2c = cv2.Rodrigues(rvec)[0]
    centre = -r_w2c.T @ tvec.reshape(3, 1)
    return torch.from_numpy(np.concatenate([r_w2c.T @ GL_TO_CV, centre], axis=1)).to(like)


def _sample(img: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Bilinear samples of ``img`` [C,h,w] at pixel-centre coordinates x (cols), y (rows) [...] -> [C, ...]."""
    h, w = img.shape[-2:]
    grid = torch.stack([(x + 0.5) / w * 2 - 1, (y + 0.5) / h * 2 - 1], dim=-1).reshape(1, 1, -1, 2)
    out = F.grid_sample(img[None], grid.to(img), mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].reshape(img.shape[0], *x.shape)


def edge_matches(photo_j: Tensor, render_j: Tensor, depth: Tensor, centre: Tensor, dirs_world: Tensor,
                 search_px: float, max_points: int = 600) -> Tuple[np.ndarray, np.ndarray]:
    """2D-3D matches from the render's geometric edges: world points [M,3] (the near side of the edge) and the
    photo's strongest edge along each edge normal (OpenCV pixel coordinates [M,2])."""
    a, b, c = render_j[0], render_j[1], render_j[2]
    strength = 2 * (((a - c) / 2) ** 2 + b * b).sqrt()
    theta = 0.5 * torch.atan2(2 * b, a - c)  # edge normal (direction of strongest change)
    nx, ny = theta.cos(), theta.sin()
    h, w = strength.shape
    rows, cols = torch.meshgrid(torch.arange(h, device=depth.device), torch.arange(w, device=depth.device),
                                indexing="ij")
    ahead = _sample(strength[None], cols + nx, rows + ny)[0]
    behind = _sample(strength[None], cols - nx, rows - ny)[0]
    border = (rows > 1) & (rows < h - 2) & (cols > 1) & (cols < w - 2)
    keep = border & (strength >= ahead) & (strength >= behind) & (strength > strength.quantile(0.8)) & \
        (strength > 1e-3 * strength.max())
    idx = keep.reshape(-1).nonzero()[:, 0]
    if len(idx) > max_points:
        idx = idx[torch.linspace(0, len(idx) - 1, max_points).round().long()]
    if len(idx) == 0:
        return np.zeros((0, 3)), np.zeros((0, 2))
    r, q = rows.reshape(-1)[idx].float(), cols.reshape(-1)[idx].float()
    n_x, n_y = nx.reshape(-1)[idx], ny.reshape(-1)[idx]
    offsets = torch.linspace(-search_px, search_px, int(4 * search_px) + 1, device=depth.device)
    xs, ys = q[:, None] + offsets * n_x[:, None], r[:, None] + offsets * n_y[:, None]
    jxx, jxy, jyy = _sample(photo_j, xs, ys)
    across = jxx * n_x[:, None] ** 2 + 2 * jxy * n_x[:, None] * n_y[:, None] + jyy * n_y[:, None] ** 2
    best = across.argmax(dim=1)
    peak = across.gather(1, best[:, None])[:, 0]
    ok = (best > 0) & (best < len(offsets) - 1) & (peak > 2 * (photo_j[0] + photo_j[2]).mean() / 2)
    near = -F.max_pool2d(-depth[None, None], 3, 1, 1)[0, 0]  # the near side of a depth edge
    step = offsets[best]
    uv = torch.stack([q + step * n_x + 0.5, r + step * n_y + 0.5], dim=-1)[ok]
    flat = idx[ok]
    world = centre + near.reshape(-1)[flat, None] * dirs_world.reshape(-1, 3)[flat]
    return world.double().cpu().numpy(), uv.double().cpu().numpy()


def keypoint_matches(photo: Tensor, shading: Tensor, depth: Tensor, points: Tensor, kind: str
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """2D-3D matches of the photo's keypoints (SIFT, or 500 ORB) to the shading render's, lifted with the render's
    depth (:func:`~s2nerf_ns.attacks.pose.matching.match_and_lift`: ratio 0.8, depth edges over 5 % skipped)."""
    if kind == "none":
        return np.zeros((0, 3)), np.zeros((0, 2))
    to8 = lambda x: (x.clamp(0, 1) * 255).round().byte().cpu().numpy()  # noqa: E731
    kp_p, des_p = keypoint_detector(kind, orb_features=500)[0].detectAndCompute(to8(photo), None)
    return match_and_lift(kp_p, des_p, to8(shading), points, depth, kind, ratio=0.8, depth_edge=1.05, orb_features=500)


def pnp_once(depth_fn: DepthFn, photo: Tensor, k: Sequence[float], c2w: Tensor, cfg: GeometrySearchConfig
             ) -> Tuple[Optional[Tensor], int]:
    """One round: render depth at ``c2w`` on the photo's grid (``photo`` [h,w,3] with intrinsics ``k``), matches,
    RANSAC PnP. Returns (new pose or None, inliers)."""
    h, w = photo.shape[:2]
    dirs = camera_directions(k, h, w, photo.device)
    depth = render_views(depth_fn, c2w[None], dirs, cfg.max_rays_per_call)[0, :, 0].reshape(h, w).clamp_min(1e-3)
    dirs_hw = dirs.reshape(h, w, 3)
    cam_points = depth[..., None] * dirs_hw
    points = cam_points @ c2w[:, :3].T + c2w[:, 3]  # world
    chans = depth_channels(depth[None], dirs_hw, cfg.depth_weight, cfg.normal_weight)
    render_j = blur121(structure_tensor(chans))[0]
    photo_j = blur121(structure_tensor(photo.permute(2, 0, 1)[None]))[0]
    world, uv = edge_matches(photo_j, render_j, depth, c2w[:, 3], dirs @ c2w[:, :3].T, cfg.pnp_search_px)
    if cfg.keypoints != "none":
        normals = F.normalize(chans[0, 1:].permute(1, 2, 0).reshape(-1, 3), dim=-1) @ c2w[:, :3].T
        shading = shade(normals, dirs @ c2w[:, :3].T, depth.reshape(-1, 1), float(depth.quantile(0.95)))
        kw, kuv = keypoint_matches(photo.mean(-1), shading.mean(-1).reshape(h, w), depth, points, cfg.keypoints)
        world, uv = np.concatenate([world, kw]), np.concatenate([uv, kuv])
    if len(world) < 6:
        return None, 0
    fx, fy, cx, cy = k
    camera = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    rvec, tvec = c2w_to_cv(c2w)
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(world, uv, camera, None, rvec, tvec, useExtrinsicGuess=True,
                                                 iterationsCount=200, reprojectionError=cfg.pnp_reprojection_px,
                                                 confidence=0.999, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or inliers is None or len(inliers) < 6:
        return None, 0
    rvec, tvec = cv2.solvePnPRefineLM(world[inliers[:, 0]], uv[inliers[:, 0]], camera, None, rvec, tvec)
    return cv_to_c2w(rvec, tvec, c2w), int(len(inliers))


@torch.no_grad()
def pnp_rounds(depth_fn: DepthFn, image: Tensor, intrinsics: Sequence[float], init: Tensor,
               cfg: GeometrySearchConfig, score: Callable[[Tensor], Tensor]) -> Tuple[Tensor, List[int], int]:
    """``cfg.pnp_rounds`` rounds of ``pnp_once`` from every pose [K,3,4]; a round's pose is kept where ``score``
    (lower is better) improves. Returns (poses [K,3,4], inliers of each pose's last kept round, rays rendered)."""
    photo, k = downsample(image, intrinsics, cfg.pnp_size)
    out, kept = [], []
    rays = 0
    for c2w in init:
        best, best_score, inliers = c2w, float(score(c2w[None])[0]), 0
        for _ in range(cfg.pnp_rounds):
            new, n = pnp_once(depth_fn, photo, k, best, cfg)
            rays += photo.shape[0] * photo.shape[1]
            if new is None:
                break
            new_score = float(score(new[None])[0])
            if new_score >= best_score:
                break
            best, best_score, inliers = new, new_score, n
        out.append(best)
        kept.append(inliers)
    return torch.stack(out), kept, rays
