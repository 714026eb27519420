"""Canary audit at a stated size: the empirical per-pixel epsilon lower bound next to the accountant's epsilon.

Backs the README's canary-audit table (docs/results/canary_audit/). The victim is the real split model
(server fields | channel with residual-noise | client head) at the cpu frontier's model size, trained on
``--pixels`` training pixels (random rays in the scene box, random colours: the mechanism's guarantee does not
depend on the scene), ``--rays`` per step for ``--steps`` steps; ``--canaries`` of the pixels are candidates.

    python scripts/canary_audit.py --std 0.2 --out docs/results/canary_audit/s0.2.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import torch
from nerfstudio.data.scene_box import SceneBox

from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.evaluation.canary import draw_canaries
from s2nerf_ns.integration.canary_audit import train_with_canaries
from s2nerf_ns.integration.model import SplitNerfModelConfig
from s2nerf_ns.protocol.server import ServerFieldConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--std", type=float, required=True, help="residual-noise std s (pixel units)")
    parser.add_argument("--pixels", type=int, default=16 * 128 * 128, help="training pixels (16 views of 128 px)")
    parser.add_argument("--rays", type=int, default=1024, help="rays per step")
    parser.add_argument("--steps", type=int, default=600, help="training steps")
    parser.add_argument("--canaries", type=int, default=4000, help="candidate pixels (a fair coin each)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the model, the data and the coins")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    origins = (torch.rand(args.pixels, 3, generator=g) - 0.5) * 0.5
    directions = torch.nn.functional.normalize(torch.randn(args.pixels, 3, generator=g), dim=-1)
    colours = torch.rand(args.pixels, 3, generator=g)
    server = ServerFieldConfig(num_levels=8, max_res=512, log2_hashmap_size=15, num_samples=32)
    config = SplitNerfModelConfig(server=server, run_seed=args.seed, run_steps=args.steps,
                                  defense=DefenseConfig(kind="residual-noise", residual_noise_std=args.std))
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=16)
    canaries = draw_canaries(args.pixels, args.canaries, torch.Generator().manual_seed(args.seed + 1))
    start = time.time()
    result = train_with_canaries(model, origins, directions, colours, canaries, args.steps, args.rays, args.seed)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True).stdout.strip())
    result.update(config={k: v for k, v in vars(args).items() if k != "out"}, seconds=round(time.time() - start, 1),
                  commit=commit, dirty_tree=dirty)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str, allow_nan=False))
    print(json.dumps({"audit": result["audit"], "epsilon": result["accountant"]["epsilon"]}, indent=1))


if __name__ == "__main__":
    main()
