"""Every bad input gets one clear line.

Two kinds of error are the user's input, not a bug, and are printed as ONE line (``<command>: error: ...``)
instead of a traceback:

* :class:`InputError` (a ``ValueError``): a configuration value that cannot work, found when the config is
  built (tyro calls ``__post_init__``), i.e. before ``ns-train`` writes anything. Its message names the flag
  and the fix.
* :class:`DataSetupError`: the data named on the command line could not be loaded at pipeline setup
  (missing folder or image, invalid ``transforms.json``, truncated image, ...). Its message names the file
  and the problem. :func:`data_setup` turns the errors nerfstudio's own dataparsers and datasets raise into it.

nerfstudio's own checkpoint loading (``ns-eval``, ``ns-render``, the viewer) gets one line too: a truncated
checkpoint is named as such, a run without a checkpoint says so (:func:`describe_checkpoint_error`); the split
methods' ``--load-dir`` is checked before anything is written (:mod:`s2nerf_ns.integration.resume`).

:func:`install` (called by each command: our console scripts in their ``main()``, nerfstudio's ``ns-*`` commands
through the plugin module they load, ``method_configs/s2nerf_methods.py``; importing the package installs nothing)
installs the printers: a ``sys.excepthook`` that prints these errors (and a missing
``--load-config`` file) as one line and hands everything else to the previous hook, and a tyro parse-error
hook that prints a configuration error as one line, without tyro's internal ``__tyro-dummy-inner__`` prefix.
Nothing of nerfstudio is patched.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Iterator, Optional


class InputError(ValueError):
    """A configuration value that cannot work (found at configuration time). The message names the flag."""


class DataSetupError(ValueError):
    """The data named on the command line could not be loaded (found at setup). The message names the file and
    the problem."""


_DATA_CODE = (os.sep + os.path.join("nerfstudio", "data") + os.sep, os.sep + os.path.join("s2nerf_ns", "data") + os.sep,
              os.sep + os.path.join("nerfstudio", "utils", "io.py"), os.sep + "PIL" + os.sep)
"""Source files whose exceptions, raised while a pipeline sets up its data, are data errors."""
_FILE_LOCALS = ("image_filename", "filename", "fname", "file_path", "filepath", "path", "folder", "data_dir")
"""Local variable names, innermost frame first, that hold the file being read when a data error is raised."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _frames(tb) -> list:
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def _file_being_read(frames: list) -> Optional[str]:
    for frame in reversed(frames):  # innermost first
        if not any(part in frame.f_code.co_filename for part in _DATA_CODE):
            continue
        for name in _FILE_LOCALS:
            value = frame.f_locals.get(name)
            if isinstance(value, (str, Path)) and str(value) not in ("", "."):
                return str(value)
    return None


def describe_data_error(exc: BaseException) -> Optional[str]:
    """One line naming the file and the problem, if ``exc`` was raised by data-loading code; else ``None``."""
    if isinstance(exc, DataSetupError):
        return str(exc)
    if not isinstance(exc, Exception) or isinstance(exc, (KeyboardInterrupt, MemoryError)):
        return None
    frames = _frames(exc.__traceback__)
    if not any(part in f.f_code.co_filename for f in frames for part in _DATA_CODE):
        return None
    path = _file_being_read(frames)
    text = _one_line(str(exc))
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename}: no such file or directory"
    if isinstance(exc, json.JSONDecodeError):
        return f"{path or 'JSON file'}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, KeyError):
        return f"{path or 'data file'}: missing entry {text}"
    if type(exc).__name__ == "UnidentifiedImageError":
        return f"{path}: not a readable image ({text})" if path else text
    if isinstance(exc, OSError) and "truncated" in text:
        return f"{path or 'an image'}: image file is truncated (re-copy or re-export it)"
    if path and path not in text:
        return f"{path}: {text or type(exc).__name__}"
    return text or type(exc).__name__


@contextlib.contextmanager
def data_setup(what: str) -> Iterator[None]:
    """Turn an error raised by data-loading code inside the block into a one-line :class:`DataSetupError`."""
    try:
        yield
    except (DataSetupError, InputError):
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is a data error
        message = describe_data_error(exc)
        if message is None:
            raise
        raise DataSetupError(f"cannot load {what}: {message}") from exc


def _load_config_arguments() -> list:
    args = sys.argv[1:]
    found = [a.split("=", 1)[1] for a in args if a.startswith("--load-config=") or a.startswith("--load_config=")]
    found += [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--load-config", "--load_config")]
    return found


def _is_bad_data(exc: BaseException) -> bool:
    """Errors that mean the input files are broken (not a bug), whichever pipeline read them."""
    text = str(exc)
    return (isinstance(exc, (FileNotFoundError, json.JSONDecodeError))
            or type(exc).__name__ == "UnidentifiedImageError"
            or (isinstance(exc, OSError) and "truncated" in text)
            or (isinstance(exc, AssertionError) and "does not exist" in text))


def first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of an error message, on one line (library messages go on with advice of their own)."""
    return _one_line(text).split(". ")[0][:limit]


def _is_complete_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
        return True
    except (zipfile.BadZipFile, OSError):
        return False


def describe_checkpoint_error(exc: BaseException) -> Optional[str]:
    """One line for a checkpoint nerfstudio could not load (``ns-eval``, ``ns-render``, the viewer): a truncated file
    (``torch.load`` failed and the file is not a complete archive), or a run folder without any checkpoint."""
    frames = _frames(exc.__traceback__)
    loader = next((f for f in frames if f.f_code.co_name == "eval_load_checkpoint"), None)
    if loader is not None and isinstance(exc, IndexError):  # sorted(os.listdir(load_dir))[-1] of an empty folder
        load_dir = getattr(loader.f_locals.get("config"), "load_dir", None)
        return (f"{load_dir}: no checkpoint (step-*.ckpt) in the run's checkpoint folder: the run saved none "
                "(stopped before its first checkpoint); train it again")
    torch_load = [f for f in frames if f.f_code.co_name == "load"
                  and f.f_code.co_filename.endswith(os.path.join("torch", "serialization.py"))]
    if not torch_load or not isinstance(exc, (RuntimeError, EOFError, pickle.UnpicklingError, ValueError)):
        return None
    path = torch_load[0].f_locals.get("f")
    if not isinstance(path, (str, Path)) or not Path(path).is_file() or _is_complete_zip(Path(path)):
        return None
    return (f"{path}: the checkpoint file is truncated or corrupted ({first_sentence(str(exc))}); it cannot be "
            "loaded: use an earlier checkpoint or train again")


def one_line_error(exc: BaseException) -> Optional[str]:
    """The line printed instead of a traceback for a bad input, or ``None`` for any other exception."""
    if isinstance(exc, (InputError, DataSetupError)):
        return _one_line(str(exc))
    checkpoint = describe_checkpoint_error(exc)
    if checkpoint is not None:
        return checkpoint
    if isinstance(exc, OSError) and any(f.f_code.co_name == "save_config" for f in _frames(exc.__traceback__)):
        return (f"--output-dir: cannot write the run folder ({exc.filename}: {exc.strerror}); choose a folder you "
                "can write to")
    if _is_bad_data(exc):  # e.g. nerfacto on a broken capture: nerfstudio's own pipeline, the same line
        message = describe_data_error(exc)
        if message is not None:
            return f"cannot load the data: {message}"
    if isinstance(exc, FileNotFoundError) and exc.filename is not None:
        for given in _load_config_arguments():
            if Path(given).expanduser() == Path(str(exc.filename)).expanduser():
                return (f"--load-config {given}: no such file (give the config.yml of a run, "
                        "e.g. outputs/<experiment>/<method>/<timestamp>/config.yml)")
    return None


def _prog() -> str:
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "s2nerf"


def _excepthook(exc_type, exc, tb, _previous=None) -> None:
    line = one_line_error(exc)
    if line is None:
        (_previous or sys.__excepthook__)(exc_type, exc, tb)
        return
    print(f"{_prog()}: error: {line}", file=sys.stderr, flush=True)


def _tyro_hook(event) -> None:
    """tyro's parse-error hook: a value rejected while the config was built is printed as one line."""
    flags = getattr(getattr(getattr(event, "argument", None), "lowered", None), "name_or_flags", None)
    if type(event).__name__ == "InvalidChoice" and flags and str(flags[0]).startswith("-"):  # a flag's bad value
        print(f"{_prog()}: error: {flags[0]} {event.value}: not a choice; give one of {', '.join(event.choices)}",
              file=sys.stderr, flush=True)
        raise SystemExit(2)
    if type(event).__name__ != "InstantiationFailure":
        return  # tyro's own messages (unknown flag, subcommand, ...) are kept
    message = _one_line(getattr(event, "message", ""))
    argument = getattr(event, "argument", None)
    flags = getattr(getattr(argument, "lowered", None), "name_or_flags", None)
    if flags and not any(flag in message for flag in flags):
        message = f"{'/'.join(flags)}: {message}"
    print(f"{_prog()}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


_installed = False
_tyro_context = None


def install() -> None:
    """Install the one-line printers (idempotent). Other exceptions keep their traceback."""
    global _installed, _tyro_context
    if _installed:
        return
    _installed = True
    previous = sys.excepthook
    sys.excepthook = lambda t, e, tb: _excepthook(t, e, tb, previous)
    try:
        from tyro import _errors as tyro_errors

        on_parse_error = getattr(tyro_errors, "on_parse_error", None)
        if on_parse_error is not None:
            _tyro_context = on_parse_error(_tyro_hook)
            _tyro_context.__enter__()  # for the whole process: ns-train calls tyro.cli after the plugins load
    except Exception:  # noqa: BLE001 - older tyro: its own error box is printed instead
        _tyro_context = None
