"""Configuration-time checks of the data named on the command line (before ``ns-train`` writes anything).

Only what is cheap is checked here: the path exists, a room folder is a room folder, a nerfstudio capture's
``transforms.json`` parses and lists images that exist, and every image's header says it is large enough for
the evaluation metrics (:data:`~s2nerf_ns.evaluation.image_metrics.MIN_IMAGE_SIZE`) and holds RGB (or grey)
pixels. An image with transparent pixels is refused: the split client trains on ``image[..., :3]`` and would
drop the alpha silently (nerfstudio's nerfacto composites it onto its background colour in its model; here the
client's loss, the metrics, the leaked photos and the attack scores would all have to agree on one background,
so the capture is flattened once, by the user). Decoding every image (a truncated PNG) is left to setup,
where :func:`s2nerf_ns.errors.data_setup` reports it in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from s2nerf_ns.errors import InputError
from s2nerf_ns.evaluation.image_metrics import MIN_IMAGE_SIZE, too_small_for_ssim

RGB_MODES = ("RGB", "L")
"""PIL modes nerfstudio's InputDataset reads as they are (grey is repeated to RGB). RGBA is read too, and
accepted here when every pixel is opaque."""
FLATTEN_HINT = ("flatten it onto a background colour first (e.g. `mogrify -background white -alpha remove "
                "-alpha off *.png`)")


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
    try:
        meta = json.loads((folder / "transforms.json").read_text(encoding="utf-8"))
        width, height = int(meta["w"]), int(meta["h"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # an incomplete room: named in one line at setup (check_room_folder)
    check_image_size(width, height, f"--data {folder}",
                     f"render the room again with s2nerf-render-room --resolution {MIN_IMAGE_SIZE} or more")


def check_image_size(width: int, height: int, what: str, fix: str = "") -> None:
    """Refuse images smaller than the evaluation metrics need (SSIM's window), naming ``what`` and the fix."""
    problem = too_small_for_ssim(int(height), int(width))
    if problem is not None:
        fix = fix or f"use images of at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} px"
        raise InputError(f"{what}: {problem}, so a run would fail at its first evaluation: {fix}")


def _image_path(data_dir: Path, file_path: str) -> Optional[Path]:
    """The image a frame names, or its downscaled copy in an ``images_*`` folder; None if neither exists."""
    path = Path(file_path)
    path = path if path.is_absolute() else data_dir / path
    if path.exists():
        return path
    return next((folder / path.name for folder in sorted(data_dir.glob("images_*")) if (folder / path.name).exists()),
                None)


def _has_transparency(image) -> bool:
    """Whether a PIL image (header read) has an alpha channel with a pixel that is not opaque (decodes alpha only
    for images that have one)."""
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        alpha = image.convert("RGBA").getchannel("A")
        return alpha.getextrema()[0] < 255
    return False


def check_image_file(path: Path, downscale: int = 1) -> None:
    """One image of a capture: readable header, large enough for the metrics (after ``downscale``), RGB pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height, mode = image.width // downscale, image.height // downscale, image.mode
            transparent = mode not in RGB_MODES and _has_transparency(image)
    except UnidentifiedImageError:
        raise InputError(f"{path}: not a readable image") from None
    except OSError:
        return  # a truncated file: decoded (and reported in one line) at setup
    check_image_size(width, height, str(path))
    if transparent:
        raise InputError(f"{path}: has transparent pixels (alpha channel); the split methods train on RGB only and "
                         f"would drop the alpha silently: {FLATTEN_HINT}")
    if mode not in RGB_MODES and mode != "RGBA":
        raise InputError(f"{path}: a {mode!r} image; nerfstudio reads only RGB, RGBA and grey (L) pixels "
                         "correctly: convert it to RGB first")


def check_split(meta: dict, meta_path: Path, dataparser=None) -> None:
    """The capture's train/eval split (nerfstudio-data's, from transforms.json's lists or ``--eval-mode``) leaves
    at least one training and one evaluation image: without one, a run fails at its first evaluation."""
    import math

    frames = meta["frames"]
    lists = [f"{split}_filenames" for split in ("train", "val", "test")]
    if any(key in meta for key in lists):  # nerfstudio then reads every split from these lists
        for key in lists:
            if not isinstance(meta.get(key), list) or not meta[key]:
                raise InputError(f"{meta_path}: {key} is missing or empty, though the file lists a split (nerfstudio "
                                 "needs train_filenames, val_filenames and test_filenames then): add it, or remove all")
        return
    mode = getattr(dataparser, "eval_mode", "fraction")
    names = [Path(str(frame["file_path"])).name for frame in frames]
    n = len(names)
    if mode == "fraction":
        fraction = float(getattr(dataparser, "train_split_fraction", 0.9))
        num_train = math.ceil(n * fraction)
        fix = (f"use a capture with more images, or --train-split-fraction {math.floor(100 * (n - 1) / n) / 100} "
               "or --eval-mode interval" if num_train >= n else "give a larger --train-split-fraction")
        fix = fix if n > 1 else "use a capture with at least 2 images"
        where = f"--train-split-fraction {fraction} (nerfstudio trains on ceil({n} x {fraction}) = {num_train})"
    elif mode == "interval":
        interval = getattr(dataparser, "eval_interval", 8)
        num_train = sum(1 for i in range(n) if i % interval != 0)
        fix = "give --eval-interval 2 or more" if interval <= 1 else "use a capture with more images"
        where = f"--eval-interval {interval}"
    elif mode == "filename":
        other = next((i for i, name in enumerate(names) if "train" not in name and "eval" not in name), None)
        if other is not None:
            raise InputError(f"{meta_path.parent / str(frames[other]['file_path'])}: --eval-mode filename needs 'train' "
                             "or 'eval' in every image's name")
        num_train = sum(1 for name in names if "train" in name)
        fix, where = "rename some images, or use another --eval-mode", "--eval-mode filename"
    else:  # "all": every image is trained on and evaluated
        return
    if num_train == 0 or num_train == n:
        missing = "no training image" if num_train == 0 else "no evaluation image"
        raise InputError(f"--data {meta_path.parent}: its {n} images leave {missing} at {where}, so a run would fail "
                         f"at its first evaluation: {fix}")


def check_nerfstudio_data(data, dataparser=None) -> None:
    """``nerfstudio-data --data PATH``: PATH (a folder or its transforms.json) exists, the JSON parses, every
    frame's image exists and passes :func:`check_image_file` (at ``--downscale-factor``, when given), and the
    split (:func:`check_split`, with the ``dataparser`` config's options) leaves images to train and evaluate on."""
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
    missing, found = [], []
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise InputError(f"{meta_path}: frame {i} has no file_path or no transform_matrix")
        image = _image_path(data_dir, str(frame["file_path"]))
        (missing if image is None else found).append(image or str(frame["file_path"]))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InputError(f"{data_dir / missing[0]}: image missing{more} (listed in {meta_path})")
    check_split(meta, meta_path, dataparser)
    downscale = getattr(dataparser, "downscale_factor", None)
    factor = downscale if isinstance(downscale, int) and downscale > 1 else 1
    for image in found:  # headers only (RGBA images: their alpha too)
        check_image_file(image, 1 if image.parent.name.startswith("images_") else factor)


def check_data(dataparser, data=None) -> None:
    """Check the data a dataparser config will load; ``data`` overrides its own ``data`` (``ns-train --data``).
    A config of this package checks its own (its ``check_data`` method, e.g. the rooms'); nerfstudio's
    ``nerfstudio-data`` is checked here."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    data = data if _given(data) is not None else getattr(dataparser, "data", None)
    own_check = getattr(dataparser, "check_data", None)
    if callable(own_check):
        own_check(data)
    elif isinstance(dataparser, NerfstudioDataParserConfig):
        check_nerfstudio_data(data, dataparser)
    elif _given(data) is not None and not Path(data).expanduser().exists():
        raise InputError(f"--data {data}: no such file or directory")
