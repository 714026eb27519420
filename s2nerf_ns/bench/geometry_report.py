"""The geometry-defense results (issue 22): per room, each setting's cost, colour leakage and geometry leakage beside
splitnerf's, with intervals, and the verdict against the goal, all recomputed from the records' raw per-view scores
(:mod:`s2nerf_ns.bench.frontier_cells`, :func:`s2nerf_ns.bench.frontier_report.verdicts`).

    python -m s2nerf_ns.bench.geometry_report FOLDER [--readme README.md]

reads ``FOLDER/frontier.json`` (written by ``scripts/geometry_defenses.py``; never rewritten) and regenerates
``FOLDER/results.md`` and, given ``--readme``, its ``<!-- results:geometry -->`` block.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from s2nerf_ns.bench import frontier_report
from s2nerf_ns.bench.frontier_cells import cells
from s2nerf_ns.bench.report import block_matches, replace_block
from s2nerf_ns.evaluation.confidence import Interval

BEGIN, END = "<!-- results:geometry -->", "<!-- /results -->"
POINTS = ((None, 0.0), ("client-appearance", 0.0), ("density-noise", 0.3), ("density-noise", 1.0),
          ("client-geometry", 32.0), ("client-density-layers", 2.0))
"""The settings ``scripts/geometry_defenses.py`` runs, in the picture's row order: splitnerf, s2nerf-plus, two
density-noise strengths, the server keeping hash levels up to 32, two more client density layers."""
NAMES = {("splitnerf", 0.0): "splitnerf (undefended)", ("client-appearance", 0.0): "s2nerf-plus (colour on the client)"}
"""How the tables name a setting (else ``family value``)."""
PICTURES = "pictures.png"
"""The committed picture of one eval view (made by ``scripts/geometry_defenses.py --compose``), shown when present."""
PICTURES_META = "pictures.json"
"""What the picture shows (room, seed, eval view, its rows), written beside it by ``--compose``."""


def name(point: Tuple[str, float]) -> str:
    return NAMES.get(point, f"{point[0]} {point[1]:g}")


def load(folder: Path) -> dict:
    """The committed results: a missing file is an error (never a skipped table)."""
    path = folder / "frontier.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no geometry results here (scripts/geometry_defenses.py writes it)")
    return json.loads(path.read_text())


def _text(iv: Optional[Interval], digits: int = 3, signed: bool = True) -> str:
    return "n/a" if iv is None else iv.text(digits, signed)


def _ratio(iv: Optional[Interval]) -> str:
    return "n/a" if iv is None or not math.isfinite(iv.point) else iv.text(2)


def room_lines(records: Sequence[dict], computed: Dict[Tuple[str, str, float], dict]) -> List[str]:
    """Per room and setting: PSNR lost, colour leakage (render cmPSNR, dB; NMI), geometry leakage against the client's
    own depth (share within 10 % and abs-rel: best attack over the best floor) and against the ground truth, each with
    its interval and, for defended settings, its ratio to splitnerf's (``computed``: the records' cells)."""
    eps: Dict[Tuple[str, str, float], List[float]] = {}
    for r in records:
        if r.get("epsilon") is not None:
            eps.setdefault((r["room"], r["family"], r["value"]), []).append(float(r["epsilon"]))
    lines = ["| room | setting | seeds | PSNR lost (dB) | colour: render cmPSNR leakage (dB) / ratio | colour: render NMI "
             "leakage / ratio | geometry vs client's depth: within 10 % leakage / ratio | vs client's depth: abs-rel "
             "leakage / ratio | vs reference depth: within 10 % leakage | epsilon |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    order = lambda key: (key[0], key[1] != "splitnerf", key[1] != "client-appearance", key[1], key[2])  # noqa: E731
    for key in sorted(computed, key=order):
        room, family, value = key
        e = computed[key]
        undefended = family == "splitnerf"
        side, gside = ("reference", "geometry_reference") if undefended else ("leakage", "geometry_leakage")

        def pair(colour: bool, sm: Tuple[str, str], digits: int = 3) -> str:
            leak = (e[side] if colour else e[gside]).get(sm)
            ratio = None if undefended else (e["ratio"] if colour else e["geometry_ratio"]).get(sm)
            return _text(leak, digits) + ("" if undefended else f" / {_ratio(ratio)}")

        lost = "0 (reference)" if undefended else e["psnr_lost"].text(2, True)
        epsilon = eps.get(key)
        lines.append(f"| {room} | {name((family, value))} | {len(e['seeds'])} | {lost} | "
                     f"{pair(True, ('render', 'cmpsnr'), 2)} | {pair(True, ('render', 'nmi'))} | "
                     f"{pair(False, ('vs_victim', 'within10'))} | {pair(False, ('vs_victim', 'absrel'))} | "
                     f"{_text(e[gside].get(('render', 'within10')))} | "
                     f"{'n/a' if not epsilon else f'{sum(epsilon) / len(epsilon):.1f}'} |")
    return lines


def markdown(results: dict, picture: Optional[Tuple[Path, dict]] = None,
             computed: Optional[Dict[Tuple[str, str, float], dict]] = None) -> str:
    """The block: what ran, the per-room table, the verdict table over every cell (colour and geometry), and the
    picture (its link's folder and what it shows) where there is one."""
    records = results["records"]
    computed = cells(records) if computed is None else computed  # the bootstrap, once for every table
    preset = results.get("preset_values", {})
    walls = [float(r["wall_seconds"]) for r in records if r.get("wall_seconds") is not None]
    wall = (f"{len(walls)} runs took {min(walls):.0f}-{max(walls):.0f} s each (train, attack, evaluate; mean "
            f"{sum(walls) / len(walls):.0f} s). " if walls else "")
    inversion = "with" if results.get("inversion") else "without"
    lines = [f"Victims: {preset.get('resolution', '?')} px rooms, {preset.get('steps', '?')} steps of "
             f"{preset.get('rays', '?')} rays, SMA pipeline {inversion} the learned inversion; command `"
             f"{results.get('command', '?')}`. {wall}{frontier_report.provenance_line(results)} Geometry leakage = the best depth attack (the server's read-out of the "
             "client's density, its surrogate) over the best floor that knows nothing of the room (best constant "
             "depth per view, the gradient-free surrogate, the scene box's exit); positive = leaked. Ratios are to "
             "splitnerf's leakage on the same room and seeds; [a, b]: 95 % bootstrap interval over seeds and eval "
             "views. Against the client's own depth each setting is scored against its own client's depth, so a "
             "defense that only makes that depth flatter (nearer a constant) lowers its leakage even where the server "
             "reads it exactly: the last column of the geometry table below (the best attack's within 10 % of the "
             "client's depth, no floor) says how exactly it does. The reference depth is the rendered ground truth "
             "where the room has it.", "", *room_lines(records, computed), "", "The verdict against the goal (at most 1.5 dB lost and at most "
             "10 % of splitnerf's leakage in every cell, colour and geometry, every room), from the same records:", "",
             frontier_report.markdown(results, computed).rstrip("\n")]
    if picture is not None:
        link, meta = picture
        lines += ["", f"![one eval view: see the caption]({link.as_posix()}/{PICTURES})", "", caption(meta)]
    return "\n".join(lines) + "\n"


def caption(meta: dict) -> str:
    """The picture's caption from what ``--compose`` wrote (``room``, ``seed``, ``view``, ``rows``: the settings'
    ``[family, value]`` in row order, ``inversion_row``: whether an inversion run's panels make the last row)."""
    rows = ", ".join(name((family or "splitnerf", float(value))) for family, value in meta["rows"])
    text = (f"Eval view {meta['view']} of {meta['room']}, seed {meta['seed']}; a row per setting: {rows}. Left to "
            "right: the ground-truth depth, the server's read-out depth and its surrogate's depth (gray, near = "
            "bright), then the client's own depth (nerfstudio's colour map, scaled per image).")
    if meta.get("inversion_row"):
        text += (" The last row is an s2nerf-plus victim trained the same way with the learned inversion on "
                 "(`pictures_record.json`): ground truth, the client's render, the gradient attack, the floor "
                 "surrogate, the embedding attack, the shading attack (three grayscale cues in the red, green and "
                 "blue channels: Lambertian, headlight, depth) and the inversion.")
    return text


def _picture(folder: Path, readme: Path) -> Optional[Tuple[Path, dict]]:
    """``folder`` as the README links it and what its picture shows, or None where it holds no picture."""
    if not (folder / PICTURES).is_file():
        return None
    meta = json.loads((folder / PICTURES_META).read_text())
    return Path(os.path.relpath(folder.resolve(), readme.resolve().parent)), meta


def block(results: dict, picture: Optional[Tuple[Path, dict]]) -> str:
    return f"{BEGIN}\n{markdown(results, picture)}{END}"


def regenerate(folder: Path, readme: Optional[Path] = None) -> None:
    results = load(folder)
    computed = cells(results["records"])
    (folder / "results.md").write_text("# Geometry defenses: generated from frontier.json\n\n" +
                                       markdown(results, computed=computed) + "\n## Every cell\n\n" +
                                       frontier_report.cells_markdown(results, computed))
    if readme is not None:
        replace_block(readme, BEGIN, END, block(results, _picture(folder, readme)))


def readme_matches(readme: Path, folder: Path) -> bool:
    return block_matches(readme, BEGIN, END, block(load(folder), _picture(folder, readme)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder with frontier.json")
    parser.add_argument("--readme", type=Path, default=None, help="README whose geometry block is regenerated")
    args = parser.parse_args()
    try:
        regenerate(args.folder, args.readme)
    except FileNotFoundError as err:
        raise SystemExit(f"FOLDER {args.folder}: {err}") from None


if __name__ == "__main__":
    main()
