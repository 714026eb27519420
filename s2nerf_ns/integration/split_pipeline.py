"""Pipeline for split training: hands the batch's ray indices to the model and writes the transcript."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional, Type

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils import profiler
from torch.cuda.amp.grad_scaler import GradScaler

from s2nerf_ns.errors import InputError, data_setup
from s2nerf_ns.integration.model import RAY_INDICES_KEY, SplitNerfModel, SplitNerfModelConfig
from s2nerf_ns.protocol.cut import density_mlp_dims
from s2nerf_ns.protocol.view_recorder import ServerViewRecorder, bytes_per_ray, rays_within_budget


@dataclass
class SplitPipelineConfig(VanillaPipelineConfig):
    """VanillaPipeline + the channel transcript written into the run folder."""

    _target: Type = field(default_factory=lambda: SplitPipeline)
    transcript_every: int = 500
    """Write transcript.json / transcript.csv into the run folder every N steps (and at the end)."""
    record_server_view: bool = False
    """Keep what the server receives (subsampled ServerViews: rays, bins, h, the defended gradient, the defense's
    public settings) in <run>/server_view/, so that attacks can be replayed offline (s2nerf-audit)."""
    server_view_max_mb: float = 256.0
    """record-server-view: size budget of the whole run's record in MiB; the rays kept per step follow from it."""
    server_view_every: int = 1
    """record-server-view: keep every N-th training step."""

    def server_view_rays(self, steps: int) -> int:
        """Rays kept per recorded step within the budget; an InputError (naming the flags) when not even one fits."""
        model = self.model
        rays = getattr(self.datamanager, "train_num_rays_per_batch", 1)
        if not isinstance(model, SplitNerfModelConfig):
            return 0
        arch = model.server
        dim = density_mlp_dims(arch.num_levels * arch.features_per_level, arch.hidden_dim,
                               arch.num_density_layers, 1 + arch.geo_feat_dim)[arch.cut_depth]
        kept = rays_within_budget(self.server_view_max_mb, steps, self.server_view_every, arch.num_samples, dim, rays)
        if kept < 1:
            need = -(-steps // self.server_view_every) * bytes_per_ray(arch.num_samples, dim) / 2**20
            raise InputError(f"--pipeline.server-view-max-mb {self.server_view_max_mb:g}: too small to keep even one ray "
                             f"per recorded step of {steps} steps (needs {need:.1f} MiB); raise it or "
                             "--pipeline.server-view-every")
        return kept

    def __post_init__(self) -> None:
        datamanager = self.datamanager
        for name in ("train_num_rays_per_batch", "eval_num_rays_per_batch"):
            value = getattr(datamanager, name, 1)
            if isinstance(value, int) and value < 1:
                raise InputError(f"--pipeline.datamanager.{name.replace('_', '-')} {value}: "
                                 "give at least 1 ray per batch (the reference uses 4096)")
        if self.transcript_every < 1:
            raise InputError(f"--pipeline.transcript-every {self.transcript_every}: give at least 1 step")
        if self.server_view_every < 1:
            raise InputError(f"--pipeline.server-view-every {self.server_view_every}: give at least 1 step")
        if not self.server_view_max_mb > 0:
            raise InputError(f"--pipeline.server-view-max-mb {self.server_view_max_mb}: give a positive size in MiB")


class SplitPipeline(VanillaPipeline):
    config: SplitPipelineConfig
    run_dir: Optional[Path] = None
    view_recorder: Optional[ServerViewRecorder] = None

    def __init__(self, config: SplitPipelineConfig, device: str, test_mode: Literal["test", "val", "inference"] = "val",
                 world_size: int = 1, local_rank: int = 0, grad_scaler: Optional[GradScaler] = None):
        remote = isinstance(config.model, SplitNerfModelConfig) and bool(config.model.server_address)
        if remote:  # Hello below, with the training images' size (a copy: the run's config is not changed)
            config = dataclasses.replace(config, model=dataclasses.replace(config.model, hello_by_pipeline=True))
        # A folder, transforms.json or image that nerfstudio's dataparser cannot load: one line naming the file.
        with data_setup("the training data"):
            super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        if remote:
            cameras = self.datamanager.train_dataset.cameras
            self.split_model.hello(image_size=(int(cameras.height.max()), int(cameras.width.max())))

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

    def start_server_view_record(self, steps: int) -> None:
        """SERVER: keep what it receives in <run>/server_view/ (an observer on the channel, like any attacker)."""
        model = self.split_model
        if self.run_dir is None or not model.config.split or self.view_recorder is not None:
            return
        rays = self.config.server_view_rays(steps)
        meta = {"steps": steps, "num_samples": model.config.server.num_samples, "dim": model.client_head.in_dim,
                "max_mb": self.config.server_view_max_mb, "head": model.client_architecture(),
                "background_color": model.config.background_color}
        self.view_recorder = ServerViewRecorder(self.run_dir / "server_view", rays, self.config.server_view_every,
                                                seed=model.config.run_seed or 0, meta=meta)
        model.channel.add_observer(self.view_recorder)

    def flush_server_view(self, step: int) -> None:
        if self.view_recorder is not None:
            self.view_recorder.flush()

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        trainer = getattr(attrs, "trainer", None)
        if trainer is not None:
            self.run_dir = trainer.base_dir
            if self.config.record_server_view:
                self.start_server_view_record(trainer.config.max_num_iterations)
        callbacks = super().get_training_callbacks(attrs)
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.write_transcript,
                                          update_every_num_iters=self.config.transcript_every))
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self.write_transcript))
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self.flush_server_view))
        return callbacks
