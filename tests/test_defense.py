"""The S²NeRF defense and the label-noise baseline, as small objects."""

import math

import pytest
import torch

from s2nerf_ns.split.defense import (
    LabelNoiseConfig,
    NoDefenseConfig,
    NonFiniteGradientError,
    S2NeRFDefenseConfig,
    clip_rows_to_median,
)


def make(cfg, seed=0, max_steps=100):
    return cfg.setup(seed=seed, max_steps=max_steps)


def known_grad():
    g = torch.zeros(64, 8, 16)
    g[..., 0] = 1.0
    g[3, 2, :] = 2.0  # the largest row: norm 2 * 4 = 8
    return g


@pytest.mark.parametrize("t", [0, 25, 50, 100])
def test_noise_std_matches_formula(t):
    c, r, T = 1.2, 1e-4, 100
    d = make(S2NeRFDefenseConfig(noise_scale=c, decay_ratio=r), max_steps=T)
    g = known_grad()
    expected = c * 8.0 * r ** (t / T)
    assert d.sigma(g, t) == pytest.approx(expected, rel=1e-6)
    out = d(g, torch.ones_like(g), t)
    empirical = (out - g).std().item()
    assert empirical == pytest.approx(expected, rel=0.05)
    assert d.last_stats["noise_std"] == pytest.approx(expected, rel=1e-6)


def test_decay_steps_override_and_no_decay():
    g = known_grad()
    assert make(S2NeRFDefenseConfig(decay_ratio=1.0)).sigma(g, 77) == pytest.approx(1.2 * 8.0)
    d = make(S2NeRFDefenseConfig(decay_ratio=0.01, decay_steps=10), max_steps=1000)
    assert d.sigma(g, 10) == pytest.approx(1.2 * 8.0 * 0.01)
    assert d.sigma(g, 500) == pytest.approx(1.2 * 8.0 * 0.01)  # stays at the floor after T


def test_seeded_reproducible_and_seed_dependent():
    g = known_grad()
    a = make(S2NeRFDefenseConfig(), seed=3)(g, g, 1)
    b = make(S2NeRFDefenseConfig(), seed=3)(g, g, 1)
    c = make(S2NeRFDefenseConfig(), seed=4)(g, g, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_partial_touches_only_zero_entries_of_h():
    g = known_grad()
    h = torch.rand_like(g)
    h[h < 0.3] = 0.0
    out = make(S2NeRFDefenseConfig(variant="partial"))(g, h, 0)
    assert torch.equal(out[h != 0], g[h != 0])
    assert (out[h == 0] != g[h == 0]).float().mean() > 0.99


def test_mix_respects_probability():
    g = known_grad()
    h = torch.rand(64, 8, 16) + 0.1  # no zero entry
    p = 0.3
    out = make(S2NeRFDefenseConfig(variant="mix", mix_probability=p))(g, h, 0)
    frac = (out != g).float().mean().item()
    assert frac == pytest.approx(p, abs=0.03)
    h[:, :, :4] = 0.0
    out = make(S2NeRFDefenseConfig(variant="mix", mix_probability=0.0))(g, h, 0)
    assert (out[h == 0] != g[h == 0]).all() and torch.equal(out[h != 0], g[h != 0])


def test_clipping_caps_rows_at_median():
    g = torch.randn(100, 16) * torch.linspace(0.1, 10, 100)[:, None]
    median = g.norm(dim=-1).median()
    clipped = clip_rows_to_median(g)
    assert clipped.norm(dim=-1).max() <= median * (1 + 1e-5)
    small = g.norm(dim=-1) <= median
    assert torch.allclose(clipped[small], g[small])
    d = make(S2NeRFDefenseConfig(clip_to_median=True, noise_scale=0.0))
    assert torch.allclose(d(g, g, 0), clipped)


def test_zero_noise_scale_is_identity_and_none_is_identity():
    g = known_grad()
    assert torch.equal(make(S2NeRFDefenseConfig(noise_scale=0.0))(g, g, 5), g)
    assert torch.equal(make(NoDefenseConfig())(g, g, 5), g)
    d = make(NoDefenseConfig())
    d(g, g, 0)
    assert math.isinf(d.last_stats["snr_db"])


@pytest.mark.parametrize(
    "kwargs",
    [dict(noise_scale=-0.1), dict(decay_ratio=0.0), dict(decay_ratio=1.5), dict(mix_probability=1.2),
     dict(mix_probability=-0.1), dict(decay_steps=0), dict(noise_scale=float("nan"))],
)
def test_bad_config_raises_at_construction(kwargs):
    with pytest.raises(ValueError):
        S2NeRFDefenseConfig(**kwargs)


def test_bad_label_noise():
    with pytest.raises(ValueError):
        LabelNoiseConfig(label_noise_std=-1.0)


def test_nonfinite_gradient_error_names_step_or_sanitises():
    g = known_grad()
    g[0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteGradientError, match="step 17"):
        make(S2NeRFDefenseConfig())(g, g, 17)
    out = make(NoDefenseConfig(nonfinite="sanitize"))(g, g, 17)
    assert torch.isfinite(out).all()


def test_label_noise_perturbs_targets_not_gradient():
    d = make(LabelNoiseConfig(label_noise_std=0.2))
    rgb = torch.full((1000, 3), 0.5)
    assert (d.noisy_targets(rgb) - rgb).std().item() == pytest.approx(0.2, rel=0.1)
    g = known_grad()
    assert torch.equal(d(g, g, 0), g)
