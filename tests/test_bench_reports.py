"""Merging per-worker results and the verdicts against issues 11 and 14, on hand-made records (no training)."""

import json
from pathlib import Path

import pytest

from s2nerf_ns.bench import frontier, frontier_report, pose_report

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_FRONTIER = ROOT / "docs" / "results" / "frontier_cpu_2core" / "frontier.json"
COMMITTED_POSE = ROOT / "docs" / "results" / "pose_global_cpu"


def record(room, family, value, seed, psnr, leak, dummy=None, private=None):
    """A frontier record whose every metric of a scope has the same leakage."""
    leakage = {f"leakage_{m}": leak for m in frontier_report.METRICS}
    leakage.update({f"leakage_private_{m}": leak if private is None else private for m in frontier_report.METRICS})
    dummies = {f"dummy_leakage_{m}": leak if dummy is None else dummy for m in frontier_report.METRICS}
    dummies.update({f"dummy_leakage_private_{m}": leak if dummy is None else dummy for m in frontier_report.METRICS})
    return {"room": room, "family": family, "value": value, "seed": seed, "adaptive_attacker": True, "psnr": psnr,
            "ssim": 0.5, "leakage": leakage, "dummies": {"dummy_metrics": dummies}, "epsilon": None}


def write(path: Path, records, preset="cpu"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"preset": preset, "records": records, "provenance": {"git_commit": "abc"}}))
    return path


def test_merge_joins_workers_drops_duplicates_and_refuses_mixed_presets(tmp_path):
    a = write(tmp_path / "a" / "frontier.json", [record("office", "splitnerf", 0.0, 42, 25.0, 1.0),
                                                record("office", "s2nerf", 1.2, 42, 23.0, 0.5)])
    b = write(tmp_path / "b" / "frontier.json", [record("office", "s2nerf", 1.2, 42, 99.0, 0.0),  # duplicate: dropped
                                                record("office", "max-norm", 2.0, 42, 24.0, 0.05)])
    merged = frontier.merge([a, b], tmp_path / "out")
    assert len(merged["records"]) == 3 and len(merged["sources"]) == 2
    lost = {(r["family"], r["value"]): r["psnr_lost"] for r in merged["records"]}
    assert lost == {("splitnerf", 0.0): 0.0, ("s2nerf", 1.2): 2.0, ("max-norm", 2.0): 1.0}
    assert (tmp_path / "out" / "frontier.png").exists()
    c = write(tmp_path / "c" / "frontier.json", [record("office", "s2nerf", 0.3, 42, 24.0, 0.5)], preset="smoke")
    with pytest.raises(SystemExit, match="preset"):
        frontier.merge([a, c], tmp_path / "out2")


def test_goal_needs_every_room_scope_and_metric():
    records = []
    for room in ("office", "bedroom"):
        records.append(record(room, "splitnerf", 0.0, 42, 25.0, 0.3))
        records.append(record(room, "good", 1.0, 42, 24.0, 0.02))  # 1 dB lost, ratio 0.067 everywhere
        records.append(record(room, "costly", 1.0, 42, 23.0, 0.0))  # no leakage, but 2 dB lost
    # leaks on the dummies of one room only: fails there
    records.append(record("office", "dummy-leak", 1.0, 42, 24.5, 0.0, dummy=0.2))
    records.append(record("bedroom", "dummy-leak", 1.0, 42, 24.5, 0.0))
    verdict = frontier_report.verdicts(frontier.with_loss({"records": records}))
    assert verdict[("good", 1.0)]["meets_goal"]
    assert not verdict[("costly", 1.0)]["meets_goal"] and verdict[("costly", 1.0)]["max_psnr_lost"] == 2.0
    leak = verdict[("dummy-leak", 1.0)]
    assert not leak["meets_goal"] and leak["worst"][0][0].startswith("dummies")
    assert leak["worst"][1] == pytest.approx(0.2 / 0.3)
    text = frontier_report.markdown({"preset": "cpu", "records": frontier.with_loss({"records": records})})
    assert "Goal met" in text and "good 1" in text


def test_undefended_leakage_within_resolution_is_left_out():
    records = [record("office", "splitnerf", 0.0, 42, 25.0, 1.0, private=0.005),  # private: within resolution
               record("office", "d", 1.0, 42, 24.0, 0.05, private=0.005)]
    verdict = frontier_report.verdicts(frontier.with_loss({"records": records}))[("d", 1.0)]
    assert verdict["meets_goal"] and verdict["excluded"] == len(frontier_report.METRICS)


def cell(room, seed, errors, sma, ssma):
    metrics = lambda v: {m: v for m in pose_report.GAIN_METRICS}  # noqa: E731
    return {"room": room, "defense": "splitnerf", "seed": seed, "leaked_pose_errors": errors,
            "sma": metrics(sma), "ssma": metrics(ssma)}


def test_pose_report_medians_and_share(tmp_path):
    good = [{"rotation_error_deg": 1.0, "translation_error": 0.01}, {"rotation_error_deg": 2.0, "translation_error": 0.02}]
    bad = [{"rotation_error_deg": 90.0, "translation_error": 1.0}] * 2
    estimate = {"preset": "cpu", "num_leaked": 2, "cells": {
        "office/splitnerf/seed42": cell("office", 42, good, 1.0, 1.95),  # gain 0.95 of the known 1.0
        "bedroom/splitnerf/seed42": cell("bedroom", 42, bad, 1.0, 0.5)}}
    known = {"cells": {"office/splitnerf/seed42": cell("office", 42, None, 1.0, 2.0),
                       "bedroom/splitnerf/seed42": cell("bedroom", 42, None, 1.0, 2.0)}}
    text = pose_report.markdown(estimate, known)
    summary = {line.split("|")[1].strip(): line for line in text.splitlines() if line.count("|") == 8}
    assert summary["office"].rstrip().endswith("**yes** |") and "| 1.5 |" in summary["office"]
    assert summary["bedroom"].rstrip().endswith("no |")
    paths = []
    for i, (key, c) in enumerate(estimate["cells"].items()):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps({"preset": "cpu", "pose": "estimate", "num_leaked": 2, "cells": {key: c}}))
    assert len(pose_report.merge(paths)["cells"]) == 2
    paths[1].write_text(json.dumps({"preset": "gpu", "cells": {}}))
    with pytest.raises(SystemExit, match="preset"):
        pose_report.merge(paths)


def test_readme_frontier_block_is_generated_from_committed_results():
    results = json.loads(COMMITTED_FRONTIER.read_text())
    assert frontier_report.readme_matches(ROOT / "README.md", results)


def test_readme_pose_block_is_generated_from_committed_results():
    estimate = json.loads((COMMITTED_POSE / "estimate.json").read_text())
    known = json.loads((COMMITTED_POSE / "known.json").read_text())
    assert pose_report.readme_matches(ROOT / "README.md", estimate, known)
