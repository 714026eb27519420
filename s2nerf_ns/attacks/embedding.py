"""SERVER SIDE (attacker): the embedding attack, a gradient-free look at the server's own embeddings.

The server computes the per-sample embeddings ``h`` (hash grid + first density layer) and sends them to
the client. Nothing stops it from looking at them: project ``h`` on its first three principal components
and composite the projections along each ray, and the room appears in false colour. No gradient, no
surrogate, no label, no pixel of the client is involved.

:class:`EmbeddingAttack` reads ONLY what the server itself computes: the embeddings ``h`` (and, optionally,
per-sample compositing weights the server derives itself, e.g. from its surrogate head). Its PCA and its
normalisation statistics are fitted on a bounded uniform reservoir of the server's own ``h``; no image, no
ground truth and nothing of the client enters. Its whole state lives in buffers, so it is saved and
restored with a checkpoint (``state_dict`` round-trips exactly, including its random generator).

Use::

    attack = EmbeddingAttack(embed_dim=64)
    attack.observe(h)                         # every step, [R, S, D]; or attack.observe_view(server_view)
    rgb = attack.render(h_of_rays)            # [R, 3] in [0, 1]; refits the PCA if new h was observed

How a ray is composited (``weighting``):

- ``"uniform"`` (default): the plain mean of the sample projections along the ray. Simple, no
  assumptions; what the issue describes.
- explicit ``weights`` ([R, S, 1], e.g. the attacker surrogate's volume-rendering weights, which the
  server has): ``sum_i w_i p_i`` (a ray with opacity below 1 fades to the mean embedding, 0 after PCA).
- ``"self"``: first-hit weights derived from ``h`` itself, with no surrogate. Rays start in free space,
  so a sample's departure from the ray's entry code, ``d_i = ||h_i - h_0||``, measured in units of the
  ray's own noise scale ``nu`` (median step ``||h_i - h_{i-1}||``), flags the first surface:
  ``alpha_i = clamp(d_i / (threshold * nu) - 1, 0, 1)``, composited front to back,
  ``w_i = alpha_i * prod_{j<i} (1 - alpha_j)``. A heuristic: it needs surfaces that stand out from
  free space by more than ``threshold`` noise steps (on synthetic rays with a surface sample and an
  interior behind it, it recovers the surface code far better than the mean; on noisier rays it can lock
  onto the interior instead). The uniform mean makes no such assumption and stays the default.

The ``[0, 1]`` normalisation maps the ``quantile`` and ``1 - quantile`` quantiles of the composited
projections of the reservoir's rays to 0 and 1, per channel. The ray reservoir stores composites made
with the weighting used when observing, so observe and render with the same weighting.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from jaxtyping import Float
from torch import Tensor, nn

Weighting = Literal["uniform", "self"]


def self_weights(h: Float[Tensor, "R S D"], threshold: float = 1.5) -> Float[Tensor, "R S 1"]:
    """First-hit compositing weights from the embeddings alone (see the module docstring). Sum to 1.

    ``d_i = ||h_i - h_0||`` (departure from the ray's entry code), ``nu`` = the ray's median step
    ``||h_i - h_{i-1}||`` (its noise scale), ``alpha_i = clamp(d_i / (threshold * nu) - 1, 0, 1)``,
    composited front to back; the last sample takes whatever transmittance is left.
    """
    d = (h - h[:, :1]).norm(dim=-1)  # [R, S]
    if h.shape[1] > 1:
        nu = (h[:, 1:] - h[:, :-1]).norm(dim=-1).median(dim=1, keepdim=True).values.clamp_min(1e-12)
    else:
        nu = torch.ones_like(d[:, :1])
    alpha = (d / (threshold * nu) - 1).clamp(0, 1)
    alpha[:, -1] = 1.0
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], dim=1), dim=1)
    return (alpha * trans)[..., None]


class EmbeddingAttack(nn.Module):
    """PCA of the server's own embeddings, composited along rays into a false-colour image.

    Args:
        embed_dim: width ``D`` of ``h``.
        num_components: output channels (3 for an RGB picture).
        sample_reservoir: how many per-sample embeddings are kept for the PCA (uniform over everything
            observed: bottom-k of i.i.d. random keys).
        ray_reservoir: how many per-ray composites are kept for the normalisation statistics.
        weighting: default compositing when no weights are passed, ``"uniform"`` or ``"self"``.
        quantile: normalisation quantile (see the module docstring).
        threshold: surface threshold of the ``"self"`` weighting, in noise steps.
        seed: seed of the reservoir's random keys.
    """

    def __init__(
        self,
        embed_dim: int,
        num_components: int = 3,
        sample_reservoir: int = 16384,
        ray_reservoir: int = 8192,
        weighting: Weighting = "uniform",
        quantile: float = 0.01,
        threshold: float = 1.5,
        seed: int = 0,
    ):
        super().__init__()
        if weighting not in ("uniform", "self"):
            raise ValueError(f"unknown weighting {weighting!r}")
        self.embed_dim, self.num_components = int(embed_dim), int(num_components)
        self.weighting, self.quantile, self.threshold = weighting, float(quantile), float(threshold)
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("rng_state", gen.get_state())
        self.register_buffer("sample_keys", torch.full((sample_reservoir,), float("inf")))
        self.register_buffer("samples", torch.zeros(sample_reservoir, embed_dim))
        self.register_buffer("ray_keys", torch.full((ray_reservoir,), float("inf")))
        self.register_buffer("rays", torch.zeros(ray_reservoir, embed_dim + 1))  # [sum w h, sum w]
        self.register_buffer("num_samples_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_rays_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("fitted_at", torch.full((), -1, dtype=torch.long))  # num_samples_seen at fit
        self.register_buffer("mean", torch.zeros(embed_dim))
        self.register_buffer("components", torch.zeros(embed_dim, num_components))
        self.register_buffer("explained_variance", torch.zeros(num_components))
        self.register_buffer("lo", torch.zeros(num_components))
        self.register_buffer("hi", torch.ones(num_components))

    # ------------------------------------------------------------------------------------------ observing
    def _keys(self, n: int) -> Tensor:
        gen = torch.Generator()
        gen.set_state(self.rng_state.cpu())
        keys = torch.rand(n, generator=gen)
        self.rng_state.copy_(gen.get_state())
        return keys.to(self.sample_keys.device)

    @staticmethod
    def _merge(keys: Tensor, items: Tensor, new_keys: Tensor, new_items: Tensor) -> None:
        """Keep the ``len(keys)`` items with the smallest keys (a uniform sample of all items seen)."""
        cand = new_keys < keys.max()
        if not bool(cand.any()):
            return
        all_keys = torch.cat([keys, new_keys[cand]])
        all_items = torch.cat([items, new_items[cand]])
        idx = torch.topk(all_keys, len(keys), largest=False, sorted=False).indices
        keys.copy_(all_keys[idx])
        items.copy_(all_items[idx])

    def composite_weights(
        self, h: Float[Tensor, "R S D"], weights: Optional[Float[Tensor, "R S 1"]] = None
    ) -> Float[Tensor, "R S 1"]:
        """The weights used along each ray: ``weights`` if given, else the default ``weighting``."""
        if weights is not None:
            return weights.to(h).reshape(*h.shape[:2], 1)
        if self.weighting == "self":
            return self_weights(h, self.threshold)
        return torch.full_like(h[..., :1], 1.0 / h.shape[1])

    @torch.no_grad()
    def observe(self, h: Float[Tensor, "R S D"], weights: Optional[Float[Tensor, "R S 1"]] = None) -> None:
        """Add one batch of the server's embeddings (and optional compositing weights) to the reservoirs."""
        h = h.detach().to(device=self.samples.device, dtype=self.samples.dtype)
        if h.dim() != 3 or h.shape[-1] != self.embed_dim:
            raise ValueError(f"expected h of shape [R, S, {self.embed_dim}], got {tuple(h.shape)}")
        flat = h.reshape(-1, self.embed_dim)
        self._merge(self.sample_keys, self.samples, self._keys(flat.shape[0]), flat)
        w = self.composite_weights(h, weights)
        ray = torch.cat([(w * h).sum(1), w.sum(1)], dim=-1)
        self._merge(self.ray_keys, self.rays, self._keys(ray.shape[0]), ray)
        self.num_samples_seen += flat.shape[0]
        self.num_rays_seen += ray.shape[0]

    def observe_view(self, view: Any) -> None:
        """Channel-observer form: reads only ``view.h`` (e.g. a ``ServerView``), never anything else."""
        self.observe(view.h)

    # -------------------------------------------------------------------------------------------- fitting
    @property
    def is_fitted(self) -> bool:
        return int(self.fitted_at) >= 0

    @property
    def is_stale(self) -> bool:
        return int(self.fitted_at) != int(self.num_samples_seen)

    @torch.no_grad()
    def fit(self) -> "EmbeddingAttack":
        """PCA of the sample reservoir, then normalisation quantiles of the ray reservoir's projections."""
        x = self.samples[torch.isfinite(self.sample_keys)].to("cpu", torch.float64)
        rays = self.rays[torch.isfinite(self.ray_keys)].to("cpu", torch.float64)
        if x.shape[0] < 2 or rays.shape[0] < 1:
            raise RuntimeError("EmbeddingAttack.fit needs observed embeddings (call observe first)")
        mean = x.mean(0)
        cov = (x - mean).T @ (x - mean) / (x.shape[0] - 1)
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        k = min(self.num_components, self.embed_dim)
        comps = torch.zeros(self.embed_dim, self.num_components, dtype=torch.float64)
        var = torch.zeros(self.num_components, dtype=torch.float64)
        comps[:, :k] = evecs.flip(-1)[:, :k]
        var[:k] = evals.flip(-1)[:k].clamp_min(0)
        # deterministic sign: the largest-magnitude loading of each component is positive
        pivot = comps.abs().argmax(0)
        comps *= torch.where(comps[pivot, torch.arange(self.num_components)] < 0, -1.0, 1.0)
        proj = (rays[:, :-1] - rays[:, -1:] * mean) @ comps
        lo = torch.quantile(proj, self.quantile, dim=0)
        hi = torch.quantile(proj, 1 - self.quantile, dim=0)
        dev = self.mean.device
        self.mean.copy_(mean.to(dev))
        self.components.copy_(comps.to(dev))
        self.explained_variance.copy_(var.to(dev))
        self.lo.copy_(lo.to(dev))
        self.hi.copy_(hi.to(dev))
        self.fitted_at.copy_(self.num_samples_seen)
        return self

    # ------------------------------------------------------------------------------------------ rendering
    @torch.no_grad()
    def project(
        self, h: Float[Tensor, "R S D"], weights: Optional[Float[Tensor, "R S 1"]] = None
    ) -> Float[Tensor, "R C"]:
        """Composited principal-component coordinates of each ray (not normalised)."""
        h = h.detach().to(device=self.mean.device, dtype=self.mean.dtype)
        w = self.composite_weights(h, weights)
        return ((w * h).sum(1) - w.sum(1) * self.mean) @ self.components

    @torch.no_grad()
    def render(
        self, h: Float[Tensor, "R S D"], weights: Optional[Float[Tensor, "R S 1"]] = None, refit: bool = True
    ) -> Float[Tensor, "R C"]:
        """False-colour image of the rays, ``[R, num_components]`` in ``[0, 1]`` on the module's device.

        Fits first if never fitted, and refits when new embeddings were observed since (``refit``).
        """
        if not self.is_fitted or (refit and self.is_stale):
            self.fit()
        p = self.project(h, weights)
        span = self.hi - self.lo
        out = ((p - self.lo) / span.clamp_min(1e-12)).clamp(0, 1)
        return torch.where(span > 1e-12, out, torch.full_like(out, 0.5))  # a flat channel renders mid-gray

    def forward(self, h: Float[Tensor, "R S D"], weights: Optional[Float[Tensor, "R S 1"]] = None) -> Tensor:
        return self.render(h, weights)
