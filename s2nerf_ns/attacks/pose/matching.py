"""SERVER SIDE (attacker): keypoint matching shared by the pose searches: OpenCV detectors (no downloaded weights),
Lowe's ratio test, and lifting a render's matched keypoints to 3D with that render's depth (keypoints on a depth edge
are skipped: their depth belongs to neither side). Used by the keypoint search (``keypoint_search.py``) and by the
geometry search's PnP rounds (``pnp.py``)."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor


def keypoint_detector(kind: str, orb_features: int = 1000):
    """OpenCV detector-descriptor for ``kind`` ("sift" or "orb") and its descriptor norm."""
    if kind == "sift":
        return cv2.SIFT_create(contrastThreshold=0.01), cv2.NORM_L2
    if kind == "orb":
        return cv2.ORB_create(orb_features, edgeThreshold=8, patchSize=15), cv2.NORM_HAMMING
    raise ValueError(f"detector {kind!r}: use 'sift' or 'orb'")


def ratio_matches(des_a: np.ndarray, des_b: np.ndarray, norm: int, ratio: float) -> List[cv2.DMatch]:
    """Each descriptor of ``a`` with its nearest in ``b``, kept where it is nearer than ``ratio`` times the second."""
    return [m[0] for m in cv2.BFMatcher(norm).knnMatch(des_a, des_b, k=2)
            if len(m) == 2 and m[0].distance < ratio * m[1].distance]


def match_and_lift(kp_photo: Sequence[cv2.KeyPoint], des_photo, render_gray: np.ndarray,
                   points: Float[Tensor, "h w 3"], depth: Float[Tensor, "h w"], kind: str, ratio: float,
                   depth_edge: float, orb_features: int = 1000) -> Tuple[np.ndarray, np.ndarray]:
    """2D-3D matches: the photo's keypoints (already detected with ``kind``) matched to the render's, each render
    keypoint lifted to the world point ``points`` gives at its pixel; a keypoint whose 3x3 depth neighbourhood spans
    more than ``depth_edge`` (a ratio) is skipped. Returns world points [M,3] and photo pixels [M,2] with pixel
    centres at i + 0.5 (OpenCV's keypoints have them at integers)."""
    detector, norm = keypoint_detector(kind, orb_features)
    kp_r, des_r = detector.detectAndCompute(render_gray, None)
    if des_photo is None or des_r is None or len(kp_photo) < 2 or len(kp_r) < 2:
        return np.zeros((0, 3)), np.zeros((0, 2))
    h, w = depth.shape
    pool = torch.nn.functional.max_pool2d
    far = pool(depth[None, None], 3, 1, 1)[0, 0]
    near = -pool(-depth[None, None], 3, 1, 1)[0, 0]
    world, uv = [], []
    for m in ratio_matches(des_photo, des_r, norm, ratio):
        x, y = kp_r[m.trainIdx].pt
        row, col = min(h - 1, max(0, int(round(y)))), min(w - 1, max(0, int(round(x))))
        if not bool(torch.isfinite(depth[row, col])) or float(far[row, col]) > depth_edge * float(near[row, col]):
            continue
        world.append(points[row, col].double().cpu().numpy())
        px, py = kp_photo[m.queryIdx].pt
        uv.append((px + 0.5, py + 0.5))
    return np.array(world).reshape(-1, 3), np.array(uv).reshape(-1, 2)
