"""The server process (``s2nerf-server``): the server fields, the sampler and their optimizer, behind gRPC.

One process serves one client (``--token-file``: its run folder is ``--run-dir``) or several
(``--client-tokens``: a name and a token per client, each client's run folder ``<run-dir>/<name>/``). Each
client has its own session (:mod:`s2nerf_ns.transport.session`): fields, sampler, optimizer, step counter,
checkpoint, log, attacker and record; a request is authenticated by its token and goes to that token's
session, under that session's lock, so that two clients train concurrently and neither one's faults (a killed
client, a malformed message) touch the other's state. The state machine below is per session.

It imports nothing of the client: the fields and the sampler come from ``protocol.server``; with
``--attack sma`` the attacker (``attacks.surrogate``, which builds a copy of the client head's
*architecture*) is fed only the messages its session received.

Step protocol (the client numbers its training steps ``t``; the server keeps ``next_step``, the number of
steps it has applied):

* ``Forward(t, rays)``: only for ``t == next_step``. The server samples the rays (the stratified jitter is
  seeded from ``(seed, t)``, so a repeated forward of ``t`` is bit-identical), computes ``h``, keeps the graph
  of step ``t`` and answers ``h`` and the sample spacing. ``t < next_step`` is refused with
  ``ALREADY_EXISTS`` and ``t > next_step`` with ``FAILED_PRECONDITION`` (the client must replay the steps
  in between).
* ``Backward(t, dL/dh)``: the server backprops the defended gradient through its cached graph of ``t``,
  steps its optimizer and scheduler (**the server steps on receiving the gradient of step t**), sets
  ``next_step = t + 1`` and, when a checkpoint is due (every ``--checkpoint-every`` steps, or else every
  ``--checkpoint-every-s`` seconds, or when the client asks because its replay buffer is full), writes its
  checkpoint *before* replying. A
  repeated ``Backward(t)`` with ``t < next_step`` is acknowledged as a duplicate and not applied again. A
  ``Backward(t)`` without a cached forward of ``t`` (the server restarted in between) is refused with
  ``FAILED_PRECONDITION``: the client sends ``Forward(t)`` again, then the gradient.
* Replies carry ``next_step`` and ``durable_step`` (the step count of the last checkpoint); the client keeps
  the messages of the steps after ``durable_step`` to replay them into a server restarted from an older
  checkpoint.
* ``Render(rays)``: eval renders (no step, no gradient, nothing cached, the attacker is not fed).

``Hello`` carries the client's schedule of the server's optimizer (:func:`wire.check_schedule`): the server
follows it unless ``--lr``/``--lr-final``/``--lr-max-steps`` were given, and refuses a Hello that disagrees with
a value given explicitly (or with the schedule of the run it resumed). Nothing is written before the first
applied step: a refused Hello or Forward leaves no run folder (refusals are printed, and logged to
``received.jsonl`` once the folder exists).
"""

from __future__ import annotations

import hmac
from concurrent import futures
from pathlib import Path
from typing import Dict, Optional

import grpc

from s2nerf_ns.transport.session import (CHECKPOINT, PROTOCOL_VERSION, SCHEDULE_FLAGS, ClientSession, Pending,
                                         Refusal, ServerOptions, sampler_seed)
from s2nerf_ns.transport.wire import WireError

SERVICE = "s2nerf.SplitServer"
TOKEN_HEADER = "s2nerf-token"
__all__ = ["CHECKPOINT", "PROTOCOL_VERSION", "SCHEDULE_FLAGS", "Pending", "ServerOptions", "SplitServer",
           "sampler_seed", "serve"]


class SplitServer:
    """The sessions of this process (one per client token) and the four RPCs, routed by token."""

    def __init__(self, options: ServerOptions) -> None:
        self.opt = options
        run_dir = Path(options.run_dir)
        if options.clients:
            self.sessions: Dict[str, ClientSession] = {
                token: ClientSession(name, run_dir / name, options) for name, token in options.clients.items()}
        else:
            self.sessions = {options.token: ClientSession("", run_dir, options)}

    def _authenticate(self, context: grpc.ServicerContext) -> ClientSession:
        token = str(dict(context.invocation_metadata()).get(TOKEN_HEADER, "")).encode()
        found = None
        for known, session in self.sessions.items():  # every token compared, in constant time each
            if hmac.compare_digest(token, known.encode()):
                found = session
        if found is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "s2nerf-server: wrong or missing token")
        return found

    def _handler(self, method: str):
        def handle(data: bytes, context: grpc.ServicerContext) -> bytes:
            session = self._authenticate(context)
            try:
                with session.lock:
                    return getattr(session, method.lower())(data, context)
            except WireError as err:
                session.refuse(method, data, str(err))
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"s2nerf-server: malformed message: {err}")
            except Refusal as err:
                session.refuse(method, data, err.message)
                context.abort(err.code, err.message)
        return handle

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()

    def grpc_handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            name: grpc.unary_unary_rpc_method_handler(self._handler(name))
            for name in ("Hello", "Forward", "Backward", "Render")})


def serve(options: ServerOptions, address: str, credentials: Optional[grpc.ServerCredentials] = None,
          workers: Optional[int] = None) -> grpc.Server:
    """Start serving on ``address``: TLS with ``credentials``, plaintext without (the command line asks for
    ``--insecure`` then). SO_REUSEPORT is off, so a port another process holds is an error, not a shared port."""
    state = SplitServer(options)
    limits = [("grpc.max_receive_message_length", options.max_message_bytes),
              ("grpc.max_send_message_length", options.max_message_bytes), ("grpc.so_reuseport", 0)]
    workers = workers or 2 * len(state.sessions) + 2  # a request of each client, and refusals, at once
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=limits)
    server.add_generic_rpc_handlers((state.grpc_handler(),))
    try:
        port = (server.add_secure_port(address, credentials) if credentials is not None
                else server.add_insecure_port(address))
    except RuntimeError:
        port = 0
    if port == 0:
        raise SystemExit(f"s2nerf-server: error: --listen {address}: cannot listen there (port in use, or not an "
                         "address of this machine)")
    server.start()
    server.state = state  # type: ignore[attr-defined]
    return server
