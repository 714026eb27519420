"""Global pose search for a leaked photo far from every training view (issue 14), on the analytic textured room of
``analytic_room.py``. The leaked photo is rendered with the true colours; the search sees a colour-distorted
"surrogate" render (gamma + affine colour mixing) so it must compare colour-invariantly. (The same search through a
NeRF trained on the room: ``test_pose_search_trained.py``.)
"""

from __future__ import annotations

import inspect
import time

import pytest
import torch

from s2nerf_ns.attacks.pose.camera import fibonacci_sphere, look_rotations, pose_errors, rotation_angle_deg
from s2nerf_ns.attacks.pose.colour_search import coarse_candidates, search_pose
from s2nerf_ns.attacks.pose.config import PoseSearchConfig, PoseSearchResult
from s2nerf_ns.attacks.pose.objectives import checkerboard_folds, colour_fit, cv_fit
from s2nerf_ns.attacks.pose.retrieval import retrieve_pose
from analytic_room import (INTRINSICS, LEAK_C2W, render_photo, room_render, single_thread, surrogate_render,
                           training_poses)


@pytest.fixture(scope="module")
def leak_case():
    train = training_poses()
    image = render_photo(LEAK_C2W)
    start = time.perf_counter()
    with single_thread():
        result = search_pose(surrogate_render, image, INTRINSICS, train, seed=0)
    seconds = time.perf_counter() - start
    return train, image, result, seconds


# --------------------------------------------------------------------------------------------- tests
def test_leaked_view_is_off_the_training_trajectory():
    train = training_poses()
    angles = [pose_errors(c2w, LEAK_C2W)["rotation_error_deg"] for c2w in train]
    assert 60.0 <= min(angles) and max(angles) <= 120.0
    lo, hi = train[:, :, 3].min(0).values, train[:, :, 3].max(0).values
    assert bool(((LEAK_C2W[:, 3] > lo - 0.05) & (LEAK_C2W[:, 3] < hi + 0.05)).all())


def test_search_recovers_an_off_trajectory_pose_colour_invariantly(leak_case):
    train, image, result, seconds = leak_case
    assert isinstance(result, PoseSearchResult)
    errors = pose_errors(result.c2w, LEAK_C2W)  # the caller scores; the search never saw LEAK_C2W
    print("search_pose errors", errors, "loss", result.loss, "timings", result.timings, "wall", seconds,
          "candidates", result.num_candidates, "rays", result.rays_rendered)
    assert errors["rotation_error_deg"] <= 3.0
    assert errors["translation_error"] <= 0.05
    assert result.top_c2w.shape[1:] == (3, 4) and torch.all(result.top_loss[:-1] <= result.top_loss[1:])
    assert result.num_candidates >= 1000


def test_coarse_stage_proposes_distinct_poses_one_near_the_leaked_view():
    train = training_poses()
    cfg = PoseSearchConfig(top_k=8)
    with single_thread():
        found = coarse_candidates(surrogate_render, render_photo(LEAK_C2W), INTRINSICS, train, cfg)
    assert found.c2w.shape == (8, 3, 4) and torch.all(found.score[:-1] <= found.score[1:])
    errors = [pose_errors(c2w, LEAK_C2W) for c2w in found.c2w]
    print("coarse proposals", [(round(e["rotation_error_deg"], 1), round(e["translation_error"], 3)) for e in errors])
    # the grid and the orientation candidates are coarse: near means within a grid cell and ~a direction spacing
    assert any(e["rotation_error_deg"] < 15.0 and e["translation_error"] < found.spacing for e in errors)
    for i in range(8):
        for j in range(i):
            angle = float(rotation_angle_deg(found.c2w[i, :, :3], found.c2w[j, :, :3]))
            dist = float((found.c2w[i, :, 3] - found.c2w[j, :, 3]).norm())
            assert angle >= cfg.nms_deg or dist >= cfg.nms_dist * found.extent
    assert list(inspect.signature(coarse_candidates).parameters) == [
        "render", "image", "intrinsics", "training_c2w", "cfg", "region"]


def test_search_never_receives_the_true_pose():
    params = list(inspect.signature(search_pose).parameters)
    assert params == ["render", "image", "intrinsics", "training_c2w", "config", "seed", "region"]
    assert not any("true" in p or "truth" in p or "gt" == p for p in params)
    fields = PoseSearchConfig.__dataclass_fields__
    assert not any("true" in name or "truth" in name for name in fields)


def test_retrieval_fails_where_search_succeeds(leak_case):
    train, image, result, _ = leak_case
    with single_thread():
        best, _ = retrieve_pose(surrogate_render, image, train, INTRINSICS)
    retrieved = pose_errors(train[best], LEAK_C2W)
    searched = pose_errors(result.c2w, LEAK_C2W)
    print("retrieve_pose errors", retrieved, "search_pose errors", searched)
    assert retrieved["rotation_error_deg"] > 45.0
    assert searched["rotation_error_deg"] < retrieved["rotation_error_deg"] / 10


def test_search_is_deterministic_given_the_seed_and_cheap_config():
    train = training_poses()
    image = render_photo(LEAK_C2W)
    cfg = PoseSearchConfig(num_positions=8, num_directions=64, roll_deg=(0.0,), max_training_centres=2, top_k=2,
                           local_iters=1, local_samples=4, pyramid_candidates=1, pyramid_sizes=(16,), pyramid_iters=1,
                           num_refine=1, refine_steps=2, final_size=16)
    with single_thread():
        a = search_pose(surrogate_render, image, INTRINSICS, train, cfg, seed=3)
        b = search_pose(surrogate_render, image, INTRINSICS, train, cfg, seed=3)
    assert torch.allclose(a.c2w, b.c2w)
    assert set(a.timings) >= {"coarse", "local", "pyramid", "refine", "total"}


def test_orientation_candidates_are_rotations_covering_the_sphere():
    dirs = fibonacci_sphere(200)
    rots = look_rotations(dirs, torch.tensor([0.0, 1.0, 0.0]), torch.deg2rad(torch.tensor([-15.0, 0.0, 15.0])))
    assert rots.shape == (600, 3, 3)
    assert torch.allclose(rots.transpose(1, 2) @ rots, torch.eye(3).expand(600, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rots), torch.ones(600), atol=1e-5)
    # OpenGL: the camera looks along -z, so -R[:, 2] is the viewing direction of each candidate
    assert torch.allclose(-rots[1::3, :, 2], dirs, atol=1e-5)
    # every direction on the sphere is within ~10 degrees of a candidate viewing direction (200 points)
    probe = torch.nn.functional.normalize(torch.randn(2000, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    nearest = torch.rad2deg(torch.arccos((probe @ dirs.T).max(dim=1).values.clamp(-1, 1)))
    assert float(nearest.max()) < 12.0


def test_scene_aided_attacker_uses_the_global_search(monkeypatch):
    """Wiring: with search="global" the attacker's first estimate is search_pose's (pixels and training poses only)."""
    from s2nerf_ns.attacks import scene_aided
    from s2nerf_ns.attacks.surrogate import SurrogateAttackConfig

    arch = dict(encoding_dim=8, hidden_dim=16, num_density_layers=2, geo_feat_dim=7, cut_depth=1, sh_levels=2,
                color_hidden_dim=16, num_color_layers=2)
    surrogate = SurrogateAttackConfig().setup(num_images=2, image_height=8, image_width=8, head_kwargs=arch,
                                              background_color="last_sample", max_steps=1)
    attacker = scene_aided.SceneAidedAttacker(surrogate, [(8.0, 8.0, 4.0, 4.0)], known_c2w=None)
    chosen = torch.eye(4)[:3].clone()
    chosen[:, 3] = torch.tensor([0.1, -0.2, 0.3])
    seen = {}

    def fake_search(render, image, intrinsics, training_c2w, config=None, seed=0, region=None):
        seen.update(image_shape=tuple(image.shape), n_training=len(training_c2w))
        return PoseSearchResult(c2w=chosen, loss=0.5, top_c2w=chosen[None], top_loss=torch.tensor([0.5]),
                                coarse_c2w=chosen[None], coarse_score=torch.tensor([0.5]), local_c2w=chosen[None],
                                local_score=torch.tensor([0.5]), pyramid_c2w=chosen[None], num_candidates=1,
                                rays_rendered=0, timings={})

    monkeypatch.setattr(scene_aided, "search_pose", fake_search)
    report = attacker.estimate_poses(lambda o, d: (None, None), [torch.rand(8, 8, 3)], torch.eye(4)[:3][None].repeat(5, 1, 1),
                                     lambda step: None, rounds=0, refine_steps=0, fit_steps=0, search="global")
    assert torch.allclose(attacker.leak_c2w[0], chosen) and bool(attacker.pose_ready)
    assert report[0]["search"] == "global" and seen == {"image_shape": (8, 8, 3), "n_training": 5}


# --------------------------------------------------------------------------------------------- feature-cv objective
def feature_render(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """A server-like feature render: the distorted colours of ``surrogate_render``, then 11 channels that are a fixed
    nonlinear function of the wall colours, and the distance to the wall hit."""
    rgb = room_render(origins, directions)
    proj = torch.randn(3, 11, generator=torch.Generator().manual_seed(5))
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t = ((torch.where(safe > 0, 1.0, -1.0) - origins) / safe).min(dim=-1).values
    return torch.cat([surrogate_render(origins, directions), torch.tanh(2.0 * (rgb - 0.5) @ proj), t[:, None]], dim=-1)


def test_cv_fit_predicts_held_out_pixels_only_from_informative_features():
    gen = torch.Generator().manual_seed(0)
    h, w = 12, 16
    target = torch.rand(h * w, 3, generator=gen)
    informative = torch.cat([target @ torch.randn(3, 5, generator=gen), torch.randn(h * w, 3, generator=gen)], -1)
    noise = torch.randn(h * w, 8, generator=gen)
    fitted = cv_fit(torch.stack([informative, noise]), target, h, w, blocks=4, ridge=1e-6)
    err = (fitted - target).pow(2).mean(dim=(1, 2))
    assert float(err[0]) < 1e-6  # a linear function of the features: predicted on the held-out fold
    # independent features: held-out error at least the target's variance (an in-sample fit would be lower)
    assert float(err[1]) > float(target.var(dim=0).mean())
    in_sample = colour_fit(noise[None, :, :3], target)
    assert float((in_sample - target).pow(2).mean()) < float(err[1])
    folds = checkerboard_folds(h, w, 4)
    assert folds.shape == (h * w,) and 0.4 < float(folds.float().mean()) < 0.6


def test_feature_cv_search_recovers_an_off_trajectory_pose_from_nonlinear_features():
    train = training_poses()
    image = render_photo(LEAK_C2W)
    cfg = PoseSearchConfig(objective="feature-cv", gradient_weight=0.0)
    with single_thread():
        result = search_pose(feature_render, image, INTRINSICS, train, cfg, seed=0)
    errors = pose_errors(result.c2w, LEAK_C2W)
    print("feature-cv search errors", errors, "timings", result.timings)
    assert errors["rotation_error_deg"] <= 3.0 and errors["translation_error"] <= 0.05
    with pytest.raises(ValueError):  # an unknown objective is refused
        search_pose(feature_render, image, INTRINSICS, train, PoseSearchConfig(objective="nonsense"), seed=0)
