"""The frontier's verdict against issue 11's goal, with a confidence interval on every cell, as markdown
generated from the raw scores of ``frontier.json``.

The goal: a setting that, on every room, loses at most ``MAX_PSNR_LOST`` dB of victim PSNR against the
undefended ``splitnerf`` and whose leakage over the floor is at most ``MAX_LEAKAGE_RATIO`` of splitnerf's, by
every reported metric (``METRICS``) on every scope (``SCOPES``: the whole render, its private items, the
dummy images and their private items) and, where the records hold depth scores, by the geometry leakage
(``GEOMETRY_METRICS`` of the render and its private items, :func:`s2nerf_ns.bench.frontier_cells.geometry_cell`;
scope ``geometry render`` / ``geometry private``). Values are means over the seeds of a room, recomputed from the raw
scores (:mod:`s2nerf_ns.bench.frontier_cells`); each has a 95 % bootstrap interval over seeds and eval views
(:mod:`s2nerf_ns.evaluation.confidence`). A cell (setting, room, scope, metric) **passes** only where its
ratio's interval lies at or under the goal, **fails** only where it lies entirely over it, and is otherwise
**not resolved**; likewise the PSNR lost of each room. A setting meets the goal only if every room's cost and
every cell pass; it fails if any fails; otherwise it is not resolved. Cells on which the undefended
victim's own leakage is within the metric's resolution (``RESOLUTION``) or whose interval reaches zero
cannot be cut to a tenth meaningfully: the former are left out (counted), the latter are not resolved.
The header names every setting of the preset that has no record (``frontier.SETTINGS``: e.g. label noise, the
authors' README example). Nothing here is typed by hand: the README block between ``<!-- results:frontier -->``
and ``<!-- /results -->`` is this module's output; ``python -m s2nerf_ns.bench.frontier_report FOLDER [README]``
regenerates it, ``frontier.md``, the figure (:mod:`s2nerf_ns.bench.frontier_figure`) and the folder's coverage
table (:mod:`s2nerf_ns.bench.frontier_coverage`) from a committed ``frontier.json``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from s2nerf_ns.bench import frontier
from s2nerf_ns.bench.frontier_coverage import COVERAGE_BEGIN, coverage_block
from s2nerf_ns.bench.frontier_cells import GEOMETRY_METRICS, METRICS, SCOPES, cells  # noqa: F401 (SCOPES: the goal's)
from s2nerf_ns.bench.report import block_matches, replace_block
from s2nerf_ns.evaluation.confidence import FAIL, LEVEL, PASS, REPLICATES, UNRESOLVED, Interval, judge

MAX_PSNR_LOST = 1.5
MAX_LEAKAGE_RATIO = 0.10
RESOLUTION = {"cmpsnr": 0.5, "cm_lum_ssim": 0.02, "cm_nmi": 0.02, "nmi": 0.02}
COLOUR_METRICS = ("cmpsnr", "cm_lum_ssim")
"""The fidelity scores alone (the second verdict): results recorded before NMI subtracted its permutation
baseline (``nmi_debiased`` false) carry the plug-in bias, as large as the leakage on small regions."""
GEOMETRY_RESOLUTION = {"absrel": 0.01, "within10": 0.02}
"""Geometry leakage (floor's error minus the best attack's: abs-rel, share of pixels within 10 %) at or under which
splitnerf's own is within the metric's resolution."""
GEOMETRY = "geometry "
"""A geometry cell's scope in the verdict: ``geometry render`` or ``geometry private`` (the depth maps' leakage,
:func:`s2nerf_ns.bench.frontier_cells.geometry_cell`)."""
ALL_METRICS = METRICS + GEOMETRY_METRICS
"""The goal's metrics: colour and geometry."""
BEGIN, END = "<!-- results:frontier -->", "<!-- /results -->"
Point = Tuple[str, float]


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def sides(entry: dict, sm: Tuple[str, str]) -> Tuple[Interval, Interval, Interval]:
    """A cell's defended leakage, splitnerf's and their ratio: colour ``(scope, metric)`` or geometry
    ``(GEOMETRY + scope, metric)``."""
    if sm[0].startswith(GEOMETRY):
        key = (sm[0][len(GEOMETRY):], sm[1])
        return entry["geometry_leakage"][key], entry["geometry_reference"][key], entry["geometry_ratio"][key]
    return entry["leakage"][sm], entry["reference"][sm], entry["ratio"][sm]


def ratios(entry: dict) -> Dict[Tuple[str, str], Interval]:
    """Every cell's ratio of one (room, setting): colour cells, then geometry cells (records without geometry
    scores give NaN ones, judged ``missing``)."""
    geometry = {(GEOMETRY + s, m): iv for (s, m), iv in entry.get("geometry_ratio", {}).items()}
    return {**entry["ratio"], **geometry}


VS_CLIENT_SCOPES = (GEOMETRY + "vs_victim", GEOMETRY + "vs_victim private")
"""The geometry scopes scored against the client's own depth. Where a room has no ground-truth depth the reference
depth *is* the client's, so these cells repeat ``geometry render`` / ``geometry private`` and are not counted."""


def counted_ratios(entry: dict) -> Dict[Tuple[str, str], Interval]:
    """:func:`ratios` without repeats: the vs-client geometry cells are dropped where the leakage was scored against
    the client's own depth (``geometry_against == "victim"``: the room has no ground truth), since there they are the
    reference-depth cells a second time."""
    every = ratios(entry)
    if entry.get("geometry_against") != "victim":
        return every
    return {sm: iv for sm, iv in every.items() if sm[0] not in VS_CLIENT_SCOPES}


def worst_resolved(judged: Dict[Tuple[str, str], str],
                   intervals: Dict[Tuple[str, str], Interval]) -> Optional[Tuple[Tuple[str, str], Interval]]:
    """The largest ratio among the cells that were judged pass or fail: a cell that is not resolved has a ratio
    within noise (its undefended leakage's interval reaches zero, or its own straddles the goal) and is never named
    as a setting's worst. None when no cell is resolved."""
    resolved = {sm: iv for sm, iv in intervals.items()
                if judged.get(sm) in (PASS, FAIL) and math.isfinite(iv.point)}
    return max(resolved.items(), key=lambda kv: kv[1].point) if resolved else None


def judge_cell(entry: dict, sm: Tuple[str, str]) -> str:
    """``excluded`` (undefended leakage within resolution), or the ratio's pass / fail / not resolved; a
    ratio whose undefended leakage's interval reaches zero is not resolved."""
    leak, ref, ratio = sides(entry, sm)
    if not math.isfinite(ref.point) or not math.isfinite(leak.point):
        return "missing"
    resolution = GEOMETRY_RESOLUTION if sm[0].startswith(GEOMETRY) else RESOLUTION
    if ref.point <= resolution[sm[1]]:
        return "excluded"
    if not ref.resolved or ref.low <= 0:
        return UNRESOLVED
    return judge(ratio, MAX_LEAKAGE_RATIO)


def verdicts(records: Sequence[dict], metrics: Sequence[str] = ALL_METRICS,
             computed: Optional[Dict[Tuple[str, str, float], dict]] = None) -> Dict[Point, dict]:
    """Per defended setting: per room its cells judged, the worst resolved ratio (:func:`worst_resolved`), the most PSNR lost, the counts of
    cells that pass, fail and are not resolved, and the setting's ``verdict`` (``meets_goal`` if pass)."""
    computed = cells(records) if computed is None else computed
    rooms = sorted({r["room"] for r in records})
    out: Dict[Point, dict] = {}
    for (room, family, value), entry in computed.items():
        if family == "splitnerf":
            continue
        v = out.setdefault((family, value), {"rooms": {}, "excluded": 0, "excluded_geometry": 0,
                                                 "counts": {PASS: 0, FAIL: 0, UNRESOLVED: 0}})
        judged = {}
        every = counted_ratios(entry)
        for sm in every:
            if sm[1] not in metrics:
                continue
            outcome = judge_cell(entry, sm)
            if outcome == "excluded":
                v["excluded"] += 1
                v["excluded_geometry"] += sm[0].startswith(GEOMETRY)
            elif outcome != "missing":
                judged[sm] = outcome
                v["counts"][outcome] += 1
        kept = {sm: every[sm] for sm in judged}
        worst = worst_resolved(judged, kept)
        v["rooms"][room] = {"psnr_lost": entry["psnr_lost"].point, "psnr_lost_interval": entry["psnr_lost"],
                            "cost": judge(entry["psnr_lost"], MAX_PSNR_LOST), "seeds": entry["seeds"],
                            "per_view": entry["per_view"], "judged": judged, "ratios": kept,
                            "worst": None if worst is None else (worst[0], worst[1].point), "worst_interval": worst}
    for point, v in out.items():
        covered = [v["rooms"][r] for r in rooms if r in v["rooms"]]
        v["all_rooms"] = len(covered) == len(rooms)
        costs = [c for c in covered if math.isfinite(c["psnr_lost"])]
        v["max_psnr_lost"] = max((c["psnr_lost"] for c in costs), default=None)
        v["cost_interval"] = max(costs, key=lambda c: c["psnr_lost"])["psnr_lost_interval"] if costs else None
        worst = [c for c in covered if c["worst"] is not None]
        top = max(worst, key=lambda c: c["worst"][1]) if worst else None
        v["worst"] = None if top is None else top["worst"]
        v["worst_interval"] = None if top is None else top["worst_interval"][1]
        outcomes = [c["cost"] for c in covered] + [o for c in covered for o in c["judged"].values()]
        if FAIL in outcomes:
            v["verdict"] = FAIL
        elif v["all_rooms"] and outcomes and all(o == PASS for o in outcomes) and v["counts"][PASS]:
            v["verdict"] = PASS
        else:
            v["verdict"] = UNRESOLVED
        v["meets_goal"] = v["verdict"] == PASS
    return out


def _f(value: Optional[float], digits: int = 2, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:{'+' if signed else ''}.{digits}f}"


def _seed_text(seeds: Sequence[int]) -> str:
    return f"{len(seeds)} ({', '.join(map(str, seeds))})"


def _verdict_text(v: Optional[dict]) -> str:
    if v is None:
        return ""
    if not v["all_rooms"] and v["verdict"] != FAIL:
        return "rooms missing"
    return {PASS: "**yes**", FAIL: "no", UNRESOLVED: "not resolved"}[v["verdict"]]


def provenance_line(results: dict) -> str:
    """The code behind the records: commits, and how many runs came from a tree with uncommitted changes."""
    provs = [r.get("provenance") or {} for r in results["records"]]
    commits = sorted({str(p.get("git_commit", "unknown"))[:10] for p in provs})
    dirty = [p for p in provs if p.get("git_dirty")]
    line = f"Code: commit {', '.join(commits)}"
    if not dirty:
        return line + (", clean tree." if all(p.get("git_dirty") is False for p in provs) else ".")
    allowed = sum(bool(p.get("allow_dirty")) for p in dirty)
    unrecorded = sum("allow_dirty" not in p for p in dirty)
    line += f"; {len(dirty)} of {len(provs)} runs from a tree with uncommitted changes"
    if allowed:
        line += f" ({allowed} written with `--allow-dirty`)"
    if unrecorded:
        line += f" ({unrecorded} written before the benchmarks refused a dirty tree)"
    return line + "."


def not_run_line(results: dict) -> str:
    """The preset's settings (``frontier.points`` of every family and labelled point) with no record, e.g. a
    family that never ran; the labelled points say what they are."""
    if results.get("preset") not in frontier.FRONTIER_PRESETS:
        return ""
    ran = {(r["family"], r["value"]) for r in results["records"]}
    parts = []
    for family in frontier.SETTINGS:
        planned = [v for f, v in frontier.points(results["preset"], [family])]
        missing = [v for v in planned if (family, v) not in ran]
        if not missing:
            continue
        values = ", ".join(f"{v:g}" for v in missing)
        if family in frontier.LABELLED_POINTS:
            parts.append(f"{family} {values} ({frontier.LABELLED_POINTS[family][0]})")
        else:
            parts.append(f"{family} " + (f"(none of its values: {values})" if len(missing) == len(planned) else values))
    return f"Not run: {'; '.join(parts)}. " if parts else ""


def labelled_lines(records: Sequence[dict]) -> List[str]:
    """What each labelled point that ran is (the table names it by family and value only)."""
    ran = sorted({(r["family"], r["value"]) for r in records if r["family"] in frontier.LABELLED_POINTS})
    return [f"{f} {v:g}: {frontier.LABELLED_POINTS[f][0]}." for f, v in ran]


def header(results: dict, verdict: Dict[Point, dict], per_view: bool) -> List[str]:
    records = results["records"]
    rooms = sorted({r["room"] for r in records})
    attackers = sorted({"adaptive" if r["adaptive_attacker"] else "plain" for r in records})
    by_seeds: Dict[str, List[str]] = {}
    for (family, value), v in sorted(verdict.items()):
        per_room: Dict[str, List[str]] = {}
        for room in sorted(v["rooms"]):
            per_room.setdefault(_seed_text(sorted(v["rooms"][room]["seeds"])), []).append(room)
        text = next(iter(per_room)) if len(per_room) == 1 else ", ".join(
            f"{seeds} on {' and '.join(rs)}" for seeds, rs in sorted(per_room.items(), reverse=True))
        by_seeds.setdefault(text, []).append(f"{family} {value:g}")
    groups = sorted(by_seeds.items(), key=lambda kv: (-len(kv[1]), kv[0]))  # the largest by count, the rest named
    seed_parts = [f"{text}: {len(names)} settings" if i == 0 and len(groups) > 1 else f"{text}: {', '.join(names)}"
                  for i, (text, names) in enumerate(groups)]
    most = max((len(c["seeds"]) for v in verdict.values() for c in v["rooms"].values()), default=0)
    how = ("seeds and eval views (dummy images for the dummies)" + (
               f"; with {most} seeds the seed level of the resampling is crude, so the intervals understate the "
               "spread between seeds" if most <= 3 else "") if per_view else
           "seeds only: these records hold no per-view scores, so a setting with one seed has no interval "
           "and is never judged pass or fail" + (
               f"; with {most} seeds an interval is little more than the range of the seeds' values, narrower "
               "than a true 95 % interval" if most <= 3 else ""))
    return [f"Preset `{results.get('preset')}`, rooms {', '.join(rooms)}, {' and '.join(attackers)} gradient "
            f"attacker; {len(records)} runs. Seeds per setting (every room unless said): {'; '.join(seed_parts)}. "
            f"{not_run_line(results)}{provenance_line(results)}",
            "",
            "Leakage = the best of the attacks a run scored (gradient attacker, embedding attack and, in runs that "
            "have it, the shading attack) minus the best floor, scene colour map, recomputed from each run's raw "
            "scores; ratio = defended / undefended leakage of the same room and "
            f"seeds (means over seeds). [a, b]: {LEVEL:.0%} percentile bootstrap interval ({REPLICATES} "
            f"replicates) over {how}. A cell passes only where its interval is at most the goal, fails only "
            "where it is entirely over it; otherwise it is not resolved."]


def markdown(results: dict, computed: Optional[Dict[Tuple[str, str, float], dict]] = None) -> str:
    """Tables: per setting (means over rooms and seeds, intervals) and the verdict against the goal (``computed``:
    the records' :func:`cells`, where the caller has them already)."""
    records = results["records"]
    computed = cells(records) if computed is None else computed
    verdict = verdicts(records, computed=computed)
    colour = verdicts(records, COLOUR_METRICS, computed=computed)
    per_view = bool(computed) and all(c["per_view"] for c in computed.values())
    lines = header(results, verdict, per_view) + [
        "",
        "| defense | knob | PSNR lost (dB, worst room) | render cm lum-SSIM | private cm lum-SSIM | "
        "dummies cm lum-SSIM | render cmPSNR (dB) | worst resolved ratio (room, scope, metric) | cells pass / fail / "
        "not resolved / left out | epsilon | goal | goal, cmPSNR and cm lum-SSIM only |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by_point: Dict[Point, List[dict]] = {}
    for (room, family, value), entry in computed.items():
        by_point.setdefault((family, value), []).append(entry)
    eps: Dict[Point, List[Optional[float]]] = {}
    for r in records:
        eps.setdefault((r["family"], r["value"]), []).append(r.get("epsilon"))
    for (family, value) in sorted(by_point, key=lambda p: (p[0] != "splitnerf", p)):
        entries = by_point[(family, value)]
        side = "reference" if family == "splitnerf" else "leakage"
        leak = {sm: _mean([e[side][sm].point for e in entries]) for sm in entries[0][side]}
        v = verdict.get((family, value))
        if v is None:
            lost, worst, counts = "0 (reference)", "reference", ""
        else:
            lost = "n/a" if v["cost_interval"] is None else v["cost_interval"].text()
            worst = "n/a" if not v["worst"] else f"{v['worst_interval'].text()} ({', '.join(_where(v))})"
            counts = " / ".join(str(n) for n in (*v["counts"].values(), v["excluded"]))
        lines.append(f"| {family} | {value:g} | {lost} | {_f(leak[('render', 'cm_lum_ssim')], 3, True)} | "
                     f"{_f(leak[('private', 'cm_lum_ssim')], 3, True)} | {_f(leak[('dummies', 'cm_lum_ssim')], 3, True)} | "
                     f"{_f(leak[('render', 'cmpsnr')], 2, True)} | {worst} | {counts} | "
                     f"{_f(_mean(eps.get((family, value), [])), 1)} | {_verdict_text(v)} | "
                     f"{_verdict_text(colour.get((family, value)))} |")
    lines += ["", *labelled_lines(records), *summary_lines(verdict)]
    met = sorted(p for p, c in colour.items() if c["meets_goal"])
    unresolved = sorted(p for p, c in colour.items() if c["verdict"] == UNRESOLVED)
    lines.append(f"On cmPSNR and cm lum-SSIM alone the goal is met by: {_names(met) or 'none'}; "
                 f"not resolved: {_names(unresolved) or 'none'}.")
    lines += geometry_lines(computed)
    debiased = {bool(r.get("nmi_debiased")) for r in records}
    if debiased != {True}:
        lines.append("These runs scored NMI without subtracting its permutation baseline: their NMI leakage "
                     "includes the estimator's small-sample bias (see `evaluation.leakage.NMI_BINS`).")
    return "\n".join(lines) + "\n"


def _has_geometry(entry: dict) -> bool:
    return any(math.isfinite(iv.point) for iv in entry.get("geometry_leakage", {}).values())


def geometry_lines(computed: Dict[Tuple[str, str, float], dict]) -> List[str]:
    """The geometry cells (the depth maps' leakage over their floor, :func:`frontier_cells.geometry_cell`): per
    setting the means over rooms, the worst resolved ratio to splitnerf's and the geometry cells' outcomes (they count in
    the verdict above); one line when the records hold no geometry scores."""
    if not any(_has_geometry(e) for e in computed.values()):
        return ["Geometry (depth) leakage: not measured (these records hold no `geometry_*` scores)."]
    by_point: Dict[Point, List[Tuple[str, dict]]] = {}
    for (room, family, value), entry in computed.items():
        by_point.setdefault((family, value), []).append((room, entry))
    lines = ["", "Geometry: the best depth attack's score over the best floor's (abs-rel: floor minus attack; within "
             "10 %: attack minus floor; positive = leaked), scored against the reference depth and against the "
             "client's own depth (vs client: what the server learns of the client's model, whatever the ground truth; "
             "n/a in records made before it was scored), and the best attack's within 10 % against the client's own "
             "depth (no floor: how exactly the server reproduces the client's geometry).", "",
             "| defense | knob | depth scored against | within 10 % | private within 10 % | abs-rel | "
             "private abs-rel | vs client: within 10 % | vs client: abs-rel | worst resolved geometry ratio (room, scope, metric) "
             "| geometry cells pass / fail / not resolved / left out | attack vs client's depth, within 10 % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (family, value) in sorted(by_point, key=lambda p: (p[0] != "splitnerf", p)):
        entries = by_point[(family, value)]
        side = "geometry_reference" if family == "splitnerf" else "geometry_leakage"
        mean = {sm: _mean([e[side][sm].point for _, e in entries if sm in e.get(side, {})])
                for sm in entries[0][1].get(side, {})}
        against = ", ".join(sorted({str(e.get("geometry_against", "unknown")) for _, e in entries}))
        vs_side = "reference" if family == "splitnerf" else "defended"
        vs = _mean([e["geometry_vs_victim"]["within10"][vs_side].point for _, e in entries
                    if "within10" in e.get("geometry_vs_victim", {})])
        worst, counts = "reference", ""
        if family != "splitnerf":
            outcomes = {PASS: 0, FAIL: 0, UNRESOLVED: 0, "excluded": 0}
            judged = []
            for room, e in entries:
                for sm in counted_ratios(e):
                    if sm[0].startswith(GEOMETRY):
                        outcome = judge_cell(e, sm)
                        if outcome in outcomes:
                            outcomes[outcome] += 1
                        if outcome in (PASS, FAIL) and math.isfinite(sides(e, sm)[2].point):
                            judged.append((sides(e, sm)[2], room, sm))
            top = max(judged, key=lambda j: j[0].point, default=None)
            worst = "n/a" if top is None else f"{top[0].text()} ({top[1]}, {top[2][0][len(GEOMETRY):]}, {top[2][1]})"
            counts = " / ".join(str(n) for n in outcomes.values())
        lines.append(f"| {family} | {value:g} | {against} | "
                     + " | ".join(_f(mean.get((scope, m)), 3, True) for m in ("within10", "absrel")
                                  for scope in ("render", "private"))
                     + " | " + " | ".join(_f(mean.get(("vs_victim", m)), 3, True) for m in ("within10", "absrel"))
                     + f" | {worst} | {counts} | {_f(vs, 3)} |")
    return lines


def _names(points: Sequence[Point]) -> str:
    return ", ".join(f"{f} {v:g}" for f, v in points)


def _where(v: dict) -> Tuple[str, str, str]:
    (scope, metric), ratio = v["worst"]
    room = next(r for r, c in v["rooms"].items() if c["worst"] and c["worst"][1] == ratio)
    return room, scope, metric


def summary_lines(verdict: Dict[Point, dict]) -> List[str]:
    """The sentences under the table: who meets the goal, the counts, each family's closest point, who
    dominates S²NeRF."""
    goal = (f"<= {MAX_PSNR_LOST} dB lost and <= {MAX_LEAKAGE_RATIO:.0%} of splitnerf's leakage on every room, "
            "scope and metric")
    met = sorted(p for p, v in verdict.items() if v["meets_goal"])
    failed = sorted(p for p, v in verdict.items() if v["verdict"] == FAIL)
    open_ = sorted(p for p, v in verdict.items() if v["verdict"] == UNRESOLVED)
    total = {k: sum(v["counts"][k] for v in verdict.values()) for k in (PASS, FAIL, UNRESOLVED)}
    out = [f"Goal met by: {_names(met) or 'none'} ({goal}, judged on the intervals); failed by "
           f"{len(failed)} of {len(verdict)} settings; not resolved: {_names(open_) or 'none'}. Cells: "
           f"{total[PASS]} pass, {total[FAIL]} fail, {total[UNRESOLVED]} not resolved."]
    if met:
        best = min(met, key=lambda p: verdict[p]["max_psnr_lost"])
        out.append(f"Least PSNR lost among those meeting the goal: {best[0]} {best[1]:g}.")
    out.append(f"Closest per family (smallest worst resolved ratio, point values, among points losing <= {MAX_PSNR_LOST} "
               "dB on every room; a ratio within noise is never a setting's worst):")
    for family in sorted({f for f, _ in verdict}):
        ok = [(p, v) for p, v in verdict.items() if p[0] == family and v["worst"] and v["max_psnr_lost"] is not None
              and v["max_psnr_lost"] <= MAX_PSNR_LOST]
        if not ok:
            out.append(f"- {family}: every point loses more than {MAX_PSNR_LOST} dB on some room.")
            continue
        (f, value), v = min(ok, key=lambda pv: pv[1]["worst"][1])
        out.append(f"- {family} {value:g}: worst resolved ratio {v['worst_interval'].text()} ({', '.join(_where(v))}), "
                   f"{v['max_psnr_lost']:.2f} dB lost.")
    paper = verdict.get(("s2nerf", 1.2))
    if paper and paper["worst"] and paper["max_psnr_lost"] is not None:
        dominating = [p for p, v in verdict.items() if p != ("s2nerf", 1.2) and v["worst"] and v["max_psnr_lost"]
                      is not None and v["max_psnr_lost"] <= paper["max_psnr_lost"] and v["worst"][1] <= paper["worst"][1]]
        out.append(f"S²NeRF at the paper's point (c = 1.2, r = 1e-4): {paper['max_psnr_lost']:.2f} dB lost, worst "
                   f"resolved ratio {paper['worst'][1]:.2f}. Settings at least as good on both (point values): "
                   f"{_names(sorted(dominating)) or 'none'}.")
    excluded = sum(v["excluded"] for v in verdict.values())
    geometry = sum(v["excluded_geometry"] for v in verdict.values())
    if excluded:
        out.append(f"({excluded} (setting, room, scope, metric) cells left out of the ratios: there the undefended "
                   "victim's leakage is within the metric's resolution, "
                   f"{', '.join(f'{k} {v:g}' for k, v in RESOLUTION.items())}"
                   + (f"; {geometry} of them geometry cells, where splitnerf's best depth attack beats its floor by at "
                      f"most {', '.join(f'{k} {v:g}' for k, v in GEOMETRY_RESOLUTION.items())} (or not at all)"
                      if geometry else "") + ".)")
    return out


def cells_markdown(results: dict, computed: Optional[Dict[Tuple[str, str, float], dict]] = None) -> str:
    """Every judged cell: defended and undefended leakage and their ratio, each with its interval."""
    computed = cells(results["records"]) if computed is None else computed
    lines = ["| defense | knob | room | scope | metric | leakage | splitnerf's leakage | ratio | cell |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (room, family, value), e in sorted(computed.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        if family == "splitnerf":
            continue
        for sm in counted_ratios(e):
            leak, ref, ratio = sides(e, sm)
            if sm[0].startswith(GEOMETRY) and not (math.isfinite(leak.point) or math.isfinite(ref.point)):
                continue  # no geometry scores in these records
            lines.append(f"| {family} | {value:g} | {room} | {sm[0]} | {sm[1]} | {leak.text(3, True)} | "
                         f"{ref.text(3, True)} | {ratio.text()} | {judge_cell(e, sm)} |")
    return "\n".join(lines) + "\n"


def document(results: dict) -> str:
    """``frontier.md``: the README block's tables, then every cell with its intervals."""
    return markdown(results) + "\n## Every cell\n\n" + cells_markdown(results)


def write(results: dict, path: Path) -> str:
    """Write :func:`document` to ``path`` and, where the folder's README.md has a coverage block, regenerate it;
    returns the README block's part."""
    path.write_text(document(results))
    folder_readme = path.parent / "README.md"
    if folder_readme.exists() and COVERAGE_BEGIN in folder_readme.read_text():
        replace_block(folder_readme, COVERAGE_BEGIN, END, coverage_block(results))
    return markdown(results)


def update_readme(readme: Path, results: dict) -> bool:
    return replace_block(readme, BEGIN, END, f"{BEGIN}\n{markdown(results)}{END}")


def readme_matches(readme: Path, results: dict) -> bool:
    return block_matches(readme, BEGIN, END, f"{BEGIN}\n{markdown(results)}{END}")


def regenerate(folder: Path, readme: Optional[Path] = None) -> None:
    """From a committed ``folder/frontier.json`` (never rewritten): ``frontier.md``, ``frontier.png``, the folder
    README's coverage block and, given ``readme``, its frontier block."""
    from s2nerf_ns.bench import frontier_figure

    results = frontier.load(folder / "frontier.json", "FOLDER")
    write(results, folder / "frontier.md")
    frontier_figure.plot(results, folder / "frontier.png", results.get("leakage_key"), frontier.LABELS)
    if readme is not None:
        update_readme(readme, results)


if __name__ == "__main__":  # python -m s2nerf_ns.bench.frontier_report FOLDER [README]
    import sys

    regenerate(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
