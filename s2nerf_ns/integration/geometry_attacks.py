"""The geometry attacks in the attack pipelines: the density read-out, the shading attack and the learned inversion
(:mod:`s2nerf_ns.attacks.geometry`, :mod:`s2nerf_ns.attacks.inversion`), their server renders, and their scoring
against the ground-truth depth (:mod:`s2nerf_ns.evaluation.geometry`).

A mixin of :class:`~s2nerf_ns.integration.attack_pipeline.AttackPipeline` (the evaluator: it may read the ground
truth and the client to score; the attackers it builds receive only what the server holds, plus, for the inversion,
the public rooms' photos and depth, never the victim's room).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from s2nerf_ns.attacks.geometry import DensityReadout, HeadDensity, is_linear_density_head, shade, surrogate_depth
from s2nerf_ns.attacks.inversion import InversionAttack, geometry_features
from s2nerf_ns.evaluation import geometry as geo
from s2nerf_ns.evaluation.image_metrics import luminance

DEPTHS = {"readout": "readout_depth", "surrogate": "surrogate_depth", "floor_surrogate": "floor_depth",
          "floor_box": "ray_last_sample", "victim": "depth"}
"""Geometry name -> depth render scored under ``geometry_<name>_*``. ``floor_box``: every ray ends where it leaves the
scene box (the server's sampler knows the box, nothing of the room); ``victim``: the client's own depth, for
reference (how much of the true geometry the client's model itself holds)."""
GEOMETRY_ATTACKS = ("readout", "surrogate")
GEOMETRY_FLOORS = ("floor_constant", "floor_surrogate", "floor_box")


def camera_rays(camera) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(origins [H, W, 3], unit directions [H, W, 3], c2w [3, 4]) of a one-camera ``Cameras``, on the CPU."""
    rays = camera.generate_rays(camera_indices=0)
    return rays.origins.cpu(), rays.directions.cpu(), camera.camera_to_worlds[0].cpu()


def public_room_views(victim_dataparser, rooms: List[str]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """EVALUATOR, for the inversion attacker: (geometry features, luminance) of the training views of ``rooms``,
    the other built-in rooms (public data an attacker may hold), rendered at the victim's resolution."""
    examples = []
    for room in rooms:
        config = dataclasses.replace(victim_dataparser, scene=room)  # the victim's settings, another room
        outputs = config.setup().get_dataparser_outputs("train")
        meta = outputs.metadata
        for i, path in enumerate(outputs.image_filenames):
            origins, directions, c2w = camera_rays(outputs.cameras[i : i + 1])
            z = geo.reference_depth(meta, i, *directions.shape[:2])
            t = z / (directions @ -c2w[:3, 2]).clamp_min(1e-6)  # z-depth -> distance along the ray
            with Image.open(path) as im:
                rgb = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
            examples.append((geometry_features(t, origins, directions, c2w), luminance(rgb)[..., 0]))
    return examples


class GeometryAttacks:
    """Mixin: builds the geometry attackers, registers their server renders, scores them."""

    def setup_geometry_attacks(self, embed_dim: int, head_kwargs: Dict[str, int]) -> None:
        model, config = self.split_model, self.config
        self.geometry = DensityReadout(embed_dim, linear=is_linear_density_head(head_kwargs),
                                       seed=config.attack.seed).to(self.device)
        if not self.geometry.linear:  # density not linear in h: the read-out uses the SMA surrogate's density
            self.geometry.fallback = HeadDensity(self.surrogate.head)  # reaches the attacker's head only
        model.register_server_render("readout_depth", self.readout_depth)
        model.register_server_render("shading_rgb", self.shading_render)
        model.register_server_render("surrogate_depth", lambda *rays: surrogate_depth(
            self.surrogate.head, self.surrogate.renderer, *rays))
        model.register_server_render("floor_depth", lambda *rays: surrogate_depth(
            self.floor_attacker.head, self.floor_attacker.renderer, *rays))
        model.register_server_render("ray_last_sample", lambda h, o, d, bins: (bins[:, -2:-1] + bins[:, -1:]) / 2)
        self.inversion = InversionAttack(seed=config.attack.seed).to(self.device)
        self._geometry_reference = "none"  # what the eval views' depth was scored against (ground_truth / victim)

    def public_rooms(self) -> List[str]:
        """The built-in rooms other than the victim's (none unless the victim trains on ``s2nerf-rooms``)."""
        from s2nerf_ns.scenes.catalog import ROOM_NAMES

        victim = getattr(self.config.datamanager.dataparser, "scene", None)
        if not self.config.inversion or victim not in ROOM_NAMES:
            return []
        return [room for room in ROOM_NAMES if room != victim]

    def ensure_inversion(self) -> bool:
        """Train the inversion attacker on the public rooms once (it is in the checkpoint); False when unavailable."""
        if self.inversion.is_trained:
            return True
        rooms = self.public_rooms()
        if not rooms:
            return False
        self.inversion.fit(public_room_views(self.config.datamanager.dataparser, rooms), rooms,
                           self.config.inversion_steps, self.config.inversion_seconds)
        return True

    def add_image_attacks(self, outputs: Dict[str, torch.Tensor], camera) -> None:
        """SERVER, per image: the inversion attack's view ``inversion_rgb`` from the read-out's depth at that pose."""
        if "readout_depth" not in outputs or not self.ensure_inversion():
            return
        origins, directions, c2w = camera_rays(camera)
        depth = outputs["readout_depth"][..., 0].cpu()
        outputs["inversion_rgb"] = self.inversion.render(geometry_features(depth, origins, directions, c2w)).to(
            outputs["readout_depth"].device)

    def ensure_readout(self) -> Optional[DensityReadout]:
        """SERVER: the density read-out, (re)fitted on the server's current fields when new gradients arrived;
        None before any training step."""
        if int(self.geometry.steps_seen) == 0:
            return None
        if not self.geometry.is_fitted or self.geometry.is_stale:
            self.geometry.fit(self.split_model.server.embed)
        return self.geometry

    def readout_depth(self, h: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor,
                      bins: torch.Tensor) -> torch.Tensor:
        """SERVER render: the read-out's depth [R, 1] (composited like the colour; NaN before any training step)."""
        readout = self.ensure_readout()
        if readout is None:
            return torch.full_like(origins[:, :1], math.nan)
        return readout.render(h, origins, directions, bins)["depth"]

    def shading_render(self, h: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor,
                       bins: torch.Tensor) -> torch.Tensor:
        """SERVER render: the shading attack [R, 3] (normals from the server's own field's density gradient)."""
        readout = self.ensure_readout()
        if readout is None:
            return torch.full_like(origins, 0.5)
        out = readout.render(h, origins, directions, bins, getattr(self.split_model.server, "field", None))
        return shade(out.get("normal", torch.zeros_like(origins)), directions, out["depth"], float(readout.depth_scale))

    def score_geometry(self, outputs: Dict[str, torch.Tensor], index: int, mask: Optional[torch.Tensor]
                       ) -> Tuple[Dict[str, float], torch.Tensor]:
        """EVALUATION: the geometry attacks' and floors' z-depth of an eval view against the ground truth (or the
        victim's depth), and a picture (reference | read-out | surrogate depth, gray, near = bright)."""
        camera = self.datamanager.eval_dataset.cameras[index : index + 1]
        directions = camera.generate_rays(camera_indices=0).directions.cpu()
        c2w = camera.camera_to_worlds[0].cpu()
        height, width = directions.shape[:2]
        ref = geo.reference_depth(self.datamanager.eval_dataset._dataparser_outputs.metadata, index, height, width)
        self._geometry_reference = "ground_truth" if ref is not None else "victim"
        acc = outputs["accumulation"].clamp(0, 1)  # the victim's depth, composited like its colour (last sample)
        victim = outputs["depth"] * acc + (1 - acc) * outputs["ray_last_sample"]
        depths = {name: geo.z_depth((victim if key == "depth" else outputs[key])[..., 0].cpu(), directions, c2w)
                  for name, key in DEPTHS.items()}
        if ref is None:
            ref = depths["victim"]
        scores = geo.score_view(depths, ref, mask)
        # How exactly the attacks and the floors reproduce the client's own geometry, whatever the ground truth.
        others = {name: depth for name, depth in depths.items() if name != "victim"}
        scores.update(geo.score_view_vs_victim(others, depths["victim"], mask))
        return scores, geo.depth_picture([ref, depths["readout"], depths["surrogate"]])

    @torch.no_grad()
    def readout_stats(self) -> Dict[str, float]:
        """EVALUATION: the read-out's own numbers; for a linear head also scored against the client's true last
        density layer ``w`` (the evaluator may read the client): ``|cos(u, w)|``, ``|a| / |w|``, sign right."""
        g = self.geometry
        out = {"geometry_readout_confidence": float(g.confidence), "geometry_readout_support_error": float(g.fit_error),
               "geometry_readout_linear": float(g.linear),
               "geometry_reference_victim": float(self._geometry_reference == "victim")}
        layers = self.split_model.client_head.density_layers
        if g.linear and g.is_fitted and len(layers) == 1:
            out.update(geo.readout_against_client(g.direction, float(g.scale), layers[0].weight[0].detach()))
        return out

