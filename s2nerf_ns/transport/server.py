"""The server process (``s2nerf-server``): the server fields, the sampler and their optimizer, behind gRPC.

It imports nothing of the client: the fields and the sampler come from ``protocol.server``; with
``--attack sma`` the attacker (``attacks.surrogate``, which builds a copy of the client head's
*architecture*) is fed only the messages this process received.

Step protocol (the client numbers its training steps ``t``; the server keeps ``next_step``, the number of
steps it has applied):

* ``Forward(t, rays)``: only for ``t == next_step``. The server samples the rays (the stratified jitter is
  seeded from ``(seed, t)``, so a repeated forward of ``t`` is bit-identical), computes ``h``, keeps the graph
  of step ``t`` and answers ``h`` and the sample spacing. ``t < next_step`` is refused with
  ``ALREADY_EXISTS`` and ``t > next_step`` with ``FAILED_PRECONDITION`` (the client must replay the steps
  in between).
* ``Backward(t, dL/dh)``: the server backprops the defended gradient through its cached graph of ``t``,
  steps its optimizer and scheduler (**the server steps on receiving the gradient of step t**), sets
  ``next_step = t + 1`` and, every ``--checkpoint-every`` steps, writes its checkpoint *before* replying. A
  repeated ``Backward(t)`` with ``t < next_step`` is acknowledged as a duplicate and not applied again. A
  ``Backward(t)`` without a cached forward of ``t`` (the server restarted in between) is refused with
  ``FAILED_PRECONDITION``: the client sends ``Forward(t)`` again, then the gradient.
* Replies carry ``next_step`` and ``durable_step`` (the step count of the last checkpoint); the client keeps
  the messages of the steps after ``durable_step`` to replay them into a server restarted from an older
  checkpoint.
* ``Render(rays)``: eval renders (no step, no gradient, nothing cached, the attacker is not fed).
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import signal
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import grpc
import torch
from torch import Tensor

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

from s2nerf_ns.protocol.server import ServerField, ServerSide
from s2nerf_ns.transport.wire import WireError, WireOptions, decode, encode

SERVICE = "s2nerf.SplitServer"
TOKEN_HEADER = "s2nerf-token"
PROTOCOL_VERSION = 1
CHECKPOINT = "server_checkpoint.pt"
ARCH_INT_LIMITS = {"num_levels": 32, "features_per_level": 8, "min_res": 1 << 14, "max_res": 1 << 16,
                   "log2_hashmap_size": 24, "hidden_dim": 1024, "num_density_layers": 16, "geo_feat_dim": 256,
                   "cut_depth": 15, "num_samples": 4096}
ARCH_FLOATS = ("near_plane", "far_plane")


def sampler_seed(seed: int, step: int) -> int:
    """Seed of the stratified jitter of training step ``step`` (also used by the in-process reference)."""
    return seed * 1_000_003 + step


def check_arch(arch: object) -> Dict[str, object]:
    """Validate the server-side architecture a client asks for (ints bounded, so a hello cannot exhaust memory)."""
    if not isinstance(arch, dict):
        raise WireError("hello: 'arch' must be an object")
    out: Dict[str, object] = {}
    for key, limit in ARCH_INT_LIMITS.items():
        value = arch.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
            raise WireError(f"hello: arch.{key} must be an int in [0, {limit}], got {value!r}")
        out[key] = value
    for key in ARCH_FLOATS:
        if not isinstance(arch.get(key), (int, float)):
            raise WireError(f"hello: arch.{key} must be a number")
        out[key] = float(arch[key])
    aabb = arch.get("aabb")
    if (not isinstance(aabb, list) or len(aabb) != 2 or not all(isinstance(r, list) and len(r) == 3 for r in aabb)
            or not all(isinstance(v, (int, float)) for r in aabb for v in r)):
        raise WireError("hello: arch.aabb must be [[x, y, z], [x, y, z]]")
    out["aabb"] = [[float(v) for v in r] for r in aabb]
    out["unbounded"] = bool(arch.get("unbounded", False))
    if arch.get("sampler", "uniform") != "uniform":
        raise WireError("hello: the two-process protocol supports the uniform sampler only")
    out["sampler"] = "uniform"
    return out


@dataclass
class Pending:
    """The server's graph of one training step, kept until its gradient arrives."""

    step: int
    origins: Tensor
    directions: Tensor
    ray_indices: Optional[Tensor]
    positions: Tensor
    bins: Tensor
    h: Tensor


@dataclass
class ServerOptions:
    run_dir: Path
    token: str
    seed: int = 42
    lr: float = 1e-2
    lr_final: float = 1e-3
    lr_max_steps: int = 5000
    checkpoint_every: int = 1
    attack: str = "none"
    image_size: Optional[List[int]] = None
    max_message_bytes: int = 512 << 20
    max_rays: int = 1 << 16


class SplitServer:
    """The server's state and the four RPCs. One lock: steps are applied one at a time, in order."""

    def __init__(self, options: ServerOptions) -> None:
        self.opt = options
        self.run_dir = Path(options.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.arch: Optional[Dict[str, object]] = None
        self.hello_meta: Dict[str, object] = {}
        self.server: Optional[ServerSide] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.scheduler = None
        self.attacker = None
        self.next_step = 0
        self.durable_step = 0
        self.pending: Optional[Pending] = None
        self.received_log = open(self.run_dir / "received.jsonl", "a")
        if (self.run_dir / CHECKPOINT).exists():
            self._load()

    # ------------------------------------------------------------------ state
    def _build(self, arch: Dict[str, object], hello_meta: Dict[str, object]) -> None:
        aabb = torch.tensor(arch["aabb"])
        torch.manual_seed(self.opt.seed)  # the fields' initialisation is the server's own
        field = ServerField(aabb, arch["num_levels"], arch["features_per_level"], arch["min_res"], arch["max_res"],
                            arch["log2_hashmap_size"], arch["hidden_dim"], arch["num_density_layers"],
                            arch["geo_feat_dim"], arch["cut_depth"], arch["unbounded"], "torch")
        self.server = ServerSide(SceneBox(aabb=aabb), field, arch["num_samples"], arch["near_plane"],
                                 arch["far_plane"], arch["unbounded"], "uniform")
        # The methods' optimizer (integration/methods.py): Adam(lr 1e-2, eps 1e-15, betas (0.9, 0.99)),
        # exponential decay to 0.1x over nerfstudio's fixed max_steps.
        self.optimizer = torch.optim.Adam(field.parameters(), lr=self.opt.lr, eps=1e-15, betas=(0.9, 0.99))
        self.scheduler = ExponentialDecaySchedulerConfig(lr_final=self.opt.lr_final, max_steps=self.opt.lr_max_steps
                                                         ).setup().get_scheduler(self.optimizer, self.opt.lr)
        self.arch, self.hello_meta = arch, hello_meta
        if self.opt.attack == "sma":
            self._build_attacker(hello_meta)

    def _build_attacker(self, hello_meta: Dict[str, object]) -> None:
        from s2nerf_ns.attacks.surrogate import SurrogateAttackConfig  # the head's architecture only

        if not self.opt.image_size:
            raise SystemExit("s2nerf-server: --attack sma needs --image-size HEIGHT WIDTH")
        height, width = self.opt.image_size
        head = hello_meta.get("head")
        if not isinstance(head, dict) or not all(isinstance(v, (int, float)) for v in head.values()):
            raise WireError("hello: 'head' (the client head's architecture) is needed by --attack sma")
        self.attacker = SurrogateAttackConfig().setup(
            num_images=int(hello_meta.get("num_images", 1)), image_height=height, image_width=width,
            head_kwargs=head, background_color=str(hello_meta.get("background_color", "last_sample")),
            max_steps=int(hello_meta.get("run_steps") or 1))

    def _save(self) -> None:
        assert self.server is not None and self.optimizer is not None
        state = {"format": 1, "arch": json.dumps(self.arch), "hello_meta": json.dumps(self.hello_meta),
                 "seed": self.opt.seed, "next_step": self.next_step, "field": self.server.field.state_dict(),
                 "optimizer": self.optimizer.state_dict()}
        if self.attacker is not None:
            state["attacker"] = self.attacker.state_dict()
            if self.attacker.optimizer is not None:
                state["attacker_optimizer"] = self.attacker.optimizer.state_dict()
        tmp = self.run_dir / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.run_dir / CHECKPOINT)  # atomic: a kill leaves the old or the new checkpoint
        self.durable_step = self.next_step
        if self.attacker is not None:
            self._save_attack_outputs()

    def _save_attack_outputs(self) -> None:
        folder = self.run_dir / "attack"
        folder.mkdir(exist_ok=True)
        torch.save({"surrogate": self.attacker.state_dict(), "hello_meta": json.dumps(self.hello_meta),
                    "step": self.next_step}, folder / "attacker.pt")
        torch.save(self.attacker.dummy.detach().cpu().clone(), folder / "dummies.pt")

    def _load(self) -> None:
        state = torch.load(self.run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
        self.opt.seed = int(state["seed"])
        self._build(json.loads(state["arch"]), json.loads(state["hello_meta"]))
        self.server.field.load_state_dict(state["field"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.next_step = self.durable_step = int(state["next_step"])
        # the scheduler after next_step steps, exactly as if it had been stepped that many times
        self.scheduler.last_epoch = self.next_step
        factor = self.scheduler.lr_lambdas[0](self.next_step)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base * factor
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        if self.attacker is not None and "attacker" in state:
            self.attacker.load_state_dict(state["attacker"])
            if "attacker_optimizer" in state:
                self.attacker._opt().load_state_dict(state["attacker_optimizer"])
        print(f"s2nerf-server: resumed from {self.run_dir / CHECKPOINT} at step {self.next_step}", flush=True)

    # ------------------------------------------------------------------ plumbing
    def _authenticate(self, context: grpc.ServicerContext) -> None:
        token = dict(context.invocation_metadata()).get(TOKEN_HEADER, "")
        if not hmac.compare_digest(str(token).encode(), self.opt.token.encode()):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "s2nerf-server: wrong or missing token")

    def _log(self, method: str, data: bytes, msg=None, outcome: str = "ok") -> None:
        entry = {"time": time.time(), "method": method, "bytes": len(data), "outcome": outcome}
        if msg is not None:
            entry.update(kind=msg.kind, step=msg.step, meta_keys=sorted(msg.meta),
                         tensors={n: {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                                      "payload_bytes": msg.payload_bytes[n]} for n, t in msg.tensors.items()})
        self.received_log.write(json.dumps(entry) + "\n")
        self.received_log.flush()

    def _handler(self, method: str, fn):
        def handle(data: bytes, context: grpc.ServicerContext) -> bytes:
            self._authenticate(context)
            try:
                with self.lock:
                    return fn(data, context)
            except WireError as err:
                self._log(method, data, outcome=f"refused: {err}")
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"s2nerf-server: malformed message: {err}")
            except _Refusal as err:
                self._log(method, data, outcome=f"refused: {err.message}")
                context.abort(err.code, err.message)
        return handle

    def _rays(self, msg) -> RayBundle:
        origins, directions = msg.tensors.get("ray_origins"), msg.tensors.get("ray_directions")
        if origins is None or directions is None:
            raise WireError("rays missing")
        n = origins.shape[0] if origins.dim() == 2 else -1
        if origins.shape != (n, 3) or directions.shape != (n, 3) or not 0 < n <= self.opt.max_rays:
            raise WireError(f"rays must be [R, 3] with 0 < R <= {self.opt.max_rays}")
        indices = msg.tensors.get("ray_indices")
        if indices is not None and indices.shape != (n, 3):
            raise WireError("ray_indices must be [R, 3]")
        if not (torch.isfinite(origins).all() and torch.isfinite(directions).all()):
            raise WireError("non-finite rays")
        bundle = RayBundle(origins=origins, directions=directions, pixel_area=torch.ones(n, 1),
                           camera_indices=torch.zeros(n, 1, dtype=torch.long))
        return self.server.collider(bundle)

    @staticmethod
    def _wire(msg) -> WireOptions:
        wire = msg.meta.get("wire", {})
        if not isinstance(wire, dict) or not all(isinstance(wire.get(k, False), bool) for k in ("half", "sparse")):
            raise WireError("meta.wire must be {half: bool, sparse: bool}")
        return WireOptions(half=wire.get("half", False), sparse=wire.get("sparse", False))

    def _status(self) -> Dict[str, object]:
        return {"next_step": self.next_step, "durable_step": self.durable_step, "protocol": PROTOCOL_VERSION}

    # ------------------------------------------------------------------ RPCs
    def hello(self, data: bytes, context) -> bytes:
        msg = decode(data, "hello")
        self._log("Hello", data, msg)
        if msg.meta.get("protocol") != PROTOCOL_VERSION:
            raise _Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                           f"s2nerf-server speaks protocol {PROTOCOL_VERSION}, the client {msg.meta.get('protocol')}")
        arch = check_arch(msg.meta.get("arch"))
        if self.arch is None:
            self._build(arch, {k: v for k, v in msg.meta.items() if k in ("head", "num_images", "run_steps",
                                                                            "background_color")})
            (self.run_dir / "server_config.json").write_text(json.dumps({"arch": arch, "seed": self.opt.seed}))
        elif arch != self.arch:
            raise _Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                           f"s2nerf-server: this run was built for another architecture ({self.run_dir}); "
                           "start the server with a new --run-dir")
        return encode("hello_reply", self.next_step, meta=self._status())[0]

    def forward(self, data: bytes, context) -> bytes:
        msg = decode(data, "forward")
        self._log("Forward", data, msg)
        if self.server is None:
            raise _Refusal(grpc.StatusCode.FAILED_PRECONDITION, "s2nerf-server: say hello first")
        t = msg.step
        if t < self.next_step:
            raise _Refusal(grpc.StatusCode.ALREADY_EXISTS,
                           f"step {t} was already applied; the server is at step {self.next_step}")
        if t > self.next_step:
            raise _Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                           f"step {t} skips steps {self.next_step}..{t - 1}: replay them first")
        wire = self._wire(msg)
        bundle = self._rays(msg)
        self.server.train()
        torch.manual_seed(sampler_seed(self.opt.seed, t))
        out = self.server(bundle)
        self.pending = Pending(t, bundle.origins, bundle.directions, msg.tensors.get("ray_indices"),
                               out.positions.detach(), out.bins.detach(), out.h)
        codecs = {"h": wire.codec("h")}
        return encode("forward_reply", t, meta=self._status(), tensors={"h": out.h, "sample_bins": out.bins},
                      codecs=codecs, half=wire.half)[0]

    def backward(self, data: bytes, context) -> bytes:
        pending = self.pending
        masks = {"grad_h": pending.h.detach() != 0} if pending is not None else None
        try:
            msg = decode(data, "backward", masks=masks)
        except WireError:
            if pending is None:  # a masked gradient cannot be read without its forward
                raise _Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                               "no forward is pending on the server: send the forward of this step again")
            raise
        self._log("Backward", data, msg)
        t = msg.step
        if t < self.next_step:
            return encode("backward_reply", t, meta={**self._status(), "duplicate": True})[0]
        if pending is None or pending.step != t:
            raise _Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                           f"no forward of step {t} is pending on the server (at step {self.next_step}): "
                           "send the forward of this step again")
        grad = msg.tensors.get("grad_h")
        if grad is None or grad.shape != pending.h.shape or not torch.isfinite(grad).all():
            raise WireError(f"grad_h must be finite with shape {list(pending.h.shape)}")
        self.optimizer.zero_grad()
        pending.h.backward(grad)
        self.optimizer.step()
        self.scheduler.step()
        self.next_step, self.pending = t + 1, None
        if self.attacker is not None:
            self._observe(pending, grad)
        if self.next_step % self.opt.checkpoint_every == 0:
            self._save()
        return encode("backward_reply", t, meta={**self._status(), "duplicate": False})[0]

    def _observe(self, pending: Pending, grad: Tensor) -> None:
        from s2nerf_ns.protocol.channel import ServerView  # the observer interface's type only

        n = pending.origins.shape[0]
        indices = pending.ray_indices if pending.ray_indices is not None else torch.full((n, 3), -1)
        self.attacker.observe(ServerView(step=pending.step, ray_indices=indices, origins=pending.origins,
                                         directions=pending.directions, positions=pending.positions,
                                         bins=pending.bins, h=pending.h.detach(), grad=grad))

    @torch.no_grad()
    def render(self, data: bytes, context) -> bytes:
        msg = decode(data, "render")
        self._log("Render", data, msg)
        if self.server is None:
            raise _Refusal(grpc.StatusCode.FAILED_PRECONDITION, "s2nerf-server: say hello first")
        wire = self._wire(msg)
        bundle = self._rays(msg)
        self.server.eval()
        out = self.server(bundle)
        self.server.train()
        return encode("render_reply", -1, meta=self._status(), tensors={"h": out.h, "sample_bins": out.bins},
                      codecs={"h": wire.codec("h")}, half=wire.half)[0]

    def close(self) -> None:
        with self.lock:
            if self.server is not None and self.durable_step != self.next_step:
                self._save()
            self.received_log.close()

    def grpc_handler(self) -> grpc.GenericRpcHandler:
        methods = {"Hello": self.hello, "Forward": self.forward, "Backward": self.backward, "Render": self.render}
        return grpc.method_handlers_generic_handler(SERVICE, {
            name: grpc.unary_unary_rpc_method_handler(self._handler(name, fn)) for name, fn in methods.items()})


class _Refusal(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def serve(options: ServerOptions, address: str, workers: int = 4) -> grpc.Server:
    state = SplitServer(options)
    limits = [("grpc.max_receive_message_length", options.max_message_bytes),
              ("grpc.max_send_message_length", options.max_message_bytes)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=limits)
    server.add_generic_rpc_handlers((state.grpc_handler(),))
    if server.add_insecure_port(address) == 0:
        raise SystemExit(f"s2nerf-server: cannot listen on {address}")
    server.start()
    server.state = state  # type: ignore[attr-defined]
    return server


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="s2nerf-server", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:50051", help="host:port to serve on")
    parser.add_argument("--token-file", type=Path, required=True, help="file holding the shared client token")
    parser.add_argument("--run-dir", type=Path, default=Path("outputs/s2nerf-server"),
                        help="checkpoints, received.jsonl and attack outputs; an existing checkpoint is resumed")
    parser.add_argument("--seed", type=int, default=42, help="initialisation and sampler-jitter seed")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--lr-final", type=float, default=1e-3)
    parser.add_argument("--lr-max-steps", type=int, default=5000)
    parser.add_argument("--checkpoint-every", type=int, default=1, help="checkpoint after every N applied steps")
    parser.add_argument("--attack", choices=("none", "sma"), default="none",
                        help="sma: a surrogate model attacker fed with what this server receives")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="size of the client's images (the attacker's dummies)")
    parser.add_argument("--max-message-mb", type=float, default=512.0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        token = args.token_file.read_text().strip()
    except OSError as err:
        raise SystemExit(f"s2nerf-server: cannot read the token file {args.token_file}: {err}") from None
    if not token:
        raise SystemExit(f"s2nerf-server: the token file {args.token_file} is empty")
    options = ServerOptions(run_dir=args.run_dir, token=token, seed=args.seed, lr=args.lr, lr_final=args.lr_final,
                            lr_max_steps=args.lr_max_steps, checkpoint_every=max(args.checkpoint_every, 1),
                            attack=args.attack, image_size=args.image_size,
                            max_message_bytes=int(args.max_message_mb * (1 << 20)))
    server = serve(options, args.listen)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(grace=2.0))  # checkpoint on the way out
    print(f"s2nerf-server: serving on {args.listen}, run folder {args.run_dir}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(grace=2.0)
        server.state.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1:])
