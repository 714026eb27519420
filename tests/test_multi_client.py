"""Several clients on one s2nerf-server (``--client-tokens``): each with its own fields, optimizer, steps,
checkpoint and run folder; two training at once are each bit-identical to their run alone, and a third
client's faults (killed mid-run, malformed messages) touch neither.

Loopback only; every server and client process is started and killed here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import torch

from s2nerf_ns.errors import InputError
from s2nerf_ns.protocol.view_recorder import read_server_views
from s2nerf_ns.transport.client import RemoteOptions
from s2nerf_ns.transport.server_cli import ServerConfig
from s2nerf_ns.transport.wire import encode
from conftest import tiny_model
from helpers import train_model
from test_two_process import SEED, ServerProcess, free_port, server_field_state

pytestmark = pytest.mark.timeout(500)
TOKENS = {"alice": "alice-token-1", "bob": "bob-token-2", "carol": "carol-token-3"}
TESTS = Path(__file__).resolve().parent


class MultiServer(ServerProcess):
    """An s2nerf-server serving the clients of a tokens file."""

    def start(self, wait: bool = True) -> "MultiServer":
        cmd = [sys.executable, "-m", "s2nerf_ns.transport.server_cli", "--listen", self.address, "--client-tokens",
               str(self.token_file), "--run-dir", str(self.run_dir), "--seed", str(SEED), "--threads", "1",
               "--max-message-mb", "1", "--insecure", *self.extra]
        self.log = open(self.run_dir.parent / f"server-{self.port}.log", "a")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self


@pytest.fixture
def tokens(tmp_path):
    files = {}
    for name, token in TOKENS.items():
        files[name] = tmp_path / f"{name}.token"
        files[name].write_text(token + "\n")
    listing = tmp_path / "clients.txt"
    listing.write_text("# name token\n" + "".join(f"{n} {t}  # {n}'s lab\n" for n, t in TOKENS.items()))
    return listing, files


CAROL = """
import sys, torch
from conftest import tiny_model
from s2nerf_ns.transport.client import RemoteOptions
from helpers import train_model
model = tiny_model(server_address=sys.argv[1], server_token_file=sys.argv[2], remote=RemoteOptions(insecure=True))
class Log(list):
    def append(self, t):
        print("step", len(self), flush=True)
        super().append(t)
log = Log()
train_model(model, 10 ** 6, batch_seed=7, during=log.append)
"""


@pytest.mark.slow
def test_two_clients_train_at_once_each_equal_to_its_run_alone_and_a_third_ones_faults_touch_neither(
        tmp_path, tokens):
    listing, files = tokens
    steps, seeds = 8, {"alice": 0, "bob": 4}
    alone, head = {}, None
    for name in ("alice", "bob"):  # each run alone (in one process; two processes alone are bit-identical to it)
        model = tiny_model()
        head = {k: v.clone() for k, v in model.client_head.state_dict().items()}  # the client's initialisation
        alone[name] = (train_model(model, steps, batch_seed=seeds[name])[0], model.server.field.state_dict())
    assert alone["alice"][0] != alone["bob"][0]

    server = MultiServer(tmp_path / "server", listing, free_port(), "--checkpoint-every", "2",
                         "--record-server-view", "--server-view-max-mb", "1").start()
    carol = None
    try:
        # carol: a client process, killed (SIGKILL) while alice and bob train
        carol = subprocess.Popen([sys.executable, "-c", CAROL, server.address, str(files["carol"])], cwd=TESTS,
                                 env={**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1"},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        while not (lines and lines[-1].startswith("step")):  # her warning line, then her first step
            lines.append(carol.stdout.readline())
            assert lines[-1], f"carol did not start training: {lines}"
        models = {name: tiny_model(server_address=server.address, server_token_file=files[name],
                                   remote=RemoteOptions(insecure=True)) for name in ("alice", "bob")}
        for model in models.values():
            model.client_head.load_state_dict(head)  # as in its run alone
        results, times, errors = {}, {"alice": [], "bob": []}, []

        def run(name):
            try:
                results[name] = train_model(models[name], steps, batch_seed=seeds[name],
                                            during=lambda step: times[name].append(time.monotonic()))[0]
            except BaseException as err:  # noqa: B902 - reported by the main thread
                errors.append((name, err))

        def faults():
            """Malformed messages with alice's and carol's tokens while they train, then carol killed."""
            channel = grpc.insecure_channel(server.address)
            bad = [(b"garbage", "Forward"), (encode("forward", 0, tensors={"h": torch.zeros(2, 3)})[0], "Forward"),
                   (encode("backward", 10 ** 6, tensors={"grad_h": torch.ones(2)})[0], "Backward"),
                   (encode("hello", meta={"protocol": 1, "arch": {"num_levels": 10 ** 9}})[0], "Hello")]
            for _ in range(3):
                for who in ("alice", "carol"):
                    for frame, method in bad:
                        with pytest.raises(grpc.RpcError) as err:
                            channel.unary_unary(f"/s2nerf.SplitServer/{method}")(
                                frame, metadata=(("s2nerf-token", TOKENS[who]),), timeout=30)
                        assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                                    grpc.StatusCode.FAILED_PRECONDITION), err.value.details()
                time.sleep(0.2)
            carol.send_signal(signal.SIGKILL)  # mid-step: its forward may be pending on the server

        threads = [threading.Thread(target=run, args=(n,)) for n in ("alice", "bob")]
        threads.append(threading.Thread(target=lambda: errors.extend(_catch(faults))))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=400)
        assert not errors, errors
        assert server.proc.poll() is None  # still serving
        # they trained at the same time, and each is bit-identical to its run alone
        assert times["alice"][0] < times["bob"][-1] and times["bob"][0] < times["alice"][-1]
        for name in ("alice", "bob"):
            assert results[name] == alone[name][0], name
            state = server_field_state(server.run_dir / name)
            for key, value in alone[name][1].items():
                assert torch.equal(state[key], value), (name, key)
            log = [json.loads(line) for line in (server.run_dir / name / "received.jsonl").read_text().splitlines()]
            applied = [r["step"] for r in log if r["method"] == "Backward" and r["outcome"] == "ok"]
            assert applied == list(range(steps)), name  # its own steps only, each once
            views = list(read_server_views(server.run_dir / name / "server_view"))  # and its own record
            assert [v.step for v in views] == list(range(steps)) and {v.batch_rays for v in views} == {32}, name
        refused = [r for r in map(json.loads, (server.run_dir / "alice" / "received.jsonl").read_text().splitlines())
                   if r["outcome"].startswith("refused")]
        assert len(refused) >= 6  # the malformed messages sent with alice's token, logged in her folder
        assert not any(r["outcome"].startswith("refused") for r in map(
            json.loads, (server.run_dir / "bob" / "received.jsonl").read_text().splitlines()))
        assert carol.wait(timeout=30) == -signal.SIGKILL
        carol_log = [json.loads(line) for line in (server.run_dir / "carol" / "received.jsonl").read_text().splitlines()]
        assert any(r["method"] == "Backward" and r["outcome"] == "ok" for r in carol_log)  # she trained, then died
        assert sum(r["outcome"].startswith("refused") for r in carol_log) >= 6
        assert not (server.run_dir / "server_checkpoint.pt").exists()  # nothing outside the clients' folders

        # restarted, the server resumes each client from its own checkpoint
        server.stop()
        server.start()
        for name, expected in (("alice", steps), ("bob", steps)):
            again = tiny_model(server_address=server.address, server_token_file=files[name],
                               remote=RemoteOptions(insecure=True))
            assert again.server.server_next_step == expected, name
    finally:
        if carol is not None and carol.poll() is None:
            carol.kill()
        server.kill()


def _catch(fn):
    try:
        fn()
    except BaseException as err:  # noqa: B902 - reported by the main thread
        return [("faults", err)]
    return []


@pytest.mark.parametrize("text, line", [
    ("alice tok\nalice tok2\n", "line 2: client 'alice' or its token is given twice"),
    ("alice tok\nbob tok\n", "line 2: client 'bob' or its token is given twice"),
    ("alice\n", "line 1: give NAME TOKEN"),
    ("a/b tok\n", "line 1: give NAME TOKEN"),
    ("# nobody\n", "the file names no client"),
])
def test_the_client_tokens_file_is_checked_in_one_line(tmp_path, text, line):
    listing = tmp_path / "clients.txt"
    listing.write_text(text)
    with pytest.raises(InputError, match=line) as err:
        ServerConfig(client_tokens=listing, run_dir=tmp_path / "run", insecure=True).clients()
    assert "--client-tokens" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="--token-file .* or --client-tokens"):
        ServerConfig(client_tokens=listing, token_file=listing, run_dir=tmp_path / "run", insecure=True)
    with pytest.raises(InputError, match="--token-file .* or --client-tokens"):
        ServerConfig(run_dir=tmp_path / "run", insecure=True)
