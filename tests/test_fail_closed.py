"""A privacy tool fails closed (issue 21): no defense knob silently ignored, no noisy kind without noise, an
epsilon that is a number or null with a reason, resumes that keep the defense exactly, and one line for the
trainer's bad inputs (``--load-dir``, ``--machine.seed``, ``--output-dir``, Ctrl-C)."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.defenses.residual import per_pixel_privacy
from s2nerf_ns.errors import InputError, one_line_error

sys.path.insert(0, str(Path(__file__).parent))
from test_errors import refused  # noqa: E402  (ns-train's one-line refusal, exit status 2)

FLAG = "--pipeline.model.defense."


# ------------------------------------------------------------------------------------------ item 1: fail closed
@pytest.mark.parametrize("kwargs, expected", [
    (dict(noise_scale=0.5, decay_ratio=1e-2),
     [f"{FLAG}noise-scale 0.5 and {FLAG}decay-ratio 0.01 are knobs of {FLAG}kind s2nerf", "the kind is 'none'",
      f"add {FLAG}kind s2nerf"]),
    (dict(residual_noise_std=0.2), [f"{FLAG}residual-noise-std 0.2 is a knob of {FLAG}kind residual-noise"]),
    (dict(kind="s2nerf", max_norm_scale=2.0), [f"{FLAG}max-norm-scale 2.0 is a knob of {FLAG}kind max-norm",
                                               "the kind is 's2nerf'"]),
    (dict(kind="max-norm", label_noise_std=0.3, noise_floor=0.1), ["are knobs of different kinds", f"{FLAG}kind"]),
    (dict(kind="s2nerf", partial_noise_scale=3.0), [f"{FLAG}partial-noise-scale 3.0", f"{FLAG}variant partial"]),
    (dict(kind="s2nerf", variant="partial", mix_probability=0.2), [f"{FLAG}mix-probability 0.2", f"{FLAG}variant mix"]),
])
def test_a_knob_the_kind_ignores_is_an_error_naming_the_kind(kwargs, expected):
    with pytest.raises(InputError) as info:
        DefenseConfig(**kwargs)
    for text in expected:
        assert text in str(info.value), str(info.value)


@pytest.mark.parametrize("kwargs, knob", [
    (dict(kind="s2nerf", noise_scale=0.0), "noise-scale"),
    (dict(kind="s2nerf", variant="partial", partial_noise_scale=0.0), "partial-noise-scale"),
    (dict(kind="s2nerf", variant="mix", partial_noise_scale=0.0, mix_probability=0.0), "partial-noise-scale"),
    (dict(kind="residual-noise", residual_noise_std=0.0), "residual-noise-std"),
    (dict(kind="max-norm", max_norm_scale=0.0), "max-norm-scale"),
    (dict(kind="label-noise", label_noise_std=0.0), "label-noise-std"),
])
def test_a_noisy_kind_without_noise_is_an_error(kwargs, knob):
    with pytest.raises(InputError, match=f"{FLAG}{knob} 0.0: the .* defense would add no noise.*{FLAG}kind none"):
        DefenseConfig(**kwargs)


def test_presets_and_their_kinds_still_build():
    """What the method presets and the README's examples build (knobs of the chosen kind, at any value)."""
    from s2nerf_ns.integration.methods import METHODS, method_config

    for name in METHODS:
        method_config(name)
    DefenseConfig(kind="s2nerf", noise_scale=0.5, decay_ratio=1e-2, variant="mix", mix_probability=0.2,
                  partial_noise_scale=3.0)
    DefenseConfig(kind="residual-noise", residual_noise_std=0.2, residual_client="noisy", dp_delta=1e-6)
    DefenseConfig(kind="none", nonfinite="sanitize")  # the NaN/Inf policy applies to every kind


def test_ns_train_refuses_knobs_without_kind_and_zero_noise_in_one_line(capsys):
    line = refused(["splitnerf", f"{FLAG}noise-scale", "0.5", f"{FLAG}decay-ratio", "1e-2"], capsys)
    assert f"{FLAG}noise-scale 0.5" in line and f"add {FLAG}kind s2nerf" in line
    line = refused(["splitnerf", f"{FLAG}kind", "residual-noise", f"{FLAG}residual-noise-std", "0"], capsys)
    assert f"{FLAG}residual-noise-std 0.0" in line and "no noise" in line
    line = refused(["splitnerf", "--pipeline.model.cut-depth", "9"], capsys)
    assert "--pipeline.model.cut-depth 9 is impossible" in line and "cut_depth" not in line
    line = refused(["s2nerf", f"{FLAG}noise-scale", "-1"], capsys)
    assert f"{FLAG}noise-scale -1.0: must be" in line and "noise_scale" not in line


def test_epsilon_is_a_number_or_null_with_a_reason():
    report = per_pixel_privacy(0.0, 64, 24 * 24 * 16, 10, 1e-5)
    assert report["epsilon"] is None and "no noise" in report["epsilon_reason"]
    assert report["epsilon_if_sampling_hidden"] is None and report["epsilon_if_sampling_hidden_reason"]
    json.dumps(report, allow_nan=False)  # valid JSON, no Infinity
    finite = per_pixel_privacy(0.3 / math.sqrt(3), 64, 24 * 24 * 16, 10, 1e-5)
    assert math.isfinite(finite["epsilon"]) and "epsilon_reason" not in finite
    assert per_pixel_privacy(0.0, 64, 9216, 0, 1e-5)["epsilon"] == 0.0  # nothing released yet


# ------------------------------------------------------------------------------------------ item 2: resume
STEPS = 6
DEFENSES = {
    "s2nerf": DefenseConfig(kind="s2nerf", noise_scale=1.2, decay_ratio=1e-2),  # decays over the run's 6 steps
    "residual-noise": DefenseConfig(kind="residual-noise", residual_noise_std=0.3),
}


def _seed_everything(seed: int = 42) -> None:
    """What ns-train does before building a trainer (scripts/train.py: _set_random_seed)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _setup(out_dir: Path, defense: DefenseConfig, load_dir=None):
    from helpers import tiny_config

    config = tiny_config("splitnerf", out_dir, steps=STEPS, rays=64)
    config.pipeline.model.defense = defense
    config.load_dir = load_dir
    _seed_everything()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    sent, sigma = {}, {}

    def observe(view):
        sent[view.step] = view.grad.detach().clone()
        stats = trainer.pipeline.model.channel.defense.last_stats
        sigma[view.step] = (stats["noise_std"], stats["grad_row_norm_max"])

    trainer.pipeline.model.channel.add_observer(observe)
    return trainer, sent, sigma


def _interrupt_after(trainer, after: int) -> None:
    def press_ctrl_c(step: int) -> None:
        if step == after:
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # the trainer's handler
            os.kill(os.getpid(), signal.SIGINT)

    trainer.callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], press_ctrl_c))


def _params(trainer):
    return {k: v.detach().clone() for k, v in trainer.pipeline.model.named_parameters()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    """By defense: an uninterrupted run, the same run stopped by Ctrl-C after step 2, and its resume."""
    return {kind: _interrupted_and_resumed(kind, tmp_path_factory.mktemp(kind)) for kind in sorted(DEFENSES)}


def _interrupted_and_resumed(kind: str, root: Path) -> dict:
    whole, whole_sent, whole_sigma = _setup(root / "whole", DEFENSES[kind])
    whole.train()
    first, first_sent, first_sigma = _setup(root / "first", DEFENSES[kind])
    _interrupt_after(first, 2)
    with pytest.raises(SystemExit) as stopped:
        first.train()
    rest, rest_sent, rest_sigma = _setup(root / "rest", DEFENSES[kind], load_dir=first.checkpoint_dir)
    rest.train()
    return dict(kind=kind, whole=whole, first=first, rest=rest, code=stopped.value.code,
                sent=(whole_sent, {**first_sent, **rest_sent}), sigma=(whole_sigma, {**first_sigma, **rest_sigma}),
                steps=(sorted(first_sent), sorted(rest_sent)))


@pytest.mark.parametrize("kind", sorted(DEFENSES))
def test_ctrl_c_saves_a_checkpoint_and_the_resumed_run_trains_up_to_the_total(runs, kind):
    resumed = runs[kind]
    assert resumed["code"] == 130
    assert [p.name for p in resumed["first"].checkpoint_dir.glob("*.ckpt")] == ["step-000000002.ckpt"]
    assert resumed["steps"] == ([0, 1, 2], [3, 4, 5])  # --max-num-iterations is the run's total length
    assert [p.name for p in resumed["rest"].checkpoint_dir.glob("*.ckpt")] == ["step-000000005.ckpt"]


@pytest.mark.parametrize("kind", sorted(DEFENSES))
def test_a_resumed_run_applies_exactly_the_noise_of_an_uninterrupted_one(runs, kind):
    resumed = runs[kind]
    (whole_sent, joined_sent), (whole_sigma, joined_sigma) = resumed["sent"], resumed["sigma"]
    assert sorted(whole_sent) == sorted(joined_sent) == list(range(STEPS))
    for step in range(STEPS):
        assert torch.equal(whole_sent[step], joined_sent[step]), step  # the gradients the server received
        assert whole_sigma[step] == joined_sigma[step], step
    if resumed["kind"] == "s2nerf":  # sigma_t = c max||g_t|| r^(t/T), T the run's total: the schedule kept decaying
        for step in range(STEPS):
            sigma, top = joined_sigma[step]
            assert sigma == pytest.approx(1.2 * top * 1e-2 ** (step / STEPS), rel=1e-5), step
        assert resumed["rest"].pipeline.model.channel.defense.schedule_steps == STEPS
    whole, rest = _params(resumed["whole"]), _params(resumed["rest"])
    for name, value in whole.items():
        assert torch.equal(rest[name], value), name


def test_a_resumed_run_reports_exactly_the_epsilon_of_an_uninterrupted_one(runs):
    resumed = runs["residual-noise"]  # the kind with an accountant
    whole = json.loads((resumed["whole"].base_dir / "privacy.json").read_text())
    rest = json.loads((resumed["rest"].base_dir / "privacy.json").read_text())
    assert rest["steps"] == whole["steps"] == STEPS
    assert rest["epsilon"] == whole["epsilon"] and isinstance(whole["epsilon"], float)
    assert not (resumed["first"].base_dir / "privacy.json").exists()  # an interrupted run reports nothing yet
    counters = resumed["rest"].pipeline.model.state_dict()
    assert int(counters["defense_counters.releases"]) == STEPS
    # ns-eval loads the final checkpoint into a fresh pipeline: the accountant's counters come with it
    from types import SimpleNamespace

    from nerfstudio.utils.eval_utils import eval_load_checkpoint

    fresh = resumed["first"].pipeline  # built like ns-eval's, its own counters at 3 releases
    eval_load_checkpoint(SimpleNamespace(load_dir=resumed["rest"].checkpoint_dir, load_step=None), fresh)
    assert fresh.model.channel.defense.privacy()["epsilon"] == whole["epsilon"]


def test_ctrl_c_prints_one_line_with_the_resume_command(tmp_path, capsys, one_thread):
    trainer, *_ = _setup(tmp_path, DEFENSES["s2nerf"])
    _interrupt_after(trainer, 0)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        trainer.train()
    lines = [line for line in capsys.readouterr().err.splitlines() if "interrupted" in line]
    assert len(lines) == 1, lines
    assert f"interrupted after step 0 of {STEPS}" in lines[0]
    assert lines[0].endswith(f"resume with: ns-train splitnerf --load-dir {trainer.checkpoint_dir.resolve()} "
                             f"--max-num-iterations {STEPS} (with the run's other options)")


def test_resume_command_keeps_the_command_line_and_replaces_the_load_flags(monkeypatch, tmp_path):
    from s2nerf_ns.integration.resume import resume_command

    monkeypatch.setattr(sys, "argv", ["/usr/bin/ns-train", "s2nerf", "--load-dir", "old", "--max-num-iterations",
                                      "200", "nerfstudio-data", "--data", "my capture"])
    command = resume_command("s2nerf", 200, tmp_path)
    assert command == (f"ns-train s2nerf --load-dir {tmp_path.resolve()} --max-num-iterations 200 "
                       "nerfstudio-data --data 'my capture'")


# ------------------------------------------------------------------------------------------ item 3: bad inputs
def test_resume_inputs_are_refused_in_one_line_before_anything_is_written(runs, tmp_path, capsys):
    resumed = runs["s2nerf"]
    ckpt_dir = resumed["first"].checkpoint_dir
    out = tmp_path / "outputs"
    base = ["splitnerf", "--output-dir", str(out), f"{FLAG}kind", "s2nerf", f"{FLAG}decay-ratio", "0.01"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "file").write_text("not a folder")
    other = tmp_path / "other" / "nerfstudio_models"
    other.mkdir(parents=True)
    (other.parent / "config.yml").write_text("!!python/object:nerfstudio.engine.trainer.TrainerConfig\n"
                                             "method_name: nerfacto\n")
    torch.save({"step": 1, "pipeline": {}}, other / "step-000000001.ckpt")
    older = tmp_path / "older" / "nerfstudio_models"  # a split run's checkpoint without the resume state
    older.mkdir(parents=True)
    (older.parent / "config.yml").write_text("method_name: splitnerf\n")
    torch.save({"step": 1, "pipeline": {}}, older / "step-000000001.ckpt")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    data = (ckpt_dir / "step-000000002.ckpt").read_bytes()
    (truncated / "step-000000002.ckpt").write_bytes(data[: len(data) // 2])
    cases = [
        (base + ["--load-dir", str(empty)], [f"--load-dir {empty}: no checkpoint"]),
        (base + ["--load-dir", str(tmp_path / "nowhere")], ["no such folder"]),
        (base + ["--load-dir", str(other)], ["a checkpoint of nerfacto", f"ns-train nerfacto --load-dir {other}"]),
        (base + ["--load-dir", str(truncated)], [f"--load-dir {truncated}", "truncated"]),
        (base + ["--load-dir", str(older)], ["no split-run state", "could not be defended exactly"]),
        (base + ["--load-checkpoint", str(tmp_path / "none.ckpt")], ["--load-checkpoint", "no such file"]),
        (base + ["--load-dir", str(ckpt_dir), "--load-step", "7"], ["--load-step 7", "it has: 2"]),
        (base + ["--load-dir", str(ckpt_dir), "--max-num-iterations", "3"],
         ["--max-num-iterations 3", "already holds steps 0..2", "total length"]),
        (base + ["--load-dir", str(ckpt_dir), "--max-num-iterations", "10"],
         ["--max-num-iterations 10", f"decays over {STEPS} steps", f"{FLAG}decay-steps"]),
        (["splitnerf", "--output-dir", str(out), "--load-dir", str(ckpt_dir), "--max-num-iterations", str(STEPS)],
         ["trained with the defense (kind s2nerf", "asks for (kind none)", "keeps its defense"]),
        (["splitnerf", "--machine.seed", "-1"], ["--machine.seed -1"]),
        (["splitnerf", "--output-dir", str(empty / "file" / "sub")], ["--output-dir", "is a file, not a folder"]),
    ]
    for args, expected in cases:
        line = refused(args, capsys)
        for text in expected:
            assert text in line, (args, line)
    assert not out.exists()


def test_a_truncated_checkpoint_is_named_for_ns_eval(runs, tmp_path):
    """ns-eval loads through nerfstudio's eval_load_checkpoint: its error is printed as one line naming the file."""
    resumed = runs["s2nerf"]
    from types import SimpleNamespace

    from nerfstudio.utils.eval_utils import eval_load_checkpoint

    data = (resumed["first"].checkpoint_dir / "step-000000002.ckpt").read_bytes()
    path = tmp_path / "step-000000002.ckpt"
    for cut in (len(data) // 2, 100):
        path.write_bytes(data[:cut])
        with pytest.raises(Exception) as info:
            eval_load_checkpoint(SimpleNamespace(load_dir=tmp_path, load_step=None), resumed["whole"].pipeline)
        line = one_line_error(info.value)
        assert line is not None and str(path) in line and "truncated" in line, (type(info.value), info.value)
    path.unlink()
    with pytest.raises(Exception) as info:
        eval_load_checkpoint(SimpleNamespace(load_dir=tmp_path, load_step=None), resumed["whole"].pipeline)
    line = one_line_error(info.value)
    assert line is not None and f"{tmp_path}: no checkpoint" in line


def test_a_checkpoint_of_another_model_is_refused_at_load(runs, tmp_path):
    """Same method, other --pipeline.model options: the tensors do not fit; one line, no partial load."""
    resumed = runs["s2nerf"]
    from helpers import tiny_config

    config = tiny_config("splitnerf", tmp_path, steps=STEPS, rays=64)
    config.pipeline.model.defense = DEFENSES["s2nerf"]
    config.pipeline.model.server.hidden_dim = 8
    config.load_dir = resumed["first"].checkpoint_dir
    trainer = config.setup(local_rank=0, world_size=1)
    with pytest.raises(InputError, match="does not fit this run's model"):
        trainer.setup()


def test_an_output_dir_nerfstudio_cannot_write_is_one_line(tmp_path):
    """nerfstudio's default --output-dir is not checked at configuration time (the presets are built at import):
    if ns-train's own save_config fails, the printer names --output-dir."""
    from helpers import tiny_config

    (tmp_path / "file").write_text("not a folder")
    config = tiny_config("splitnerf", tmp_path, steps=STEPS)  # sized configs are checked: set it as a preset is
    config.output_dir = tmp_path / "file" / "sub"
    with pytest.raises(OSError) as info:
        config.save_config()
    line = one_line_error(info.value)
    assert line is not None and line.startswith("--output-dir: cannot write the run folder"), line
