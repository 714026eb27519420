"""Surrogate model attack pipeline: trains the victim exactly like ``splitnerf``/``s2nerf`` and, in the same
run, a curious-server attacker fed only by the gradient channel's observer interface.

This pipeline is the *evaluator*: it may read the ground truth to score the attacker. The attacker itself
(:mod:`s2nerf_ns.attacks`) is a separate object that never receives ground truth or client state."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Type

import numpy as np
import torch

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.utils import writer
from torch.cuda.amp.grad_scaler import GradScaler

from s2nerf_ns.attacks.surrogate import SurrogateAttackConfig, SurrogateAttacker
from s2nerf_ns.evaluation.figures import save_image_grid
from s2nerf_ns.evaluation.leakage import leakage_metrics
from s2nerf_ns.integration.split_pipeline import SplitPipeline, SplitPipelineConfig
from s2nerf_ns.protocol.channel import ServerView


@dataclass
class AttackPipelineConfig(SplitPipelineConfig):
    """Victim split training + surrogate model attack in one run."""

    _target: Type = field(default_factory=lambda: AttackPipeline)
    attack: SurrogateAttackConfig = field(default_factory=SurrogateAttackConfig)
    """The attacker's options (``--pipeline.attack.preset paper`` for the literal reference settings)."""
    num_dummies_saved: int = 8
    """Training images whose dummy reconstruction is saved (next to the ground truth) at the end."""


class AttackPipeline(SplitPipeline):
    """SplitPipeline + attacker + its scoring. The attacker is built without references to the client or images."""

    config: AttackPipelineConfig

    def __init__(self, config: AttackPipelineConfig, device: str, test_mode: Literal["test", "val", "inference"] = "val",
                 world_size: int = 1, local_rank: int = 0, grad_scaler: Optional[GradScaler] = None):
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        cameras = self.datamanager.train_dataset.cameras  # the server was sent these poses
        model = self.split_model
        victim_steps = model.config.run_steps or 0
        if victim_steps <= 0 and config.attack.lr_decay in ("0.1^(t/T)", "0.001^(t/T)"):
            raise ValueError("the attacker's lr decay needs the run's length: train through the method's trainer")
        self.attacker: torch.nn.Module = config.attack.setup(
            num_images=len(cameras),
            image_height=int(cameras.height.max()),
            image_width=int(cameras.width.max()),
            head_kwargs=model.client_architecture(),
            background_color=model.config.background_color,
            max_steps=victim_steps * config.attack.attacker_steps_per_victim_step,
        ).to(self.device)  # a pipeline submodule: saved in checkpoints, in no optimizer group
        model.register_server_render("attack_rgb", lambda *rays: self.surrogate.render(*rays))
        model.register_eval_image_hook(self.score_attack_image)
        self._received: List[ServerView] = []
        model.channel.add_observer(self._received.append)  # what the server keeps of each step
        self.attack_seconds = 0.0
        self.attack_steps = 0

    @property
    def surrogate(self) -> SurrogateAttacker:
        """The surrogate model attacker (the whole attacker here; wrapped by the scene-aided pipeline)."""
        return self.attacker.surrogate if hasattr(self.attacker, "surrogate") else self.attacker  # type: ignore

    def score_attack_image(self, outputs: Dict[str, torch.Tensor], image: torch.Tensor):
        """EVALUATION ONLY: the attacker's render of an eval view against its ground truth."""
        attack = outputs["attack_rgb"]
        metrics = dict(self.split_model.image_metrics(attack, image, "attack_"))
        metrics.update(leakage_metrics(attack, image, "attack_"))
        return metrics, {"attack": torch.cat([image, outputs["rgb"], attack], dim=1)}

    def run_attacker(self, step: int) -> None:
        """After the victim's step: the attacker processes what the server received."""
        start = time.perf_counter()
        for view in self._received:
            self.surrogate.observe(view)
        self._received.clear()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.attack_seconds += time.perf_counter() - start
        self.attack_steps += 1
        if step % 50 == 0:
            for key, value in self.surrogate.last_stats.items():
                writer.put_scalar(name=f"Attack/{key}", scalar=value, step=step)
            writer.put_scalar(name="Attack/seconds_per_step", scalar=self.attack_seconds / self.attack_steps, step=step)

    def replay_once(self) -> float:
        """Attacker-only replay epochs after training (run once); returns the seconds they took."""
        if getattr(self, "_replay_seconds", None) is None:
            start = time.perf_counter()
            self.surrogate.run_replay()
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
            "attacker_steps": int(self.surrogate.step_count),
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
            dummy = self.surrogate.dummy[int(idx), : gt.shape[0], : gt.shape[1]].detach().cpu()
            scores.append(leakage_metrics(dummy, gt, "dummy_"))
            rows.append(torch.cat([gt, dummy], dim=1))
        save_image_grid(rows, folder / "dummies_gt_vs_dummy.png")
        return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        callbacks = super().get_training_callbacks(attrs)
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.run_attacker,
                                          update_every_num_iters=1))
        callbacks.insert(0, TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self.finish_attack))
        return callbacks
