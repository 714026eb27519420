"""The keypoint (MeshLoc-style) pose search (issue 25): SIFT matches of the photo to renders with depth, PnP, rounds
at the estimate. On a textured box room with exact colour and depth (what a perfect server renders); seconds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from s2nerf_ns.attacks.pose.camera import pixel_rays, pose_errors
from s2nerf_ns.attacks.pose.candidates import perturb_poses
from s2nerf_ns.attacks.pose.keypoint_search import (KeypointSearchConfig, PhotoKeypoints, best_view,
                                                    keypoint_pose_search)
from analytic_room import look_at, yaw_pitch

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 128
K = (100.0, 100.0, 64.0, 64.0)
TEXTURE = torch.rand(6, 3, 24, 24, generator=torch.Generator().manual_seed(0))  # one value-noise tile per wall
TRUE_C2W = look_at((0.2, -0.1, 0.3), yaw_pitch(40.0, -8.0), roll_deg=3.0)


def box_room(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Colour and distance [N,4] of rays from inside the box [-1,1]^3 whose walls carry smooth random textures."""
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t_axis = (torch.where(safe > 0, 1.0, -1.0) - origins) / safe
    t, axis = t_axis.min(dim=-1)
    wall = 2 * axis + (safe.gather(1, axis[:, None])[:, 0] < 0).long()
    p = origins + t[:, None] * directions
    uv = torch.stack([p.gather(1, ((axis + k) % 3)[:, None])[:, 0] for k in (1, 2)], dim=-1)  # in-wall coordinates
    colour = torch.zeros(len(t), 3)
    for w in range(6):
        sel = wall == w
        if sel.any():
            grid = uv[sel].reshape(1, 1, -1, 2)
            colour[sel] = F.grid_sample(TEXTURE[w:w + 1], grid, mode="bicubic", align_corners=False)[0, :, 0].T
    return torch.cat([colour.clamp(0, 1), t[:, None]], dim=-1)


def photo(c2w: torch.Tensor) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    o, d = pixel_rays(c2w, *K, rows.reshape(-1), cols.reshape(-1))
    return box_room(o, d)[:, :3].reshape(SIZE, SIZE, 3)


def test_keypoint_search_recovers_the_pose_from_renders_away_from_it():
    candidates = perturb_poses(TRUE_C2W[None], torch.tensor([20.0 * torch.pi / 180 / 3 ** 0.5]),
                               torch.tensor([0.1 / 3 ** 0.5]), 4, torch.Generator().manual_seed(1))[0]
    result = keypoint_pose_search(box_room, photo(TRUE_C2W), K, candidates, KeypointSearchConfig(photo_blur=0.0))
    error = pose_errors(result.c2w, TRUE_C2W)
    start = min(pose_errors(c, TRUE_C2W)["rotation_error_deg"] for c in candidates)
    print(error, result.history, start)
    assert start > 5.0
    assert error["rotation_error_deg"] < 0.5 and error["translation_error"] < 0.01


def test_a_photo_with_nothing_to_match_keeps_a_candidate_and_reports_no_inliers():
    flat = lambda o, d: torch.cat([torch.full_like(o, 0.5), torch.ones_like(o[:, :1])], dim=-1)  # noqa: E731
    candidates = TRUE_C2W[None].repeat(2, 1, 1)
    result = keypoint_pose_search(flat, photo(TRUE_C2W), K, candidates, KeypointSearchConfig(photo_blur=0.0))
    assert result.inliers == 0 and result.history == [0]
    assert torch.equal(result.c2w, candidates[result.candidate])


def test_first_stage_prefers_the_view_that_explains_more_matches():
    """best_view over given views (the upper bound's training photos): the view at the photo's own pose wins."""
    image = photo(TRUE_C2W)
    keypoints = PhotoKeypoints(image, K, KeypointSearchConfig(photo_blur=0.0))
    far = perturb_poses(TRUE_C2W[None], torch.tensor([0.6]), torch.tensor([0.2]), 1, torch.Generator().manual_seed(2))[0][0]

    def view(index, c2w):
        rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
        out = box_room(*pixel_rays(c2w, *K, rows.reshape(-1), cols.reshape(-1))).reshape(SIZE, SIZE, 4)
        return index, out[..., :3], out[..., 3], c2w

    pose, inliers, index = best_view(keypoints, [view(0, far), view(1, TRUE_C2W)])
    assert index == 1 and inliers >= 20
    assert pose_errors(pose, TRUE_C2W)["rotation_error_deg"] < 0.2


@pytest.mark.parametrize("field, value, flag", [("min_inliers", 3, "min-inliers 3"), ("ratio", 1.5, "ratio 1.5"),
                                                ("candidates", 0, "candidates 0"), ("photo_blur", -1.0, "photo-blur")])
def test_out_of_range_knobs_are_one_line_naming_the_flag(field, value, flag):
    with pytest.raises(ValueError, match=f"^--pipeline.pose-keypoints.{flag}"):
        KeypointSearchConfig(**{field: value})


def test_pnp_rejects_a_camera_far_outside_the_points_it_explains():
    """Few inliers can fit a camera far away (one room search put it 45,904 units off): such a pose is refused."""
    import cv2
    import numpy as np

    from s2nerf_ns.attacks.pose.keypoint_search import solve_pnp
    from s2nerf_ns.attacks.pose.pnp import c2w_to_cv

    gen = np.random.default_rng(0)
    world = gen.uniform(-1, 1, (30, 3))
    near, far = look_at((0.0, 0.0, 3.0), (0.0, 0.0, -1.0)), look_at((0.0, 0.0, 300.0), (0.0, 0.0, -1.0))
    cfg = KeypointSearchConfig()
    for c2w, fx in ((near, 100.0), (far, 10000.0)):  # the far camera zooms so the points fill the same pixels
        kk = (fx, fx, 64.0, 64.0)
        camera = np.array([[fx, 0, 64.0], [0, fx, 64.0], [0, 0, 1.0]])
        rvec, tvec = c2w_to_cv(c2w)
        uv = cv2.projectPoints(world, rvec, tvec, camera, None)[0].reshape(-1, 2)
        pose, inliers = solve_pnp(world, uv, kk, c2w, None, cfg)
        if c2w is near:
            assert pose is not None and inliers == 30
            assert pose_errors(pose, near)["translation_error"] < 1e-3
        else:
            assert pose is None and inliers == 0


@pytest.mark.parametrize("kind", ["sift", "orb"])
def test_shared_matching_lifts_each_keypoint_to_its_own_pixel_and_skips_depth_edges(kind):
    """The matching both pose searches use (``matching.match_and_lift``): a view matched to itself lifts each keypoint
    to the world point at its own pixel; a depth step through the image drops the keypoints on it."""
    from s2nerf_ns.attacks.pose.keypoint_search import gray8
    from s2nerf_ns.attacks.pose.matching import keypoint_detector, match_and_lift

    image = gray8(photo(TRUE_C2W))
    rows, cols = torch.meshgrid(torch.arange(SIZE).double(), torch.arange(SIZE).double(), indexing="ij")
    points = torch.stack([cols, rows, torch.zeros_like(rows)], dim=-1)  # a point per pixel that names the pixel
    kp, des = keypoint_detector(kind)[0].detectAndCompute(image, None)
    flat = torch.ones(SIZE, SIZE)
    world, uv = match_and_lift(kp, des, image, points, flat, kind, ratio=0.8, depth_edge=1.05)
    assert len(world) >= 20
    assert ((torch.from_numpy(uv) - 0.5 - torch.from_numpy(world[:, :2])).abs() <= 0.5).all()
    step = torch.where(cols < SIZE // 2, 1.0, 2.0).float()
    world_step, _ = match_and_lift(kp, des, image, points, step, kind, ratio=0.8, depth_edge=1.05)
    assert 0 < len(world_step) < len(world)
    assert not (torch.from_numpy(world_step[:, 0]) - (SIZE // 2 - 0.5)).abs().le(1.0).any()


def test_the_geometry_search_keeps_its_own_matching_settings(monkeypatch):
    """The geometry search's PnP rounds use the shared matching with their own settings: 500 ORB features, ratio 0.8,
    depth edges over 5 %."""
    from s2nerf_ns.attacks.pose import pnp

    seen = {}

    def spy(kp, des, render, points, depth, kind, ratio, depth_edge, orb_features=1000):
        seen.update(kind=kind, ratio=ratio, depth_edge=depth_edge, orb_features=orb_features)
        return pnp.np.zeros((0, 3)), pnp.np.zeros((0, 2))

    monkeypatch.setattr(pnp, "match_and_lift", spy)
    image = photo(TRUE_C2W).mean(-1)
    pnp.keypoint_matches(image, image, torch.ones(SIZE, SIZE), torch.zeros(SIZE, SIZE, 3), "orb")
    assert seen == {"kind": "orb", "ratio": 0.8, "depth_edge": 1.05, "orb_features": 500}
