"""The instrument's resolution: private-item pixels per eval view, from the rooms' mask pass (issue 23)."""

import numpy as np
from PIL import Image

from s2nerf_ns.bench import common, resolution
from s2nerf_ns.data.rooms_dataparser import RoomsDataParserConfig
from s2nerf_ns.scenes.catalog import eval_split_indices


def test_item_pixels_add_up_to_the_rooms_own_masks():
    """Per eval view, the items rendered one at a time cover what the rendered room's mask covers."""
    config = RoomsDataParserConfig(scene="office", resolution=24, spp=2, num_views=16, num_extra_views=2)
    config.setup().get_dataparser_outputs("val")  # renders (or finds) the tiny room in the test cache
    got = resolution.item_pixels("office", 24, 16)
    masks = [np.asarray(Image.open(config.cache_path() / "masks" / f"frame_{i:05d}.png")) > 127
             for i in eval_split_indices(16, config.eval_interval, "val")]
    assert got["view_pixels"] == [int(m.sum()) for m in masks]
    assert all(sum(items) >= total for items, total in zip(got["item_pixels"], got["view_pixels"]))
    assert got["num_items"] >= 1 and any(got["item_pixels"])


def test_judge_preset_is_larger_than_cpu():
    judge, cpu = common.PRESETS["judge"], common.PRESETS["cpu"]
    assert judge.resolution == 288 and judge.num_views == cpu.num_views and judge.steps * judge.rays > cpu.steps * cpu.rays
    text = resolution.markdown([{"room": "office", "resolution": 128, "num_items": 6, "mean_view_pixels": 610.0,
                                 "mean_item_pixels": 325.0, "median_item_pixels": 279.0}], "judge")
    assert "| office | 128 | 6 | 610 | 325, 279 |" in text


def test_judge_preset_gives_every_room_1000_private_pixels_per_eval_view():
    """The judging preset is sized by the instrument (issue 23): the private items cover at least 1,000 pixels per
    eval view on average, on every built-in room (the mask pass only)."""
    rows = resolution.preset_resolution(common.PRESETS["judge"], ["bedroom", "office", "livingroom"])
    assert {r["room"] for r in rows} == {"bedroom", "office", "livingroom"}
    assert all(r["mean_view_pixels"] >= 1000 for r in rows), rows
