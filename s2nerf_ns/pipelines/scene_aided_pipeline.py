"""Scene-aided surrogate model attack (SSMA): SMA plus a few leaked photos of the scene, with or without
their poses. The leaked photos reach the attacker through a nerfstudio datamanager of their own; the
victim's datamanager is unchanged."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Dict, Literal, Optional, Tuple, Type

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from torch.cuda.amp.grad_scaler import GradScaler

from s2nerf_ns.attacks.pose import pixel_rays, pose_errors, refine_pose, retrieve_pose
from s2nerf_ns.attacks.surrogate import render_rays
from s2nerf_ns.data.leaked_views import LeakedViewsDataParserConfig
from s2nerf_ns.pipelines.attack_pipeline import AttackPipeline, AttackPipelineConfig


@dataclass
class SceneAidedAttackPipelineConfig(AttackPipelineConfig):
    """Victim training + scene-aided surrogate model attack."""

    _target: Type = field(default_factory=lambda: SceneAidedAttackPipeline)
    leaked: LeakedViewsDataParserConfig = field(default_factory=LeakedViewsDataParserConfig)
    """Which photos leaked (source, how many, which)."""
    pose: Literal["known", "estimate"] = "known"
    """known: the attacker is told the leaked photos' poses; estimate: pixels only (retrieval + iNeRF)."""
    leak_rays_per_step: int = 1024
    """Leaked-image rays per attacker step."""
    leak_weight: float = 1.0
    """Weight of the leaked-image loss."""
    leak_lr: float = 1e-2
    """Learning rate of the surrogate's leaked-image fitting."""
    leak_during_training: bool = True
    """With a known pose, supervise the surrogate with the leak during victim training too."""
    post_training_steps: int = 500
    """Attacker-only leaked-image steps after training, on the final server fields."""
    post_training_replay_every: int = 0
    """Interleave one replayed gradient-matching step every N post-training steps (0: never; replayed
    gradient matching also pulls the surrogate towards the gray-ish dummies and was measured to hurt)."""
    pose_rounds: int = 3
    """estimate: rounds of (refine the pose, then fit the surrogate to the leak at that pose)."""
    pose_refine_steps: int = 150
    """estimate: iNeRF steps per round."""
    pose_fit_steps: int = 100
    """estimate: surrogate fitting steps per round."""
    report_sma_phase: bool = False
    """Before any leaked image is used, score the attacker on the eval views (= the SMA result of this run;
    the benchmark uses it with --no-leak-during-training to get SMA and SSMA from one victim)."""


class SceneAidedAttackPipeline(AttackPipeline):
    config: SceneAidedAttackPipelineConfig

    def __init__(self, config: SceneAidedAttackPipelineConfig, device: str,
                 test_mode: Literal["test", "val", "inference"] = "val", world_size: int = 1, local_rank: int = 0,
                 grad_scaler: Optional[GradScaler] = None):
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        config.leaked.victim = config.datamanager.dataparser
        self.leak_datamanager: VanillaDataManager = VanillaDataManagerConfig(
            dataparser=config.leaked, train_num_rays_per_batch=config.leak_rays_per_step,
            eval_num_rays_per_batch=config.leak_rays_per_step,
        ).setup(device=device, test_mode=test_mode)
        cameras = self.leak_datamanager.train_dataset.cameras
        self.true_leak_c2w = cameras.camera_to_worlds.to(self.device)  # scoring only with --pose estimate
        self.leak_intrinsics = [(float(cameras.fx[i]), float(cameras.fy[i]), float(cameras.cx[i]),
                                 float(cameras.cy[i])) for i in range(len(cameras))]
        known = config.pose == "known"
        self.register_buffer("leak_c2w", self.true_leak_c2w.clone() if known else torch.zeros_like(self.true_leak_c2w))
        self.register_buffer("leak_pose_ready", torch.tensor(known))
        self.pose_report: Dict[str, object] = {}

    # ------------------------------------------------------------------ SERVER: its own fields on any rays
    sma_phase_metrics: Dict[str, float] = {}
    sma_phase_image: Optional[Tensor] = None

    @torch.no_grad()
    def render_first_eval_view(self) -> Dict[str, Tensor]:
        """Ground truth, victim and attacker renders of the first eval view (for picture grids)."""
        self.eval()
        camera, batch = next(iter(self.datamanager.fixed_indices_eval_dataloader))
        outputs = self.model.get_outputs_for_camera(camera)
        self.train()
        return {"gt": batch["image"][..., :3].cpu(), "rgb": outputs["rgb"].cpu(), "attack_rgb": outputs["attack_rgb"].cpu()}

    def server_embed(self, origins: Tensor, directions: Tensor) -> Tuple[Tensor, Tensor]:
        """h and bins of the server's fields along rays (differentiable w.r.t. the rays, not stored)."""
        model = self.split_model
        bundle = RayBundle(origins=origins, directions=directions, pixel_area=torch.ones_like(origins[:, :1]),
                           camera_indices=torch.zeros_like(origins[:, :1], dtype=torch.long))
        bundle = model.collider(bundle)
        bundle.nears, bundle.fars = bundle.nears.detach(), bundle.fars.detach()
        server = model.server_pass(bundle)
        return server.h, server.bins.detach()

    def surrogate_render(self, origins: Tensor, directions: Tensor) -> Tensor:
        h, bins = self.server_embed(origins, directions)
        return render_rays(self.attacker.head, h, origins, directions, bins)[0]

    def leaked_rays(self, step: int) -> Tuple[Tensor, Tensor, Tensor]:
        """A batch of leaked pixels with rays from the attacker's pose (known or estimated)."""
        _, batch = self.leak_datamanager.next_train(step)
        cam, rows, cols = batch["indices"].to(self.device).unbind(-1)
        origins, directions = [], []
        for i in range(len(self.leak_intrinsics)):  # per leaked image, its own camera
            sel = cam == i
            o, d = pixel_rays(self.leak_c2w[i], *self.leak_intrinsics[i], rows[sel], cols[sel])
            origins.append(o)
            directions.append(d)
        order = torch.cat([torch.nonzero(cam == i)[:, 0] for i in range(len(self.leak_intrinsics))])
        pixels = batch["image"].to(self.device)[order, :3]
        return torch.cat(origins), torch.cat(directions), pixels

    def leak_step(self, step: int) -> None:
        origins, directions, pixels = self.leaked_rays(step)
        with torch.no_grad():  # the server's fields are not trained by the attack
            h, bins = self.server_embed(origins, directions)
        self.attacker.fit_leaked(h, origins, directions, bins, pixels, self.config.leak_weight, self.config.leak_lr)

    # ------------------------------------------------------------------ phases
    def run_attacker(self, step: int) -> None:
        super().run_attacker(step)
        if self.config.leak_during_training and bool(self.leak_pose_ready):
            start = time.perf_counter()
            self.leak_step(step)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.attack_seconds += time.perf_counter() - start  # attacker work, not the victim's

    def estimate_poses(self) -> None:
        """Retrieval over the training poses the server knows, then rounds of iNeRF + surrogate fitting."""
        candidates = self.datamanager.train_dataset.cameras.camera_to_worlds.to(self.device)
        report = []
        for i in range(len(self.leak_intrinsics)):
            image = self.leak_datamanager.train_dataset.get_image_float32(i)[..., :3].to(self.device)
            best, _ = retrieve_pose(self.surrogate_render, image, candidates, self.leak_intrinsics[i])
            self.leak_c2w[i] = candidates[best]
            entry = {"leaked": i, "retrieved_training_view": best,
                     "after_retrieval": pose_errors(self.leak_c2w[i], self.true_leak_c2w[i])}
            report.append(entry)
        self.leak_pose_ready.fill_(True)
        for round_index in range(self.config.pose_rounds):
            for i in range(len(self.leak_intrinsics)):
                image = self.leak_datamanager.train_dataset.get_image_float32(i)[..., :3].to(self.device)
                self.leak_c2w[i] = refine_pose(self.surrogate_render, image, self.leak_c2w[i],
                                               self.leak_intrinsics[i], steps=self.config.pose_refine_steps,
                                               seed=round_index)
            for s in range(self.config.pose_fit_steps):
                self.leak_step(s)
        for i, entry in enumerate(report):
            entry["estimated"] = pose_errors(self.leak_c2w[i], self.true_leak_c2w[i])
        self.pose_report = {"pose": "estimate", "views": report}

    def finish_attack(self, step: int) -> None:
        if self.config.report_sma_phase:
            self.replay_once()
            metrics = self.get_average_eval_image_metrics()
            self.sma_phase_metrics = {k: v for k, v in metrics.items() if k.startswith("attack_")}
            self.sma_phase_image = self.render_first_eval_view()["attack_rgb"]
        if self.config.pose == "estimate" and not bool(self.leak_pose_ready):
            self.estimate_poses()
        every = self.config.post_training_replay_every
        for s in range(self.config.post_training_steps):
            self.leak_step(s)
            if every > 0 and s % every == every - 1 and self.attacker.replay:
                self.attacker.attack_step(self.attacker.sample_replay(self.config.leak_rays_per_step))
        super().finish_attack(step)
        if self.run_dir is not None:
            folder = self.run_dir / "attack"
            if not self.pose_report:
                self.pose_report = {"pose": "known", "views": [
                    {"leaked": i, "estimated": pose_errors(self.leak_c2w[i], self.true_leak_c2w[i])}
                    for i in range(len(self.leak_intrinsics))]}
            self.pose_report["leaked_indices"] = self.leak_datamanager.train_dataparser_outputs.metadata["leaked_indices"]
            self.pose_report["leaked_source"] = self.config.leaked.source
            for i in range(len(self.leak_intrinsics)):
                self.pose_report["views"][i]["true_c2w"] = self.true_leak_c2w[i].tolist()
                self.pose_report["views"][i]["attacker_c2w"] = self.leak_c2w[i].tolist()
                image = self.leak_datamanager.train_dataset.get_image_float32(i)[..., :3]
                Image.fromarray((image.numpy() * 255).astype(np.uint8)).save(folder / f"leaked_{i:02d}.png")
            (folder / "leaked_poses.json").write_text(json.dumps(self.pose_report, indent=2))
