"""s2nerf-server --record-server-view: the server process keeps the record an in-process run keeps
(``protocol.view_recorder``'s format), built from what it received; read back with ``read_server_views`` it
equals what crossed, step by step, also across a server killed and restarted (each step recorded once).

Loopback only; every server process is started and killed here."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch
import tyro

from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.protocol.view_recorder import FORMAT, bytes_per_ray, read_server_views
from s2nerf_ns.transport.client import RemoteOptions, RemoteServerError
from s2nerf_ns.transport.server_cli import ServerConfig
from conftest import tiny_model
from helpers import train_model
from test_two_process import ServerProcess, free_port

pytestmark = pytest.mark.timeout(400)
TOKEN = "record-token"


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.mark.slow
def test_the_server_record_equals_what_it_received_across_a_restart(tmp_path, token_file):
    defense = DefenseConfig(kind="s2nerf")  # a defended gradient, and public settings to carry in Hello
    # 0.5 MiB over the client's 100 steps: 8 of the 32 rays of each step (8 samples, h 16 wide)
    proc = ServerProcess(tmp_path / "server", token_file, free_port(), "--checkpoint-every", "2",
                         "--record-server-view", "--server-view-max-mb", "0.5").start()
    try:
        remote = tiny_model(server_address=proc.address, server_token_file=token_file, defense=defense,
                            remote=RemoteOptions(insecure=True, reconnect_timeout_s=90))
        live = []  # what crossed, seen on the client's side of the channel (the fp32 wire delivers it as is)
        remote.channel.add_observer(lambda v: live.append(
            {"step": v.step, **{k: getattr(v, k).detach().clone() for k in ("origins", "directions", "ray_indices",
                                                                           "bins", "h", "grad")}}))

        def faults(step):
            if step == 3:  # after the forward of step 3; steps 0-2 applied, 0-1 durable: step 2 is redone
                proc.kill()
                threading.Thread(target=lambda: (time.sleep(0.5), proc.start(wait=False)), daemon=True).start()

        train_model(remote, 6, during=faults)
        assert remote.server.reconnects >= 1
        proc.stop()  # SIGTERM: the last checkpoint, and the record with it
    finally:
        proc.kill()

    folder = proc.run_dir / "server_view"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["format"] == FORMAT and meta["recorded_by"] == "s2nerf-server"
    assert meta["rays_per_step"] == int(0.5 * 2**20 // (100 * bytes_per_ray(8, 16))) == 8
    assert meta["steps"] == 100 and meta["head"] == remote.client_architecture()
    recorded = list(read_server_views(folder))
    assert [v.step for v in recorded] == list(range(6))  # the redone step 2 once, nothing lost
    public = remote.channel.defense.public()
    live_by_step = {v["step"]: v for v in live}  # the client's last crossing of each step (its replay is the same)
    for rec in recorded:
        ref = live_by_step[rec.step]
        assert rec.defense == public and rec.defense["kind"] == "s2nerf"
        assert rec.batch_rays == 32 and len(rec.h) == 8
        # the kept rays, found in the batch by their origin and direction
        rows = [int(torch.nonzero(((ref["origins"] == o).all(-1) & (ref["directions"] == d).all(-1)))[0])
                for o, d in zip(rec.origins, rec.directions)]
        assert torch.equal(rec.ray_indices, ref["ray_indices"][rows])
        assert torch.equal(rec.bins, ref["bins"][rows])
        assert torch.allclose(rec.h, ref["h"][rows], rtol=2e-3, atol=1e-3)
        scale = float(ref["grad"][rows].abs().max())
        assert scale > 0 and torch.allclose(rec.grad, ref["grad"][rows], atol=scale * 1e-3)
        mid = (rec.bins[:, :-1] + rec.bins[:, 1:]) / 2
        assert torch.allclose(rec.positions, rec.origins[:, None] + rec.directions[:, None] * mid[..., None],
                              atol=1e-5)
    # and it agrees with the server's log of what arrived: a gradient applied for each recorded step
    received = [json.loads(line) for line in (proc.run_dir / "received.jsonl").read_text().splitlines()]
    applied = sorted({r["step"] for r in received if r["method"] == "Backward" and r["outcome"] == "ok"})
    assert applied == list(range(6))


def test_a_record_budget_too_small_for_the_run_is_refused_at_hello_in_one_line(tmp_path, token_file):
    proc = ServerProcess(tmp_path / "server", token_file, free_port(), "--record-server-view",
                         "--server-view-max-mb", "0.01").start()
    try:
        with pytest.raises(RemoteServerError) as err:
            tiny_model(server_address=proc.address, server_token_file=token_file,
                       remote=RemoteOptions(insecure=True))
        line = str(err.value)
        assert "--server-view-max-mb 0.01 is too small" in line and "100 steps" in line and "\n" not in line
        assert not proc.run_dir.exists()  # refused before anything was written
    finally:
        proc.kill()


@pytest.mark.parametrize("args, line", [
    (["--server-view-max-mb", "0"], "--server-view-max-mb 0.0: give a positive size"),
    (["--server-view-every", "0"], "--server-view-every 0: give at least 1"),
])
def test_record_options_are_checked_at_startup_in_one_line(tmp_path, token_file, capsys, args, line):
    with pytest.raises(SystemExit):
        tyro.cli(ServerConfig, args=["--token-file", str(token_file), "--run-dir", str(tmp_path / "run"),
                                     "--insecure", "--record-server-view", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and line in err[0], err
    assert not (tmp_path / "run").exists()
