"""The server's record of what it received: written during training within its budget, read back as ServerViews
equal to the live ones (up to float16), and refused in one line when the budget cannot hold one ray a step."""

import pytest
import torch

from s2nerf_ns.attacks.surrogate import SurrogateAttackConfig
from s2nerf_ns.errors import InputError
from s2nerf_ns.protocol.view_recorder import bytes_per_ray, rays_within_budget, read_server_views
from helpers import tiny_config


def test_budget_arithmetic():
    per_ray = bytes_per_ray(16, 16)
    assert per_ray == 2 * 2 * 16 * 16 + 4 * 17 + 24 + 12
    assert rays_within_budget(1.0, 10, 1, 16, 16, 256) == min(2**20 // (10 * per_ray), 256)
    assert rays_within_budget(1.0, 10, 5, 16, 16, 8) == 8  # never more than the batch
    assert rays_within_budget(1e-6, 10, 1, 16, 16, 256) == 0


def test_recorded_views_equal_the_live_ones(tmp_path, one_thread):
    config = tiny_config("s2nerf", tmp_path, steps=6, rays=64)
    config.pipeline.record_server_view = True
    config.pipeline.server_view_max_mb = 0.25
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    live = []
    trainer.pipeline.model.channel.add_observer(
        lambda v: live.append({k: getattr(v, k).clone() for k in ("ray_indices", "positions", "h", "grad", "bins")}
                              | {"step": v.step}))
    trainer.train()
    folder = trainer.base_dir / "server_view"
    size = sum(p.stat().st_size for p in folder.glob("steps_*.pt"))
    assert 0 < size <= 0.25 * 2**20 * 1.1  # within budget (plus torch.save's container overhead)
    recorded = list(read_server_views(folder))
    assert [v.step for v in recorded] == [v["step"] for v in live]
    assert recorded[0].defense["kind"] == "s2nerf"
    assert {v.batch_rays for v in recorded} == {64}  # the victim's batch (the gradient's scale), not the kept rays
    for rec, ref in zip(recorded, live):
        # the kept rays are a subset of the batch: find them by their pixel indices
        rows = [int(torch.nonzero((ref["ray_indices"] == idx).all(-1))[0]) for idx in rec.ray_indices]
        assert 0 < len(rows) < len(ref["ray_indices"])
        assert torch.allclose(rec.positions, ref["positions"][rows], atol=1e-5)
        assert torch.allclose(rec.h, ref["h"][rows], rtol=2e-3, atol=1e-3)
        scale = ref["grad"][rows].abs().max()
        assert torch.allclose(rec.grad, ref["grad"][rows], atol=float(scale) * 1e-3)
        assert float(rec.grad.abs().max()) > 0
    # a surrogate replaying the record reads the same pixels as from the live batch (the gradient's scale is the
    # victim's whole batch, not the rays kept)
    model = trainer.pipeline.model
    surrogate = SurrogateAttackConfig().setup(num_images=16, image_height=24, image_width=24,
                                              head_kwargs=model.client_architecture(),
                                              background_color=model.config.background_color, max_steps=10)
    rec, ref = recorded[-1], live[-1]
    rows = [int(torch.nonzero((ref["ray_indices"] == idx).all(-1))[0]) for idx in rec.ray_indices]
    batch = surrogate._as_batch(rec)
    from_record = surrogate.implied_pixels(batch["h"], batch["grad"], batch, float(batch["grad_scale"]), clamp=False)
    from_live = surrogate.implied_pixels(ref["h"][rows], ref["grad"][rows], batch, 64.0, clamp=False)
    assert float(batch["grad_scale"]) == 64.0
    assert torch.allclose(from_record, from_live, atol=0.02)


def test_a_budget_that_cannot_hold_one_ray_is_one_line(tmp_path):
    config = tiny_config("splitnerf", tmp_path, steps=1000)
    config.pipeline.record_server_view = True
    config.pipeline.server_view_max_mb = 0.001
    with pytest.raises(InputError, match="--pipeline.server-view-max-mb"):
        config.pipeline.server_view_rays(1000)
    with pytest.raises(InputError, match="needs .* MiB"):  # the split trainer checks it before writing anything
        type(config)(**{f: getattr(config, f) for f in ("pipeline", "max_num_iterations", "output_dir", "machine")},
                     method_name=config.method_name)
