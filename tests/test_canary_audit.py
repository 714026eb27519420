"""The canary audit of the residual-noise guarantee, and pinned values of the accounting it is checked against."""

import math

import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import binom, norm

from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.defenses.residual import per_pixel_privacy
from s2nerf_ns.evaluation.canary import clopper_pearson, draw_canaries, epsilon_lower_bound
from s2nerf_ns.integration.canary_audit import train_with_canaries
from conftest import tiny_model

OPACUS_ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
"""opacus' RDPAccountant.DEFAULT_ALPHAS."""


def rdp_gaussian_epsilon(z: float, k: int, delta: float) -> float:
    """Independent: k Gaussian releases of noise multiplier z, RDP alpha k / (2 z^2), converted at delta with
    Balle et al. 2020 (Thm 21), the conversion opacus uses, over opacus' default orders."""
    return min(a * k / (2 * z * z) - (math.log(delta) + math.log(a)) / (a - 1) + math.log((a - 1) / a)
               for a in OPACUS_ALPHAS)


def exact_gaussian_epsilon(mu: float, delta: float) -> float:
    """The exact epsilon(delta) of one Gaussian mechanism with sensitivity / std = mu (Balle & Wang 2018)."""
    def excess(eps):
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps + norm.logcdf(-eps / mu - mu / 2)) - delta
    return 0.0 if excess(0.0) <= 0 else brentq(excess, 0.0, 10.0 * mu * mu + 100.0)


# ------------------------------------------------------------------------------------------ statistics
def test_clopper_pearson_closed_forms():
    assert clopper_pearson(0, 100, 0.0125)[1] == pytest.approx(1 - 0.0125 ** (1 / 100), rel=1e-9)
    assert clopper_pearson(100, 100, 0.0125)[0] == pytest.approx(0.0125 ** (1 / 100), rel=1e-9)
    lo, hi = clopper_pearson(30, 100, 0.025)
    assert 0.21 < lo < 0.3 < hi < 0.40


def test_epsilon_lower_bound_of_a_perfect_and_a_blind_distinguisher():
    hit = 0.0125 ** (1 / 100)
    assert epsilon_lower_bound(100, 0, 0, 100, delta=0.0) == pytest.approx(math.log(hit / (1 - hit)), rel=1e-9)
    assert epsilon_lower_bound(50, 50, 50, 50, delta=1e-5) == 0.0
    # more trials, tighter bound
    assert epsilon_lower_bound(1000, 0, 0, 1000, delta=1e-5) > epsilon_lower_bound(100, 0, 0, 100, delta=1e-5) + 2


# ------------------------------------------------------------------------------------------ accounting, pinned
@pytest.mark.parametrize("std,rays,pixels,steps", [(0.2, 1024, 16 * 128 * 128, 600), (3.0, 64, 400, 100)])
def test_accountant_equals_the_rdp_gaussian_composition_over_the_release_bound(std, rays, pixels, steps):
    z, delta = std / math.sqrt(3), 1e-5
    report = per_pixel_privacy(z, rays, pixels, steps, delta)
    k = int(binom.ppf(1 - delta / 2, steps * rays, 1 / pixels))
    assert report["releases_bound"] == k
    assert report["epsilon"] == pytest.approx(rdp_gaussian_epsilon(z, k, delta / 2), rel=1e-9)
    # an RDP bound is never below the exact epsilon of the same k releases
    assert report["epsilon"] >= exact_gaussian_epsilon(math.sqrt(k) / z, delta / 2)


def test_accountant_pinned_value():
    """Regression pin (opacus 1.6 RDP, computed once): 36 releases at s = 3 (z = sqrt 3), delta 1e-5."""
    report = per_pixel_privacy(math.sqrt(3.0), 64, 400, 100, 1e-5)
    assert report["releases_bound"] == 36
    assert report["epsilon"] == pytest.approx(21.954292, abs=1e-5)


# ------------------------------------------------------------------------------------------ the audit
PIXELS, CANARIES = 400, 200


def audit(kind: str, **knobs):
    g = torch.Generator().manual_seed(1)
    origins = (torch.rand(PIXELS, 3, generator=g) - 0.5) * 0.5
    directions = torch.nn.functional.normalize(torch.randn(PIXELS, 3, generator=g), dim=-1)
    colours = torch.rand(PIXELS, 3, generator=g)
    model = tiny_model(defense=DefenseConfig(kind=kind, **knobs))
    canaries = draw_canaries(PIXELS, CANARIES, torch.Generator().manual_seed(2))
    return train_with_canaries(model, origins, directions, colours, canaries, steps=100, rays_per_step=64)


def test_canary_audit_without_noise_is_not_vacuous(one_thread):
    result = audit("none")["audit"]
    assert result["observed"] == CANARIES
    assert result["accuracy"] == 1.0  # the white-box reader recovers every pixel exactly
    assert result["epsilon_lower_bound"] > 3.0  # the most 200 trials can show at 95 %: 3.12


def test_canary_audit_lower_bound_stays_under_the_accountant(one_thread):
    std = 3.0
    out = audit("residual-noise", residual_noise_std=std)
    result, accountant = out["audit"], out["accountant"]
    assert 0.5 < result["epsilon_lower_bound"]  # the distinguisher still sees the canaries through the noise
    assert result["epsilon_lower_bound"] <= accountant["epsilon"]
    # tighter: under the exact Gaussian epsilon of the most-released canary's releases
    z = std / math.sqrt(3)
    assert result["epsilon_lower_bound"] <= exact_gaussian_epsilon(math.sqrt(accountant["releases_bound"]) / z, 1e-5)
    # the distinguisher's accuracy is what its Gaussian statistic predicts: Phi(sqrt(3 k) / (2 s)) at k releases
    k = result["median_releases"]
    assert result["accuracy"] == pytest.approx(norm.cdf(math.sqrt(3 * k) / (2 * std)), abs=0.06)


# ------------------------------------------------------------------------------------------ the README's numbers
def test_readme_canary_block_is_generated_from_the_committed_records():
    from pathlib import Path

    from s2nerf_ns.bench import canary_report

    root = Path(__file__).resolve().parents[1]
    folder = root / "docs" / "results" / "canary_audit"
    assert canary_report.readme_matches(root / "README.md", folder)  # fails (not skips) without the records
    records = canary_report.load(folder)
    shifted = [dict(r, audit=dict(r["audit"], fp=r["audit"]["fp"] + 5)) for r in records]
    assert canary_report.markdown(shifted) != canary_report.markdown(records)  # recomputed from the raw counts
    stored = [dict(r, audit=dict(r["audit"], epsilon_lower_bound=99.0), accountant={"epsilon": 0.0}) for r in records]
    assert canary_report.markdown(stored) == canary_report.markdown(records)  # never from the stored epsilons
