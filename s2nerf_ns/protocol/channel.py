"""The gradient channel: the one place where tensors cross between server and client.

Forward, the server's per-sample embeddings ``h`` cross to the client; backward, the client's gradient
``g = dL/dh`` crosses to the server after the client-side defense hook. Every crossing is written to a
:class:`~s2nerf_ns.protocol.transcript.Transcript` (name, direction, shape, dtype, bytes), and observers get exactly what the server
sees in a step (:class:`ServerView`) — the rays it was sent, the samples it drew, the ``h`` it computed
and the defended gradient it received — and nothing of the client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, NamedTuple, Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor

from s2nerf_ns.defenses import Defense
from s2nerf_ns.protocol.transcript import CLIENT_TO_SERVER, SERVER_TO_CLIENT, Direction, Transcript


@dataclass
class ServerView:
    """Everything the (curious) server legitimately holds after one training step. Nothing of the client."""

    step: int
    ray_indices: Int[Tensor, "num_rays 3"]
    """(camera, row, column) of each ray: the server receives the rays of the batch."""
    origins: Float[Tensor, "num_rays 3"]
    directions: Float[Tensor, "num_rays 3"]
    positions: Float[Tensor, "num_rays num_samples 3"]
    """Sample positions the server evaluated (it chose them)."""
    bins: Float[Tensor, "num_rays num_samples_plus_1"]
    """Sample spacing along each ray (Euclidean t-values of the bin edges), as sent to the client."""
    h: Float[Tensor, "num_rays num_samples dim"]
    """Embeddings the server computed and sent."""
    grad: Float[Tensor, "num_rays num_samples dim"]
    """The (defended) gradient dL/dh the server received."""
    defense: Dict[str, object] = field(default_factory=dict)
    """The defense's public configuration (kind and knobs, plain values; no seed): protocol knowledge."""
    batch_rays: Optional[int] = None
    """Rays of the victim's batch when this view holds a subset of them (a recorded view); None: all of them.
    The client's loss averages over the whole batch, which sets the gradient's scale."""


Observer = Callable[[ServerView], None]


class _Crossing(torch.autograd.Function):
    """Identity forward (``h`` to the client, plus the *extra port*: a zero of ``h``'s shape, no memory); backward
    hands ``dL/dh`` and the gradient that reached the port to the channel, which returns what the server receives.
    The client's own parameters get their gradients from the client's graph, which ends at the client's copy of
    ``h``: they are never affected by what is sent back."""

    @staticmethod
    def forward(ctx, h: Tensor, channel: "GradientChannel", context: Dict[str, Tensor]):  # type: ignore
        ctx.channel = channel
        ctx.context = context
        ctx.save_for_backward(h)
        ctx.set_materialize_grads(False)  # an unused port gets None, not a tensor of zeros
        return h.detach().clone(), h.new_zeros(()).expand_as(h)

    @staticmethod
    def backward(ctx, grad_h: Optional[Tensor], extra: Optional[Tensor]):  # type: ignore
        (h,) = ctx.saved_tensors
        grad_h = torch.zeros_like(h) if grad_h is None else grad_h
        sent = ctx.channel.client_sends_gradient(grad_h, h, ctx.context, extra)
        return sent, None, None


class _AddToSent(torch.autograd.Function):
    """Identity on the client's loss; its backward puts ``extra`` (times the loss's gradient) on the extra port."""

    @staticmethod
    def forward(ctx, loss: Tensor, port: Tensor, extra: Tensor) -> Tensor:  # type: ignore
        ctx.save_for_backward(extra)
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_loss: Tensor):  # type: ignore
        (extra,) = ctx.saved_tensors
        return grad_loss, extra * grad_loss, None


class Received(NamedTuple):
    """What the client holds after the forward crossing."""

    h: Tensor
    """The client's copy of ``h``: its graph starts here; the gradient reaching it is the client's ``dL/dh``."""
    extra_port: Optional[Tensor]
    """Where :meth:`GradientChannel.client_adds_to_gradient` attaches an extra gradient (None without autograd)."""


class GradientChannel:
    """The trust boundary. Owns the defense hook, the transcript and the observers."""

    def __init__(self, defense: Defense, record: bool = True) -> None:
        self.defense = defense
        self.transcript = Transcript()
        self.record = record
        self.observers: List[Observer] = []
        self.step = 0
        self.training = False
        """Set by the model: crossings are recorded (and observed) for training steps only, not eval renders."""

    def add_observer(self, observer: Observer) -> None:
        """Register a callable that receives the :class:`ServerView` of every training step."""
        self.observers.append(observer)

    def _log(self, name: str, direction: Direction, tensor: Tensor, derived_from_pixels: bool = False) -> None:
        if self.record and self.training:
            self.transcript.record(self.step, name, direction, tensor, derived_from_pixels)

    # ---- client -> server ---------------------------------------------------------------------
    def client_sends_rays(self, ray_indices: Optional[Tensor], origins: Tensor, directions: Tensor) -> None:
        """The client sends the poses of the batch as rays (origins, directions, pixel indices)."""
        self._log("ray_origins", CLIENT_TO_SERVER, origins)
        self._log("ray_directions", CLIENT_TO_SERVER, directions)
        if ray_indices is not None:
            self._log("ray_indices", CLIENT_TO_SERVER, ray_indices)

    def client_sends(self, name: str, tensor: Tensor, derived_from_pixels: bool = False) -> Tensor:
        """Declared extra client->server data (e.g. proposal-loss weights). Returns a detached copy."""
        self._log(name, CLIENT_TO_SERVER, tensor, derived_from_pixels)
        return tensor.detach()

    def client_adds_to_gradient(self, loss: Tensor, extra_port: Tensor, extra: Tensor) -> Tensor:
        """The client's loss, same value, whose backward adds ``extra`` (the residual-noise defense's ``J^T n``) to
        the gradient that crosses in this step's backward (after the defense's perturbation, as
        :meth:`Defense.gradient_to_send` documents). ``extra_port``: :attr:`Received.extra_port` of this step."""
        return _AddToSent.apply(loss, extra_port, extra.detach())

    def client_sends_gradient(self, grad_h: Tensor, h: Tensor, context: Dict[str, Tensor],
                              extra: Optional[Tensor] = None) -> Tensor:
        """Backward crossing: apply the defense (``extra``: see :meth:`client_adds_to_gradient`), record, notify
        observers, hand over to the server."""
        sent = self.defense.gradient_to_send(grad_h, h, self.step, extra)
        self._log("grad_h", CLIENT_TO_SERVER, sent, derived_from_pixels=True)
        if self.observers and self.training:
            public = self.defense.public()
            view = ServerView(step=self.step, h=h.detach(), grad=sent.detach(), defense=public, **context)
            for observer in self.observers:
                observer(view)
        return sent

    # ---- server -> client ---------------------------------------------------------------------
    def server_sends(self, name: str, tensor: Tensor) -> Tensor:
        """Declared server->client sampler data (e.g. the sample spacing). Returns a detached copy."""
        self._log(name, SERVER_TO_CLIENT, tensor)
        return tensor.detach()

    def server_sends_embeddings(self, h: Tensor, context: Dict[str, Tensor]) -> Received:
        """Forward crossing of ``h``. ``context`` is server-side data handed to observers with the gradient."""
        self._log("h", SERVER_TO_CLIENT, h)
        if not torch.is_grad_enabled():
            return Received(h.detach().clone(), None)
        return Received(*_Crossing.apply(h, self, {k: v.detach() for k, v in context.items()}))
