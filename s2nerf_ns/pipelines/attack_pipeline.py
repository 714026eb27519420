"""Surrogate model attack pipeline: trains the victim exactly like ``splitnerf``/``s2nerf`` and, in the same
run, a curious-server attacker fed only by the gradient channel's observer interface."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Type

import numpy as np
import torch
from PIL import Image

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.utils import writer
from torch.cuda.amp.grad_scaler import GradScaler

from s2nerf_ns.attacks.leakage import leakage_metrics
from s2nerf_ns.attacks.surrogate import SurrogateAttackConfig, SurrogateAttacker
from s2nerf_ns.pipelines.split_pipeline import SplitPipeline, SplitPipelineConfig
from s2nerf_ns.split.channel import ServerView


@dataclass
class AttackPipelineConfig(SplitPipelineConfig):
    """Victim split training + surrogate model attack in one run."""

    _target: Type = field(default_factory=lambda: AttackPipeline)
    attack: SurrogateAttackConfig = field(default_factory=SurrogateAttackConfig)
    """The attacker's options (``--pipeline.attack.preset paper`` for the literal reference settings)."""
    num_dummies_saved: int = 8
    """Training images whose dummy reconstruction is saved (next to the ground truth) at the end."""


class AttackPipeline(SplitPipeline):
    """SplitPipeline + attacker. The attacker is built without references to the client head or images."""

    config: AttackPipelineConfig

    def __init__(self, config: AttackPipelineConfig, device: str, test_mode: Literal["test", "val", "inference"] = "val",
                 world_size: int = 1, local_rank: int = 0, grad_scaler: Optional[GradScaler] = None):
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        cameras = self.datamanager.train_dataset.cameras  # the server was sent these poses
        self.attacker: SurrogateAttacker = config.attack.setup(
            num_images=len(cameras),
            image_height=int(cameras.height.max()),
            image_width=int(cameras.width.max()),
            head_kwargs=self.split_model.client_architecture(),
        ).to(self.device)
        self.split_model.attacker = self.attacker  # rendered as `attack_rgb`; not in any optimizer group
        self._received: List[ServerView] = []
        self.split_model.channel.add_observer(self._received.append)  # what the server keeps of each step
        self.attack_seconds = 0.0
        self.attack_steps = 0

    def run_attacker(self, step: int) -> None:
        """After the victim's step: the attacker processes what the server received."""
        start = time.perf_counter()
        for view in self._received:
            self.attacker.observe(view)
        self._received.clear()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.attack_seconds += time.perf_counter() - start
        self.attack_steps += 1
        if step % 50 == 0:
            for key, value in self.attacker.last_stats.items():
                writer.put_scalar(name=f"Attack/{key}", scalar=value, step=step)
            writer.put_scalar(name="Attack/seconds_per_step", scalar=self.attack_seconds / self.attack_steps, step=step)

    def replay_once(self) -> float:
        """Attacker-only replay epochs after training (run once); returns the seconds they took."""
        if getattr(self, "_replay_seconds", None) is None:
            start = time.perf_counter()
            self.attacker.run_replay()
            self._replay_seconds = time.perf_counter() - start
        return self._replay_seconds

    def finish_attack(self, step: int) -> None:
        """After training: attacker-only replay steps, then the dummy images are saved and scored."""
        replay_seconds = self.replay_once()
        if self.run_dir is None:
            return
        folder = self.run_dir / "attack"
        folder.mkdir(parents=True, exist_ok=True)
        summary: Dict[str, object] = {
            "attack_config": {k: str(v) for k, v in vars(self.config.attack).items() if not k.startswith("_")},
            "attacker_steps": int(self.attacker.step_count),
            "attacker_seconds_per_victim_step": self.attack_seconds / max(self.attack_steps, 1),
            "replay_seconds": replay_seconds,
            "dummy_metrics": self.score_dummies(folder),
        }
        (folder / "attack_summary.json").write_text(json.dumps(summary, indent=2))

    @torch.no_grad()
    def score_dummies(self, folder: Path) -> Dict[str, float]:
        """EVALUATION ONLY (not the attacker): compare dummy images with the true training images."""
        dataset = self.datamanager.train_dataset
        n = len(dataset)
        chosen = np.linspace(0, n - 1, min(self.config.num_dummies_saved, n)).round().astype(int)
        rows, scores = [], []
        for idx in chosen:
            gt = dataset.get_image_float32(int(idx))[..., :3]
            dummy = self.attacker.dummy[int(idx), : gt.shape[0], : gt.shape[1]].detach().cpu()
            scores.append(leakage_metrics(dummy, gt, "dummy_"))
            rows.append(torch.cat([gt, dummy], dim=1))
        grid = (torch.cat(rows, dim=0).clamp(0, 1).numpy() * 255).astype(np.uint8)
        Image.fromarray(grid).save(folder / "dummies_gt_vs_dummy.png")
        return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        trainer = getattr(attrs, "trainer", None)
        if trainer is not None:
            self.attacker.max_steps = trainer.config.max_num_iterations * self.config.attack.attacker_steps_per_victim_step
        callbacks = super().get_training_callbacks(attrs)
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.run_attacker,
                                          update_every_num_iters=1))
        callbacks.insert(0, TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self.finish_attack))
        return callbacks
