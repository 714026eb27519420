"""``s2nerf-bench``: the privacy-utility and speed benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional, Union

import tyro
from typing_extensions import Annotated

from s2nerf_ns.attacks.pose.config import PoseSearchConfig, attack_search_config


def check_readme(readme: Optional[Path]) -> None:
    """``--readme``: an existing file (its generated block is rewritten or compared)."""
    from s2nerf_ns.errors import InputError

    if readme is not None and not Path(readme).is_file():
        raise InputError(f"--readme {readme}: no such file (give the README whose generated block to rewrite)")


@dataclass
class Privacy:
    """Rooms x defenses x {SMA, SSMA}: victim utility and attacker leakage (resumable)."""

    preset: Literal["smoke", "cpu", "gpu", "judge"] = "smoke"
    """Size of every run: smoke (CI, seconds), cpu (2 cores), gpu (reference size), judge (128 px rooms, issue 23;
    not yet run)."""
    out: Path = Path("bench-results/privacy")
    """Output folder (results.json, results.md, privacy_utility.png, grid_<room>.png)."""
    rooms: List[str] = field(default_factory=lambda: ["bedroom", "office", "livingroom"])
    """Rooms to run."""
    defenses: Optional[List[str]] = None
    """Defense settings (default: all for cpu/gpu, splitnerf and the paper's s2nerf for smoke)."""
    seeds: Optional[List[int]] = None
    """The training seeds to run, e.g. --seeds 42 43 (default: the preset's: 42 for smoke, 42 43 for cpu,
    42 43 44 for gpu); one process per seed into separate --out folders can be merged. Tables report mean and
    sd over seeds. (Until issue 21 --seeds counted seeds from --seed; both now are this list.)"""
    seed: Optional[int] = None
    """Removed: give the seeds themselves with --seeds (kept to say so)."""
    seed_list: Optional[List[int]] = None
    """Removed: renamed --seeds (kept to say so)."""
    steps: Optional[int] = None
    """Override the preset's victim steps (recorded in results.json)."""
    post_training_steps: Optional[int] = None
    """Override the preset's attacker-only leaked-photo steps after training."""
    replay_steps: Optional[int] = None
    """Override the preset's attacker replay steps after training."""
    pose: Literal["known", "estimate"] = "known"
    """Whether the SSMA attacker is told the leaked photo's pose or estimates it."""
    pose_search: Literal["retrieval", "global"] = "retrieval"
    """With --pose estimate: first guess by retrieval over the training poses, or the global search."""
    search: PoseSearchConfig = field(default_factory=attack_search_config)
    """With --pose-search global: the search's knobs (--search.objective, --search.region, --search.num-positions,
    ...; see PoseSearchConfig), recorded in results.json."""
    num_leaked: int = 1
    """Leaked photos per cell: 1 or 2 (the benchmark renders its rooms with 2 off-trajectory extra views, the
    leaked photos' source; ns-train's rooms default to 4). 2 scores the pose of each."""
    allow_dirty: bool = False
    """Write results from a git checkout with uncommitted changes (refused otherwise); recorded in the results
    and shown in the generated tables."""

    def __post_init__(self) -> None:
        from s2nerf_ns.bench import privacy
        from s2nerf_ns.errors import InputError

        if self.seed is not None:
            raise InputError(f"--seed {self.seed}: removed; --seeds now lists the seeds themselves (it used to count "
                             f"them from --seed), e.g. --seeds {self.seed} {self.seed + 1}")
        if self.seed_list is not None:
            raise InputError(f"--seed-list: renamed --seeds (e.g. --seeds {' '.join(map(str, self.seed_list))})")
        privacy.check_inputs(self.rooms, list(self.defenses or privacy.default_defenses(self.preset)),
                             privacy.default_seeds(self.preset) if self.seeds is None else self.seeds, self.num_leaked)

    def main(self) -> None:
        from s2nerf_ns.bench import privacy

        privacy.run(self.preset, self.out, self.rooms, self.defenses, self.seeds, self.pose, self.steps,
                    pose_search=self.pose_search, num_leaked=self.num_leaked, search_config=self.search,
                    allow_dirty=self.allow_dirty, post_training_steps=self.post_training_steps,
                    replay_steps=self.replay_steps)
        print((self.out / "results.md").read_text())


@dataclass
class Report:
    """Markdown tables of a privacy results.json; optionally regenerate (or --check) the README's block."""

    results: Path
    """results.json of s2nerf-bench privacy."""
    out: Optional[Path] = None
    """Where to write the tables (default: results.md next to results.json)."""
    readme: Optional[Path] = None
    """README whose <!-- results:privacy --> ... <!-- /results --> block is regenerated."""
    check: bool = False
    """Only check that the README's block matches (exit 1 if not); writes nothing."""

    def __post_init__(self) -> None:
        check_readme(self.readme)

    def main(self) -> None:
        from s2nerf_ns.bench import report

        results = report.load(self.results)
        if self.check:
            if self.readme is None or not report.readme_matches(self.readme, results):
                raise SystemExit(f"{self.readme}: results block does not match {self.results}")
            print(f"{self.readme} matches {self.results}")
            return
        text = report.privacy_markdown(results)
        (self.out or self.results.with_name("results.md")).write_text(text)
        if self.readme is not None:
            report.update_readme(self.readme, results)
        print(text)


@dataclass
class Speed:
    """Time per step, rays/s and memory of every method and of nerfacto, alternating in one process."""

    preset: Literal["smoke", "cpu", "gpu", "judge"] = "cpu"
    out: Path = Path("bench-results/speed")
    rounds: int = 3
    steps_per_round: int = 5
    include_nerfacto: bool = True
    allow_dirty: bool = False
    """Write results from a git checkout with uncommitted changes (refused otherwise); recorded in speed.json."""
    ttq_only: bool = False
    """Run only time to quality (s2nerf, s2nerf-plus, s2nerf-central, nerfacto to the preset's held-out PSNR on
    office) into OUT/ttq.json; the README block: python -m s2nerf_ns.bench.ttq_report OUT/ttq.json README.md."""

    def main(self) -> None:
        from s2nerf_ns.bench import speed

        if self.ttq_only:
            speed.run_time_to_quality(self.preset, self.out, allow_dirty=self.allow_dirty)
            from s2nerf_ns.bench import ttq_report

            print(ttq_report.markdown(ttq_report.load(self.out / "ttq.json")))
            return
        names = speed.SPLIT_METHODS + (("nerfacto",) if self.include_nerfacto else ())
        speed.run(self.preset, self.out, names, self.rounds, self.steps_per_round, allow_dirty=self.allow_dirty)
        print((self.out / "speed.md").read_text())


@dataclass
class Frontier:
    """Defense families x knob values (same victim seeds), SMA victims: frontier.json and frontier.png (resumable)."""

    preset: Literal["smoke", "cpu", "gpu", "judge"] = "smoke"
    """smoke (CI: 2 points per family, 3 steps), cpu, gpu, judge (4 points per family; judge: 128 px rooms, issue
    23, not yet run)."""
    out: Path = Path("bench-results/frontier")
    rooms: List[str] = field(default_factory=lambda: ["office"])
    families: Optional[List[str]] = None
    """Families to sweep (default: all; see s2nerf_ns.bench.frontier.FAMILIES)."""
    seeds: List[int] = field(default_factory=lambda: [42])
    """The training seeds to run, e.g. --seeds 42 43 (the same list as privacy's --seeds)."""
    adaptive: bool = False
    """Attack with the adaptive attacker (knows the defense's public configuration)."""
    leakage_key: Optional[str] = None
    """Eval key on the y axis (default: the first of frontier.LEAKAGE_KEYS every record has)."""
    values: Optional[List[float]] = None
    """Only these knob values of the families (default: all of the preset's)."""
    baseline: bool = True
    """Also train the undefended victim of every room and seed (the reference for the PSNR lost)."""
    runs: Optional[Path] = None
    """Folder for the training runs (default: <out>/runs)."""
    merge: Optional[List[Path]] = None
    """Instead of running: merge these frontier.json files (e.g. one per worker) into <out>, then the
    figure, frontier.md and the verdict against the goal."""
    readme: Optional[Path] = None
    """README whose <!-- results:frontier --> ... <!-- /results --> block is regenerated from the results."""
    allow_dirty: bool = False
    """Write results from a git checkout with uncommitted changes (refused otherwise); recorded in every
    record's provenance and shown in the generated block."""

    def __post_init__(self) -> None:
        from s2nerf_ns.bench import frontier

        check_readme(self.readme)
        if self.merge:
            for path in self.merge:
                frontier.load(path)
        else:
            frontier.check_inputs(self.rooms, list(self.families or frontier.FAMILIES), self.seeds, self.values)

    def main(self) -> None:
        from s2nerf_ns.bench import frontier, frontier_report

        if self.merge:
            results = frontier.merge(self.merge, self.out, self.leakage_key)
        else:
            results = frontier.run(self.preset, self.out, self.rooms, self.families, self.seeds, self.adaptive,
                                   self.leakage_key, self.values, self.baseline, self.runs, self.allow_dirty)
        frontier_report.write(results, self.out / "frontier.md")
        if self.readme is not None:
            frontier_report.update_readme(self.readme, results)
        print(f"{len(results['records'])} points, leakage key {results['leakage_key']}: {self.out / 'frontier.json'}")


@dataclass
class Resolution:
    """The private items' size on the eval views of each preset's rooms (the mask pass only: seconds, no training)."""

    presets: List[Literal["smoke", "cpu", "gpu", "judge"]] = field(default_factory=lambda: ["cpu", "judge"])
    """Presets whose room size (resolution, views) to measure."""
    rooms: List[str] = field(default_factory=lambda: ["bedroom", "office", "livingroom"])
    """Rooms to measure."""

    def __post_init__(self) -> None:
        from s2nerf_ns.errors import InputError
        from s2nerf_ns.scenes import ROOM_NAMES

        bad = [r for r in self.rooms if r not in ROOM_NAMES]
        if not self.rooms or bad:
            raise InputError(f"--rooms {' '.join(bad)}: unknown room; rooms: {' '.join(ROOM_NAMES)}")
        if not self.presets:
            raise InputError("--presets: give at least one preset, e.g. --presets cpu judge")

    def main(self) -> None:
        from s2nerf_ns.bench import resolution
        from s2nerf_ns.bench.common import PRESETS

        for name in self.presets:
            print(resolution.markdown(resolution.preset_resolution(PRESETS[name], self.rooms), name))


@dataclass
class Figure:
    """PNG of an attack run's eval views: ground truth | victim | attacker | attacker, affine colour fit."""

    load_config: Path
    """config.yml of an attack run (splitnerf-sma, s2nerf-ssma, ...)."""
    out: Path = Path("attack.png")
    num_views: int = 4
    scale: int = 3

    def __post_init__(self) -> None:
        from s2nerf_ns.errors import InputError

        for flag, value in (("--num-views", self.num_views), ("--scale", self.scale)):
            if value < 1:
                raise InputError(f"{flag} {value}: give at least 1")

    def main(self) -> None:
        from s2nerf_ns.evaluation.figures import attack_figure

        print(attack_figure(self.load_config, self.out, self.num_views, self.scale))


@dataclass
class PoseReport:
    """Global pose search vs known pose: merge the two privacy results (one folder per worker allowed) and tabulate."""

    estimate: List[Path]
    """results.json of `s2nerf-bench privacy --pose estimate --pose-search global` (one or more)."""
    known: List[Path]
    """results.json of the same cells with --pose known (one or more)."""
    out: Path = Path("bench-results/pose")
    """Writes estimate.json, known.json (merged) and results.md."""
    readme: Optional[Path] = None
    """README whose <!-- results:pose --> ... <!-- /results --> block is regenerated."""

    def main(self) -> None:
        import json

        from s2nerf_ns.bench import pose_report

        estimate, known = pose_report.merge(self.estimate), pose_report.merge(self.known)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "estimate.json").write_text(json.dumps(estimate, indent=2))
        (self.out / "known.json").write_text(json.dumps(known, indent=2))
        text = pose_report.markdown(estimate, known)
        (self.out / "results.md").write_text(text)
        if self.readme is not None:
            pose_report.update_readme(self.readme, estimate, known)
        print(text)


def main() -> None:
    from s2nerf_ns.errors import install as install_error_printers

    install_error_printers()  # one-line errors: installed by the command, not by importing the package
    command = tyro.cli(Union[Annotated[Privacy, tyro.conf.subcommand("privacy")],
                             Annotated[Speed, tyro.conf.subcommand("speed")],
                             Annotated[Figure, tyro.conf.subcommand("figure")],
                             Annotated[Report, tyro.conf.subcommand("report")],
                             Annotated[Frontier, tyro.conf.subcommand("frontier")],
                             Annotated[PoseReport, tyro.conf.subcommand("pose-report")],
                             Annotated[Resolution, tyro.conf.subcommand("resolution")]])
    command.main()


if __name__ == "__main__":
    main()
