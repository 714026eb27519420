"""The geometry pose search (issue 25): the photo's structure against the structure of the server's geometry, PnP
rounds from the render's depth. On the furnished analytic room (``furnished_room.py``) with its exact depth (what a
perfect density read-out renders); seconds each."""

from __future__ import annotations

import inspect

import cv2
import numpy as np
import pytest
import torch

from s2nerf_ns.attacks.pose.camera import pixel_rays, pose_errors
from s2nerf_ns.attacks.pose.colour_search import search_pose
from s2nerf_ns.attacks.pose.config import GeometrySearchConfig, GeometrySearchResult
from s2nerf_ns.attacks.pose.geometry_search import refine_pose_geometry, score_poses, search_pose_geometry
from s2nerf_ns.attacks.pose.pnp import c2w_to_cv, cv_to_c2w, pnp_rounds
from s2nerf_ns.attacks.pose.structure import StructureLevel, orientation_field, structure_tensor
from analytic_room import INTRINSICS, single_thread
from furnished_room import LEAK_C2W, furnished_depth, furnished_photo, furnished_render, perturbed
from steep_views import steep_training_poses

pytestmark = pytest.mark.usefixtures("one_thread")

CHEAP = GeometrySearchConfig(num_positions=8, num_directions=32, roll_deg=(0.0,), max_training_centres=2,
                             panorama_size=(16, 32), top_k=3, local_iters=2, local_samples=4, pyramid_candidates=2,
                             pyramid_sizes=(16,), pyramid_iters=1, pnp_rounds=1, final_size=32)


def test_the_leaked_view_is_far_from_every_training_view():
    from s2nerf_ns.attacks.pose.camera import rotation_angle_deg
    assert float(rotation_angle_deg(steep_training_poses()[:, :, :3], LEAK_C2W[:, :3]).min()) >= 60.0


def test_orientation_field_ignores_edge_sign_and_channel_rotation():
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 12, 16, generator=gen)
    field = orientation_field(structure_tensor(img), 0.5)
    assert torch.allclose(orientation_field(structure_tensor(1.0 - img), 0.5), field, atol=1e-5)  # dark/bright edge
    mix = torch.linalg.qr(torch.randn(3, 3, generator=gen))[0]  # an orthogonal colour mix
    rotated = torch.einsum("ij,bjhw->bihw", mix, img)
    assert torch.allclose(orientation_field(structure_tensor(rotated), 0.5), field, atol=1e-4)
    assert torch.allclose(field.norm(dim=1), torch.ones(1))


def test_geometry_objective_is_lowest_at_the_true_pose_at_every_level():
    """Exact geometry: the true pose scores below rotated and shifted poses, more so the further they are."""
    image = furnished_photo(LEAK_C2W)
    for size in (16, 32, 64):
        level = StructureLevel.make(image, INTRINSICS, size, GeometrySearchConfig())
        true = float(level.scores(furnished_depth, LEAK_C2W[None])[0])
        rot = [float(level.scores(furnished_depth, perturbed(d, 0.0, 12, size)).mean()) for d in (2.0, 4.0, 8.0)]
        shift = [float(level.scores(furnished_depth, perturbed(0.0, t, 12, size)).mean()) for t in (0.05, 0.1, 0.2)]
        print("size", size, "true", true, "rotated 2/4/8 deg", rot, "shifted 0.05/0.1/0.2", shift)
        assert true < min(rot + shift)
        assert rot[0] < rot[2] and shift[0] < shift[2]


def test_opencv_pose_conversion_matches_the_pixel_ray_convention():
    """A world point on the ray of pixel (row, col) projects to OpenCV's (col + 0.5, row + 0.5); PnP on exact
    correspondences from a perturbed start returns the pose."""
    fx, fy, cx, cy = INTRINSICS
    rows, cols = torch.tensor([3, 20, 40, 7, 33, 45, 12]), torch.tensor([5, 60, 31, 44, 12, 50, 22])
    o, d = pixel_rays(LEAK_C2W, fx, fy, cx, cy, rows, cols)
    world = (o + d * torch.linspace(0.5, 1.5, len(rows))[:, None]).double().numpy()
    rvec, tvec = c2w_to_cv(LEAK_C2W)
    camera = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    uv = cv2.projectPoints(world, rvec, tvec, camera, None)[0][:, 0]
    assert np.allclose(uv, np.stack([cols + 0.5, rows + 0.5], -1), atol=1e-3)
    assert torch.allclose(cv_to_c2w(rvec, tvec, LEAK_C2W), LEAK_C2W, atol=1e-5)
    r0, t0 = c2w_to_cv(perturbed(8.0, 0.1, 1, 0)[0])
    ok, r1, t1 = cv2.solvePnP(world, uv, camera, None, r0, t0, useExtrinsicGuess=True)
    errors = pose_errors(cv_to_c2w(r1, t1, LEAK_C2W), LEAK_C2W)
    assert ok and errors["rotation_error_deg"] < 1e-3 and errors["translation_error"] < 1e-4


def test_pnp_rounds_keep_a_round_only_where_it_lowers_the_score():
    image = furnished_photo(LEAK_C2W)
    cfg = GeometrySearchConfig(pnp_rounds=2)
    level = StructureLevel.make(image, INTRINSICS, 64, cfg)
    score = lambda c: level.scores(furnished_depth, c)  # noqa: E731
    starts = perturbed(3.0, 0.05, 3, 1)
    with single_thread():
        out, inliers, rays = pnp_rounds(furnished_depth, image, INTRINSICS, starts, cfg, score)
    before, after = score(starts), score(out)
    print("pnp rounds: before", before.tolist(), "after", after.tolist(), "inliers", inliers)
    assert out.shape == starts.shape and len(inliers) == 3 and rays > 0
    assert bool((after <= before + 1e-6).all())
    for i, n in enumerate(inliers):  # unchanged exactly where no round was kept
        assert (n == 0) == bool(torch.equal(out[i], starts[i]))


def test_geometry_search_is_selectable_deterministic_and_never_receives_the_true_pose():
    params = list(inspect.signature(search_pose_geometry).parameters)
    assert params == ["depth_fn", "image", "intrinsics", "training_c2w", "config", "seed", "region"]
    assert not any("true" in name or "truth" in name for name in GeometrySearchConfig.__dataclass_fields__)
    image, train = furnished_photo(LEAK_C2W), steep_training_poses()
    with single_thread():
        a = search_pose(furnished_depth, image, INTRINSICS, train, CHEAP, seed=3)  # the pose_search hook
        b = search_pose_geometry(furnished_depth, image, INTRINSICS, train, CHEAP, seed=3)
    assert isinstance(a, GeometrySearchResult) and torch.allclose(a.c2w, b.c2w)
    assert torch.all(a.top_loss[:-1] <= a.top_loss[1:]) and a.loss == float(a.top_loss[0])
    assert a.chosen_stage in ("pnp", "pyramid") and len(a.pnp_matches) == len(a.pyramid_c2w)
    assert set(a.timings) >= {"coarse", "local", "pyramid", "pnp", "final", "total"}
    box = torch.tensor([[-1.0] * 3, [1.0] * 3])
    with single_thread():
        boxed = search_pose_geometry(furnished_depth, image, INTRINSICS, train,
                                     GeometrySearchConfig(**{**CHEAP.__dict__, "region": "scene-box"}), region=box)
    assert bool(((boxed.coarse_c2w[:, :, 3] >= -1) & (boxed.coarse_c2w[:, :, 3] <= 1)).all())


def test_score_poses_ranks_the_true_pose_against_proposals():
    """The diagnosis helper: the evaluator passes the true pose with a search's proposals."""
    image = furnished_photo(LEAK_C2W)
    poses = torch.cat([LEAK_C2W[None], perturbed(10.0, 0.2, 4, 5)])
    table = score_poses(furnished_depth, image, INTRINSICS, poses, sizes=(16, 64, 500))
    assert sorted(table) == [16, 64]  # 500 is capped at the photo's 64 px, and 64 is not repeated
    for scores in table.values():
        assert scores.shape == (5,) and int(scores.argmin()) == 0


def hybrid_render(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Depth, then the room's colours through an unknown gamma + colour mix (as a surrogate's): [N, 4]."""
    mix = torch.tensor([[0.7, 0.2, 0.05], [-0.1, 0.8, 0.2], [0.15, -0.05, 0.6]])
    x = furnished_render(origins, directions, depth=True)
    return torch.cat([x[:, 3:], x[:, :3].clamp_min(1e-4) ** 1.3 @ mix.T + torch.tensor([0.1, -0.05, 0.2])], dim=-1)


def test_appearance_channels_join_the_geometry_structure():
    """A render's extra channels (e.g. the surrogate's colours) add their edges (the poster's, which have no
    geometry behind them); with appearance_weight 0 they are ignored."""
    image = furnished_photo(LEAK_C2W)
    poses = torch.cat([LEAK_C2W[None], perturbed(4.0, 0.1, 8, 7)])
    plain = StructureLevel.make(image, INTRINSICS, 64, GeometrySearchConfig()).scores(furnished_depth, poses)
    hybrid = StructureLevel.make(image, INTRINSICS, 64, GeometrySearchConfig()).scores(hybrid_render, poses)
    ignored = StructureLevel.make(image, INTRINSICS, 64, GeometrySearchConfig(appearance_weight=0.0)).scores(
        hybrid_render, poses)
    print("true pose: geometry only", float(plain[0]), "with appearance", float(hybrid[0]))
    assert torch.allclose(ignored, plain, atol=1e-6)
    assert float(hybrid[0]) < float(plain[0]) and int(hybrid.argmin()) == 0


def test_refinement_from_given_poses_lowers_the_objective():
    """refine_pose_geometry (stages 2-5 from e.g. the colour search's finalists) never returns a pose scoring worse
    than its best start, and keeps the starts in its result."""
    image = furnished_photo(LEAK_C2W)
    starts = perturbed(4.0, 0.08, 3, 11)
    cfg = GeometrySearchConfig(local_size=32, local_rot_deg=3.0, local_iters=4, local_samples=8, pyramid_sizes=(32, 64),
                               pyramid_iters=3, pnp_rounds=2)
    with single_thread():
        out = refine_pose_geometry(hybrid_render, image, INTRINSICS, starts, cfg, seed=0, step=0.05)
    level = StructureLevel.make(image, INTRINSICS, cfg.final_size, cfg)
    before = level.scores(hybrid_render, starts)
    print("refined", pose_errors(out.c2w, LEAK_C2W), "from", [pose_errors(c, LEAK_C2W) for c in starts],
          "score", out.loss, "best start", float(before.min()))
    assert torch.equal(out.coarse_c2w, starts) and out.num_candidates == 3
    assert out.loss <= float(before.min()) + 1e-6
    assert abs(out.loss - float(level.scores(hybrid_render, out.c2w[None])[0])) < 1e-5
