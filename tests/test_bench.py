"""The benchmarks' smoke presets produce well-formed results, tables and plots."""

import json

from PIL import Image

from s2nerf_ns.bench import privacy, speed


def test_privacy_smoke(tmp_path):
    results = privacy.run("smoke", tmp_path, rooms=["office"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["preset"] == "smoke" and set(saved["cells"]) == {"office/splitnerf", "office/s2nerf c=1.2 r=1e-4"}
    for cell in saved["cells"].values():
        for part in ("sma", "ssma"):
            for key in ("psnr", "cipsnr", "cipsnr_margin", "lum_ssim_margin", "baseline_psnr"):
                assert isinstance(cell[part][key], float), (part, key)
        assert cell["victim"]["psnr"] > 0 and cell["train_seconds"] > 0
    table = (tmp_path / "results.md").read_text()
    assert table.count("| office |") == 2
    for png in ("privacy_utility.png", "grid_office.png"):
        assert Image.open(tmp_path / png).size[0] > 100
    # resumable: a second call runs nothing new and keeps the cells
    again = privacy.run("smoke", tmp_path, rooms=["office"])
    assert again["cells"] == results["cells"]


def test_speed_smoke(tmp_path):
    results = speed.run("smoke", tmp_path, ("splitnerf", "s2nerf-central", "splitnerf-sma"), rounds=1,
                        steps_per_round=2, warmup=1, ray_counts=(128,))
    methods = results["methods"]
    assert methods["splitnerf"]["victim_step_ms"] > 0
    assert methods["s2nerf-central"]["vs_unsplit_twin"] == 1.0
    assert methods["splitnerf-sma"]["attacker_extra_cost"] > 0
    assert (tmp_path / "speed.md").read_text().count("|") > 10
