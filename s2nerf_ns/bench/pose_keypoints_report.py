"""The README's keypoint pose block (issue 25), generated from committed ``records.jsonl`` folders written by
``scripts/pose_keypoints_128.py``. Pose errors are recomputed from the stored poses (estimate, first-stage view and
truth), never from stored errors:
``python -m s2nerf_ns.bench.pose_keypoints_report FOLDER [FOLDER ...] [--readme README.md]`` (writes FOLDER/results.md)."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Dict, List

import torch

from s2nerf_ns.attacks.pose.camera import pose_errors
from s2nerf_ns.bench.report import block_matches, replace_block

BEGIN, END = "<!-- results:pose-keypoints -->", "<!-- /results -->"
GOAL_DEG, GOAL_UNITS = 3.0, 0.05


def _lines(path: Path) -> List[Dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load(folder: Path) -> Dict:
    """A folder's run.json and records (and self_match.jsonl where the folder has one); a missing run.json or
    records.jsonl is an error (the README's numbers need them)."""
    folder = Path(folder)
    run = json.loads((folder / "run.json").read_text())
    optional = {name: _lines(folder / f"{name}.jsonl") if (folder / f"{name}.jsonl").exists() else []
                for name in ("self_match", "at_truth", "train_depth")}
    return {"folder": folder, "run": run, "records": _lines(folder / "records.jsonl"), **optional}


def is_basin(result: Dict) -> bool:
    """A folder of ``scripts/pose_keypoints_basin.py`` (searches from set offsets of the true pose)."""
    return "starts" in result["run"]


def _median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def basin_rows(result: Dict) -> List[Dict[str, object]]:
    """Per (room, victim, colour): the render at each photo's true pose (PSNR, correct matches, photos whose PnP from
    it reaches the inlier minimum, the read-out depth over the room's true z-depth and its share within 10 %), the
    read-out against the room at training views, and per start offset the searches that end within the goal (errors
    recomputed from the stored poses)."""
    rows = []
    truth, records, train = result["at_truth"], result["records"], result["train_depth"]
    minimum = result["run"]["search"]["min_inliers"]
    for room, victim, colour in dict.fromkeys((e["room"], e["victim"], e["colour"]) for e in truth):
        mine = [e for e in truth if (e["room"], e["victim"], e["colour"]) == (room, victim, colour)]
        views = [e for e in train if (e["room"], e["victim"]) == (room, victim)]
        starts = {}
        for r in records:
            if (r["room"], r["victim"], r["colour"]) == (room, victim, colour):
                starts.setdefault(float(r["start_deg"]), []).append(within_goal(errors(r, "estimated_c2w")))
        rows.append({"room": room, "victim": victim, "colour": colour, "photos": len(mine),
                     "psnr": _median(e["psnr"] for e in mine),
                     "correct": _median(e["correct"] for e in mine),
                     "pnp": sum(e["pnp_inliers"] >= minimum for e in mine),
                     "depth_ratio": _median(e.get("readout_over_true_depth_median") for e in mine),
                     "within10": _median(e.get("readout_within10_of_true_depth") for e in mine),
                     "client_relerr": _median(e["readout_vs_client_depth_median_relerr"] for e in mine),
                     "train_depth_ratio": _median(v.get("readout_over_true_depth_median") for v in views),
                     "train_within10": _median(v.get("readout_within10_of_true_depth") for v in views),
                     "starts": {deg: (sum(ok), len(ok)) for deg, ok in sorted(starts.items())}})
    return rows


def basin_table(result: Dict) -> str:
    rows = basin_rows(result)
    if not rows:
        return ""
    offsets = sorted({deg for row in rows for deg in row["starts"]})
    units = {float(d): float(u) for d, u in result["run"]["starts"]}
    lines = ["| room | victim | colour | photos | PSNR at the true pose (dB) | correct matches there | PnP from it | "
             "read-out / true depth | within 10 % of true depth | read-out vs client depth (rel. err.) | at training "
             "views: read-out / true, within 10 % | "
             + " | ".join(f"from {d:g} deg / {units.get(d, float('nan')):g}: within goal" for d in offsets) + " |",
             "|" + "---|" * (11 + len(offsets))]
    for r in rows:
        lines.append(f"| {r['room']} | {r['victim']} | {r['colour']} | {r['photos']} | {r['psnr']:.1f} | "
                     f"{r['correct']:g} | {r['pnp']} of {r['photos']} | {r['depth_ratio']:.2f} | "
                     f"{r['within10']:.2f} | {r['client_relerr']:.3f} | {r['train_depth_ratio']:.2f}, "
                     f"{r['train_within10']:.2f} | "
                     + " | ".join("{} of {}".format(*r["starts"][d]) if d in r["starts"] else "n/a" for d in offsets)
                     + " |")
    return "\n".join(lines) + "\n"


def basin_header(result: Dict) -> str:
    run, prov = result["run"], result["run"]["provenance"]
    dirty = " (dirty tree, --allow-dirty)" if prov.get("git_dirty") or prov.get("allow_dirty") else ""
    starts = ", ".join(f"{float(d):g} deg / {float(u):g} units" for d, u in run["starts"])
    return (f"`{result['folder'].name}`: commit {str(prov['git_commit'])[:7]}{dirty}; the victims of "
            f"`{Path(run['victims_from']).name}`; searches started {starts} from each photo's true pose "
            f"({run['repeats']} per offset), medians over the photos (colour: the server's surrogate, or the victim's "
            "own as an oracle; depth: the server's read-out either way).")


def self_match_rows(result: Dict) -> List[Dict[str, object]]:
    """Per (room, victim): views, median photo keypoints, median correct matches at the photo's own pose for the
    surrogate's render and the victim's own."""
    rows = []
    entries = result["self_match"]
    for room, victim in dict.fromkeys((e["room"], e["victim"]) for e in entries):
        mine = [e for e in entries if (e["room"], e["victim"]) == (room, victim)]
        rows.append({"room": room, "victim": victim, "views": len(mine),
                     "keypoints": statistics.median(e["photo_keypoints"] for e in mine),
                     "surrogate": statistics.median(e["surrogate_correct"] for e in mine),
                     "client": statistics.median(e["client_correct"] for e in mine),
                     "surrogate_range": (min(e["surrogate_correct"] for e in mine),
                                         max(e["surrogate_correct"] for e in mine)),
                     "client_range": (min(e["client_correct"] for e in mine), max(e["client_correct"] for e in mine))})
    return rows


def self_match_table(results: List[Dict]) -> str:
    rows = [row for result in results for row in self_match_rows(result)]
    if not rows:
        return ""
    lines = ["Correct SIFT matches (within 2 px) of a training photo to a render at that photo's own pose, median "
             "(range) over evenly spaced training views:", "",
             "| room | victim | views | photo keypoints | server's surrogate colour | victim's own colour |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['room']} | {r['victim']} | {r['views']} | {r['keypoints']:g} | {r['surrogate']:g} "
                     f"({r['surrogate_range'][0]}-{r['surrogate_range'][1]}) | {r['client']:g} "
                     f"({r['client_range'][0]}-{r['client_range'][1]}) |")
    return "\n".join(lines) + "\n"


def errors(record: Dict, key: str) -> Dict[str, float]:
    return pose_errors(torch.tensor(record[key], dtype=torch.float64), torch.tensor(record["true_c2w"], dtype=torch.float64))


def within_goal(error: Dict[str, float]) -> bool:
    return error["rotation_error_deg"] <= GOAL_DEG and error["translation_error"] <= GOAL_UNITS


def summary_rows(result: Dict) -> List[Dict[str, object]]:
    """Per server (victim or upper bound): photos, median errors, photos within the goal."""
    rows = []
    records = result["records"]
    for server in dict.fromkeys(r["victim"] for r in records):
        errs = [errors(r, "estimated_c2w") for r in records if r["victim"] == server]
        rooms = sorted({r["room"] for r in records if r["victim"] == server})
        rows.append({"server": server, "rooms": rooms, "photos": len(errs),
                     "median_rotation": statistics.median(e["rotation_error_deg"] for e in errs),
                     "median_translation": statistics.median(e["translation_error"] for e in errs),
                     "within": sum(within_goal(e) for e in errs)})
    return rows


def header(result: Dict) -> str:
    run = result["run"]
    prov, search = run["provenance"], run["search"]
    dirty = " (dirty tree, --allow-dirty)" if prov.get("git_dirty") or prov.get("allow_dirty") else ""
    steps = f", victims trained {run['preset']['steps']} steps" if "preset" in run else ""
    return (f"`{result['folder'].name}`: commit {str(prov['git_commit'])[:7]}{dirty}, seed {run['seed']}{steps}, "
            f"up to {search['candidates']} training poses rendered per photo (the upper bound: every training photo), {search['detector']}, ratio {search['ratio']}, photo blur "
            f"{search['photo_blur']}, RANSAC {search['reprojection_px']} px, at least {search['min_inliers']} inliers, "
            f"{search['rounds']} rounds.")


def summary_table(results: List[Dict]) -> str:
    lines = ["| run | server | rooms | photos | median rotation (deg) | median centre (units) | within 3 deg and 0.05 |",
             "|---|---|---|---|---|---|---|"]
    for result in (r for r in results if not is_basin(r)):
        for row in summary_rows(result):
            lines.append(f"| `{result['folder'].name}` | {row['server']} | {', '.join(row['rooms'])} | {row['photos']} | "
                         f"{row['median_rotation']:.1f} | {row['median_translation']:.3f} | "
                         f"{row['within']} of {row['photos']} |")
    return "\n".join(lines) + "\n"


def photo_table(result: Dict) -> str:
    lines = ["| room | server | photo | inliers | estimate (deg / units) | first-stage view (deg / units) | search s |",
             "|---|---|---|---|---|---|---|"]
    for r in result["records"]:
        e, f = errors(r, "estimated_c2w"), errors(r, "first_stage_c2w")
        lines.append(f"| {r['room']} | {r['victim']} | {r['leaked']} | {r['inliers']} | "
                     f"{e['rotation_error_deg']:.1f} / {e['translation_error']:.3f} | "
                     f"{f['rotation_error_deg']:.1f} / {f['translation_error']:.3f} | {r['search_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def markdown(results: List[Dict]) -> str:
    intro = ("Keypoint pose search at the rooms' 128 px, every leaked photo (4 extra views per room). Errors: rotation "
             "(degrees) / camera centre (scene units), recomputed from the stored poses; the issue's goal is 3 deg and "
             "0.05 units. The upper bound matches the photo to the training photos with their rendered depth (a "
             "perfect server at the training poses, no rounds).")
    matches = self_match_table(results)
    searches = [r for r in results if not is_basin(r)]
    basins = [r for r in results if is_basin(r)]
    basin = "".join(f"\nFrom a start near the true pose, and what a render at the true pose offers: {basin_header(r)}"
                    f"\n\n{basin_table(r)}" for r in basins)
    return (intro + "\n\n" + "\n".join(f"- {header(r)}" for r in searches) + "\n\n" + summary_table(results) +
            (f"\n{matches}" if matches else "") + basin)


def block(results: List[Dict]) -> str:
    return f"{BEGIN}\n{markdown(results)}{END}"


def readme_matches(readme: Path, folders: List[Path]) -> bool:
    return block_matches(readme, BEGIN, END, block([load(f) for f in folders]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders written by scripts/pose_keypoints_128.py")
    parser.add_argument("--readme", type=Path, default=None, help="README whose pose-keypoints block to regenerate")
    args = parser.parse_args()
    results = [load(f) for f in args.folders]
    for result in results:
        if is_basin(result):
            (result["folder"] / "results.md").write_text(basin_header(result) + "\n\n" + basin_table(result))
            continue
        matches = self_match_table([result])
        (result["folder"] / "results.md").write_text(header(result) + "\n\n" + photo_table(result) + "\n" +
                                                     summary_table([result]) + (f"\n{matches}" if matches else ""))
    if args.readme is not None:
        changed = replace_block(args.readme, BEGIN, END, block(results))
        print(f"{args.readme}: pose-keypoints block {'updated' if changed else 'unchanged'}")


if __name__ == "__main__":
    main()
