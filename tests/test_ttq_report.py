"""The time-to-quality block is recomputed from the raw held-out curves, and the README's block from the committed
record (a missing record fails)."""

import copy
from pathlib import Path

import pytest

from s2nerf_ns.bench import ttq_report

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "docs" / "results" / "ttq_cpu" / "ttq.json"


def synthetic() -> dict:
    def curve(psnrs):
        return [{"step": 50 * (i + 1), "seconds": 10.0 * (i + 1), "cpu_seconds": 18.0 * (i + 1), "psnr": p}
                for i, p in enumerate(psnrs)]

    return {"preset": "cpu", "rays_per_step": 512, "scene": "office", "resolution": 48, "threshold_psnr": 20.0,
            "model": "reference size", "max_steps": 150, "eval_every": 50,
            "environment": {"device": "CPU (x86_64)", "cpu_count": "2"},
            "provenance": {"git_commit": "abcdef0123", "git_dirty": False}, "load_average_1min": {"before": 1.0,
                                                                                                  "after": 2.0},
            "time_to_quality": {"s2nerf": {"reached": True, "seconds": 99.0, "steps": 7, "curve": curve([15, 21, 22])},
                                "nerfacto": {"reached": False, "curve": curve([12, 16, 19])}}}


def test_rows_come_from_the_curve_not_the_stored_fields():
    record = synthetic()
    text = ttq_report.markdown(record)
    assert "| s2nerf | 100 | 20.0 | 36.0 | - | 22.00 |" in text  # nerfacto never reached: no ratio
    assert "| nerfacto | not within 150 steps | > 30.0 | > 54.0 | - | 19.00 |" in text
    stored = copy.deepcopy(record)
    stored["time_to_quality"]["s2nerf"].update(reached=False, seconds=1.0, steps=1)
    assert ttq_report.markdown(stored) == text  # derived fields are ignored


@pytest.mark.parametrize("method, index, key, delta", [("s2nerf", 1, "psnr", -2.0), ("s2nerf", 1, "cpu_seconds", 5.0),
                                                      ("nerfacto", 2, "psnr", 1.5), ("s2nerf", 2, "psnr", 0.3)])
def test_shifting_any_raw_score_changes_the_block(method, index, key, delta):
    record = synthetic()
    before = ttq_report.block(record)
    record["time_to_quality"][method]["curve"][index][key] += delta
    assert ttq_report.block(record) != before


def test_ratio_to_nerfacto_uses_cpu_time():
    record = synthetic()
    record["time_to_quality"]["nerfacto"]["curve"][2]["psnr"] = 20.5  # nerfacto reaches at step 150, 54 CPU s
    assert "| s2nerf | 100 | 20.0 | 36.0 | 0.67 |" in ttq_report.markdown(record)


def test_missing_record_fails(tmp_path):
    with pytest.raises(FileNotFoundError):
        ttq_report.load(tmp_path / "ttq.json")


def test_readme_ttq_block_is_generated_from_the_committed_record():
    assert ttq_report.readme_matches(ROOT / "README.md", RECORD)  # fails (not skips) without the record
