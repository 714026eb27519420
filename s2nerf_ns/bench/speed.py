"""Speed benchmark: time per step, rays per second and memory of the split methods, the unsplit twin,
nerfstudio's nerfacto and the attack pipelines, on the same room and the same rays per step.

All trainers live in one process and are stepped in alternating rounds, so ratios compare like with like.
On CUDA every timer start and stop is preceded by ``torch.cuda.synchronize()``; victim and attacker time are
measured apart (the attack pipelines time their attacker, and the evaluator's floor and embedding attack, with
their own synchronised timers, and that time is taken out of the victim's). Memory is per method on CUDA
(peak allocated during its own steps); on the CPU it is the process RSS growth while the method was built
and stepped first, a rough per-method figure.

Time to quality: wall-clock and process CPU time (training steps only, synchronised; held-out evaluation not
counted) for ``s2nerf``, ``s2nerf-plus``, ``s2nerf-central`` and ``nerfacto`` to reach the preset's held-out PSNR on
the same room (``s2nerf-bench speed --ttq-only`` runs only this; its block: s2nerf_ns/bench/ttq_report.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from unittest import mock
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import psutil
import torch

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.engine.callbacks import TrainingCallbackLocation

from s2nerf_ns.bench.common import PRESETS, Preset, checked_provenance, environment, sized_config, with_values
from s2nerf_ns.data.rooms_dataparser import RoomsDataParserConfig
from s2nerf_ns.evaluation.image_metrics import lpips_weights_path, psnr
from s2nerf_ns.integration.methods import method_config

SPLIT_METHODS = ("splitnerf", "s2nerf", "s2nerf-lite", "s2nerf-central", "splitnerf-sma", "splitnerf-ssma")
TTQ_METHODS = ("s2nerf", "s2nerf-plus", "s2nerf-central", "nerfacto")


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def nerfacto_config():
    """nerfstudio's nerfacto on the built-in rooms with a single-process datamanager."""
    from nerfstudio.configs.method_configs import method_configs

    return with_values(method_configs["nerfacto"], {  # a copy: nerfstudio's registered config is left as it is
        "pipeline.datamanager": VanillaDataManagerConfig(dataparser=RoomsDataParserConfig()),
        "pipeline.model.camera_optimizer.mode": "off"})


class Stepper:
    """One set-up trainer that can be advanced step by step, with victim and attacker time separated."""

    def __init__(self, name: str, config) -> None:
        self.name = name
        rss_before = _rss_mib()
        self.trainer = config.setup(local_rank=0, world_size=1)
        self.trainer.setup()
        self.build_rss_mib = _rss_mib() - rss_before
        self.step = 0
        self.times: List[float] = []
        self.attack_times: List[float] = []
        self.memory: List[float] = []

    def advance(self, num_steps: int, record: bool) -> None:
        cuda = torch.cuda.is_available()
        pipeline = self.trainer.pipeline
        for _ in range(num_steps):
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            for cb in self.trainer.callbacks:
                cb.run_callback_at_location(self.step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            self.trainer.train_iteration(self.step)
            attack_before = getattr(pipeline, "attack_seconds", 0.0)
            evaluator_before = getattr(pipeline, "evaluator_seconds", 0.0)
            for cb in self.trainer.callbacks:
                cb.run_callback_at_location(self.step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
            if cuda:
                torch.cuda.synchronize()
            total = time.perf_counter() - start - (getattr(pipeline, "evaluator_seconds", 0.0) - evaluator_before)
            attack = getattr(pipeline, "attack_seconds", 0.0) - attack_before
            if record:
                self.times.append(total - attack)
                self.attack_times.append(attack)
                self.memory.append(torch.cuda.max_memory_allocated() / 2**20 if cuda
                                   else psutil.Process().memory_info().rss / 2**20)
            self.step += 1

    def summary(self, rays: int) -> Dict[str, float]:
        step = statistics.median(self.times)
        out = {"victim_step_ms": 1000 * step, "rays_per_second": rays / step,
               "peak_memory_mib": max(self.memory), "memory_kind": "cuda max allocated" if torch.cuda.is_available()
               else "process RSS (all trainers of this benchmark)", "build_rss_mib": self.build_rss_mib}
        if any(self.attack_times):
            attack = statistics.median(self.attack_times)
            out.update(attacker_step_ms=1000 * attack, attacker_extra_cost=attack / step)
        return out


def preset_is_smoke(preset: Preset) -> bool:
    return preset == PRESETS["smoke"]


def build(name: str, preset: Preset, rays: int, out_dir: Path, suffix: str = "", steps: Optional[int] = None) -> Stepper:
    base = nerfacto_config() if name == "nerfacto" else method_config(name)
    # Timing compares the reference-size models (only the smoke preset shrinks them, to test the plumbing).
    config = sized_config(base, preset, "office", out_dir, f"speed_{name}_{rays}{suffix}",
                          shrink_model=preset_is_smoke(preset))
    config = with_values(config, {"pipeline.datamanager.train_num_rays_per_batch": rays,
                                  "pipeline.datamanager.dataparser.scene": "office",
                                  **({"max_num_iterations": steps} if steps is not None else {})})
    if name == "nerfacto" and not lpips_weights_path().exists():
        # nerfacto builds LPIPS at construction, which downloads AlexNet weights (impossible offline).
        # Timing never evaluates LPIPS, so a stand-in that is never called replaces it while nerfacto is built.
        with mock.patch("torchmetrics.image.lpip.LearnedPerceptualImagePatchSimilarity",
                        lambda **_: torch.nn.Identity()):
            return Stepper(name, config)
    return Stepper(name, config)


def run_time_to_quality(preset_name: str, out_dir: Path, methods: Sequence[str] = TTQ_METHODS,
                        allow_dirty: bool = False) -> dict:
    """Only the time-to-quality part, written to ``out_dir / ttq.json`` with the provenance, the environment and the
    machine's load average before and after (times on a shared machine carry its load; steps do not)."""
    preset = PRESETS[preset_name]
    prov = checked_provenance(allow_dirty)
    out_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    ttq = time_to_quality(preset, out_dir / "runs", methods)
    results = {"preset": preset_name, "rays_per_step": preset.rays, "scene": "office",
               "resolution": preset.resolution, "threshold_psnr": preset.ttq_psnr,
               "model": "shrunk (smoke)" if preset_is_smoke(preset) else "reference size",
               "max_steps": preset.ttq_max_steps, "eval_every": preset.ttq_eval_every,
               "environment": environment(), "provenance": prov,
               "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
               "time_to_quality": ttq}
    (out_dir / "ttq.json").write_text(json.dumps(results, indent=2))
    return results


def run(preset_name: str, out_dir: Path, methods_to_time: Sequence[str] = SPLIT_METHODS + ("nerfacto",),
        rounds: int = 3, steps_per_round: int = 5, warmup: int = 3, ray_counts: Sequence[int] = (),
        ttq_methods: Sequence[str] = TTQ_METHODS, allow_dirty: bool = False) -> dict:
    """Time every method (alternating rounds), the ray scaling and time to quality into ``out_dir``; refused
    before anything is written from a git checkout with uncommitted changes unless ``allow_dirty``."""
    preset = PRESETS[preset_name]
    prov = checked_provenance(allow_dirty)
    out_dir.mkdir(parents=True, exist_ok=True)
    steppers = [build(m, preset, preset.rays, out_dir / "runs") for m in methods_to_time]
    for s in steppers:
        s.advance(warmup, record=False)
    for _ in range(rounds):  # alternate, so that drift in machine speed hits every method alike
        for s in steppers:
            s.advance(steps_per_round, record=True)
    table = {s.name: s.summary(preset.rays) for s in steppers}
    central = table.get("s2nerf-central", {}).get("victim_step_ms")
    for name, row in table.items():
        if central:
            row["vs_unsplit_twin"] = row["victim_step_ms"] / central
        if "nerfacto" in table:
            row["vs_nerfacto"] = row["victim_step_ms"] / table["nerfacto"]["victim_step_ms"]
    del steppers
    scaling = {}
    for rays in ray_counts or ((256, 1024, 4096) if torch.cuda.is_available() else (256, 512, 1024)):
        pair = [build(m, preset, rays, out_dir / "runs") for m in ("splitnerf", "s2nerf-central")]
        for s in pair:
            s.advance(warmup, record=False)
        for _ in range(rounds):
            for s in pair:
                s.advance(steps_per_round, record=True)
        scaling[str(rays)] = {s.name: s.summary(rays)["victim_step_ms"] for s in pair}
    clients = {"s2nerf": client_cost(method_config("s2nerf").pipeline.model),
               "s2nerf-lite": client_cost(method_config("s2nerf-lite").pipeline.model)}
    ttq = time_to_quality(preset, out_dir / "runs", ttq_methods) if ttq_methods else {}
    results = {"preset": preset_name, "rays_per_step": preset.rays, "environment": environment(),
               "provenance": prov, "rounds": rounds, "steps_per_round": steps_per_round, "methods": table,
               "ray_scaling_ms": scaling, "client_cost_reference_model": clients, "time_to_quality": ttq}
    (out_dir / "speed.json").write_text(json.dumps(results, indent=2))
    lines = [f"Preset `{preset_name}`, {preset.rays} rays/step, {results['environment']['device']}.", "",
             "| method | step (ms) | rays/s | vs unsplit twin | vs nerfacto | attacker extra cost | peak memory (MiB) | "
             "memory at build (MiB) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in table.items():
        lines.append(f"| {name} | {row['victim_step_ms']:.1f} | {row['rays_per_second']:.0f} | "
                     f"{row.get('vs_unsplit_twin', float('nan')):.2f} | {row.get('vs_nerfacto', float('nan')):.2f} | "
                     f"{row.get('attacker_extra_cost', 0.0):.2f}x | {row['peak_memory_mib']:.0f} | "
                     f"{row['build_rss_mib']:.0f} |")
    if ttq:
        lines += ["", f"Time to {preset.ttq_psnr:.1f} dB held-out PSNR (training wall-clock, evaluation not counted):",
                  "", "| method | reached | seconds | steps | last PSNR |", "|---|---|---|---|---|"]
        for name, row in ttq.items():
            sec = f"{row['seconds']:.1f}" if row["reached"] else f"> {row['curve'][-1]['seconds']:.1f}"
            lines.append(f"| {name} | {'yes' if row['reached'] else 'no'} | {sec} | {row['steps'] or '-'} | "
                         f"{row['final_psnr']:.2f} |")
    lines += ["", "| rays/step | splitnerf (ms) | unsplit twin (ms) |", "|---|---|---|"]
    lines += [f"| {r} | {v['splitnerf']:.1f} | {v['s2nerf-central']:.1f} |" for r, v in scaling.items()]
    lines += ["", "Client share per ray (reference model size, 64 samples/ray):", "",
              "| method | client parameters | client MFLOP/ray | client activations (KiB/ray) | client time (us/ray) |",
              "|---|---|---|---|---|"]
    lines += [f"| {name} | {c['client_parameters']:.0f} | {c['client_flops_per_ray'] / 1e6:.2f} | "
              f"{c['client_activation_bytes_per_ray'] / 1024:.1f} | {c['client_us_per_ray_measured']:.1f} |"
              for name, c in clients.items()]
    (out_dir / "speed.md").write_text("\n".join(lines) + "\n")
    return results


@torch.no_grad()
def heldout_psnr(pipeline) -> float:
    """Mean PSNR of the model's renders of the held-out views (works for split methods and nerfacto)."""
    was_training = pipeline.training
    pipeline.eval()
    values = []
    for camera, batch in pipeline.datamanager.fixed_indices_eval_dataloader:
        outputs = pipeline.model.get_outputs_for_camera(camera)
        values.append(psnr(outputs["rgb"], batch["image"][..., :3].to(outputs["rgb"].device)))
    if was_training:
        pipeline.train()
    return float(sum(values) / len(values))


def time_to_quality(preset: Preset, out_dir: Path, methods: Sequence[str] = TTQ_METHODS) -> Dict[str, dict]:
    """Training wall-clock for each method to reach ``preset.ttq_psnr`` dB on the held-out views of office.

    Steps are timed with :class:`Stepper` (CUDA-synchronised; the held-out evaluation every
    ``preset.ttq_eval_every`` steps is not timed); ``reached`` is False when ``ttq_max_steps`` ran out first.
    Methods run one after another, so on a shared machine their times carry its noise.
    """
    out: Dict[str, dict] = {}
    for name in methods:
        stepper = build(name, preset, preset.rays, out_dir, suffix="ttq", steps=preset.ttq_max_steps)
        curve = []
        reached = None
        cpu_seconds = 0.0  # this process's CPU time over the training steps: less sensitive to a shared machine
        while stepper.step < preset.ttq_max_steps:
            cpu_start = time.process_time()
            stepper.advance(min(preset.ttq_eval_every, preset.ttq_max_steps - stepper.step), record=True)
            cpu_seconds += time.process_time() - cpu_start
            value = heldout_psnr(stepper.trainer.pipeline)
            curve.append({"step": stepper.step, "seconds": float(sum(stepper.times)), "cpu_seconds": cpu_seconds,
                          "psnr": value})
            if value >= preset.ttq_psnr:
                reached = curve[-1]
                break
        out[name] = {"threshold_psnr": preset.ttq_psnr, "reached": reached is not None,
                     "seconds": reached["seconds"] if reached else None, "steps": reached["step"] if reached else None,
                     "final_psnr": curve[-1]["psnr"] if curve else None, "curve": curve}
        del stepper
    return out


def client_cost(model_config, num_rays: int = 1024, repeats: int = 5) -> Dict[str, float]:
    """What the client computes per ray: parameters, multiply-add FLOPs, activation memory, measured time.

    FLOPs and activation bytes are counted from the client head's linear layers (2 * in * out per sample;
    every layer output kept for backward, float32); time is the measured client forward + backward of a batch.
    """
    from nerfstudio.cameras.rays import RayBundle
    from nerfstudio.data.scene_box import SceneBox

    torch.manual_seed(0)
    model_config = dataclasses.replace(model_config, run_steps=1)  # the client's cost does not depend on the schedule
    model = model_config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=1)
    head = model.client_head
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    samples = model_config.server.num_samples
    flops = samples * sum(2 * m.in_features * m.out_features for m in linears)
    activations = samples * 4 * (head.in_dim + sum(2 * m.out_features for m in linears))  # outputs + ReLU/act
    origins = torch.zeros(num_rays, 3)
    directions = torch.nn.functional.normalize(torch.randn(num_rays, 3), dim=-1)
    bundle = RayBundle(origins=origins, directions=directions, pixel_area=torch.ones(num_rays, 1),
                       camera_indices=torch.zeros(num_rays, 1, dtype=torch.long), nears=torch.full((num_rays, 1), 0.05),
                       fars=torch.full((num_rays, 1), 1.5))
    bins = torch.linspace(0.05, 1.5, samples + 1).expand(num_rays, samples + 1).contiguous()
    times = []
    for _ in range(repeats + 1):
        h = torch.relu(torch.randn(num_rays, samples, head.in_dim)).requires_grad_(True)
        start = time.perf_counter()
        out = model.client_render(bundle, bins, h)
        out["rgb"].sum().backward()
        times.append(time.perf_counter() - start)
    return {"client_parameters": float(sum(p.numel() for p in head.parameters())),
            "client_flops_per_ray": float(flops), "client_activation_bytes_per_ray": float(activations),
            "client_us_per_ray_measured": 1e6 * statistics.median(times[1:]) / num_rays}
