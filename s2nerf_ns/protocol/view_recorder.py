"""SERVER SIDE: the server's own record of what it received, kept so that attacks can be replayed offline.

A curious server keeps what crosses: per training step, the rays it was sent, the sample spacing it chose, the
embeddings ``h`` it computed and the defended gradient it received, with the defense's public settings. This
module writes that stream (a :class:`~s2nerf_ns.protocol.channel.ServerView` per step, subsampled) to a folder
and reads it back as ``ServerView`` objects, so that an attack written later runs on an old run.

Bounded in size: a fixed number of rays per recorded step, chosen from a byte budget and the run's length
(:func:`rays_within_budget`); ``h`` in float16, the gradient in float16 scaled by its step's largest magnitude
(gradients are ~1e-8, below float16's range), rays and bin edges in float32. Sample positions are not stored:
they are recomputed from the rays and bins exactly as the server computed them.

Folder layout: ``meta.json`` (format, sizes, the defense's public settings) and ``steps_<first step>.pt`` chunks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import torch
from torch import Tensor

from s2nerf_ns.protocol.channel import ServerView
from s2nerf_ns.protocol.rendering import samples_from_bins

FORMAT = "s2nerf-server-view/1"


def bytes_per_ray(num_samples: int, dim: int) -> int:
    """Stored bytes of one ray: h and gradient (float16), bin edges, origin and direction (float32), indices."""
    return 2 * 2 * num_samples * dim + 4 * (num_samples + 1) + 4 * 6 + 4 * 3


def rays_within_budget(max_mb: float, steps: int, every: int, num_samples: int, dim: int, rays_per_batch: int) -> int:
    """Rays recorded per recorded step so that the whole run fits in ``max_mb`` MiB (at most the batch); 0 when not
    even one ray per recorded step fits."""
    recorded_steps = max(1, -(-steps // every))
    fits = int(max_mb * 2**20 // (recorded_steps * bytes_per_ray(num_samples, dim)))
    return min(fits, rays_per_batch)


class ServerViewRecorder:
    """A channel observer that writes a subsample of every ``every``-th step's :class:`ServerView` to ``folder``."""

    def __init__(self, folder: Path, rays_per_step: int, every: int = 1, chunk_steps: int = 50, seed: int = 0,
                 meta: Optional[Dict[str, object]] = None) -> None:
        if rays_per_step < 1 or every < 1 or chunk_steps < 1:
            raise ValueError("rays_per_step, every and chunk_steps must be positive")
        self.folder = Path(folder)
        self.rays_per_step, self.every, self.chunk_steps = rays_per_step, every, chunk_steps
        self.generator = torch.Generator().manual_seed(seed)  # the server's own choice of rays to keep
        self.meta = dict(meta or {})
        self._pending: List[Dict[str, Tensor]] = []
        self._defense: Dict[str, object] = {}

    def __call__(self, view: ServerView) -> None:
        if view.step % self.every:
            return
        num_rays = view.h.shape[0]
        keep = torch.randperm(num_rays, generator=self.generator)[: self.rays_per_step].sort().values.to(view.h.device)
        grad = view.grad[keep].detach().float()
        scale = grad.abs().max().clamp_min(1e-38)
        self._pending.append({
            "step": torch.tensor(view.step), "batch_rays": torch.tensor(view.batch_rays or num_rays),
            "ray_indices": view.ray_indices[keep].int().cpu(),
            "origins": view.origins[keep].float().cpu(), "directions": view.directions[keep].float().cpu(),
            "bins": view.bins[keep].float().cpu(), "h": view.h[keep].detach().half().cpu(),
            "grad": (grad / scale).half().cpu(), "grad_scale": scale.cpu(),
        })
        self._defense = dict(view.defense)
        if len(self._pending) >= self.chunk_steps:
            self.flush()

    def flush(self) -> None:
        """Write the pending steps as one chunk, and ``meta.json``."""
        if not self._pending:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        first = int(self._pending[0]["step"])
        chunk = {key: torch.stack([p[key] for p in self._pending]) for key in self._pending[0]}
        torch.save(chunk, self.folder / f"steps_{first:07d}.pt")
        self._pending = []
        meta = {"format": FORMAT, "rays_per_step": self.rays_per_step, "every": self.every,
                "dtypes": {"h": "float16", "grad": "float16 times grad_scale (per step)", "rays": "float32"},
                "defense": self._defense, **self.meta}
        (self.folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str))


def read_server_views(folder: Path, device: str = "cpu") -> Iterator[ServerView]:
    """The recorded steps of ``folder``, in step order, as ServerViews (h and gradient back in float32)."""
    folder = Path(folder)
    meta_file = folder / "meta.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{folder}: no recorded server view (meta.json missing)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_file}: format {meta.get('format')!r}, expected {FORMAT!r}")
    for path in sorted(folder.glob("steps_*.pt")):
        chunk = torch.load(path, map_location=device, weights_only=True)
        for i in range(len(chunk["step"])):
            origins, directions, bins = chunk["origins"][i], chunk["directions"][i], chunk["bins"][i]
            positions = samples_from_bins(origins, directions, bins).frustums.get_positions()
            yield ServerView(step=int(chunk["step"][i]), ray_indices=chunk["ray_indices"][i].long(), origins=origins,
                             directions=directions, positions=positions, bins=bins, h=chunk["h"][i].float(),
                             grad=chunk["grad"][i].float() * chunk["grad_scale"][i], defense=dict(meta["defense"]),
                             batch_rays=int(chunk["batch_rays"][i]))
