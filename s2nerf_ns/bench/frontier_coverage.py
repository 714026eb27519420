"""What a frontier ran: every setting of its preset with the seeds each ran with per room, or "not run" (the
coverage block of a results folder's README, generated from its ``frontier.json``)."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from s2nerf_ns.bench import frontier

COVERAGE_BEGIN, END = "<!-- results:frontier-coverage -->", "<!-- /results -->"
Point = Tuple[str, float]


def seed_text(seeds: Sequence[int]) -> str:
    return f"{len(seeds)} ({', '.join(map(str, seeds))})"


def _room_seeds(by_room: Dict[str, List[int]], rooms: Sequence[str]) -> str:
    if not by_room:
        return "not run"
    groups: Dict[str, List[str]] = {}
    for room in rooms:
        groups.setdefault(seed_text(sorted(by_room[room])) if room in by_room else "none", []).append(room)
    if len(groups) == 1:
        return f"{next(iter(groups))} on every room"
    return "; ".join(f"{s} on {', '.join(rs)}" for s, rs in sorted(groups.items(), key=lambda kv: kv[0] == "none"))


def coverage_markdown(results: dict) -> str:
    """What ran: every setting of the preset (``frontier.points`` of every family and labelled point, then any
    other setting the records hold) with its seeds per room, or "not run"."""
    records = results["records"]
    rooms = sorted({r["room"] for r in records})
    seeds: Dict[Point, Dict[str, List[int]]] = {}
    for r in records:
        seeds.setdefault((r["family"], r["value"]), {}).setdefault(r["room"], []).append(r["seed"])
    preset = results.get("preset")
    planned = frontier.points(preset, list(frontier.SETTINGS)) if preset in frontier.FRONTIER_PRESETS else []
    order = [("splitnerf", 0.0)] + planned + sorted(p for p in seeds if p not in planned and p[0] != "splitnerf")
    ran = [p for p in order if p in seeds]
    lines = [f"Preset `{preset}`, rooms {', '.join(rooms)}: {len(records)} runs; {len(ran)} of {len(order)} settings "
             f"ran (the undefended reference and {len(planned)} settings of the preset"
             + (f", plus {len(order) - len(planned) - 1} others" if len(order) > len(planned) + 1 else "") + ").",
             "", "| setting | knob | value | seeds per room |", "|---|---|---|---|"]
    previous = None
    for family, value in order:
        knob = "" if family == previous else ("undefended (the reference)" if family == "splitnerf" else
                                             frontier.SETTINGS.get(family, ("",))[0])
        previous = family
        lines.append(f"| {family} | {knob} | {value:g} | {_room_seeds(seeds.get((family, value), {}), rooms)} |")
    return "\n".join(lines) + "\n"


def coverage_block(results: dict) -> str:
    return f"{COVERAGE_BEGIN}\n{coverage_markdown(results)}{END}"
