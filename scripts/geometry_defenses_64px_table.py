"""Print docs/results/geometry_defenses_64/README.md's table from the summary.json that scripts/geometry_defenses_64px.py
wrote:  python scripts/geometry_defenses_64px_table.py [FOLDER]"""

import json
import sys
from pathlib import Path

FOLDER = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/geometry_defenses_64")
summary = json.loads((FOLDER / "summary.json").read_text())
NAMES = {"splitnerf 0": "splitnerf", "client-appearance 0": "s2nerf-plus (client appearance)",
         "density-noise 1": "density-noise m = 1 (C = 0.02)", "client-geometry 32": "client-geometry, server res 32"}


def f(x, d=3):
    return "n/a" if x is None else f"{x:.{d}f}"


print("| setting | PSNR | PSNR lost | read-out vs client's depth: abs-rel / within 10 % | surrogate vs client's depth: "
      "abs-rel / within 10 % | read-out scale / \\|w\\| | geometry leakage over floor vs ground truth: abs-rel / "
      "within 10 % [95 % interval over views] | colour leakage_cmpsnr | epsilon |")
print("|---|---|---|---|---|---|---|---|---|")
for key, name in NAMES.items():
    if key not in summary:
        continue
    s, st = summary[key], summary[key]["stored"]
    g = s["geometry_leakage"]
    lost = s["psnr_lost"][0]
    interval = lambda k: f"{g[k][0]:+.3f} [{g[k][1]:+.3f}, {g[k][2]:+.3f}]"  # noqa: E731
    print(f"| {name} | {s['psnr']:.2f} | {lost:+.2f} | {f(st['geometry_readout_vs_victim_absrel'])} / "
          f"{f(st['geometry_readout_vs_victim_within10'])} | {f(st['geometry_surrogate_vs_victim_absrel'])} / "
          f"{f(st['geometry_surrogate_vs_victim_within10'])} | {f(s['readout']['scale_ratio'], 2)} | "
          f"{interval('render|absrel')} / {interval('render|within10')} | {st['leakage_cmpsnr']:+.2f} | "
          f"{f(s['epsilon'], 1)} |")
