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


def load(folder: Path) -> Dict:
    """A folder's run.json and records; a missing file is an error (the README's numbers need them)."""
    folder = Path(folder)
    run = json.loads((folder / "run.json").read_text())
    records = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines() if line.strip()]
    return {"folder": folder, "run": run, "records": records}


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
    return (f"`{result['folder'].name}`: commit {str(prov['git_commit'])[:7]}{dirty}, seed {run['seed']}, "
            f"up to {search['candidates']} training poses rendered per photo (the upper bound: every training photo), {search['detector']}, ratio {search['ratio']}, photo blur "
            f"{search['photo_blur']}, RANSAC {search['reprojection_px']} px, at least {search['min_inliers']} inliers, "
            f"{search['rounds']} rounds.")


def summary_table(results: List[Dict]) -> str:
    lines = ["| run | server | rooms | photos | median rotation (deg) | median centre (units) | within 3 deg and 0.05 |",
             "|---|---|---|---|---|---|---|"]
    for result in results:
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
    return intro + "\n\n" + "\n".join(f"- {header(r)}" for r in results) + "\n\n" + summary_table(results)


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
        (result["folder"] / "results.md").write_text(header(result) + "\n\n" + photo_table(result) + "\n" +
                                                     summary_table([result]))
    if args.readme is not None:
        changed = replace_block(args.readme, BEGIN, END, block(results))
        print(f"{args.readme}: pose-keypoints block {'updated' if changed else 'unchanged'}")


if __name__ == "__main__":
    main()
