"""The split methods' trainer: nerfstudio's Trainer, plus the run facts the client's defense is built with,
and a final checkpoint that holds what after-training callbacks (the attacker's last phase) did."""

from __future__ import annotations

from typing import Literal

from nerfstudio.engine.callbacks import TrainingCallbackLocation
from nerfstudio.engine.trainer import Trainer

from s2nerf_ns.integration.model import SplitNerfModelConfig


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
        super().setup(test_mode=test_mode)

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
