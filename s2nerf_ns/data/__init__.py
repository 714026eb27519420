"""Data: nerfstudio dataparser for the built-in Mitsuba rooms."""

from s2nerf_ns.data.rooms_dataparser import (
    ExtraViews,
    RoomsDataParser,
    RoomsDataParserConfig,
    check_room_folder,
    rooms_dataparser,
)

__all__ = ["ExtraViews", "RoomsDataParser", "RoomsDataParserConfig", "check_room_folder", "rooms_dataparser"]
