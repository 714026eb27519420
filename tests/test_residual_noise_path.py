"""The residual-noise path as one call: ``J^T n`` is computed from explicit inputs and rides with its own step's graph
to the channel (no state left between the loss and the backward)."""

import torch
from torch.nn import MSELoss

from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.defenses.residual import noise_gradient
from s2nerf_ns.protocol.rendering import VolumeRenderer
from conftest import random_batch, tiny_model

CFG = DefenseConfig(kind="residual-noise", residual_noise_std=0.3)


def test_noise_gradient_is_the_vjp_of_the_residual_noise():
    """With rgb = h (J = I), ``J^T n`` is the MSE residual's noise itself: 2 (y - y_noisy) / numel."""
    h = torch.rand(16, 3, requires_grad=True)
    rgb = h * 1.0
    targets = torch.rand(16, 3)
    noisy = targets + 0.3 * torch.randn(16, 3)
    extra = noise_gradient(MSELoss(), rgb, targets, noisy, h)
    assert torch.allclose(extra, 2 * (targets - noisy) / targets.numel(), atol=1e-7)
    rgb.sum().backward()  # the graph is kept for the clean loss's backward
    assert torch.equal(h.grad, torch.ones_like(h))


def _expected(model, view, batch, draw: int):
    """J^T (e + n) of ``view``'s step, with the ``draw``-th noise of an identically seeded defense."""
    reference = CFG.setup(seed=42, schedule_steps=100)
    for _ in range(draw + 1):
        noisy = reference.server_targets(batch["image"].clamp(0, 1))
    h = view.h.clone().requires_grad_(True)
    rgb = VolumeRenderer(model.config.background_color)(model.client_head, h, view.origins, view.directions,
                                                        view.bins)["rgb"]
    return torch.autograd.grad((rgb - noisy).pow(2).mean(), h)[0]


def test_each_step_sends_its_own_noise_whatever_the_order_of_losses_and_backwards():
    """Two steps' losses computed before either backward: each backward sends its own step's ``J^T (e + n)`` (a
    channel field filled by the last loss would send the second step's noise with the first step's gradient)."""
    model = tiny_model(defense=CFG)
    model.train()
    got = []
    model.channel.add_observer(got.append)
    (bundle1, batch1), (bundle2, batch2) = random_batch(32, seed=1), random_batch(32, seed=2)
    loss1 = model.get_loss_dict(model(bundle1), batch1)["rgb_loss"]
    loss2 = model.get_loss_dict(model(bundle2), batch2)["rgb_loss"]
    loss1.backward()
    loss2.backward()
    assert len(got) == 2 and model.channel.defense.releases == 2
    for view, batch, draw in ((got[0], batch1, 0), (got[1], batch2, 1)):
        assert torch.allclose(view.grad, _expected(model, view, batch, draw), rtol=1e-4, atol=1e-9), draw


def test_eval_and_other_defenses_carry_no_extra_gradient():
    model = tiny_model(defense=CFG)
    model.train()
    bundle, batch = random_batch(16, seed=3)
    assert {"client_h", "extra_port"} <= set(model(bundle))
    with torch.no_grad():
        assert not {"client_h", "extra_port"} & set(model(bundle))
    model.eval()
    assert not {"client_h", "extra_port"} & set(model(bundle))
    other = tiny_model(defense=DefenseConfig(kind="none"))
    other.train()
    assert not {"client_h", "extra_port"} & set(other(bundle))
