"""Built-in procedurally generated indoor rooms rendered with Mitsuba 3."""

from s2nerf_ns.scenes.rooms import (
    EVAL_INTERVAL,
    FOV_DEG,
    RENDER_VERSION,
    SCENES,
    load_room_metadata,
    params_hash,
    render_params,
    render_room,
    room_aabb,
    room_size,
    save_preview,
)

__all__ = [
    "EVAL_INTERVAL",
    "FOV_DEG",
    "RENDER_VERSION",
    "SCENES",
    "load_room_metadata",
    "params_hash",
    "render_params",
    "render_room",
    "room_aabb",
    "room_size",
    "save_preview",
]
