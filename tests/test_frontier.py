"""The frontier benchmark: records, Pareto front, plot, resumability (smoke preset, one family)."""

import json
import math

import pytest
from PIL import Image

from s2nerf_ns.bench import frontier, frontier_cells


def test_pareto_front_and_points():
    xs, ys = [0.0, 1.0, 2.0, 1.5, 3.0], [1.0, 0.5, 0.1, 0.6, 0.1]
    assert frontier.pareto(xs, ys) == [0, 1, 2]
    assert frontier.points("smoke", ["s2nerf"]) == [("s2nerf", 0.3), ("s2nerf", 1.2)]  # the paper's c among them
    assert all(len(frontier.points("cpu", [f])) >= 4 for f in frontier.FAMILIES)


def test_frontier_smoke(tmp_path):
    results = frontier.run("smoke", tmp_path, rooms=["office"], families=["residual-noise"], allow_dirty=True)
    saved = json.loads((tmp_path / "frontier.json").read_text())
    records = saved["records"]
    assert {(r["family"], r["value"]) for r in records} == {("splitnerf", 0.0), ("residual-noise", 0.05),
                                                            ("residual-noise", 0.2)}
    for r in records:
        assert r["room"] == "office" and r["seed"] == 42 and r["psnr"] > 0 and "ssim" in r
        assert r["leakage"] and all(isinstance(v, float) for v in r["leakage"].values())
        assert isinstance(r["psnr_lost"], float)
    base = next(r for r in records if r["family"] == "splitnerf")
    assert base["psnr_lost"] == 0.0 and base["epsilon"] is None
    eps = {r["value"]: r["epsilon"] for r in records if r["family"] == "residual-noise"}
    assert eps[0.2] < eps[0.05]  # more noise, smaller epsilon
    assert saved["leakage_key"] in records[0]["leakage"]
    assert Image.open(tmp_path / "frontier.png").size[0] > 100
    for r in records:  # the raw rows the confidence intervals resample: every eval view and dummy image
        assert r["per_view"] and all({"view", "psnr", "attack_cmpsnr", "floor_constant_cmpsnr"} <= set(v)
                                     for v in r["per_view"])
        assert abs(sum(v["psnr"] for v in r["per_view"]) / len(r["per_view"]) - r["psnr"]) < 1e-4
        assert r["dummies"]["per_image"] and all("dummy_attack_cmpsnr" in d for d in r["dummies"]["per_image"])
        assert r["provenance"]["allow_dirty"] is True
    # the verdict's leakage, recomputed from the per-view raw scores, is the pipeline's own derived leakage
    for (room, family, value), cell in frontier_cells.cells(records).items():
        record = next(r for r in records if (r["room"], r["family"], r["value"]) == (room, family, value))
        for (scope, metric), interval in cell["leakage"].items():
            key = {"render": "leakage_", "private": "leakage_private_", "dummies": "dummy_leakage_",
                   "dummies private": "dummy_leakage_private_"}[scope] + metric
            stored = (record["dummies"]["dummy_metrics"] if scope.startswith("dummies") else record["leakage"]).get(key)
            if stored is None or not math.isfinite(stored):
                assert not math.isfinite(interval.point), (family, value, scope, metric)
            else:
                assert interval.point == pytest.approx(stored, abs=1e-6), (family, value, scope, metric)
    again = frontier.run("smoke", tmp_path, rooms=["office"], families=["residual-noise"], allow_dirty=True)  # resumable
    assert [r["run_dir"] for r in again["records"]] == [r["run_dir"] for r in results["records"]]
