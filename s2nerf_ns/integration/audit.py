"""``s2nerf-audit``: what could the server learn from this run? Any split run, after training, no retraining.

The audit loads a finished run (``config.yml``; for a two-process run also the server's run folder) into the
attack pipeline's evaluator, so that it scores exactly like ``ns-eval`` of a ``*-sma`` run (same renders, floors,
scene colour maps, private items, keys), and runs every attack the server could run on what it holds:

* with a recorded server view (``--pipeline.record-server-view True`` when training): the gradient attacks
  (the surrogate model attack and its lambda_g = 0 floor), the embedding attack and every other observer of
  the attack pipeline, replayed from the record exactly as they ran live (same observer calls, same order);
* without one: only what needs no gradient, the embedding attack on the ``h`` the server's own fields give at
  the training rays (the server was sent every training pose). The gradient attacks are then reported as not
  run, and their keys are left out.

Writes ``audit/audit.json`` (metrics, bootstrap intervals over eval views, what was run, provenance) and
``audit/report.html`` (one self-contained page).
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import tyro
import yaml

from s2nerf_ns import errors
from s2nerf_ns.errors import InputError
from s2nerf_ns.evaluation.audit_report import leakage_intervals, verdict, write_report
from s2nerf_ns.evaluation.geometry import geometry_leakage, geometry_leakage_vs_victim
from s2nerf_ns.evaluation.run_scores import derived_leakage
from s2nerf_ns.integration.attack_pipeline import COLOUR_ATTACKS, GRID_PANELS, AttackPipeline, AttackPipelineConfig
from s2nerf_ns.integration.geometry_attacks import GEOMETRY_ATTACKS, GEOMETRY_FLOORS
from s2nerf_ns.protocol.view_recorder import read_server_views

RECORD = "server_view"
"""Folder of a run (or of the server's run) holding its recorded server view."""
NEEDS_GRADIENTS = ("attack_", "floor_surrogate_", "shading_attack_", "inversion_attack_", "gradient_share_",
                   "geometry_readout_", "geometry_surrogate_", "geometry_floor_surrogate_")
"""Scores of renders that need the received gradients (the surrogates, and the read-out behind shading, inversion
and the read-out depth): left out when no server view was recorded."""
GEOMETRY_PICTURE = ("depth: reference", "depth: read-out", "depth: SMA surrogate")
"""Panels of each eval view's ``geometry`` image (GeometryAttacks.score_geometry)."""


@dataclass
class AuditConfig:
    """Audit a finished split run: every attack the server can run on what it holds, scored by the evaluator."""

    load_config: Path
    """The run's config.yml (written by ns-train)."""
    server_run: Optional[Path] = None
    """Two-process runs: the s2nerf-server run folder (its fields' checkpoint, and its record if it kept one)."""
    output_dir: Optional[Path] = None
    """Where audit.json and report.html go (default: <run>/audit)."""
    replay_steps: Optional[int] = None
    """Attacker-only steps over the record after the pass (default: the attack config's replay steps)."""
    embedding_rays_per_view: int = 4096
    """Without a record: rays per training view whose h (from the server's own fields) the embedding attack sees."""
    max_eval_images: Optional[int] = None
    """Score at most this many eval views (default: all)."""

    def check(self) -> None:
        """Every input checked before anything is loaded or written (one line each)."""
        if not self.load_config.is_file():
            raise InputError(f"--load-config {self.load_config}: no such file (the config.yml of a run)")
        if self.server_run is not None and not self.server_run.is_dir():
            raise InputError(f"--server-run {self.server_run}: no such folder (the s2nerf-server --run-dir)")
        if self.embedding_rays_per_view < 1:
            raise InputError(f"--embedding-rays-per-view {self.embedding_rays_per_view}: give at least 1")
        if self.max_eval_images is not None and self.max_eval_images < 1:
            raise InputError(f"--max-eval-images {self.max_eval_images}: give at least 1")
        if self.replay_steps is not None and self.replay_steps < 0:
            raise InputError(f"--replay-steps {self.replay_steps}: give 0 or more")
        remote = bool(yaml.load(self.load_config.read_text(), Loader=yaml.Loader).pipeline.model.server_address)
        if remote and self.server_run is None:
            raise InputError(f"--load-config {self.load_config} is a two-process run: give --server-run (the "
                             "s2nerf-server run folder, which holds the server's fields)")

    def record_dir(self) -> Optional[Path]:
        base = self.server_run if self.server_run is not None else self.load_config.parent
        return base / RECORD if (base / RECORD / "meta.json").is_file() else None


def as_audit_config(config, replay_steps: Optional[int] = None):
    """A copy of the run's TrainerConfig with its pipeline made the attack pipeline's evaluator (same datamanager,
    model), the server's fields loaded from its checkpoint instead of a server address, and the attacks' replay
    length ``replay_steps`` where given (the floor attacker derives its config from the same attack config)."""
    pipeline = config.pipeline
    if not isinstance(pipeline, AttackPipelineConfig):
        keep = {f.name: getattr(pipeline, f.name) for f in dataclasses.fields(pipeline)
                if f.name in {g.name for g in dataclasses.fields(AttackPipelineConfig)} and f.name != "_target"}
        pipeline = AttackPipelineConfig(**keep)
    changes = {"model": dataclasses.replace(pipeline.model, server_address=None)}
    if replay_steps is not None:
        changes["attack"] = dataclasses.replace(pipeline.attack, replay_steps=replay_steps)
    return dataclasses.replace(config, pipeline=dataclasses.replace(pipeline, **changes))


def load_run(audit: AuditConfig) -> Tuple[AttackPipeline, int]:
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, step = eval_setup(audit.load_config, test_mode="test", update_config_callback=lambda config: as_audit_config(config, audit.replay_steps))
    if audit.server_run is not None:
        from s2nerf_ns.transport.server import CHECKPOINT

        state = torch.load(audit.server_run / CHECKPOINT, map_location=pipeline.device, weights_only=True)
        pipeline.model.server.field.load_state_dict(state["field"])
    return pipeline, step


def load_live_attacker(pipeline: AttackPipeline, server_run: Path) -> Optional[int]:
    """The surrogate that ``s2nerf-server --attack sma`` trained live (``attack/attacker.pt``), as the gradient attack;
    its dummies may be larger than the client's images (``--image-size``): the overlap is kept. None without one."""
    path = server_run / "attack" / "attacker.pt"
    if not path.is_file():
        return None
    state = torch.load(path, map_location=pipeline.device, weights_only=True)["surrogate"]
    own = pipeline.surrogate.state_dict()
    for key in ("dummy", "seen", "variance", "estimate"):
        if key in state and key in own and state[key].shape != own[key].shape:
            n, h, w = (min(a, b) for a, b in zip(own[key].shape[:3], state[key].shape[:3]))
            patch = own[key].clone()
            patch[:n, :h, :w] = state[key][:n, :h, :w]
            state[key] = patch
    pipeline.surrogate.load_state_dict(state)
    return int(pipeline.surrogate.step_count)


def live_attack(server_run: Optional[Path]) -> Optional[str]:
    """The attack the server ran live (``s2nerf-server --attack``: "sma", "ssma"), or None."""
    path = server_run / "attack" / "attacker.pt" if server_run is not None else None
    if path is None or not path.is_file():
        return None
    return str(torch.load(path, map_location="cpu", weights_only=True).get("attack", "sma"))


def replay_record(pipeline: AttackPipeline, folder: Path) -> int:
    """Every recorded view to every observer of the channel, then the attack pipeline's per-step processing."""
    observers = list(pipeline.split_model.channel.observers)
    steps = 0
    for view in read_server_views(folder, device=str(pipeline.device)):
        for observer in observers:
            observer(view)
        pipeline.run_attacker(view.step)
        steps += 1
    return steps


@torch.no_grad()
def embed_training_rays(pipeline: AttackPipeline, rays_per_view: int, seed: int = 0) -> int:
    """SERVER: ``h`` of its own fields at the training rays (it was sent every training pose) -> embedding attack."""
    model = pipeline.split_model
    cameras = pipeline.datamanager.train_dataset.cameras.to(pipeline.device)
    generator = torch.Generator().manual_seed(seed)
    for i in range(len(cameras)):
        bundle = cameras.generate_rays(camera_indices=i).flatten()
        keep = torch.randperm(len(bundle), generator=generator)[:rays_per_view].to(pipeline.device)
        bundle = model.collider(bundle[keep])
        pipeline.embedding_attack.observe(model.server(bundle, None).h)
    return len(cameras)


def score_views(pipeline: AttackPipeline, max_images: Optional[int]) -> Tuple[Dict[str, float], List[Dict]]:
    """The evaluator's average metrics (what ns-eval reports) and each eval view's metrics and labelled panels."""
    model = pipeline.split_model
    rows: List[Dict] = []
    evaluate = model.get_image_metrics_and_images

    def keep_view(outputs, batch):
        metrics, images = evaluate(outputs, batch)
        if max_images is None or len(rows) < max_images:
            labels = {"attack": [label for key, label in GRID_PANELS.items() if key == "gt" or key in outputs],
                      "geometry": list(GEOMETRY_PICTURE)}
            panels = [(label, part) for key, names in labels.items() if key in images
                      for label, part in zip(names, images[key].cpu().chunk(len(names), dim=1))]
            rows.append({"metrics": dict(metrics), "panels": panels})
        return metrics, images

    model.get_image_metrics_and_images = keep_view  # per-view rows, for the intervals and the report
    try:
        metrics = pipeline.get_average_eval_image_metrics()
    finally:
        del model.get_image_metrics_and_images
    private = list(pipeline._private_rows)
    if len(private) == len(rows):
        for row, extra in zip(rows, private):
            row["metrics"].update(extra)
    return metrics, rows


def derive_all(metrics: Dict[str, float], colour_attacks, colour_floors, geometry_attacks, geometry_floors):
    """Every derived key (best-of, leakage over the floor) from averaged raw scores: colour and geometry."""
    out = derived_leakage(metrics, colour_attacks, floors=colour_floors)
    out.update(geometry_leakage(metrics, geometry_attacks, geometry_floors))
    out.update(geometry_leakage_vs_victim(metrics, geometry_attacks, geometry_floors))
    return out


def provenance() -> Dict[str, object]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()

    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"commit": git("rev-parse", "HEAD"), "dirty_tree": dirty,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def run_audit(audit: AuditConfig) -> Dict[str, object]:
    audit.check()
    out_dir = audit.output_dir or audit.load_config.parent / "audit"
    record = audit.record_dir()
    pipeline, step = load_run(audit)
    pipeline.eval()
    ran: Dict[str, str] = {}
    kind = live_attack(audit.server_run)
    live = None if record is not None or kind is None else load_live_attacker(pipeline, audit.server_run)
    if record is not None:
        steps = replay_record(pipeline, record)
        ran["gradient attacks (surrogate model attack, its lambda_g = 0 floor)"] = \
            f"replayed from {steps} recorded steps"
        ran["embedding attack"] = "on the recorded h"
        pipeline.replay_once()
        if kind == "ssma":  # the scene-aided attack used the leaked photos, which the record does not hold
            attacker_step = load_live_attacker(pipeline, audit.server_run)
            ran["gradient attacks (surrogate model attack, its lambda_g = 0 floor)"] = (
                f"the gradient attack is the server's own scene-aided attack (s2nerf-server --attack ssma, step "
                f"{attacker_step}); its lambda_g = 0 floor replayed from {steps} recorded steps")
    else:
        views = embed_training_rays(pipeline, audit.embedding_rays_per_view)
        ran["embedding attack"] = f"on h of the server's fields at {views} training views"
        ran["gradient attacks"] = "not run: no server view recorded (train with --pipeline.record-server-view True)"
        if live is not None:
            ran["gradient attacks"] = (f"the server's own surrogate model attack (s2nerf-server --attack {kind}, "
                                       f"step {live}); its lambda_g = 0 floor not run: no server view recorded")
    pipeline.fit_colour_maps()
    metrics, rows = score_views(pipeline, audit.max_eval_images)
    sets = (COLOUR_ATTACKS, ("floor_constant", "floor_surrogate"), GEOMETRY_ATTACKS, GEOMETRY_FLOORS)
    if record is None:  # untrained surrogates and a read-out without gradients are not attacks: their keys go
        derived = set(derive_all(metrics, *sets))
        not_run = tuple(p for p in NEEDS_GRADIENTS if live is None or p != "attack_")
        metrics = {k: v for k, v in metrics.items() if k not in derived and not k.startswith(not_run)}
        sets = (("embedding_attack",) + (("attack",) if live is not None else ()), ("floor_constant",), (),
                tuple(f for f in GEOMETRY_FLOORS if f != "floor_surrogate"))
        metrics.update(derive_all(metrics, *sets))
    metrics = {k: v for k, v in metrics.items() if not isinstance(v, float) or math.isfinite(v)}  # no NaN in JSON
    intervals = leakage_intervals([r["metrics"] for r in rows], lambda means: derive_all(means, *sets))
    result = {
        "run": str(audit.load_config), "server_run": str(audit.server_run) if audit.server_run else None,
        "checkpoint_step": step, "record": json.loads((record / "meta.json").read_text()) if record else None,
        "attacker_step": int(pipeline.surrogate.step_count), "attacks": ran, "eval_metrics": metrics,
        "intervals": intervals, "eval_views": len(rows),
        "verdict": verdict(metrics, intervals), "provenance": provenance(),
    }
    if record is not None:
        result["dummy_metrics"] = pipeline.score_dummies(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "audit.json").write_text(json.dumps(result, indent=2, default=str, allow_nan=False))
    write_report(result, rows, out_dir / "report.html")
    return result


def main() -> None:
    errors.install()  # one-line errors: installed by the command, not by importing the package
    result = run_audit(tyro.cli(AuditConfig))
    print(result["verdict"])


@dataclass
class ScoreRemoteConfig:
    """Score a two-process run (s2nerf-audit with --server-run; the server process need not run)."""

    server_run: Path
    """The s2nerf-server run folder (for a server of several clients, that client's folder)."""
    client_config: Path
    """The client's config.yml."""
    output_dir: Optional[Path] = None
    """Where audit.json and report.html go (default: <server-run>/attack)."""
    max_eval_images: Optional[int] = None
    """Score at most this many eval views (default: all)."""


def score_remote(options: ScoreRemoteConfig) -> Dict[str, object]:
    """The evaluator of a two-process run: the same evaluator, keys and files as ``s2nerf-audit``."""
    return run_audit(AuditConfig(load_config=options.client_config, server_run=options.server_run,
                                 output_dir=options.output_dir or options.server_run / "attack",
                                 max_eval_images=options.max_eval_images))


def main_score_remote() -> None:
    errors.install()
    print(score_remote(tyro.cli(ScoreRemoteConfig))["verdict"])


if __name__ == "__main__":
    main()
