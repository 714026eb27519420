"""EVALUATION: how much of the room's geometry an attacker's depth map reveals, on the same scale as colour leakage.

Scores of a depth map against a reference depth map (z-depth: distance along the camera's optical axis):

- ``absrel``: mean of ``|pred - ref| / ref`` (lower is better);
- ``within10``: the share of pixels with ``|pred - ref| / ref < 0.1`` (higher is better).

The reference is the dataparser's ground-truth depth (the built-in rooms render it) or, for dataparsers without
depth, the victim's own rendered depth (then labelled ``geometry_reference: victim``). Private-item regions are
scored on their pixels only (``private_`` keys). The **floor** knows nothing of the room: the better of each view's
best constant depth (chosen per metric *with* the reference: the minimiser of abs-rel, a weighted median, and the
constant with the most pixels within 10 %; this favours the floor), the gradient-free surrogate's depth and (in the
attack pipelines) the depth at which each ray leaves the scene box, a guess the server makes from the box alone.
**Leakage** is the floor's error minus the attack's: ``floor_absrel - attack_absrel`` and
``attack_within10 - floor_within10`` (positive = leaked). Keys: ``geometry_<name>_<metric>``.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

METRICS = ("absrel", "within10")
LOWER_IS_BETTER = ("absrel",)
WITHIN = 0.1
"""Relative error under which a pixel counts as right (``within10``)."""


def z_depth(t: Float[Tensor, "H W"], directions: Float[Tensor, "H W 3"], c2w: Float[Tensor, "3 4"]
            ) -> Float[Tensor, "H W"]:
    """Distance ``t`` along unit ray directions -> z-depth along the camera's optical axis (nerfstudio/OpenGL
    cameras look along ``-z`` of their camera-to-world matrix)."""
    forward = -c2w[:3, 2].to(directions)
    return t * (directions @ forward)


def _pixels(depth: Tensor, mask: Optional[Tensor]) -> Tensor:
    d = depth.detach().reshape(-1).double().cpu()
    if mask is not None:
        m = mask.detach().reshape(-1).bool().cpu()
        if m.numel() != d.numel():
            raise ValueError(f"mask of {tuple(mask.shape)} does not match depth of {tuple(depth.shape)}")
        d = d[m]
    return d


def depth_scores(pred: Float[Tensor, "H W"], ref: Float[Tensor, "H W"], mask: Optional[Bool[Tensor, "H W"]] = None,
                 prefix: str = "") -> Dict[str, float]:
    """``absrel`` and ``within10`` of ``pred`` against ``ref`` over valid reference pixels (finite, > 0), inside
    ``mask`` when given; NaN when no pixel is left."""
    p, r = _pixels(pred, mask), _pixels(ref, mask)
    valid = torch.isfinite(r) & (r > 0)
    p, r = p[valid], r[valid]
    if r.numel() == 0:
        return {f"{prefix}{k}": math.nan for k in METRICS}
    err = (torch.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0) - r).abs() / r
    return {f"{prefix}absrel": float(err.mean()), f"{prefix}within10": float((err < WITHIN).double().mean())}


def best_constant_scores(ref: Float[Tensor, "H W"], mask: Optional[Bool[Tensor, "H W"]] = None, prefix: str = ""
                         ) -> Dict[str, float]:
    """The best constant depth's scores, each metric with its own best constant (fitted with the reference):
    abs-rel is minimised by the median weighted by ``1 / ref``; ``within10`` by the constant ``c`` covering the
    most pixels with ``c / (1 + 0.1) < ref < c / (1 - 0.1)`` (searched over every reference value's two ends)."""
    r = _pixels(ref, mask)
    r = r[torch.isfinite(r) & (r > 0)]
    if r.numel() == 0:
        return {f"{prefix}{k}": math.nan for k in METRICS}
    r, _ = torch.sort(r)
    w = 1.0 / r
    cdf = torch.cumsum(w, 0) / w.sum()
    c_absrel = r[int(torch.searchsorted(cdf, torch.tensor(0.5, dtype=cdf.dtype)))]
    absrel = float(((c_absrel - r).abs() / r).mean())
    candidates = torch.cat([r * (1 - WITHIN), r * (1 + WITHIN), r]).unique()
    if candidates.numel() > 4096:
        candidates = torch.quantile(candidates, torch.linspace(0, 1, 4096, dtype=candidates.dtype))
    best = 0.0
    for chunk in candidates.split(512):
        hits = ((chunk[:, None] - r[None]).abs() / r[None] < WITHIN).double().mean(1)
        best = max(best, float(hits.max()))
    return {f"{prefix}absrel": absrel, f"{prefix}within10": best}


def best_of(scores: Iterable[Mapping[str, float]]) -> Dict[str, float]:
    """Per metric the best over several depth maps (min abs-rel, max within10), ignoring NaN."""
    best: Dict[str, float] = {}
    for s in scores:
        for k, v in s.items():
            v = float(v)
            old = best.get(k, math.nan)
            if math.isnan(old) or (not math.isnan(v) and (v < old if k.endswith(LOWER_IS_BETTER) else v > old)):
                best[k] = v
    return best


def leakage(attack: Mapping[str, float], floor: Mapping[str, float]) -> Dict[str, float]:
    """Floor error minus attack error, per metric both hold (positive = the attack knows more than the floor)."""
    out = {}
    for k in attack:
        if k in floor:
            sign = -1.0 if k.endswith(LOWER_IS_BETTER) else 1.0
            out[k] = sign * (float(attack[k]) - float(floor[k]))
    return out


def _strip(metrics: Mapping[str, float], name: str) -> Dict[str, float]:
    keys = list(METRICS) + [f"private_{k}" for k in METRICS]
    return {k: metrics[f"geometry_{name}_{k}"] for k in keys if f"geometry_{name}_{k}" in metrics}


def geometry_leakage(metrics: Mapping[str, float], attacks: Sequence[str],
                     floors: Sequence[str] = ("floor_constant", "floor_surrogate", "floor_box")) -> Dict[str, float]:
    """From view-averaged ``geometry_<name>_<metric>`` scores: ``geometry_floor_*`` (best floor),
    ``geometry_attack_*`` (best attack), ``geometry_leakage_*`` and each attack's ``geometry_<attack>_leakage_*``."""
    floor = best_of(_strip(metrics, f) for f in floors)
    best = best_of(_strip(metrics, a) for a in attacks)
    out = {f"geometry_floor_{k}": v for k, v in floor.items()}
    out.update({f"geometry_attack_{k}": v for k, v in best.items()})
    out.update({f"geometry_leakage_{k}": v for k, v in leakage(best, floor).items()})
    for a in attacks:
        out.update({f"geometry_{a}_leakage_{k}": v for k, v in leakage(_strip(metrics, a), floor).items()})
    return out


def geometry_leakage_vs_victim(metrics: Mapping[str, float], attacks: Sequence[str], floors: Sequence[str]
                               ) -> Dict[str, float]:
    """The same leakage against the client's own depth (what the server learns of the client's model, whatever the
    ground truth): from ``geometry_<name>_vs_victim_<metric>`` scores, ``geometry_vs_victim_floor_*``,
    ``geometry_vs_victim_attack_*`` and ``geometry_vs_victim_leakage_*``."""
    out = geometry_leakage(metrics, [f"{a}_vs_victim" for a in attacks], [f"{f}_vs_victim" for f in floors])
    groups = ("geometry_floor_", "geometry_attack_", "geometry_leakage_")
    return {"geometry_vs_victim_" + k[len("geometry_"):]: v for k, v in out.items() if k.startswith(groups)}


def score_view_vs_victim(depths: Mapping[str, Tensor], victim: Tensor, mask: Optional[Tensor] = None
                         ) -> Dict[str, float]:
    """:func:`score_view` against the client's own depth ``victim``: ``geometry_<name>_vs_victim_<metric>`` (and
    ``_vs_victim_private_<metric>`` with ``mask``) for every depth map and the best constant depth."""
    scores = score_view(depths, victim, mask)
    out = {}
    for name in sorted(set(depths) | {"floor_constant"}, key=len, reverse=True):  # longest first: floor_box
        head = f"geometry_{name}_"
        for key in [k for k in scores if k.startswith(head)]:
            out[f"{head}vs_victim_{key[len(head):]}"] = scores.pop(key)
    return out


def score_view(depths: Mapping[str, Tensor], ref: Tensor, mask: Optional[Tensor] = None) -> Dict[str, float]:
    """Every depth map of one view (name -> [H, W] z-depth) and the best constant against ``ref``, as
    ``geometry_<name>_<metric>`` (with ``mask``, also ``geometry_<name>_private_<metric>``)."""
    out = best_constant_scores(ref, prefix="geometry_floor_constant_")
    for name, depth in depths.items():
        out.update(depth_scores(depth, ref, prefix=f"geometry_{name}_"))
    if mask is not None:
        if bool(mask.any()):
            out.update(best_constant_scores(ref, mask, prefix="geometry_floor_constant_private_"))
        else:
            out.update({f"geometry_floor_constant_private_{k}": math.nan for k in METRICS})
        for name, depth in depths.items():
            out.update(depth_scores(depth, ref, mask, prefix=f"geometry_{name}_private_"))
    return out


def reference_depth(metadata: Optional[Mapping[str, object]], index: int, height: int, width: int
                    ) -> Optional[Float[Tensor, "H W"]]:
    """The ground-truth z-depth of a view in scene units, from a dataparser's ``depth_filenames`` (``.npy``) and
    ``depth_to_normalized_scale`` (the built-in rooms), resized (nearest) when needed; None without them."""
    metadata = metadata or {}
    files, scale = metadata.get("depth_filenames"), metadata.get("depth_to_normalized_scale")
    if not files or scale is None or index >= len(files):  # type: ignore[arg-type]
        return None
    depth = torch.from_numpy(np.load(files[index]).astype(np.float32)) * float(scale)  # type: ignore[index]
    if depth.shape != (height, width):
        depth = torch.nn.functional.interpolate(depth[None, None], (height, width), mode="nearest")[0, 0]
    return depth


def depth_picture(panels: Sequence[Float[Tensor, "H W"]]) -> Float[Tensor, "H W3 3"]:
    """Depth maps side by side in gray (near = bright), all on the first panel's scale."""
    first = panels[0][torch.isfinite(panels[0])]
    top = max(float(first.max()), 1e-6) if first.numel() else 1.0
    picture = torch.cat([(1 - torch.nan_to_num(p.float(), nan=top) / top).clamp(0, 1) for p in panels], dim=1)
    return picture[..., None].expand(-1, -1, 3)


def readout_against_client(direction: Tensor, scale: float, w: Tensor) -> Dict[str, float]:
    """The density read-out ``log sigma = scale * (direction . h)`` against the client's true last density layer
    ``w`` (the evaluator reads the client): ``|cos|`` of the directions, ``|scale| / |w|`` and whether the sign
    (chosen without ground truth) is right."""
    w = w.to(direction)
    cos = float(direction @ w / w.norm().clamp_min(1e-30))
    return {"geometry_readout_direction_cos": abs(cos),
            "geometry_readout_scale_ratio": abs(scale) / float(w.norm().clamp_min(1e-30)),
            "geometry_readout_sign_right": float(scale * cos > 0)}
