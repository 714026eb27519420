"""s2nerf-server --attack ssma: the scene-aided attack in the server process (leaked photos given to the server),
scored by the one evaluator with the keys of the in-process splitnerf-ssma; the client's image size from Hello.

Loopback only; every server process is started and killed here."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
import tyro

from s2nerf_ns.data.leaked_views import LeakedViewsDataParserConfig
from s2nerf_ns.transport.client import RemoteOptions
from s2nerf_ns.transport.server_attack import RayPoses, read_leaked_views
from s2nerf_ns.transport.server_cli import ServerConfig, run
from helpers import tiny_config, train
from test_two_process import ServerProcess, free_port

pytestmark = pytest.mark.timeout(600)
TOKEN = "ssma-token"
STEPS = 8
SMALL = dict(steps=STEPS, rays=128)


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def small(config):
    """The attack pipeline's evaluator kept small (a tiny inversion network)."""
    config.pipeline.inversion_steps, config.pipeline.inversion_seconds = 5, 5.0
    return config


def seeded_train(config):
    """Train as ns-train does: seeded first (nerfstudio's train_loop seeds random, numpy and torch)."""
    from nerfstudio.scripts.train import _set_random_seed

    _set_random_seed(config.machine.seed)
    return train(config)


def write_leaked_views(config, folder):
    """The photo(s) the in-process splitnerf-ssma of ``config`` leaks, as a folder for --leaked-views (true poses
    in the frame of the rays the client sends)."""
    leaked = LeakedViewsDataParserConfig(victim=config.pipeline.datamanager.dataparser)
    outputs = leaked.setup().get_dataparser_outputs("train")
    folder.mkdir()
    frames, cameras = [], outputs.cameras
    for i, path in enumerate(outputs.image_filenames):
        name = f"leaked_{i:02d}{path.suffix}"
        (folder / name).write_bytes(path.read_bytes())
        frames.append({"file": name, "fx": float(cameras.fx[i]), "fy": float(cameras.fy[i]),
                       "cx": float(cameras.cx[i]), "cy": float(cameras.cy[i]),
                       "c2w": cameras.camera_to_worlds[i].tolist()})
    (folder / "leaked.json").write_text(json.dumps({"frames": frames}))
    return folder


def test_ssma_in_the_server_process_scores_the_keys_of_the_in_process_ssma(tmp_path, token_file):
    from s2nerf_ns.integration.audit import ScoreRemoteConfig, score_remote

    views = write_leaked_views(tiny_config("splitnerf-ssma", tmp_path / "probe"), tmp_path / "leaked")
    proc = ServerProcess(tmp_path / "server", token_file, free_port(), "--max-message-mb", "64", "--attack", "ssma",
                         "--leaked-views", str(views), "--post-training-steps", "4", "--replay-steps", "3",
                         "--leak-rays-per-step", "64", "--checkpoint-every", "4", "--record-server-view",
                         "--seed", "42").start()  # the seed of the in-process run (--machine.seed)
    try:  # no --image-size: the client's Hello says it
        config = tiny_config("splitnerf-remote", tmp_path / "outputs", server_address=proc.address,
                             server_token_file=token_file, remote=RemoteOptions(insecure=True), **SMALL)
        seeded_train(config)
        report = proc.run_dir / "attack" / "leaked_poses.json"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (report.is_file() and json.loads(report.read_text())["finished"]):
            time.sleep(0.5)
        proc.stop()
    finally:
        proc.kill()
    log = (tmp_path / f"server-{proc.port}.log").read_text()
    assert "scene-aided attack finished" in log, log[-2000:]
    poses = json.loads(report.read_text())
    truth = json.loads((views / "leaked.json").read_text())["frames"][0]["c2w"]
    assert poses["pose"] == "known" and torch.allclose(torch.tensor(poses["attacker_c2w"][0]), torch.tensor(truth))
    attack = torch.load(proc.run_dir / "attack" / "attacker.pt", weights_only=True)
    assert attack["attack"] == "ssma" and attack["finished"] and attack["step"] == STEPS
    # the surrogate observed every step, then the post-training and replay steps (its own step count: replay only)
    assert int(attack["surrogate"]["step_count"]) == STEPS + 3
    dummies = torch.load(proc.run_dir / "attack" / "dummies.pt", weights_only=True)
    assert dummies.shape[1:] == (24, 24, 3)  # the size the client sent in Hello

    (client_config,) = (tmp_path / "outputs").rglob("config.yml")
    remote = score_remote(ScoreRemoteConfig(server_run=proc.run_dir, client_config=client_config))
    assert "scene-aided attack (s2nerf-server --attack ssma" in " ".join(remote["attacks"].values())
    assert remote["attacker_step"] == STEPS + 3

    in_process = small(tiny_config("splitnerf-ssma", tmp_path / "inproc", **SMALL))
    in_process.pipeline.post_training_steps, in_process.pipeline.attack.replay_steps = 4, 3
    pipeline = seeded_train(in_process).pipeline
    pipeline.eval()
    ns_eval = pipeline.get_average_eval_image_metrics()  # what ns-eval of splitnerf-ssma reports
    finite = {k for k, v in ns_eval.items() if not isinstance(v, float) or math.isfinite(v)}
    print("keys", len(finite), {k: (remote["eval_metrics"][k], ns_eval[k]) for k in ("attack_cmpsnr", "psnr")})
    assert set(remote["eval_metrics"]) == finite, (sorted(set(remote["eval_metrics"]) ^ finite))
    assert {"attack_cmpsnr", "floor_surrogate_cmpsnr", "embedding_attack_cmpsnr", "leakage_cmpsnr",
            "geometry_leakage_absrel"} <= finite


def test_ssma_estimates_the_leaked_pose_in_the_server_process_from_the_training_poses_it_recovered(tmp_path,
                                                                                                 token_file):
    views = write_leaked_views(tiny_config("splitnerf-ssma", tmp_path / "probe"), tmp_path / "leaked")
    proc = ServerProcess(tmp_path / "server", token_file, free_port(), "--max-message-mb", "64", "--attack", "ssma",
                         "--leaked-views", str(views), "--pose", "estimate", "--pose-rounds", "1",
                         "--pose-refine-steps", "3", "--pose-fit-steps", "2", "--post-training-steps", "2",
                         "--replay-steps", "0", "--leak-rays-per-step", "64").start()
    try:
        config = tiny_config("splitnerf-remote", tmp_path / "outputs", server_address=proc.address,
                             server_token_file=token_file, remote=RemoteOptions(insecure=True), **SMALL)
        seeded_train(config)
        proc.stop()  # SIGTERM: the after-training phase ends first, then the last checkpoint
        proc.start()  # restarted: the scene-aided attacker's state resumes from the checkpoint, finished
        proc.stop()
    finally:
        proc.kill()
    log = (tmp_path / f"server-{proc.port}.log").read_text()
    assert f"resumed from {proc.run_dir / 'server_checkpoint.pt'} at step {STEPS}" in log, log[-3000:]
    assert log.count("scene-aided attack finished") == 1 and "Traceback" not in log
    report = json.loads((proc.run_dir / "attack" / "leaked_poses.json").read_text())
    assert report["pose"] == "estimate" and report["finished"]
    images = config.pipeline.datamanager.dataparser.setup().get_dataparser_outputs("train").cameras
    assert report["training_poses_recovered"] == len(images)  # every training image sent rays with their pixels
    (view,) = report["views"]
    assert view["search"] == "retrieval" and 0 <= view["retrieved_training_view"] < len(images)
    retrieved = images.camera_to_worlds[view["retrieved_training_view"]]
    assert torch.allclose(torch.tensor(view["after_retrieval_c2w"]), retrieved, atol=1e-3)  # a recovered pose
    assert torch.isfinite(torch.tensor(report["attacker_c2w"])).all()


@pytest.mark.parametrize("args, line", [
    (["--attack", "ssma", "--leaked-views", "NOSUCH"], "--leaked-views NOSUCH: no such folder"),
    (["--attack", "ssma"], "--attack ssma needs --leaked-views DIR"),
    (["--leaked-views", "."], "--leaked-views is for --attack ssma"),
    (["--attack", "ssma", "--leaked-views", ".", "--leak-lr", "0"], "--leak-lr 0.0: give a positive number"),
])
def test_scene_aided_options_are_checked_at_startup_in_one_line(tmp_path, token_file, capsys, args, line):
    with pytest.raises(SystemExit):
        tyro.cli(ServerConfig, args=["--token-file", str(token_file), "--run-dir", str(tmp_path / "run"),
                                     "--insecure", *[str(tmp_path / a) if a == "NOSUCH" else a for a in args]])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and line in err[0].replace(str(tmp_path) + "/", ""), err
    assert not (tmp_path / "run").exists()


def test_a_bad_leaked_views_folder_is_one_line_before_serving(tmp_path, token_file):
    from s2nerf_ns.errors import InputError

    folder = tmp_path / "leaked"
    folder.mkdir()
    config = ServerConfig(token_file=token_file, run_dir=tmp_path / "run", insecure=True, attack="ssma",
                          leaked_views=folder, listen=f"127.0.0.1:{free_port()}")
    cases = [(None, "cannot read leaked.json"),
             ({"frames": [{"file": "a.png", "fx": 10, "fy": 10, "cx": 4, "cy": 4}]}, "'file' 'a.png' is not a file"),
             ("no image", "cannot read a.png as an image"),
             ({"frames": [{"file": "a.png", "fx": 10, "fy": 10, "cx": 4, "cy": 4}]}, "--pose known needs 'c2w'")]
    for spec, line in cases:
        if spec == "no image":
            (folder / "a.png").write_text("not a png")
        elif spec is not None:
            (folder / "leaked.json").write_text(json.dumps(spec))
        if line.startswith("--pose"):
            from PIL import Image

            Image.new("RGB", (8, 8)).save(folder / "a.png")
        with pytest.raises(InputError) as err:
            run(config)  # read and checked before the port is bound or anything is written
        assert line in str(err.value) and str(err.value).startswith("--leaked-views") and "\n" not in str(err.value)
        assert not (tmp_path / "run").exists()
    assert read_leaked_views(folder, "estimate").c2w is None


def test_training_poses_are_recovered_from_the_rays_the_server_received():
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.cameras.lie_groups import exp_map_SO3xR3

    torch.manual_seed(0)
    c2w = exp_map_SO3xR3(torch.randn(3, 6))[:, :3, :4]
    cameras = Cameras(camera_to_worlds=c2w, fx=30.0, fy=28.0, cx=15.0, cy=12.5, height=24, width=32)
    poses = RayPoses(4, 24, 32)
    rows, cols = torch.meshgrid(torch.arange(24), torch.arange(32), indexing="ij")
    for i in range(3):
        bundle = cameras.generate_rays(camera_indices=i).flatten()
        keep = torch.randperm(24 * 32)[:40]
        indices = torch.stack([torch.full_like(rows, i), rows, cols], -1).reshape(-1, 3)[keep]
        poses.observe(indices, bundle.origins[keep], bundle.directions[keep])
    seen, recovered, intrinsics = poses.poses()
    assert seen == [0, 1, 2]  # image 3 sent no ray
    assert torch.allclose(recovered, c2w, atol=1e-4)
    assert all(torch.allclose(torch.tensor(k), torch.tensor([30.0, 28.0, 15.0, 12.5]), atol=1e-3) for k in intrinsics)


def test_scene_aided_settings_are_spelled_once_for_both_front_ends():
    """The in-process pipeline config, the server's command line and the server's options inherit one settings class:
    same names, same defaults, no field of it redeclared."""
    import dataclasses

    from s2nerf_ns.attacks.scene_aided_settings import SceneAidedSettings
    from s2nerf_ns.integration.scene_aided_pipeline import SceneAidedAttackPipelineConfig
    from s2nerf_ns.transport.server_attack import SceneAidedOptions
    from s2nerf_ns.transport.server_cli import ServerConfig

    shared = {f.name: f.default for f in dataclasses.fields(SceneAidedSettings)}
    assert len(shared) >= 9
    for cls in (SceneAidedAttackPipelineConfig, ServerConfig, SceneAidedOptions):
        assert issubclass(cls, SceneAidedSettings)
        assert not set(shared) & set(vars(cls).get("__annotations__", {})), cls  # not redeclared
        assert {f.name: f.default for f in dataclasses.fields(cls) if f.name in shared} == shared
