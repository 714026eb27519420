"""What a preset's instrument resolves (issue 23), from its undefended victims alone: per room, every cell of the
verdict (scope x metric, colour and geometry) with splitnerf's own leakage and its interval, and whether that
leakage is resolved, i.e. a defended setting's ratio to it can be judged at all. Two criteria, both reported:

- *above resolution*: splitnerf's leakage exceeds the metric's fixed resolution (the verdict's own rule: a cell at
  or under it is left out, :data:`s2nerf_ns.bench.frontier_report.RESOLUTION`);
- *interval clear of zero*: the lower end of its 95 % bootstrap interval (over seeds and eval views) is above zero
  (the verdict calls a ratio over a reference whose interval reaches zero "not resolved").

Also the wall time of each run: one judging frontier point, hence the hours of a whole frontier.

    python -m s2nerf_ns.bench.judge_report FOLDER [--readme README.md]   (FOLDER/frontier.json: scripts/judge_baseline.py)
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from s2nerf_ns.bench import frontier
from s2nerf_ns.bench.frontier_cells import cells
from s2nerf_ns.bench.frontier_report import GEOMETRY, GEOMETRY_RESOLUTION, RESOLUTION, counted_ratios, sides
from s2nerf_ns.bench.report import block_matches, replace_block


def resolved_cells(records: Sequence[dict]) -> List[Dict[str, object]]:
    """One row per (room, cell) of the splitnerf records: ``leakage`` (its Interval), ``above_resolution`` and
    ``clear_of_zero``. Cells whose leakage the records cannot score (NaN) are left out."""
    baseline = [r for r in records if r["family"] == "splitnerf"]
    out = []
    for (room, family, _), entry in sorted(cells(baseline).items()):
        keys = list(counted_ratios(entry))  # every cell once (no vs-client repeats without ground truth)
        for scope, metric in keys:
            leak = sides(entry, (scope, metric))[1]
            if not math.isfinite(leak.point):
                continue
            resolution = (GEOMETRY_RESOLUTION if scope.startswith(GEOMETRY) else RESOLUTION)[metric]
            out.append({"room": room, "scope": scope, "metric": metric, "leakage": leak, "seeds": entry["seeds"],
                        "above_resolution": leak.point > resolution,
                        "clear_of_zero": leak.resolved and leak.low > 0.0})
    return out


def shares(rows: Sequence[Dict[str, object]]) -> Dict[str, Tuple[int, int]]:
    """(resolved, all) cells by each criterion and by both."""
    n = len(rows)
    return {"above_resolution": (sum(bool(r["above_resolution"]) for r in rows), n),
            "clear_of_zero": (sum(bool(r["clear_of_zero"]) for r in rows), n),
            "both": (sum(bool(r["above_resolution"] and r["clear_of_zero"]) for r in rows), n)}


BEGIN, END = "<!-- results:judge -->", "<!-- /results -->"


def summary(results: dict) -> str:
    """The README block: what ran, the time, the shares of resolved cells (the per-cell table stays in the folder)."""
    return "\n".join(_head(results, resolved_cells(results["records"]))) + "\n"


def readme_matches(readme: Path, folder: Path) -> bool:
    return block_matches(readme, BEGIN, END, f"{BEGIN}\n{summary(load(folder))}{END}")


def load(folder: Path) -> dict:
    path = folder / "frontier.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no judging runs here (scripts/judge_baseline.py writes it)")
    return json.loads(path.read_text())


def by_scope(rows: Sequence[Dict[str, object]]) -> str:
    scopes: Dict[str, List[bool]] = {}
    for r in rows:
        scopes.setdefault(str(r["scope"]), []).append(bool(r["above_resolution"] and r["clear_of_zero"]))
    return ", ".join(f"{scope} {sum(v)}/{len(v)}" for scope, v in scopes.items())


def markdown(results: dict) -> str:
    """:func:`summary`, then every cell with splitnerf's leakage and its interval."""
    rows = resolved_cells(results["records"])
    lines = _head(results, rows) + [
        "", "| room | scope | metric | splitnerf's leakage [95 %] | above resolution | interval clear of zero |",
        "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['room']} | {r['scope']} | {r['metric']} | {r['leakage'].text(3, True)} | "
                     f"{'yes' if r['above_resolution'] else 'no'} | {'yes' if r['clear_of_zero'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _commands(results: dict) -> str:
    """Every invocation that added records (``commands``; older files hold one ``command``)."""
    commands = results.get("commands") or [results.get("command", "?")]
    return ("command" if len(commands) == 1 else "commands") + " " + ", then ".join(f"`{c}`" for c in commands)


def _head(results: dict, rows: Sequence[Dict[str, object]]) -> List[str]:
    """What ran, the wall time and the hours of a judging frontier, the shares of resolved cells."""
    records = results["records"]
    preset = results.get("preset_values", {})
    walls = [float(r["wall_seconds"]) for r in records if r.get("wall_seconds") is not None]
    share = shares(rows)
    pct = lambda k: f"{share[k][0]} of {share[k][1]} ({100 * share[k][0] / max(share[k][1], 1):.0f} %)"  # noqa: E731
    points = len(frontier.points("judge", list(frontier.SETTINGS))) + 1  # + the undefended victim
    rooms = sorted({r["room"] for r in records})
    seeds = sorted({r["seed"] for r in records})
    lines = [f"Preset `{results.get('preset')}`: {preset.get('resolution', '?')} px rooms, {preset.get('steps', '?')} "
             f"steps of {preset.get('rays', '?')} rays; splitnerf on {', '.join(rooms)}, seeds "
             f"{', '.join(map(str, seeds))}; {_commands(results)}; code commit "
             f"{', '.join(sorted({str((r.get('provenance') or {}).get('git_commit', '?'))[:10] for r in records}))}"
             f"{', clean tree' if all((r.get('provenance') or {}).get('git_dirty') is False for r in records) else ''}.",
             ""]
    if walls:
        mean = sum(walls) / len(walls)
        total = min(walls) * points * 3 * 2 / 3600
        lines += [f"Wall time per run (train, attack with every attack, evaluate; a run that first renders its rooms "
                  f"includes that): {min(walls):.0f}-{max(walls):.0f} s, mean {mean:.0f} s. The judging frontier "
                  f"({points} settings incl. splitnerf, 3 rooms, 2 seeds) would take at least {total:.0f} hours on this "
                  "machine at the fastest run's rate.", ""]
    lines += [f"Cells of the verdict whose undefended leakage is resolved: above the metric's resolution "
              f"{pct('above_resolution')}; interval clear of zero {pct('clear_of_zero')}; both {pct('both')}. By "
              f"scope (both criteria, over rooms): {by_scope(rows)}."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder with frontier.json (scripts/judge_baseline.py)")
    parser.add_argument("--readme", type=Path, default=None, help="README whose judge block is regenerated")
    args = parser.parse_args()
    try:
        results = load(args.folder)
    except FileNotFoundError as err:
        raise SystemExit(f"FOLDER {args.folder}: {err}") from None
    text = markdown(results)
    (args.folder / "resolved.md").write_text(text)
    if args.readme is not None:
        replace_block(args.readme, BEGIN, END, f"{BEGIN}\n{summary(results)}{END}")
    print(text)


if __name__ == "__main__":
    main()
