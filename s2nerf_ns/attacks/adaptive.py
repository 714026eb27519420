"""What an attacker that knows the defense makes of it: noise levels from the defense's public configuration.

The server knows the protocol, including the defense's kind and knobs (Kerckhoffs): the channel hands them to
observers as plain values (:attr:`ServerView.defense`). This module turns them into

* ``gradient_weight``: the expected fraction of a received gradient row's power that is signal, used to weight
  each step's gradient-matching loss (noisy steps count less);
* ``entry_mask``: for ``partial`` noise, the entries the server knows are pure noise (where its own ``h`` is 0);
* ``pixel_noise_variance``: the variance that the defense's noise adds to a pixel read out of one ray's gradient,
  used for a precision-weighted average of repeated observations of the same pixel.

Pure functions of plain values; nothing here knows the client or imports the defense code.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor


def schedule(public: Dict[str, object], step: int) -> float:
    """S²NeRF's ``max(r^(t/T), f)`` from the public knobs (1 when the length is unknown)."""
    steps = public.get("decay_steps")
    if not steps:
        return 1.0
    progress = min(max(step, 0) / float(steps), 1.0)  # type: ignore[arg-type]
    return max(float(public.get("decay_ratio", 1.0)) ** progress, float(public.get("noise_floor", 0.0)))  # type: ignore


def relative_noise(public: Dict[str, object], step: int) -> float:
    """s2nerf: noise std per entry relative to the batch's largest row norm, ``c_eff * schedule(t)`` on the entries
    the attacker keeps (0 for defenses that do not perturb dL/dh entrywise in a known way)."""
    if public.get("kind") != "s2nerf":
        return 0.0
    variant = public.get("variant", "random")
    c = float(public.get("noise_scale", 0.0))  # type: ignore[arg-type]
    if variant == "partial":
        c = 0.0  # the noisy entries are masked out
    elif variant == "mix":
        c *= float(public.get("mix_probability", 0.0)) ** 0.5  # type: ignore[arg-type]
    return c * schedule(public, step)


def gradient_weight(public: Dict[str, object], step: int, row_dim: int) -> float:
    """Expected signal fraction of a row, ``1 / (1 + (c s_t)^2 d)`` (a row's norm is at most the largest)."""
    rel = relative_noise(public, step)
    return 1.0 / (1.0 + rel * rel * row_dim)


def relative_gradient_weight(public: Dict[str, object], step: int, row_dim: int) -> float:
    """``gradient_weight`` relative to the run's best step (the end of the decay): a constant noise level leaves
    the gradient-matching loss as it is; a decaying one counts the early, noisier steps less."""
    end = public.get("decay_steps") or step
    return gradient_weight(public, step, row_dim) / gradient_weight(public, max(int(end), step), row_dim)  # type: ignore


def entry_mask(public: Dict[str, object], h: Tensor) -> Optional[Tensor]:
    """partial/mix: the entries where ``h`` is exactly 0 carry only the (large) noise; the server knows them."""
    if public.get("kind") == "s2nerf" and public.get("variant") in ("partial", "mix"):
        return (h != 0).to(h.dtype)
    return None


def entry_noise_variance(public: Dict[str, object], step: int, grad: Tensor) -> Tensor:
    """Estimated noise variance per entry of the received (masked) gradient.

    s2nerf: ``sigma^2 = (c s_t M)^2`` with ``M`` the unknown largest clean row norm. The received mean square
    is ``mean(g^2) + sigma^2`` with ``mean(g^2) <= M^2 / d``, so ``sigma^2 ~ mean(g'^2) / (1 + 1 / ((c s_t)^2 d))``.
    """
    rel = relative_noise(public, step)
    if rel <= 0:
        return grad.new_zeros(())
    d = grad.shape[-1]
    return grad.pow(2).mean() / (1.0 + 1.0 / (rel * rel * d))


def target_noise_variance(public: Dict[str, object]) -> float:
    """Noise the defense puts on a pixel directly (residual noise, label noise), in pixel units squared."""
    kind = public.get("kind")
    if kind == "residual-noise":
        return float(public.get("residual_noise_std", 0.0)) ** 2  # type: ignore[arg-type]
    if kind == "label-noise":
        return float(public.get("label_noise_std", 0.0)) ** 2  # type: ignore[arg-type]
    return 0.0
