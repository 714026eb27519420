"""Scene-aided surrogate model attack (SSMA): SMA plus a few leaked photos of the scene, with or without
their poses. The leaked photos come through a nerfstudio datamanager of their own, held by this (evaluating)
pipeline, which hands the attacker pixels only (and the poses only with ``--pose known``); the true poses are
used for scoring. The victim's datamanager is unchanged."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Dict, Literal, Optional, Tuple, Type

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from torch.cuda.amp.grad_scaler import GradScaler

from s2nerf_ns.attacks.pose.camera import pose_errors
from s2nerf_ns.attacks.pose.config import PoseSearchConfig, attack_search_config
from s2nerf_ns.attacks.pose.keypoint_search import KeypointSearchConfig
from s2nerf_ns.attacks.scene_aided import LeakBatch, SceneAidedAttacker
from s2nerf_ns.attacks.scene_aided_settings import SceneAidedSettings
from s2nerf_ns.data.leaked_views import LeakedViewsDataParserConfig
from s2nerf_ns.errors import data_setup
from s2nerf_ns.evaluation import geometry as geo
from s2nerf_ns.integration.attack_pipeline import AttackPipeline, AttackPipelineConfig


@dataclass
class SceneAidedAttackPipelineConfig(AttackPipelineConfig, SceneAidedSettings):
    """Victim training + scene-aided surrogate model attack (the leak and pose-round settings, shared with
    ``s2nerf-server --attack ssma``, are :class:`~s2nerf_ns.attacks.scene_aided_settings.SceneAidedSettings`)."""

    _target: Type = field(default_factory=lambda: SceneAidedAttackPipeline)
    leaked: LeakedViewsDataParserConfig = field(default_factory=LeakedViewsDataParserConfig)
    """Which photos leaked (source, how many, which)."""
    pose: Literal["known", "estimate"] = "known"
    """known: the attacker is told the leaked photos' poses; estimate: pixels only (retrieval + iNeRF)."""
    pose_search: Literal["retrieval", "global", "keypoints"] = "retrieval"
    """estimate: first guess by retrieval over the training poses, by the global search over positions and
    orientations (for photos taken off the training trajectory; renders millions of rays: meant for a GPU), or by
    keypoints (SIFT) of the photo matched to the surrogate's renders at the training poses, lifted to 3D by the
    density read-out's depth, and PnP (MeshLoc-style; settings in --pipeline.pose-keypoints)."""
    pose_search_config: PoseSearchConfig = field(default_factory=attack_search_config)
    """global search: its knobs. Defaults for the attack: candidates compared by a regression from the surrogate's
    per-ray features to the photo, fitted per candidate on half the pixels and scored on the other half
    (objective feature-cv), centres searched over the whole scene box (region scene-box)."""
    pose_keypoints: KeypointSearchConfig = field(default_factory=KeypointSearchConfig)
    """keypoints search: its knobs."""
    report_sma_phase: bool = False
    """Before any leaked image is used, score the attacker on the eval views (= the SMA result of this run;
    the benchmark uses it with --no-leak-during-training to get SMA and SSMA from one victim)."""


class SceneAidedAttackPipeline(AttackPipeline):
    config: SceneAidedAttackPipelineConfig

    def __init__(self, config: SceneAidedAttackPipelineConfig, device: str,
                 test_mode: Literal["test", "val", "inference"] = "val", world_size: int = 1, local_rank: int = 0,
                 grad_scaler: Optional[GradScaler] = None):
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        leaked = dataclasses.replace(config.leaked, victim=config.datamanager.dataparser)  # which data the leak is of
        with data_setup("the leaked photos"):  # a file that cannot be loaded: one line naming it
            self.leak_datamanager: VanillaDataManager = VanillaDataManagerConfig(
                dataparser=leaked, train_num_rays_per_batch=config.leak_rays_per_step,
                eval_num_rays_per_batch=config.leak_rays_per_step,
            ).setup(device=device, test_mode=test_mode)
        cameras = self.leak_datamanager.train_dataset.cameras
        self.true_leak_c2w = cameras.camera_to_worlds.to(self.device)  # EVALUATION: scoring the pose estimate
        intrinsics = [(float(cameras.fx[i]), float(cameras.fy[i]), float(cameras.cx[i]), float(cameras.cy[i]))
                      for i in range(len(cameras))]
        known = self.true_leak_c2w if config.pose == "known" else None
        self.attacker = SceneAidedAttacker(self.attacker, intrinsics, known, config.leak_weight,
                                           config.leak_lr).to(self.device)
        self.pose_report: Dict[str, object] = {}
        self.sma_phase_metrics: Dict[str, float] = {}
        self.sma_phase_image: Optional[Tensor] = None

    @property
    def scene_attacker(self) -> SceneAidedAttacker:
        return self.attacker  # type: ignore[return-value]

    def embed(self, origins: Tensor, directions: Tensor) -> Tuple[Tensor, Tensor]:
        """The server's own fields on any rays (what the attacker may query)."""
        return self.split_model.server.embed(origins, directions)

    def leak_batch(self, step: int) -> LeakBatch:
        """Random pixels of the leaked photos, without their poses."""
        _, batch = self.leak_datamanager.next_train(step)
        cam, rows, cols = batch["indices"].unbind(-1)
        return LeakBatch(cam, rows, cols, batch["image"][:, :3])

    def leak_step(self, step: int) -> None:
        self.scene_attacker.leak_step(self.embed, self.leak_batch(step))
        self._attackers_changed = True

    @torch.no_grad()
    def render_first_eval_view(self) -> Dict[str, Tensor]:
        """Ground truth, victim and attacker renders of the first eval view (for picture grids), with the geometry
        attacks' (read-out depth, shading, inversion) and, on the built-in rooms, the ground-truth depth."""
        self.eval()
        camera, batch = next(iter(self.datamanager.fixed_indices_eval_dataloader))
        outputs = self.model.get_outputs_for_camera(camera)
        self.add_image_attacks(outputs, camera.to("cpu"))
        self.train()
        keys = ("rgb", "attack_rgb", "floor_rgb", "embedding_rgb", "shading_rgb", "inversion_rgb", "readout_depth",
                "depth")
        out = {"gt": batch["image"][..., :3].cpu(), **{k: outputs[k].cpu() for k in keys if k in outputs}}
        index = int(batch["image_idx"])
        depth = geo.reference_depth(self.datamanager.eval_dataset._dataparser_outputs.metadata, index,
                                    *out["gt"].shape[:2])
        if depth is not None:
            out["gt_depth"] = depth  # z-depth; readout_depth and depth are distances along the rays
        return out

    # ------------------------------------------------------------------ phases
    def run_attacker(self, step: int) -> None:
        super().run_attacker(step)
        if self.config.leak_during_training and bool(self.scene_attacker.pose_ready):
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            self.leak_step(step)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.attack_seconds += time.perf_counter() - start  # attacker work, not the victim's

    def estimate_poses(self) -> None:
        """The attacker estimates the leaked photos' poses from pixels; the errors are scored here."""
        candidates = self.datamanager.train_dataset.cameras.camera_to_worlds.to(self.device)
        dataset = self.leak_datamanager.train_dataset
        images = [dataset.get_image_float32(i)[..., :3].to(self.device) for i in range(len(dataset))]
        cfg = self.config
        report = self.scene_attacker.estimate_poses(self.embed, images, candidates, self.leak_batch, cfg.pose_rounds,
                                                    cfg.pose_refine_steps, cfg.pose_fit_steps, search=cfg.pose_search,
                                                    search_config=cfg.pose_search_config,
                                                    scene_box=self.datamanager.train_dataparser_outputs.scene_box.aabb,
                                                    geometry=self.readout_depth, keypoint_config=cfg.pose_keypoints)
        for i, entry in enumerate(report):
            retrieved = torch.tensor(entry.pop("after_retrieval_c2w"), device=self.device)
            entry["after_retrieval"] = pose_errors(retrieved, self.true_leak_c2w[i])
            entry["estimated"] = pose_errors(self.scene_attacker.leak_c2w[i], self.true_leak_c2w[i])
        self.pose_report = {"pose": "estimate", "views": report}

    def finish_attack(self, step: int) -> None:
        if self.config.report_sma_phase:
            self.replay_once()
            metrics = self.get_average_eval_image_metrics()  # fits the colour maps on the SMA-phase attacker
            self.sma_phase_metrics = dict(metrics)
            self.sma_phase_image = self.render_first_eval_view()["attack_rgb"]
        if self.config.pose == "estimate" and not bool(self.scene_attacker.pose_ready):
            self.estimate_poses()
        every = self.config.post_training_replay_every
        surrogate = self.surrogate
        for s in range(self.config.post_training_steps):
            self.leak_step(s)
            if every > 0 and s % every == every - 1 and surrogate.replay:
                surrogate.attack_step(surrogate.sample_replay(self.config.leak_rays_per_step))
        super().finish_attack(step)
        if self.run_dir is not None:
            self.write_leak_report(self.run_dir / "attack")
            if self.sma_phase_metrics:
                path = self.run_dir / "attack" / "attack_summary.json"
                summary = json.loads(path.read_text())
                summary["sma_phase_eval_metrics"] = self.sma_phase_metrics
                path.write_text(json.dumps(summary, indent=2))

    def write_leak_report(self, folder) -> None:
        """EVALUATION: leaked images, true and attacker poses, pose errors."""
        attacker_c2w = self.scene_attacker.leak_c2w
        n = len(self.true_leak_c2w)
        if not self.pose_report:
            self.pose_report = {"pose": "known", "views": [
                {"leaked": i, "estimated": pose_errors(attacker_c2w[i], self.true_leak_c2w[i])} for i in range(n)]}
        leak = self.leak_datamanager.train_dataparser_outputs.metadata  # what was used (extra views may fall back)
        self.pose_report["leaked_indices"] = leak["leaked_indices"]
        self.pose_report["leaked_source"] = leak["leaked_source"]
        for i in range(n):
            self.pose_report["views"][i]["true_c2w"] = self.true_leak_c2w[i].tolist()
            self.pose_report["views"][i]["attacker_c2w"] = attacker_c2w[i].tolist()
            image = self.leak_datamanager.train_dataset.get_image_float32(i)[..., :3]
            Image.fromarray((image.numpy() * 255).astype(np.uint8)).save(folder / f"leaked_{i:02d}.png")
        (folder / "leaked_poses.json").write_text(json.dumps(self.pose_report, indent=2))
