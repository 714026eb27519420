"""``s2nerf-bench``: the privacy-utility and speed benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional, Union

import tyro
from typing_extensions import Annotated


@dataclass
class Privacy:
    """Rooms x defenses x {SMA, SSMA}: victim utility and attacker leakage (resumable)."""

    preset: Literal["smoke", "cpu", "gpu"] = "smoke"
    """Size of every run: smoke (CI, seconds), cpu (2 cores), gpu (reference size)."""
    out: Path = Path("bench-results/privacy")
    """Output folder (results.json, results.md, privacy_utility.png, grid_<room>.png)."""
    rooms: List[str] = field(default_factory=lambda: ["bedroom", "office", "livingroom"])
    """Rooms to run."""
    defenses: Optional[List[str]] = None
    """Defense settings (default: all for cpu/gpu, splitnerf and the paper's s2nerf for smoke)."""
    seed: int = 42
    """Training seed of every run."""
    pose: Literal["known", "estimate"] = "known"
    """Whether the SSMA attacker is told the leaked photo's pose or estimates it."""

    def main(self) -> None:
        from s2nerf_ns.bench import privacy

        privacy.run(self.preset, self.out, self.rooms, self.defenses, self.seed, self.pose)
        print((self.out / "results.md").read_text())


@dataclass
class Speed:
    """Time per step, rays/s and memory of every method and of nerfacto, alternating in one process."""

    preset: Literal["smoke", "cpu", "gpu"] = "cpu"
    out: Path = Path("bench-results/speed")
    rounds: int = 3
    steps_per_round: int = 5
    include_nerfacto: bool = True

    def main(self) -> None:
        from s2nerf_ns.bench import speed

        names = speed.SPLIT_METHODS + (("nerfacto",) if self.include_nerfacto else ())
        speed.run(self.preset, self.out, names, self.rounds, self.steps_per_round)
        print((self.out / "speed.md").read_text())


@dataclass
class Figure:
    """PNG of an attack run's eval views: ground truth | victim | attacker | attacker, affine colour fit."""

    load_config: Path
    """config.yml of an attack run (splitnerf-sma, s2nerf-ssma, ...)."""
    out: Path = Path("attack.png")
    num_views: int = 4
    scale: int = 3

    def main(self) -> None:
        from s2nerf_ns.evaluation.figures import attack_figure

        print(attack_figure(self.load_config, self.out, self.num_views, self.scale))


def main() -> None:
    command = tyro.cli(Union[Annotated[Privacy, tyro.conf.subcommand("privacy")],
                             Annotated[Speed, tyro.conf.subcommand("speed")],
                             Annotated[Figure, tyro.conf.subcommand("figure")]])
    command.main()


if __name__ == "__main__":
    main()
