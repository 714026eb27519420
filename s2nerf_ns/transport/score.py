"""``s2nerf-score-remote``: the evaluator of a two-process run. It reads both run folders: the server's
(fields checkpoint, the attacker's surrogate and dummies) and the client's (config, checkpoint, ground truth).

Neither party runs this: it needs the client's images and the server's attacker at once. It does not need
the server process: the server's fields are loaded from its checkpoint into a local copy of the server part.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from s2nerf_ns.transport.server import CHECKPOINT


def score_remote(server_run: Path, client_config: Path, max_images: int = 8) -> Dict[str, object]:
    from nerfstudio.utils.eval_utils import eval_setup

    from s2nerf_ns.attacks.surrogate import SurrogateAttackConfig
    from s2nerf_ns.evaluation.figures import save_image_grid
    from s2nerf_ns.evaluation.leakage import leakage_metrics

    attack_file = server_run / "attack" / "attacker.pt"
    if not attack_file.exists():
        raise SystemExit(f"s2nerf-score-remote: {attack_file} not found (was the server run with --attack sma?)")
    server_state = torch.load(server_run / CHECKPOINT, map_location="cpu", weights_only=True)
    attack = torch.load(attack_file, map_location="cpu", weights_only=True)
    dummies = torch.load(server_run / "attack" / "dummies.pt", map_location="cpu", weights_only=True)

    def local_server(config):
        config.pipeline.model.server_address = None  # the evaluator uses the server's saved fields instead
        return config

    _, pipeline, _, step = eval_setup(client_config, test_mode="test", update_config_callback=local_server)
    model = pipeline.model
    model.server.field.load_state_dict(server_state["field"])
    hello = json.loads(attack["hello_meta"])
    attacker = SurrogateAttackConfig().setup(num_images=dummies.shape[0], image_height=dummies.shape[1],
                                             image_width=dummies.shape[2], head_kwargs=hello["head"],
                                             background_color=str(hello.get("background_color", "last_sample")),
                                             max_steps=1)
    attacker.load_state_dict(attack["surrogate"])
    attacker.eval()
    model.register_server_render("attack_rgb", lambda *rays: attacker.render(*rays))

    scores: List[Dict[str, float]] = []
    rows = []
    with torch.no_grad():
        for i, (camera, batch) in enumerate(pipeline.datamanager.fixed_indices_eval_dataloader):
            if i >= max_images:
                break
            outputs = model.get_outputs_for_camera(camera)
            gt = batch["image"][..., :3].to(outputs["rgb"].device)
            scores.append({**leakage_metrics(outputs["attack_rgb"], gt, "attack_"),
                           **model.image_metrics(outputs["rgb"], gt, "victim_")})
            rows.append(torch.cat([gt, outputs["rgb"], outputs["attack_rgb"]], dim=1).cpu())
        dataset = pipeline.datamanager.train_dataset
        dummy_scores = []
        for idx in np.linspace(0, len(dataset) - 1, min(max_images, len(dataset))).round().astype(int):
            gt = dataset.get_image_float32(int(idx))[..., :3]
            dummy_scores.append(leakage_metrics(dummies[int(idx), : gt.shape[0], : gt.shape[1]], gt, "dummy_"))
    out_dir = server_run / "attack"
    save_image_grid(rows, out_dir / "score_gt_victim_attack.png")
    summary = {"client_step": step, "server_step": int(server_state["next_step"]), "attacker_step": attack["step"],
               **{k: float(np.mean([s[k] for s in scores])) for k in scores[0]},
               **{k: float(np.mean([s[k] for s in dummy_scores])) for k in dummy_scores[0]}}
    (out_dir / "score.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="s2nerf-score-remote", description=__doc__.split("\n")[0])
    parser.add_argument("--server-run", type=Path, required=True, help="the s2nerf-server --run-dir")
    parser.add_argument("--client-config", type=Path, required=True, help="the client's config.yml")
    parser.add_argument("--max-images", type=int, default=8)
    args = parser.parse_args(argv)
    print(json.dumps(score_remote(args.server_run, args.client_config, args.max_images), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
