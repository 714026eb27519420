"""Render a built-in room into a folder in the nerfstudio "nerfstudio-data" format, and previews of it.

Folder layout written by :func:`render_room`::

    transforms.json              intrinsics + one frame per trajectory view, and the default split
    images/frame_XXXXX.png       sRGB uint8 images
    depths/frame_XXXXX.npy       z-depth in metres, float32 (H, W)
    masks/frame_XXXXX.png        private-item masks, uint8 (H, W): 255 where a photo / poster / document is visible
    extra/extra_transforms.json  the off-trajectory "leaked" views (same keys), with extra/images, depths, masks
    textures/                    the textures of the room
    s2nerf_room.json             rendering parameters, room box, private items, lights, timings, versions
    .s2nerf-render-room          marker: this folder was written by render_room, and which entries it holds

Each frame records ``file_path``, ``depth_file_path``, ``private_mask_file_path`` (deliberately *not*
nerfstudio's ``mask_path``, which would exclude those pixels from training) and ``transform_matrix``
(camera-to-world, nerfstudio/OpenGL convention, +z up, metres; see :mod:`s2nerf_ns.scenes.geometry`).
``tests/test_rooms.py`` checks the conventions by reprojecting depth maps between views.

The ``train/val/test_filenames`` of ``transforms.json`` are the default split
(:func:`~s2nerf_ns.scenes.catalog.eval_split_indices` with ``EVAL_INTERVAL``) for nerfstudio's own
``nerfstudio-data`` parser; ``s2nerf-rooms`` computes its split with the same function and its own
``--eval-interval`` instead.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from s2nerf_ns.scenes.catalog import (
    EVAL_INTERVAL,
    VARIANT,
    eval_split_indices,
    render_params,
    room_aabb,
    room_size,
    validate_render_args,
)
from s2nerf_ns.scenes.layouts import build_room
from s2nerf_ns.scenes.renderer import (
    DEPTH_AOVS,
    DEPTH_SPP,
    MASK_SPP,
    MASK_THRESHOLD,
    MAX_DEPTH,
    NEAR_CLIP,
    RR_DEPTH,
    Renderer,
)
from s2nerf_ns.scenes.trajectory import FOV_DEG, extra_poses, intrinsics, trajectory_poses


def _versions() -> Dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("s2nerf-ns", "mitsuba", "drjit", "numpy", "scikit-image", "pillow", "nerfstudio"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _frame_entry(stem: str, c2w: np.ndarray) -> Dict[str, Any]:
    return {"file_path": f"images/{stem}.png", "depth_file_path": f"depths/{stem}.npy",
            "private_mask_file_path": f"masks/{stem}.png",
            "transform_matrix": [[float(v) for v in row] for row in c2w]}


def _camera_header(resolution: int) -> Dict[str, Any]:
    k = intrinsics(resolution)
    return {**k, "w": int(resolution), "h": int(resolution), "camera_model": "OPENCV",
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}


def _metadata(scene: str, resolution: int, spp: int, num_views: int, num_extra_views: int, seed: int, room,
              num_extra: int, times: List[float], total: float, t_setup: float) -> Dict[str, Any]:
    return {
        "format": "s2nerf-room",
        "room": scene,
        "params": {**render_params(scene, resolution, spp, num_views, num_extra_views, seed),
                   "variant": VARIANT, "integrator": {"type": "path", "max_depth": MAX_DEPTH, "rr_depth": RR_DEPTH},
                   "sensor": {"type": "perspective", "fov_deg": FOV_DEG, "fov_axis": "x", "near_clip": NEAR_CLIP},
                   "sampler": "independent", "rfilter": "box", "film": "hdrfilm",
                   "depth_pass": {"integrator": "aov", "aovs": DEPTH_AOVS, "spp": DEPTH_SPP,
                                  "zdepth": "(position - camera_origin) . camera_forward, box-filtered"},
                   "mask_pass": {"integrator": "path", "max_depth": 1, "spp": MASK_SPP, "threshold": MASK_THRESHOLD,
                                 "emitters": "private item shapes only (white area lights)"}},
        "seed": int(seed),
        "units": "metres",
        "world_up": "+z",
        "room_aabb": room_aabb(scene).tolist(),
        "room_size": list(room_size(scene)),
        "depth": "z-depth (distance along the camera's optical axis) in metres, float32 .npy (H, W)",
        "private_masks": "uint8 PNG (H, W): 255 where a private item (photo, poster, document) is visible, else 0",
        "camera_convention": "camera-to-world, nerfstudio/OpenGL (x right, y up, camera looks along -z)",
        "num_views": num_views,
        "nerfstudio_split": {"eval_interval": EVAL_INTERVAL,
                             "note": "train/val/test_filenames in transforms.json are for nerfstudio-data; "
                                     "s2nerf-rooms splits with its own --eval-interval"},
        "extra_views": {"count": num_extra, "transforms": "extra/extra_transforms.json"},
        "private_items": room.private_items,
        "lights": room.lights,
        "num_shapes": len(room.shapes),
        "render_time_s": {"total": total, "setup": t_setup, "mean_per_view": float(np.mean(times)) if times else 0.0,
                          "per_view": [round(t, 4) for t in times]},
        "versions": _versions(),
    }


MARKER = ".s2nerf-render-room"
"""Marker file :func:`render_room` writes into every folder it renders; ``s2nerf-render-room --overwrite``
replaces only folders that hold it (and nothing it does not list)."""
RENDERED_ENTRIES = ("transforms.json", "s2nerf_room.json", "images", "depths", "masks", "extra", "textures")
"""Top-level entries :func:`render_room` writes (besides :data:`MARKER`)."""


def write_marker(folder: Path, extra_entries: Sequence[str] = ()) -> None:
    """Write (or extend) the marker of a rendered folder; ``extra_entries`` are files the CLI added (a preview)."""
    entries = sorted(set(RENDERED_ENTRIES) | set(marker_entries(folder) or ()) | set(extra_entries))
    (Path(folder) / MARKER).write_text(json.dumps({"written_by": "s2nerf-render-room", "entries": entries}, indent=2))


def marker_entries(folder: Path) -> Optional[List[str]]:
    """The entries a folder's marker lists, or ``None`` when the folder has no (valid) marker."""
    try:
        meta = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("written_by") != "s2nerf-render-room":
        return None
    entries = meta.get("entries")
    return [str(e) for e in entries] if isinstance(entries, list) else None


def render_room(scene: str, out_dir: Path, resolution: int = 128, spp: int = 32, num_views: int = 120,
                num_extra_views: int = 4, seed: int = 0, progress: bool = True) -> Path:
    """Render a built-in room into ``out_dir`` (nerfstudio-data format) and return ``out_dir``.

    The folder is written atomically: everything is rendered into a temporary sibling directory that
    is then renamed to ``out_dir`` (an existing ``out_dir`` is replaced: callers decide whether it may be; the
    ``s2nerf-render-room`` command replaces only folders with this function's :data:`MARKER`).
    """
    validate_render_args(scene, resolution, spp, num_views, num_extra_views, seed)
    import mitsuba as mi
    from tqdm import tqdm

    out_dir = Path(out_dir).expanduser().absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    prev_variant = mi.variant()
    try:
        mi.set_variant(VARIANT)
        t_start = time.perf_counter()
        room = build_room(scene, tmp / "textures", seed)
        renderer = Renderer(room, resolution, spp)
        t_setup = time.perf_counter() - t_start
        poses = trajectory_poses(room, num_views, seed)
        extras = extra_poses(room, num_extra_views, seed)
        for sub in ("images", "depths", "masks", "extra/images", "extra/depths", "extra/masks"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)

        times: List[float] = []
        frames, extra_frames = [], []
        bar = tqdm(total=num_views + num_extra_views, desc=f"Rendering {scene} ({resolution}px, {spp} spp)",
                   unit="view", disable=not progress)
        jobs = [(i, poses[i], False) for i in range(num_views)] + [(k, extras[k], True) for k in range(len(extras))]
        for idx, c2w, is_extra in jobs:
            t0 = time.perf_counter()
            view_seed = (int(seed) * 1_000_003 + idx + (num_views if is_extra else 0)) % (2**32)
            rgb, depth = renderer.render(c2w, view_seed)
            mask = renderer.render_mask(c2w, view_seed)
            base = tmp / "extra" if is_extra else tmp
            stem = f"extra_{idx:05d}" if is_extra else f"frame_{idx:05d}"
            entry = _frame_entry(stem, c2w)
            Image.fromarray(rgb).save(base / entry["file_path"])
            np.save(base / entry["depth_file_path"], depth)
            Image.fromarray(mask).save(base / entry["private_mask_file_path"])
            (extra_frames if is_extra else frames).append(entry)
            times.append(time.perf_counter() - t0)
            bar.update(1)
        bar.close()
        total = time.perf_counter() - t_start

        train = [frames[i]["file_path"] for i in eval_split_indices(num_views, EVAL_INTERVAL, "train")]
        evals = [frames[i]["file_path"] for i in eval_split_indices(num_views, EVAL_INTERVAL, "val")]
        transforms = {**_camera_header(resolution), "frames": frames, "train_filenames": train,
                      "val_filenames": evals, "test_filenames": evals}
        extra_transforms = {**_camera_header(resolution), "frames": extra_frames,
                            "note": "off-trajectory 'leaked' views; not part of train/eval; poses for scoring only"}
        meta = _metadata(scene, resolution, spp, num_views, num_extra_views, seed, room, len(extra_frames), times,
                         total, t_setup)
        with open(tmp / "extra" / "extra_transforms.json", "w") as f:
            json.dump(extra_transforms, f, indent=2)
        with open(tmp / "s2nerf_room.json", "w") as f:
            json.dump(meta, f, indent=2)
        write_marker(tmp)
        # transforms.json last: its presence marks a complete render
        with open(tmp / "transforms.json", "w") as f:
            json.dump(transforms, f, indent=2)

        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp creates 0700 folders
        old = None
        if out_dir.exists() or out_dir.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rename(out_dir, old / "x")
        os.rename(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return out_dir
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if prev_variant and prev_variant != VARIANT:
            mi.set_variant(prev_variant)


def load_room_metadata(folder: Path) -> Dict[str, Any]:
    with open(Path(folder) / "s2nerf_room.json") as f:
        return json.load(f)


def save_preview(out_dir: Path, path: Path, indices: Optional[Sequence[int]] = None, scale: int = 2,
                 columns: int = 2) -> Path:
    """Write a PNG preview of a rendered room folder.

    With ``indices=None`` a single view (the first training view) is written; with several indices a
    contact sheet (grid with ``columns`` columns) is written.  Images are upscaled by ``scale``.
    """
    out_dir, path = Path(out_dir), Path(path)
    with open(out_dir / "transforms.json") as f:
        frames = json.load(f)["frames"]
    if indices is None:
        indices = [1 if len(frames) > 1 else 0]
    imgs = []
    for i in indices:
        im = Image.open(out_dir / frames[int(i) % len(frames)]["file_path"]).convert("RGB")
        if scale != 1:
            im = im.resize((im.width * scale, im.height * scale), Image.LANCZOS)
        imgs.append(im)
    cols = max(1, min(columns, len(imgs)))
    rows = (len(imgs) + cols - 1) // cols
    w, h = imgs[0].size
    pad = 4 if len(imgs) > 1 else 0
    sheet = Image.new("RGB", (cols * w + (cols - 1) * pad, rows * h + (rows - 1) * pad), (255, 255, 255))
    for k, im in enumerate(imgs):
        sheet.paste(im, ((k % cols) * (w + pad), (k // cols) * (h + pad)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
