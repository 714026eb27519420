"""The embedding attack: PCA of the server's own h, composited along rays, scored like any attack.

Synthetic embeddings only (pure torch): no nerfstudio pipeline is imported here.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import torch

from s2nerf_ns.attacks.embedding import EmbeddingAttack, self_weights
from s2nerf_ns.evaluation.leakage import ColourMap, floor_scores, leakage, luminance, score_image

N, S, D = 48, 16, 32  # image side, samples per ray, embedding width


pytestmark = pytest.mark.usefixtures("one_thread")



def room_view(shift: float) -> torch.Tensor:
    """An N x N colour view of a structured "room" (stripes and blobs); ``shift`` moves the camera."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, N), torch.linspace(0, 1, N), indexing="ij")
    xx = xx + shift
    lum = 0.5 + 0.25 * torch.sin(9 * xx) * torch.cos(7 * yy) + 0.2 * ((xx * 5).floor() % 2 - 0.5)
    return (lum.clamp(0.05, 0.95)[..., None] * torch.tensor([1.0, 0.8, 0.6]) + 0.05).clamp(0, 1)


def embeddings(view: torch.Tensor | None, kind: str, noise_seed: int = 0) -> torch.Tensor:
    """h [N*N, S, D]. The scene's codes (direction u, free-space and interior codes) are shared by all
    views; the per-sample noise (and surface depths) are drawn from ``noise_seed``."""
    codes = torch.Generator().manual_seed(5)
    u = torch.nn.functional.normalize(torch.randn(D, generator=codes), dim=0)
    base, inside = torch.randn(D, generator=codes), torch.randn(D, generator=codes)
    g = torch.Generator().manual_seed(noise_seed)
    r = N * N
    if kind == "noise":
        return base + 0.3 * torch.randn(r, S, D, generator=g)
    lum = luminance(view).reshape(r)
    if kind == "linear":  # one linear direction of h carries the luminance, on every sample of the ray
        return base + 0.3 * torch.randn(r, S, D, generator=g) + lum[:, None, None] * u
    if kind == "surface":  # free space, then one surface sample carrying the luminance, then the interior
        k = torch.randint(2, S - 2, (r,), generator=g)
        idx = torch.arange(S)[None, :]
        h = 0.05 * torch.randn(r, S, D, generator=g)
        h = h + (idx > k[:, None]).float()[..., None] * inside
        return h + (idx == k[:, None]).float()[..., None] * (1 + lum[:, None, None]) * 2 * u
    raise ValueError(kind)


def best_channel_corr(render: torch.Tensor, view: torch.Tensor) -> float:
    lum = luminance(view).reshape(-1)
    return max(abs(float(torch.corrcoef(torch.stack([render.reshape(-1, 3)[:, c], lum]))[0, 1])) for c in range(3))


def run_attack(kind: str, weighting: str = "uniform"):
    """Observe a training view's rays, fit one scene colour map on it, score a held-out view."""
    train_view, test_view = room_view(0.0), room_view(0.37)
    h_train, h_test = embeddings(train_view, kind, noise_seed=1), embeddings(test_view, kind, noise_seed=2)
    attack = EmbeddingAttack(D, weighting=weighting)
    for chunk in h_train.split(256):
        attack.observe(chunk)
    train_render = attack.render(h_train).reshape(N, N, 3)
    test_render = attack.render(h_test).reshape(N, N, 3)
    assert test_render.min() >= 0 and test_render.max() <= 1
    cm = ColourMap.fit([train_render], [train_view])
    lk = leakage(score_image(test_render, test_view, cm), floor_scores(test_view, cm))
    return best_channel_corr(test_render, test_view), lk


def test_embedding_render_reveals_the_luminance_direction():
    corr, lk = run_attack("linear")
    assert corr > 0.8
    assert lk["cmpsnr"] > 3.0  # one colour map for the scene, fitted on another view
    assert lk["cm_lum_ssim"] > 0.2
    assert lk["cm_nmi"] > 0.1


def test_noise_embeddings_score_about_the_floor():
    corr, lk = run_attack("noise")
    assert corr < 0.1
    assert abs(lk["cmpsnr"]) < 0.1 and abs(lk["cm_lum_ssim"]) < 0.03
    assert lk["cm_nmi"] < 0.06  # the 48x48 NMI plug-in bias (~0.03) and nothing more


def test_self_weighting_finds_the_first_surface():
    corr_uniform, _ = run_attack("surface", "uniform")
    corr_self, lk = run_attack("surface", "self")
    assert corr_self > 0.9 > corr_uniform
    assert lk["cmpsnr"] > 3.0


def test_given_weights_are_used_and_self_weights_sum_to_one():
    view = room_view(0.0)
    h = embeddings(view, "surface")
    w = self_weights(h)
    assert w.shape == (N * N, S, 1) and torch.allclose(w.sum(1), torch.ones(N * N, 1), atol=1e-5)
    # an oracle surrogate's weights (one-hot on the surface sample): composites the surface code exactly
    surface = (h - h[:, :1]).norm(dim=-1) > 1.0
    first = surface.float().argmax(1)
    onehot = torch.nn.functional.one_hot(first, S).float()[..., None]
    attack = EmbeddingAttack(D)
    attack.observe(h, weights=onehot)
    assert best_channel_corr(attack.render(h, weights=onehot), view) > 0.95


def test_state_dict_round_trips_and_reservoir_is_bounded():
    g = torch.Generator().manual_seed(0)
    a = EmbeddingAttack(8, sample_reservoir=256, ray_reservoir=64, seed=3)
    for _ in range(5):
        a.observe(torch.randn(40, 6, 8, generator=g))
    a.fit()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = EmbeddingAttack(8, sample_reservoir=256, ray_reservoir=64, seed=99)  # seed overwritten by the state
    b.load_state_dict(torch.load(buf))
    h = torch.randn(10, 6, 8, generator=g)
    assert torch.equal(a.render(h), b.render(h))
    more = torch.randn(40, 6, 8, generator=g)
    a.observe(more)
    b.observe(more)  # same generator state: identical reservoirs after resuming
    for name, t in a.state_dict().items():
        assert torch.equal(t, b.state_dict()[name]), name
    assert int(a.num_samples_seen) == 6 * 40 * 6 and int(torch.isfinite(a.sample_keys).sum()) == 256
    assert a.is_stale and torch.equal(a.render(h), b.render(h))  # both refit on the new data


def test_reservoir_is_a_uniform_sample_of_everything_observed():
    a = EmbeddingAttack(1, sample_reservoir=2000, ray_reservoir=16)
    total = 200 * 100
    ids = torch.arange(total, dtype=torch.float32).reshape(200, 100, 1)
    for chunk in ids.split(20):  # early items must survive as often as late ones
        a.observe(chunk)
    kept = a.samples[:, 0]
    assert kept.unique().numel() == 2000
    assert kept.mean().item() == pytest.approx(total / 2, rel=0.05)
    assert (kept < total / 2).float().mean().item() == pytest.approx(0.5, abs=0.05)


def test_reads_only_what_the_server_computes():
    view = SimpleNamespace(h=torch.randn(4, 5, 6))  # the channel observer form needs nothing but h
    a = EmbeddingAttack(6, sample_reservoir=32, ray_reservoir=8)
    a.observe_view(view)
    assert a.render(view.h).shape == (4, 3)
    with pytest.raises(ValueError):
        a.observe(torch.randn(4, 5, 7))
    with pytest.raises(RuntimeError):
        EmbeddingAttack(6).fit()
