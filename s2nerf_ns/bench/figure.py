"""Picture of an attack run: ground truth | victim | attacker | attacker after the best affine colour map.

The last column uses the ground truth to choose the colour map, so it is an evaluation aid (it shows the
structure the attacker recovered, which is what the colour-invariant metrics score), not attacker output.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nerfstudio.utils.eval_utils import eval_setup

from s2nerf_ns.attacks.leakage import affine_color_fit


@torch.no_grad()
def attack_figure(config_path: Path, out: Path, num_views: int = 4, scale: int = 3) -> Path:
    _, pipeline, _, _ = eval_setup(config_path, test_mode="test")
    rows = []
    for camera, batch in islice(pipeline.datamanager.fixed_indices_eval_dataloader, num_views):
        outputs = pipeline.model.get_outputs_for_camera(camera)
        gt = batch["image"][..., :3].to(outputs["rgb"].device)
        attack = outputs["attack_rgb"]
        rows.append(torch.cat([gt, outputs["rgb"], attack, affine_color_fit(attack, gt)], dim=1).cpu())
    grid = (torch.cat(rows, dim=0).clamp(0, 1).numpy() * 255).astype(np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(out)
    return out
