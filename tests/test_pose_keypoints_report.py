"""The keypoint pose block: errors recomputed from the stored poses (a moved estimate moves the table, a stored error
field is ignored), the README's block from the committed folders (a missing file fails), and the prose under it."""

import copy
import json
import math
import re
from pathlib import Path

import pytest
import torch

from s2nerf_ns.bench import pose_keypoints_report as report

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = [ROOT / "docs" / "results" / name for name in ("pose_keypoints_128", "pose_keypoints_128_upper_sharp")]


def pose(yaw_deg: float, x: float) -> list:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    return [[c, 0.0, s, x], [0.0, 1.0, 0.0, 0.0], [-s, 0.0, c, 0.0]]


def synthetic(tmp_path: Path) -> dict:
    run = {"provenance": {"git_commit": "abcdef0123", "git_dirty": False, "allow_dirty": False}, "seed": 42,
           "search": {"candidates": 36, "detector": "sift", "ratio": 0.8, "photo_blur": 1.0, "reprojection_px": 3.0,
                      "min_inliers": 6, "rounds": 4}}
    records = [{"room": "office", "victim": "splitnerf", "leaked": i, "inliers": 10, "search_seconds": 5.0,
                "estimated_c2w": pose(deg, dx), "first_stage_c2w": pose(20.0, 0.3), "true_c2w": pose(0.0, 0.0)}
               for i, (deg, dx) in enumerate([(1.0, 0.01), (2.0, 0.04), (10.0, 0.2)])]
    return {"folder": tmp_path / "pose_keypoints_128", "run": run, "records": records}


def test_errors_come_from_the_poses_not_stored_fields(tmp_path):
    result = synthetic(tmp_path)
    text = report.markdown([result])
    assert "| splitnerf | office | 3 | 2.0 | 0.040 | 2 of 3 |" in text
    stored = copy.deepcopy(result)
    for r in stored["records"]:
        r["estimated"] = {"rotation_error_deg": 0.0, "translation_error": 0.0}  # ignored
    assert report.markdown([stored]) == text
    moved = copy.deepcopy(result)
    moved["records"][1]["estimated_c2w"] = pose(5.0, 0.04)
    assert "| splitnerf | office | 3 | 5.0 | 0.040 | 1 of 3 |" in report.markdown([moved])


def test_missing_records_fail(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(synthetic(tmp_path)["run"]))
    with pytest.raises(FileNotFoundError):
        report.load(tmp_path)


def test_readme_pose_keypoints_block_is_generated_from_the_committed_folders():
    assert report.readme_matches(ROOT / "README.md", FOLDERS)  # fails (not skips) without the folders


def test_readme_prose_under_the_block_matches_the_records():
    """Every number the prose after the block states is recomputed here from the committed poses."""
    results = [report.load(f) for f in FOLDERS]
    rows = {(r["folder"].name, row["server"]): row for r in results for row in report.summary_rows(r)}
    text = (ROOT / "README.md").read_text()
    prose = text[text.index(report.END, text.index(report.BEGIN)):].split("\n\n")[1]
    main = results[0]
    split = rows[("pose_keypoints_128", "splitnerf")]
    sharp = rows[("pose_keypoints_128_upper_sharp", "upper-bound")]
    within = sum(row["within"] for key, row in rows.items() if key[1] != "upper-bound")
    photos = sum(row["photos"] for key, row in rows.items() if key[1] != "upper-bound")
    claims = {
        "victims_within": f"{within} of {photos}",
        "split_median": f"{split['median_rotation']:.1f}° / {split['median_translation']:.2f}",
        "sharp_median": f"{sharp['median_rotation']:.1f}° / {sharp['median_translation']:.3f}",
        "sharp_within": f"{sharp['within']} of {sharp['photos']}",
    }
    for name, claim in claims.items():
        assert claim in prose, (name, claim)
    inliers = [r["inliers"] for r in main["records"] if r["victim"] != "upper-bound"]
    assert f"at most {max(inliers)} inliers" in prose
    zero = sum(i == 0 for i in inliers)
    assert f"{zero} of {len(inliers)} photos" in prose
