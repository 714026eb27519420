"""The benchmarks' smoke presets produce well-formed results, tables and plots; the README's results block is
generated from the committed results.json."""

import json
import math
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest
import torch
from PIL import Image

from s2nerf_ns.bench import common, privacy, report, speed

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "results" / "privacy_cpu" / "results.json"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_privacy_smoke(tmp_path):
    results = privacy.run("smoke", tmp_path, rooms=["office"], allow_dirty=True)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["preset"] == "smoke" and set(saved["cells"]) == {"office/splitnerf/seed42",
                                                                  "office/s2nerf c=1.2 r=1e-4/seed42"}
    for cell in saved["cells"].values():
        for part in ("sma", "ssma"):
            for key in ("attack_psnr", "attack_cmpsnr", "floor_cmpsnr", "embedding_attack_cmpsnr", "leakage_cmpsnr",
                        "gradient_share_cmpsnr", "leakage_private_cmpsnr", "attack_cipsnr_margin"):
                assert isinstance(cell[part][key], float) and math.isfinite(cell[part][key]), (part, key)
        assert math.isfinite(cell["dummies"]["dummy_leakage_cmpsnr"])
        assert cell["victim"]["psnr"] > 0 and cell["train_seconds"] > 0
        assert "max_num_iterations: 15" in cell["config_yaml"]
    prov = saved["provenance"]
    assert len(prov["git_commit"]) in (40, 7) or prov["git_commit"] == "unknown"
    assert prov["allow_dirty"] is True and all(c["provenance"] == prov for c in saved["cells"].values())
    assert {"device", "torch", "nerfstudio", "mitsuba"} <= set(saved["environment"])
    summary = saved["summary"]["office/splitnerf"]
    assert summary["seeds"] == [42] and summary["sma"]["leakage_cmpsnr"]["n"] == 1
    table = (tmp_path / "results.md").read_text()
    assert table.count("| office |") == 4  # two tables, two defenses
    for png in ("privacy_utility.png", "grid_office.png"):
        assert Image.open(tmp_path / png).size[0] > 100
    # resumable: a second call runs nothing new and keeps the cells
    again = privacy.run("smoke", tmp_path, rooms=["office"], allow_dirty=True)
    assert again["cells"] == results["cells"]


def _fake_results():
    def cell(room, defense, seed, value):
        scores = {"attack_psnr": 10.0 + value, "attack_leakage_cmpsnr": value, "leakage_cmpsnr": value, "leakage_cm_lum_ssim": value / 10,
                  "leakage_nmi": value / 100, "gradient_share_cmpsnr": -value, "leakage_private_cmpsnr": math.nan}
        return {"room": room, "defense": defense, "seed": seed, "victim": {"psnr": 20.0 + value},
                "sma": scores, "ssma": dict(scores), "dummies": {"dummy_attack_psnr": 9.0, "dummy_leakage_cmpsnr": 0.5}}
    cells = {f"office/{d}/seed{s}": cell("office", d, s, v) for d, s, v in
             (("splitnerf", 1, 1.0), ("splitnerf", 2, 3.0), ("s2nerf", 1, 0.5), ("s2nerf", 2, 0.5))}
    return {"preset": "cpu", "preset_values": {"resolution": 48, "steps": 300, "rays": 512}, "cells": cells,
            "environment": {"device": "CPU", "torch": "x"}, "provenance": {"git_commit": "abc", "git_dirty": False}}


def test_report_tables_mean_and_spread(tmp_path):
    results = _fake_results()
    text = report.privacy_tables(results)
    assert "| office | splitnerf | 22.00 ± 1.41 | 12.00 ± 1.41 | +2.00 ± 1.41 |" in text
    assert "| office | s2nerf | 20.50 ± 0.00 | 10.50 ± 0.00 | +0.50 ± 0.00 |" in text
    assert "nan" not in text.lower() and "n/a" in text  # the private scores were all NaN: omitted
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\noutro\n")
    assert not report.readme_matches(readme, results)
    assert report.update_readme(readme, results)
    assert report.readme_matches(readme, results)
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("\noutro\n")


def test_readme_block_is_generated_from_committed_results():
    """README's privacy tables are exactly what `s2nerf-bench report` gives for the committed results.json
    (a missing file fails: the README's numbers would have nothing behind them)."""
    assert COMMITTED.exists(), f"{COMMITTED} is missing: the README's privacy block has no results behind it"
    assert report.readme_matches(ROOT / "README.md", report.load(COMMITTED))


def test_environment_without_mitsuba(monkeypatch):
    real = common.version

    def fake(name):
        if name == "mitsuba":
            raise PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(common, "version", fake)
    env = common.environment()
    assert env["mitsuba"] == "not installed" and env["torch"] == real("torch")


def test_speed_smoke(tmp_path):
    results = speed.run("smoke", tmp_path, ("splitnerf", "s2nerf-central", "splitnerf-sma"), rounds=1,
                        steps_per_round=2, warmup=1, ray_counts=(128,), ttq_methods=("s2nerf", "s2nerf-central"),
                        allow_dirty=True)
    methods = results["methods"]
    assert methods["splitnerf"]["victim_step_ms"] > 0
    assert methods["s2nerf-central"]["vs_unsplit_twin"] == 1.0
    assert methods["splitnerf-sma"]["attacker_extra_cost"] > 0
    ttq = results["time_to_quality"]
    assert set(ttq) == {"s2nerf", "s2nerf-central"}
    for row in ttq.values():
        assert row["curve"] and row["curve"][-1]["seconds"] > 0
        assert row["reached"] == (row["final_psnr"] >= row["threshold_psnr"])
    assert "provenance" in results
    assert (tmp_path / "speed.md").read_text().count("|") > 10
