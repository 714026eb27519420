"""Scene-aided attack: pose estimation, and leaked-image supervision reaching only the surrogate."""

import json
import math

import pytest
import torch


from s2nerf_ns.attacks.pose.camera import apply_correction, pose_errors
from s2nerf_ns.attacks.pose.retrieval import refine_pose
from helpers import tiny_config, train


@pytest.fixture(scope="module")
def ssma_run(tmp_path_factory):
    config = tiny_config("splitnerf-ssma", tmp_path_factory.mktemp("ssma"), steps=150, rays=512,
                         num_samples=24, num_levels=8, max_res=128, log2_hashmap_size=14)
    config.pipeline.datamanager.dataparser.resolution = 32
    config.pipeline.datamanager.dataparser.spp = 4
    config.pipeline.post_training_steps = 10
    config.pipeline.leak_rays_per_step = 256
    return train(config)


def victim_render(pipeline):
    """The victim's own renderer (server fields + client head): isolates the pose estimator in tests."""
    def render(origins, directions):
        h, bins = pipeline.model.server.embed(origins, directions)
        return pipeline.model.renderer(pipeline.model.client_head, h, origins, directions, bins)["rgb"]
    return render


@pytest.mark.slow
def test_pose_refinement_recovers_a_perturbed_pose(ssma_run):
    pipeline = ssma_run.pipeline
    dataset = pipeline.datamanager.train_dataset
    index = 3
    truth = dataset.cameras.camera_to_worlds[index]
    cam = dataset.cameras[index]
    intrinsics = (float(cam.fx), float(cam.fy), float(cam.cx), float(cam.cy))
    perturb = torch.tensor([[0.04, -0.03, 0.02, math.radians(2.0), math.radians(-2.5), math.radians(1.5)]])
    start = apply_correction(perturb, truth, truth[:, 3])
    before = pose_errors(start, truth)
    assert before["rotation_error_deg"] > 3.0 and before["translation_error"] > 0.04
    image = dataset.get_image_float32(index)[..., :3]
    estimate = refine_pose(victim_render(pipeline), image, start, intrinsics, steps=200, lr=4e-3, rays_per_step=512,
                           colour_invariant=False)
    after = pose_errors(estimate, truth)
    print("pose errors before", before, "after", after)
    assert after["rotation_error_deg"] < 0.5 * before["rotation_error_deg"]
    assert after["translation_error"] < 0.5 * before["translation_error"]


@pytest.mark.slow
def test_leak_supervision_changes_only_the_surrogate(ssma_run):
    pipeline = ssma_run.pipeline
    victim = {k: v.clone() for k, v in pipeline.model.state_dict().items()}
    head = {k: v.clone() for k, v in pipeline.surrogate.head.state_dict().items()}
    for step in range(3):
        pipeline.leak_step(step)
    for key, value in pipeline.model.state_dict().items():
        assert torch.equal(value, victim[key]), key
    assert any(not torch.equal(v, head[k]) for k, v in pipeline.surrogate.head.state_dict().items())


@pytest.mark.slow
def test_ssma_run_writes_leaked_images_and_poses(ssma_run):
    folder = ssma_run.base_dir / "attack"
    report = json.loads((folder / "leaked_poses.json").read_text())
    assert report["pose"] == "known" and report["leaked_source"] == "extra"
    assert report["views"][0]["estimated"]["rotation_error_deg"] < 1e-3
    assert (folder / "leaked_00.png").exists()


@pytest.mark.slow
def test_keypoint_pose_search_runs_through_the_pipeline_on_the_servers_geometry(ssma_run):
    """--pipeline.pose-search keypoints: the surrogate's colour and the read-out's depth at the training poses; the
    pipeline scores what the search returned (a PnP pose, or the best candidate when nothing matched)."""
    import dataclasses
    from s2nerf_ns.attacks.pose.keypoint_search import KeypointSearchConfig

    pipeline = ssma_run.pipeline
    saved, config = pipeline.scene_attacker.leak_c2w.clone(), pipeline.config
    try:
        pipeline.config = dataclasses.replace(config, pose="estimate", pose_search="keypoints", pose_rounds=0,
                                              pose_keypoints=KeypointSearchConfig(candidates=3, rounds=1))
        pipeline.estimate_poses()
        view = pipeline.pose_report["views"][0]
        assert view["search"] == "keypoints" and view["inliers"] >= 0 and view["rays_rendered"] >= 3 * 32 * 32
        candidates = pipeline.datamanager.train_dataset.cameras.camera_to_worlds
        estimate = pipeline.scene_attacker.leak_c2w[0]
        if view["inliers"] == 0:  # nothing matched at 32 px: the search keeps the candidate it names
            assert torch.allclose(estimate, candidates[view["first_stage_candidate"]].to(estimate))
        assert math.isfinite(view["estimated"]["rotation_error_deg"])
        with pytest.raises(ValueError, match="geometry"):
            pipeline.scene_attacker.estimate_poses(pipeline.embed, [torch.zeros(32, 32, 3)], candidates,
                                                   pipeline.leak_batch, 0, 0, 0, search="keypoints")
    finally:
        pipeline.config = config
        pipeline.scene_attacker.leak_c2w.copy_(saved)
