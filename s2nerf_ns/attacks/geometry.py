"""SERVER SIDE (attacker): the geometry attacks. The server trains, and holds, the density field: what it gives away.

**Density read-out** (:class:`DensityReadout`). When the client keeps appearance (its tri-plane) and only the last
density layer, that layer is one linear map ``w`` of ``h`` (no bias: :func:`~s2nerf_ns.protocol.cut.linear_stack`)
and the density is ``sigma = trunc_exp(w . h)`` (:class:`~s2nerf_ns.protocol.client.ClientHead`). Every gradient row
the server receives is then ``dL/dh_i = (dL/dsigma_i) * sigma_i * w``: parallel to ``w``. So

1. the direction: ``u`` = the top eigenvector of the Gram matrix ``sum g_i g_i^T`` of the received rows (a ``D x D``
   matrix, exponentially forgetting old steps since ``w`` moves during training). Isotropic noise on the rows adds
   a multiple of the identity and leaves ``u`` unchanged; the eigen-gap ``1 - lambda_2 / lambda_1`` is reported as
   the read-out's confidence;
2. the support depth: along a training ray, ``(g_i . u)^2`` is ``(dL/dsigma_i sigma_i)^2 |w|^2``: non-zero in
   front of and at the surface, zero behind it (no transmittance left), weight-like (``sigma_i delta_i T_i``). Its
   mean sample distance is a depth estimate on every training ray, with no ground truth. Under noise on the rows,
   only samples well above the step's noise energy per direction (measured off ``u``) count, less that energy;
3. sign and scale: ``sigma = exp(s * a * u . h)`` with ``s = +-1``, ``a > 0``. From the gradients alone:
   ``log |g_i . u| = s a (u . h_i) + log |dL/dsigma_i| + log |w|``, and in front of the surface (transmittance about
   1) ``dL/dsigma_i / delta_i`` changes little along a ray, so ``s a`` is the slope of ``log(|g_i . u| / delta_i)``
   against ``u . h_i``, fitted with one intercept per ray over those samples (default). Or
   (``scale_from="support"``, and the fallback) chosen from a log-spaced grid (then refined) so that the expected
   depth ``sum w t / sum w`` rendered from that density along the training rays (the server's own fields,
   re-embedded) agrees best with the support depth, the same kind of weighted mean (median relative error; the
   agreement at the slope's scale is reported as ``fit_error``). The read-out's depth maps are composited like the
   colour (:func:`composited_depth`: the transmittance left sits at the last sample, whose colour the renderer
   shows).

Then depth and normals at any pose: the density goes through the protocol's one volume renderer, normals are
``-grad_x log sigma`` composited with the render weights (the server differentiates its own fields).

For other heads (density not linear in ``h``, or the rows not rank one) the read-out uses a fallback density, the
SMA surrogate's (``fallback``), if one is given; the support depth is still collected.

**Shading attack** (:func:`shade`): a colourless picture of that geometry, three grayscale channels: Lambertian
shading of the normals under a fixed light, a headlight term ``|n . d|`` and a depth cue. Scored like the colour
attacks (one scene colour map mixes the channels), so it competes in the best-of that defines ``leakage_*``.

Everything here reads only :class:`~s2nerf_ns.protocol.channel.ServerView` (rays, h, received gradient) and the
server's own fields; state lives in buffers (saved with a checkpoint; ``ns-eval`` renders the same read-out).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Literal, Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

from s2nerf_ns.protocol.channel import ServerView
from s2nerf_ns.protocol.rendering import VolumeRenderer, samples_from_bins

Embed = Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]
"""(origins [R, 3], directions [R, 3]) -> (h [R, S, D], bins [R, S+1]): the server's own fields on any rays."""
Field = Callable[[Tensor], Tensor]
"""positions [..., 3] -> h [..., D]: the server's own field (differentiable in the positions)."""
Density = Callable[[Tensor], Tensor]
"""h [..., D] -> density [..., 1]."""

MAX_LOG_DENSITY = 30.0
"""The read-out's log density is clamped here (exp(30) is opaque at any sample spacing; avoids inf)."""


def is_linear_density_head(head_kwargs: Dict[str, float]) -> bool:
    """Public protocol knowledge: the client's density is ``trunc_exp(w . h)`` and its gradient rows are rank one
    (client appearance, so no geometry features, and exactly one client density layer)."""
    appearance = head_kwargs.get("appearance_resolution", 0) > 0 and head_kwargs.get("appearance_features", 0) > 0
    client_layers = int(head_kwargs.get("num_density_layers", 2)) - int(head_kwargs.get("cut_depth", 1))
    return bool(appearance and client_layers == 1)


class DensityReadout(nn.Module):
    """The server's read-out of the client's density (see the module docstring).

    Args:
        embed_dim: width ``D`` of ``h``.
        linear: whether the client's density is linear in ``h`` (:func:`is_linear_density_head`).
        gram_decay: per-step forgetting factor of the Gram matrix (``w`` moves during training).
        ray_buffer: training rays kept (the most recent) with their support depth, for the scale search.
        rays_per_step: at most this many rays of each step enter the buffer.
        support_threshold: a sample supports the depth only where its energy along ``u`` exceeds this many times the
            step's noise energy per direction (estimated off ``u``); 9 = three standard deviations.
        scale_from: ``"slope"``: sign and scale from the log-gradient slope (step 3 of the module docstring);
            ``"support"``: from the grid search against the support depth (also the fallback without a slope).
        seed: seed of the per-step ray subsampling.
    """

    def __init__(self, embed_dim: int, linear: bool = True, gram_decay: float = 0.9, ray_buffer: int = 8192,
                 rays_per_step: int = 512, support_threshold: float = 9.0,
                 scale_from: Literal["slope", "support"] = "slope", seed: int = 0) -> None:
        super().__init__()
        if not 0 < gram_decay <= 1:
            raise ValueError(f"gram_decay must be in (0, 1], got {gram_decay}")
        self.embed_dim, self.linear, self.gram_decay = int(embed_dim), bool(linear), float(gram_decay)
        self.rays_per_step, self.support_threshold = int(rays_per_step), float(support_threshold)
        if scale_from not in ("slope", "support"):
            raise ValueError(f"scale_from must be 'slope' or 'support', got {scale_from!r}")
        self.scale_from = scale_from
        self.renderer = VolumeRenderer("last_sample")
        self.fallback: Optional[Density] = None
        """Density for heads that are not linear in h (e.g. the SMA surrogate's head), set by whoever builds it."""
        self._gen = torch.Generator().manual_seed(seed)
        self.register_buffer("gram", torch.zeros(embed_dim, embed_dim, dtype=torch.float64))
        self.register_buffer("rows", torch.zeros((), dtype=torch.float64))  # decayed number of rows in the Gram
        self.register_buffer("ray_data", torch.zeros(ray_buffer, 8))  # origin, direction, support depth, energy
        self.register_buffer("ray_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("fitted_at", torch.full((), -1, dtype=torch.long))
        self.register_buffer("tracked", torch.ones(embed_dim) / embed_dim**0.5)  # u with one sign across steps
        self.register_buffer("slope_num", torch.zeros((), dtype=torch.float64))  # log-gradient slope statistics
        self.register_buffer("slope_den", torch.zeros((), dtype=torch.float64))
        self.register_buffer("direction", torch.zeros(embed_dim))
        self.register_buffer("scale", torch.ones(()))  # s * a: log sigma = scale * (direction . h)
        self.register_buffer("confidence", torch.zeros(()))  # eigen-gap 1 - lambda_2 / lambda_1
        self.register_buffer("fit_error", torch.full((), math.nan))  # median rel. error vs the support depth
        self.register_buffer("depth_scale", torch.ones(()))  # 95th percentile of the support depth (shading)

    # ----------------------------------------------------------------------------------------------- observing
    def eigen(self) -> Tuple[Tensor, Tensor, float]:
        """(top eigenvector of the Gram matrix, eigen-gap, noise energy per direction and row)."""
        evals, evecs = torch.linalg.eigh(self.gram.cpu())
        top = float(evals[-1].clamp_min(1e-300))
        gap = 1.0 - float(evals[-2].clamp_min(0)) / top if len(evals) > 1 else 1.0
        noise = float(evals[:-1].clamp_min(0).mean()) / max(float(self.rows), 1.0) if len(evals) > 1 else 0.0
        return evecs[:, -1].float(), torch.tensor(gap), noise

    @torch.no_grad()
    def observe(self, view: ServerView) -> None:
        """Channel-observer form: one training step's rays, bins, embeddings and received gradient."""
        g = view.grad.detach().float()
        if g.dim() != 3 or g.shape[-1] != self.embed_dim:
            raise ValueError(f"expected gradients of shape [R, S, {self.embed_dim}], got {tuple(g.shape)}")
        flat = g.reshape(-1, self.embed_dim)
        self.gram.mul_(self.gram_decay).add_((flat.T @ flat).to(self.gram))  # on the gradients' device
        self.rows.mul_(self.gram_decay).add_(float(flat.shape[0]))
        self.steps_seen += 1
        u = self.eigen()[0].to(g)
        if float(u @ self.tracked.to(u)) < 0:  # one sign across steps (an eigenvector's sign is arbitrary)
            u = -u
        self.tracked.copy_(u.to(self.tracked))
        along = (g @ u) ** 2  # [R, S]
        # this step's noise energy per direction: what a typical row (the median) holds off u, over D - 1 directions
        noise = float(((g * g).sum(-1) - along).median().clamp_min(0)) / max(self.embed_dim - 1, 1)
        energy = torch.where(along > self.support_threshold * noise, along - noise, torch.zeros_like(along))
        bins = view.bins.detach().to(g)
        total = energy.sum(1)
        depth = (energy * (bins[:, 1:] + bins[:, :-1]) / 2).sum(1) / total.clamp_min(1e-30)
        if self.linear:
            self._accumulate_slope(g @ u, view.h.detach().float() @ u, bins, energy > 0)
        idx = (total > 0).nonzero()[:, 0].cpu()
        n = len(self.ray_data)
        idx = idx[torch.randperm(len(idx), generator=self._gen)[: min(self.rays_per_step, n)]].to(g.device)
        if len(idx) == 0:
            return
        new = torch.cat([view.origins.detach()[idx].to(g), view.directions.detach()[idx].to(g), depth[idx, None],
                         total[idx, None]], dim=1)
        pos = (int(self.ray_count) + torch.arange(len(idx))) % n  # a ring: the most recent rays
        self.ray_data[pos.to(self.ray_data.device)] = new.to(self.ray_data)
        self.ray_count += len(idx)

    def _accumulate_slope(self, proj: Tensor, x: Tensor, bins: Tensor, strong: Tensor) -> None:
        """Sufficient statistics of ``log |g_i . u| - log delta_i = slope * (u . h_i) + c_ray``, fitted per ray (a
        fixed effect per ray) over the samples in front of the gradient's peak (free space, where the transmittance
        is about 1 and ``dL/dsigma_i / delta_i`` varies little), that stand out of the noise, and (once there is an
        estimate) where ``|slope * u . h| < 15`` (the client's ``trunc_exp`` clips its backward pass there)."""
        samples = torch.arange(proj.shape[1], device=proj.device)[None]
        mask = strong & (samples <= proj.abs().argmax(1, keepdim=True))
        if float(self.slope_den) > 0:
            mask &= (float(self.slope_num / self.slope_den) * x).abs() < 15
        y = torch.log(proj.abs().clamp_min(1e-30)) - torch.log((bins[:, 1:] - bins[:, :-1]).clamp_min(1e-12))
        m = mask.float()
        count = m.sum(1, keepdim=True)
        m = m * (count >= 2)
        xm = (x * m).sum(1, keepdim=True) / count.clamp_min(1)
        ym = (y * m).sum(1, keepdim=True) / count.clamp_min(1)
        num, den = float((m * (x - xm) * (y - ym)).sum()), float((m * (x - xm) ** 2).sum())
        self.slope_num.mul_(self.gram_decay).add_(num)
        self.slope_den.mul_(self.gram_decay).add_(den)

    # ------------------------------------------------------------------------------------------------- fitting
    @property
    def is_fitted(self) -> bool:
        return int(self.fitted_at) >= 0

    @property
    def is_stale(self) -> bool:
        return int(self.fitted_at) != int(self.steps_seen)

    def buffered_rays(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """(origins, directions, support depth, support energy) of the buffered training rays."""
        data = self.ray_data[: min(int(self.ray_count), len(self.ray_data))]
        return data[:, :3], data[:, 3:6], data[:, 6], data[:, 7]

    def log_density(self, h: Float[Tensor, "*bs D"], scale: Optional[Tensor] = None) -> Float[Tensor, "*bs"]:
        s = self.scale if scale is None else scale
        return (s * (h @ self.direction.to(h))).clamp(max=MAX_LOG_DENSITY)

    def density(self, h: Float[Tensor, "*bs D"]) -> Float[Tensor, "*bs 1"]:
        """The read-out density (or the fallback's, for heads not linear in h)."""
        if not self.linear:
            if self.fallback is None:
                raise RuntimeError("this client head's density is not linear in h: set DensityReadout.fallback")
            return self.fallback(h)
        return torch.exp(self.log_density(h))[..., None]

    def _render(self, density: Density, h: Tensor, origins: Tensor, directions: Tensor, bins: Tensor
                ) -> Dict[str, Tensor]:
        return render_density(self.renderer, density, h, origins, directions, bins)

    @torch.no_grad()
    def fit(self, embed: Embed, grid: int = 49, refine: int = 20, max_rays: int = 4096) -> "DensityReadout":
        """Direction from the Gram matrix; sign and scale from the log-gradient slope (or from the support depth of
        the buffered training rays, rendered through the server's current fields, ``embed``)."""
        if int(self.steps_seen) == 0 or int(self.ray_count) == 0:
            raise RuntimeError("DensityReadout.fit needs observed gradients (call observe first)")
        u, gap, _ = self.eigen()
        u = -u if float(u @ self.tracked.to(u)) < 0 else u
        dev = self.direction.device
        self.direction.copy_(u.to(dev))
        self.confidence.copy_(gap.to(self.confidence))
        origins, directions, support, energy = self.buffered_rays()
        order = torch.argsort(energy, descending=True)[:max_rays]  # the rays with the strongest support
        origins, directions, support = origins[order], directions[order], support[order]
        self.depth_scale.fill_(float(torch.quantile(support, 0.95)))
        h, bins = embed(origins.to(dev), directions.to(dev))
        h, bins = h.detach(), bins.detach()
        support = support.to(h.device)
        o, d = origins.to(h.device), directions.to(h.device)
        if not self.linear:
            if self.fallback is not None:
                depth = self._render(self.fallback, h, o, d, bins)["expected_depth"][:, 0]
                self.fit_error.fill_(float(((depth - support).abs() / support.clamp_min(1e-6)).median()))
            self.fitted_at.copy_(self.steps_seen)
            return self
        proj = h @ self.direction.to(h)
        spread = float(proj.std().clamp_min(1e-12))
        if self.scale_from == "slope" and float(self.slope_den) > 0:
            self.scale.fill_(float(self.slope_num / self.slope_den))
            self.fit_error.fill_(self._support_error(float(self.scale), proj, h, o, d, bins, support))
            self.fitted_at.copy_(self.steps_seen)
            return self

        def error(scale: float) -> float:
            return self._support_error(scale, proj, h, o, d, bins, support)

        candidates = [s * 10**e for s in (1.0, -1.0) for e in torch.linspace(-1.5, 2.5, grid).tolist()]
        scored = [(error(c / spread), c) for c in candidates]  # a * spread from 0.03 to 300
        best_err, best = min(scored)
        lo, hi = math.log10(abs(best)) - 4.0 / (grid - 1), math.log10(abs(best)) + 4.0 / (grid - 1)
        sign = math.copysign(1.0, best)
        for _ in range(refine):  # golden-section search in log scale around the best grid point
            a, b = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
            if error(sign * 10**a / spread) <= error(sign * 10**b / spread):
                hi = b
            else:
                lo = a
        mid = sign * 10 ** ((lo + hi) / 2)
        final_err = error(mid / spread)
        if final_err > best_err:
            mid, final_err = best, best_err
        self.scale.fill_(mid / spread)
        self.fit_error.fill_(final_err)
        self.fitted_at.copy_(self.steps_seen)
        return self

    def _support_error(self, scale: float, proj: Tensor, h: Tensor, origins: Tensor, directions: Tensor, bins: Tensor,
                       support: Tensor) -> float:
        """Median relative difference of the expected depth of ``log sigma = scale * proj`` and the support depth."""
        log_sigma = (scale * proj).clamp(max=MAX_LOG_DENSITY)
        out = self._render(lambda hh: torch.exp(log_sigma)[..., None], h, origins, directions, bins)
        return float(((out["expected_depth"][:, 0] - support).abs() / support.clamp_min(1e-6)).median())

    # ----------------------------------------------------------------------------------------------- rendering
    def render(self, h: Float[Tensor, "R S D"], origins: Float[Tensor, "R 3"], directions: Float[Tensor, "R 3"],
               bins: Float[Tensor, "R S_plus_1"], field: Optional[Field] = None) -> Dict[str, Tensor]:
        """Depth [R, 1] (:func:`composited_depth`), accumulation [R, 1] and (with the server's ``field``) world
        normals [R, 3] of any rays."""
        if not self.is_fitted:
            raise RuntimeError("DensityReadout.render needs a fitted read-out (call fit first)")
        with torch.no_grad():
            out = self._render(self.density, h.detach(), origins, directions, bins)
        result = {"depth": out["depth"], "accumulation": out["accumulation"]}
        if field is not None:
            result["normal"] = self.normals(field, origins, directions, bins, out["weights"])
        return result

    def normals(self, field: Field, origins: Tensor, directions: Tensor, bins: Tensor, weights: Tensor) -> Tensor:
        """``-grad_x log sigma`` at the samples, composited with the render weights, normalised: [R, 3]."""
        positions = samples_from_bins(origins, directions, bins).frustums.get_positions().detach()
        with torch.enable_grad():
            x = positions.requires_grad_(True)
            h = field(x)
            log_sigma = self.log_density(h) if self.linear else torch.log(self.density(h)[..., 0].clamp_min(1e-30))
            grad = torch.autograd.grad(log_sigma.sum(), x)[0]
        n = -(weights.detach() * nn.functional.normalize(grad, dim=-1)).sum(1)
        return nn.functional.normalize(n, dim=-1)


def composited_depth(depth: Float[Tensor, "R 1"], accumulation: Float[Tensor, "R 1"],
                     bins: Float[Tensor, "R S_plus_1"]) -> Float[Tensor, "R 1"]:
    """Depth composited like the colour: the protocol's renderer shows the last sample's colour through the
    transmittance left (``background_color="last_sample"``), so that remainder sits at the last sample's distance:
    ``sum_i w_i t_i + (1 - sum_i w_i) t_last`` (nerfstudio's expected depth is ``sum_i w_i t_i / sum_i w_i``). In a
    room the far walls are at the scene box, where the rays end: they are often rendered through that remainder."""
    last = (bins[:, -2:-1] + bins[:, -1:]) / 2
    acc = accumulation.clamp(0, 1)
    return depth * acc + (1 - acc) * last


def render_density(renderer: VolumeRenderer, density: Density, h: Tensor, origins: Tensor, directions: Tensor,
                   bins: Tensor) -> Dict[str, Tensor]:
    """Weights, accumulation, the expected depth ``sum w t / sum w`` and the :func:`composited_depth` (``depth``) of a
    density along rays, through the protocol's one volume renderer."""
    head = lambda hh, dd: (density(hh), torch.zeros(*hh.shape[:-1], 3, device=hh.device))  # noqa: E731
    out = renderer(head, h, origins, directions, bins)
    out["expected_depth"] = out["depth"]
    out["depth"] = composited_depth(out["depth"], out["accumulation"], bins)
    return out


LIGHT = (0.3, -0.5, 0.8)
"""The shading attack's fixed light direction (world frame; the built-in rooms have +z up)."""


def shade(normals: Float[Tensor, "R 3"], directions: Float[Tensor, "R 3"], depth: Float[Tensor, "R 1"],
          depth_scale: float) -> Float[Tensor, "R 3"]:
    """The shading attack's picture of the geometry, three grayscale channels in [0, 1]: Lambertian shading under
    the fixed :data:`LIGHT`, the headlight term ``|n . d|`` and a depth cue ``1 - depth / (2 depth_scale)``."""
    light = nn.functional.normalize(torch.tensor(LIGHT, device=normals.device, dtype=normals.dtype), dim=0)
    lambert = (normals @ light).clamp_min(0)
    headlight = (normals * directions).sum(-1).abs()
    cue = (1 - depth[:, 0] / (2 * max(depth_scale, 1e-6))).clamp(0, 1)
    return torch.stack([0.1 + 0.9 * lambert, headlight, cue], dim=-1).clamp(0, 1)


class HeadDensity:
    """The density of a client-head architecture (e.g. the SMA surrogate's): ``exp`` of its first density output
    (log density clamped at :data:`MAX_LOG_DENSITY`). A plain callable holding only the head."""

    def __init__(self, head: nn.Module) -> None:
        self.head = head

    def __call__(self, h: Tensor) -> Tensor:
        return self.head.density_layers(h)[..., :1].clamp(max=MAX_LOG_DENSITY).exp()


@torch.no_grad()
def surrogate_depth(head: nn.Module, renderer: VolumeRenderer, h: Tensor, origins: Tensor, directions: Tensor,
                    bins: Tensor) -> Tensor:
    """Depth [R, 1] (:func:`composited_depth`) rendered from a surrogate head's density (the SMA attacker's, or
    the floor's)."""
    return render_density(renderer, HeadDensity(head), h, origins, directions, bins)["depth"]
