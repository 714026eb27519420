"""The client's stand-in for ``ServerSide``: rays go out over gRPC, ``h`` and the sample spacing come back,
and the backward pass sends the channel's defended gradient to the server process.

The model still calls the channel exactly as in one process (the transcript, the defense and the
observers are unchanged); :class:`RemoteServerSide` only replaces the computation behind it. The
gradient that reaches :class:`_RemoteH` in the backward pass is the one the channel returned, i.e. the
defended one: nothing else derived from pixels leaves the client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import grpc
import torch
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from s2nerf_ns.protocol.server import ServerPass
from s2nerf_ns.transport.wire import Message, WireOptions, decode, encode

SERVICE = "s2nerf.SplitServer"
TOKEN_HEADER = "s2nerf-token"
PROTOCOL_VERSION = 1
RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class RemoteServerError(SystemExit):
    """The server cannot be used: printed as one line (no traceback) when it ends a command."""


@dataclass
class RemoteOptions:
    """How the client talks to ``s2nerf-server`` (used when ``--pipeline.model.server-address`` is set)."""

    half: bool = False
    """Send h and the gradient as (scaled) float16 instead of float32."""
    sparse: bool = False
    """Leave out the ReLU zeros of h (bitmask + values); send the gradient only where h is non-zero."""
    connect_timeout_s: float = 20.0
    """How long to wait for the server at startup."""
    rpc_timeout_s: float = 120.0
    """Deadline of one request."""
    reconnect_timeout_s: float = 120.0
    """How long to keep retrying (bounded backoff) when the server goes away during training."""
    max_message_mb: float = 512.0
    """Largest message sent or accepted."""
    render_chunk_rays: int = 4096
    """Rays per eval-render request."""


class _RemoteField(nn.Module):
    """What the model reads of the server's field: its output width (no parameters on the client)."""

    class _Encoding:
        def __init__(self, dim: int) -> None:
            self.dim = dim

        def get_out_dim(self) -> int:
            return self.dim

    def __init__(self, encoding_dim: int, out_dim: int) -> None:
        super().__init__()
        self.encoding = self._Encoding(encoding_dim)
        self.out_dim = out_dim


class _RemoteH(torch.autograd.Function):
    """Forward: the ``h`` received from the server. Backward: the gradient handed down by the channel (the
    defended one) goes to the server, which applies step ``step``."""

    @staticmethod
    def forward(ctx, anchor: Tensor, h: Tensor, stub: "RemoteServerSide", step: int) -> Tensor:  # type: ignore
        ctx.stub, ctx.step = stub, step
        return h.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore
        ctx.stub.send_gradient(ctx.step, grad)
        return None, None, None, None


class RemoteServerSide(nn.Module):
    """Same interface as ``ServerSide`` for the model: ``forward(ray_bundle) -> ServerPass``, ``field``,
    ``collider`` (None: the server collides the rays), ``proposal_networks`` (empty)."""

    def __init__(self, address: str, token_file: Optional[Path], arch: Dict[str, object],
                 step_fn: Callable[[], int], options: RemoteOptions) -> None:
        super().__init__()
        if arch.get("sampler", "uniform") != "uniform":
            raise ValueError("the two-process protocol supports the uniform sampler only (--pipeline.model.sampler)")
        self.arch = arch
        self.address, self.options, self.step_fn = address, options, step_fn
        self.wire = WireOptions(half=options.half, sparse=options.sparse, relu_h=int(arch["cut_depth"]) > 0)
        self.field = _RemoteField(int(arch["num_levels"]) * int(arch["features_per_level"]),
                                  int(arch["hidden_dim"]) if int(arch["cut_depth"]) > 0
                                  else int(arch["num_levels"]) * int(arch["features_per_level"]))
        self.collider = None
        self.proposal_networks = nn.ModuleList()
        self.sampler_kind = "uniform"
        if token_file is None:
            raise RemoteServerError(f"s2nerf: --pipeline.model.server-token-file is needed to talk to {address}")
        try:
            self._token = Path(token_file).read_text().strip()
        except OSError as err:
            raise RemoteServerError(f"s2nerf: cannot read the token file {token_file}: {err}") from None
        limit = int(options.max_message_mb * (1 << 20))
        self._channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", limit),
                                                                ("grpc.max_send_message_length", limit)])
        self._calls = {name: self._channel.unary_unary(f"/{SERVICE}/{name}")
                       for name in ("Hello", "Forward", "Backward", "Render")}
        self._hello_frame = b""
        self.frames: Dict[int, Dict[str, bytes]] = {}
        """Messages of the steps the server has not made durable yet (replayed into a restarted server)."""
        self._h_mask: Dict[int, Tensor] = {}
        self.durable_step = 0
        self.server_next_step = 0
        self.wire_log: List[Dict[str, object]] = []
        """Per training step: payload bytes of each tensor, whole-message bytes each way, round-trip seconds."""
        self.reconnects = 0
        try:
            grpc.channel_ready_future(self._channel).result(timeout=options.connect_timeout_s)
        except grpc.FutureTimeoutError:
            raise RemoteServerError(f"s2nerf: no s2nerf-server answers at {address} "
                                    f"(waited {options.connect_timeout_s:.0f} s): start it first") from None

    def hello(self, head: Dict[str, object], **meta: object) -> None:
        """Introduce the client: the server part's architecture, and (public protocol knowledge, for setup
        only) the client head's architecture, the number of training images and the run's length."""
        self._hello_frame = encode("hello", meta={"protocol": PROTOCOL_VERSION, "arch": self.arch, "head": head,
                                                  **meta})[0]
        self._hello()

    # ------------------------------------------------------------------ calls
    def _call(self, name: str, frame: bytes) -> bytes:
        return self._calls[name](frame, timeout=self.options.rpc_timeout_s, metadata=((TOKEN_HEADER, self._token),))

    def _fail(self, name: str, err: grpc.RpcError) -> RemoteServerError:
        return RemoteServerError(f"s2nerf: the server at {self.address} refused {name}: "
                                 f"{err.code().name}: {err.details()}")

    def _hello(self) -> Dict[str, object]:
        try:
            reply = decode(self._call("Hello", self._hello_frame), "hello_reply")
        except grpc.RpcError as err:
            if err.code() in RETRY_CODES:
                raise
            raise self._fail("Hello", err) from None
        self.server_next_step = int(reply.meta["next_step"])
        self.durable_step = int(reply.meta["durable_step"])
        return reply.meta

    def _reconnect(self, name: str, err: grpc.RpcError) -> None:
        """Wait for the server to come back (bounded backoff), then say hello again."""
        deadline, delay = time.monotonic() + self.options.reconnect_timeout_s, 0.2
        print(f"s2nerf: lost the server at {self.address} during {name} ({err.code().name}); reconnecting",
              flush=True)
        while True:
            try:
                self._hello()
                self.reconnects += 1
                return
            except grpc.RpcError as again:
                if time.monotonic() + delay > deadline:
                    raise RemoteServerError(
                        f"s2nerf: the server at {self.address} did not come back within "
                        f"{self.options.reconnect_timeout_s:.0f} s ({again.code().name})") from None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _train_call(self, name: str, step: int, frame: bytes) -> Tuple[Optional[Message], float]:
        """One training request with recovery: reconnects, replays the steps a restarted server lacks, and
        returns None when the server had already applied this step (a duplicate is never applied twice)."""
        for _ in range(32):
            start = time.perf_counter()
            try:
                data = self._call(name, frame)
                kind = "forward_reply" if name == "Forward" else "backward_reply"
                return decode(data, kind), time.perf_counter() - start
            except grpc.RpcError as err:
                code = err.code()
                if code in RETRY_CODES:
                    self._reconnect(name, err)
                elif code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS):
                    self._hello()
                else:
                    raise self._fail(name, err) from None
            if self.server_next_step > step and name == "Backward":
                return None, 0.0  # the server applied step `step` before it went away
            if self.server_next_step > step:
                raise RemoteServerError(
                    f"s2nerf: the server at {self.address} is at step {self.server_next_step}, ahead of the "
                    f"client's step {step}: restart the server from a checkpoint that matches the client's")
            self._replay(self.server_next_step, step)
            if name == "Backward":  # the server lost the graph of this step: send its forward again
                self._call("Forward", self.frames[step]["forward"])
        raise RemoteServerError(f"s2nerf: gave up on {name} of step {step} at {self.address}")

    def _replay(self, first: int, until: int) -> None:
        for s in range(first, until):
            if s not in self.frames or "backward" not in self.frames[s]:
                raise RemoteServerError(
                    f"s2nerf: the server at {self.address} restarted at step {first}, but the client no longer "
                    f"holds step {s} to replay it (use a smaller --checkpoint-every on the server)")
            self._call("Forward", self.frames[s]["forward"])
            self._call("Backward", self.frames[s]["backward"])
        self._hello()

    def _forget_durable(self) -> None:
        for s in [s for s in self.frames if s < self.durable_step]:
            del self.frames[s]

    def _wire_meta(self) -> Dict[str, bool]:
        return {"half": self.wire.half, "sparse": self.wire.sparse}

    # ------------------------------------------------------------------ the ServerSide interface
    def forward(self, ray_bundle: RayBundle, ray_indices: Optional[Tensor] = None) -> ServerPass:
        origins, directions, indices = ray_bundle.origins.detach(), ray_bundle.directions.detach(), ray_indices
        training = self.training and torch.is_grad_enabled()
        if training:
            h, bins = self._train_forward(self.step_fn(), origins, directions, indices)
        else:
            h, bins = self._render(origins, directions)
        device = ray_bundle.origins.device
        h, bins = h.to(device), bins.to(device)
        mid = (bins[:, :-1] + bins[:, 1:]) / 2
        positions = ray_bundle.origins[:, None, :] + ray_bundle.directions[:, None, :] * mid[..., None]
        return ServerPass(None, positions, h, bins, [], [])  # type: ignore[arg-type]

    def _train_forward(self, step: int, origins: Tensor, directions: Tensor,
                       indices: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        tensors = {"ray_origins": origins, "ray_directions": directions}
        if indices is not None:
            tensors["ray_indices"] = indices.long()
        frame, sizes = encode("forward", step, meta={"wire": self._wire_meta()}, tensors=tensors)
        self.frames[step] = {"forward": frame}
        reply, seconds = self._train_call("Forward", step, frame)
        assert reply is not None
        self.wire_log.append({"step": step, "time": time.perf_counter() - seconds, "sent": dict(sizes), "received": dict(reply.payload_bytes),
                              "sent_total": len(frame), "received_total": reply.total_bytes, "seconds": seconds})
        self.wire_log = self.wire_log[-200:]
        h, bins = reply.tensors["h"], reply.tensors["sample_bins"]
        self._h_mask = {step: reply.masks.get("h", h != 0)}
        anchor = torch.zeros((), requires_grad=True)
        return _RemoteH.apply(anchor, h, self, step), bins

    def send_gradient(self, step: int, grad: Tensor) -> None:
        """Backward crossing: the channel's (defended) gradient of step ``step`` to the server."""
        codec = self.wire.codec("grad_h")
        frame, sizes = encode("backward", step, tensors={"grad_h": grad.float()}, codecs={"grad_h": codec},
                              half=self.wire.half, masks={"grad_h": self._h_mask.get(step)} if codec == "masked"
                              else None)
        self.frames.setdefault(step, {})["backward"] = frame
        reply, seconds = self._train_call("Backward", step, frame)
        log = next((e for e in reversed(self.wire_log) if e["step"] == step), None)
        if log is not None:
            log["sent"].update(sizes)
            log["sent_total"] += len(frame)
            log["received_total"] += reply.total_bytes if reply is not None else 0
            log["seconds"] += seconds
        if reply is not None:
            self.server_next_step = int(reply.meta["next_step"])
            self.durable_step = int(reply.meta["durable_step"])
        self._forget_durable()

    @torch.no_grad()
    def _render(self, origins: Tensor, directions: Tensor) -> Tuple[Tensor, Tensor]:
        hs, bins = [], []
        for i in range(0, len(origins), self.options.render_chunk_rays):
            frame = encode("render", meta={"wire": self._wire_meta()},
                           tensors={"ray_origins": origins[i:i + self.options.render_chunk_rays],
                                    "ray_directions": directions[i:i + self.options.render_chunk_rays]})[0]
            try:
                reply = decode(self._call("Render", frame), "render_reply")
            except grpc.RpcError as err:
                if err.code() in RETRY_CODES:
                    raise RemoteServerError(f"s2nerf: no s2nerf-server answers at {self.address} "
                                            f"({err.code().name}): start it first") from None
                raise self._fail("Render", err) from None
            hs.append(reply.tensors["h"])
            bins.append(reply.tensors["sample_bins"])
        return torch.cat(hs), torch.cat(bins)

    def embed(self, origins: Tensor, directions: Tensor) -> Tuple[Tensor, Tensor]:
        return self._render(origins.detach(), directions.detach())

    def close(self) -> None:
        self._channel.close()


def remote_arch(cfg, scene_box: SceneBox) -> Dict[str, object]:
    """The server-side architecture a client asks the server for (from the model config)."""
    keys = ("num_levels", "features_per_level", "min_res", "max_res", "log2_hashmap_size", "hidden_dim",
            "num_density_layers", "geo_feat_dim", "cut_depth", "num_samples", "near_plane", "far_plane",
            "unbounded", "sampler")
    arch = {k: getattr(cfg, k) for k in keys}
    arch["aabb"] = scene_box.aabb.tolist()
    return arch
