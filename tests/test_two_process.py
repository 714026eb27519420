"""Client and server in two processes over gRPC (loopback only; every server is started and killed here)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from s2nerf_ns.protocol.channel import CLIENT_TO_SERVER, SERVER_TO_CLIENT
from s2nerf_ns.transport.client import RemoteOptions, RemoteServerError
from s2nerf_ns.transport.wire import WireError, decode, encode
from conftest import random_batch, tiny_model
from helpers import SERVER_SEED, train_model

pytestmark = pytest.mark.timeout(400)
TOKEN = "s3cret-token"
SEED = SERVER_SEED  # tiny_model seeds 0 before building the server field, so the server's init matches


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """An s2nerf-server subprocess on a loopback port; always killed by the test that starts it."""

    def __init__(self, run_dir: Path, token_file: Path, port: int, *extra: str) -> None:
        self.run_dir, self.token_file, self.port, self.extra = run_dir, token_file, port, extra
        self.address = f"127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> "ServerProcess":
        security = [] if "--tls-cert" in self.extra else ["--insecure"]  # loopback: plaintext, said explicitly
        cmd = [sys.executable, "-m", "s2nerf_ns.transport.server_cli", "--listen", self.address, "--token-file",
               str(self.token_file), "--run-dir", str(self.run_dir), "--seed", str(SEED), "--threads",
               str(torch.get_num_threads()), "--max-message-mb", "1", *security, *self.extra]
        self.log = open(self.run_dir.parent / f"server-{self.port}.log", "a")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, "the server process died"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"server at {self.address} did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def server(tmp_path, token_file):
    proc = ServerProcess(tmp_path / "server", token_file, free_port(), "--attack", "sma", "--image-size", "8", "8",
                         "--checkpoint-every", "1")
    proc.start()
    yield proc
    proc.kill()


def remote_model(address, token_file, reference, **options):
    model = tiny_model(server_address=address, server_token_file=token_file,
                       remote=RemoteOptions(**{"insecure": True, **options}))
    model.client_head.load_state_dict(reference.client_head.state_dict())  # same client init as the reference
    return model


def server_field_state(run_dir: Path):
    return torch.load(run_dir / "server_checkpoint.pt", map_location="cpu", weights_only=True)["field"]


def test_two_processes_equal_one_process_and_the_wire_equals_the_transcript(server, token_file):
    reference = tiny_model()
    remote = remote_model(server.address, token_file, reference)
    ref_losses, _ = train_model(reference, 20)
    losses, _ = train_model(remote, 20)
    assert losses == ref_losses  # fp32 wire: bit-identical
    for (name, p), q in zip(remote.client_head.state_dict().items(), reference.client_head.state_dict().values()):
        assert torch.equal(p, q), name
    state = server_field_state(server.run_dir)
    for name, value in reference.server.field.state_dict().items():
        assert torch.equal(state[name], value), name
    assert remote.server.server_next_step == 20 == remote.server.durable_step

    # wire bytes per step == the transcript's, name by name, both directions
    transcript = remote.channel.transcript
    for log in remote.server.wire_log[-3:]:
        crossings = {c.name: c.nbytes for c in transcript.for_step(log["step"])}
        on_wire = {**log["sent"], **log["received"]}
        assert on_wire == crossings
        framing = log["sent_total"] + log["received_total"] - sum(on_wire.values())
        assert 0 < framing < 2500  # JSON headers of four messages

    # the server received nothing but the declared crossings (read from what arrived there)
    received = [json.loads(line) for line in (server.run_dir / "received.jsonl").read_text().splitlines()]
    declared = {"Hello": set(), "Forward": {"ray_origins", "ray_directions", "ray_indices"}, "Backward": {"grad_h"}}
    assert {r["method"] for r in received} == {"Hello", "Forward", "Backward"}
    assert all(r["outcome"] == "ok" for r in received)
    for r in received:
        assert set(r["tensors"]) <= declared[r["method"]], r
    hello = next(r for r in received if r["method"] == "Hello")
    assert set(hello["meta_keys"]) == {"protocol", "arch", "head", "num_images", "run_steps", "background_color",
                                       "defense"}
    step19 = [r for r in received if r.get("step") == 19]
    arrived = {n: t["payload_bytes"] for r in step19 for n, t in r["tensors"].items()}
    sent = {c.name: c.nbytes for c in transcript.for_step(19) if c.direction == CLIENT_TO_SERVER}
    assert arrived == sent
    assert sum(r["bytes"] for r in step19) == remote.server.wire_log[-1]["sent_total"]
    assert {c.name for c in transcript.for_step(19) if c.direction == SERVER_TO_CLIENT} == {"h", "sample_bins"}

    # the attacker in the server process was fed every step it received, and saved its outputs there
    attack = torch.load(server.run_dir / "attack" / "attacker.pt", weights_only=True)
    assert attack["step"] == 20 and int(attack["surrogate"]["step_count"]) == 20
    assert torch.load(server.run_dir / "attack" / "dummies.pt", weights_only=True).shape == (4, 8, 8, 3)

    # eval renders go to the server without gradients and are not recorded
    remote.eval()
    with torch.no_grad():
        out = remote(random_batch(seed=3)[0])
    assert out["rgb"].shape == (32, 3) and transcript.for_step(-1) == []


def test_wrong_token_malformed_and_oversized_messages_are_refused_and_the_server_keeps_serving(
        server, tmp_path, token_file):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token")
    with pytest.raises(RemoteServerError, match="UNAUTHENTICATED"):
        tiny_model(server_address=server.address, server_token_file=wrong, remote=RemoteOptions(insecure=True))

    channel = grpc.insecure_channel(server.address)
    metadata = (("s2nerf-token", TOKEN),)
    forward = channel.unary_unary("/s2nerf.SplitServer/Forward")
    hello = channel.unary_unary("/s2nerf.SplitServer/Hello")
    bad = [b"garbage", encode("forward", 0, tensors={"h": torch.zeros(2, 3)})[0],  # undeclared tensor
           encode("forward", 0, tensors={"ray_origins": torch.zeros(2, 3, dtype=torch.float64)})[0],
           encode("hello", meta={"protocol": 1, "arch": {"num_levels": 10 ** 9}})[0]]
    truncated = encode("forward", 0, tensors={"ray_origins": torch.zeros(4, 3), "ray_directions": torch.ones(4, 3)})[0]
    bad.append(truncated[:-5])
    for frame in bad:
        call = hello if b'"hello"' in frame else forward
        with pytest.raises(grpc.RpcError) as err:
            call(frame, metadata=metadata, timeout=20)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    with pytest.raises(grpc.RpcError) as err:  # over the server's --max-message-mb 1
        forward(b"x" * (2 << 20), metadata=metadata, timeout=20)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # a client that sends a forward and disappears does not take the server down
    model = tiny_model(server_address=server.address, server_token_file=token_file, remote=RemoteOptions(insecure=True))
    model.train()
    model(random_batch()[0])
    model.server.close()
    del model
    assert server.proc.poll() is None
    again = tiny_model(server_address=server.address, server_token_file=token_file,  # still serving
                       remote=RemoteOptions(insecure=True))
    losses, _ = train_model(again, 2)
    assert all(torch.isfinite(torch.tensor(losses)))
    with pytest.raises(WireError):
        decode(b"S2NW\x01\xff\xff\xff\xff")


def test_server_gone_is_one_clear_error_naming_the_address(token_file):
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(RemoteServerError) as err:
        tiny_model(server_address=address, server_token_file=token_file,
                   remote=RemoteOptions(connect_timeout_s=1, insecure=True))
    assert address in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_server_killed_mid_training_restarts_from_its_checkpoint_with_no_step_lost_or_repeated(tmp_path, token_file):
    proc = ServerProcess(tmp_path / "server", token_file, free_port(), "--checkpoint-every", "2").start()
    try:
        reference = tiny_model()
        remote = remote_model(proc.address, token_file, reference, reconnect_timeout_s=90)
        ref_losses, _ = train_model(reference, 8)

        def restart_later():
            threading.Thread(target=lambda: (time.sleep(0.5), proc.start(wait=False)), daemon=True).start()

        def faults(step):
            if step == 3:  # after the forward of step 3; steps 0-2 applied, 0-1 durable: step 2 is replayed
                proc.kill()
                restart_later()
            if step == 6:  # after the forward of step 6 (durable): the server lost the graph, the forward is redone
                proc.kill()
                restart_later()

        losses, _ = train_model(remote, 8, during=faults)
        assert remote.server.reconnects >= 2
        assert losses == ref_losses
        state = server_field_state(proc.run_dir)
        assert torch.load(proc.run_dir / "server_checkpoint.pt", weights_only=True)["next_step"] == 8
        for name, value in reference.server.field.state_dict().items():
            assert torch.equal(state[name], value), name
    finally:
        proc.kill()


def test_sparse_wire_is_lossless(server, token_file):
    """Sparse h (bitmask + values) with the gradient sent only where h > 0 changes nothing for the server's
    update (its ReLU zeroes those entries), and sends fewer bytes."""
    reference = tiny_model()
    sparse = remote_model(server.address, token_file, reference, sparse=True)
    ref_losses, _ = train_model(reference, 6)
    losses, _ = train_model(sparse, 6)
    assert losses == ref_losses
    log = sparse.server.wire_log[-1]
    dense = {c.name: c.nbytes for c in sparse.channel.transcript.for_step(log["step"])}
    assert log["received"]["h"] < dense["h"] and log["sent"]["grad_h"] < dense["grad_h"]


def test_half_precision_wire_is_close_and_halves_the_bytes(tmp_path, token_file):
    proc = ServerProcess(tmp_path / "server", token_file, free_port()).start()
    try:
        reference = tiny_model()
        half = remote_model(proc.address, token_file, reference, half=True)
        ref_losses, _ = train_model(reference, 6)
        losses, _ = train_model(half, 6)
        assert losses == pytest.approx(ref_losses, rel=2e-2)
        assert losses != ref_losses
        log = half.server.wire_log[-1]
        assert log["received"]["h"] * 2 == 32 * 8 * 16 * 4 and log["sent"]["grad_h"] * 2 == 32 * 8 * 16 * 4
    finally:
        proc.kill()


@pytest.mark.skipif(not os.environ.get("S2NERF_CLI_TESTS"), reason="~3 min of CLI start-up: set S2NERF_CLI_TESTS=1")
def test_ns_train_and_ns_eval_of_s2nerf_remote_against_a_server_process(tmp_path, token_file):
    """The client is still nerfstudio: `ns-train s2nerf-remote` trains against the server, `ns-eval` and
    `ns-render` use the client's run while the server runs, and without the server `ns-eval` ends with one
    line naming it."""
    from test_cli import ROOM, TINY, run

    proc = ServerProcess(tmp_path / "server", token_file, free_port(), "--max-message-mb", "64",
                         "--checkpoint-every", "1").start()
    try:
        remote = ["--pipeline.model.server-address", proc.address, "--pipeline.model.server-token-file",
                  str(token_file), "--pipeline.model.remote.insecure", "True"]
        run(["ns-train", "s2nerf-remote", *TINY, "--output-dir", str(tmp_path / "outputs"), "--experiment-name",
             "cli", *remote, *ROOM], cwd=tmp_path)
        (config,) = (tmp_path / "outputs" / "cli" / "s2nerf-remote").glob("*/config.yml")
        assert json.loads((config.parent / "transcript.json").read_text())["steps"] == 20
        assert torch.load(proc.run_dir / "server_checkpoint.pt", weights_only=True)["next_step"] == 20
        run(["ns-eval", "--load-config", str(config), "--output-path", str(tmp_path / "eval.json")], cwd=tmp_path)
        assert json.loads((tmp_path / "eval.json").read_text())["results"]["psnr"] > 5
        run(["ns-render", "dataset", "--load-config", str(config), "--output-path", str(tmp_path / "renders"),
             "--split", "test", "--rendered-output-names", "rgb"], cwd=tmp_path)
        assert list((tmp_path / "renders").rglob("*.jpg")) or list((tmp_path / "renders").rglob("*.png"))
    finally:
        proc.kill()
    gone = subprocess.run(["ns-eval", "--load-config", str(config), "--output-path", str(tmp_path / "e2.json")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert gone.returncode != 0
    assert proc.address in gone.stderr.strip().splitlines()[-1]
    assert "Traceback" not in gone.stderr


@pytest.mark.slow
def test_nerfstudio_trainer_trains_and_evaluates_s2nerf_remote(tmp_path, token_file):
    """The registered method through nerfstudio's Trainer (in this process) against the server process."""
    from helpers import tiny_config, train as train_trainer

    proc = ServerProcess(tmp_path / "server", token_file, free_port(), "--max-message-mb", "64", "--attack", "sma",
                         "--image-size", "24", "24", "--checkpoint-every", "1", "--record-server-view").start()
    try:
        config = tiny_config("s2nerf-remote", tmp_path / "outputs", steps=10, rays=128,
                             server_address=proc.address, server_token_file=token_file,
                             remote=RemoteOptions(insecure=True))
        trainer = train_trainer(config)
        assert torch.load(proc.run_dir / "server_checkpoint.pt", weights_only=True)["next_step"] == 10
        assert "server_fields" not in trainer.optimizers.optimizers
        assert trainer.pipeline.model.channel.transcript.steps_seen == 10
        metrics, _ = trainer.pipeline.get_eval_image_metrics_and_images(step=10)  # an eval render via the server
        assert metrics["psnr"] > 5
    finally:
        proc.kill()
    # the evaluator reads both run folders (the server process is gone: its checkpoint is enough)
    from s2nerf_ns.integration.audit import ScoreRemoteConfig, score_remote

    (client_config,) = (tmp_path / "outputs").rglob("config.yml")
    # from the server's record: every attack replayed, the same keys as ns-eval of an in-process attack run
    replayed = score_remote(ScoreRemoteConfig(server_run=proc.run_dir, client_config=client_config,
                                              output_dir=tmp_path / "replayed"))
    assert "replayed from 10 recorded steps" in " ".join(replayed["attacks"].values())
    assert {"attack_cmpsnr", "floor_surrogate_cmpsnr", "shading_attack_cmpsnr", "geometry_readout_absrel",
            "leakage_cmpsnr", "geometry_leakage_absrel"} <= set(replayed["eval_metrics"])
    # without a record, the server's live attacker is the gradient attack
    shutil.rmtree(proc.run_dir / "server_view")
    result = score_remote(ScoreRemoteConfig(server_run=proc.run_dir, client_config=client_config))
    summary = result["eval_metrics"]  # the evaluator's keys (those of ns-eval of an attack run, s2nerf-audit)
    assert result["attacker_step"] == 10 and "the server's own surrogate model attack" in result["attacks"][
        "gradient attacks"]
    for key in ("attack_cmpsnr", "embedding_attack_cmpsnr", "floor_constant_cmpsnr", "leakage_cmpsnr",
                "leakage_cm_nmi", "psnr"):
        assert np.isfinite(summary[key]), key
    assert not [k for k in summary if k.startswith("floor_surrogate_")]  # not run without a record: not reported
    assert summary["psnr"] > 5
    assert (proc.run_dir / "attack" / "audit.json").is_file() and (proc.run_dir / "attack" / "report.html").is_file()


def test_the_server_process_holds_no_client_side_code():
    """Without --attack the server imports only the server part and the wire; with it, the attacker (which
    copies the head's public architecture) and the observer interface's type. Never the client's stub,
    the defenses' code paths through the model, the glue or the evaluation."""
    code = ("import json, sys, s2nerf_ns.transport.server, s2nerf_ns.transport.server_cli; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('s2nerf_ns'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    forbidden = ("s2nerf_ns.protocol.client", "s2nerf_ns.protocol.rendering", "s2nerf_ns.protocol.channel",
                 "s2nerf_ns.defenses", "s2nerf_ns.integration", "s2nerf_ns.evaluation", "s2nerf_ns.attacks",
                 "s2nerf_ns.transport.client", "s2nerf_ns.data", "s2nerf_ns.bench")
    settings = {"s2nerf_ns.attacks", "s2nerf_ns.attacks.scene_aided_settings"}  # plain values (the --attack flags)
    assert not {m for m in loaded - settings if m.startswith(forbidden)}, loaded
    from test_structure import PACKAGE, imports_of

    settings_imports = imports_of(PACKAGE / "attacks" / "scene_aided_settings.py")
    assert settings_imports <= {"__future__", "__future__.annotations", "dataclasses", "dataclasses.dataclass"}

    allowed = ("s2nerf_ns.protocol.server", "s2nerf_ns.transport.wire", "s2nerf_ns.attacks.surrogate",
               "s2nerf_ns.protocol.channel", "s2nerf_ns.protocol.view_recorder", "s2nerf_ns.transport.session",
               "s2nerf_ns.transport.server_record", "s2nerf_ns.transport.server_attack",
               "s2nerf_ns.attacks.scene_aided_settings", "s2nerf_ns.attacks.scene_aided", "s2nerf_ns.attacks.pose",
               "s2nerf_ns.errors")
    for module in ("server.py", "session.py", "server_record.py", "server_attack.py"):  # the server process's own
        ours = {m for m in imports_of(PACKAGE / "transport" / module) if m.startswith("s2nerf_ns")}
        assert all(m.startswith(allowed) for m in ours), (module, ours)
    cli = {m for m in imports_of(PACKAGE / "transport" / "server_cli.py") if m.startswith("s2nerf_ns")}
    assert all(m.startswith(("s2nerf_ns.transport.server", "s2nerf_ns.transport.certs", "s2nerf_ns.errors"))
               or m.startswith("s2nerf_ns.attacks.scene_aided_settings") for m in cli), cli


def test_wire_codecs_round_trip_and_sizes():
    h = torch.relu(torch.randn(5, 4, 8))
    g = torch.randn(5, 4, 8) * 1e-6  # gradient-sized values: scaled float16 must not underflow
    frame, sizes = encode("forward_reply", 3, tensors={"h": h, "sample_bins": torch.rand(5, 5)},
                          codecs={"h": "sparse"})
    msg = decode(frame, "forward_reply")
    assert torch.equal(msg.tensors["h"], h) and msg.step == 3
    assert sizes["h"] == (h.numel() + 7) // 8 + 4 * int((h != 0).sum()) == msg.payload_bytes["h"]
    frame, sizes = encode("backward", 3, tensors={"grad_h": g}, codecs={"grad_h": "masked"}, half=True,
                          masks={"grad_h": h != 0})
    back = decode(frame, "backward", masks={"grad_h": msg.masks["h"]}).tensors["grad_h"]
    assert sizes["grad_h"] == 2 * int((h != 0).sum())
    assert torch.allclose(back, g * (h != 0), rtol=1e-3, atol=0) and (back[h == 0] == 0).all()
    frame, _ = encode("backward", 3, tensors={"grad_h": g}, codecs={"grad_h": "f16"})
    assert torch.allclose(decode(frame).tensors["grad_h"], g, rtol=1e-3, atol=0)
    with pytest.raises(WireError, match="mask"):
        decode(encode("backward", 3, tensors={"grad_h": g}, codecs={"grad_h": "masked"},
                      masks={"grad_h": h != 0})[0], masks={"grad_h": torch.ones(5, 4, 8, dtype=torch.bool)})
