"""SERVER SIDE: one client's session in ``s2nerf-server``: its server fields, sampler, optimizer and scheduler,
step counters, pending graph, checkpoint, ``received.jsonl``, attacker and record of what it received, all in
its own run folder. :mod:`s2nerf_ns.transport.server` authenticates each request by its token and hands it to
the session of that token; sessions share nothing but the process (and :data:`RNG_LOCK`).

It imports nothing of the client: the fields and the sampler come from ``protocol.server``; with ``--attack
sma`` the attacker (``attacks.surrogate``, which builds a copy of the client head's *architecture*) is fed only
the messages this session received, with ``--attack ssma`` also the leaked photos the operator was given
(``transport.server_attack``); with ``--record-server-view`` the record is ``protocol.view_recorder``'s.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import grpc
import torch
from torch import Tensor

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

from s2nerf_ns.protocol.server import ServerFieldConfig, ServerSide
from s2nerf_ns.transport.server_record import RecordRefused, SessionRecord, check_defense
from s2nerf_ns.transport.wire import (SCHEDULE_DEFAULTS, WireError, WireOptions, check_arch, check_schedule, decode,
                                      encode)

PROTOCOL_VERSION = 1
CHECKPOINT = "server_checkpoint.pt"
SCHEDULE_FLAGS = {"lr": ("--lr", "--optimizers.server-fields.optimizer.lr"),
                  "lr_final": ("--lr-final", "--optimizers.server-fields.scheduler.lr-final"),
                  "max_steps": ("--lr-max-steps", "--optimizers.server-fields.scheduler.max-steps")}
"""The schedule values s2nerf-server may be given explicitly: the server's flag, the client's flag."""
HELLO_KEYS = ("head", "num_images", "run_steps", "background_color", "image_size", "defense")
"""What the server keeps of a Hello's setup information (public protocol knowledge)."""
RNG_LOCK = threading.Lock()
"""torch's global generator is the process's: a session that seeds and draws from it (field initialisation, the
sampler's jitter) holds this lock, so that concurrent clients draw exactly what each would draw alone."""


def sampler_seed(seed: int, step: int) -> int:
    """Seed of the stratified jitter of training step ``step`` (also used by the in-process reference)."""
    return seed * 1_000_003 + step


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
    """The server's settings, checked by its command line (``server_cli.ServerConfig``) before anything starts."""

    run_dir: Path
    token: str = ""
    """The one client's token (its run folder is ``run_dir``); or give ``clients``."""
    clients: Dict[str, str] = field(default_factory=dict)
    """Several clients: name -> token; each client's run folder is ``run_dir / name``."""
    seed: int = 42
    schedule: Dict[str, float] = field(default_factory=dict)
    """Schedule values given explicitly (keys of :data:`SCHEDULE_FLAGS`); the rest follow the client's Hello."""
    checkpoint_every: Optional[int] = None
    """Checkpoint after every N applied steps; None: every ``checkpoint_every_s`` seconds."""
    checkpoint_every_s: float = 60.0
    attack: str = "none"
    image_size: Optional[Tuple[int, int]] = None
    """The client's image size given explicitly (else Hello's ``image_size``); a client with another is refused."""
    scene_aided: Optional[object] = None
    """``--attack ssma``: (``server_attack.LeakedViews``, ``SceneAidedOptions``), read and checked at startup."""
    max_message_bytes: int = 512 << 20
    max_rays: int = 1 << 16
    record_server_view: bool = False
    """Keep what each step delivered (subsampled ServerViews) in ``<run folder>/server_view/``."""
    server_view_max_mb: float = 256.0
    server_view_every: int = 1


class Refusal(Exception):
    """A well-formed request the session refuses (with a gRPC status code and one line)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ClientSession:
    """One client's state and its four RPCs. Its lock: its steps are applied one at a time, in order."""

    def __init__(self, name: str, run_dir: Path, options: ServerOptions) -> None:
        self.name = name
        self.opt = dataclasses.replace(options)  # its own copy: a resumed run's seed is its own
        self.run_dir = Path(run_dir)
        self.lock = threading.Lock()
        self.arch: Optional[Dict[str, object]] = None
        self.hello_meta: Dict[str, object] = {}
        self.schedule: Optional[Dict[str, object]] = None
        self.server: Optional[ServerSide] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.scheduler = None
        self.attacker = None
        self.finisher = None  # --attack ssma: the after-training phase's thread
        self.record = SessionRecord(self.run_dir, options.server_view_max_mb, options.server_view_every,
                                    options.seed, name) if options.record_server_view else None
        self.next_step = 0
        self.durable_step = 0
        self.pending: Optional[Pending] = None
        self.received_log = None
        self._unwritten_log: List[str] = []  # entries received before the run folder exists
        self.last_checkpoint = time.monotonic()
        self.checkpoint_cost: Dict[str, float] = {}
        """Bytes and seconds of the last checkpoint written."""
        if (self.run_dir / CHECKPOINT).exists():
            self._open_run_dir()
            self._load()

    @property
    def label(self) -> str:
        return f"s2nerf-server [{self.name}]" if self.name else "s2nerf-server"

    def _open_run_dir(self) -> None:
        """Create the run folder (at the first applied step, or to resume) and write the log held until then."""
        if self.received_log is not None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.received_log = open(self.run_dir / "received.jsonl", "a")
        self.received_log.writelines(self._unwritten_log)
        self.received_log.flush()
        self._unwritten_log = []
        if self.arch is not None and not (self.run_dir / "server_config.json").exists():
            (self.run_dir / "server_config.json").write_text(json.dumps(
                {"arch": self.arch, "seed": self.opt.seed, "schedule": self.schedule,
                 "checkpoint_every": self.opt.checkpoint_every, "checkpoint_every_s": self.opt.checkpoint_every_s}))

    # ------------------------------------------------------------------ state
    def _build(self, arch: Dict[str, object], hello_meta: Dict[str, object], schedule: Dict[str, object]) -> None:
        with RNG_LOCK:  # seeds and draws from torch's global generator (here and in the attacker's setup)
            self._build_seeded(arch, hello_meta, schedule)

    def _build_seeded(self, arch: Dict[str, object], hello_meta: Dict[str, object],
                      schedule: Dict[str, object]) -> None:
        torch.manual_seed(self.opt.seed)  # the fields' initialisation is the server's own
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in arch.items() if k != "aabb"}
        self.server = ServerFieldConfig(**config).setup(scene_box=SceneBox(aabb=torch.tensor(arch["aabb"])))
        field = self.server.field
        # The client's optimizer of the server fields (integration/methods.py: Adam(lr 1e-2, eps 1e-15, betas
        # (0.9, 0.99)), exponential decay to 0.1x over --optimizers.server-fields.scheduler.max-steps).
        s = schedule
        self.optimizer = torch.optim.Adam(field.parameters(), lr=s["lr"], eps=s["eps"], betas=(s["beta1"], s["beta2"]),
                                          weight_decay=s["weight_decay"])
        self.scheduler = ExponentialDecaySchedulerConfig(
            lr_pre_warmup=s["lr_pre_warmup"], lr_final=s["lr_final"], warmup_steps=s["warmup_steps"],
            max_steps=s["max_steps"], ramp=s["ramp"]).setup().get_scheduler(self.optimizer, s["lr"])
        self.arch, self.hello_meta, self.schedule = arch, hello_meta, schedule
        if self.opt.attack != "none":
            self._build_attacker(hello_meta)

    def _image_size(self, hello_meta: Dict[str, object]) -> Tuple[int, int]:
        size = self.opt.image_size or hello_meta.get("image_size")  # the attacker's: explicit, else the client's
        if size is None:
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                          f"s2nerf-server: --attack {self.opt.attack} needs the client's image size, which its Hello "
                          "does not carry: restart the server with --image-size HEIGHT WIDTH")
        return int(size[0]), int(size[1])

    def _build_attacker(self, hello_meta: Dict[str, object]) -> None:
        from s2nerf_ns.transport.server_attack import build_attacker  # the attacks, loaded only when asked for

        self.attacker = build_attacker(self.opt, hello_meta, self._image_size(hello_meta), self.server,
                                       self.arch["aabb"])

    def _finish_attack(self) -> None:
        """--attack ssma, after the client's last step (in a thread holding the lock): the after-training phase,
        then a checkpoint with the attack's outputs."""
        self.attacker.finish(self.label)
        self._save()

    def _save(self) -> None:
        assert self.server is not None and self.optimizer is not None
        start = time.perf_counter()
        self._open_run_dir()
        state = {"format": 1, "arch": json.dumps(self.arch), "hello_meta": json.dumps(self.hello_meta),
                 "schedule": json.dumps(self.schedule), "seed": self.opt.seed, "next_step": self.next_step,
                 "field": self.server.field.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.attacker is not None:
            state["attacker"] = self.attacker.state_dict()
            if self.attacker.optimizer is not None:
                state["attacker_optimizer"] = self.attacker.optimizer.state_dict()
        if self.record is not None:
            self.record.flush()  # the record up to this checkpoint's step, before the checkpoint
        tmp = self.run_dir / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.run_dir / CHECKPOINT)  # atomic: a kill leaves the old or the new checkpoint
        self.durable_step = self.next_step
        if self.attacker is not None:
            self._save_attack_outputs()
        first = not self.checkpoint_cost
        self.checkpoint_cost = {"bytes": (self.run_dir / CHECKPOINT).stat().st_size,
                                "seconds": time.perf_counter() - start}
        self.last_checkpoint = time.monotonic()
        if first:
            print(f"{self.label}: checkpoint at step {self.next_step}: {self.checkpoint_cost['bytes'] / 1e6:.1f} MB "
                  f"in {self.checkpoint_cost['seconds']:.2f} s", flush=True)

    def _checkpoint_due(self, requested: bool) -> bool:
        if requested:  # the client's replay buffer is full
            return True
        if self.opt.checkpoint_every is not None:
            return self.next_step % self.opt.checkpoint_every == 0
        return time.monotonic() - self.last_checkpoint >= self.opt.checkpoint_every_s

    def _save_attack_outputs(self) -> None:
        folder = self.run_dir / "attack"
        folder.mkdir(exist_ok=True)
        surrogate = getattr(self.attacker, "surrogate", self.attacker)  # ssma wraps the surrogate model attacker
        torch.save({"surrogate": surrogate.state_dict(), "hello_meta": json.dumps(self.hello_meta),
                    "step": self.next_step, "attack": self.opt.attack,
                    "finished": bool(getattr(self.attacker, "finished", False))}, folder / "attacker.pt")
        torch.save(self.attacker.dummy.detach().cpu().clone(), folder / "dummies.pt")
        if hasattr(self.attacker, "write_report"):
            self.attacker.write_report(folder)

    def _load(self) -> None:
        state = torch.load(self.run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
        self.opt.seed = int(state["seed"])
        schedule = json.loads(state["schedule"]) if "schedule" in state else self._schedule(None)
        # A checkpoint written before the architecture was one dataclass lacks its newer fields: their defaults
        # (what that server ran), checked as a Hello's would be, so that the client's next Hello compares equal.
        arch = check_arch({**ServerFieldConfig().to_dict(), **json.loads(state["arch"])})
        self._build(arch, json.loads(state["hello_meta"]), schedule)
        self.server.field.load_state_dict(state["field"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.next_step = self.durable_step = int(state["next_step"])
        if self.record is not None:
            self.record.forget_from(self.next_step)
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
        print(f"{self.label}: resumed from {self.run_dir / CHECKPOINT} at step {self.next_step}", flush=True)
        if hasattr(self.attacker, "due") and self.attacker.due(self.next_step):  # killed before the attack's end
            self.finisher = self.attacker.start_finish(self.lock, self._finish_attack)

    # ------------------------------------------------------------------ log
    def _log(self, method: str, data: bytes, msg=None, outcome: str = "ok") -> None:
        entry = {"time": time.time(), "method": method, "bytes": len(data), "outcome": outcome}
        if msg is not None:
            entry.update(kind=msg.kind, step=msg.step, meta_keys=sorted(msg.meta),
                         tensors={n: {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                                      "payload_bytes": msg.payload_bytes[n]} for n, t in msg.tensors.items()})
        if self.received_log is None:
            self._unwritten_log = self._unwritten_log[-9999:] + [json.dumps(entry) + "\n"]
            return
        self.received_log.write(json.dumps(entry) + "\n")
        self.received_log.flush()

    def refuse(self, method: str, data: bytes, message: str) -> None:
        self._log(method, data, outcome=f"refused: {message}")
        print(f"{self.label}: refused {method}: {message}", flush=True)

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
        keys = ("half", "sparse", "int8")
        if not isinstance(wire, dict) or not all(isinstance(wire.get(k, False), bool) for k in keys):
            raise WireError("meta.wire must be {half: bool, sparse: bool, int8: bool}")
        if wire.get("int8") and not wire.get("sparse"):
            raise WireError("meta.wire: int8 is on top of sparse")
        return WireOptions(**{k: wire.get(k, False) for k in keys})

    def _status(self) -> Dict[str, object]:
        return {"next_step": self.next_step, "durable_step": self.durable_step, "protocol": PROTOCOL_VERSION}

    def _schedule(self, sent: object) -> Dict[str, object]:
        """The optimizer schedule: the client's (from Hello), the defaults where it sent none, and the values given
        explicitly on the command line, which must agree with the client's."""
        schedule = dict(SCHEDULE_DEFAULTS)
        theirs = check_schedule(sent) if sent is not None else {}
        schedule.update(theirs)
        for key, value in self.opt.schedule.items():
            if key in theirs and not math.isclose(float(theirs[key]), float(value), rel_tol=1e-9, abs_tol=0.0):
                flag, client_flag = SCHEDULE_FLAGS[key]
                raise Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                               f"s2nerf-server: {flag} {value:g} but the client's schedule has {theirs[key]:g} "
                               f"({client_flag}): start the server without {flag} (it follows the client) or "
                               "give both the same value")
            schedule[key] = type(SCHEDULE_DEFAULTS[key])(value)
        return schedule

    def _check_image_size(self, meta: Dict[str, object]) -> None:
        """Hello's ``image_size`` (the client's largest training image): well-formed, and equal to an explicit
        --image-size."""
        size = meta.get("image_size")
        if size is None:
            return
        if not (isinstance(size, list) and len(size) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1 << 15 for v in size)):
            raise WireError("hello: image_size must be [height, width], positive ints")
        if self.opt.image_size is not None and list(self.opt.image_size) != size:
            height, width = self.opt.image_size
            what = "is smaller than" if size[0] > height or size[1] > width else "does not match"
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                           f"s2nerf-server: --image-size {height} {width} {what} the client's images ({size[0]} x "
                           f"{size[1]}): restart the server without --image-size (it follows the client's Hello) or "
                           f"with --image-size {size[0]} {size[1]}")

    # ------------------------------------------------------------------ RPCs
    def hello(self, data: bytes, context) -> bytes:
        msg = decode(data, "hello")
        if msg.meta.get("protocol") != PROTOCOL_VERSION:
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                           f"s2nerf-server speaks protocol {PROTOCOL_VERSION}, the client {msg.meta.get('protocol')}")
        arch = check_arch(msg.meta.get("arch"))
        self._check_image_size(msg.meta)
        schedule = self._schedule(msg.meta.get("schedule"))
        fresh = self.next_step == 0 and self.received_log is None  # nothing applied or written yet: may rebuild
        if self.arch is None or (fresh and (arch != self.arch or schedule != self.schedule)):
            self.pending = None
            if self.opt.attack != "none":  # what the attacker needs: refused before anything is built
                self._image_size(msg.meta)
                if not isinstance(msg.meta.get("head"), dict):
                    raise WireError(f"hello: 'head' (the client head's architecture) is needed by --attack "
                                    f"{self.opt.attack}")
            check_defense(msg.meta)
            if self.record is not None:
                try:
                    self.record.check(arch, msg.meta, schedule)
                except RecordRefused as err:
                    raise Refusal(err.code, f"{self.label}: {err}") from None
            self._build(arch, {k: v for k, v in msg.meta.items() if k in HELLO_KEYS}, schedule)
        elif arch != self.arch:
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                           f"s2nerf-server: this run was built for another architecture ({self.run_dir}); "
                           "start the server with a new --run-dir")
        elif schedule != self.schedule:
            changed = sorted(k for k in schedule if schedule[k] != self.schedule.get(k))
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                           f"s2nerf-server: this run was built with another optimizer schedule ({', '.join(changed)} "
                           f"differ; {self.run_dir}): give the client the run's schedule or the server a new --run-dir")
        self._log("Hello", data, msg)
        reply = {**self._status(), "checkpoint_every": self.opt.checkpoint_every,
                 "checkpoint_every_s": self.opt.checkpoint_every_s}
        return encode("hello_reply", self.next_step, meta=reply)[0]

    def _check_indices(self, indices: Optional[Tensor]) -> None:
        """With an attacker, the pixels the rays come from must fit its images (checked before anything is done)."""
        if self.attacker is None or indices is None or indices.numel() == 0:
            return
        height, width = self._image_size(self.hello_meta)
        images = int(self.hello_meta.get("num_images", 1))
        low, high = indices.min(dim=0).values.tolist(), indices.max(dim=0).values.tolist()
        if min(low) < 0 or high[0] >= images:
            raise WireError(f"ray_indices: image index outside 0..{images - 1}")
        if high[1] >= height or high[2] >= width:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT,
                           f"s2nerf-server: --image-size {height} {width} is smaller than the client's images (a ray "
                           f"comes from row {high[1]}, column {high[2]}): restart the server with a larger --image-size")

    def forward(self, data: bytes, context) -> bytes:
        msg = decode(data, "forward")
        if self.server is None:
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION, "s2nerf-server: say hello first")
        t = msg.step
        if t < self.next_step:
            raise Refusal(grpc.StatusCode.ALREADY_EXISTS,
                           f"step {t} was already applied; the server is at step {self.next_step}")
        if t > self.next_step:
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                           f"step {t} skips steps {self.next_step}..{t - 1}: replay them first")
        wire = self._wire(msg)
        bundle = self._rays(msg)
        self._check_indices(msg.tensors.get("ray_indices"))
        self._log("Forward", data, msg)
        self.server.train()
        with RNG_LOCK:  # the jitter of step t is drawn from torch's global generator, seeded from (seed, t)
            torch.manual_seed(sampler_seed(self.opt.seed, t))
            out = self.server(bundle)
        self.pending = Pending(t, bundle.origins, bundle.directions, msg.tensors.get("ray_indices"),
                               out.positions.detach(), out.bins.detach(), out.h)
        codecs = {"h": wire.codec("h")}
        return encode("forward_reply", t, meta=self._status(), tensors={"h": out.h, "sample_bins": out.bins},
                      codecs=codecs, half=wire.half, int8=wire.int8)[0]

    def backward(self, data: bytes, context) -> bytes:
        pending = self.pending
        masks = {"grad_h": pending.h.detach() != 0} if pending is not None else None
        try:
            msg = decode(data, "backward", masks=masks)
        except WireError:
            if pending is None:  # a masked gradient cannot be read without its forward
                raise Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                               "no forward is pending on the server: send the forward of this step again")
            raise
        t = msg.step
        if t < self.next_step:
            self._log("Backward", data, msg, outcome="duplicate")
            return encode("backward_reply", t, meta={**self._status(), "duplicate": True})[0]
        if pending is None or pending.step != t:
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION,
                           f"no forward of step {t} is pending on the server (at step {self.next_step}): "
                           "send the forward of this step again")
        grad = msg.tensors.get("grad_h")
        if grad is None or grad.shape != pending.h.shape or not torch.isfinite(grad).all():
            raise WireError(f"grad_h must be finite with shape {list(pending.h.shape)}")
        self._open_run_dir()  # the first applied step creates the run folder
        self._log("Backward", data, msg)
        self.optimizer.zero_grad()
        pending.h.backward(grad)
        self.optimizer.step()
        self.scheduler.step()
        self.next_step, self.pending = t + 1, None
        if self.attacker is not None:
            self.attacker.observe(self._view(pending, grad))
        if self.record is not None:
            self.record(self._view(pending, grad, batch_rays=pending.h.shape[0]), self.arch, self.hello_meta,
                        self.schedule)
        if self._checkpoint_due(msg.meta.get("checkpoint") is True):
            self._save()
        if hasattr(self.attacker, "due") and self.attacker.due(self.next_step) and self.finisher is None:
            self.finisher = self.attacker.start_finish(self.lock, self._finish_attack)  # runs after this reply
        return encode("backward_reply", t, meta={**self._status(), "duplicate": False})[0]

    def _view(self, pending: Pending, grad: Tensor, batch_rays: Optional[int] = None):
        """The ServerView of an applied step, from what this session holds: the rays it received, the positions and
        spacing it drew, its h, the gradient that arrived, and the defense's public settings from Hello."""
        from s2nerf_ns.protocol.channel import ServerView  # the observer interface's type only

        n = pending.origins.shape[0]
        indices = pending.ray_indices if pending.ray_indices is not None else torch.full((n, 3), -1)
        defense = self.hello_meta.get("defense")
        return ServerView(step=pending.step, ray_indices=indices, origins=pending.origins,
                          directions=pending.directions, positions=pending.positions, bins=pending.bins,
                          h=pending.h.detach(), grad=grad, defense=dict(defense) if isinstance(defense, dict) else {},
                          batch_rays=batch_rays)

    @torch.no_grad()
    def render(self, data: bytes, context) -> bytes:
        msg = decode(data, "render")
        if self.server is None:
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION, "s2nerf-server: say hello first")
        wire = self._wire(msg)
        bundle = self._rays(msg)
        self._log("Render", data, msg)
        self.server.eval()
        out = self.server(bundle)
        self.server.train()
        return encode("render_reply", -1, meta=self._status(), tensors={"h": out.h, "sample_bins": out.bins},
                      codecs={"h": wire.codec("h")}, half=wire.half, int8=wire.int8)[0]

    def close(self) -> None:
        if self.finisher is not None:
            self.finisher.join()  # the scene-aided attack's after-training phase ends with its checkpoint
        with self.lock:
            if self.server is not None and self.durable_step != self.next_step:
                self._save()
            if self.received_log is not None:
                self.received_log.close()
