"""Data: nerfstudio dataparser for the built-in Mitsuba rooms.

The registered dataparser specification is ``s2nerf_ns.data.rooms_dataparser:rooms_dataparser``
(not re-exported here, so that the submodule name is not shadowed).
"""

from s2nerf_ns.data.rooms_dataparser import ExtraViews, RoomsDataParser, RoomsDataParserConfig, check_room_folder

__all__ = ["ExtraViews", "RoomsDataParser", "RoomsDataParserConfig", "check_room_folder"]
