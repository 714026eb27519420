"""Canary audit of the residual-noise guarantee: an empirical LOWER bound on the per-pixel epsilon.

The accountant (:func:`s2nerf_ns.defenses.residual.per_pixel_privacy`) gives an upper bound. An audit plays the
distinguishing game the guarantee is about and turns its success into a lower bound (Jagielski et al., NeurIPS
2020; Nasr et al., 2021; the practice of tensorflow-privacy's ``privacy_tests``): if the lower bound ever exceeds
the accountant's epsilon, the implementation or its analysis is wrong.

The game, at the guarantee's own unit (one pixel, its colour replaced):

* The auditor picks ``M`` candidate training pixels. For each, a fair coin decides which of two colours it holds:
  an "out" colour ``y0`` (a corner of the RGB cube) or the "in" canary ``1 - y0`` (the opposite corner, at the
  largest distance the sensitivity allows, ``sqrt(3)``). Neighbouring datasets differ in exactly one such pixel.
* The victim trains as usual with the defense.
* The distinguisher is stronger than the curious server: it is WHITE-BOX, it knows the client head at every
  step (the ``clean`` guarantee treats the head as fixed, so it must hold against it). From each received
  gradient row ``g_r = J_r^T (2 (rgb_r - y~_r) / (3 R))`` it recovers the noisy target ``y~_r`` exactly by least
  squares, averages the releases of each candidate, and guesses "in" when the average lies on the canary's
  side of the midpoint.
* True and false positive rates, with Clopper-Pearson intervals, give ``epsilon >= log((TPR_lo - delta) /
  FPR_hi)`` (and the same with the roles of the two colours swapped).

The ``M`` candidates of one run are treated as independent trials. Each candidate's releases carry their own
independent noise, which is the mechanism the accountant composes; the trials still share the model they train,
so the rigorous one-run treatment (Steinke, Nasr, Jagielski, NeurIPS 2023) would be slightly more conservative.
The auditor holds the ground truth (which coin fell which way): it is evaluation code, never the server's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from s2nerf_ns.attacks.surrogate import implied_pixels
from s2nerf_ns.protocol.channel import ServerView


# ------------------------------------------------------------------------------------------ statistics
def clopper_pearson(successes: int, trials: int, alpha: float) -> tuple:
    """One-sided Clopper-Pearson bounds ``(lower, upper)``, each holding with probability ``1 - alpha``."""
    from scipy.stats import beta

    if trials <= 0:
        return 0.0, 1.0
    lower = float(beta.ppf(alpha, successes, trials - successes + 1)) if successes > 0 else 0.0
    upper = float(beta.ppf(1 - alpha, successes + 1, trials - successes)) if successes < trials else 1.0
    return lower, upper


def epsilon_lower_bound(tp: int, fn: int, fp: int, tn: int, delta: float, confidence: float = 0.95) -> float:
    """Empirical epsilon lower bound from a distinguisher's confusion counts, holding with ``confidence``.

    (epsilon, delta)-DP implies ``TPR <= e^eps FPR + delta`` and ``TNR <= e^eps FNR + delta``. The four rates are
    bounded one-sidedly at ``(1 - confidence) / 4`` each (a union bound), and the larger of the two implied
    bounds is returned (0 when neither is informative)."""
    alpha = (1.0 - confidence) / 4
    tpr_lo, _ = clopper_pearson(tp, tp + fn, alpha)
    _, fpr_hi = clopper_pearson(fp, fp + tn, alpha)
    tnr_lo, _ = clopper_pearson(tn, tn + fp, alpha)
    _, fnr_hi = clopper_pearson(fn, fn + tp, alpha)
    best = 0.0
    for hit_lo, miss_hi in ((tpr_lo, fpr_hi), (tnr_lo, fnr_hi)):
        if hit_lo > delta and miss_hi > 0:
            best = max(best, math.log((hit_lo - delta) / miss_hi))
    return best


# ------------------------------------------------------------------------------------------ the planted set
@dataclass
class Canaries:
    """The auditor's secret: which candidate pixels hold the canary colour."""

    pixels: Int[Tensor, "M"]
    """Indices of the candidate pixels in the training set."""
    included: Bool[Tensor, "M"]
    """True where the pixel holds the canary colour ("in"), False where it holds the "out" colour."""
    out_colour: Float[Tensor, "M 3"]
    in_colour: Float[Tensor, "M 3"]

    def planted(self, colours: Float[Tensor, "P 3"]) -> Float[Tensor, "P 3"]:
        """The training colours with every candidate set to its coin's colour."""
        out = colours.clone()
        out[self.pixels] = torch.where(self.included[:, None], self.in_colour, self.out_colour)
        return out


def draw_canaries(num_pixels: int, num_canaries: int, generator: torch.Generator) -> Canaries:
    """``num_canaries`` distinct candidate pixels, a fair coin each, opposite RGB-cube corners as the two colours."""
    if not 0 < num_canaries <= num_pixels:
        raise ValueError(f"need 0 < canaries <= training pixels, got {num_canaries} of {num_pixels}")
    pixels = torch.randperm(num_pixels, generator=generator)[:num_canaries]
    included = torch.rand(num_canaries, generator=generator) < 0.5
    corner = (torch.rand(num_canaries, 3, generator=generator) < 0.5).float()
    return Canaries(pixels, included, corner, 1.0 - corner)


# ------------------------------------------------------------------------------------------ the distinguisher
def noisy_targets(head, renderer, view: ServerView) -> Float[Tensor, "R 3"]:
    """WHITE-BOX: the target colours ``y~_r`` whose MSE gradient the server received in ``view``: the least-squares
    read-out of :func:`~s2nerf_ns.attacks.surrogate.implied_pixels`, through the client head itself (as it was
    when the gradient was sent) instead of a surrogate, over the victim's whole batch."""
    def render(h: Tensor) -> Tensor:
        head_at = (lambda hh, dd: head(hh, dd, view.positions)) if getattr(head, "needs_positions", False) else head
        return renderer(head_at, h, view.origins, view.directions, view.bins, with_depth=False)["rgb"]

    return implied_pixels(render, view.h, view.grad, float(view.batch_rays or len(view.h)), clamp=False)


@dataclass
class CanaryReader:
    """A channel observer (white-box auditor): sums the recovered targets of every candidate pixel it sees."""

    head: torch.nn.Module
    renderer: torch.nn.Module
    canaries: Canaries
    pixel_of_ray: "callable"
    """ServerView -> [R] training-pixel index of each ray (from the rays' (camera, row, column) indices)."""
    sums: Optional[Tensor] = None
    counts: Optional[Tensor] = None
    _slot: Dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = len(self.canaries.pixels)
        self.sums = torch.zeros(m, 3, dtype=torch.float64)
        self.counts = torch.zeros(m, dtype=torch.long)
        self._slot = {int(p): i for i, p in enumerate(self.canaries.pixels)}

    def __call__(self, view: ServerView) -> None:
        pixels = self.pixel_of_ray(view).tolist()
        hits = [(r, self._slot[p]) for r, p in enumerate(pixels) if p in self._slot]
        if not hits:
            return
        targets = noisy_targets(self.head, self.renderer, view)
        for r, slot in hits:
            self.sums[slot] += targets[r].double()
            self.counts[slot] += 1

    def guesses(self) -> tuple:
        """(guess "in" [M], observed [M]): the side of the midpoint the mean recovered colour falls on."""
        c = self.canaries
        seen = self.counts > 0
        mean = self.sums / self.counts.clamp_min(1)[:, None]
        axis = (c.in_colour - c.out_colour).double()
        score = ((mean - (c.in_colour + c.out_colour).double() / 2) * axis).sum(-1)
        return score > 0, seen


def audit_result(reader: CanaryReader, delta: float, confidence: float = 0.95) -> Dict[str, object]:
    """Confusion counts over the candidates that were released at least once, and the epsilon lower bound."""
    guess, seen = reader.guesses()
    truth = reader.canaries.included
    tp = int((guess & truth & seen).sum())
    fn = int((~guess & truth & seen).sum())
    fp = int((guess & ~truth & seen).sum())
    tn = int((~guess & ~truth & seen).sum())
    releases: List[int] = reader.counts[seen].tolist()
    return {
        "canaries": len(truth), "observed": int(seen.sum()), "tp": tp, "fn": fn, "fp": fp, "tn": tn,
        "accuracy": (tp + tn) / max(tp + fn + fp + tn, 1),
        "median_releases": float(torch.tensor(releases, dtype=torch.float).median()) if releases else 0.0,
        "delta": delta, "confidence": confidence,
        "epsilon_lower_bound": epsilon_lower_bound(tp, fn, fp, tn, delta, confidence),
        "distinguisher": "white-box: noisy targets recovered from each received gradient with the client head",
    }
