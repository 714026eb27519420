"""Surrogate model attack pipeline: trains the victim exactly like ``splitnerf``/``s2nerf`` and, in the same
run, a curious-server attacker fed only by the gradient channel's observer interface.

This pipeline is the *evaluator*: it may read the ground truth to score the attacker. The attacker itself
(:mod:`s2nerf_ns.attacks`) is a separate object that never receives ground truth or client state.

Next to the attacker, fed the very same :class:`ServerView` of every step, the evaluator runs:

* the **floor** (knows nothing of the scene): the best constant image, and the same surrogate trained with
  ``lambda_g = 0`` (no gradient information, no labels), rendered as ``floor_rgb``;
* the **embedding attack** (gradient-free): a PCA of the server's own ``h`` composited along rays,
  rendered as ``embedding_rgb``;
* the **geometry attacks** (:mod:`s2nerf_ns.attacks.geometry`): the density read-out's depth (``readout_depth``),
  the SMA surrogate's depth (``surrogate_depth``), the shading attack (``shading_rgb``, a colourless picture of
  the read-out's geometry) and the learned inversion (``inversion_rgb``, a network trained on the other built-in
  rooms that turns the read-out's depth into a grayscale view), the last two scored like the colour renders
  (:mod:`s2nerf_ns.integration.geometry_attacks`). Their depth is scored against the ground-truth depth
  (``geometry_*``, :mod:`s2nerf_ns.evaluation.geometry`), over a floor of the best constant depth, the
  gradient-free surrogate's depth (``floor_depth``) and the scene box's far side (where the rays end).

Every render is scored with :func:`~s2nerf_ns.evaluation.leakage.score_image` under one colour map per
render, fitted once per scene on a few training views (stored in the checkpoint so ``ns-eval`` uses the same
map), and on the private-item masks where the dataparser has them. ``leakage_*`` = best attack minus the
floor (best of the gradient, embedding, shading and inversion attacks); ``gradient_share_*`` = the gradient attack minus
the embedding attack; ``geometry_leakage_*`` = the floor's depth error minus the best geometry attack's.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Literal, Optional, Tuple, Type

import numpy as np
import torch

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.utils import writer
from torch.cuda.amp.grad_scaler import GradScaler

from s2nerf_ns.attacks.embedding import EmbeddingAttack
from s2nerf_ns.attacks.surrogate import SurrogateAttackConfig, SurrogateAttacker
from s2nerf_ns.evaluation import geometry as geo
from s2nerf_ns.evaluation.figures import save_image_grid
from s2nerf_ns.evaluation.leakage import ColourMap, floor_scores, leakage_metrics, score_image
from s2nerf_ns.evaluation.private_masks import load_masks, read_mask
from s2nerf_ns.evaluation.run_scores import aggregate, derived_leakage
from s2nerf_ns.integration.geometry_attacks import GEOMETRY_ATTACKS, GEOMETRY_FLOORS, GeometryAttacks
from s2nerf_ns.integration.split_pipeline import SplitPipeline, SplitPipelineConfig
from s2nerf_ns.protocol.channel import ServerView

RENDERS: Dict[str, str] = {"attack": "attack_rgb", "floor_surrogate": "floor_rgb", "embedding_attack": "embedding_rgb",
                           "shading_attack": "shading_rgb", "inversion_attack": "inversion_rgb"}
"""Metric prefix -> server render scored under it (``inversion_rgb`` is made per image from ``readout_depth``)."""
DUMMY_MAPS = ("dummy", "dummy_floor_surrogate")
"""Colour maps of the dummy images (the attacker's, and the lambda_g = 0 surrogate's)."""
MAP_NAMES = tuple(RENDERS) + DUMMY_MAPS
GRID_PANELS: Dict[str, str] = {"gt": "ground truth", "rgb": "victim", "attack_rgb": "gradient attack",
                               "floor_rgb": "floor surrogate", "embedding_rgb": "embedding attack",
                               "shading_rgb": "shading attack", "inversion_rgb": "inversion attack"}
"""Panels of each eval view's ``attack`` image, left to right (render key -> label; absent renders are skipped)."""
COLOUR_ATTACKS = ("attack", "embedding_attack", "shading_attack", "inversion_attack")
"""The attacks whose best defines ``leakage_*``."""


class _TrackedLoader:
    """Wraps an eval dataloader: tells the pipeline which image is being scored (for its private mask)."""

    def __init__(self, loader, pipeline: "AttackPipeline") -> None:
        self.loader, self.pipeline = loader, pipeline

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        try:
            for camera, batch in self.loader:
                self.pipeline._eval_image_idx = int(batch["image_idx"])
                yield camera, batch
        finally:
            self.pipeline._eval_image_idx = None


@dataclass
class AttackPipelineConfig(SplitPipelineConfig):
    """Victim split training + surrogate model attack in one run."""

    _target: Type = field(default_factory=lambda: AttackPipeline)
    attack: SurrogateAttackConfig = field(default_factory=SurrogateAttackConfig)
    """The attacker's options (``--pipeline.attack.preset paper`` for the literal reference settings)."""
    num_dummies_saved: int = 8
    """Training images whose dummy reconstruction is saved (next to the ground truth) and scored at the end."""
    colour_map_views: int = 4
    """Training views on which each render's (and the dummies') scene colour map is fitted."""
    embedding_reservoir: int = 16384
    """Per-sample embeddings kept for the embedding attack's PCA."""
    inversion: bool = True
    """Run the learned inversion attack (trained on the other built-in rooms; only with ``s2nerf-rooms``)."""
    inversion_steps: int = 400
    """Training steps of the inversion network (at the end of training, or at the first ns-eval)."""
    inversion_seconds: float = 120.0
    """Wall-time bound of the inversion network's training."""


class AttackPipeline(GeometryAttacks, SplitPipeline):
    """SplitPipeline + attacker + floor + embedding attack + their scoring. The attackers are built without
    references to the client or images."""

    config: AttackPipelineConfig

    def __init__(self, config: AttackPipelineConfig, device: str, test_mode: Literal["test", "val", "inference"] = "val",
                 world_size: int = 1, local_rank: int = 0, grad_scaler: Optional[GradScaler] = None):
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        cameras = self.datamanager.train_dataset.cameras  # the server was sent these poses
        model = self.split_model
        victim_steps = model.config.run_steps or 0
        if victim_steps <= 0 and config.attack.lr_decay in ("0.1^(t/T)", "0.001^(t/T)"):
            raise ValueError("the attacker's lr decay needs the run's length: train through the method's trainer")
        attacker_args = dict(
            num_images=len(cameras),
            image_height=int(cameras.height.max()),
            image_width=int(cameras.width.max()),
            head_kwargs=model.client_architecture(),
            background_color=model.config.background_color,
            max_steps=victim_steps * config.attack.attacker_steps_per_victim_step,
        )
        self.attacker: torch.nn.Module = config.attack.setup(**attacker_args).to(self.device)
        # a pipeline submodule: saved in checkpoints, in no optimizer group
        floor_config = dataclasses.replace(config.attack, lambda_g=0.0)  # the no-gradient floor, checked as given
        self.floor_attacker = SurrogateAttacker(floor_config, **attacker_args).to(self.device)
        embed_dim = model.client_head.in_dim  # the width of h (public: the server computes h)
        self.embedding_attack = EmbeddingAttack(embed_dim, sample_reservoir=config.embedding_reservoir,
                                                seed=config.attack.seed).to(self.device)
        self.register_buffer("colour_maps", torch.zeros(len(MAP_NAMES), 4, 3, dtype=torch.float64))
        self.register_buffer("colour_maps_fitted", torch.zeros((), dtype=torch.long))
        model.register_server_render("attack_rgb", lambda *rays: self.surrogate.render(*rays))
        model.register_server_render("floor_rgb", lambda *rays: self.floor_attacker.render(*rays))
        model.register_server_render("embedding_rgb", lambda h, *rest: self.embedding_attack.render(h))
        self.setup_geometry_attacks(embed_dim, attacker_args["head_kwargs"])
        model.register_eval_image_hook(self.score_attack_image)
        self._received: List[ServerView] = []
        model.channel.add_observer(self._received.append)  # what the server keeps of each step
        self.attack_seconds = 0.0
        self.evaluator_seconds = 0.0  # floor surrogate + embedding attack: measurement, not the attacker's cost
        self.attack_steps = 0
        self._attackers_changed = False
        self._eval_image_idx: Optional[int] = None
        self._private_rows: List[Dict[str, float]] = []
        self._mask_cache: Dict[Tuple[str, int], Optional[torch.Tensor]] = {}

    @property
    def surrogate(self) -> SurrogateAttacker:
        """The surrogate model attacker (the whole attacker here; wrapped by the scene-aided pipeline)."""
        return self.attacker.surrogate if hasattr(self.attacker, "surrogate") else self.attacker  # type: ignore

    # ------------------------------------------------------------------------------------------ masks, maps
    def private_mask(self, split: str, index: int, height: int, width: int) -> Optional[torch.Tensor]:
        """EVALUATION: the private-item mask of a train/eval view (None when the dataparser has no masks)."""
        key = (split, index)
        if key not in self._mask_cache:
            dataset = self.datamanager.train_dataset if split == "train" else self.datamanager.eval_dataset
            files = load_masks(dataset)
            self._mask_cache[key] = read_mask(files[index], height, width) if files and index < len(files) else None
        return self._mask_cache[key]

    def colour_map(self, name: str) -> Optional[ColourMap]:
        if not int(self.colour_maps_fitted):
            return None
        return ColourMap(self.colour_maps[MAP_NAMES.index(name)].cpu())

    def colour_map_view_indices(self) -> List[int]:
        n = len(self.datamanager.train_dataset)
        k = min(self.config.colour_map_views, n)
        return sorted(set(np.linspace(0, n - 1, k + 2)[1:-1].round().astype(int).tolist())) or [0]

    @torch.no_grad()
    def fit_colour_maps(self) -> None:
        """EVALUATION: one affine colour map per render (and for the dummies), fitted on a few training views'
        renders against their ground truth, stored in a buffer (so in the checkpoint, for ``ns-eval``)."""
        dataset = self.datamanager.train_dataset
        preds: Dict[str, List[torch.Tensor]] = {name: [] for name in MAP_NAMES}
        gts = []
        was_training = self.training
        self.eval()
        for i in self.colour_map_view_indices():
            camera = dataset.cameras[i : i + 1].to(self.device)
            outputs = self.model.get_outputs_for_camera(camera)
            self.add_image_attacks(outputs, camera.to("cpu"))
            gt = dataset.get_image_float32(i)[..., :3]
            gts.append(gt)
            for prefix, key in RENDERS.items():
                if key in outputs:  # (no inversion without public rooms)
                    preds[prefix].append(outputs[key].cpu())
            h, w = gt.shape[:2]
            preds["dummy"].append(self.surrogate.dummy[i, :h, :w].detach().cpu())
            preds["dummy_floor_surrogate"].append(self.floor_attacker.dummy[i, :h, :w].detach().cpu())
        if was_training:
            self.train()
        for j, name in enumerate(MAP_NAMES):
            fitted = ColourMap.fit(preds[name], gts) if preds[name] else ColourMap.identity()
            self.colour_maps[j] = fitted.coef.to(self.colour_maps)
        self.colour_maps_fitted.fill_(1)
        self._attackers_changed = False

    def ensure_colour_maps(self) -> None:
        """Fit the scene colour maps unless they are fitted for the attackers' current state."""
        if not int(self.colour_maps_fitted) or self._attackers_changed:
            self.fit_colour_maps()

    # ------------------------------------------------------------------------------------------- scoring
    def score_attack_image(self, outputs: Dict[str, torch.Tensor], image: torch.Tensor):
        """EVALUATION ONLY: the attacker's, the floor's and the embedding attack's renders of an eval view
        against its ground truth (private-item scores are collected apart and averaged ignoring NaN)."""
        attack = outputs["attack_rgb"]
        metrics = dict(self.split_model.image_metrics(attack, image, "attack_"))
        metrics.update(leakage_metrics(attack, image, "attack_"))
        mask = None
        if self._eval_image_idx is not None:
            mask = self.private_mask("eval", self._eval_image_idx, image.shape[0], image.shape[1])
            index = self._eval_image_idx
            self.add_image_attacks(outputs, self.datamanager.eval_dataset.cameras[index : index + 1])
        private: Dict[str, float] = {}
        for prefix, key in RENDERS.items():
            if key not in outputs:  # the inversion: only on tracked eval views, with public rooms
                continue
            scores = score_image(outputs[key], image, self.colour_map(prefix), mask, f"{prefix}_")
            metrics.update({k: v for k, v in scores.items() if not k.startswith(f"{prefix}_private_")})
            private.update({k: v for k, v in scores.items() if k.startswith(f"{prefix}_private_")})
        ident = ColourMap.identity() if int(self.colour_maps_fitted) else None
        scores = floor_scores(image, ident, mask, "floor_constant_")
        metrics.update({k: v for k, v in scores.items() if not k.startswith("floor_constant_private_")})
        private.update({k: v for k, v in scores.items() if k.startswith("floor_constant_private_")})
        images = {}
        if self._eval_image_idx is not None:
            geometry, images["geometry"] = self.score_geometry(outputs, self._eval_image_idx, mask)
            metrics.update({k: v for k, v in geometry.items() if "_private_" not in k})
            private.update({k: v for k, v in geometry.items() if "_private_" in k})
        if mask is not None:
            self._private_rows.append(private)
        panels = {"gt": image, **outputs}
        images["attack"] = torch.cat([panels[k] for k in GRID_PANELS if k in panels], dim=1)
        return metrics, images

    def get_average_eval_image_metrics(self, step: Optional[int] = None, output_path: Optional[Path] = None,
                                       get_std: bool = False):
        """nerfstudio's averages over the eval views, plus private-item scores (NaN-free), the floor, the
        leakage over it and the gradient channel's share. This is what ``ns-eval`` reports."""
        self.ensure_colour_maps()
        self._private_rows = []
        loader = _TrackedLoader(self.datamanager.fixed_indices_eval_dataloader, self)
        metrics = self.get_average_image_metrics(loader, "eval", step, output_path, get_std)
        private = aggregate(self._private_rows)
        metrics.update(private)
        metrics["private_num_views"] = float(len(self._private_rows))
        metrics.update(derived_leakage(metrics, COLOUR_ATTACKS))
        metrics.update(geo.geometry_leakage(metrics, GEOMETRY_ATTACKS, GEOMETRY_FLOORS))
        metrics.update(geo.geometry_leakage_vs_victim(metrics, GEOMETRY_ATTACKS, GEOMETRY_FLOORS))
        metrics.update(self.readout_stats())
        return metrics

    # ------------------------------------------------------------------------------------------ training
    def run_attacker(self, step: int) -> None:
        """After the victim's step: the attacker (then, timed apart, the floor and the embedding attack)
        processes what the server received."""
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()  # the victim's queued work is not the attacker's
        start = time.perf_counter()
        for view in self._received:
            self.surrogate.observe(view)
        if cuda:
            torch.cuda.synchronize()
        middle = time.perf_counter()
        self.attack_seconds += middle - start
        for view in self._received:
            self.floor_attacker.observe(view)
            self.embedding_attack.observe_view(view)
            self.geometry.observe(view)
        self._received.clear()
        if cuda:
            torch.cuda.synchronize()
        self.evaluator_seconds += time.perf_counter() - middle
        self.attack_steps += 1
        self._attackers_changed = True
        if step % 50 == 0:
            for key, value in self.surrogate.last_stats.items():
                writer.put_scalar(name=f"Attack/{key}", scalar=value, step=step)
            writer.put_scalar(name="Attack/seconds_per_step", scalar=self.attack_seconds / self.attack_steps, step=step)

    def replay_once(self) -> float:
        """Attacker-only replay epochs after training (run once, also for the floor); returns their seconds."""
        if getattr(self, "_replay_seconds", None) is None:
            start = time.perf_counter()
            self.surrogate.run_replay()
            self._replay_seconds = time.perf_counter() - start
            self.floor_attacker.run_replay()
            self._attackers_changed = True
        return self._replay_seconds

    def finish_attack(self, step: int) -> None:
        """After training: attacker-only replay steps; then the scene colour maps are fitted on the final
        attackers, and the eval scores and the dummy images' scores are written to ``attack_summary.json``."""
        replay_seconds = self.replay_once()
        self.fit_colour_maps()
        if self.run_dir is None:
            return
        folder = self.run_dir / "attack"
        folder.mkdir(parents=True, exist_ok=True)
        eval_metrics = self.get_average_eval_image_metrics()
        summary: Dict[str, object] = {
            "attack_config": {k: str(v) for k, v in vars(self.config.attack).items() if not k.startswith("_")},
            "attacker_steps": int(self.surrogate.step_count),
            "attacker_seconds_per_victim_step": self.attack_seconds / max(self.attack_steps, 1),
            "evaluator_seconds_per_victim_step": self.evaluator_seconds / max(self.attack_steps, 1),
            "replay_seconds": replay_seconds,
            "colour_maps": {name: self.colour_map(name).to_list() for name in MAP_NAMES},  # type: ignore[union-attr]
            "colour_map_views": self.colour_map_view_indices(),
            "eval_metrics": eval_metrics,
            "geometry_reference": self._geometry_reference,
            "inversion_public_rooms": self.inversion.public_rooms,  # trained on these; never the victim's room
            "dummy_metrics": self.score_dummies(folder),
        }
        (folder / "attack_summary.json").write_text(json.dumps(summary, indent=2))

    @torch.no_grad()
    def score_dummies(self, folder: Optional[Path] = None) -> Dict[str, float]:
        """EVALUATION ONLY (not the attacker): the dummy images (the attacker's copy of the training photos)
        against the true training images, scored like the renders: scene colour map, floor = the best
        constant image and the lambda_g = 0 surrogate's dummies, private masks of the training views."""
        self.ensure_colour_maps()
        dataset = self.datamanager.train_dataset
        n = len(dataset)
        chosen = np.linspace(0, n - 1, min(self.config.num_dummies_saved, n)).round().astype(int)
        rows, scores, private = [], [], []
        self.last_dummy_rows: List[Dict[str, float]] = []  # per image, for benchmarks' confidence intervals
        ident = ColourMap.identity()
        for idx in chosen:
            gt = dataset.get_image_float32(int(idx))[..., :3]
            h, w = gt.shape[:2]
            dummy = self.surrogate.dummy[int(idx), :h, :w].detach().cpu()
            floor_dummy = self.floor_attacker.dummy[int(idx), :h, :w].detach().cpu()
            mask = self.private_mask("train", int(idx), h, w)
            s = dict(leakage_metrics(dummy, gt, "dummy_"))  # legacy keys (per-image fit margins)
            s.update(score_image(dummy, gt, self.colour_map("dummy"), mask, "dummy_attack_"))
            s.update(score_image(floor_dummy, gt, self.colour_map("dummy_floor_surrogate"), mask,
                                 "dummy_floor_surrogate_"))
            s.update(floor_scores(gt, ident, mask, "dummy_floor_constant_"))
            self.last_dummy_rows.append({"image": int(idx), **{k: float(v) for k, v in s.items()}})
            scores.append({k: v for k, v in s.items() if "_private_" not in k})
            if mask is not None:
                private.append({k: v for k, v in s.items() if "_private_" in k})
            rows.append(torch.cat([gt, dummy], dim=1))
        if folder is not None:
            save_image_grid(rows, folder / "dummies_gt_vs_dummy.png")
        out = aggregate(scores)
        out.update(aggregate(private))
        out["dummy_private_num_views"] = float(len(private))
        out.update(derived_leakage(out, ("attack",), out_prefix="dummy_"))
        return out

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        callbacks = super().get_training_callbacks(attrs)
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.run_attacker,
                                          update_every_num_iters=1))
        callbacks.insert(0, TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self.finish_attack))
        return callbacks
