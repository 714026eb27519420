"""Leakage metrics: exact colour fits (rank-deficient too), scene-level map vs per-image fit, NMI, masks.

Pure torch/numpy/skimage: no nerfstudio pipeline is imported here.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from torchmetrics.functional import structural_similarity_index_measure

from s2nerf_ns.evaluation import image_metrics
from s2nerf_ns.evaluation.leakage import (
    ColourMap,
    affine_color_fit,
    best_of,
    constant_image,
    floor_scores,
    leakage,
    leakage_metrics,
    luminance,
    masked_psnr,
    masked_ssim,
    nmi,
    score_image,
    ssim_map,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


pytestmark = pytest.mark.usefixtures("one_thread")

MIX = torch.tensor([[0.5, 0.2, 0.1], [0.1, 0.6, 0.2], [0.2, 0.1, 0.4]])


def smooth_image(n: int = 32, seed: int = 0) -> torch.Tensor:
    """A structured colour image in [0.1, 0.9] (smooth blobs plus an edge)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij")
    freq, phase = torch.rand(3, 2, generator=g) * 8 + 2, torch.rand(3, generator=g) * 6
    chans = [torch.sin(freq[c, 0] * xx + phase[c]) * torch.cos(freq[c, 1] * yy) for c in range(3)]
    img = torch.stack(chans, -1) * 0.3 + 0.5 + 0.1 * (xx > 0.5)[..., None]
    return img.clamp(0.1, 0.9)


def distort(img: torch.Tensor) -> torch.Tensor:
    """A fixed invertible affine colour distortion (what an attacker with wrong colours renders)."""
    return img @ MIX + torch.tensor([0.1, 0.05, 0.2])


def reference_fitted(preds, gts, masks=None) -> torch.Tensor:
    """Float64 closed form: project the pooled targets on the column space of [pred, 1] (numpy's gelsd)."""
    masks = masks or [None] * len(preds)
    xs, ys = [], []
    for p, g, m in zip(preds, gts, masks):
        x, y = p.double().reshape(-1, 3), g.double().reshape(-1, 3)
        if m is not None:
            x, y = x[m.reshape(-1)], y[m.reshape(-1)]
        xs.append(x)
        ys.append(y)
    x = torch.cat(xs).numpy()
    x = np.concatenate([x, np.ones((len(x), 1))], 1)
    coef = np.linalg.lstsq(x, torch.cat(ys).numpy(), rcond=None)[0]
    return torch.from_numpy(coef)


# ------------------------------------------------------------------------------------------ exact colour fits
@pytest.mark.parametrize("device", DEVICES)
def test_constant_render_gives_exact_finite_fit(device):
    gt = smooth_image(24).to(device)
    pred = torch.full_like(gt, 0.4)  # a flat gray render: rank 1
    fitted = affine_color_fit(pred, gt)
    assert fitted.device == gt.device and fitted.dtype == gt.dtype
    assert torch.isfinite(fitted).all()
    mean = gt.double().reshape(-1, 3).mean(0)
    assert torch.allclose(fitted.double(), mean.expand(24, 24, 3), atol=1e-6)
    # float64 end to end: identical to the closed-form projection
    cm = ColourMap.fit([pred.double()], [gt.double()])
    ref = torch.cat([pred.double().reshape(-1, 3).cpu(), torch.ones(24 * 24, 1, dtype=torch.float64)], 1)
    ref = ref @ reference_fitted([pred.cpu()], [gt.cpu()])
    assert torch.allclose(cm.apply(pred.double(), clamp=False).reshape(-1, 3).cpu(), ref, atol=1e-12)
    assert torch.allclose(ref, mean.cpu().expand_as(ref), atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_grayscale_render_rank_deficient_fit_matches_closed_form(device):
    gt = smooth_image(24, seed=1)
    v = luminance(gt) * 0.7 + 0.1
    pred = v.expand(24, 24, 3).contiguous()  # R = G = B: rank 2 design
    # closed form with the two independent columns [v, 1]
    x = torch.cat([v.double().reshape(-1, 1), torch.ones(24 * 24, 1, dtype=torch.float64)], 1)
    y = gt.double().reshape(-1, 3)
    expected = x @ torch.linalg.solve(x.T @ x, x.T @ y)
    cm = ColourMap.fit([pred.double().to(device)], [gt.double().to(device)])
    assert torch.isfinite(cm.coef).all()
    got = cm.apply(pred.double().to(device), clamp=False).cpu().reshape(-1, 3)
    assert torch.allclose(got, expected, atol=1e-12)


def test_pooled_masked_fit_matches_closed_form():
    preds = [smooth_image(16, seed=s) for s in (2, 3, 4)]
    g = torch.Generator().manual_seed(0)
    gts = [distort(p) + 0.02 * torch.randn(16, 16, 3, generator=g) for p in preds]
    masks = [torch.rand(16, 16, generator=torch.Generator().manual_seed(9 + s)) > 0.3 for s in range(3)]
    cm = ColourMap.fit(preds, gts, masks)
    assert cm.num_pixels == sum(int(m.sum()) for m in masks)
    assert torch.allclose(cm.coef, reference_fitted(preds, gts, masks), atol=1e-10)
    assert torch.allclose(ColourMap.from_list(cm.to_list()).coef, cm.coef)
    with pytest.raises(ValueError):
        ColourMap.fit([preds[0]], [gts[0]], [torch.zeros(16, 16, dtype=torch.bool)])


# ---------------------------------------------------------------------------- scene map vs per-image fit
def test_scene_map_cannot_lift_a_constant_image_above_the_floor():
    train_gt = [smooth_image(32, seed=s) for s in range(3)]
    test_gt = smooth_image(32, seed=7)
    # an attacker whose renders are the truth up to a fixed colour distortion
    cm = ColourMap.fit([distort(g) for g in train_gt], train_gt)
    floor = floor_scores(test_gt, cm)
    good = score_image(distort(test_gt), test_gt, cm)
    assert good["cmpsnr"] > 40 and good["cm_lum_ssim"] > 0.999
    assert leakage(good, floor)["cmpsnr"] > 20
    # a constant render: the scene map turns it into another constant, never better than the mean colour
    flat = score_image(torch.full_like(test_gt, 0.3), test_gt, cm)
    assert flat["cmpsnr"] <= floor["cmpsnr"] + 1e-9
    assert flat["upper_cipsnr"] == pytest.approx(floor["psnr"], abs=1e-4)  # per-image fit: exactly the floor
    # a constant-render attacker's map (rank-deficient training renders) is finite and still can't beat it
    cm_flat = ColourMap.fit([torch.full_like(g, 0.5) for g in train_gt], train_gt)
    assert torch.isfinite(cm_flat.coef).all()
    assert score_image(torch.full_like(test_gt, 0.5), test_gt, cm_flat)["cmpsnr"] <= floor["cmpsnr"] + 1e-9


def test_per_image_fit_rewards_noise_and_scene_map_does_not():
    g = torch.Generator().manual_seed(0)
    train_gt = [smooth_image(32, seed=s) for s in range(3)]
    test_gt = smooth_image(32, seed=7)
    noise = lambda: torch.rand(32, 32, 3, generator=g)  # noqa: E731  (renders that know nothing)
    cm = ColourMap.fit([noise() for _ in train_gt], train_gt)
    lk = leakage(score_image(noise(), test_gt, cm), floor_scores(test_gt, cm))
    assert lk["upper_cipsnr"] > 0  # 12 parameters fitted with the answer: a positive "margin" from nothing
    assert lk["cmpsnr"] < 0.05  # one map for the scene: no leakage
    assert lk["cm_lum_ssim"] < 0.02


# ------------------------------------------------------------------------------------------------------ NMI
def test_nmi_independent_constant_and_distorted():
    g = torch.Generator().manual_seed(0)
    gt = smooth_image(64)
    noise = torch.rand(64, 64, 3, generator=g)
    assert nmi(noise, gt) == pytest.approx(1.0, abs=0.01)  # the plug-in bias (~ +0.02 here) is subtracted
    assert nmi(torch.full_like(gt, 0.2), gt) == pytest.approx(1.0, abs=1e-12)
    assert nmi(torch.full_like(gt, 0.2), torch.full_like(gt, 0.7)) == 1.0
    assert nmi(gt, gt) == pytest.approx(2.0, abs=0.05)
    inverted = (0.9 - 0.5 * luminance(gt)).expand(64, 64, 3)  # an affine change of luminance: still identical
    assert nmi(inverted, gt) == pytest.approx(nmi(gt, gt), abs=0.01)
    distorted = distort(gt) + 0.02 * torch.randn(64, 64, 3, generator=g)  # channels mixed: luminance too
    assert nmi(distorted, gt) > 1.2 > nmi(noise, gt) + 0.1


def test_nmi_is_unbiased_on_small_masks():
    """A 200-pixel region (a private item at 48 px): independent noise scores ~1.0, not the plug-in's ~1.3."""
    from skimage.metrics import normalized_mutual_information

    g = torch.Generator().manual_seed(1)
    gt = smooth_image(64) + 0.3 * torch.rand(64, 64, 3, generator=g)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[10:30, 20:30] = True
    scores = [nmi(torch.rand(64, 64, 3, generator=g), gt, mask) for _ in range(5)]
    a = luminance(torch.rand(64, 64, 3, generator=g).clamp(0, 1))[mask][:, 0].numpy()
    b = luminance(gt.clamp(0, 1))[mask][:, 0].numpy()
    assert normalized_mutual_information(b, a, bins=32) > 1.2  # what the raw estimator reports
    assert abs(sum(scores) / len(scores) - 1.0) < 0.05
    assert nmi(gt, gt, mask) > 1.6  # the region's own structure is still recognised


# ---------------------------------------------------------------------------------------------------- masks
def region_mask(n: int = 32) -> torch.Tensor:
    m = torch.zeros(n, n, dtype=torch.bool)
    m[6:20, 10:26] = True
    return m


def test_masked_metrics_only_look_inside_the_mask():
    gt = smooth_image(32)
    pred = distort(gt) * 0.8 + 0.05 * torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(1))
    mask = region_mask()
    cm = ColourMap.fit([distort(smooth_image(32, seed=3))], [smooth_image(32, seed=3)])
    before = score_image(pred, gt, cm, mask=mask)
    g = torch.Generator().manual_seed(2)
    pred2, gt2 = pred.clone(), gt.clone()
    pred2[~mask] = torch.rand(int((~mask).sum()), 3, generator=g)
    gt2[~mask] = torch.rand(int((~mask).sum()), 3, generator=g)
    after = score_image(pred2, gt2, cm, mask=mask)
    private = [k for k in before if k.startswith("private_")]
    assert set(private) == {"private_psnr", "private_ssim", "private_nmi", "private_raw_lum_ssim",
                            "private_upper_cipsnr", "private_cmpsnr", "private_cm_lum_ssim", "private_cm_nmi"}
    for k in private:
        assert after[k] == pytest.approx(before[k], abs=1e-12), k
    assert after["psnr"] != before["psnr"]  # the whole-image scores do see the outside
    # and they are the plain metrics restricted to the region
    assert before["private_psnr"] == pytest.approx(
        float(-10 * torch.log10((pred.clamp(0, 1)[mask] - gt[mask]).double().pow(2).mean())), abs=1e-9)
    fl = floor_scores(gt, cm, mask=mask)
    assert fl["private_psnr"] == pytest.approx(masked_psnr(constant_image(gt, mask), gt, mask))


def test_masked_ssim_without_mask_matches_torchmetrics_inside():
    a, b = smooth_image(40, seed=1), smooth_image(40, seed=2)
    _, full = structural_similarity_index_measure(torch.moveaxis(a, -1, 0)[None].double(),
                                                  torch.moveaxis(b, -1, 0)[None].double(), data_range=1.0,
                                                  return_full_image=True)
    ours = ssim_map(a, b)
    interior = (slice(5, -5), slice(5, -5))  # the border differs: truncated window vs reflect padding
    assert torch.allclose(ours[interior], full[0].mean(0)[interior], atol=1e-10)
    assert masked_ssim(a, b) == pytest.approx(image_metrics.ssim(a, b), abs=0.02)


def test_empty_mask_gives_nan_not_a_crash():
    gt = smooth_image(16)
    empty = torch.zeros(16, 16, dtype=torch.bool)
    s = score_image(gt * 0.5, gt, ColourMap.identity(), mask=empty, prefix="a_")
    private = {k: v for k, v in s.items() if k.startswith("a_private_")}
    assert private and all(math.isnan(v) for v in private.values())
    assert all(math.isfinite(v) for k, v in s.items() if k not in private)
    fl = floor_scores(gt, ColourMap.identity(), mask=empty, prefix="a_")
    assert math.isnan(fl["a_private_psnr"])
    assert math.isnan(masked_psnr(gt, gt, empty)) and math.isnan(masked_ssim(gt, gt, empty))
    assert math.isnan(nmi(gt, gt, empty))
    assert math.isnan(leakage(s, fl)["a_private_cmpsnr"])


# ---------------------------------------------------------------------------------- floor, leakage, legacy
def test_leakage_and_best_of():
    a = {"x_psnr": 20.0, "x_nmi": 1.1, "x_lpips": 0.4, "x_private_psnr": math.nan}
    b = {"x_psnr": 18.0, "x_nmi": 1.3, "x_lpips": 0.3, "x_private_psnr": 12.0}
    best = best_of([a, b])
    assert best == {"x_psnr": 20.0, "x_nmi": 1.3, "x_lpips": 0.3, "x_private_psnr": 12.0}
    lk = leakage(best, {"x_psnr": 15.0, "x_nmi": 1.0, "x_lpips": 0.6, "x_private_psnr": 11.0})
    assert lk == pytest.approx({"x_psnr": 5.0, "x_nmi": 0.3, "x_private_psnr": 1.0})


def test_constant_image_is_the_mean_colour():
    gt = smooth_image(16)
    c = constant_image(gt)
    assert torch.allclose(c, gt.reshape(-1, 3).mean(0).expand_as(gt))
    mask = region_mask(16)
    assert torch.allclose(constant_image(gt, mask)[0, 0], gt[mask].mean(0))


def _legacy_leakage_metrics(pred, gt, prefix):
    """The implementation before issue 10, inlined (default lstsq driver on the CPU)."""
    def fit(p, t):
        x = torch.cat([p.reshape(-1, 3), torch.ones_like(p.reshape(-1, 3)[:, :1])], dim=-1).double()
        return (x @ torch.linalg.lstsq(x, t.reshape(-1, 3).double()).solution).float().reshape(t.shape).clamp(0, 1)

    psnr, ssim, lum = image_metrics.psnr, image_metrics.ssim, image_metrics.luminance
    const = gt.reshape(-1, 3).mean(0).expand_as(gt)
    out = {f"{prefix}psnr": psnr(pred, gt), f"{prefix}ssim": ssim(pred, gt), f"{prefix}cipsnr": psnr(fit(pred, gt), gt),
           f"{prefix}lum_ssim": ssim(lum(fit(pred, gt)), lum(gt)), f"{prefix}baseline_psnr": psnr(const, gt),
           f"{prefix}baseline_lum_ssim": ssim(lum(const), lum(gt))}
    out[f"{prefix}cipsnr_margin"] = out[f"{prefix}cipsnr"] - out[f"{prefix}baseline_psnr"]
    out[f"{prefix}lum_ssim_margin"] = out[f"{prefix}lum_ssim"] - out[f"{prefix}baseline_lum_ssim"]
    return out


def test_leakage_metrics_keys_and_values_unchanged():
    gt = smooth_image(32)
    pred = 0.6 * distort(gt) + 0.2 * torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(0))
    m = leakage_metrics(pred, gt, "attack_")
    assert set(m) == {f"attack_{k}" for k in ("psnr", "ssim", "cipsnr", "lum_ssim", "baseline_psnr",
                                              "baseline_lum_ssim", "cipsnr_margin", "lum_ssim_margin")}
    ref = _legacy_leakage_metrics(pred, gt, "attack_")
    for k in m:
        assert m[k] == pytest.approx(ref[k], abs=1e-4), k


def test_lpips_missing_weights_warns_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    image_metrics._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger=image_metrics.LOG.name):
        assert image_metrics.build_lpips() is None
        assert image_metrics.build_lpips() is None
    assert sum("LPIPS unavailable" in r.getMessage() for r in caplog.records) == 1
    assert image_metrics.lpips_weights_path() == tmp_path / "checkpoints" / image_metrics.ALEXNET_WEIGHTS
