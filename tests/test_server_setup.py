"""Setting up the two processes: s2nerf-server's values checked at startup, the client's at config time, TLS,
the schedule taken from the client's Hello, and checkpoints by cost with the client's replay buffer.

Loopback only; every server process is started and killed here."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import torch
import tyro

from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

from s2nerf_ns.errors import InputError
from s2nerf_ns.integration.methods import method_config
from s2nerf_ns.integration.model import SplitNerfModelConfig
from s2nerf_ns.transport.certs import CertConfig, check_server_pair
from s2nerf_ns.transport.client import RemoteOptions, RemoteServerError, check_remote, server_schedule
from s2nerf_ns.transport.server_cli import ServerConfig, run
from s2nerf_ns.transport.wire import SCHEDULE_DEFAULTS, encode
from conftest import random_batch, tiny_model
from helpers import make_optimizer, train_model
from test_two_process import TOKEN, ServerProcess, free_port, remote_model, server_field_state

pytestmark = pytest.mark.timeout(400)


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Two self-signed pairs made by s2nerf-server-cert: the server's, and another lab's (a wrong CA)."""
    root = tmp_path_factory.mktemp("certs")
    ours = CertConfig(host=["localhost"], out_dir=root / "ours").main()
    theirs = CertConfig(host=["localhost"], out_dir=root / "theirs").main()
    return ours, theirs


# ---------------------------------------------------------------------------- server values at startup
@pytest.mark.parametrize("args, line", [
    (["--insecure", "--attack", "ssma"], "--attack ssma needs --leaked-views DIR"),  # sma: size from Hello
    (["--insecure", "--listen", "127.0.0.1"], "--listen 127.0.0.1: give host:port"),
    (["--insecure", "--listen", "127.0.0.1:0"], "--listen 127.0.0.1:0: give host:port"),
    (["--insecure", "--checkpoint-every", "0"], "--checkpoint-every 0: give at least 1"),
    (["--insecure", "--checkpoint-every-s", "0"], "--checkpoint-every-s 0.0: give a positive number"),
    (["--insecure", "--attack", "sma", "--image-size", "0", "8"], "--image-size 0 8: give positive sizes"),
    (["--insecure", "--lr", "-1"], "--lr -1.0: give a positive number"),
    (["--insecure", "--lr-max-steps", "0"], "--lr-max-steps 0: give at least 1"),
    (["--insecure", "--max-message-mb", "4096"], "--max-message-mb 4096.0: gRPC's limit"),
    ([], "give --tls-cert and --tls-key"),
    (["--insecure", "--tls-cert", "a.crt", "--tls-key", "a.key"], "--insecure with --tls-cert/--tls-key"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_every_server_value_is_checked_at_startup_in_one_line(tmp_path, token_file, capsys, args, line):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit):
        tyro.cli(ServerConfig, args=["--token-file", str(token_file), "--run-dir", str(run_dir), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and line in err[0], err
    assert not run_dir.exists()


def test_token_port_and_tls_files_are_checked_before_serving(tmp_path, token_file, certs):
    (cert, key), (_, other_key) = certs
    empty = tmp_path / "empty"
    empty.write_text("\n")
    run_dir = tmp_path / "run"
    cases = [(dict(token_file=tmp_path / "nosuch", insecure=True), "--token-file"),
             (dict(token_file=empty, insecure=True), "the file is empty"),
             (dict(token_file=token_file, tls_cert=cert, tls_key=other_key), "not the key of --tls-cert"),
             (dict(token_file=token_file, tls_cert=token_file, tls_key=key), "not a PEM certificate")]
    for kwargs, line in cases:
        with pytest.raises(InputError, match=line):
            run(ServerConfig(run_dir=run_dir, listen=f"127.0.0.1:{free_port()}", **kwargs))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = f"127.0.0.1:{held.getsockname()[1]}"
        with pytest.raises(InputError, match=f"--listen {busy}: cannot listen there: the port is in use"):
            run(ServerConfig(token_file=token_file, run_dir=run_dir, listen=busy, insecure=True))
    with pytest.raises(InputError, match="exists and is not a folder"):
        ServerConfig(token_file=token_file, run_dir=token_file, insecure=True)
    assert not run_dir.exists()
    assert check_server_pair(cert, key)[0].startswith(b"-----BEGIN CERTIFICATE-----")
    assert (key.stat().st_mode & 0o777) == 0o600


def test_the_command_prints_one_line_and_writes_nothing(tmp_path, token_file):
    run_dir = tmp_path / "run"
    base = [sys.executable, "-m", "s2nerf_ns.transport.server_cli", "--token-file", str(token_file), "--run-dir",
            str(run_dir), "--insecure"]
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = f"127.0.0.1:{held.getsockname()[1]}"
        for extra, line in ((["--listen", "127.0.0.1"], "s2nerf-server: error: --listen 127.0.0.1: give host:port"),
                            (["--listen", busy], f"s2nerf-server: error: --listen {busy}: cannot listen there: the "
                                                 "port is in use")):
            out = subprocess.run(base + extra, capture_output=True, text=True, timeout=120)
            assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
            assert out.stderr.strip().splitlines()[-1].startswith(line)
    assert not run_dir.exists()


# ---------------------------------------------------------------------------- client values at config time
def test_remote_client_settings_are_checked_when_the_config_is_built(tmp_path, token_file, certs):
    (cert, _), _ = certs
    empty = tmp_path / "empty"
    empty.write_text("")
    ok = RemoteOptions(insecure=True)
    cases = [(("server-host", token_file, "uniform", ok), "--pipeline.model.server-address server-host: give host:port"),
             (("h:99999", token_file, "uniform", ok), "give host:port"),
             (("h:1", None, "uniform", ok), "--pipeline.model.server-token-file is needed"),
             (("h:1", tmp_path / "nosuch", "uniform", ok), "--pipeline.model.server-token-file .*cannot read"),
             (("h:1", empty, "uniform", ok), "the file is empty"),
             (("h:1", token_file, "proposal", ok), "--pipeline.model.sampler proposal"),
             (("h:1", token_file, "uniform", RemoteOptions()), "give --pipeline.model.remote.tls-ca"),
             (("h:1", token_file, "uniform", RemoteOptions(insecure=True, tls_ca=cert)), "choose one"),
             (("h:1", token_file, "uniform", RemoteOptions(tls_ca=token_file)), "tls-ca .*not a PEM certificate")]
    for args, line in cases:
        with pytest.raises(InputError, match=line):
            check_remote(*args)
    with pytest.raises(InputError, match="--pipeline.model.remote.rpc-timeout-s 0"):
        RemoteOptions(rpc_timeout_s=0)
    # at config time (tyro builds the model config before ns-train writes config.yml)
    with pytest.raises(InputError, match="--pipeline.model.server-token-file"):
        SplitNerfModelConfig(server_address="127.0.0.1:50051", server_token_file=tmp_path / "nosuch", remote=ok)
    check_remote("[::1]:50051", token_file, "uniform", RemoteOptions(tls_ca=cert))  # IPv6 with TLS: fine
    # the registered methods build (their default address is set after their checks)
    assert method_config("s2nerf-remote").pipeline.model.server_address == "127.0.0.1:50051"


# ---------------------------------------------------------------------------- image size: before any step
def test_a_smaller_image_size_is_refused_before_any_step_and_no_run_folder_is_left(tmp_path, token_file):
    proc = ServerProcess(tmp_path / "server", token_file, free_port(), "--attack", "sma", "--image-size", "4", "4",
                         "--checkpoint-every", "1").start()
    try:
        channel = grpc.insecure_channel(proc.address)
        hello = channel.unary_unary("/s2nerf.SplitServer/Hello")
        model = tiny_model(server_address=proc.address, server_token_file=token_file,
                           remote=RemoteOptions(insecure=True))
        arch = model.server.arch
        with pytest.raises(grpc.RpcError) as err:  # a client that says its size at Hello: refused there
            hello(encode("hello", meta={"protocol": 1, "arch": arch, "head": model.client_architecture(),
                                        "image_size": [8, 8]})[0], metadata=(("s2nerf-token", TOKEN),), timeout=20)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "--image-size 4 4 is smaller than the client's images (8 x 8)" in err.value.details()
        model.train()
        with pytest.raises(RemoteServerError) as refused:  # pixels outside 4 x 4: the first forward is refused
            model(random_batch()[0])
        line = str(refused.value)
        assert "\n" not in line and "--image-size 4 4 is smaller than the client's images" in line
        assert not proc.run_dir.exists()  # nothing applied, nothing written
    finally:
        proc.kill()
    log = (tmp_path / f"server-{proc.port}.log").read_text()
    assert "refused Hello" in log and "refused Forward" in log


def test_a_refused_hello_is_logged_as_refused_once_the_run_folder_exists(tmp_path, token_file):
    proc = ServerProcess(tmp_path / "server", token_file, free_port(), "--attack", "sma", "--image-size", "8", "8",
                         "--checkpoint-every", "1").start()
    try:
        reference = tiny_model()
        hello = grpc.insecure_channel(proc.address).unary_unary("/s2nerf.SplitServer/Hello")
        with pytest.raises(grpc.RpcError):
            hello(encode("hello", meta={"protocol": 1, "arch": {"num_levels": 10 ** 9}})[0],
                  metadata=(("s2nerf-token", TOKEN),), timeout=20)
        assert not proc.run_dir.exists()
        train_model(remote_model(proc.address, token_file, reference), 2)
    finally:
        proc.kill()
    received = [json.loads(line) for line in (proc.run_dir / "received.jsonl").read_text().splitlines()]
    assert received[0]["method"] == "Hello" and received[0]["outcome"].startswith("refused: hello: arch.")
    assert [r["outcome"] for r in received[1:]] == ["ok"] * (len(received) - 1)
    assert [r["method"] for r in received[1:]] == ["Hello", "Forward", "Backward", "Forward", "Backward"]


# ---------------------------------------------------------------------------- TLS
@pytest.mark.slow
def test_tls_equals_plaintext_bit_for_bit_and_a_wrong_ca_or_name_is_refused_in_one_line(tmp_path, token_file, certs):
    (cert, key), (other_cert, _) = certs
    plain = ServerProcess(tmp_path / "plain", token_file, free_port(), "--checkpoint-every", "1").start()
    tls = ServerProcess(tmp_path / "tls", token_file, free_port(), "--checkpoint-every", "1", "--tls-cert",
                        str(cert), "--tls-key", str(key)).start()
    try:
        reference = tiny_model()
        plain_losses, _ = train_model(remote_model(plain.address, token_file, reference), 4)
        tls_address = f"localhost:{tls.port}"
        tls_losses, _ = train_model(remote_model(tls_address, token_file, reference, insecure=False, tls_ca=cert), 4)
        assert tls_losses == plain_losses
        a, b = server_field_state(plain.run_dir), server_field_state(tls.run_dir)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

        plain_by_name = f"localhost:{plain.port}"
        for address, options, line in (
                (tls_address, dict(tls_ca=other_cert), "is not trusted: its certificate does not verify against "
                                                       f"--pipeline.model.remote.tls-ca {other_cert} (wrong CA?)"),
                (tls_address, dict(tls_ca=cert, tls_server_name="wrong.example"),
                 "its certificate is not made for that host name"),
                (tls_address, dict(insecure=True), "accepts connections but not in clear"),
                (plain_by_name, dict(tls_ca=cert), "does not speak TLS")):
            with pytest.raises(RemoteServerError) as err:  # the specific line, never the time-out's
                tiny_model(server_address=address, server_token_file=token_file,
                           remote=RemoteOptions(connect_timeout_s=60, **options))
            assert "\n" not in str(err.value) and line in str(err.value), str(err.value)
        assert tls.proc.poll() is None and plain.proc.poll() is None  # still serving
    finally:
        plain.kill()
        tls.kill()
    assert "(plaintext)" in (tmp_path / f"server-{plain.port}.log").read_text()
    assert "warning: --insecure" in (tmp_path / f"server-{plain.port}.log").read_text()
    assert "(TLS)" in (tmp_path / f"server-{tls.port}.log").read_text()


# ---------------------------------------------------------------------------- schedule from Hello
SHORT = {**SCHEDULE_DEFAULTS, "lr": 2e-2, "lr_final": 1e-4, "max_steps": 6}
"""A schedule far from the server's defaults, that decays within the test's steps."""


def test_the_server_takes_its_schedule_from_hello_and_refuses_an_explicit_mismatch(tmp_path, token_file):
    assert server_schedule(method_config("s2nerf-remote").optimizers) == SCHEDULE_DEFAULTS
    reference = tiny_model()
    opts = []
    for name, params in reference.get_param_groups().items():
        if name != "server_fields":
            opts.append(make_optimizer(params))
            continue
        opt = torch.optim.Adam(params, lr=SHORT["lr"], eps=1e-15, betas=(0.9, 0.99))
        opts.append((opt, ExponentialDecaySchedulerConfig(lr_final=SHORT["lr_final"], max_steps=SHORT["max_steps"])
                     .setup().get_scheduler(opt, SHORT["lr"])))
    follows = ServerProcess(tmp_path / "follows", token_file, free_port(), "--checkpoint-every", "1").start()
    explicit = ServerProcess(tmp_path / "explicit", token_file, free_port(), "--lr-max-steps", "5000").start()
    try:
        remote = remote_model(follows.address, token_file, reference, server_schedule=SHORT)
        ref_losses, _ = train_model(reference, 8, opts=opts)
        losses, _ = train_model(remote, 8)
        assert losses == ref_losses
        state = server_field_state(follows.run_dir)
        for name, value in reference.server.field.state_dict().items():
            assert torch.equal(state[name], value), name
        config = json.loads((follows.run_dir / "server_config.json").read_text())
        assert config["schedule"] == SHORT
        with pytest.raises(RemoteServerError) as err:
            remote_model(explicit.address, token_file, reference, server_schedule=SHORT)
        line = str(err.value)
        assert "\n" not in line and "--lr-max-steps 5000 but the client's schedule has 6" in line
        assert "--optimizers.server-fields.scheduler.max-steps" in line
        assert not explicit.run_dir.exists()
    finally:
        follows.kill()
        explicit.kill()


# ---------------------------------------------------------------------------- checkpoints by cost
def test_a_full_replay_buffer_asks_for_a_checkpoint_and_replay_still_recovers(tmp_path, token_file):
    """By time, the server would not checkpoint in this test (an hour); the client's replay buffer (about two
    steps' messages here) makes it checkpoint, and a kill after that replays the rest and loses nothing."""
    proc = ServerProcess(tmp_path / "server", token_file, free_port(), "--checkpoint-every-s", "3600").start()
    try:
        reference = tiny_model()
        budget = 40_000  # bytes: a step's messages held here are about 18 kB (rays, and the 16 kB gradient)
        remote = remote_model(proc.address, token_file, reference, replay_buffer_mb=budget / (1 << 20),
                              reconnect_timeout_s=90)
        ref_losses, _ = train_model(reference, 6)

        def fault(step):
            if step == 5:  # after the forward of step 5: the steps after the requested checkpoint are replayed
                held = sum(len(f) for frames in remote.server.frames.values() for f in frames.values())
                assert 0 < remote.server.durable_step < 5 and held <= budget
                proc.kill()
                proc.start(wait=False)

        losses, _ = train_model(remote, 6, during=fault)
        assert losses == ref_losses and remote.server.reconnects >= 1
    finally:
        proc.stop()  # SIGTERM: the server checkpoints on the way out
    state = server_field_state(proc.run_dir)
    for name, value in reference.server.field.state_dict().items():
        assert torch.equal(state[name], value), name


def test_the_tls_probe_decides_nothing_where_nothing_answers_or_the_peer_hangs_up(certs):
    """No false refusal: a closed port, or a peer that accepts and closes at once (a busy or restarting server),
    leaves the probe undecided; only the handshake's own outcome makes a line."""
    import threading

    from s2nerf_ns.transport.tls_diagnosis import tls_probe

    (cert, _), _ = certs
    options = RemoteOptions(insecure=False, tls_ca=cert)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert tls_probe("x", "127.0.0.1", closed, options) is None
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def hang_up():
        connection, _ = listener.accept()
        connection.close()

    thread = threading.Thread(target=hang_up)
    thread.start()
    try:
        assert tls_probe("x", "127.0.0.1", listener.getsockname()[1], options) is None
    finally:
        thread.join(5)
        listener.close()
