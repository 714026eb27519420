"""Nerfstudio dataparser for the built-in Mitsuba rooms (``s2nerf-rooms``).

On first use the requested room is rendered (with a progress bar) into a cache folder
``<cache_dir>/<scene>-<res>px-<spp>spp-<hash>`` whose name contains a hash of every rendering
parameter; later runs load it.  A corrupt / incomplete cache is detected and re-rendered.

Coordinates: the world (metres, +z up) is translated to the room centre and uniformly scaled by
``s = 1 / (1.02 * max half-extent)`` so the room AABB plus a 2% margin is the scene box and fits in
``[-1, 1]^3``:  ``p_normalized = s * (p_world - centre)``.  This is reported as
``dataparser_transform = [I | -centre]`` and ``dataparser_scale = s`` (nerfstudio's convention: the
transform is applied first, then the scale).

Besides nerfstudio's fields, the outputs carry ``metadata["depth_filenames"]`` (z-depth, metres) and
``metadata["private_mask_filenames"]`` (uint8 PNG masks, 255 where a private item is visible), both aligned
with ``image_filenames``; :meth:`RoomsDataParser.get_extra_views` gives the off-trajectory views likewise.
The private masks are deliberately not nerfstudio's ``mask_filenames`` (those pixels are still trained on).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple, Type

import numpy as np
import torch
from PIL import Image

from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from s2nerf_ns.data.checks import check_image_size, check_room_data
from s2nerf_ns.errors import DataSetupError, InputError
from s2nerf_ns.evaluation.image_metrics import MIN_IMAGE_SIZE
from s2nerf_ns.scenes.catalog import EVAL_INTERVAL, RoomRenderParams, eval_split_indices, validate_eval_interval
from s2nerf_ns.scenes.render import render_room

logger = logging.getLogger(__name__)

SCENE_BOX_MARGIN = 0.02
"""Relative margin added around the room AABB for the scene box."""


def _default_cache_dir() -> Path:
    return Path(os.environ.get("S2NERF_CACHE", "~/.cache/s2nerf-ns/rooms")).expanduser()


@dataclass
class RoomsDataParserConfig(RoomRenderParams, DataParserConfig):
    """Built-in procedurally generated indoor rooms rendered with Mitsuba 3 (rendered on first use, then cached).

    The rendering fields (scene, resolution, spp, num_views, num_extra_views, seed) and their validation
    come from :class:`~s2nerf_ns.scenes.catalog.RoomRenderParams`."""

    _target: Type = field(default_factory=lambda: RoomsDataParser)
    """target class to instantiate"""
    eval_interval: int = EVAL_INTERVAL
    """Every eval_interval-th view (index % eval_interval == 0) is held out for val/test."""
    cache_dir: Path = field(default_factory=_default_cache_dir)
    """Folder holding rendered rooms (default: $S2NERF_CACHE or ~/.cache/s2nerf-ns/rooms)."""
    data: Path = Path()
    """Optional (empty: the built-in room from the cache): load an already rendered room folder (transforms.json + s2nerf_room.json) instead of the cache."""

    def __post_init__(self) -> None:
        try:  # one line naming the flag: "s2nerf-rooms --spp: spp must be ..."
            super().__post_init__()  # validates the rendering fields, naming the flag ("--spp: ...")
        except ValueError as e:
            raise InputError(f"s2nerf-rooms {e}") from None
        try:
            validate_eval_interval(self.eval_interval, self.num_views)
        except ValueError as e:
            views = f" --num-views {self.num_views}" if "num_views" in str(e) else ""
            raise InputError(f"s2nerf-rooms{views} --eval-interval {self.eval_interval}: {e}") from None
        check_image_size(self.resolution, self.resolution, f"s2nerf-rooms --resolution {self.resolution}",
                         f"give --resolution {MIN_IMAGE_SIZE} or more")
        self.cache_dir = Path(self.cache_dir).expanduser()
        if self.data is not None:
            self.data = Path(self.data).expanduser()
            check_room_data(self.data)  # a plain nerfstudio folder: one line pointing to nerfstudio-data

    def check_data(self, data) -> None:
        """``ns-train --data FOLDER`` given over this config's ``data`` (called by
        :func:`~s2nerf_ns.data.checks.check_data`): a rendered room folder, or nothing (the built-in room)."""
        check_room_data(data)

    # -- cache (render_params() and cache_key() come from RoomRenderParams) --------------------------
    def cache_path(self) -> Path:
        return self.cache_dir / self.cache_key()


class ExtraViews(NamedTuple):
    """Off-trajectory "leaked" views in the dataparser's normalised frame (ground truth for scoring)."""

    image_filenames: List[Path]
    cameras: Cameras
    depth_filenames: List[Path]
    private_mask_filenames: List[Path]
    """uint8 PNG masks aligned with the images: 255 where a private item (photo, poster, document) is visible."""


def check_room_folder(folder: Path, expected_params: Optional[dict] = None) -> Optional[str]:
    """Return ``None`` if ``folder`` holds a complete rendered room, else a description of the problem."""
    folder = Path(folder)
    try:
        with open(folder / "transforms.json") as f:
            meta = json.load(f)
        with open(folder / "s2nerf_room.json") as f:
            room = json.load(f)
        frames = meta["frames"]
        if not frames:
            return "transforms.json has no frames"
        if len(frames) != int(room["num_views"]):
            return f"transforms.json has {len(frames)} frames, expected {room['num_views']}"
        if expected_params is not None:
            got = {k: room["params"].get(k) for k in expected_params}
            if got != expected_params:
                return f"rendering parameters differ: {got} != {expected_params}"
        extra_frames: list = []
        if int(room.get("extra_views", {}).get("count", 0)) > 0:
            with open(folder / "extra" / "extra_transforms.json") as f:
                extra_frames = json.load(f)["frames"]
            if len(extra_frames) != int(room["extra_views"]["count"]):
                return "extra_transforms.json is incomplete"
        h, w = int(meta["h"]), int(meta["w"])
        for base, fr_list in ((folder, frames), (folder / "extra", extra_frames)):
            for fr in fr_list:
                np.asarray(fr["transform_matrix"], dtype=np.float64).reshape(4, 4)
                with Image.open(base / fr["file_path"]) as im:
                    im.load()
                    if im.size != (w, h):
                        return f"{fr['file_path']} has size {im.size}, expected {(w, h)}"
                depth = np.load(base / fr["depth_file_path"], allow_pickle=False)
                if depth.shape != (h, w):
                    return f"{fr['depth_file_path']} has shape {depth.shape}, expected {(h, w)}"
                if "private_mask_file_path" not in fr:
                    return f"{fr['file_path']} has no private mask (rendered by an older version; re-render the room)"
                with Image.open(base / fr["private_mask_file_path"]) as mask:
                    mask.load()
                    if mask.size != (w, h) or mask.mode != "L":
                        return (f"{fr['private_mask_file_path']} is a {mask.mode} image of size {mask.size}, "
                                f"expected an L (uint8) image of size {(w, h)}")
    except Exception as e:  # noqa: BLE001 - any failure means "not a valid room folder"
        return f"{type(e).__name__}: {e}"
    return None


@dataclass
class RoomsDataParser(DataParser):
    """Dataparser for the built-in Mitsuba rooms."""

    config: RoomsDataParserConfig

    def __init__(self, config: RoomsDataParserConfig):
        super().__init__(config=config)
        self.config = config
        self._folder: Optional[Path] = None

    # -- data folder --------------------------------------------------------------------------------
    def data_folder(self) -> Path:
        """The folder with the rendered room (rendered / re-rendered into the cache when needed)."""
        if self._folder is not None:
            return self._folder
        cfg = self.config
        if cfg.data is not None and Path(cfg.data) not in (Path(""), Path(".")):
            folder = Path(cfg.data)
            if folder.suffix == ".json":
                folder = folder.parent
            problem = check_room_folder(folder)
            if problem is not None:
                raise DataSetupError(f"--data {folder} is not a valid s2nerf room folder: {problem}")
        else:
            folder = cfg.cache_path()
            if folder.exists() or folder.is_symlink():
                problem = check_room_folder(folder, cfg.render_params())
                if problem is not None:
                    logger.warning("Cached room %s is corrupt or incomplete (%s); re-rendering it.", folder, problem)
                    self._render(folder)
            else:
                self._render(folder)
        self._folder = folder
        return folder

    def _render(self, folder: Path) -> None:
        cfg = self.config
        logger.info("Rendering room %r into %s", cfg.scene, folder)
        render_room(cfg.scene, folder, progress=True, **cfg.render_kwargs())

    def room_metadata(self) -> dict:
        with open(self.data_folder() / "s2nerf_room.json") as f:
            return json.load(f)

    def normalization(self) -> Tuple[np.ndarray, float]:
        """(room centre in world units, scale) such that ``p_norm = scale * (p_world - centre)``."""
        aabb = np.asarray(self.room_metadata()["room_aabb"], dtype=np.float64)
        centre = aabb.mean(axis=0)
        half = (aabb[1] - aabb[0]) / 2
        scale = 1.0 / ((1.0 + SCENE_BOX_MARGIN) * float(half.max()))
        return centre, scale

    def _cameras(self, meta: dict, frames: list, centre: np.ndarray, scale: float) -> Cameras:
        c2w = np.stack([np.asarray(f["transform_matrix"], dtype=np.float64) for f in frames])[:, :3, :4].copy()
        c2w[:, :3, 3] = (c2w[:, :3, 3] - centre) * scale
        n = len(frames)
        return Cameras(
            camera_to_worlds=torch.from_numpy(c2w.astype(np.float32)),
            fx=torch.full((n, 1), float(meta["fl_x"])),
            fy=torch.full((n, 1), float(meta["fl_y"])),
            cx=torch.full((n, 1), float(meta["cx"])),
            cy=torch.full((n, 1), float(meta["cy"])),
            width=torch.full((n, 1), int(meta["w"]), dtype=torch.int64),
            height=torch.full((n, 1), int(meta["h"]), dtype=torch.int64),
            camera_type=CameraType.PERSPECTIVE,
        )

    def split_indices(self, num_frames: int, split: str) -> List[int]:
        return eval_split_indices(num_frames, self.config.eval_interval, split)

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        folder = self.data_folder()
        with open(folder / "transforms.json") as f:
            meta = json.load(f)
        frames = meta["frames"]  # in view order (frame_00000, frame_00001, ...)
        indices = self.split_indices(len(frames), split)
        frames = [frames[i] for i in indices]
        centre, scale = self.normalization()
        aabb = np.asarray(self.room_metadata()["room_aabb"], dtype=np.float64)
        half = (aabb[1] - aabb[0]) / 2 * (1.0 + SCENE_BOX_MARGIN)
        box = np.clip(np.stack([-half, half]) * scale, -1.0, 1.0)
        transform = torch.zeros(3, 4)
        transform[:, :3] = torch.eye(3)
        transform[:, 3] = torch.from_numpy(-centre).float()
        return DataparserOutputs(
            image_filenames=[folder / f["file_path"] for f in frames],
            cameras=self._cameras(meta, frames, centre, scale),
            scene_box=SceneBox(aabb=torch.from_numpy(box).float()),
            dataparser_transform=transform,
            dataparser_scale=float(scale),
            metadata={
                "depth_filenames": [folder / f["depth_file_path"] for f in frames],
                "private_mask_filenames": [folder / f["private_mask_file_path"] for f in frames],
                # nerfstudio's DepthDataset multiplies depth by depth_unit_scale_factor * dataparser_scale, so the
                # files (metres) need a unit factor of 1.0 to end up in normalised units there.
                "depth_unit_scale_factor": 1.0,
                # depth_in_file * depth_to_normalized_scale = z-depth in the normalised (scene box) frame.
                "depth_to_normalized_scale": float(scale),
                "room": self.room_metadata()["room"],
                "split_indices": indices,
            },
        )

    def get_extra_views(self) -> ExtraViews:
        """The off-trajectory "leaked" views (images, cameras in the normalised frame, depth files, private masks)."""
        folder = self.data_folder()
        with open(folder / "extra" / "extra_transforms.json") as f:
            meta = json.load(f)
        frames = meta["frames"]
        centre, scale = self.normalization()
        if not frames:
            empty = Cameras(camera_to_worlds=torch.zeros(0, 3, 4), fx=float(meta["fl_x"]), fy=float(meta["fl_y"]),
                            cx=float(meta["cx"]), cy=float(meta["cy"]), width=int(meta["w"]), height=int(meta["h"]))
            return ExtraViews([], empty, [], [])
        return ExtraViews(
            image_filenames=[folder / "extra" / f["file_path"] for f in frames],
            cameras=self._cameras(meta, frames, centre, scale),
            depth_filenames=[folder / "extra" / f["depth_file_path"] for f in frames],
            private_mask_filenames=[folder / "extra" / f["private_mask_file_path"] for f in frames],
        )


rooms_dataparser = DataParserSpecification(
    config=RoomsDataParserConfig(),
    description="S2NeRF built-in indoor rooms (bedroom / office / livingroom) rendered with Mitsuba 3, cached on first use",
)
