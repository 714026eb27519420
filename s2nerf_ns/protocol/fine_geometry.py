"""Client geometry: the server's hash grid keeps only its coarse levels, the client keeps the fine geometry.

Threat model: a curious server reading the room's geometry out of its own density field (the density read-out and
the surrogate, :mod:`s2nerf_ns.attacks.geometry`). With ``--pipeline.model.client-geometry True``:

- SERVER: its hash grid holds only the levels whose resolution is at most ``client_geometry_server_res``
  (:func:`coarse_levels`: the same levels the full grid would have, cut above that resolution), so nothing finer
  than that resolution is ever in its field, and ``h`` carries only coarse geometry;
- CLIENT: its head adds to the log density a term of its own tri-plane at the sample positions
  (:class:`FineGeometry`: ``log sigma = w . h + p(x)``, ``p`` zero at the start), which the client computes from its
  rays and the sample spacing it already has: nothing extra crosses.

What it cannot hide: the coarse levels (the room's layout at the server's resolution) and, on every training ray,
where the received gradient is non-zero (in front of and at the client's surface, fine geometry included).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio.field_components.encodings import TriplaneEncoding

from s2nerf_ns.errors import InputError


def level_resolutions(num_levels: int, min_res: int, max_res: float) -> List[int]:
    """The resolution of every level of nerfstudio's ``HashEncoding``, computed as it does: ``floor(min_res b^l)``."""
    growth = np.exp((np.log(max_res) - np.log(min_res)) / (num_levels - 1)) if num_levels > 1 else 1
    return [int(r) for r in torch.floor(min_res * growth ** torch.arange(num_levels))]


def coarse_levels(num_levels: int, min_res: int, max_res: int, server_res: int) -> Tuple[int, float]:
    """(levels, finest resolution) of the server's grid: the full grid's levels whose resolution is at most
    ``server_res`` (at least the coarsest), ending at the last kept level's resolution (same growth, up to rounding)."""
    resolutions = level_resolutions(num_levels, min_res, max_res)
    kept = max(1, sum(1 for r in resolutions if r <= server_res))
    if kept == num_levels:
        return num_levels, float(max_res)
    return kept, float(resolutions[kept - 1]) if kept > 1 else float(min_res)


class FineGeometry(nn.Module):
    """CLIENT: ``p(x)``, the client's own log-density term from a tri-plane at the sample positions (zero at start)."""

    def __init__(self, resolution: int, features: int, bound: float) -> None:
        super().__init__()
        self.planes = TriplaneEncoding(resolution=resolution, num_components=features, init_scale=0.1, reduce="sum")
        self.out = nn.Linear(features, 1, bias=False)
        nn.init.zeros_(self.out.weight)  # the head starts as the plain one: fine geometry is learnt
        self.bound = float(bound)

    def forward(self, positions: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 1"]:
        x = (positions / self.bound).clamp(-1.0, 1.0)
        return self.out(self.planes(x.reshape(-1, 3))).reshape(*x.shape[:-1], 1)


GEOMETRY_KNOBS = {"client_geometry_resolution": 64, "client_geometry_features": 8, "client_geometry_server_res": 32}
"""The client-geometry knobs and their defaults (a knob that differs from its default counts as given)."""


def check_client_geometry(enabled: bool, knobs: Dict[str, int], min_res: int, max_res: int) -> None:
    """Fail closed, one line naming the flag: a knob without ``--pipeline.model.client-geometry True``, a size that
    is not positive, a server resolution under the grid's coarsest or at its finest (the server would keep every
    level: client geometry that hides nothing)."""
    flag = lambda name: "--pipeline.model." + name.replace("_", "-")  # noqa: E731
    given = [name for name, default in GEOMETRY_KNOBS.items() if knobs[name] != default]
    if not enabled and given:
        names = " and ".join(f"{flag(n)} {knobs[n]}" for n in given)
        raise InputError(f"{names} {'is a knob' if len(given) == 1 else 'are knobs'} of client geometry, which is "
                         f"off: add {flag('client_geometry')} True (or drop the knob)")
    for name in GEOMETRY_KNOBS:
        if knobs[name] <= 0:
            raise InputError(f"{flag(name)} {knobs[name]}: must be a positive number")
    if enabled and knobs["client_geometry_server_res"] < min_res:
        raise InputError(f"{flag('client_geometry_server_res')} {knobs['client_geometry_server_res']}: under the "
                         f"hash grid's coarsest resolution ({flag('min_res')} {min_res}); the server keeps at least "
                         "that level")
    if enabled and knobs["client_geometry_server_res"] >= max_res:
        raise InputError(f"{flag('client_geometry_server_res')} {knobs['client_geometry_server_res']}: the server "
                         f"would keep every level of the grid ({flag('max_res')} {max_res}), so client geometry would hide "
                         f"nothing; choose a resolution under {max_res}")
