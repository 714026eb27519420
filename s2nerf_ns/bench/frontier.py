"""Privacy-utility frontier of the defense families: one knob per family, swept on the same victim seeds.

Every point trains one victim with the surrogate-model-attack pipeline (``splitnerf-sma`` with the point's
defense) and records its utility and whatever leakage scores the run reports (``attack_*``, ``leakage_*``,
``floor_*``, ``private_*``, ``embedding_attack_*``, ``gradient_share_*`` eval keys; the dummies' scores from
``attack/attack_summary.json``), plus the per-pixel epsilon where the family has one (``privacy.json``).

``frontier.json``: one record per point; ``frontier.png`` (:mod:`s2nerf_ns.bench.frontier_figure`, recomputed
from the raw scores): x = victim PSNR lost against the undefended victim of the same room and seeds, y = the
leakage ``leakage_key`` names, the Pareto front (least leakage for a given loss) marked and the paper's S²NeRF
point (c = 1.2, r = 1e-4) and the authors' README example (``LABELLED_POINTS``) labelled. Resumable: finished
points are kept.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from s2nerf_ns.bench import frontier_cells, frontier_figure
from s2nerf_ns.bench.frontier_figure import pareto  # noqa: F401 (the front's definition, used by the figure)
from s2nerf_ns.bench.common import (EXTRA_VIEWS, PRESETS, Preset, check_choices, check_seeds, checked_provenance, environment,
                                    sized_config, synced_clock, train_seeded, with_values)
from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.errors import InputError
from s2nerf_ns.integration.methods import method_config
from s2nerf_ns.scenes import ROOM_NAMES

LEAKAGE_KEYS = ("leakage_cm_lum_ssim", "leakage_lum_ssim", "leakage_ssim", "leakage_cmpsnr", "leakage_psnr",
                "attack_lum_ssim_margin", "attack_cipsnr_margin")
"""The y axis: the first of these that every record has (override with ``leakage_key``)."""
RECORDED_PREFIXES = ("attack_", "leakage_", "floor_", "private_", "embedding_attack_", "shading_attack_",
                     "inversion_attack_", "geometry_", "gradient_share_", "dp_")
RAW_PREFIXES = tuple(f"{r}_" for r in frontier_cells.SOURCES["eval"][0] + frontier_cells.SOURCES["eval"][1]) + (
    "geometry_",)
"""Per-view raw scores kept in a record's ``per_view`` rows (with ``psnr`` and ``ssim``)."""
PAPER_POINT = ("s2nerf", 1.2)

Family = Tuple[str, Sequence[float], Callable[[float], dict]]
FAMILIES: Dict[str, Family] = {
    "s2nerf": ("noise_scale c (r = 1e-4)", (0.3, 0.6, 1.2, 2.4),
               lambda v: dict(defense=DefenseConfig(kind="s2nerf", noise_scale=v, decay_ratio=1e-4))),
    "s2nerf-floor": ("noise_floor f (c = 1.2, r = 1e-4)", (0.01, 0.03, 0.1, 0.3),
                     lambda v: dict(defense=DefenseConfig(kind="s2nerf", noise_scale=1.2, decay_ratio=1e-4,
                                                          noise_floor=v))),
    "max-norm": ("max_norm_scale k", (0.5, 1.0, 2.0, 4.0),
                 lambda v: dict(defense=DefenseConfig(kind="max-norm", max_norm_scale=v))),
    "residual-noise": ("residual_noise_std s (pixels)", (0.05, 0.1, 0.2, 0.4),
                       lambda v: dict(defense=DefenseConfig(kind="residual-noise", residual_noise_std=v))),
    "label-noise": ("label_noise_std", (0.05, 0.1, 0.2, 0.4),
                    lambda v: dict(defense=DefenseConfig(kind="label-noise", label_noise_std=v))),
    "client-appearance": ("noise_scale c of s2nerf on top (0: none)", (0.0, 0.3, 1.2, 2.4),
                          lambda v: dict(client_appearance=True,
                                         defense=DefenseConfig(kind="s2nerf", noise_scale=v, decay_ratio=1e-4)
                                         if v > 0 else DefenseConfig())),
    # geometry (issue 22): against the server's read-out of the client's density, on top of client appearance
    "density-noise": ("density_noise_scale m (C = 0.02; client appearance)", (0.3, 1.0, 3.0, 10.0),
                      lambda v: dict(client_appearance=True,
                                     defense=DefenseConfig(kind="density-noise", density_noise_scale=v))),
    "client-geometry": ("finest hash-grid resolution the server keeps (client appearance)", (16, 32, 48, 96),
                        lambda v: dict(client_appearance=True, client_geometry=True,
                                       client_geometry_server_res=int(v), defense=DefenseConfig())),
    "client-density-layers": ("density layers on the client, density not linear in h (client appearance)",
                              (2, 3, 4, 6), lambda v: dict(client_appearance=True, num_density_layers=1 + int(v),
                                                        defense=DefenseConfig())),
}
AUTHORS_POINT = ("s2nerf-authors", 9.6)
LABELLED_POINTS: Dict[str, Family] = {
    # github.com/lucky9-cyou/S2-NeRF, README "Surrogate Model Attack and Gradient Noise": --noise_type=random
    # --noise_std=9.6 --noise_layer=4 --noise_decay=1. Their activation.py draws the noise with std
    # max_i ||g_i|| * noise_std * std_scale * noise_decay^min(t/T, 1); std_scale is NoiseConfig's default 1.0
    # (neither main_nerf.py nor nerf/trainer.py sets it), so c = 9.6, r = 1 (no decay). noise_layer 4 with 3
    # colour layers puts it on h after the first density layer's ReLU: this project's cut.
    "s2nerf-authors": ("the authors' README example, lucky9-cyou/S2-NeRF --noise_std 9.6 --noise_decay 1 (their "
                       "std_scale stays 1.0): c = 9.6, r = 1, no decay", (9.6,),
                       lambda v: dict(defense=DefenseConfig(kind="s2nerf", noise_scale=v, decay_ratio=1.0))),
}
"""Single settings run beside the families and labelled in the figure and the tables."""
SETTINGS: Dict[str, Family] = {**FAMILIES, **LABELLED_POINTS}
"""Everything ``--families`` accepts: the swept families and the labelled points."""
LABELS = {PAPER_POINT: "S²NeRF paper (c=1.2, r=1e-4)", AUTHORS_POINT: "authors' README example (c=9.6, r=1)"}
"""The settings the figure annotates."""
SMOKE_POINTS = 2
FRONTIER_PRESETS: Dict[str, Preset] = {
    # CI: a couple of seconds per run; plumbing only.
    "smoke": Preset(24, 2, 16, 3, 128, 8, 4, 64, 12, 0, 0),
    "cpu": PRESETS["cpu"],
    "gpu": PRESETS["gpu"],
    "judge": PRESETS["judge"],
}


def points(preset: str, families: Sequence[str]) -> List[Tuple[str, float]]:
    """(family, knob value) of every point; smoke keeps 2 per family (the paper's c = 1.2 among s2nerf's)."""
    out = []
    for name in families:
        values = list(SETTINGS[name][1])
        if preset == "smoke":
            values = values[:1] + values[2:3]
        out += [(name, v) for v in values]
    return out


def check_inputs(rooms: Sequence[str], families: Sequence[str], seeds: Sequence[int],
                 values: Optional[Sequence[float]] = None) -> None:
    """One line naming the flag for a room, family, seed or knob value the sweep cannot run."""
    check_choices("--rooms", rooms, ROOM_NAMES, "room")
    check_choices("--families", families, SETTINGS, "family")
    check_seeds(seeds)
    if values is not None:
        known = {v for f in families for v in SETTINGS[f][1]}
        missing = [v for v in values if not any(abs(v - k) < 1e-12 for k in known)]
        if not values or missing:
            raise InputError(f"--values {' '.join(f'{v:g}' for v in missing)}: no such knob value in "
                             f"{' '.join(families)} (values: {' '.join(f'{k:g}' for k in sorted(known))})")


def run_point(room: str, family: Optional[str], value: float, preset: Preset, out_dir: Path, seed: int,
              adaptive: bool, images: bool = False, inversion: bool = True) -> dict:
    """Train one victim (undefended when ``family`` is None) with the SMA pipeline and collect its record
    (``images``: also save every eval view's panels under ``<run>/eval_images``, as ``ns-eval`` would;
    ``inversion``: run the learned inversion attack)."""
    spec = SETTINGS[family][2](value) if family else dict(defense=DefenseConfig())
    name = f"{family or 'splitnerf'}_{value:g}_seed{seed}" + ("_adaptive" if adaptive else "")
    config = with_values(sized_config(method_config("splitnerf-sma"), preset, room, out_dir, name, **spec), {
        "machine.seed": seed, "pipeline.attack.adaptive": adaptive, "pipeline.attack.replay_steps": preset.replay_steps,
        "pipeline.datamanager.dataparser.num_extra_views": EXTRA_VIEWS, "pipeline.inversion": inversion})
    start = synced_clock()
    trainer = train_seeded(config, seed)
    run_dir = Path(trainer.base_dir)
    metrics, per_view = eval_with_views(trainer.pipeline, run_dir / "eval_images" if images else None)
    summary_path = run_dir / "attack" / "attack_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    privacy_path = run_dir / "privacy.json"
    privacy = json.loads(privacy_path.read_text()) if privacy_path.exists() else None
    defense = spec["defense"]
    record = {
        "room": room, "family": family or "splitnerf", "knob": SETTINGS[family][0] if family else None,
        "value": value, "seed": seed, "adaptive_attacker": adaptive,
        "settings": {**defense.public(), "client_appearance": bool(spec.get("client_appearance", False)),
                     **{k: v for k, v in spec.items() if k not in ("defense", "client_appearance")}},
        "psnr": float(metrics["psnr"]), "ssim": float(metrics["ssim"]),
        "leakage": {k: float(v) for k, v in metrics.items() if k.startswith(RECORDED_PREFIXES) and not k.endswith("_std")},
        "dummies": {**{k: v for k, v in summary.items() if k.startswith(("dummy", "leakage", "private"))},
                    "per_image": list(getattr(trainer.pipeline, "last_dummy_rows", []))},
        "per_view": per_view,
        "epsilon": None if privacy is None else privacy["epsilon"],
        "delta": None if privacy is None else privacy["delta"],
        "privacy": privacy, "train_seconds": synced_clock() - start, "run_dir": str(run_dir),
        "nmi_debiased": True,  # NMI less its permutation baseline (evaluation.leakage.nmi)
    }
    return record


def eval_with_views(pipeline, images_dir: Optional[Path] = None) -> Tuple[Dict[str, float], List[Dict[str, float]]]:
    """EVALUATION: the pipeline's averaged eval metrics and, per eval view, its raw scores (the victim's
    PSNR/SSIM and every render's own scores, private items included): the rows the confidence intervals
    resample. Nothing of the run changes: the model's per-view scoring is only observed."""
    model = pipeline.model
    original = model.get_image_metrics_and_images
    per_view: List[Dict[str, float]] = []

    def observed(outputs, batch):
        before = len(getattr(pipeline, "_private_rows", []))
        metrics, images = original(outputs, batch)
        row = {k: float(v) for k, v in metrics.items() if k in ("psnr", "ssim") or k.startswith(RAW_PREFIXES)}
        for private in getattr(pipeline, "_private_rows", [])[before:]:  # the attack's private-item scores
            row.update({k: float(v) for k, v in private.items()})
        per_view.append({"view": int(batch["image_idx"]), **row})
        return metrics, images

    model.get_image_metrics_and_images = observed
    try:
        metrics = pipeline.get_average_eval_image_metrics(output_path=images_dir)
    finally:
        del model.get_image_metrics_and_images  # back to the class's method
    return metrics, per_view


def leakage_key(records: Sequence[dict], requested: Optional[str] = None) -> Optional[str]:
    if requested:
        return requested
    for key in LEAKAGE_KEYS:
        if records and all(key in r["leakage"] for r in records):
            return key
    return None


def with_loss(results: dict) -> List[dict]:
    """Records with ``psnr_lost`` against the undefended victim of the same room, seed and attacker."""
    base = {(r["room"], r["seed"], r["adaptive_attacker"]): r["psnr"] for r in results["records"]
            if r["family"] == "splitnerf"}
    out = []
    for r in results["records"]:
        ref = base.get((r["room"], r["seed"], r["adaptive_attacker"]))
        out.append({**r, "psnr_lost": None if ref is None else ref - r["psnr"]})
    return out


def run(preset_name: str, out_dir: Path, rooms: Sequence[str] = ("office",), families: Optional[Sequence[str]] = None,
        seeds: Sequence[int] = (42,), adaptive: bool = False, requested_key: Optional[str] = None,
        values: Optional[Sequence[float]] = None, baseline: bool = True, runs_dir: Optional[Path] = None,
        allow_dirty: bool = False) -> dict:
    """Run (or resume) the sweep into ``out_dir/frontier.json``; ``values`` keeps only those knob values,
    ``baseline`` adds the undefended victim of every room and seed (the reference for the PSNR lost), and
    ``runs_dir`` holds the training runs (default ``out_dir/runs``). Every input, and the git checkout (clean
    unless ``allow_dirty``), is checked before anything is written."""
    preset = FRONTIER_PRESETS[preset_name]
    families = list(SETTINGS if families is None else families)
    check_inputs(rooms, families, seeds, values)
    path = out_dir / "frontier.json"
    results = json.loads(path.read_text()) if path.exists() else {"records": []}
    if results.get("preset") not in (None, preset_name):
        raise InputError(f"--out {out_dir}: its frontier.json holds preset {results['preset']!r}; use another --out")
    prov = checked_provenance(allow_dirty)
    out_dir.mkdir(parents=True, exist_ok=True)
    results.update(preset=preset_name, preset_values=dataclasses.asdict(preset), environment=environment(),
                   provenance=prov, command=" ".join(sys.argv))
    done = {(r["room"], r["family"], r["value"], r["seed"], r["adaptive_attacker"]) for r in results["records"]}
    todo = [(room, None, 0.0, seed) for room in rooms for seed in seeds] if baseline else []
    todo += [(room, f, v, seed) for room in rooms for seed in seeds for f, v in points(preset_name, families)
             if values is None or any(abs(v - w) < 1e-12 for w in values)]
    for room, family, value, seed in todo:
        if (room, family or "splitnerf", value, seed, adaptive) in done:
            continue
        print(f"frontier: {room} / {family or 'splitnerf'} = {value:g} / seed {seed}", flush=True)
        record = run_point(room, family, value, preset, runs_dir or out_dir / "runs", seed, adaptive)
        record["provenance"] = results["provenance"]
        results["records"].append(record)
        results["records"] = sorted(results["records"], key=lambda r: (r["room"], r["family"], r["value"], r["seed"]))
        path.write_text(json.dumps(results, indent=2))  # resumable
    return finish(results, out_dir, requested_key)


def finish(results: dict, out_dir: Path, requested_key: Optional[str] = None) -> dict:
    """PSNR lost against the undefended victims, the leakage key, frontier.json and frontier.png."""
    results["records"] = with_loss(results)
    results["leakage_key"] = leakage_key(results["records"], requested_key)
    (out_dir / "frontier.json").write_text(json.dumps(results, indent=2))
    frontier_figure.plot(results, out_dir / "frontier.png", results["leakage_key"], LABELS)
    return results


def load(path: Path, flag: str = "--merge") -> dict:
    """A ``frontier.json`` (one line naming ``flag`` when the file is missing, not JSON or not a frontier)."""
    from s2nerf_ns.bench.report import load_json

    results = load_json(path, flag, "records", "frontier.json")
    if "preset" not in results:
        raise InputError(f"{flag} {path}: JSON but not a frontier.json (it has no 'preset' entry)")
    return results


def merge(sources: Sequence[Path], out_dir: Path, requested_key: Optional[str] = None) -> dict:
    """One frontier from several ``frontier.json`` (e.g. one per worker process); same preset required,
    later duplicates of a (room, family, value, seed, attacker) point are dropped."""
    merged: dict = {"records": [], "sources": []}
    seen = set()
    for source in sources:
        part = load(source)
        if merged.get("preset") not in (None, part["preset"]):
            raise SystemExit(f"{source} holds preset {part['preset']!r}, the others {merged['preset']!r}")
        merged.update({k: part[k] for k in ("preset", "preset_values", "environment") if k in part})
        merged["sources"].append({"path": str(source), "provenance": part.get("provenance"),
                                  "command": part.get("command"), "points": len(part["records"])})
        for record in part["records"]:
            key = (record["room"], record["family"], record["value"], record["seed"], record["adaptive_attacker"])
            if key not in seen:
                seen.add(key)
                merged["records"].append(record)
    merged["records"].sort(key=lambda r: (r["room"], r["family"], r["value"], r["seed"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    return finish(merged, out_dir, requested_key)
