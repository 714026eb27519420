"""The table of docs/results/pose_fullres_cpu/summary.md from the ``fullres_<room>.log`` files that
scripts/pose_fullres_orientation_search.py printed:

    python scripts/pose_fullres_summary.py docs/results/pose_fullres_cpu > docs/results/pose_fullres_cpu/summary.md
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROW = re.compile(r"^\s+(\S+)\s+render \d+s \| 384x5: best ([\d.]+)deg ([\d.]+) .* truerot ([\d.]+) \| "
                 r"1536x5: best ([\d.]+)deg ([\d.]+) .*bestnear12 ([\d.]+) truerot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("."), help="folder of the fullres_<room>.log files")
    folder = parser.parse_args().folder
    print("| room | photo | position | distance | true rotation's score | best of 384x5 (deg off, score) "
          "| best of 1536x5 (deg off, score) | best within 12 deg (1536x5) |")
    print("|---|---|---|---|---|---|---|---|")
    found = total = 0
    for log in sorted(folder.glob("fullres_*.log")):
        room, photo = log.stem.split("_", 1)[1], None
        for line in log.read_text().splitlines():
            if line.startswith("photo "):
                photo = line.split(":")[0].split()[1]
            m = ROW.match(line)
            if m:
                name, a384, s384, strue, a1536, s1536, snear = m.groups()
                kind, dist = ("true centre", "0") if name == "true" else (
                    ("near (random)", name[3:]) if name.startswith("off") else ("grid point", name[4:]))
                print(f"| {room} | {photo} | {kind} | {dist} | {strue} | {float(a384):.0f}, {s384} | "
                      f"{float(a1536):.0f}, {s1536} | {snear} |")
                if name != "true":
                    total += 1
                    found += float(a1536) <= 5.0
    print(f"\nAway from the true centre, the best of the 7,680 full-resolution orientations (1536x5) is within 5 "
          f"degrees of the true rotation at {found} of {total} positions.")


if __name__ == "__main__":
    main()
