"""Privacy-utility benchmark: rooms x defenses x seeds, SMA and SSMA attackers, victim utility vs leakage.

Each cell trains one victim with the scene-aided attack pipeline: at the end of victim training the
attacker (which has only seen the gradient channel) is scored on the held-out views: that is the SMA
result. It then receives one leaked photo (known pose) and continues for a few attacker-only steps: that
is the SSMA result. Both attackers therefore attack exactly the same victim, and in the same run the floor
(best constant image, ``lambda_g = 0`` surrogate) and the gradient-free embedding attack are scored on it
too (see :mod:`s2nerf_ns.integration.attack_pipeline`). Every cell records its full config; the results
record the git commit, versions and device. ``s2nerf-bench report`` turns them into markdown tables.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from s2nerf_ns.attacks.pose.config import PoseSearchConfig, attack_search_config
from s2nerf_ns.bench.common import (EXTRA_VIEWS, PRESETS, Preset, check_choices, check_seeds, checked_provenance, environment,
                                    sized_config, synced_clock, train_seeded, with_values)
from s2nerf_ns.bench.privacy_summary import summarise
from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.errors import InputError
from s2nerf_ns.evaluation.figures import save_image_grid
from s2nerf_ns.integration.methods import lite_model, method_config
from s2nerf_ns.scenes import ROOM_NAMES as ROOMS

DEFENSES: Dict[str, dict] = {
    "splitnerf": dict(defense=DefenseConfig()),
    "s2nerf c=1.2 r=1e-4": dict(defense=DefenseConfig(kind="s2nerf", noise_scale=1.2, decay_ratio=1e-4)),
    "s2nerf c=0.5 r=1e-4": dict(defense=DefenseConfig(kind="s2nerf", noise_scale=0.5, decay_ratio=1e-4)),
    "s2nerf c=1.2 r=1": dict(defense=DefenseConfig(kind="s2nerf", noise_scale=1.2, decay_ratio=1.0)),
    "s2nerf-lite c=1.2 r=1e-4": dict(defense=DefenseConfig(kind="s2nerf", noise_scale=1.2, decay_ratio=1e-4),
                                     lite=True),
    "label-noise std=0.1": dict(defense=DefenseConfig(kind="label-noise", label_noise_std=0.1)),
}
SMOKE_DEFENSES = ("splitnerf", "s2nerf c=1.2 r=1e-4")
GPU_DEFENSES = ("splitnerf", "s2nerf c=1.2 r=1e-4", "s2nerf c=1.2 r=1")


def default_defenses(preset_name: str) -> Sequence[str]:
    return {"smoke": SMOKE_DEFENSES, "gpu": GPU_DEFENSES}.get(preset_name, tuple(DEFENSES))


def cell_key(room: str, defense: str, seed: int) -> str:
    return f"{room}/{defense}/seed{seed}"


def cell_config(room: str, defense: str, preset: Preset, out_dir: Path, seed: int, pose: str = "known",
                pose_search: str = "retrieval", num_leaked: int = 1, search: Optional[PoseSearchConfig] = None):
    spec = DEFENSES[defense]
    base = method_config("s2nerf-ssma")
    lite = lite_model()  # its client head (and the server's share of the density MLP) when the cell asks for it
    shape = dict(num_density_layers=lite.server.num_density_layers, cut_depth=lite.server.cut_depth,
                 sh_levels=lite.sh_levels, color_hidden_dim=lite.color_hidden_dim,
                 num_color_layers=lite.num_color_layers) if spec.get("lite") else {}
    config = sized_config(base, preset, room, out_dir, defense.replace(" ", "_").replace("=", ""),
                          defense=spec["defense"], **shape)
    pipe = {"report_sma_phase": True, "pose": pose, "pose_search": pose_search, "leaked.num_leaked": num_leaked,
            "leak_during_training": False, "post_training_steps": preset.post_training_steps,
            "leak_rays_per_step": preset.rays, "attack.replay_steps": preset.replay_steps,
            "datamanager.dataparser.num_extra_views": EXTRA_VIEWS,
            **({"pose_search_config": search} if search is not None else {})}
    return with_values(config, {"machine.seed": seed, **{f"pipeline.{k}": v for k, v in pipe.items()}})


def _scores(metrics: Dict[str, float], drop_prefixes: Sequence[str] = ()) -> Dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if not k.endswith("_std") and not k.startswith(tuple(drop_prefixes))}


def run_cell(room: str, defense: str, preset: Preset, out_dir: Path, seed: int, pose: str = "known",
             pose_search: str = "retrieval", num_leaked: int = 1, search: Optional[PoseSearchConfig] = None) -> dict:
    config = cell_config(room, defense, preset, out_dir, seed, pose, pose_search, num_leaked, search)
    config = with_values(config, {"timestamp": f"{config.timestamp}_seed{seed}"})
    start = synced_clock()
    trainer = train_seeded(config, seed)
    train_seconds = synced_clock() - start
    pipeline = trainer.pipeline
    summary = json.loads((trainer.base_dir / "attack" / "attack_summary.json").read_text())
    final = summary["eval_metrics"]  # what ns-eval reports for this run's checkpoint (the SSMA attacker)
    sma = summary.get("sma_phase_eval_metrics", {})
    images = pipeline.render_first_eval_view()
    grid = {"gt": images["gt"], "victim": images["rgb"], "sma": pipeline.sma_phase_image,
            "ssma": images["attack_rgb"], "embedding": images["embedding_rgb"], "floor": images["floor_rgb"]}
    np.savez_compressed(trainer.base_dir / "first_eval_view.npz", **{k: v.numpy() for k, v in grid.items()})
    poses = json.loads((trainer.base_dir / "attack" / "leaked_poses.json").read_text())
    victim_keys = ("psnr", "ssim", "lpips", "lpips_available")
    return {
        "room": room, "defense": defense, "seed": seed, "steps": preset.steps, "rays_per_step": preset.rays,
        "train_seconds": train_seconds, "run_dir": str(trainer.base_dir),
        "config_yaml": yaml.dump(config),  # the full TrainerConfig of this cell, as ns-train writes config.yml
        "victim": {k: float(final[k]) for k in victim_keys if k in final},
        "sma": _scores(sma, victim_keys),
        "ssma": _scores(final, victim_keys),
        "dummies": summary["dummy_metrics"],
        "colour_maps": summary["colour_maps"],
        "attacker_seconds_per_victim_step": summary["attacker_seconds_per_victim_step"],
        "evaluator_seconds_per_victim_step": summary.get("evaluator_seconds_per_victim_step"),
        "leaked_pose": poses["pose"], "pose_search": pose_search if pose == "estimate" else None,
        "pose_search_config": dataclasses.asdict(config.pipeline.pose_search_config)
        if pose == "estimate" and pose_search == "global" else None,
        "leaked_indices": poses.get("leaked_indices"), "leaked_source": poses.get("leaked_source"),
        # one entry per leaked photo: rotation (degrees) and translation (scene units) error of the final pose
        "leaked_pose_errors": [view.get("estimated") for view in poses["views"]],
        "leaked_pose_after_search": [view.get("after_retrieval") for view in poses["views"]],
    }


def write_table(results: dict, path: Path) -> None:
    from s2nerf_ns.bench.report import privacy_markdown

    path.write_text(privacy_markdown(results))


def plot(results: dict, out_dir: Path) -> None:
    """Victim PSNR against leakage over the floor (scene colour map), mean over seeds with the spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, metric, label in ((axes[0], "leakage_cmpsnr", "leakage over the floor, cmPSNR (dB)"),
                              (axes[1], "leakage_cm_lum_ssim", "leakage over the floor, cm lum-SSIM")):
        for room in sorted({c["room"] for c in summary.values()}):
            for attack, marker in (("sma", "o"), ("ssma", "s")):
                cells = [c for c in summary.values() if c["room"] == room and metric in c[attack]]
                cells.sort(key=lambda c: c[attack][metric]["mean"])
                xs = [c[attack][metric]["mean"] for c in cells]
                xerr = [c[attack][metric]["std"] for c in cells]
                ys = [c["victim"]["psnr"]["mean"] for c in cells]
                ax.errorbar(xs, ys, xerr=xerr, marker=marker, label=f"{room} {attack.upper()}", alpha=0.8, capsize=2)
                for c, x, y in zip(cells, xs, ys):
                    ax.annotate(c["defense"].replace("s2nerf ", ""), (x, y), fontsize=6, alpha=0.7)
        ax.axvline(0.0, color="gray", lw=0.8, ls="--")
        ax.set_xlabel(label)
    axes[0].set_ylabel("victim PSNR (dB)")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Privacy-utility, preset {results['preset']} (mean and sd over seeds)")
    fig.tight_layout()
    fig.savefig(out_dir / "privacy_utility.png", dpi=120)
    plt.close(fig)


def image_grids(results: dict, out_dir: Path) -> None:
    """Per room, first seed: rows splitnerf and the paper's s2nerf; columns gt | victim | SMA | SSMA |
    embedding attack | lambda_g = 0 floor."""
    for room in sorted({c["room"] for c in results["cells"].values()}):
        rows = []
        for defense in ("splitnerf", "s2nerf c=1.2 r=1e-4"):
            cells = sorted((c for c in results["cells"].values() if c["room"] == room and c["defense"] == defense),
                           key=lambda c: c["seed"])
            if not cells or not (Path(cells[0]["run_dir"]) / "first_eval_view.npz").exists():
                continue
            data = np.load(Path(cells[0]["run_dir"]) / "first_eval_view.npz")
            keys = [k for k in ("gt", "victim", "sma", "ssma", "embedding", "floor") if k in data]
            rows.append(np.concatenate([data[k] for k in keys], axis=1))
        if rows:
            save_image_grid(rows, out_dir / f"grid_{room}.png", scale=max(1, 256 // sum(r.shape[0] for r in rows)))


def default_seeds(preset_name: str) -> List[int]:
    """The preset's seeds: 42, 43, ... (``Preset.seeds`` of them)."""
    return [42 + i for i in range(PRESETS[preset_name].seeds)]


def check_inputs(rooms: Sequence[str], defenses: Sequence[str], seeds: Sequence[int], num_leaked: int) -> None:
    """One line naming the flag for a room, defense, seed or leak count the benchmark cannot run."""
    check_choices("--rooms", rooms, ROOMS, "room")
    check_choices("--defenses", defenses, DEFENSES, "defense", quote=True)
    check_seeds(seeds)
    if not 1 <= num_leaked <= EXTRA_VIEWS:
        raise InputError(f"--num-leaked {num_leaked}: the benchmark's rooms have {EXTRA_VIEWS} off-trajectory extra "
                         f"views; give 1 to {EXTRA_VIEWS}")


def run(preset_name: str, out_dir: Path, rooms: Sequence[str] = ROOMS, defenses: Optional[Sequence[str]] = None,
        seeds: Optional[Sequence[int]] = None, pose: str = "known", steps: Optional[int] = None,
        pose_search: str = "retrieval", num_leaked: int = 1, search_config: Optional[PoseSearchConfig] = None,
        allow_dirty: bool = False, **preset_overrides: int) -> dict:
    """Run (or resume) the benchmark for ``seeds`` (default: the preset's, :func:`default_seeds`); ``steps``
    and ``preset_overrides`` (e.g. ``post_training_steps``, ``replay_steps``) override the preset's values
    (recorded in the results as ``preset_values``). Every input, and the git checkout (clean unless
    ``allow_dirty``), is checked before anything is written."""
    preset = PRESETS[preset_name]
    overrides = {k: v for k, v in dict(preset_overrides, steps=steps).items() if v is not None}
    if overrides:
        preset = dataclasses.replace(preset, **overrides)
    seed_list = list(default_seeds(preset_name) if seeds is None else seeds)
    defenses = list(defenses or default_defenses(preset_name))
    check_inputs(rooms, defenses, seed_list, num_leaked)
    results_path = out_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"cells": {}}
    search = pose_search if pose == "estimate" else None
    search_config = search_config or attack_search_config()
    # as JSON stores it (tuples become lists), so that a resumed run compares equal
    search_knobs = json.loads(json.dumps(dataclasses.asdict(search_config))) if search == "global" else None
    for name, value in (("preset", preset_name), ("pose", pose), ("pose_search", search),
                        ("pose_search_config", search_knobs), ("num_leaked", num_leaked),
                        ("preset_values", dataclasses.asdict(preset))):
        if results.get(name) not in (None, value):
            raise InputError(f"--out {out_dir}: its results.json holds {name} {results[name]!r}, not {value!r}; "
                             "use another --out folder")
    prov = checked_provenance(allow_dirty)
    out_dir.mkdir(parents=True, exist_ok=True)
    results.update(preset=preset_name, pose=pose, pose_search=search, pose_search_config=search_knobs,
                   num_leaked=num_leaked,
                   preset_values=dataclasses.asdict(preset), environment=environment(),
                   provenance=prov, command=" ".join(sys.argv), torch_threads=torch.get_num_threads())
    # seed-major: an interrupted run has every room and defense at the first seed(s)
    todo = [(r, d, s) for s in seed_list for r in rooms for d in defenses if cell_key(r, d, s) not in results["cells"]]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("privacy benchmark", total=len(todo))
        for room, defense, s in todo:
            bar.update(task, description=f"{room} / {defense} / seed {s}")
            cell = run_cell(room, defense, preset, out_dir / "runs", s, pose, pose_search, num_leaked, search_config)
            results["cells"][cell_key(room, defense, s)] = {**cell, "provenance": prov}  # each cell its own code
            results["summary"] = summarise(results)
            results_path.write_text(json.dumps(results, indent=2))  # resumable: finished cells are kept
            bar.advance(task)
    results["summary"] = summarise(results)
    results_path.write_text(json.dumps(results, indent=2))
    write_table(results, out_dir / "results.md")
    plot(results, out_dir)
    image_grids(results, out_dir)
    return results
