"""The client's defenses as small objects: S²NeRF noise and its variants, the schedule, label noise, NaN/Inf."""

import math

import pytest
import torch
import tyro

from s2nerf_ns.defenses import DefenseConfig, NonFiniteGradientError, ScheduleLengthUnknownError
from s2nerf_ns.defenses.perturbations import clip_rows_to_median
from s2nerf_ns.errors import InputError
from s2nerf_ns.defenses.schedules import DecaySchedule
from s2nerf_ns.integration.methods import method_config


def s2nerf(**kwargs):
    return DefenseConfig(kind="s2nerf", **kwargs)


def make(cfg, seed=0, steps=100):
    return cfg.setup(seed=seed, schedule_steps=steps)


def send(defense, grad, h, step):
    return defense.gradient_to_send(grad, h, step)


def noiseless(cfg):
    """An s2nerf defense whose noise scale is 0 after setup: the config refuses c = 0 (a noisy kind without noise,
    issue 21), but the perturbation itself must still be exactly the identity (plus clipping) at c = 0."""
    d = make(cfg)
    d.gradient.noise_scale = 0.0
    return d


def known_grad():
    g = torch.zeros(64, 8, 16)
    g[..., 0] = 1.0
    g[3, 2, :] = 2.0  # the largest row: norm 2 * 4 = 8
    return g


@pytest.mark.parametrize("t", [0, 25, 50, 100])
def test_noise_std_matches_formula(t):
    c, r, T = 1.2, 1e-4, 100
    d = make(s2nerf(noise_scale=c, decay_ratio=r), steps=T)
    g = known_grad()
    expected = c * 8.0 * r ** (t / T)
    assert float(d.gradient.sigma(g, t)) == pytest.approx(expected, rel=1e-6)
    out = send(d, g, torch.ones_like(g), t)
    assert (out - g).std().item() == pytest.approx(expected, rel=0.05)
    assert d.last_stats["noise_std"] == pytest.approx(expected, rel=1e-6)


def test_decay_steps_override_no_decay_and_floor():
    g = known_grad()
    assert float(make(s2nerf(decay_ratio=1.0)).gradient.sigma(g, 77)) == pytest.approx(1.2 * 8.0)
    d = make(s2nerf(decay_ratio=0.01, decay_steps=10), steps=1000)
    assert float(d.gradient.sigma(g, 10)) == pytest.approx(1.2 * 8.0 * 0.01)
    assert float(d.gradient.sigma(g, 500)) == pytest.approx(1.2 * 8.0 * 0.01)  # stays at r after T
    floored = make(s2nerf(decay_ratio=1e-4, noise_floor=0.1), steps=100)
    assert float(floored.gradient.sigma(g, 100)) == pytest.approx(1.2 * 8.0 * 0.1)  # max(r^(t/T), f)
    assert float(floored.gradient.sigma(g, 0)) == pytest.approx(1.2 * 8.0)


def test_schedule_formula():
    s = DecaySchedule(ratio=0.01, steps=10, floor=0.05)
    assert s(0) == 1.0 and s(5) == pytest.approx(0.1) and s(10) == pytest.approx(0.05) and s(99) == 0.05


def test_a_decaying_defense_without_its_schedule_length_refuses_to_start():
    with pytest.raises(ScheduleLengthUnknownError, match="decay-steps"):
        s2nerf().setup(seed=0, schedule_steps=None)
    assert s2nerf(decay_steps=7).setup(seed=0, schedule_steps=None).schedule_steps == 7
    DefenseConfig().setup(seed=0, schedule_steps=None)  # nothing to schedule: fine


def test_seeded_reproducible_and_seed_dependent():
    g = known_grad()
    a = send(make(s2nerf(), seed=3), g, g, 1)
    b = send(make(s2nerf(), seed=3), g, g, 1)
    c = send(make(s2nerf(), seed=4), g, g, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_partial_touches_only_zero_entries_of_h():
    g = known_grad()
    h = torch.rand_like(g)
    h[h < 0.3] = 0.0
    out = send(make(s2nerf(variant="partial")), g, h, 0)
    assert torch.equal(out[h != 0], g[h != 0])
    assert (out[h == 0] != g[h == 0]).float().mean() > 0.99


def test_mix_respects_probability():
    g = known_grad()
    h = torch.rand(64, 8, 16) + 0.1  # no zero entry
    p = 0.3
    out = send(make(s2nerf(variant="mix", mix_probability=p)), g, h, 0)
    assert (out != g).float().mean().item() == pytest.approx(p, abs=0.03)
    h[:, :, :4] = 0.0
    out = send(make(s2nerf(variant="mix", mix_probability=0.0)), g, h, 0)
    assert (out[h == 0] != g[h == 0]).all() and torch.equal(out[h != 0], g[h != 0])


def test_clipping_caps_rows_at_median():
    g = torch.randn(100, 16) * torch.linspace(0.1, 10, 100)[:, None]
    median = g.norm(dim=-1).median()
    clipped = clip_rows_to_median(g)
    assert clipped.norm(dim=-1).max() <= median * (1 + 1e-5)
    small = g.norm(dim=-1) <= median
    assert torch.allclose(clipped[small], g[small])
    assert torch.allclose(send(noiseless(s2nerf(clip_to_median=True)), g, g, 0), clipped)


def test_zero_noise_scale_is_identity_and_none_is_identity():
    g = known_grad()
    assert torch.equal(send(noiseless(s2nerf()), g, g, 5), g)
    with pytest.raises(InputError, match="would add no noise"):
        s2nerf(noise_scale=0.0)
    d = make(DefenseConfig())
    assert torch.equal(send(d, g, g, 5), g)
    assert math.isinf(d.last_stats["snr_db"])


@pytest.mark.parametrize(
    "kwargs",
    [dict(noise_scale=-0.1), dict(decay_ratio=0.0), dict(decay_ratio=1.5), dict(mix_probability=1.2),
     dict(mix_probability=-0.1), dict(decay_steps=0), dict(noise_scale=float("nan")), dict(noise_floor=-0.1),
     dict(label_noise_std=-1.0), dict(kind="bogus")],
)
def test_bad_config_raises_at_construction(kwargs):
    with pytest.raises(ValueError):
        DefenseConfig(**kwargs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("kind", ["none", "s2nerf", "label-noise"])
def test_the_defense_never_sends_a_nonfinite_value(bad, kind):
    g = known_grad()
    g[0, 0, 0] = bad
    g[5, 1, 3] = bad
    with pytest.raises(NonFiniteGradientError, match="step 17"):
        send(make(DefenseConfig(kind=kind)), g, torch.ones_like(g), 17)
    for variant in ("random", "partial", "mix") if kind == "s2nerf" else ("random",):  # variant: an s2nerf knob
        out = send(make(DefenseConfig(kind=kind, variant=variant, nonfinite="sanitize")), g, torch.ones_like(g), 17)
        assert torch.isfinite(out).all()
        assert out[0, 0, 0] == 0 or kind == "s2nerf"  # the bad entry is zeroed before any noise


def test_label_noise_perturbs_targets_not_gradient():
    d = make(DefenseConfig(kind="label-noise", label_noise_std=0.2))
    rgb = torch.full((1000, 3), 0.5)
    assert (d.targets_for_loss(rgb) - rgb).std().item() == pytest.approx(0.2, rel=0.1)
    g = known_grad()
    assert torch.equal(send(d, g, g, 0), g)
    assert torch.equal(make(s2nerf()).targets_for_loss(rgb), rgb)


def test_defense_fields_set_without_naming_a_subcommand():
    """`ns-train s2nerf-sma --pipeline.model.defense.decay-ratio 1.0` is the natural spelling."""
    config = tyro.cli(type(method_config("s2nerf-sma")), default=method_config("s2nerf-sma"),
                      args=["--pipeline.model.defense.decay-ratio", "1.0"])
    assert config.pipeline.model.defense.kind == "s2nerf" and config.pipeline.model.defense.decay_ratio == 1.0
    config = tyro.cli(type(method_config("splitnerf")), default=method_config("splitnerf"),
                      args=["--pipeline.model.defense.kind", "s2nerf", "--pipeline.model.defense.noise-scale", "0.5"])
    assert config.pipeline.model.defense.kind == "s2nerf" and config.pipeline.model.defense.noise_scale == 0.5
