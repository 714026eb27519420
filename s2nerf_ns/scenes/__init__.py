"""Built-in procedurally generated indoor rooms rendered with Mitsuba 3.

Three rooms (``bedroom``, ``office``, ``livingroom``) are assembled from Mitsuba primitives with diffuse /
plastic / rough-plastic materials, procedural textures, area lights (ceiling panels, lamps, windows) and
private items: framed photographs and posters (scikit-image sample photos) and documents with text.
:func:`render_room` writes a handheld-like capture of a room in nerfstudio's "nerfstudio-data" format,
with z-depth maps, private-item masks and off-trajectory "leaked" extra views.

Modules: :mod:`~s2nerf_ns.scenes.catalog` (room names, sizes, eval split, render parameters and cache key),
:mod:`~s2nerf_ns.scenes.textures`, :mod:`~s2nerf_ns.scenes.materials`, :mod:`~s2nerf_ns.scenes.geometry`,
:mod:`~s2nerf_ns.scenes.builder` (the room builder), :mod:`~s2nerf_ns.scenes.layouts` (the three rooms),
:mod:`~s2nerf_ns.scenes.trajectory` (cameras), :mod:`~s2nerf_ns.scenes.renderer` (Mitsuba passes),
:mod:`~s2nerf_ns.scenes.render` (the rendered folder, previews), :mod:`~s2nerf_ns.scenes.cli`.
"""

from s2nerf_ns.scenes.catalog import (
    EVAL_INTERVAL,
    RENDER_VERSION,
    ROOM_NAMES,
    ROOM_SIZES,
    SCENES,
    RoomName,
    RoomRenderParams,
    eval_split_indices,
    params_hash,
    render_params,
    room_aabb,
    room_size,
    validate_eval_interval,
    validate_render_args,
)
from s2nerf_ns.scenes.render import load_room_metadata, render_room, save_preview
from s2nerf_ns.scenes.trajectory import FOV_DEG

__all__ = [
    "EVAL_INTERVAL",
    "FOV_DEG",
    "RENDER_VERSION",
    "ROOM_NAMES",
    "ROOM_SIZES",
    "SCENES",
    "RoomName",
    "RoomRenderParams",
    "eval_split_indices",
    "load_room_metadata",
    "params_hash",
    "render_params",
    "render_room",
    "room_aabb",
    "room_size",
    "save_preview",
    "validate_eval_interval",
    "validate_render_args",
]
