"""The keypoint pose block: errors recomputed from the stored poses (a moved estimate moves the table, a stored error
field is ignored), the README's block from the committed folders (a missing file fails), and the prose under it."""

import copy
import json
import math
from pathlib import Path

import pytest

from s2nerf_ns.bench import pose_keypoints_report as report

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = [ROOT / "docs" / "results" / name for name in (
    "pose_keypoints_128", "pose_keypoints_128_upper_sharp", "pose_keypoints_128_oracle", "pose_keypoints_128_basin",
    "pose_keypoints_128_4000", "pose_keypoints_128_4000_basin")]


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
    return {"folder": tmp_path / "pose_keypoints_128", "run": run, "records": records, "self_match": []}


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
    """Every number the prose after the block states is recomputed here from the committed poses and counts."""
    results = {f.name: report.load(f) for f in FOLDERS}
    rows = {(name, row["server"]): row for name, r in results.items() for row in report.summary_rows(r)}
    text = (ROOT / "README.md").read_text()
    prose = " ".join(text[text.index(report.END, text.index(report.BEGIN)):].split("\n\n")[1].split())
    split = rows[("pose_keypoints_128", "splitnerf")]
    plus = rows[("pose_keypoints_128", "s2nerf-plus")]
    upper = rows[("pose_keypoints_128", "upper-bound")]
    sharp = rows[("pose_keypoints_128_upper_sharp", "upper-bound")]
    oracle = rows[("pose_keypoints_128_oracle", "splitnerf, client colour")]
    main = results["pose_keypoints_128"]
    split_records = [r for r in main["records"] if r["victim"] == "splitnerf"]
    inliers = [r["inliers"] for r in split_records]
    far = max(report.errors(r, "estimated_c2w")["translation_error"] for r in main["records"])
    matches = [row for row in report.self_match_rows(main) if row["victim"] == "splitnerf"]
    claims = [
        f"{split['within']} of {split['photos']} photos land within 3° and 0.05 units",
        f"(median {split['median_rotation']:.1f}° / {split['median_translation']:.2f} units)",
        f"at most {max(inliers)} inliers",
        f"{sum(i == 0 for i in inliers)} of {len(inliers)} photos have no candidate with six",
        f"{plus['within']} of {plus['photos']} (median {plus['median_rotation']:.1f}° / "
        f"{plus['median_translation']:.2f} units)",
        f"puts {upper['within']} of {upper['photos']} within the goal (median {upper['median_rotation']:.1f}° / "
        f"{upper['median_translation']:.3f} units; {sharp['median_rotation']:.1f}° / {sharp['median_translation']:.3f} "
        f"and {sharp['within']} of {sharp['photos']} with sharper settings)",
        f"{oracle['median_rotation']:.1f}° / {oracle['median_translation']:.3f} units median, {oracle['within']} of "
        f"{oracle['photos']}",
        f"{min(m['keypoints'] for m in matches):g}-{max(m['keypoints'] for m in matches):g} SIFT keypoints",
        f"the victim's own render matches {min(m['client'] for m in matches):g}-{max(m['client'] for m in matches):g}",
        f"the surrogate's {min(m['surrogate'] for m in matches):g}-{max(m['surrogate'] for m in matches):g}",
        f"{far:,.0f} units away",
    ]
    found = [r["inliers"] for r in main["records"] if r["inliers"] > 0]
    claims.append(f"PnP on {min(found)}-{max(found)} inliers")
    for claim in claims:
        assert claim in prose, claim
    assert all(r["inliers"] == 0 for r in main["records"] if r["victim"] == "s2nerf-plus")  # "no candidate reaches six"


def test_self_match_table_comes_from_the_per_view_counts(tmp_path):
    result = synthetic(tmp_path)
    result["self_match"] = [{"room": "office", "victim": "splitnerf", "view": v, "photo_keypoints": 100 + v,
                             "surrogate_correct": c, "client_correct": 2 * c + 1} for v, c in enumerate([0, 4, 10])]
    assert "| office | splitnerf | 3 | 101 | 4 (0-10) | 9 (1-21) |" in report.markdown([result])
    result["self_match"][1]["surrogate_correct"] = 12
    assert "| office | splitnerf | 3 | 101 | 10 (0-12) | 9 (1-21) |" in report.markdown([result])


def test_basin_table_comes_from_the_poses_and_the_per_photo_diagnostics(tmp_path):
    run = {"provenance": {"git_commit": "abcdef0123", "git_dirty": False}, "victims_from": "/x/pose_keypoints_128",
           "starts": [[5.0, 0.025], [15.0, 0.075]], "repeats": 1, "search": {"min_inliers": 6}}
    records = [{"room": "office", "victim": "splitnerf", "colour": "client", "leaked": i, "start_deg": deg,
                "estimated_c2w": pose(est, 0.0), "true_c2w": pose(0.0, 0.0), "rotation_error_deg": 0.0}
               for i in range(2) for deg, est in ((5.0, 1.0 + 4 * i), (15.0, 15.0))]
    truth = [{"room": "office", "victim": "splitnerf", "colour": "client", "leaked": i, "psnr": 14.0 + i,
              "correct": 4 + 2 * i, "pnp_inliers": 3 + 5 * i, "readout_over_true_depth_median": 0.5 + 0.1 * i,
              "readout_within10_of_true_depth": 0.1, "readout_vs_client_depth_median_relerr": 0.02}
             for i in range(2)]
    train = [{"room": "office", "victim": "splitnerf", "view": v, "readout_over_true_depth_median": 0.8,
              "readout_within10_of_true_depth": 0.07} for v in range(3)]
    result = {"folder": tmp_path / "pose_keypoints_128_basin", "run": run, "records": records, "self_match": [],
              "at_truth": truth, "train_depth": train}
    row = "| office | splitnerf | client | 2 | 14.5 | 5 | 1 of 2 | 0.55 | 0.10 | 0.020 | 0.80, 0.07 | 1 of 2 | 0 of 2 |"
    assert row in report.basin_table(result) and row in report.markdown([result])
    result["records"][2]["estimated_c2w"] = pose(2.0, 0.0)  # photo 1's start at 5 deg now converges
    assert "| 2 of 2 | 0 of 2 |" in report.basin_table(result)
    assert "| splitnerf |" not in report.summary_table([result])  # a basin folder is not a search run


def test_readme_basin_paragraph_matches_the_records():
    """The paragraph on the basin diagnostic (the second after the block), recomputed from the committed records."""
    result = report.load(ROOT / "docs" / "results" / "pose_keypoints_128_basin")
    rows = [r for r in report.basin_rows(result) if r["victim"] == "splitnerf"]
    surrogate = [r for r in rows if r["colour"] == "surrogate"]
    client = [r for r in rows if r["colour"] == "client"]
    text = (ROOT / "README.md").read_text()
    prose = " ".join(text[text.index(report.END, text.index(report.BEGIN)):].split("\n\n")[2].split())

    def within(group, deg):
        return sum(r["starts"][deg][0] for r in group), sum(r["starts"][deg][1] for r in group)

    def span(group, key, fmt):
        return f"{min(r[key] for r in group):{fmt}}-{max(r[key] for r in group):{fmt}}"

    (s5, n5), (s15, n15), (c5, _), (c15, _) = (within(surrogate, 5.0), within(surrogate, 15.0), within(client, 5.0),
                                                within(client, 15.0))
    claims = [
        f"From 5° / 0.025 units the search through the surrogate's colour ends within the goal on {s5} of {n5} "
        f"splitnerf photos, from 15° / 0.075 units on {s15} of {n15}; with the victim's own colour on {c5} and {c15} "
        f"of {n5}",
        f"the surrogate's render scores {span(surrogate, 'psnr', '.1f')} dB against the photo and the victim's own "
        f"{span(client, 'psnr', '.1f')} dB",
        f"to {min(r['client_relerr'] for r in rows) * 100:.1f}-{max(r['client_relerr'] for r in rows) * 100:.1f} %",
        f"the read-out is {span(rows, 'depth_ratio', '.2f')} of the true z-depth at the extra views",
        f"within 10 % of it on at most {max(r['within10'] for r in rows) * 100:.0f} % of their pixels",
        f"and {span(rows, 'train_depth_ratio', '.2f')} of it at training views",
    ]
    for claim in claims:
        assert claim in prose, claim
    assert max(r["depth_ratio"] for r in rows) < 0.6 and max(r["train_depth_ratio"] for r in rows) < 0.8


def test_readme_longer_victim_sentences_match_the_records():
    """The 4,000-step victim's sentences (end of the basin paragraph), recomputed from its committed records."""
    search = report.load(ROOT / "docs" / "results" / "pose_keypoints_128_4000")
    basin = report.load(ROOT / "docs" / "results" / "pose_keypoints_128_4000_basin")
    steps = search["run"]["preset"]["steps"]
    rows = {r["colour"]: r for r in report.basin_rows(basin)}
    sur, own = rows["surrogate"], rows["client"]
    text = (ROOT / "README.md").read_text()
    prose = " ".join(text[text.index(report.END, text.index(report.BEGIN)):].split("\n\n")[2].split())
    records = search["records"]
    claims = [
        f"trained {steps:,} steps (`pose_keypoints_128_4000`, {steps / 600:.1f} times the preset)",
        f"(read-out {sur['train_depth_ratio']:.2f} of the true depth, within 10 % on {sur['train_within10'] * 100:.0f} % "
        f"of the pixels) but not at the extra views ({sur['depth_ratio']:.2f}, {sur['within10'] * 100:.0f} %)",
        f"no candidate with six inliers for any of its {len(records)} photos",
        f"it ends within the goal on {sur['starts'][5.0][0]} of {sur['starts'][5.0][1]} through the surrogate's colour "
        f"({own['starts'][5.0][0]} of {own['starts'][5.0][1]} with the victim's own)",
    ]
    assert all(r["inliers"] == 0 for r in records) and all(r["victim"] == "splitnerf" for r in records)
    for claim in claims:
        assert claim in prose, claim
