"""The defense families beyond S²NeRF: max-norm, residual noise (with its per-pixel accountant) and client
appearance. Formula tests, seeded, on tiny models."""

import json
import math

import pytest
import torch
import tyro

from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.defenses.residual import per_pixel_privacy
from s2nerf_ns.integration.methods import method_config
from s2nerf_ns.protocol.rendering import VolumeRenderer
from conftest import random_batch, tiny_model


def make(cfg, seed=0, steps=100):
    return cfg.setup(seed=seed, schedule_steps=steps)


# ------------------------------------------------------------------------------------------ max-norm
def test_max_norm_sigma_formula_and_expected_norms():
    g = torch.zeros(4000, 16)
    g[:, 0] = torch.linspace(0.0, 2.0, 4000)
    g[17, :] = 1.0  # the largest row: norm 4
    d = make(DefenseConfig(kind="max-norm"))
    sig = d.gradient.sigmas(g)[:, 0]
    expected = ((16.0 - g.pow(2).sum(-1)) / 16).sqrt()
    assert torch.allclose(sig.float(), expected, atol=1e-6)
    assert float(sig[17]) == 0.0  # the largest row gets no noise
    out = d.gradient_to_send(g, g, 0)
    assert torch.equal(out[17], g[17])
    # every perturbed row has (in expectation) the squared norm of the largest row
    assert out.pow(2).sum(-1).mean().item() == pytest.approx(16.0, rel=0.03)
    low, high = out[:1000].pow(2).sum(-1).mean(), out[-1000:].pow(2).sum(-1).mean()
    assert low.item() == pytest.approx(high.item(), rel=0.08)
    # k scales every sigma; seeded
    d2 = make(DefenseConfig(kind="max-norm", max_norm_scale=2.0))
    assert torch.allclose(d2.gradient.sigmas(g), 2 * d.gradient.sigmas(g))
    a = make(DefenseConfig(kind="max-norm"), seed=3).gradient_to_send(g, g, 0)
    b = make(DefenseConfig(kind="max-norm"), seed=3).gradient_to_send(g, g, 0)
    assert torch.equal(a, b) and not torch.equal(a, out)


# ------------------------------------------------------------------------------------------ residual noise
def one_step(model, seed=0):
    """One training step of a tiny model; returns (server view, batch, bundle, client param grads)."""
    model.train()
    got = []
    model.channel.add_observer(got.append)
    bundle, batch = random_batch(32, seed=seed)
    model.channel.step = 5
    out = model(bundle)
    loss = model.get_loss_dict(out, batch)["rgb_loss"]
    loss.backward()
    return got[0], batch, {n: p.grad.clone() for n, p in model.client_head.named_parameters()}


def independent_render(model, view):
    h = view.h.clone().requires_grad_(True)
    rgb = VolumeRenderer(model.config.background_color)(model.client_head, h, view.origins, view.directions,
                                                        view.bins)["rgb"]
    return h, rgb


@pytest.mark.parametrize("std", [0.05, 0.3])
def test_residual_noise_sends_jt_of_noisy_residual_and_client_trains_clean(std):
    cfg = DefenseConfig(kind="residual-noise", residual_noise_std=std)
    model = tiny_model(defense=cfg)
    view, batch, client_grads = one_step(model)
    y = batch["image"].clamp(0, 1)
    # independently: the same seeded noise, then J^T (e + n) as the gradient of the MSE against noisy targets
    noisy = make(cfg, seed=42).server_targets(y)
    assert (noisy - y).std().item() == pytest.approx(std, rel=0.25)
    h, rgb = independent_render(model, view)
    expected = torch.autograd.grad((rgb - noisy).pow(2).mean(), h, retain_graph=True)[0]
    assert torch.allclose(view.grad, expected, rtol=1e-4, atol=1e-9)
    clean = torch.autograd.grad((rgb - y).pow(2).mean(), h, retain_graph=True)[0]
    assert not torch.allclose(view.grad, clean, atol=1e-9)
    # the client's own parameters got the clean gradient
    params = dict(model.client_head.named_parameters())
    want = torch.autograd.grad((rgb - y).pow(2).mean(), list(params.values()))
    for (name, g_got), g_want in zip(client_grads.items(), want):
        assert torch.allclose(g_got, g_want, rtol=1e-4, atol=1e-10), name
    # seeded: the same run sends the same gradient
    view2, *_ = one_step(tiny_model(defense=cfg))
    assert torch.equal(view.grad, view2.grad)
    assert model.channel.defense.releases == 1 and model.channel.defense.rays_per_step == 32


def test_residual_noise_noisy_client_is_label_noise_with_clipping():
    cfg = DefenseConfig(kind="residual-noise", residual_noise_std=0.2, residual_client="noisy")
    model = tiny_model(defense=cfg)
    view, batch, client_grads = one_step(model)
    noisy = make(cfg, seed=42).targets_for_loss(batch["image"])
    h, rgb = independent_render(model, view)
    expected = torch.autograd.grad((rgb - noisy).pow(2).mean(), h, retain_graph=True)[0]
    assert torch.allclose(view.grad, expected, rtol=1e-4, atol=1e-9)
    want = torch.autograd.grad((rgb - noisy).pow(2).mean(), list(model.client_head.parameters()))
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-10) for a, b in zip(client_grads.values(), want))


def test_accountant_matches_opacus_computed_independently():
    from opacus.accountants import RDPAccountant
    from scipy.stats import binom

    s, rays, pixels, steps, delta = 0.5, 512, 64 * 48 * 48, 300, 1e-5
    z = s / math.sqrt(3)
    report = per_pixel_privacy(z, rays, pixels, steps, delta)
    k = int(binom.ppf(1 - delta / 2, steps * rays, 1 / pixels))
    acc = RDPAccountant()
    for _ in range(k):
        acc.step(noise_multiplier=z, sample_rate=1.0)
    assert report["releases_bound"] == k
    assert report["epsilon"] == pytest.approx(acc.get_epsilon(delta / 2), rel=1e-9)
    hidden = RDPAccountant()
    for _ in range(steps):
        hidden.step(noise_multiplier=z, sample_rate=rays / pixels)
    assert report["epsilon_if_sampling_hidden"] == pytest.approx(hidden.get_epsilon(delta), rel=1e-9)
    assert report["epsilon_if_sampling_hidden"] < report["epsilon"]  # public sampling costs privacy
    # more noise, less epsilon; no release, no loss; the defense reports through the same function
    assert per_pixel_privacy(2 * z, rays, pixels, steps, delta)["epsilon"] < report["epsilon"]
    assert per_pixel_privacy(z, rays, pixels, 0, delta)["epsilon"] == 0.0
    d = make(DefenseConfig(kind="residual-noise", residual_noise_std=s))
    assert d.privacy() is None  # training-set size unknown
    d.training_pixels = pixels
    for _ in range(steps):
        d.server_targets(torch.rand(rays, 3))
    assert d.privacy()["epsilon"] == pytest.approx(report["epsilon"], rel=1e-9)
    assert make(DefenseConfig(kind="s2nerf")).privacy() is None


def test_residual_noise_run_writes_privacy_json_and_eval_keys(tmp_path):
    from helpers import tiny_config, train

    config = tiny_config("splitnerf", tmp_path, steps=6, rays=128)
    config.pipeline.model.defense = DefenseConfig(kind="residual-noise", residual_noise_std=0.3)
    trainer = train(config)
    report = json.loads((trainer.base_dir / "privacy.json").read_text())
    assert report["steps"] == 6 and report["rays_per_step"] == 128 and report["epsilon"] > 0
    assert "one pixel" in report["unit"] and "k x epsilon" in report["scope"]
    metrics = trainer.pipeline.get_average_eval_image_metrics()
    assert metrics["dp_epsilon"] == pytest.approx(report["epsilon"], rel=1e-5)
    assert metrics["dp_delta"] == pytest.approx(1e-5)


# ------------------------------------------------------------------------------------------ client appearance
def test_client_appearance_keeps_colour_off_the_server():
    model = tiny_model(client_appearance=True)
    head = model.client_head
    assert head.needs_positions and "client_appearance" in model.get_param_groups()
    app = {id(p) for p in head.appearance.parameters()}
    assert not any(id(p) in app for p in model.get_param_groups()["client_head"])
    # a sample's colour does not depend on h at all: the server's embeddings carry density only
    h = torch.rand(4, 8, head.in_dim, requires_grad=True)
    density, rgb = head(h, torch.randn(4, 8, 3), torch.rand(4, 8, 3) - 0.5)
    assert torch.autograd.grad(rgb.sum(), h, allow_unused=True)[0] is None
    # what crosses instead: one scalar per sample, dL/d(raw density), times the client's last density layer
    view, *_ = one_step(model)
    w = head.density_layers[-1].weight  # [1, in_dim]
    rows = view.grad.reshape(-1, view.grad.shape[-1])
    coef = rows @ w[0] / w[0].pow(2).sum()
    assert torch.allclose(rows, coef[:, None] * w[0][None], atol=1e-10)


def test_new_knobs_on_the_command_line_and_validation():
    default = method_config("splitnerf")
    config = tyro.cli(tyro.conf.FlagConversionOff[type(default)], default=default, args=[  # as ns-train parses
        "--pipeline.model.defense.kind", "residual-noise", "--pipeline.model.defense.residual-noise-std", "0.2",
        "--pipeline.model.client-appearance", "True"])
    assert config.pipeline.model.defense.residual_noise_std == 0.2 and config.pipeline.model.client_appearance
    config = tyro.cli(type(default), default=default, args=[
        "--pipeline.model.defense.kind", "max-norm", "--pipeline.model.defense.max-norm-scale", "2"])
    assert config.pipeline.model.defense.kind == "max-norm" and config.pipeline.model.defense.max_norm_scale == 2.0
    for bad in (dict(max_norm_scale=-1.0), dict(residual_noise_std=float("inf")), dict(residual_client="x"),
                dict(dp_delta=0.0)):
        with pytest.raises(ValueError):
            DefenseConfig(**bad)
    assert DefenseConfig(kind="s2nerf").public()["decay_ratio"] == 1e-4
    assert DefenseConfig(kind="residual-noise").public() == {"kind": "residual-noise", "residual_noise_std": 0.1,
                                                             "residual_client": "clean"}
