"""The transcript: every tensor that crossed the trust boundary, per training step."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Literal

from torch import Tensor

Direction = Literal["client->server", "server->client"]
SERVER_TO_CLIENT: Direction = "server->client"
CLIENT_TO_SERVER: Direction = "client->server"


@dataclass
class Crossing:
    """One tensor that crossed the trust boundary."""

    step: int
    name: str
    direction: Direction
    shape: List[int]
    dtype: str
    nbytes: int
    derived_from_pixels: bool = False
    """True for client->server tensors computed from the client's images (only the gradient may be)."""


@dataclass
class Transcript:
    """Every tensor that crossed the channel, per training step."""

    crossings: List[Crossing] = field(default_factory=list)
    keep_last_steps: int = 50
    """Keep full records of the last N steps only (the byte totals cover every step)."""
    totals: Dict[str, int] = field(default_factory=lambda: defaultdict(int))
    steps_seen: int = 0

    def record(self, step: int, name: str, direction: Direction, tensor: Tensor, derived_from_pixels: bool) -> None:
        if not self.crossings or self.crossings[-1].step != step:
            self.steps_seen += 1
        nbytes = tensor.numel() * tensor.element_size()
        self.crossings.append(
            Crossing(step, name, direction, list(tensor.shape), str(tensor.dtype).replace("torch.", ""), nbytes,
                     derived_from_pixels)
        )
        self.totals[f"{direction} {name}"] += nbytes
        if len(self.crossings) > 64 * self.keep_last_steps:
            oldest_kept = self.crossings[-1].step - self.keep_last_steps
            self.crossings = [c for c in self.crossings if c.step > oldest_kept]

    def for_step(self, step: int) -> List[Crossing]:
        return [c for c in self.crossings if c.step == step]

    def bytes_per_step(self) -> Dict[str, float]:
        """Mean bytes per training step of each (direction, name)."""
        n = max(self.steps_seen, 1)
        return {k: v / n for k, v in self.totals.items()}

    def summary(self) -> Dict[str, object]:
        last = self.crossings[-1].step if self.crossings else None
        return {
            "steps": self.steps_seen,
            "bytes_per_step": self.bytes_per_step(),
            "total_bytes_per_step": sum(self.bytes_per_step().values()),
            "last_step": [asdict(c) for c in self.for_step(last)] if last is not None else [],
        }

    def write(self, folder: Path) -> None:
        """Write ``transcript.json`` (summary) and ``transcript.csv`` (recent crossings) into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "transcript.json").write_text(json.dumps(self.summary(), indent=2))
        with open(folder / "transcript.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(Crossing.__dataclass_fields__))
            writer.writeheader()
            for c in self.crossings:
                writer.writerow({**asdict(c), "shape": "x".join(map(str, c.shape))})
