"""``s2nerf-server``'s command line: every value is checked here, at startup, before anything is served or
written (one line naming the flag); the server itself is :mod:`s2nerf_ns.transport.server`.

Server side only: this module imports the server, the wire format, the certificate checks and the scene-aided
attack's settings (plain values, shared with the in-process pipeline), and with ``--attack ssma`` ``server_attack``
to read the leaked photos; nothing of the client.
"""

from __future__ import annotations

import dataclasses
import errno
import re
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Literal, Optional, Tuple

import tyro

from s2nerf_ns.attacks.scene_aided_settings import SceneAidedSettings
from s2nerf_ns.errors import InputError
from s2nerf_ns.transport.certs import check_server_pair

CLIENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
INSECURE_WARNING = ("s2nerf-server: warning: --insecure: the token and every tensor travel in clear; use it only on "
                    "loopback or a network you trust (TLS: --tls-cert/--tls-key, see s2nerf-server-cert)")


def split_address(flag: str, address: str) -> Tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) -> (host, port); anything else is an InputError naming ``flag``."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError(f"{flag} {address}: give host:port, e.g. 127.0.0.1:50051 or 0.0.0.0:50051 "
                         "(the port is needed: there is no default port)")
    return host, int(port)


def _writable_folder(flag: str, folder: Path) -> None:
    """The folder exists and is writable, or could be created (checked without creating it)."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{flag} {folder}: exists and is not a folder")
    parent = folder
    while not parent.exists():
        parent = parent.parent
    try:
        with tempfile.TemporaryFile(dir=parent):  # a probe: nothing is left behind
            pass
    except OSError as err:
        raise InputError(f"{flag} {folder}: cannot write in {parent} ({err.strerror})") from None


@dataclass
class ServerConfig(SceneAidedSettings):
    """Serve the server part of a split NeRF (hash grid, first density layers, sampler and their optimizer) to
    `ns-train splitnerf-remote` / `s2nerf-remote` clients over gRPC, one (--token-file) or several
    (--client-tokens), each with its own fields and run folder (README, "Two machines")."""

    token_file: Optional[Path] = None
    """File holding the token shared with the one client (out of band); its first line, stripped, is the token.
    The client's run folder is --run-dir."""
    client_tokens: Optional[Path] = None
    """Several clients: a file with one line per client, NAME TOKEN (NAME: letters, digits, - and _; # comments).
    Each client has its own fields, optimizer, steps, checkpoint and run folder, <run-dir>/NAME/."""
    listen: str = "127.0.0.1:50051"
    """host:port to serve on (0.0.0.0:PORT for every interface)."""
    run_dir: Path = Path("outputs/s2nerf-server")
    """Checkpoints, received.jsonl, attack outputs and the record (created at the first applied step); a
    checkpoint there is resumed. With --client-tokens, one folder per client: <run-dir>/NAME/."""
    tls_cert: Optional[Path] = None
    """PEM certificate of this server (TLS); s2nerf-server-cert makes a self-signed one."""
    tls_key: Optional[Path] = None
    """PEM private key of --tls-cert."""
    insecure: bool = False
    """Serve without TLS (the token and the tensors in clear): only on loopback or a trusted network."""
    seed: int = 42
    """Seed of the fields' initialisation and of the sampler's jitter."""
    lr: Optional[float] = None
    """Adam's learning rate of the server fields (default: the client's, sent in Hello; 1e-2 if it sends none).
    Given explicitly, a client with another value is refused."""
    lr_final: Optional[float] = None
    """Final learning rate of the exponential decay (default: the client's; 1e-3)."""
    lr_max_steps: Optional[int] = None
    """Steps of the exponential decay (default: the client's --optimizers.server-fields.scheduler.max-steps;
    5000)."""
    checkpoint_every: Optional[int] = None
    """Checkpoint after every N applied steps (default: by time, --checkpoint-every-s)."""
    checkpoint_every_s: float = 60.0
    """Without --checkpoint-every: checkpoint when this many seconds have passed since the last one (and when the
    client's replay buffer is full, and on SIGTERM/Ctrl-C)."""
    attack: Literal["none", "sma", "ssma"] = "none"
    """sma: a surrogate model attacker in this process, fed with what it receives; ssma: the same plus the
    scene-aided phase on the photos of --leaked-views (as splitnerf-ssma in one process). The embedding and
    geometry attacks need no flag: s2nerf-audit --server-run replays them on this server's --record-server-view."""
    image_size: Optional[Tuple[int, int]] = None
    """HEIGHT WIDTH of the client's images (the attacker's dummies); default: the size the client sends in Hello.
    Given explicitly, a client with another size is refused at Hello."""
    leaked_views: Optional[Path] = None
    """--attack ssma: folder of the photos the server was given, listed in DIR/leaked.json: {"frames": [{"file":
    "a.png", "fx", "fy", "cx", "cy", "c2w": 3x4 camera-to-world, OpenGL axes, in the frame of the rays the client
    sends (needed by --pose known)}]}."""
    pose: Literal["known", "estimate"] = "known"
    """--attack ssma: known: the leaked photos' c2w are used; estimate: pixels only, the pose is searched here
    (from the training poses recovered from the received rays) after the client's last step."""
    pose_search: Literal["retrieval", "global"] = "retrieval"
    """--pose estimate: first guess by retrieval over the training poses, or by the global search (its default
    settings; meant for a GPU)."""
    replay_steps: int = 200
    """--attack ssma: attacker-only steps replaying the received gradients, after the post-training steps."""
    max_message_mb: float = 512.0
    """Largest message received or sent (MB)."""
    threads: int = 0
    """torch CPU threads (0: torch's default)."""
    record_server_view: bool = False
    """Keep what each applied step delivered (subsampled ServerViews: rays, bins, h, the gradient received, the
    defense's public settings from Hello) in the run folder's server_view/, as an in-process run's
    --pipeline.record-server-view does (read by s2nerf-audit --server-run)."""
    server_view_max_mb: float = 256.0
    """--record-server-view: size budget of a run's record in MiB (per client); the rays kept per step follow."""
    server_view_every: int = 1
    """--record-server-view: keep every N-th training step."""

    def __post_init__(self) -> None:
        split_address("--listen", self.listen)
        self._check_scene_aided()
        if self.image_size is not None and min(self.image_size) < 1:
            raise InputError(f"--image-size {self.image_size[0]} {self.image_size[1]}: give positive sizes")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise InputError(f"--checkpoint-every {self.checkpoint_every}: give at least 1 (steps)")
        if not (self.checkpoint_every_s > 0 and self.checkpoint_every_s < float("inf")):
            raise InputError(f"--checkpoint-every-s {self.checkpoint_every_s}: give a positive number of seconds")
        for flag, value in (("--lr", self.lr), ("--lr-final", self.lr_final), ("--max-message-mb",
                                                                                 self.max_message_mb)):
            if value is not None and not (0 < value < float("inf")):
                raise InputError(f"{flag} {value}: give a positive number")
        if self.lr_max_steps is not None and self.lr_max_steps < 1:
            raise InputError(f"--lr-max-steps {self.lr_max_steps}: give at least 1")
        if self.max_message_mb > 2047:
            raise InputError(f"--max-message-mb {self.max_message_mb}: gRPC's limit is 2047 MB")
        if self.threads < 0:
            raise InputError(f"--threads {self.threads}: give 0 (torch's default) or more")
        if self.seed < 0:
            raise InputError(f"--seed {self.seed}: give a seed >= 0")
        if self.insecure and (self.tls_cert or self.tls_key):
            raise InputError("--insecure with --tls-cert/--tls-key: choose one")
        if not self.insecure and (self.tls_cert is None or self.tls_key is None):
            raise InputError("give --tls-cert and --tls-key (s2nerf-server-cert --host HOST --out-dir certs makes a "
                             "pair), or --insecure to serve in clear on a trusted network")
        if (self.token_file is None) == (self.client_tokens is None):
            raise InputError("give --token-file (one client) or --client-tokens (several clients), one of them")
        if not (0 < self.server_view_max_mb < float("inf")):
            raise InputError(f"--server-view-max-mb {self.server_view_max_mb}: give a positive size in MiB")
        if self.server_view_every < 1:
            raise InputError(f"--server-view-every {self.server_view_every}: give at least 1 step")
        _writable_folder("--run-dir", Path(self.run_dir))

    def _check_scene_aided(self) -> None:
        if (self.attack == "ssma") != (self.leaked_views is not None):
            raise InputError("--attack ssma needs --leaked-views DIR (the photos the server was given)"
                             if self.attack == "ssma" else f"--leaked-views is for --attack ssma (not {self.attack})")
        if self.leaked_views is not None and not Path(self.leaked_views).is_dir():
            raise InputError(f"--leaked-views {self.leaked_views}: no such folder (the leaked photos and their "
                             "leaked.json)")
        for flag, value, least in (("--pose-rounds", self.pose_rounds, 0), ("--pose-refine-steps",
                                   self.pose_refine_steps, 0), ("--pose-fit-steps", self.pose_fit_steps, 0),
                                   ("--leak-rays-per-step", self.leak_rays_per_step, 1),
                                   ("--post-training-steps", self.post_training_steps, 0),
                                   ("--post-training-replay-every", self.post_training_replay_every, 0),
                                   ("--replay-steps", self.replay_steps, 0)):
            if value < least:
                raise InputError(f"{flag} {value}: give {least} or more")
        for flag, value in (("--leak-weight", self.leak_weight), ("--leak-lr", self.leak_lr)):
            if not (0 < value < float("inf")):
                raise InputError(f"{flag} {value}: give a positive number")

    def scene_aided(self):
        """--attack ssma: the leaked photos (read and checked here, before serving) and the phase's settings."""
        if self.attack != "ssma":
            return None
        from s2nerf_ns.transport.server_attack import SceneAidedOptions, read_leaked_views

        views = read_leaked_views(Path(self.leaked_views), self.pose)
        names = [f.name for f in dataclasses.fields(SceneAidedOptions)]
        return views, SceneAidedOptions(**{name: getattr(self, name) for name in names})

    def token(self) -> str:
        """The one client's token (--token-file)."""
        token = _read("--token-file", self.token_file)
        if not token:
            raise InputError(f"--token-file {self.token_file}: the file is empty (put the shared token in it)")
        return token

    def clients(self) -> Dict[str, str]:
        """--client-tokens: client name -> token (names and tokens unique)."""
        flag, out = f"--client-tokens {self.client_tokens}", {}
        for number, line in enumerate(_read("--client-tokens", self.client_tokens).splitlines(), 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if len(fields) != 2 or not CLIENT_NAME.fullmatch(fields[0]):
                raise InputError(f"{flag}: line {number}: give NAME TOKEN (NAME: letters, digits, - and _)")
            name, token = fields
            if name in out or token in out.values():
                raise InputError(f"{flag}: line {number}: client {name!r} or its token is given twice (each client "
                                 "needs its own name and token)")
            out[name] = token
        if not out:
            raise InputError(f"{flag}: the file names no client (one line per client: NAME TOKEN)")
        return out

    def check_port_free(self) -> None:
        host, port = split_address("--listen", self.listen)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as err:
            raise InputError(f"--listen {self.listen}: unknown host {host!r} ({err.strerror})") from None
        family, _, _, _, sockaddr = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # as gRPC binds: SO_REUSEADDR lets a restarted server bind over its own TIME_WAIT connections, and
            # still fails where another process listens
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as err:
                reason = "the port is in use" if err.errno == errno.EADDRINUSE else err.strerror
                raise InputError(f"--listen {self.listen}: cannot listen there: {reason}") from None

    def credentials(self):
        """gRPC server credentials from --tls-cert/--tls-key (checked: PEM, matching, not expired), or None."""
        if self.insecure:
            return None
        import grpc

        cert, key = check_server_pair(self.tls_cert, self.tls_key)
        return grpc.ssl_server_credentials([(key, cert)])


def _read(flag: str, path: Path) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as err:
        raise InputError(f"{flag} {path}: cannot read it ({err.strerror})") from None


def run(config: ServerConfig):
    """Check what needs the file system and the network, then serve (returns the started gRPC server)."""
    import torch

    from s2nerf_ns.transport.server import ServerOptions, serve

    token = config.token() if config.token_file is not None else ""
    clients = config.clients() if config.client_tokens is not None else {}
    credentials = config.credentials()
    scene_aided = config.scene_aided()
    config.check_port_free()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    explicit = {"lr": config.lr, "lr_final": config.lr_final, "max_steps": config.lr_max_steps}
    options = ServerOptions(run_dir=config.run_dir, token=token, clients=clients, seed=config.seed,
                            schedule={k: v for k, v in explicit.items() if v is not None},
                            checkpoint_every=config.checkpoint_every, checkpoint_every_s=config.checkpoint_every_s,
                            attack=config.attack, image_size=tuple(config.image_size) if config.image_size else None,
                            scene_aided=scene_aided,
                            max_message_bytes=int(config.max_message_mb * (1 << 20)),
                            record_server_view=config.record_server_view,
                            server_view_max_mb=config.server_view_max_mb, server_view_every=config.server_view_every)
    if config.insecure:
        print(INSECURE_WARNING, flush=True)
    server = serve(options, config.listen, credentials)
    mode = "TLS" if credentials is not None else "plaintext"
    served = f"clients {', '.join(clients)}, run folders {config.run_dir}/NAME" if clients else \
        f"run folder {config.run_dir}"
    print(f"s2nerf-server: serving on {config.listen} ({mode}), {served}", flush=True)
    return server


def main() -> None:
    from s2nerf_ns.errors import install as install_error_printers

    install_error_printers()  # one-line errors: installed by the command, not by importing the package
    sys.argv[0] = "s2nerf-server"  # the one-line errors are prefixed with it (also under python -m)
    server = run(tyro.cli(ServerConfig))
    signal.signal(signal.SIGTERM, lambda *_: server.stop(grace=2.0))  # checkpoint on the way out
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(grace=2.0)
        server.state.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
