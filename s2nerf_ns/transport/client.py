"""The client's stand-in for ``ServerSide``: rays go out over gRPC, ``h`` and the sample spacing come back,
and the backward pass sends the channel's defended gradient to the server process.

The model still calls the channel exactly as in one process (the transcript, the defense and the
observers are unchanged); :class:`RemoteServerSide` only replaces the computation behind it. The
gradient that reaches :class:`_RemoteH` in the backward pass is the one the channel returned, i.e. the
defended one: nothing else derived from pixels leaves the client.

The channel is TLS (``--pipeline.model.remote.tls-ca``, the server's certificate or its CA) unless
``--pipeline.model.remote.insecure True`` is given. :func:`check_remote` checks the address, token file,
sampler and TLS files when the config is built (before ``ns-train`` writes anything).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # gRPC's own INFO lines (each failed handshake) would bury ours
import grpc  # noqa: E402
import torch
import tyro
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from s2nerf_ns.errors import InputError
from s2nerf_ns.protocol.server import ServerFieldConfig, ServerPass
from s2nerf_ns.transport.certs import check_ca
from s2nerf_ns.transport.tls_diagnosis import AGREES, tls_probe, tls_reason
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
    int8: bool = False
    """On top of sparse (turned on with it): h and the gradient as 8-bit values with a float32 scale per ray."""
    error_feedback: bool = False
    """With int8: carry each step's quantisation residual of the (defended) gradient into the next step's
    gradient (error feedback). Off by default: the gradient is taken at h, whose entries are other rays every
    step, so the residual lands on another ray's entry and does not cancel (measured: it raises the error of the
    server's parameter gradient, README "Two machines")."""
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
    tls_ca: Optional[Path] = None
    """PEM certificate(s) the server's certificate must verify against (for a self-signed pair: the server's
    server.crt, made by s2nerf-server-cert)."""
    tls_server_name: Optional[str] = None
    """Name to check the server's certificate against, when it differs from the host of server-address."""
    insecure: bool = False
    """Talk to the server in clear (no TLS): the token and every tensor readable on the network."""
    replay_buffer_mb: float = 2048.0
    """Most MB of messages kept to replay into a restarted server; when full, the client asks the server to
    checkpoint (at the reference size a step's messages are about 17 MB in float32)."""
    server_schedule: tyro.conf.Suppress[Optional[Dict[str, object]]] = None
    """The optimizer schedule of the server fields (set by the method's trainer from --optimizers.server-fields;
    sent in Hello so that the server follows it)."""

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "rpc_timeout_s", "reconnect_timeout_s", "max_message_mb",
                     "replay_buffer_mb"):
            value = getattr(self, name)
            if not 0 < value < float("inf"):
                raise InputError(f"--pipeline.model.remote.{name.replace('_', '-')} {value}: give a positive number")
        if self.max_message_mb > 2047:
            raise InputError(f"--pipeline.model.remote.max-message-mb {self.max_message_mb}: gRPC's limit is 2047")
        if self.render_chunk_rays < 1:
            raise InputError(f"--pipeline.model.remote.render-chunk-rays {self.render_chunk_rays}: give at least 1")


def split_host_port(flag: str, address: str) -> Tuple[str, int]:
    """``host:port`` (``[v6]:port``) -> (host, port), or an InputError naming ``flag``."""
    host, sep, port = str(address).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError(f"{flag} {address}: give host:port, e.g. 127.0.0.1:50051 (the port is needed)")
    return host, int(port)


def check_remote(address: str, token_file: Optional[Path], sampler: str, options: RemoteOptions) -> None:
    """The client's two-process settings, checked when the config is built (one line naming the flag)."""
    split_host_port("--pipeline.model.server-address", address)
    flag = "--pipeline.model.server-token-file"
    if token_file is None:
        raise InputError(f"{flag} is needed to talk to {address} (the file holding the server's token)")
    try:
        token = Path(token_file).read_text().strip()
    except OSError as err:
        raise InputError(f"{flag} {token_file}: cannot read it ({err.strerror})") from None
    if not token:
        raise InputError(f"{flag} {token_file}: the file is empty (put the server's token in it)")
    if sampler != "uniform":
        raise InputError(f"--pipeline.model.sampler {sampler}: the two-process protocol supports the uniform "
                         "sampler only")
    if options.insecure and options.tls_ca is not None:
        raise InputError("--pipeline.model.remote.insecure True with --pipeline.model.remote.tls-ca: choose one")
    if options.tls_ca is None and not options.insecure:
        raise InputError("give --pipeline.model.remote.tls-ca (the server's certificate, s2nerf-server-cert) or "
                         "--pipeline.model.remote.insecure True to talk to the server in clear")
    if options.tls_ca is not None:
        check_ca("--pipeline.model.remote.tls-ca", options.tls_ca)


def server_schedule(optimizers: Dict[str, dict]) -> Optional[Dict[str, object]]:
    """The schedule of the ``server_fields`` optimizer of a trainer config, as Hello carries it (None if the
    config has none). Only what the server implements (Adam + exponential decay) is accepted."""
    from nerfstudio.engine.optimizers import AdamOptimizerConfig
    from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

    group = optimizers.get("server_fields")
    if group is None:
        return None
    opt, sched = group.get("optimizer"), group.get("scheduler")
    flag = "--optimizers.server-fields"
    if not isinstance(opt, AdamOptimizerConfig) or getattr(opt, "max_norm", None) is not None:
        raise InputError(f"{flag}.optimizer: s2nerf-server runs Adam without max-norm")
    if sched is not None and not isinstance(sched, ExponentialDecaySchedulerConfig):
        raise InputError(f"{flag}.scheduler: s2nerf-server runs nerfstudio's exponential decay (or none)")
    betas = getattr(opt, "betas", (0.9, 0.999))
    out = {"lr": float(opt.lr), "eps": float(opt.eps), "beta1": float(betas[0]), "beta2": float(betas[1]),
           "weight_decay": float(opt.weight_decay)}
    if sched is None:  # a constant learning rate
        return {**out, "lr_final": float(opt.lr), "max_steps": 1, "warmup_steps": 0,
                "lr_pre_warmup": float(opt.lr), "ramp": "cosine"}
    return {**out, "lr_final": float(sched.lr_final if sched.lr_final is not None else opt.lr),
            "max_steps": int(sched.max_steps), "warmup_steps": int(sched.warmup_steps),
            "lr_pre_warmup": float(sched.lr_pre_warmup), "ramp": str(sched.ramp)}


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
        check_remote(address, token_file, str(arch.get("sampler", "uniform")), options)  # as at config time
        self.arch = arch
        self.address, self.options, self.step_fn = address, options, step_fn
        self.wire = WireOptions(half=options.half, sparse=options.sparse or options.int8, int8=options.int8,
                                relu_h=int(arch["cut_depth"]) > 0)
        self._residual: Optional[Tensor] = None  # int8 + error feedback: the last gradient's quantisation residual
        self.field = _RemoteField(int(arch["num_levels"]) * int(arch["features_per_level"]),
                                  int(arch["hidden_dim"]) if int(arch["cut_depth"]) > 0
                                  else int(arch["num_levels"]) * int(arch["features_per_level"]))
        self.collider = None
        self.proposal_networks = nn.ModuleList()
        self.sampler_kind = "uniform"
        self._token = Path(token_file).read_text().strip()
        limit = int(options.max_message_mb * (1 << 20))
        channel_options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
        if options.insecure:
            print("s2nerf: warning: --pipeline.model.remote.insecure True: the token and every tensor travel in "
                  f"clear to {address}; use it only on loopback or a network you trust", flush=True)
            self._channel = grpc.insecure_channel(address, options=channel_options)
        else:
            if options.tls_server_name:
                channel_options.append(("grpc.ssl_target_name_override", options.tls_server_name))
            credentials = grpc.ssl_channel_credentials(root_certificates=Path(options.tls_ca).read_bytes())
            self._channel = grpc.secure_channel(address, credentials, options=channel_options)
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
        self._connect()

    def _connect(self) -> None:
        """Wait for the channel; if the port answers but the channel does not come up, say why in one line
        (TLS refused: wrong CA, name mismatch, or one side in plaintext)."""
        deadline, last = time.monotonic() + self.options.connect_timeout_s, None
        while True:
            try:
                grpc.channel_ready_future(self._channel).result(timeout=max(min(1.0, deadline - time.monotonic()),
                                                                            0.05))
                return
            except grpc.FutureTimeoutError:
                pass
            if self._port_answers():
                reason = tls_probe(self.address, *split_host_port("--pipeline.model.server-address", self.address),
                                   self.options)
                if reason is None:  # the handshake decided nothing: gRPC's own error text, if it names a cause
                    reason, last = self._handshake_failure()
                elif reason == AGREES:  # TLS (or its absence) is as the client expects: keep waiting
                    reason = None
                if reason is not None:
                    self._channel.close()  # stop its retries
                    raise RemoteServerError(reason)
            if time.monotonic() >= deadline:
                self._channel.close()
                if last is not None:
                    raise RemoteServerError(f"s2nerf: the server at {self.address} accepts connections but the channel "
                                            f"does not come up (TLS or --insecure on one side only?): {last[-160:]}")
                raise RemoteServerError(f"s2nerf: no s2nerf-server answers at {self.address} "
                                        f"(waited {self.options.connect_timeout_s:.0f} s): start it first")

    def _port_answers(self) -> bool:
        host, port = split_host_port("--pipeline.model.server-address", self.address)
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            return False

    def _handshake_failure(self) -> Tuple[Optional[str], Optional[str]]:
        """One request without waiting for the channel: its error says why the connection fails, if it does
        (the line to end with, and gRPC's details)."""
        try:
            self._calls["Hello"](b"", timeout=5.0, metadata=((TOKEN_HEADER, self._token),), wait_for_ready=False)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE:
                return None, None  # the connection works (the empty Hello is refused by the server itself)
            details = " ".join(str(err.details()).split())
            return tls_reason(self.address, self.options, details), details
        return None, None

    def hello(self, head: Dict[str, object], **meta: object) -> None:
        """Introduce the client: the server part's architecture, and (public protocol knowledge, for setup
        only) the client head's architecture, the number and size of the training images and the run's length."""
        if self.options.server_schedule is not None:
            meta = {"schedule": self.options.server_schedule, **meta}
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
                    f"holds step {s} to replay it (start the server with a smaller --checkpoint-every or --checkpoint-every-s, or raise --pipeline.model.remote.replay-buffer-mb)")
            self._call("Forward", self.frames[s]["forward"])
            self._call("Backward", self.frames[s]["backward"])
        self._hello()

    def _forget_durable(self) -> None:
        for s in [s for s in self.frames if s < self.durable_step]:
            del self.frames[s]

    def _wire_meta(self) -> Dict[str, bool]:
        return {"half": self.wire.half, "sparse": self.wire.sparse, "int8": self.wire.int8}

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
        held = sum(len(f) for frames in self.frames.values() for f in frames.values())
        full = held + grad.numel() * 4 >= self.options.replay_buffer_mb * (1 << 20)
        masks = {"grad_h": self._h_mask.get(step)} if codec == "masked" else None
        feedback = self.wire.int8 and codec == "masked" and self.options.error_feedback
        grad = grad.detach().float().cpu()
        if feedback and self._residual is not None and self._residual.shape == grad.shape:
            grad = grad + self._residual  # error feedback: last step's residual (of an already defended value)
        frame, sizes = encode("backward", step, meta={"checkpoint": True} if full else None,
                              tensors={"grad_h": grad}, codecs={"grad_h": codec}, half=self.wire.half, masks=masks,
                              int8=self.wire.int8)
        if feedback:  # what the server will read, exactly: the residual is what it will not
            self._residual = (grad - decode(frame, "backward", masks=masks).tensors["grad_h"]) * masks["grad_h"]
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


def remote_arch(server: ServerFieldConfig, scene_box: SceneBox) -> Dict[str, object]:
    """The server-side architecture a client asks the server for: the model's nested server config, and the box."""
    return {**server.to_dict(), "aabb": scene_box.aabb.tolist()}
