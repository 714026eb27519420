"""Pipeline for split training: hands the batch's ray indices to the model and writes the transcript."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional, Type

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils import profiler
from torch.cuda.amp.grad_scaler import GradScaler

from s2nerf_ns.errors import InputError, data_setup
from s2nerf_ns.integration.model import RAY_INDICES_KEY, SplitNerfModel


@dataclass
class SplitPipelineConfig(VanillaPipelineConfig):
    """VanillaPipeline + the channel transcript written into the run folder."""

    _target: Type = field(default_factory=lambda: SplitPipeline)
    transcript_every: int = 500
    """Write transcript.json / transcript.csv into the run folder every N steps (and at the end)."""

    def __post_init__(self) -> None:
        datamanager = self.datamanager
        for name in ("train_num_rays_per_batch", "eval_num_rays_per_batch"):
            value = getattr(datamanager, name, 1)
            if isinstance(value, int) and value < 1:
                raise InputError(f"--pipeline.datamanager.{name.replace('_', '-')} {value}: "
                                 "give at least 1 ray per batch (the reference uses 4096)")
        if self.transcript_every < 1:
            raise InputError(f"--pipeline.transcript-every {self.transcript_every}: give at least 1 step")


class SplitPipeline(VanillaPipeline):
    config: SplitPipelineConfig
    run_dir: Optional[Path] = None

    def __init__(self, config: SplitPipelineConfig, device: str, test_mode: Literal["test", "val", "inference"] = "val",
                 world_size: int = 1, local_rank: int = 0, grad_scaler: Optional[GradScaler] = None):
        # A folder, transforms.json or image that nerfstudio's dataparser cannot load: one line naming the file.
        with data_setup("the training data"):
            super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)

    @property
    def split_model(self) -> SplitNerfModel:
        assert isinstance(self.model, SplitNerfModel), "the split pipelines need a SplitNerfModel"
        return self.model

    @profiler.time_function
    def get_train_loss_dict(self, step: int):
        ray_bundle, batch = self.datamanager.next_train(step)
        # The client sends its rays; the pixel each ray belongs to is part of that message.
        ray_bundle.metadata[RAY_INDICES_KEY] = batch["indices"].to(ray_bundle.origins.device)
        model_outputs = self._model(ray_bundle)
        metrics_dict = self.model.get_metrics_dict(model_outputs, batch)
        loss_dict = self.model.get_loss_dict(model_outputs, batch, metrics_dict)
        return model_outputs, loss_dict, metrics_dict

    def write_transcript(self, step: int) -> None:
        if self.run_dir is not None and self.split_model.config.split:
            self.split_model.channel.transcript.write(self.run_dir)

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        trainer = getattr(attrs, "trainer", None)
        if trainer is not None:
            self.run_dir = trainer.base_dir
        callbacks = super().get_training_callbacks(attrs)
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.write_transcript,
                                          update_every_num_iters=self.config.transcript_every))
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self.write_transcript))
        return callbacks
