"""A dataparser that yields only the images a scene-aided attacker obtained ("leaked" photos).

It wraps the victim's dataparser config: leaked images are either chosen training views (by index or at
random with a seed) or, for the built-in rooms, extra off-trajectory views that are not in the training
set. The cameras it returns are the TRUE poses: the pipeline hands them to the attacker only with
``--pose known``; with ``--pose estimate`` they are used for scoring alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Tuple, Type

import torch

from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs

from s2nerf_ns.data.rooms_dataparser import RoomsDataParser


@dataclass
class LeakedViewsDataParserConfig(DataParserConfig):
    """Only the leaked images (for the attacker's datamanager)."""

    _target: Type = field(default_factory=lambda: LeakedViewsDataParser)
    victim: Optional[DataParserConfig] = None
    """The victim's dataparser (filled in by the pipeline)."""
    source: Literal["extra", "train"] = "extra"
    """extra: off-trajectory photos of the room not in the training set (built-in rooms); train: training views."""
    num_leaked: int = 1
    """How many images leaked (k)."""
    indices: Tuple[int, ...] = ()
    """Which ones (indices into the extra views or the training split); empty: chosen at random with the seed."""
    seed: int = 0
    """Seed for choosing leaked images at random."""
    data: Path = Path()

    def __post_init__(self) -> None:
        if self.num_leaked < 1:
            raise ValueError(f"num_leaked must be >= 1, got {self.num_leaked}")
        if self.indices and len(self.indices) != self.num_leaked:
            raise ValueError(f"{len(self.indices)} leaked indices given for num_leaked={self.num_leaked}")


class LeakedViewsDataParser(DataParser):
    config: LeakedViewsDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        cfg = self.config
        assert cfg.victim is not None, "LeakedViewsDataParserConfig.victim must be set"
        victim = cfg.victim.setup()
        train = victim.get_dataparser_outputs("train")
        if cfg.source == "extra":
            if not isinstance(victim, RoomsDataParser):
                raise ValueError("source 'extra' needs the built-in rooms (s2nerf-rooms); use --source train")
            extra = victim.get_extra_views()
            filenames, cameras = extra.image_filenames, extra.cameras
        else:
            filenames, cameras = train.image_filenames, train.cameras
        n = len(filenames)
        if cfg.num_leaked > n:
            raise ValueError(f"asked for {cfg.num_leaked} leaked images but only {n} {cfg.source} views exist")
        if cfg.indices:
            chosen = list(cfg.indices)
            if max(chosen) >= n or min(chosen) < 0:
                raise ValueError(f"leaked indices {chosen} out of range for {n} {cfg.source} views")
        else:
            chosen = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))[: cfg.num_leaked].tolist()
        return DataparserOutputs(
            image_filenames=[filenames[i] for i in chosen],
            cameras=cameras[torch.tensor(chosen)],
            scene_box=train.scene_box,
            dataparser_transform=train.dataparser_transform,
            dataparser_scale=train.dataparser_scale,
            metadata={"leaked_indices": chosen, "leaked_source": cfg.source},
        )
