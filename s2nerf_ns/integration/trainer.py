"""The split methods' trainer: nerfstudio's Trainer, plus the run facts the client's defense is built with,
and a final checkpoint that holds what after-training callbacks (the attacker's last phase) did."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Type

from nerfstudio.engine.callbacks import TrainingCallbackLocation
from nerfstudio.engine.trainer import Trainer, TrainerConfig

from s2nerf_ns.data.checks import check_data
from s2nerf_ns.data.leaked_views import LeakedViewsDataParserConfig
from s2nerf_ns.errors import DataSetupError, InputError
from s2nerf_ns.integration.model import SplitNerfModelConfig


@dataclass
class SplitTrainerConfig(TrainerConfig):
    """TrainerConfig of the split methods. tyro builds it from the command line before ``ns-train`` writes
    anything, so the inputs that can be checked without loading data are checked here (one line each)."""

    _target: Type = field(default_factory=lambda: SplitTrainer)

    def __post_init__(self) -> None:
        if self.max_num_iterations < 1:
            raise InputError(f"--max-num-iterations {self.max_num_iterations}: a run must train at least 1 step "
                             "(a run that does not train would save an untrained checkpoint)")
        datamanager = self.pipeline.datamanager
        dataparser = getattr(datamanager, "dataparser", None)
        # ns-train's --data, then the datamanager's, then the dataparser's own (nerfstudio's precedence)
        data = self.data if self.data is not None else getattr(datamanager, "data", None)
        if dataparser is not None:
            check_data(dataparser, data)
        leaked = getattr(self.pipeline, "leaked", None)
        if isinstance(leaked, LeakedViewsDataParserConfig) and dataparser is not None:
            leaked.check_against(dataparser, data)


class SplitTrainer(Trainer):
    """Trainer for the split methods (``_target`` of their TrainerConfig)."""

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        """Hand the run's seed and length to the model config before the pipeline (and the defense) is built,
        and save them in the run's ``config.yml`` so that ``ns-eval`` rebuilds the same defense."""
        model = self.config.pipeline.model
        if isinstance(model, SplitNerfModelConfig):
            model.run_seed = self.config.machine.seed
            model.run_steps = self.config.max_num_iterations
            if self.local_rank == 0:
                self.config.save_config()
        try:
            super().setup(test_mode=test_mode)
        except (InputError, DataSetupError):
            self._remove_untrained_run_folder()  # ns-train wrote config.yml before the data could be checked
            raise

    def _remove_untrained_run_folder(self) -> None:
        """A run whose data failed to load leaves no folder behind (only when it holds nothing but config.yml)."""
        folder = Path(self.base_dir)
        if self.local_rank != 0 or not folder.is_dir() or {p.name for p in folder.iterdir()} - {"config.yml"}:
            return
        (folder / "config.yml").unlink(missing_ok=True)
        folder.rmdir()

    def _after_train(self) -> None:
        """Run the AFTER_TRAIN callbacks *before* the final checkpoint (nerfstudio runs them after it), so that
        ``ns-eval``, ``ns-render`` and the viewer load the final attacker."""
        after = TrainingCallbackLocation.AFTER_TRAIN
        for callback in self.callbacks:
            callback.run_callback_at_location(step=self.step, location=after)
        all_callbacks = self.callbacks
        self.callbacks = [cb for cb in all_callbacks if after not in cb.where_to_run]
        try:
            super()._after_train()
        finally:
            self.callbacks = all_callbacks
