"""Privacy-utility benchmark: rooms x defenses, SMA and SSMA attackers, victim utility vs leakage.

Each cell trains one victim with the scene-aided attack pipeline: at the end of victim training the
attacker (which has only seen the gradient channel) is scored on the held-out views: that is the SMA
result. It then receives one leaked photo (known pose) and continues for a few attacker-only steps: that
is the SSMA result. Both attackers therefore attack exactly the same victim.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from s2nerf_ns.bench.common import PRESETS, Preset, environment, sized_config
from s2nerf_ns.defenses import DefenseConfig
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


def cell_config(room: str, defense: str, preset: Preset, out_dir: Path, seed: int, pose: str = "known"):
    spec = DEFENSES[defense]
    base = method_config("s2nerf-ssma")
    config = sized_config(base, preset, room, out_dir, defense.replace(" ", "_").replace("=", ""))
    if spec.get("lite"):
        lite = lite_model()
        for f in ("num_density_layers", "cut_depth", "sh_levels", "color_hidden_dim", "num_color_layers"):
            setattr(config.pipeline.model, f, getattr(lite, f))
    config.pipeline.model.defense = spec["defense"]
    config.machine.seed = seed
    pipe = config.pipeline
    pipe.report_sma_phase = True
    pipe.pose = pose
    pipe.leak_during_training = False
    pipe.post_training_steps = preset.post_training_steps
    pipe.leak_rays_per_step = preset.rays
    pipe.attack.replay_steps = preset.replay_steps
    pipe.datamanager.dataparser.num_extra_views = 2
    return config


def run_cell(room: str, defense: str, preset: Preset, out_dir: Path, seed: int, pose: str = "known") -> dict:
    config = cell_config(room, defense, preset, out_dir, seed, pose)
    random.seed(seed)  # ns-train seeds in its entry point; in-process runs must do it themselves
    np.random.seed(seed)
    torch.manual_seed(seed)
    start = time.perf_counter()
    config.save_config()  # so that ns-eval / ns-viewer / s2nerf-bench figure can load the run
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    train_seconds = time.perf_counter() - start
    pipeline = trainer.pipeline
    final = pipeline.get_average_eval_image_metrics()
    images = pipeline.render_first_eval_view()
    grid = {"gt": images["gt"], "victim": images["rgb"], "sma": pipeline.sma_phase_image, "ssma": images["attack_rgb"]}
    np.savez_compressed(trainer.base_dir / "first_eval_view.npz", **{k: v.numpy() for k, v in grid.items()})
    summary = json.loads((trainer.base_dir / "attack" / "attack_summary.json").read_text())
    poses = json.loads((trainer.base_dir / "attack" / "leaked_poses.json").read_text())
    return {
        "room": room, "defense": defense, "seed": seed, "steps": preset.steps, "rays_per_step": preset.rays,
        "train_seconds": train_seconds, "run_dir": str(trainer.base_dir),
        "victim": {k: v for k, v in final.items() if not k.startswith("attack_") and not k.endswith("_std")},
        "sma": {k[len("attack_"):]: v for k, v in pipeline.sma_phase_metrics.items() if not k.endswith("_std")},
        "ssma": {k[len("attack_"):]: v for k, v in final.items() if k.startswith("attack_") and not k.endswith("_std")},
        "dummies": summary["dummy_metrics"],
        "attacker_seconds_per_victim_step": summary["attacker_seconds_per_victim_step"],
        "leaked_pose": poses["pose"], "leaked_pose_errors": poses["views"][0].get("estimated"),
        "leaked_pose_after_retrieval": poses["views"][0].get("after_retrieval"),
    }


def write_table(results: dict, path: Path) -> None:
    head = ("| room | defense | victim PSNR | victim SSIM | SMA ci-PSNR margin | SMA lum-SSIM margin | "
            "SSMA PSNR | SSMA ci-PSNR margin | SSMA lum-SSIM margin |\n|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for cell in results["cells"].values():
        v, a, b = cell["victim"], cell["sma"], cell["ssma"]
        rows.append(f"| {cell['room']} | {cell['defense']} | {v['psnr']:.2f} | {v['ssim']:.3f} | "
                    f"{a['cipsnr_margin']:+.2f} dB | {a['lum_ssim_margin']:+.3f} | {b['psnr']:.2f} | "
                    f"{b['cipsnr_margin']:+.2f} dB | {b['lum_ssim_margin']:+.3f} |")
    env = results["environment"]
    path.write_text(f"Preset `{results['preset']}`, leaked pose {results.get('pose', 'known')}, on {env['device']} "
                    f"(torch {env['torch']}).\n\n" + head +
                    "\n".join(rows) + "\n")


def plot(results: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, metric, label in ((axes[0], "cipsnr_margin", "attacker colour-invariant PSNR margin (dB)"),
                              (axes[1], "lum_ssim_margin", "attacker luminance-SSIM margin")):
        for room in sorted({c["room"] for c in results["cells"].values()}):
            for attack, marker in (("sma", "o"), ("ssma", "s")):
                cells = [c for c in results["cells"].values() if c["room"] == room]
                cells.sort(key=lambda c: c[attack][metric])
                xs = [c[attack][metric] for c in cells]
                ys = [c["victim"]["psnr"] for c in cells]
                ax.plot(xs, ys, marker=marker, label=f"{room} {attack.upper()}", alpha=0.8)
                for c, x, y in zip(cells, xs, ys):
                    ax.annotate(c["defense"].replace("s2nerf ", ""), (x, y), fontsize=6, alpha=0.7)
        ax.axvline(0.0, color="gray", lw=0.8, ls="--")
        ax.set_xlabel(label)
    axes[0].set_ylabel("victim PSNR (dB)")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Privacy-utility, preset {results['preset']}")
    fig.tight_layout()
    fig.savefig(out_dir / "privacy_utility.png", dpi=120)
    plt.close(fig)


def image_grids(results: dict, out_dir: Path) -> None:
    """Per room: rows splitnerf and the paper's s2nerf; columns gt | victim | SMA | SSMA."""
    for room in sorted({c["room"] for c in results["cells"].values()}):
        rows = []
        for defense in ("splitnerf", "s2nerf c=1.2 r=1e-4"):
            cell = results["cells"].get(f"{room}/{defense}")
            if cell is None:
                continue
            data = np.load(Path(cell["run_dir"]) / "first_eval_view.npz")
            rows.append(np.concatenate([data[k] for k in ("gt", "victim", "sma", "ssma")], axis=1))
        if rows:
            save_image_grid(rows, out_dir / f"grid_{room}.png", scale=max(1, 256 // sum(r.shape[0] for r in rows)))


def run(preset_name: str, out_dir: Path, rooms: Sequence[str] = ROOMS, defenses: Optional[Sequence[str]] = None,
        seed: int = 42, pose: str = "known") -> dict:
    preset = PRESETS[preset_name]
    defenses = list(defenses or (SMOKE_DEFENSES if preset_name == "smoke" else DEFENSES))
    unknown = [d for d in defenses if d not in DEFENSES] + [r for r in rooms if r not in ROOMS]
    if unknown:
        raise SystemExit(f"unknown rooms/defenses {unknown}; defenses: {list(DEFENSES)}; rooms: {list(ROOMS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"cells": {}}
    if results.get("preset") not in (None, preset_name):
        raise SystemExit(f"{results_path} holds preset {results['preset']!r}; use another --out folder")
    if results.get("pose") not in (None, pose):
        raise SystemExit(f"{results_path} holds pose {results['pose']!r}; use another --out folder")
    results.update(preset=preset_name, pose=pose, preset_values=dataclasses.asdict(preset), environment=environment())
    todo = [(r, d) for r in rooms for d in defenses if f"{r}/{d}" not in results["cells"]]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("privacy benchmark", total=len(todo))
        for room, defense in todo:
            bar.update(task, description=f"{room} / {defense}")
            results["cells"][f"{room}/{defense}"] = run_cell(room, defense, preset, out_dir / "runs", seed, pose)
            results_path.write_text(json.dumps(results, indent=2))  # resumable: finished cells are kept
            bar.advance(task)
    write_table(results, out_dir / "results.md")
    plot(results, out_dir)
    image_grids(results, out_dir)
    return results
