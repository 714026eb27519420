"""``s2nerf-wire-bench``: what the two-process wire costs, per wire option, on a tiny run over loopback.

For each option (float32, float16, sparse, sparse + float16, sparse + int8 with and without error feedback) it
starts an ``s2nerf-server`` on 127.0.0.1,
trains ``splitnerf-remote`` against it with nerfstudio's Trainer, evaluates the held-out views, and
reports bytes per step on the wire, the measured loopback step time, and the step time projected at
100 Mb/s, 1 Gb/s and 10 Gb/s: measured loopback step + wire bytes x 8 / bandwidth (latency left out). The
same bytes are projected to the reference size (1024 rays x 64 samples, h 64 wide), with the fraction of
zeros in h measured in the tiny run. A markdown table is printed (and written with ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

BANDWIDTHS = {"100 Mb/s": 100e6, "1 Gb/s": 1e9, "10 Gb/s": 10e9}
OPTIONS = {"float32": {}, "float16": {"half": True}, "sparse": {"sparse": True},
           "sparse + float16": {"sparse": True, "half": True},
           "sparse + int8": {"sparse": True, "int8": True, "error_feedback": False},
           "sparse + int8 + EF": {"sparse": True, "int8": True, "error_feedback": True}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_server(run_dir: Path, token_file: Path, steps: int, timeout: float = 120.0) -> subprocess.Popen:
    """An s2nerf-server on a free loopback port (``proc.address``); the caller kills it."""
    address = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "s2nerf_ns.transport.server_cli", "--listen", address,
                             "--token-file", str(token_file), "--run-dir", str(run_dir), "--insecure",
                             "--lr-max-steps", str(steps),
                             "--checkpoint-every", str(max(steps // 4, 1))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.address = address  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", int(address.rsplit(":", 1)[1])), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError(f"s2nerf-server did not start at {address} within {timeout:.0f} s")


def run_option(name: str, options: Dict[str, bool], work: Path, steps: int, rays: int, resolution: int = 24,
               samples: int = 16) -> Dict[str, float]:
    from s2nerf_ns.bench.common import Preset, sized_config
    from s2nerf_ns.integration.methods import method_config
    from s2nerf_ns.transport.client import RemoteOptions

    token = work / "token"
    token.write_text("bench-token")
    preset = Preset(resolution=resolution, spp=2, num_views=16, steps=steps, rays=rays, num_samples=samples,
                    num_levels=4, max_res=64, log2_hashmap_size=12, post_training_steps=0, replay_steps=0)
    slug = name.replace(" + ", "-")
    proc = launch_server(work / f"server-{slug}", token, steps)
    try:
        config = sized_config(method_config("splitnerf-remote"), preset, "office", work / "outputs", slug,
                              server_address=proc.address, server_token_file=token, eval_num_rays_per_chunk=1024,
                              remote=RemoteOptions(insecure=True, **options))  # loopback
        config = dataclasses.replace(config, machine=dataclasses.replace(config.machine, device_type="cpu"))
        from nerfstudio.scripts.train import _set_random_seed

        _set_random_seed(config.machine.seed)  # as ns-train does: every option starts from the same state
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        trainer.train()
        server = trainer.pipeline.model.server
        starts = [log["time"] for log in server.wire_log]
        seconds = float(np.median(np.diff(starts)))  # median step time, forward start to forward start
        metrics = trainer.pipeline.get_average_eval_image_metrics()
        logs = server.wire_log[-min(len(server.wire_log), 50):]
        transcript = trainer.pipeline.model.channel.transcript.bytes_per_step()
        numel = transcript["server->client h"] / 4  # h's values (the transcript counts float32)
        value = 1 if options.get("int8") else 2 if options.get("half") else 4
        overhead = (numel + 7) // 8 + (4 * rays if options.get("int8") else 0)  # bitmask, per-ray scales
        zero_fraction = float(np.mean([1 - (log["received"]["h"] - overhead) / value / numel for log in logs])) \
            if options.get("sparse") else float("nan")
        return {"psnr": float(metrics["psnr"]), "step_s": seconds,
                "rpc_s": float(np.mean([log["seconds"] for log in logs])),
                "wire_bytes": float(np.mean([log["sent_total"] + log["received_total"] for log in logs])),
                "payload_bytes": float(np.mean([sum(log["sent"].values()) + sum(log["received"].values())
                                                for log in logs])),
                "transcript_bytes": float(sum(transcript.values())), "zero_fraction": zero_fraction}
    finally:
        proc.kill()
        proc.wait(timeout=30)


def reference_bytes(option: Dict[str, bool], zero_fraction: float, rays: int = 1024, samples: int = 64,
                    width: int = 64) -> float:
    """Payload bytes per step at the reference size (rays and indices raw; h and its gradient per option)."""
    n = rays * samples * width
    value = 1 if option.get("int8") else 2 if option.get("half") else 4
    rays_bytes = rays * (3 * 4 + 3 * 4 + 3 * 8) + rays * (samples + 1) * 4
    if option.get("sparse"):
        kept = n * (1 - zero_fraction)
        scales = 2 * 4 * rays if option.get("int8") else 0  # a float32 scale per ray, for h and for the gradient
        return rays_bytes + (n + 7) // 8 + 2 * kept * value + scales
    return rays_bytes + 2 * n * value


def table(results: Dict[str, Dict[str, float]], zero_fraction: float) -> str:
    base = results["float32"]["psnr"]
    head = ["wire", "victim PSNR (dB)", "PSNR cost", "bytes/step (this run)", "loopback step (ms, median)"]
    head += [f"at {k} (ms)" for k in BANDWIDTHS] + ["bytes/step (reference size)"]
    head += [f"reference at {k} (ms, transfer only)" for k in BANDWIDTHS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        ref = reference_bytes(OPTIONS[name], zero_fraction)
        row = [name, f"{r['psnr']:.2f}", f"{r['psnr'] - base:+.2f}", f"{r['wire_bytes'] / 1e3:.1f} kB",
               f"{r['step_s'] * 1e3:.0f}"]
        row += [f"{(r['step_s'] + r['wire_bytes'] * 8 / bw) * 1e3:.0f}" for bw in BANDWIDTHS.values()]
        row += [f"{ref / 1e6:.1f} MB"] + [f"{ref * 8 / bw * 1e3:.0f}" for bw in BANDWIDTHS.values()]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    from s2nerf_ns.errors import install as install_error_printers

    install_error_printers()  # one-line errors: installed by the command, not by importing the package
    parser = argparse.ArgumentParser(prog="s2nerf-wire-bench", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rays", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=24, help="image size of the office room (pixels)")
    parser.add_argument("--samples", type=int, default=16, help="samples per ray")
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--out", type=Path, help="write the markdown table (and a .json next to it)")
    args = parser.parse_args(argv)
    results: Dict[str, Dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["float32"] + [o for o in args.options if o != "float32"]:
            results[name] = run_option(name, OPTIONS[name], Path(tmp), args.steps, args.rays, args.resolution,
                                       args.samples)
            print(name, json.dumps(results[name]), flush=True)
    zero = next((r["zero_fraction"] for r in results.values() if np.isfinite(r["zero_fraction"])), 0.5)
    text = (f"{args.steps} steps, {args.rays} rays x {args.samples} samples, h 64 wide, office {args.resolution} px, "
            "loopback, CPU; "
            f"fraction of zeros in h: {zero:.2f}\n\n" + table(results, zero))
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps({"steps": args.steps, "rays": args.rays,
                                                             "resolution": args.resolution, "samples": args.samples,
                                                             "zero_fraction": zero, "results": results}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
