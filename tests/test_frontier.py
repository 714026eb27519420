"""The frontier benchmark: records, Pareto front, plot, resumability (smoke preset, one family)."""

import json

from PIL import Image

from s2nerf_ns.bench import frontier


def test_pareto_front_and_points():
    xs, ys = [0.0, 1.0, 2.0, 1.5, 3.0], [1.0, 0.5, 0.1, 0.6, 0.1]
    assert frontier.pareto(xs, ys) == [0, 1, 2]
    assert frontier.points("smoke", ["s2nerf"]) == [("s2nerf", 0.3), ("s2nerf", 1.2)]  # the paper's c among them
    assert all(len(frontier.points("cpu", [f])) >= 4 for f in frontier.FAMILIES)


def test_frontier_smoke(tmp_path):
    results = frontier.run("smoke", tmp_path, rooms=["office"], families=["residual-noise"])
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
    again = frontier.run("smoke", tmp_path, rooms=["office"], families=["residual-noise"])  # resumable
    assert [r["run_dir"] for r in again["records"]] == [r["run_dir"] for r in results["records"]]
