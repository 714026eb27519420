"""An attacker that knows the defense (its public configuration) does better than one that does not."""

import pytest
import torch

from s2nerf_ns.attacks import adaptive as known
from s2nerf_ns.attacks.surrogate import SurrogateAttackConfig
from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.evaluation.leakage import affine_color_fit
from s2nerf_ns.protocol.channel import ServerView
from s2nerf_ns.protocol.client import ClientHead
from s2nerf_ns.protocol.rendering import VolumeRenderer
from helpers import TINY_HEAD, synthetic_rays

ARCH = TINY_HEAD


def defended_victim_and_attack(defense: DefenseConfig, adaptive: bool, steps: int = 60, seed: int = 0):
    """tests/test_attack.py's tiny victim (a client head trained on fixed embeddings), with a defense at the
    crossing; the attacker sees only (rays, h, defended g) and the defense's public configuration.
    Returns the dummies' error after the best affine colour map, relative to the constant image's."""
    torch.manual_seed(seed)
    R = 256
    pos, h, y, origins, dirs, bins, idx = synthetic_rays(R, dead_units=3)  # dead units: what partial noise fills
    renderer = VolumeRenderer("last_sample")
    client = ClientHead(**ARCH)
    opt = torch.optim.Adam(client.parameters(), lr=1e-2)
    guard = defense.setup(seed=seed, schedule_steps=steps)
    attacker = SurrogateAttackConfig(adaptive=adaptive).setup(num_images=1, image_height=16, image_width=16,
                                                              head_kwargs=ARCH, background_color="last_sample",
                                                              max_steps=steps)
    order = torch.Generator().manual_seed(seed)
    for t in range(steps):
        sel = torch.randperm(R, generator=order)[:128]
        hh = h[sel].clone().requires_grad_(True)
        rgb = renderer(client, hh, origins[sel], dirs[sel], bins[sel])["rgb"]
        loss = (rgb - y[sel]).pow(2).mean()
        noisy = guard.server_targets(y[sel])
        extra = None
        if noisy is not None:  # residual noise: J^T n from the client's second VJP
            extra = torch.autograd.grad((rgb - noisy).pow(2).mean() - loss, hh, retain_graph=True)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        sent = guard.gradient_to_send(hh.grad, h[sel], t, extra)
        attacker.observe(ServerView(step=t, ray_indices=idx[sel], origins=origins[sel], directions=dirs[sel],
                                    positions=pos[sel], bins=bins[sel], h=h[sel], grad=sent,
                                    defense=guard.public()))
    dummy = attacker.dummy.detach()[0].reshape(16, 16, 3)
    fitted = affine_color_fit(dummy, y.reshape(16, 16, 3)).reshape(R, 3)
    return (fitted - y).pow(2).mean().item() / (y - y.mean(0)).pow(2).mean().item()


@pytest.mark.parametrize("defense", [
    DefenseConfig(kind="residual-noise", residual_noise_std=0.3),
    DefenseConfig(kind="s2nerf", variant="partial", partial_noise_scale=10.0, decay_ratio=1.0),
], ids=["residual-noise", "s2nerf-partial"])
def test_adaptive_attacker_beats_the_plain_one(defense):
    """Measured here (60 steps; relative error of the colour-fitted dummies, 1 = the constant image): residual
    noise s=0.3 plain 0.92 / adaptive ~0.6; partial (r=1) plain 0.995 / adaptive 0.45. Against random s2nerf noise
    the adaptive attacker is not better in this harness (c=0.3, r=1: 0.56 / 0.58; c=1.2, r=1e-2: 0.39 / 0.40)."""
    plain = defended_victim_and_attack(defense, adaptive=False)
    adaptive = defended_victim_and_attack(defense, adaptive=True)
    print(f"{defense.kind} {defense.variant}: relative error plain {plain:.3f}, adaptive {adaptive:.3f}")
    assert adaptive < 0.8 * plain


def test_adaptive_is_off_by_default_and_the_public_knowledge_is_plain_values():
    assert SurrogateAttackConfig().adaptive is False
    public = DefenseConfig(kind="s2nerf", decay_ratio=0.01).setup(seed=0, schedule_steps=10).public()
    assert public["decay_steps"] == 10 and all(isinstance(v, (str, int, float, bool)) for v in public.values())
    assert known.schedule(public, 5) == pytest.approx(0.1)
    assert known.gradient_weight(public, 10, 64) == pytest.approx(1 / (1 + (1.2 * 0.01) ** 2 * 64))
    assert known.gradient_weight({"kind": "none"}, 0, 64) == 1.0
    h = torch.tensor([0.0, 1.0])
    assert known.entry_mask({"kind": "s2nerf", "variant": "partial"}, h).tolist() == [0.0, 1.0]
    assert known.entry_mask({"kind": "s2nerf", "variant": "random"}, h) is None
