"""Resuming a split run exactly: what the split trainer adds to nerfstudio's checkpoint, and the checks a
``--load-dir`` (or ``--load-checkpoint``) gets before anything is written.

A checkpoint of a split method holds, besides nerfstudio's pipeline/optimizer/scheduler state, :data:`RESUME_KEY`:
the method, the run's total length, the defense's public configuration with its schedule length, the noise
generators' states, and the global torch/numpy/python RNG states (nerfstudio's pixel sampler and the stratified
samples draw from them). The accountant's counters are in the model's state dict
(:class:`~s2nerf_ns.defenses.state.DefenseCounters`). A resumed run therefore applies exactly the noise, and
reports exactly the epsilon, of an uninterrupted one (``tests/test_fail_closed.py``).

For the split methods ``--max-num-iterations`` is the run's TOTAL length: a resumed run trains the steps after
the checkpoint up to it (nerfstudio's own trainer would train that many more).
"""

from __future__ import annotations

import os
import random
import re
import shlex
import sys
import zipfile
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from s2nerf_ns.defenses.config import flag as defense_flag
from s2nerf_ns.errors import InputError, first_sentence

RESUME_KEY = "s2nerf_ns_resume"
"""Key of the split trainer's resume state in a checkpoint."""
CHECKPOINT_NAME = re.compile(r"^step-(\d+)\.ckpt$")


def load_flag(config) -> Tuple[str, Optional[Path]]:
    """The flag a run resumes with (``--load-dir`` or ``--load-checkpoint``) and its value (None: no resume)."""
    if config.load_dir is not None:
        return "--load-dir", Path(config.load_dir)
    if config.load_checkpoint is not None:
        return "--load-checkpoint", Path(config.load_checkpoint)
    return "", None


def checkpoint_path(config) -> Optional[Path]:
    """The checkpoint file a run resumes from, or None; an :class:`InputError` naming the flag if there is none."""
    name, given = load_flag(config)
    if given is None:
        return None
    if name == "--load-checkpoint":
        if not given.is_file():
            raise InputError(f"--load-checkpoint {given}: no such file (give a step-*.ckpt of a run)")
        return given
    if not given.is_dir():
        raise InputError(f"--load-dir {given}: no such folder (give a run's checkpoint folder, "
                         "e.g. outputs/<experiment>/<method>/<timestamp>/nerfstudio_models)")
    steps = sorted(int(m.group(1)) for m in map(CHECKPOINT_NAME.match, os.listdir(given)) if m)
    if config.load_step is not None:
        path = given / f"step-{config.load_step:09d}.ckpt"
        if not path.is_file():
            have = ", ".join(map(str, steps)) or "none"
            raise InputError(f"--load-step {config.load_step}: {given} has no checkpoint of that step (it has: {have})")
        return path
    if not steps:
        hint = " (that is a run folder: its checkpoints are in nerfstudio_models/)" if (
            given / "nerfstudio_models").is_dir() else ""
        raise InputError(f"--load-dir {given}: no checkpoint (step-*.ckpt) in it{hint}; a run saves one every "
                         "--steps-per-save steps, at the end and on Ctrl-C")
    return given / f"step-{steps[-1]:09d}.ckpt"


def check_complete(path: Path, flag: str) -> None:
    """A checkpoint is a zip archive whose directory is at its end: a truncated file is refused by name."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(truncated_message(path, flag, str(exc))) from exc


def truncated_message(path: Path, flag: str, reason: str) -> str:
    prefix = f"{flag} {path}" if flag else str(path)
    return (f"{prefix}: the checkpoint file is truncated or corrupted ({first_sentence(reason)}); it cannot be "
            "loaded: use an earlier checkpoint or train again")


def read_checkpoint(path: Path, flag: str, lazy: bool = False) -> dict:
    """``torch.load`` of a checkpoint (``lazy``: memory-mapped, tensors not read), errors named as a truncated file."""
    check_complete(path, flag)
    try:
        state = torch.load(path, map_location="cpu", mmap=lazy)
    except Exception as exc:  # noqa: BLE001 - any failure to read a complete-looking archive is corruption
        raise InputError(truncated_message(path, flag, f"{type(exc).__name__}: {exc}")) from exc
    if not isinstance(state, dict) or "pipeline" not in state or "step" not in state:
        raise InputError(f"{flag} {path}: not a nerfstudio checkpoint (no pipeline state)")
    return state


def method_of_checkpoint(path: Path) -> Optional[str]:
    """The method that wrote a checkpoint, from its run's ``config.yml`` (None when there is none)."""
    for candidate in (path.parent.parent / "config.yml", path.parent / "config.yml"):
        if candidate.is_file():
            found = re.search(r"^method_name: (\S+)\s*$", candidate.read_text(errors="replace"), re.MULTILINE)
            return found.group(1) if found else None
    return None


def schedule_length(config) -> Optional[int]:
    """The length the s2nerf noise of this run decays over (None: not s2nerf)."""
    defense = getattr(config.pipeline.model, "defense", None)
    if defense is None or defense.kind != "s2nerf":
        return None
    return defense.decay_steps or config.max_num_iterations


def check_resume(config) -> Optional[Path]:
    """Every check of a resume that needs no model (run at configuration time, before ns-train writes anything):
    the checkpoint exists, is complete, was written by this method with this defense, and the run's length fits."""
    path = checkpoint_path(config)
    if path is None:
        return None
    flag, given = load_flag(config)
    method = method_of_checkpoint(path)
    if method is not None and method != config.method_name:
        raise InputError(f"{flag} {given}: a checkpoint of {method} (its run's config.yml), not of "
                         f"{config.method_name}: resume it with ns-train {method} {flag} {given}")
    state = read_checkpoint(path, flag, lazy=True)
    saved = state.get(RESUME_KEY)
    if saved is None:
        raise InputError(f"{flag} {given}: the checkpoint has no split-run state (the defense's noise generators and "
                         "schedule, the run's RNG): it was written by another trainer or an older s2nerf-ns, and a run "
                         "resumed from it could not be defended exactly as the original; train from scratch")
    total, done = config.max_num_iterations, int(state["step"]) + 1
    if done >= total:
        raise InputError(f"--max-num-iterations {total}: the checkpoint already holds steps 0..{done - 1}; for the "
                         f"split methods --max-num-iterations is the run's total length: give more than {done}")
    mine = public_defense(config)
    theirs = {k: v for k, v in saved["defense"].items() if k != "decay_steps"}
    if mine != theirs:
        raise InputError(f"{flag} {given}: the checkpoint was trained with the defense {_describe(theirs)}, this run "
                         f"asks for {_describe(mine)}: a resumed run keeps its defense, give the same "
                         f"{defense_flag('*')} flags as the original run")
    length = schedule_length(config)
    explicit = getattr(getattr(config.pipeline.model, "defense", None), "decay_steps", None) is not None
    if length is not None and not explicit and length != saved["defense"].get("decay_steps"):
        was = saved["defense"].get("decay_steps")
        raise InputError(f"--max-num-iterations {total}: the checkpoint's s2nerf noise decays over {was} steps (its "
                         f"run's total length); resume with --max-num-iterations {was}, or set "
                         f"{defense_flag('decay_steps')} to choose the schedule explicitly")
    return path


def public_defense(config) -> Dict[str, object]:
    """The defense's public configuration without its schedule length (compared on resume)."""
    defense = getattr(config.pipeline.model, "defense", None)
    public = defense.public() if defense is not None else {"kind": "none"}
    return {k: v for k, v in public.items() if k != "decay_steps"}


def _describe(public: Dict[str, object]) -> str:
    return "(" + ", ".join(f"{k} {v}" for k, v in public.items()) + ")"


# ---------------------------------------------------------------------------------------------- RNG states
def capture_rng() -> Dict[str, object]:
    """The global RNG states (torch CPU and CUDA, numpy, python), as types ``torch.load`` reads safely."""
    key, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    out: Dict[str, object] = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": str(key), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return out


def restore_rng(state: Dict[str, object]) -> None:
    """Restore :func:`capture_rng` (CUDA states only when the same number of devices is visible)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["key"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------------------------- messages
def resume_command(method: str, total_steps: int, checkpoint_dir: Path) -> str:
    """The ns-train command that resumes this run: the command line it was started with (when that was ns-train),
    with ``--load-dir`` set to ``checkpoint_dir`` right after the method name."""
    argv = list(sys.argv)
    load = f"--load-dir {shlex.quote(str(checkpoint_dir.resolve()))}"
    if not argv or Path(argv[0]).name != "ns-train" or len(argv) < 2:
        return f"ns-train {method} {load} --max-num-iterations {total_steps} (with the run's other options)"
    rest, skip = [], False
    for arg in argv[2:]:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0].replace("_", "-")
        if name in ("--load-dir", "--load-step", "--load-checkpoint"):
            skip = "=" not in arg
            continue
        rest.append(arg)
    return " ".join(["ns-train", shlex.quote(argv[1]), load, *map(shlex.quote, rest)])
