"""``s2nerf-render-room``: render a built-in room into a folder in nerfstudio "nerfstudio-data" format.

Example::

    s2nerf-render-room --scene bedroom --output-dir data/bedroom
    ns-train nerfacto --data data/bedroom nerfstudio-data   # nerfstudio's own parser can read it
"""

from __future__ import annotations

import json
import shutil
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
    """Replace output-dir if it already exists and is not empty."""
    preview: Optional[Path] = None
    """Also write a PNG contact sheet of a few views to this path."""


def run(args: RenderRoomArgs) -> Path:
    from s2nerf_ns.scenes.render import render_room, save_preview

    args.validate_render_params()
    out = Path(args.output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not args.overwrite:
            raise SystemExit(f"error: {out} exists and is not empty; pass --overwrite to replace it")
    elif out.is_dir():
        shutil.rmtree(out)  # empty folder: render_room renames a finished temp folder into place
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
        print(f"Preview written to {args.preview}")
    return out


def main() -> None:
    run(tyro.cli(RenderRoomArgs))


if __name__ == "__main__":
    main()
