"""Configuration-time checks of the data named on the command line (before ``ns-train`` writes anything).

Only what is cheap is checked here: the path exists, a room folder is a room folder, a nerfstudio capture's
``transforms.json`` parses and lists images that exist. Decoding every image (a truncated PNG) is left to
setup, where :func:`s2nerf_ns.errors.data_setup` reports it in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from s2nerf_ns.errors import InputError


def _given(path) -> Optional[Path]:
    """The path given on the command line, or None where none was (nerfstudio's defaults are Path() / None)."""
    if path is None or str(path) in ("", "."):
        return None
    return Path(path).expanduser()


def check_room_data(data) -> None:
    """``s2nerf-rooms --data FOLDER``: FOLDER must be a rendered room (transforms.json + s2nerf_room.json)."""
    folder = _given(data)
    if folder is None:
        return
    if folder.suffix == ".json":
        folder = folder.parent
    if not folder.exists():
        raise InputError(f"--data {data}: no such folder (s2nerf-rooms without --data renders the built-in room)")
    if not (folder / "s2nerf_room.json").exists():
        hint = (f"for a nerfstudio capture use `nerfstudio-data --data {folder}` instead of s2nerf-rooms"
                if (folder / "transforms.json").exists() else
                "give a folder written by s2nerf-render-room, or leave --data out for the built-in room")
        raise InputError(f"--data {folder} is not a valid s2nerf room folder (no s2nerf_room.json): {hint}")


def _image_exists(data_dir: Path, file_path: str) -> bool:
    path = Path(file_path)
    path = path if path.is_absolute() else data_dir / path
    if path.exists():
        return True
    return any((folder / path.name).exists() for folder in data_dir.glob("images_*"))  # downscaled copies


def check_nerfstudio_data(data) -> None:
    """``nerfstudio-data --data PATH``: PATH (a folder or its transforms.json) exists, the JSON parses, and
    every frame's image exists."""
    path = Path(data if data is not None else ".").expanduser()
    if not path.exists():
        raise InputError(f"--data {data}: no such file or directory")
    meta_path = path if path.suffix == ".json" else path / "transforms.json"
    if not meta_path.exists():
        raise InputError(f"--data {data}: no transforms.json in it (a nerfstudio capture folder holds "
                         "transforms.json and its images; ns-process-data writes one)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{meta_path}: invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{meta_path}: cannot be read ({e})") from None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise InputError(f"{meta_path}: no \"frames\" list (each frame needs a file_path and a transform_matrix)")
    data_dir = meta_path.parent
    missing = []
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise InputError(f"{meta_path}: frame {i} has no file_path or no transform_matrix")
        if not _image_exists(data_dir, str(frame["file_path"])):
            missing.append(str(frame["file_path"]))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InputError(f"{data_dir / missing[0]}: image missing{more} (listed in {meta_path})")


def check_data(dataparser, data=None) -> None:
    """Check the data a dataparser config will load; ``data`` overrides its own ``data`` (``ns-train --data``)."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from s2nerf_ns.data.rooms_dataparser import RoomsDataParserConfig

    data = data if _given(data) is not None else getattr(dataparser, "data", None)
    if isinstance(dataparser, RoomsDataParserConfig):
        check_room_data(data)
    elif isinstance(dataparser, NerfstudioDataParserConfig):
        check_nerfstudio_data(data)
    elif _given(data) is not None and not Path(data).expanduser().exists():
        raise InputError(f"--data {data}: no such file or directory")
