"""``s2nerf-render-room``: render a built-in room into a folder in nerfstudio "nerfstudio-data" format.

Example::

    s2nerf-render-room --scene bedroom --output-dir data/bedroom
    ns-train nerfacto --data data/bedroom nerfstudio-data   # nerfstudio's own parser can read it
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import tyro

from s2nerf_ns.scenes.catalog import RoomRenderParams


@dataclass
class RenderRoomArgs(RoomRenderParams):
    """Render a built-in S2NeRF room (Mitsuba 3) into a nerfstudio-data folder."""

    output_dir: Path = field(kw_only=True)
    """Folder to write (transforms.json, images/, depths/, masks/, extra/, s2nerf_room.json)."""
    overwrite: bool = False
    """Replace output-dir if it holds a room this command rendered earlier (its .s2nerf-render-room marker, and
    nothing else); any other non-empty folder is left alone."""
    preview: Optional[Path] = None
    """Also write a PNG contact sheet of a few views to this path."""


PROG = "s2nerf-render-room"


def _refuse(message: str) -> SystemExit:
    return SystemExit(f"{PROG}: error: {message}")


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse, before anything is rendered, an output folder this command may not write: a file, a non-empty
    folder without ``--overwrite``, or (with it) a folder s2nerf-render-room did not write (no marker) or that
    holds files it did not write. Nothing is deleted here."""
    from s2nerf_ns.scenes.render import MARKER, marker_entries

    if out.exists() and not out.is_dir():
        raise _refuse(f"--output-dir {out}: exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    entries = marker_entries(out)
    if entries is None:
        raise _refuse(f"--output-dir {out}: not empty and not written by {PROG} (no {MARKER} marker), so it is left "
                      "alone" + (" even with --overwrite" if overwrite else "") + ": choose a new or empty folder")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in set(entries) | {MARKER})
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise _refuse(f"--output-dir {out}: holds {foreign[0]}{more}, which {PROG} did not write, so it is left alone: "
                      "move those out or choose a new folder")
    if not overwrite:
        raise _refuse(f"--output-dir {out}: holds a room rendered earlier; pass --overwrite to replace it")


def run(args: RenderRoomArgs) -> Path:
    from s2nerf_ns.scenes.render import render_room, save_preview, write_marker

    args.validate_render_params()
    out = Path(args.output_dir).expanduser()
    check_output_dir(out, args.overwrite)  # render_room then renames its finished temp folder into place
    render_room(args.scene, out, progress=True, **args.render_kwargs())
    with open(out / "s2nerf_room.json") as f:
        meta = json.load(f)
    t = meta["render_time_s"]
    n = len(t["per_view"])
    print(f"Rendered {args.scene!r}: {n} views ({args.num_views} trajectory + {args.num_extra_views} extra) at "
          f"{args.resolution}x{args.resolution}, {args.spp} spp into {out}")
    print(f"Render time: {t['mean_per_view']:.3f} s/view (min {min(t['per_view']):.3f}, max {max(t['per_view']):.3f}), "
          f"total {t['total']:.1f} s (scene setup {t['setup']:.2f} s)")
    if args.preview is not None:
        v = args.num_views
        save_preview(out, args.preview, indices=[1, 1 + v // 4, 1 + v // 2, 1 + 3 * v // 4] if v > 4 else None)
        if Path(args.preview).expanduser().absolute().parent == out.absolute():
            write_marker(out, [Path(args.preview).name])  # written by this command: replaced with the folder
        print(f"Preview written to {args.preview}")
    return out


def main() -> None:
    from s2nerf_ns.errors import install as install_error_printers

    install_error_printers()  # one-line errors: installed by the command, not by importing the package
    run(tyro.cli(RenderRoomArgs))


if __name__ == "__main__":
    main()
