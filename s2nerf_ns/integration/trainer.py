"""The split methods' trainer: nerfstudio's Trainer, plus the run facts the client's defense is built with,
a final checkpoint that holds what after-training callbacks (the attacker's last phase) did, resumes that keep
the defense exactly (:mod:`s2nerf_ns.integration.resume`), and Ctrl-C that saves a checkpoint and says how to
resume."""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Type

import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils import writer

from s2nerf_ns.data.checks import check_data
from s2nerf_ns.data.leaked_views import LeakedViewsDataParserConfig
from s2nerf_ns.errors import DataSetupError, InputError
from s2nerf_ns.integration import resume
from s2nerf_ns.integration.model import SplitNerfModelConfig
from s2nerf_ns.transport.client import server_schedule

INTERRUPTED_EXIT = 130
"""Exit status of a run stopped by Ctrl-C (after its checkpoint was saved)."""


@dataclass
class SplitTrainerConfig(TrainerConfig):
    """TrainerConfig of the split methods. tyro builds it from the command line before ``ns-train`` writes
    anything, so the inputs that can be checked without loading data are checked here (one line each)."""

    _target: Type = field(default_factory=lambda: SplitTrainer)

    def __post_init__(self) -> None:
        if self.max_num_iterations < 1:
            raise InputError(f"--max-num-iterations {self.max_num_iterations}: a run must train at least 1 step "
                             "(a run that does not train would save an untrained checkpoint)")
        if not 0 <= self.machine.seed < 2**32:
            raise InputError(f"--machine.seed {self.machine.seed}: a seed must be in 0 .. 2**32 - 1 (numpy, torch "
                             "and the defense's noise are seeded from it)")
        if Path(self.output_dir) != Path("outputs"):  # not nerfstudio's default: presets are built at import time
            check_output_dir(self.output_dir)
        resume.check_resume(self)
        if getattr(self.pipeline, "record_server_view", False):  # the record's budget holds a ray per step
            self.pipeline.server_view_rays(self.max_num_iterations)
        datamanager = self.pipeline.datamanager
        dataparser = getattr(datamanager, "dataparser", None)
        # ns-train's --data, then the datamanager's, then the dataparser's own (nerfstudio's precedence)
        data = self.data if self.data is not None else getattr(datamanager, "data", None)
        if dataparser is not None:
            check_data(dataparser, data)
        leaked = getattr(self.pipeline, "leaked", None)
        if isinstance(leaked, LeakedViewsDataParserConfig) and dataparser is not None:
            leaked.check_against(dataparser, data)


def check_output_dir(output_dir: Path) -> None:
    """The run folder can be created under ``--output-dir`` (checked on its nearest existing ancestor)."""
    path = Path(output_dir).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise InputError(f"--output-dir {output_dir}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--output-dir {output_dir}: cannot create the run folder there ({existing} is not "
                         "writable); choose a folder you can write to")


class SplitTrainer(Trainer):
    """Trainer for the split methods (``_target`` of their TrainerConfig).

    ``--max-num-iterations`` is the run's total length, also when resuming (``--load-dir``): the resumed run
    trains the steps after the checkpoint up to it, with the defense's noise schedule, generators and accountant
    restored (:mod:`s2nerf_ns.integration.resume`)."""

    _interrupted = False
    _completed_step = -1
    _previous_sigint = None

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        """Hand the run's seed and length to the model config before the pipeline (and the defense) is built,
        and save them in the run's ``config.yml`` so that ``ns-eval`` rebuilds the same defense.

        This hand-over (``run_seed``, ``run_steps``, and with two processes the server's schedule, which follows
        the optimizers) and :meth:`train`'s count of the steps after a checkpoint are the one place where the
        package changes a config after it is built (tests/test_config_structure.py holds every other file to it):
        the values exist only once the trainer has the whole command line."""
        model = self.config.pipeline.model
        split = isinstance(model, SplitNerfModelConfig)
        if split:  # checked again before anything is written: a config changed in code skipped tyro's checks
            model.defense.validate()
        resume.check_resume(self.config)
        if split:
            model.run_seed = self.config.machine.seed
            model.run_steps = self.config.max_num_iterations
            if model.server_address:  # two processes: s2nerf-server follows this schedule (sent in Hello)
                model.remote.server_schedule = server_schedule(self.config.optimizers)
            if self.local_rank == 0:
                self.config.save_config()
        try:
            super().setup(test_mode=test_mode)
        except (InputError, DataSetupError):
            self._remove_untrained_run_folder()  # ns-train wrote config.yml before the data could be checked
            raise
        self.callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                                               lambda step: setattr(self, "_completed_step", step)))

    def _remove_untrained_run_folder(self) -> None:
        """A run whose data failed to load leaves no folder behind (only when it holds nothing but config.yml)."""
        folder = Path(self.base_dir)
        if self.local_rank != 0 or not folder.is_dir() or {p.name for p in folder.iterdir()} - {"config.yml"}:
            return
        (folder / "config.yml").unlink(missing_ok=True)
        folder.rmdir()

    # ------------------------------------------------------------------ resume
    def _load_checkpoint(self) -> None:
        """nerfstudio's checkpoint loading, with one-line errors (no checkpoint, truncated, another method's or
        another model's), and the split run's state restored: noise generators, accountant, global RNGs."""
        path = resume.checkpoint_path(self.config)
        if path is None:
            super()._load_checkpoint()
            return
        flag, given = resume.load_flag(self.config)
        state = resume.read_checkpoint(path, flag)
        self._check_fits(state["pipeline"], flag, given)
        self._start_step = int(state["step"]) + 1
        self.pipeline.load_pipeline(state["pipeline"], state["step"])
        self.optimizers.load_optimizers(state["optimizers"])
        if "schedulers" in state and self.config.load_scheduler:
            self.optimizers.load_schedulers(state["schedulers"])
        self.grad_scaler.load_state_dict(state["scalers"])
        saved = state[resume.RESUME_KEY]
        model = self.pipeline.model
        defense = getattr(getattr(model, "channel", None), "defense", None)
        if defense is not None:
            defense.load_generator_states(saved["generators"])
        resume.restore_rng(saved["rng"])
        kind = defense.config.kind if defense is not None else "none"
        schedule = f", its noise decaying over {defense.schedule_steps} steps" if kind == "s2nerf" else ""
        print(f"{Path(sys.argv[0]).name}: resuming {self.config.method_name} from {path}: steps "
              f"{self._start_step}..{self.config.max_num_iterations - 1} of {self.config.max_num_iterations} "
              f"(--max-num-iterations is the run's total length); defense {kind}{schedule}, with its noise "
              "generators, accountant and the run's RNG restored", flush=True)

    def _check_fits(self, saved: dict, flag: str, given: Optional[Path]) -> None:
        """The checkpoint's tensors are exactly this pipeline's (else it belongs to another method or options)."""
        ours = self.pipeline.state_dict()
        theirs = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in saved.items()}
        missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        shapes = sorted(k for k in set(ours) & set(theirs)
                        if isinstance(ours[k], torch.Tensor) and tuple(ours[k].shape) != tuple(theirs[k].shape))
        if missing or extra or shapes:
            example = (missing + extra + shapes)[0]
            raise InputError(f"{flag} {given}: the checkpoint does not fit this run's model ({len(missing)} tensors "
                             f"missing, {len(extra)} unexpected, {len(shapes)} of another shape, e.g. {example}): it "
                             f"was written by another method or other --pipeline.model options; resume with those")

    def save_checkpoint(self, step: int) -> None:
        """nerfstudio's checkpoint plus the split run's state (:data:`resume.RESUME_KEY`), written to a temporary
        file and renamed, so that an interrupted save never leaves a truncated checkpoint."""
        if self.local_rank != 0:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        partial = path.with_name(path.name + ".partial")
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        defense = getattr(getattr(self.pipeline.model, "channel", None), "defense", None)
        state = {
            "step": step,
            "pipeline": pipeline.state_dict(),  # type: ignore[union-attr]
            "optimizers": {k: v.state_dict() for (k, v) in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for (k, v) in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
            resume.RESUME_KEY: {
                "method": self.config.method_name, "total_steps": self.config_total_steps,
                "defense": defense.public() if defense is not None else {"kind": "none"},
                "generators": defense.generator_states() if defense is not None else {},
                "rng": resume.capture_rng(),
            },
        }
        try:
            torch.save(state, partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        if self.config.save_only_latest_checkpoint:
            for old in self.checkpoint_dir.glob("*.ckpt"):
                if old != path:
                    old.unlink()

    @property
    def config_total_steps(self) -> int:
        """The run's total length (``--max-num-iterations``), also while :meth:`train` runs."""
        return getattr(self, "_total_steps", self.config.max_num_iterations)

    # ------------------------------------------------------------------ training, Ctrl-C
    def train(self) -> None:
        """Train up to ``--max-num-iterations`` in total (nerfstudio counts the steps after the checkpoint). The
        first Ctrl-C stops after the current step, saves a checkpoint and prints how to resume (exit 130); a second
        one aborts at once."""
        self._total_steps = self.config.max_num_iterations
        self._completed_step = self._start_step - 1
        self.config.max_num_iterations = self._total_steps - self._start_step
        self._install_sigint()
        try:
            super().train()
        finally:
            self.config.max_num_iterations = self._total_steps
            del self._total_steps
            self._restore_sigint()
        if self._interrupted:
            raise SystemExit(INTERRUPTED_EXIT)

    def _install_sigint(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_sigint(signum, frame) -> None:
            self._interrupted = True
            self.stop_training = True
            self._restore_sigint()  # a second Ctrl-C: KeyboardInterrupt, no checkpoint

        self._previous_sigint = signal.signal(signal.SIGINT, on_sigint)

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def _save_interrupted(self) -> None:
        """Ctrl-C: checkpoint the last completed step and print, in one line, the command that resumes the run."""
        prog = Path(sys.argv[0]).name
        step = self._completed_step
        if step < self._start_step:
            print(f"{prog}: interrupted before the first step completed: nothing to save", file=sys.stderr, flush=True)
            return
        self.save_checkpoint(step)
        writer.write_out_storage()
        command = resume.resume_command(self.config.method_name, self.config_total_steps, self.checkpoint_dir)
        print(f"{prog}: interrupted after step {step} of {self.config_total_steps}: checkpoint saved in "
              f"{self.checkpoint_dir}; resume with: {command}", file=sys.stderr, flush=True)

    def _after_train(self) -> None:
        """Run the AFTER_TRAIN callbacks *before* the final checkpoint (nerfstudio runs them after it), so that
        ``ns-eval``, ``ns-render`` and the viewer load the final attacker. After Ctrl-C: only the checkpoint (the
        attacker's last phase and the final reports belong to the finished run)."""
        self._restore_sigint()  # the viewer's "Ctrl-C to quit" is Ctrl-C's own again
        if self._interrupted:
            self._save_interrupted()
            return
        after = TrainingCallbackLocation.AFTER_TRAIN
        for callback in self.callbacks:
            callback.run_callback_at_location(step=self.step, location=after)
        all_callbacks = self.callbacks
        self.callbacks = [cb for cb in all_callbacks if after not in cb.where_to_run]
        try:
            super()._after_train()
        finally:
            self.callbacks = all_callbacks
