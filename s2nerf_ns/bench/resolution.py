"""How finely a preset can measure the private items' leakage: their size in pixels on the eval views.

A leakage score on a private item is a statistic over its pixels; an item a few dozen pixels large gives a
score whose spread between seeds is as large as the leakage measured (issue 23). This module renders only
the private-item masks of a room's eval views (no colour pass, no training), one item at a time with the
same mask pass as the rooms' own masks (:func:`s2nerf_ns.scenes.renderer.mask_scene_dict`, ``MASK_SPP``,
``MASK_THRESHOLD``), and reports per eval view the private pixels in all, and per visible item its pixels.
``s2nerf-bench resolution --presets cpu judge`` prints the numbers for each preset's rooms.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Sequence

import numpy as np

from s2nerf_ns.bench.common import Preset
from s2nerf_ns.scenes.catalog import EVAL_INTERVAL, VARIANT, eval_split_indices


def item_pixels(scene: str, resolution: int, num_views: int, seed: int = 0,
                eval_interval: int = EVAL_INTERVAL) -> Dict[str, object]:
    """Per eval view of the room rendered at ``resolution`` with ``num_views`` trajectory views: the private
    pixels in all (``view_pixels``) and, per private item visible there, its pixels (``item_pixels``)."""
    import mitsuba as mi

    from s2nerf_ns.scenes.layouts import build_room
    from s2nerf_ns.scenes.renderer import MASK_SPP, MASK_THRESHOLD, mask_scene_dict, sensor
    from s2nerf_ns.scenes.trajectory import trajectory_poses

    previous = mi.variant()
    mi.set_variant(VARIANT)
    try:
        with tempfile.TemporaryDirectory() as textures:
            room = build_room(scene, Path(textures), seed)
            scenes = {s: mi.load_dict(mask_scene_dict(SimpleNamespace(shapes=room.shapes, private_shapes=[s])),
                                      parallel=False, optimize=False) for s in room.private_shapes}
        poses = trajectory_poses(room, num_views, seed)
        views: List[int] = []
        items: List[List[int]] = []
        for index in eval_split_indices(num_views, eval_interval, "val"):
            cam = sensor(poses[index], resolution, MASK_SPP)
            union = np.zeros((resolution, resolution), bool)
            visible = []
            for s, mask_scene in scenes.items():
                view_seed = (int(seed) * 1_000_003 + index) % (2**32)  # as the room's own render of this view
                image = np.array(mi.render(mask_scene, sensor=cam, spp=MASK_SPP, seed=view_seed), dtype=np.float32)
                covered = np.clip(image[..., :3].mean(-1), 0.0, 1.0) >= MASK_THRESHOLD
                if covered.any():
                    visible.append(int(covered.sum()))
                union |= covered
            views.append(int(union.sum()))
            items.append(visible)
    finally:
        if previous is not None and previous != VARIANT:
            mi.set_variant(previous)
    per_item = [n for v in items for n in v]
    return {"room": scene, "resolution": resolution, "num_items": len(room.private_shapes),
            "view_pixels": views, "item_pixels": items,
            "mean_view_pixels": float(np.mean(views)),
            "mean_item_pixels": float(np.mean(per_item)) if per_item else 0.0,
            "median_item_pixels": float(np.median(per_item)) if per_item else 0.0}


def preset_resolution(preset: Preset, rooms: Sequence[str]) -> List[Dict[str, object]]:
    """:func:`item_pixels` of every room at a preset's size."""
    return [item_pixels(room, preset.resolution, preset.num_views) for room in rooms]


def markdown(rows: Sequence[Dict[str, object]], preset_name: str) -> str:
    lines = [f"Private items on the eval views, preset `{preset_name}` (mask pass of the rooms; no training):", "",
             "| room | px | items | private px per eval view (mean) | px per visible item (mean, median) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['room']} | {r['resolution']} | {r['num_items']} | {r['mean_view_pixels']:.0f} | "
                     f"{r['mean_item_pixels']:.0f}, {r['median_item_pixels']:.0f} |")
    return "\n".join(lines) + "\n"
