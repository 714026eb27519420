"""Pictures for evaluation: one image-grid writer, and the figure of an attack run (ground truth | victim |
attacker | attacker after the best affine colour map).

The last column uses the ground truth to choose the colour map, so it is an evaluation aid (it shows the
structure the attacker recovered, which is what the colour-invariant metrics score), not attacker output.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image

from s2nerf_ns.evaluation.leakage import affine_color_fit


ImageRow = Union[torch.Tensor, np.ndarray]


def save_image_grid(rows: Sequence[ImageRow], out: Path, scale: int = 1) -> Path:
    """Stack [H, W, 3] rows (values in [0, 1]) vertically and save them as a PNG, upscaled by ``scale``."""
    arrays = [r.detach().cpu().numpy() if isinstance(r, torch.Tensor) else np.asarray(r) for r in rows]
    grid = (np.clip(np.concatenate(arrays, axis=0), 0, 1) * 255).astype(np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(grid)
    if scale != 1:
        image = image.resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    image.save(out)
    return out


@torch.no_grad()
def attack_figure(config_path: Path, out: Path, num_views: int = 4, scale: int = 3) -> Path:
    from nerfstudio.utils.eval_utils import eval_setup  # imports every registered method: not at module import

    from s2nerf_ns.errors import InputError

    config_path = Path(config_path)
    if not config_path.is_file():
        raise InputError(f"--load-config {config_path}: no such file (give the config.yml of an attack run)")
    import yaml

    config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    if getattr(getattr(config, "pipeline", None), "attack", None) is None:
        raise InputError(f"--load-config {config_path}: this {getattr(config, 'method_name', '')} run has no "
                         "attacker, so there is no attack figure; give the config.yml of an attack run "
                         "(splitnerf-sma, s2nerf-sma, splitnerf-ssma, s2nerf-ssma)")
    _, pipeline, _, _ = eval_setup(config_path, test_mode="test")
    rows = []
    for camera, batch in islice(pipeline.datamanager.fixed_indices_eval_dataloader, num_views):
        outputs = pipeline.model.get_outputs_for_camera(camera)
        gt = batch["image"][..., :3].to(outputs["rgb"].device)
        attack = outputs["attack_rgb"]
        rows.append(torch.cat([gt, outputs["rgb"], attack, affine_color_fit(attack, gt)], dim=1).cpu())
    return save_image_grid(rows, out, scale)
