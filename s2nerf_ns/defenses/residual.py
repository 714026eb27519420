"""Residual noise: noise in the gradient's own subspace, with a per-pixel Gaussian-mechanism guarantee.

The gradient a ray sends is ``g_r = J_r^T e_r``: the client head's Jacobian ``J_r = d rgb_r / d h_r`` times the
ray's colour residual ``e_r = dL / d rgb_r``. Noise on ``dL/dh`` spends most of its power in directions that carry
no colour; noise on ``e_r`` hides exactly the colour, at far less power. With the MSE loss
``L = sum_r ||rgb_r - y_r||^2 / (3N)``, ``e_r + n_r`` is the residual of a noisy target ``y_r + s xi_r``
(``n_r = -2 s xi_r / (3N)``), so the client computes the sent gradient as the gradient of the loss against noisy
targets. With ``residual-client clean`` its own head still trains on the clean gradient: the client computes the
second vector-Jacobian product ``J^T n`` (:func:`noise_gradient`, against :meth:`Defense.server_targets`) and the
channel adds it to the ``J^T e`` that crosses in the same step's backward.

Sensitivity. Targets are clipped to ``[0, 1]``; neighbouring datasets differ in the colour of one pixel
(replacement). ``y_r`` changes by at most ``sqrt(3)`` in L2, so ``e_r`` by ``2 sqrt(3) / (3N)``, and the noise
``n_r`` has std ``2 s / (3N)`` per channel: each release is a Gaussian mechanism on one pixel's colour with noise
multiplier ``z = s / sqrt(3)`` (``J_r^T (e_r + n_r)`` is post-processing of it).
"""

from __future__ import annotations

import math
from typing import Callable, Dict

import torch
from torch import Tensor

PIXEL_L2_SENSITIVITY = math.sqrt(3.0)
"""Largest L2 change of one pixel's RGB in [0, 1]^3 when its colour is replaced."""


class ResidualNoise:
    """Noisy targets ``clip(y, 0, 1) + s * xi`` whose MSE residual is ``e + n`` (see the module doc)."""

    def __init__(self, std: float) -> None:
        self.std = std

    @property
    def noise_multiplier(self) -> float:
        """z = noise std / L2 sensitivity, in pixel units."""
        return self.std / PIXEL_L2_SENSITIVITY

    def __call__(self, targets: Tensor, generator: torch.Generator) -> Tensor:
        noise = torch.randn(targets.shape, generator=generator, device=targets.device, dtype=targets.dtype)
        return targets.clamp(0.0, 1.0) + self.std * noise


def noise_gradient(loss: Callable[[Tensor, Tensor], Tensor], rgb: Tensor, targets: Tensor, noisy_targets: Tensor,
                   h: Tensor) -> Tensor:
    """CLIENT (clean client): ``J^T n``, the gradient w.r.t. its copy of ``h`` of ``loss(noisy_targets, rgb) -
    loss(targets, rgb)``: ``rgb`` is rendered by the client head from ``h``, ``noisy_targets`` are
    :class:`ResidualNoise`'s. Added to the clean ``J^T e`` it is ``J^T (e + n)``; the graph is kept for the clean
    loss's backward."""
    difference = loss(noisy_targets, rgb) - loss(targets, rgb)
    return torch.autograd.grad(difference, h, retain_graph=True)[0]


def per_pixel_privacy(noise_multiplier: float, rays_per_step: int, training_pixels: int, steps: int,
                      delta: float) -> Dict[str, object]:
    """Per-pixel (epsilon, delta) of ``steps`` releases of batches of ``rays_per_step`` rays drawn uniformly with
    replacement from ``training_pixels`` pixels (nerfstudio's pixel sampler), with opacus' RDP accountant.

    The server learns which pixels a step used (it is sent their rays), so subsampling does not hide a
    pixel's participation. The valid bound therefore composes the Gaussian mechanism over the number of times
    the pixel is released, ``K ~ Binomial(steps * rays_per_step, 1 / training_pixels)``: with probability
    ``1 - delta / 2``, ``K <= k``; opacus composes ``k`` Gaussian releases at ``delta / 2``. The sampled-Gaussian
    number (``epsilon_if_sampling_hidden``, opacus at ``q = rays_per_step / training_pixels``) is reported for
    comparison only: it would hold if the server did not know which pixels were in a batch.

    Every epsilon is a finite number or ``None`` with an ``<key>_reason`` (the report is written as strict JSON).
    """
    from opacus.accountants import RDPAccountant
    from scipy.stats import binom

    q = rays_per_step / training_pixels
    out: Dict[str, object] = {
        "unit": "one pixel (its RGB colour in [0, 1]^3, replaced)", "noise_multiplier": noise_multiplier,
        "sample_rate": q, "steps": steps, "rays_per_step": rays_per_step, "training_pixels": training_pixels,
        "delta": delta, "accountant": "opacus RDPAccountant",
    }
    if noise_multiplier <= 0 or steps <= 0:
        k = int(binom.ppf(1 - delta / 2, max(steps, 0) * rays_per_step, 1 / training_pixels)) if steps > 0 else 0
        out.update(releases_bound=k, epsilon=0.0, epsilon_if_sampling_hidden=0.0)
        if steps > 0:  # released without noise: no finite epsilon (the config refuses it; the function says so)
            for key in ("epsilon", "epsilon_if_sampling_hidden"):
                _null(out, key, "the releases carry no noise (noise multiplier 0): no finite epsilon exists")
        return out
    k = int(binom.ppf(1 - delta / 2, steps * rays_per_step, 1 / training_pixels))
    acc = RDPAccountant()
    acc.history = [(noise_multiplier, 1.0, k)] if k > 0 else []
    eps = float(acc.get_epsilon(delta / 2)) if k > 0 else 0.0
    hidden = RDPAccountant()
    hidden.history = [(noise_multiplier, min(q, 1.0), steps)]
    out.update(releases_bound=k, expected_releases=steps * q, epsilon=eps,
               epsilon_if_sampling_hidden=float(hidden.get_epsilon(delta)))
    for key in ("epsilon", "epsilon_if_sampling_hidden"):
        if not math.isfinite(out[key]):
            _null(out, key, f"the accountant's bound is not finite ({out[key]}) at noise multiplier "
                            f"{noise_multiplier:g} over {k} releases: the noise is too small for any guarantee")
    return out


def _null(report: Dict[str, object], key: str, reason: str) -> None:
    """An epsilon that is not a finite number is reported as JSON null with the reason (never Infinity/NaN)."""
    report[key] = None
    report[f"{key}_reason"] = reason
