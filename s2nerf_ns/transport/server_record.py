"""SERVER SIDE: ``s2nerf-server --record-server-view``: a session's record of what it received, in the format of
an in-process run's (``protocol.view_recorder``: a subsampled ServerView per applied step, in
``<run folder>/server_view/``), so that ``s2nerf-audit --server-run`` replays attacks on it.

The record is written with each checkpoint, so that it holds exactly the durable steps: on resume the chunks of
later steps are dropped, and the steps the restarted server applies again are recorded once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import grpc

from s2nerf_ns.transport.wire import SCHEDULE_DEFAULTS, WireError

RECORD = "server_view"


class RecordRefused(Exception):
    """A client whose run the record's budget cannot hold (said at Hello, with a gRPC status code)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


def run_steps(meta: Dict[str, object], schedule: Optional[Dict[str, object]]) -> int:
    """The client's run length (Hello's ``run_steps``; else the schedule's ``max_steps``)."""
    steps = meta.get("run_steps")
    if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1:
        return steps
    return int((schedule or SCHEDULE_DEFAULTS)["max_steps"])


def check_defense(meta: Dict[str, object]) -> None:
    """Hello's ``defense`` (the defense's public settings), when sent, is an object of plain values."""
    defense = meta.get("defense")
    if defense is not None and (not isinstance(defense, dict) or len(defense) > 64 or not all(
            isinstance(v, (str, int, float, bool, type(None))) for v in defense.values())):
        raise WireError("hello: 'defense' must be an object of plain values (the defense's public settings)")


class SessionRecord:
    """The record of one session: created at its first applied step, flushed with each checkpoint."""

    def __init__(self, run_dir: Path, max_mb: float, every: int, seed: int, client: str) -> None:
        self.folder = Path(run_dir) / RECORD
        self.max_mb, self.every, self.seed, self.client = max_mb, every, seed, client
        self.recorder = None

    def check(self, arch: Dict[str, object], meta: Dict[str, object], schedule: Dict[str, object]) -> None:
        """Refuse (at Hello) a run whose record cannot keep one ray per recorded step."""
        from s2nerf_ns.protocol.view_recorder import bytes_per_ray, rays_within_budget

        dim = int(arch["hidden_dim"]) if int(arch["cut_depth"]) > 0 else int(arch["num_levels"]) * int(
            arch["features_per_level"])
        steps, samples = run_steps(meta, schedule), int(arch["num_samples"])
        if rays_within_budget(self.max_mb, steps, self.every, samples, dim, 1) < 1:
            need = -(-steps // self.every) * bytes_per_ray(samples, dim) / 2**20
            raise RecordRefused(f"--server-view-max-mb {self.max_mb:g} is too small to keep even one ray per recorded "
                                f"step of the client's {steps} steps (needs {need:.1f}): restart the server with a "
                                "larger --server-view-max-mb or --server-view-every")

    def __call__(self, view, arch: Dict[str, object], hello_meta: Dict[str, object],
                 schedule: Dict[str, object]) -> None:
        """Keep one applied step's ServerView (``view.batch_rays``: the victim's batch)."""
        from s2nerf_ns.protocol.view_recorder import ServerViewRecorder, rays_within_budget

        if self.recorder is None:
            n, dim = view.h.shape[0], view.h.shape[-1]
            steps, samples = run_steps(hello_meta, schedule), int(arch["num_samples"])
            rays = rays_within_budget(self.max_mb, steps, self.every, samples, dim, n)
            meta = {"steps": steps, "num_samples": samples, "dim": dim, "max_mb": self.max_mb,
                    "head": hello_meta.get("head"), "background_color": hello_meta.get("background_color"),
                    "recorded_by": "s2nerf-server", "client": self.client}
            self.recorder = ServerViewRecorder(self.folder, max(rays, 1), self.every, chunk_steps=1 << 30,
                                               seed=self.seed, meta=meta)
        self.recorder(view)

    def flush(self) -> None:
        if self.recorder is not None:
            self.recorder.flush()

    def forget_from(self, step: int) -> None:
        """On resume at ``step``: drop the chunks of steps from ``step`` on (they are applied and recorded again)."""
        for chunk in self.folder.glob("steps_*.pt"):
            if int(chunk.stem.split("_")[1]) >= step:
                chunk.unlink()
