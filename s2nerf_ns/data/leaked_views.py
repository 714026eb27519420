"""A dataparser that yields only the images a scene-aided attacker obtained ("leaked" photos).

It wraps the victim's dataparser config: leaked images are either chosen training views (by index or at
random with a seed) or, for the built-in rooms, extra off-trajectory views that are not in the training
set. The cameras it returns are the TRUE poses: the pipeline hands them to the attacker only with
``--pose known``; with ``--pose estimate`` they are used for scoring alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Literal, Optional, Tuple, Type

import torch

from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs

from nerfstudio.utils.rich_utils import CONSOLE

from s2nerf_ns.data.rooms_dataparser import RoomsDataParser, RoomsDataParserConfig
from s2nerf_ns.errors import InputError
from s2nerf_ns.scenes.catalog import eval_split_indices


@dataclass
class LeakedViewsDataParserConfig(DataParserConfig):
    """Only the leaked images (for the attacker's datamanager)."""

    _target: Type = field(default_factory=lambda: LeakedViewsDataParser)
    victim: Optional[DataParserConfig] = None
    """The victim's dataparser (filled in by the pipeline)."""
    source: Literal["extra", "train"] = "extra"
    """extra: off-trajectory photos of the room not in the training set (built-in rooms; with other data, or a
    room without extra views, the training views are used and a line says so); train: training views."""
    num_leaked: int = 1
    """How many images leaked (k)."""
    indices: Tuple[int, ...] = ()
    """Which ones (indices into the extra views or the training split); empty: chosen at random with the seed."""
    seed: int = 0
    """Seed for choosing leaked images at random."""
    data: Path = Path()

    def __post_init__(self) -> None:
        if self.num_leaked < 1:
            raise InputError(f"--pipeline.leaked.num-leaked {self.num_leaked}: at least 1 image must leak")
        if self.indices and len(self.indices) != self.num_leaked:
            raise InputError(f"--pipeline.leaked.indices gives {len(self.indices)} index(es) for "
                             f"--pipeline.leaked.num-leaked {self.num_leaked}: give as many as leak")

    def check_against(self, victim: DataParserConfig, data: Optional[Path] = None) -> None:
        """Configuration time: for the built-in rooms from the cache, the number of extra and training views is
        known from the config, so too many leaked images are refused before anything is written. Other data is
        counted at setup."""
        if not isinstance(victim, RoomsDataParserConfig):
            return
        given = data if data is not None and str(data) not in ("", ".") else victim.data
        if given is not None and str(given) not in ("", "."):
            return  # a rendered room folder: its own counts, read at setup
        num_train = len(eval_split_indices(victim.num_views, victim.eval_interval, "train"))
        counts = {"extra": victim.num_extra_views, "train": num_train}
        source = self.source if counts["extra"] > 0 else "train"
        check_leak_count(self, source, counts)


def check_leak_count(cfg: LeakedViewsDataParserConfig, source: str, counts: Dict[str, int]) -> None:
    """One line naming --pipeline.leaked.num-leaked / --pipeline.leaked.indices and how many views exist."""
    n = counts[source]
    what = {"extra": "extra (off-trajectory) views", "train": "training views"}[source]
    if cfg.num_leaked > n:
        hint = ""
        if source == "extra" and counts.get("train", 0) >= cfg.num_leaked:
            hint = f", or leak training views with --pipeline.leaked.source train ({counts['train']} exist)"
        raise InputError(f"--pipeline.leaked.num-leaked {cfg.num_leaked}: only {n} {what} exist; "
                         f"give --pipeline.leaked.num-leaked {n} or fewer{hint}")
    if cfg.indices and (max(cfg.indices) >= n or min(cfg.indices) < 0):
        raise InputError(f"--pipeline.leaked.indices {' '.join(map(str, cfg.indices))}: out of range, "
                         f"{n} {what} exist (indices 0 to {n - 1})")


class LeakedViewsDataParser(DataParser):
    config: LeakedViewsDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        cfg = self.config
        assert cfg.victim is not None, "LeakedViewsDataParserConfig.victim must be set"
        victim = cfg.victim.setup()
        train = victim.get_dataparser_outputs("train")
        is_room = isinstance(victim, RoomsDataParser)
        source = cfg.source
        extra = victim.get_extra_views() if is_room and source == "extra" else None
        if source == "extra" and (extra is None or not extra.image_filenames):
            why = ("this room was rendered with --num-extra-views 0" if is_room else
                   "only the built-in s2nerf-rooms have extra views")
            CONSOLE.log(f"Leaked photos are training views (--pipeline.leaked.source train): {why}.")
            source = "train"  # the leak data's metadata (and so the leak report) says what was used
        if source == "extra":
            assert extra is not None
            filenames, cameras = extra.image_filenames, extra.cameras
        else:
            filenames, cameras = train.image_filenames, train.cameras
        counts = {"train": len(train.image_filenames), "extra": len(extra.image_filenames) if extra else 0}
        check_leak_count(cfg, source, counts)
        if cfg.indices:
            chosen = list(cfg.indices)
        else:
            order = torch.randperm(len(filenames), generator=torch.Generator().manual_seed(cfg.seed))
            chosen = order[: cfg.num_leaked].tolist()
        return DataparserOutputs(
            image_filenames=[filenames[i] for i in chosen],
            cameras=cameras[torch.tensor(chosen)],
            scene_box=train.scene_box,
            dataparser_transform=train.dataparser_transform,
            dataparser_scale=train.dataparser_scale,
            metadata={"leaked_indices": chosen, "leaked_source": source},
        )
