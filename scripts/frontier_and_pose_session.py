"""One GPU session: the frontier (issue 11) and the global pose search (issue 14), as many small processes.

Every task is one ``s2nerf-bench`` command (one fresh process each: no memory carried from run to run)
writing its own ``frontier.json`` / ``results.json`` under ``--work``. Tasks start in priority order while
``--start-until`` seconds have not passed; whatever runs at ``--kill-at`` is stopped. Then the JSON
results, per-task logs and small images are packed into ``<out>/results.tar.gz``; merge them with
``s2nerf-bench frontier --merge`` and ``s2nerf-bench pose-report`` (which merges several folders per side).

    python3 scripts/frontier_and_pose_session.py --preset cpu --workers 14 --out $OUT      # on the GPU host
    python3 scripts/frontier_and_pose_session.py --preset smoke --workers 2 --out /tmp/o   # the same plumbing on a CPU
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import List, Tuple

ROOMS = ("office", "bedroom", "livingroom")
SEEDS = (42, 43)
PAPER = ("s2nerf", 1.2)


def frontier_tasks(preset: str, work: Path, runs: Path) -> List[Tuple[str, List[str]]]:
    from s2nerf_ns.bench.frontier import points

    base = [sys.executable, "-m", "s2nerf_ns.bench.cli", "frontier", "--preset", preset, "--adaptive",
            "--runs", str(runs)]
    first = []
    for seed in SEEDS:  # undefended reference and the paper's point: needed by every other point
        for room in ROOMS:
            name = f"frontier_{room}_{seed}_reference"
            first.append((name, base + ["--rooms", room, "--seeds", str(seed), "--families", PAPER[0],
                                        "--values", str(PAPER[1]), "--out", str(work / name)]))
    by_family = {}
    for family, value in points(preset, ["client-appearance", "residual-noise", "s2nerf-floor", "max-norm",
                                         "s2nerf"]):
        if (family, value) != PAPER:
            by_family.setdefault(family, []).append(value)
    rest = []
    order = (2, 0, 3, 1)  # spread each family's knob first, then fill in
    for rank in order:
        for family, values in by_family.items():
            if rank >= len(values):
                continue
            for seed in SEEDS:
                for room in ROOMS:
                    name = f"frontier_{room}_{seed}_{family}_{values[rank]:g}"
                    rest.append((name, base + ["--no-baseline", "--rooms", room, "--seeds", str(seed), "--families",
                                               family, "--values", str(values[rank]), "--out", str(work / name)]))
    return first + rest


def pose_tasks(preset: str, work: Path) -> List[Tuple[str, List[str]]]:
    base = [sys.executable, "-m", "s2nerf_ns.bench.cli", "privacy", "--preset", preset]
    tasks = []
    for defense in ("splitnerf", "s2nerf c=1.2 r=1e-4"):
        for seed in SEEDS:
            for room in ROOMS:
                for pose in ("estimate", "known"):
                    tag = defense.split()[0]
                    name = f"pose_{pose}_{room}_{tag}_{seed}"
                    tasks.append((name, base + ["--rooms", room, "--defenses", defense, "--seeds", str(seed),
                                                "--pose", pose, "--pose-search", "global", "--num-leaked", "2", "--out", str(work / name)]))
    return tasks


def interleave(frontier: list, pose: list) -> list:
    """Frontier references first, then one pose task for every three frontier points."""
    head, rest = frontier[:6], frontier[6:]
    out = head + pose[:6]
    pose = pose[6:]
    while rest or pose:
        out += rest[:3] + pose[:1]
        rest, pose = rest[3:], pose[1:]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--workers", type=int, default=14)
    parser.add_argument("--start-until", type=float, default=420.0, help="seconds after which no task starts")
    parser.add_argument("--kill-at", type=float, default=540.0, help="seconds after which running tasks stop")
    parser.add_argument("--work", type=Path, default=Path("/tmp/s2nerf-session"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", choices=("frontier", "pose", "both"), default="both")
    parser.add_argument("--max-tasks", type=int, default=0, help="0: all")
    parser.add_argument("--skip-references", action="store_true",
                        help="no splitnerf + paper-point tasks (already run into another folder)")
    parser.add_argument("--skip", nargs="*", default=[], help="frontier points to leave out, as family:value")
    parser.add_argument("--seed-major", action="store_true",
                        help="every point at the first seed before any at the next (default: seeds interleaved)")
    args = parser.parse_args()
    start = time.time()
    work, runs = args.work, args.work / "runs"
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "claims").mkdir(exist_ok=True)
    frontier = frontier_tasks(args.preset, work, runs) if args.only in ("frontier", "both") else []
    skip = {(f, float(v)) for f, v in (item.split(":") for item in args.skip)}
    frontier = [(n, c) for n, c in frontier if not (args.skip_references and n.endswith("_reference"))
                and not any(n.endswith(f"_{f}_{v:g}") for f, v in skip)]
    pose = pose_tasks(args.preset, work) if args.only in ("pose", "both") else []
    if args.seed_major:
        frontier.sort(key=lambda task: SEEDS.index(int(task[1][task[1].index("--seeds") + 1])))  # stable
    tasks = interleave(frontier, pose) if frontier and pose and not args.skip_references else frontier + pose
    if args.max_tasks:
        tasks = tasks[:args.max_tasks]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    lock, status = threading.Lock(), {}
    queue = list(tasks)

    def worker() -> None:
        while True:
            with lock:
                if not queue or time.time() - start > args.start_until:
                    return
                name, cmd = queue.pop(0)
                try:  # a claim per task: several runners may share one --work folder
                    os.close(os.open(work / "claims" / name, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    continue
                status[name] = "running"
            t0 = time.time()
            with open(work / "logs" / f"{name}.log", "w") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
                try:
                    rc = proc.wait(timeout=max(1.0, args.kill_at - (time.time() - start)))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = "killed"
            with lock:
                status[name] = f"rc={rc} {time.time() - t0:.0f}s"
                print(f"[{time.time() - start:5.0f}s] {name}: {status[name]}", flush=True)

    threads = [threading.Thread(target=worker) for _ in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (work / "status.txt").write_text("\n".join(f"{k}: {v}" for k, v in status.items()) + "\n"
                                     + f"not started: {len(queue)}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    keep = ("frontier.json", "results.json", "leaked_poses.json", "attack_summary.json", "first_eval_view.npz",
            "privacy.json", "config.yml")
    with tarfile.open(args.out / "results.tar.gz", "w:gz") as tar:
        for path in sorted(work.rglob("*")):
            if path.is_file() and (path.name in keep or path.suffix in (".log", ".txt")):
                tar.add(path, arcname=str(path.relative_to(work)))
    done = sum(v.startswith("rc=0") for v in status.values())
    print(f"{done}/{len(tasks)} tasks finished in {time.time() - start:.0f}s; {len(queue)} not started", flush=True)


if __name__ == "__main__":
    main()
