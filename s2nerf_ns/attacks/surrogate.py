"""SERVER SIDE (attacker): the surrogate model attack (SMA) of a curious server.

The attacker is built from what the server legitimately knows: the shape of the training images (the
cameras it was sent), the client head's *architecture* (not its weights) and, every step, the
:class:`~s2nerf_ns.protocol.channel.ServerView` handed out by the gradient channel's observer interface:
rays, sample positions and spacing, ``h`` and the defended gradient. It never receives pixels, client
weights or the client's loss.

Two ways to update the dummy pixels:

* ``sgd`` (the paper): dummy pixels are parameters, trained by ``L_surr = lambda_g * rho * L_g + L_dummy``.
* ``solve`` (ours): per ray, the gradient the client sent is linear in the ray's colour residual
  ``e = d L / d rgb``: ``g_r = J_r^T e_r`` with ``J_r = d rgb_r / d h_r``. Given the surrogate's Jacobian
  the attacker solves that 3-unknown least-squares problem in closed form, reads the implied pixel
  ``rgb'_r - e_r * 3N/2`` and writes it into the dummy image. The surrogate is trained to explain the
  received gradients (``L_g``, scale-free) and to render the dummies (``L_dummy``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from typing import Callable, Deque, Dict, Literal, Optional, Type

import torch
from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio.configs.base_config import InstantiateConfig

from s2nerf_ns.attacks import adaptive as known
from s2nerf_ns.protocol.channel import ServerView
from s2nerf_ns.protocol.client import ClientHead
from s2nerf_ns.protocol.rendering import BackgroundColor, VolumeRenderer, samples_from_bins


@dataclass
class SurrogateAttackConfig(InstantiateConfig):
    """Surrogate model attack options. The literal reference settings are the named config :meth:`paper`
    (``--pipeline.attack.preset paper`` on the command line)."""

    _target: Type = field(default_factory=lambda: SurrogateAttacker)
    preset: Literal["engineered", "paper"] = "engineered"
    """engineered: the settings that make the attack work here; paper: lambda_g=1e-2 with the rho balance,
    10/t decay, random dummy init, MSE gradient distance, SGD dummies, one attacker step per victim step (every
    one of these options not given on the command line takes the paper's value; one given keeps its value)."""
    dummy_update: Literal["sgd", "solve"] = "solve"
    """How dummy pixels are updated: trained parameters (paper) or closed-form per-ray solve (see module doc)."""
    gradient_distance: Literal["mse", "cosine", "row-cosine"] = "cosine"
    """L_g: MSE (paper), cosine distance per ray, or cosine per sample row."""
    lambda_g: float = 1.0
    """Weight of the gradient-matching loss (paper: 1e-2). 0 is the no-gradient ablation: the received
    gradients are then not used at all (no L_g, no solve)."""
    rho_steps: int = 100
    """rho = mean(L_dummy / L_g) over this many first attacker steps, then frozen (only used with mse)."""
    lr: float = 1e-3
    """Surrogate learning rate."""
    dummy_lr: float = 1e-1
    """Dummy-pixel learning rate (sgd dummies)."""
    lr_decay: Literal["none", "10/t", "0.1^(t/T)", "0.001^(t/T)"] = "none"
    """Attacker learning-rate schedule (t: attacker step, T: attacker steps in the run)."""
    dummy_init: Literal["gray", "random"] = "gray"
    """Initial dummy pixels: 0.5 everywhere, or uniform random (paper)."""
    solve_momentum: float = 0.5
    """solve: new dummy = momentum * old + (1 - momentum) * implied pixel (for pixels seen before)."""
    attacker_steps_per_victim_step: int = 1
    """Attacker updates per received gradient (the extra ones replay earlier steps)."""
    replay_steps: int = 0
    """Attacker-only epochs after training: steps replaying the recorded (rays, h, g) transcript."""
    replay_buffer_rays: int = 65536
    """Rays kept (float16, random subset of each step) for replay."""
    seed: int = 1234
    """The attacker's own seed (surrogate initialisation, replay sampling)."""
    adaptive: bool = False
    """Know the defense (its public configuration, which the channel hands over with every step): weight each step's
    gradient matching by its expected signal fraction, replace the solve momentum by a precision-weighted average
    of the observations of a pixel (a per-pixel Kalman filter: each implied pixel weighted by the inverse of its
    known noise variance), and ignore the entries that partial noise fills (where h is 0)."""
    adaptive_model_variance: float = 1e-3
    """adaptive: variance (pixel units^2) of the surrogate's own read-out error, added to the defense's noise
    variance of every observation (keeps clean steps from getting infinite weight)."""
    adaptive_drift_variance: float = 1e-3
    """adaptive: variance (pixel units^2) added to a pixel's estimate between observations, because the surrogate
    that reads it keeps changing: old observations fade (with no defense noise this is close to the momentum)."""

    @classmethod
    def paper(cls, **overrides) -> "SurrogateAttackConfig":
        """The named config of the paper's literal settings (:data:`PAPER`), with ``overrides`` (kept as given)."""
        return cls(**{**PAPER, **overrides})

    def __post_init__(self) -> None:
        if self.preset == "paper":  # the command line's preset, resolved once: what was left at its default
            defaults = {f.name: f.default for f in fields(self)}
            for name, value in PAPER.items():
                if getattr(self, name) == defaults[name]:
                    setattr(self, name, value)
        if self.lambda_g < 0:
            raise ValueError(f"lambda_g must be >= 0, got {self.lambda_g}")
        if self.attacker_steps_per_victim_step < 1 or self.replay_steps < 0:
            raise ValueError("attacker_steps_per_victim_step must be >= 1 and replay_steps >= 0")
        if not 0 <= self.solve_momentum < 1:
            raise ValueError(f"solve_momentum must be in [0, 1), got {self.solve_momentum}")
        if not (self.adaptive_model_variance > 0 and self.adaptive_drift_variance >= 0):
            raise ValueError("adaptive_model_variance must be > 0 and adaptive_drift_variance >= 0")


PAPER: Dict[str, object] = dict(dummy_update="sgd", gradient_distance="mse", lambda_g=1e-2, lr_decay="10/t",
                                dummy_init="random", lr=1e-2, dummy_lr=1e-2, attacker_steps_per_victim_step=1,
                                replay_steps=0)
"""The paper's literal attack settings (``SurrogateAttackConfig.paper()``, ``--pipeline.attack.preset paper``)."""


class SurrogateAttacker(nn.Module):
    """The curious server's reconstruction machinery. Holds no reference to the client or its images.

    Built from public protocol knowledge only: image sizes (the cameras the server was sent), the client
    head's architecture and the renderer's background option; ``max_steps`` is the attacker's schedule length.
    """

    config: SurrogateAttackConfig

    def __init__(
        self,
        config: SurrogateAttackConfig,
        num_images: int,
        image_height: int,
        image_width: int,
        head_kwargs: Dict[str, int],
        background_color: BackgroundColor,
        max_steps: int,
    ) -> None:
        super().__init__()
        self.config = config
        self.max_steps = max(int(max_steps), 1)
        self.renderer = VolumeRenderer(background_color)  # the protocol's renderer, as the client uses it
        gen = torch.Generator().manual_seed(config.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.head = ClientHead(**head_kwargs)
        if config.dummy_init == "gray":
            init = torch.full((num_images, image_height, image_width, 3), 0.5)
        else:
            init = torch.rand((num_images, image_height, image_width, 3), generator=gen)
        self.dummy = nn.Parameter(init)
        self.register_buffer("seen", torch.zeros(num_images, image_height, image_width, dtype=torch.bool))
        if config.adaptive:  # variance of each dummy pixel's estimate (unseen: huge)
            self.register_buffer("variance", torch.full((num_images, image_height, image_width), 1e12))
            self.register_buffer("estimate", init.clone())  # unclamped running estimate (averaging clamped reads biases)
        self._public: Dict[str, object] = {}
        self.register_buffer("rho", torch.tensor(1.0))
        self.register_buffer("step_count", torch.tensor(0, dtype=torch.long))
        self._rho_sum, self._rho_n = 0.0, 0
        self._gen = gen
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.leak_optimizer: Optional[torch.optim.Optimizer] = None
        self.replay: Deque[Dict[str, Tensor]] = deque()
        self._replay_rays = 0
        self.last_stats: Dict[str, float] = {}

    # ------------------------------------------------------------------ optimiser and schedule
    def _opt(self) -> torch.optim.Optimizer:
        if self.optimizer is None:
            groups = [{"params": list(self.head.parameters()), "lr": self.config.lr, "base_lr": self.config.lr}]
            if self.config.dummy_update == "sgd":
                groups.append({"params": [self.dummy], "lr": self.config.dummy_lr, "base_lr": self.config.dummy_lr})
            self.optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
        return self.optimizer

    def lr_factor(self, t: int) -> float:
        decay, total = self.config.lr_decay, self.max_steps
        if decay == "10/t":
            return min(1.0, 10.0 / max(t, 1))
        if decay == "0.1^(t/T)":
            return 0.1 ** min(t / total, 1.0)
        if decay == "0.001^(t/T)":
            return 0.001 ** min(t / total, 1.0)
        return 1.0

    # ------------------------------------------------------------------ observer interface
    def observe(self, view: ServerView) -> None:
        """Called by the gradient channel with what the server saw in one training step."""
        batch = self._as_batch(view)
        self._public = dict(view.defense)
        self._remember(batch)
        self.attack_step(batch)
        for _ in range(self.config.attacker_steps_per_victim_step - 1):
            if self.replay:
                self.attack_step(self.sample_replay(len(batch["h"])))

    @staticmethod
    def _as_batch(view: ServerView) -> Dict[str, Tensor]:
        batch = {"h": view.h, "grad": view.grad, "origins": view.origins, "directions": view.directions,
                 "bins": view.bins, "ray_indices": view.ray_indices,
                 "victim_step": torch.full((len(view.h),), int(view.step), dtype=torch.long, device=view.h.device)}
        if getattr(view, "batch_rays", None):  # a recorded subset of the victim's batch
            batch["grad_scale"] = torch.tensor(float(view.batch_rays))
        return batch

    def _remember(self, batch: Dict[str, Tensor]) -> None:
        if self.config.replay_buffer_rays <= 0 or (self.config.replay_steps == 0
                                                   and self.config.attacker_steps_per_victim_step == 1):
            return
        n = len(batch["h"])
        keep = min(n, max(self.config.replay_buffer_rays // 64, 1))
        idx = torch.randperm(n, generator=self._gen)[:keep].to(batch["h"].device)
        item = {k: (v[idx].half() if v.is_floating_point() and k in ("h", "grad") else v[idx])
                for k, v in batch.items()}
        # the victim's batch size sets the gradient's scale
        item["grad_scale"] = batch["grad_scale"] if "grad_scale" in batch else torch.tensor(float(n))
        self.replay.append(item)
        self._replay_rays += keep
        while self._replay_rays > self.config.replay_buffer_rays and len(self.replay) > 1:
            self._replay_rays -= len(self.replay.popleft()["h"])

    def sample_replay(self, num_rays: int) -> Dict[str, Tensor]:
        """A batch of rays drawn from the recorded transcript (all from one recorded step)."""
        item = self.replay[int(torch.randint(len(self.replay), (1,), generator=self._gen))]
        return {k: (v.float() if v.is_floating_point() else v) for k, v in item.items()}

    def run_replay(self, num_steps: Optional[int] = None, num_rays: int = 4096) -> None:
        """Attacker-only steps after training: replay the recorded (rays, h, g)."""
        for _ in range(self.config.replay_steps if num_steps is None else num_steps):
            if not self.replay:
                return
            self.attack_step(self.sample_replay(num_rays))

    # ------------------------------------------------------------------ the attack
    def gradient_distance(self, g_dummy: Tensor, g: Tensor) -> Tensor:
        kind = self.config.gradient_distance
        if kind == "mse":
            return (g_dummy - g).pow(2).mean()
        if kind == "cosine":
            a, b = g_dummy.flatten(1), g.flatten(1)
        else:
            a, b = g_dummy.flatten(0, 1), g.flatten(0, 1)
        keep = b.norm(dim=-1) > 0
        return (1 - nn.functional.cosine_similarity(a[keep], b[keep], dim=-1, eps=1e-20)).mean()

    def attack_step(self, batch: Dict[str, Tensor]) -> Dict[str, float]:
        cfg = self.config
        opt = self._opt()
        t = int(self.step_count) + 1
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * self.lr_factor(t)
        device = self.dummy.device
        batch = {k: v.to(device) for k, v in batch.items()}
        h = batch["h"].detach().float().requires_grad_(True)
        g = batch["grad"].float()
        n_rays = float(batch["grad_scale"]) if "grad_scale" in batch else float(len(h))
        cam, row, col = batch["ray_indices"].long().unbind(-1)
        public = self._public if cfg.adaptive else {}
        victim_step = int(batch["victim_step"][0]) if "victim_step" in batch else t
        mask = known.entry_mask(public, h.detach())
        if mask is not None:
            g = g * mask
        with torch.enable_grad():
            rgb = self.render_rays(h, batch["origins"], batch["directions"], batch["bins"])
            if cfg.dummy_update == "solve" and cfg.lambda_g > 0:
                with torch.no_grad():
                    if cfg.adaptive:
                        self._precision_update(h, g, batch, n_rays, mask, public, victim_step)
                    else:
                        implied = self.implied_pixels(h, g, batch, n_rays)
                        old, seen = self.dummy.data[cam, row, col], self.seen[cam, row, col, None]
                        m = cfg.solve_momentum
                        self.dummy.data[cam, row, col] = torch.where(seen, m * old + (1 - m) * implied, implied)
                    self.seen[cam, row, col] = True
            target = self.dummy[cam, row, col]
            # The victim's loss: MSE averaged over the victim's batch (so gradients share its scale).
            l_dummy = (rgb - target).pow(2).sum() / (3 * n_rays)
            if cfg.lambda_g > 0:
                g_dummy = torch.autograd.grad(l_dummy, h, create_graph=True)[0]
                l_g = self.gradient_distance(g_dummy if mask is None else g_dummy * mask, g)
                if cfg.adaptive:  # a noisy step's gradient counts as much as the signal it holds
                    l_g = l_g * known.relative_gradient_weight(public, victim_step, g.shape[-1])
            else:
                l_g = torch.zeros((), device=device)
            if cfg.gradient_distance == "mse" and cfg.lambda_g > 0 and self._rho_n < cfg.rho_steps:
                self._rho_sum += float(l_dummy.detach() / l_g.detach().clamp_min(1e-30))
                self._rho_n += 1
                self.rho.fill_(self._rho_sum / self._rho_n)
            rho = self.rho if cfg.gradient_distance == "mse" else 1.0
            loss = cfg.lambda_g * rho * l_g + l_dummy * (3.0 if cfg.gradient_distance != "mse" else 1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()
        with torch.no_grad():
            self.dummy.clamp_(0.0, 1.0)
        self.step_count += 1
        self.last_stats = {"L_g": float(l_g.detach()), "L_dummy": float(l_dummy.detach()), "rho": float(rho)}
        return self.last_stats

    def _precision_update(self, h: Tensor, g: Tensor, batch: Dict[str, Tensor], n_rays: float, mask: Optional[Tensor],
                          public: Dict[str, object], victim_step: int) -> None:
        """adaptive solve, a per-pixel Kalman filter: an implied pixel's variance is the defense's noise mapped
        through (J J^T)^-1 J (sigma^2 tr((J J^T)^-1) / 3 per channel, times (3N/2)^2), plus target-side noise
        (residual, label) and the surrogate's own error; the estimate's variance grows by the drift between
        observations. Gain K = P / (P + var): a precision-weighted average of the observations."""
        cfg = self.config
        cam, row, col = batch["ray_indices"].long().unbind(-1)
        implied, trace_inv = self.implied_pixels(h, g, batch, n_rays, mask=mask, with_trace=True, clamp=False)
        sigma2 = known.entry_noise_variance(public, victim_step, g)
        var = (sigma2 * trace_inv / 3 * (1.5 * n_rays) ** 2 + known.target_noise_variance(public)
               + cfg.adaptive_model_variance)
        old = self.estimate[cam, row, col]
        prior = self.variance[cam, row, col] + cfg.adaptive_drift_variance
        gain = prior / (prior + var)
        new = old + gain[:, None] * (implied - old)
        self.estimate[cam, row, col] = new
        self.dummy.data[cam, row, col] = new.clamp(0.0, 1.0)
        self.variance[cam, row, col] = (1 - gain) * prior

    def implied_pixels(self, h: Tensor, g: Tensor, batch: Dict[str, Tensor], n_rays: float,
                       mask: Optional[Tensor] = None, with_trace: bool = False, clamp: bool = True):
        """:func:`implied_pixels` through the surrogate's own render of the batch's rays."""
        def render(hh: Tensor) -> Tensor:
            return self.render_rays(hh, batch["origins"], batch["directions"], batch["bins"])

        return implied_pixels(render, h, g, n_rays, mask, with_trace, clamp)

    def fit_leaked(self, h: Tensor, origins: Tensor, directions: Tensor, bins: Tensor, pixels: Tensor,
                   weight: float = 1.0, lr: float = 1e-2) -> float:
        """Scene-aided step: the surrogate reproduces leaked pixels from the server's own embeddings
        (its own Adam state, so that gradient matching and leak fitting keep separate moment estimates)."""
        if self.leak_optimizer is None:
            self.leak_optimizer = torch.optim.Adam(self.head.parameters(), lr=lr, betas=(0.9, 0.99), eps=1e-15)
        opt = self.leak_optimizer
        with torch.enable_grad():
            rgb = self.render_rays(h.detach(), origins.detach(), directions.detach(), bins.detach())
            loss = weight * (rgb - pixels).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()
        self.last_stats["L_leak"] = float(loss.detach())
        return float(loss.detach())

    # ------------------------------------------------------------------ read-out
    def render_rays(self, h: Tensor, origins: Tensor, directions: Tensor, bins: Tensor) -> Float[Tensor, "R 3"]:
        """The surrogate's render of rays from the server's embeddings (differentiable)."""
        head = self.head
        if head.needs_positions:  # a client-appearance architecture: the surrogate has its own appearance planes
            positions = samples_from_bins(origins, directions, bins).frustums.get_positions()
            return self.renderer(lambda hh, dd: self.head(hh, dd, positions), h, origins, directions, bins,
                                 with_depth=False)["rgb"]
        return self.renderer(head, h, origins, directions, bins, with_depth=False)["rgb"]

    @torch.no_grad()
    def render_features(self, h: Float[Tensor, "R S D"], origins: Float[Tensor, "R 3"],
                        directions: Float[Tensor, "R 3"], bins: Float[Tensor, "R S_plus_1"]) -> Float[Tensor, "R F"]:
        """Per-ray features for colour-free comparisons: the surrogate's rgb (as ``render_rays``), then its head's
        last hidden colour activations composited with its own volume-rendering weights, and the accumulated
        opacity. The head's output layer maps the activations to rgb logits, so a regression from them (fitted to a
        photo) is the surrogate with a refitted output layer: what the pose search's "feature-cv" objective fits per
        candidate pose (on rgb, rgb^2 and a few principal components of the rest)."""
        samples = samples_from_bins(origins, directions, bins)
        positions = samples.frustums.get_positions() if self.head.needs_positions else None
        density, hidden = self.head.colour_features(h, samples.frustums.directions, positions)
        weights = samples.get_weights(density)
        rgb = self.renderer.rgb(rgb=self.head.rgb_from_features(hidden), weights=weights)
        return torch.cat([rgb, (weights * hidden).sum(dim=1), weights.sum(dim=1)], dim=-1)

    @torch.no_grad()
    def render(self, h: Tensor, origins: Tensor, directions: Tensor, bins: Tensor) -> Tensor:
        """The attacker's render of any rays, from the server's own embeddings."""
        return self.render_rays(h, origins, directions, bins)


def implied_pixels(render: Callable[[Tensor], Float[Tensor, "R 3"]], h: Float[Tensor, "R S D"],
                   g: Float[Tensor, "R S D"], n_rays: float, mask: Optional[Tensor] = None, with_trace: bool = False,
                   clamp: bool = True):
    """Per-ray least squares through a head's render ``rgb = render(h)``: the colour residual ``e`` with
    ``J^T e ~ g`` (``J = d rgb / d h``), and the pixel ``rgb - e * 3N / 2`` whose MSE gradient (averaged over the
    victim's ``N = n_rays`` rays and 3 channels) is ``g``. ``mask`` drops entries of ``J`` (and ``g``) the reader
    ignores; ``with_trace`` also returns ``tr((J J^T)^-1)``."""
    with torch.enable_grad():
        hh = h.detach().requires_grad_(True)
        rgb = render(hh)
        jac = []
        for c in range(3):  # J_c = d rgb_c / d h, per ray
            jac.append(torch.autograd.grad(rgb[:, c].sum(), hh, retain_graph=c < 2)[0].flatten(1))
    J = torch.stack(jac, dim=1)  # [R, 3, S*D]
    if mask is not None:
        J = J * mask.flatten(1)[:, None, :]
    gram = J @ J.transpose(1, 2)  # [R, 3, 3]
    rhs = J @ g.flatten(1).unsqueeze(-1)  # [R, 3, 1]
    reg = 1e-6 * gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-30)[:, None, None]
    system = gram + reg * torch.eye(3, device=h.device)
    e = torch.linalg.solve(system, rhs)[..., 0]  # dL/drgb
    pixels = rgb.detach() - e * (3 * n_rays / 2)
    pixels = pixels.clamp(0.0, 1.0) if clamp else pixels
    if with_trace:
        return pixels, torch.linalg.inv(system).diagonal(dim1=1, dim2=2).sum(-1)
    return pixels
