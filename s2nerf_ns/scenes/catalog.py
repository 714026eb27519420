"""Scene facts of the built-in rooms, each defined once.

* the room names (:data:`RoomName`, :data:`ROOM_NAMES`) and sizes (:data:`ROOM_SIZES`),
* the evaluation split (:data:`EVAL_INTERVAL`, :func:`eval_split_indices`),
* the rendering parameters (:class:`RoomRenderParams`, :func:`render_params`, :func:`params_hash`,
  :func:`validate_render_args`) and :data:`RENDER_VERSION`, which together key the render cache.

This module imports neither Mitsuba nor nerfstudio, so configs and CLIs can use it cheaply.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import dataclass
from typing import Any, Dict, List, Literal, Tuple

import numpy as np

RENDER_VERSION = 2
"""Bump whenever the room layouts / rendering / folder contents change, so cached renders are invalidated.

History: 1 = first release; 2 = adds the private-item masks (``masks/``); images and depths unchanged."""

RoomName = Literal["bedroom", "office", "livingroom"]
"""Type of a built-in room name (for configs and CLIs)."""

ROOM_NAMES: Tuple[str, ...] = typing.get_args(RoomName)
"""Names of the built-in rooms, in a fixed order (the order seeds the per-room RNG streams)."""

SCENES: Tuple[str, ...] = ROOM_NAMES
"""Alias of :data:`ROOM_NAMES` (older name)."""

ROOM_SIZES: Dict[str, Tuple[float, float, float]] = {
    "bedroom": (5.0, 4.2, 2.6),
    "office": (5.6, 4.4, 2.7),
    "livingroom": (6.0, 4.8, 2.6),
}
"""(W, D, H) of each room in metres: the room occupies ``[0, W] x [0, D] x [0, H]`` (+z up)."""

assert tuple(ROOM_SIZES) == ROOM_NAMES, "ROOM_SIZES must list every room, in ROOM_NAMES order"

VARIANT = "scalar_rgb"
"""Mitsuba variant of every render (CPU, deterministic)."""

EVAL_INTERVAL = 8
"""Default evaluation split: every ``EVAL_INTERVAL``-th trajectory view (``i % EVAL_INTERVAL == 0``) is held out."""

def check_scene(scene: str) -> None:
    if scene not in ROOM_NAMES:
        raise ValueError(f"Unknown scene {scene!r}; valid scenes are: {', '.join(ROOM_NAMES)}")


def room_size(scene: str) -> Tuple[float, float, float]:
    """(W, D, H) of a room in metres."""
    check_scene(scene)
    return ROOM_SIZES[scene]


def room_aabb(scene: str) -> np.ndarray:
    """Axis-aligned bounding box ``[[0, 0, 0], [W, D, H]]`` of a room in world units (metres)."""
    return np.array([[0.0, 0.0, 0.0], list(room_size(scene))])


def scene_rng(scene: str, seed: int, stream: int) -> np.random.Generator:
    """The RNG of one stream (0: layout, 1: trajectory, 2: extra views) of a room and seed."""
    return np.random.default_rng([int(seed), ROOM_NAMES.index(scene), stream])


# --------------------------------------------------------------------------------------------------
# evaluation split
# --------------------------------------------------------------------------------------------------


def validate_eval_interval(eval_interval: int, num_views: int) -> None:
    if not isinstance(eval_interval, (int, np.integer)) or isinstance(eval_interval, bool) or eval_interval < 2:
        raise ValueError(f"eval_interval must be an integer >= 2, got {eval_interval!r}")
    if eval_interval > num_views:
        raise ValueError(
            f"eval_interval ({eval_interval}) must not exceed num_views ({num_views}), "
            "otherwise only view 0 would be held out"
        )


def eval_split_indices(num_views: int, eval_interval: int = EVAL_INTERVAL, split: str = "train") -> List[int]:
    """Indices of the trajectory views in ``split``: ``val`` / ``test`` are the views with
    ``i % eval_interval == 0``, ``train`` all others."""
    if split == "train":
        return [i for i in range(num_views) if i % eval_interval != 0]
    if split in ("val", "test"):
        return [i for i in range(num_views) if i % eval_interval == 0]
    raise ValueError(f"Unknown split {split!r}; expected 'train', 'val' or 'test'")


# --------------------------------------------------------------------------------------------------
# rendering parameters (the render cache key)
# --------------------------------------------------------------------------------------------------


def validate_render_args(scene: str, resolution: int, spp: int, num_views: int, num_extra_views: int, seed: int) -> None:
    check_scene(scene)
    for name, val in (("resolution", resolution), ("spp", spp), ("num_views", num_views)):
        if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val <= 0:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    if not isinstance(num_extra_views, (int, np.integer)) or num_extra_views < 0:
        raise ValueError(f"num_extra_views must be a non-negative integer, got {num_extra_views!r}")
    if not isinstance(seed, (int, np.integer)) or not (0 <= seed < 2**31):
        raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}")


def render_arg_name(message: str) -> str:
    """The argument a :func:`validate_render_args` message is about (``"scene"``, ``"resolution"``, ...)."""
    return "scene" if message.startswith("Unknown scene") else (message.split() or [""])[0]


def render_params(scene: str, resolution: int, spp: int, num_views: int, num_extra_views: int, seed: int) -> Dict[str, Any]:
    """Every parameter that determines the rendered output (used for the cache key)."""
    return {"scene": scene, "resolution": int(resolution), "spp": int(spp), "num_views": int(num_views),
            "num_extra_views": int(num_extra_views), "seed": int(seed), "render_version": RENDER_VERSION}


def params_hash(params: Dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class RoomRenderParams:
    """The parameters that determine a rendered room (shared by the ``s2nerf-rooms`` dataparser config and
    the ``s2nerf-render-room`` CLI).  Validated on construction."""

    scene: RoomName = "office"
    """Which built-in room."""
    resolution: int = 128
    """Image width and height in pixels."""
    spp: int = 32
    """Path-tracing samples per pixel."""
    num_views: int = 120
    """Number of views on the handheld-like camera trajectory (train + eval)."""
    num_extra_views: int = 4
    """Number of extra off-trajectory views ("leaked" photos, written to extra/), never used for train or eval."""
    seed: int = 0
    """Seed of the layout / trajectory RNG and of the renderer."""

    def __post_init__(self) -> None:
        self.validate_render_params()

    def validate_render_params(self) -> None:
        """Raise ``ValueError("--flag: ...")`` naming the command-line flag of the first invalid field."""
        try:
            validate_render_args(self.scene, self.resolution, self.spp, self.num_views, self.num_extra_views, self.seed)
        except ValueError as e:
            raise ValueError(f"--{render_arg_name(str(e)).replace('_', '-')}: {e}") from None

    def render_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of :func:`s2nerf_ns.scenes.render_room` (besides ``scene`` and the folder)."""
        return {"resolution": self.resolution, "spp": self.spp, "num_views": self.num_views,
                "num_extra_views": self.num_extra_views, "seed": self.seed}

    def render_params(self) -> Dict[str, Any]:
        return render_params(self.scene, self.resolution, self.spp, self.num_views, self.num_extra_views, self.seed)

    def cache_key(self) -> str:
        """Folder name of this render in a cache: ``<scene>-<res>px-<spp>spp-<hash of every parameter>``."""
        return f"{self.scene}-{self.resolution}px-{self.spp}spp-{params_hash(self.render_params())}"
