"""The three built-in rooms (bedroom, office, living room): furniture, lights, windows and private items.

Each builder fills a :class:`~s2nerf_ns.scenes.builder.RoomBuilder`; the shape order and every random draw
are part of the rendered output, so edits here need a :data:`~s2nerf_ns.scenes.catalog.RENDER_VERSION` bump.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict

import numpy as np

from s2nerf_ns.scenes import textures
from s2nerf_ns.scenes.builder import RoomBuilder
from s2nerf_ns.scenes.catalog import ROOM_NAMES, VARIANT, check_scene, room_size, scene_rng
from s2nerf_ns.scenes.geometry import rot_z
from s2nerf_ns.scenes.materials import diffuse, plastic, roughplastic, textured


def build_bedroom(r: RoomBuilder) -> None:
    W, D, H = r.size
    rng = r.rng
    r.shell(textures.wallpaper(rng, W, H, [0.62, 0.7, 0.78], "stripes"), textures.wood_floor(rng, W, D, [0.55, 0.36, 0.2]),
            textures.ceiling(rng, W, D, tiles=False), diffuse([0.85, 0.85, 0.85]))
    wood = roughplastic([0.35, 0.2, 0.1], 0.3)
    blanket = [[0.1, 0.15, 0.45], [0.5, 0.08, 0.1], [0.15, 0.35, 0.2]][int(rng.integers(3))]
    bx = 1.3 + r.jitter(0.03)
    # bed in the north-west corner (headboard against the north wall)
    r.box("bed_frame", [bx, D - 1.07, 0.2], [1.7, 2.1, 0.4], wood)
    r.box("mattress", [bx, D - 1.07, 0.5], [1.6, 2.0, 0.2], diffuse([0.85, 0.85, 0.82]))
    r.box("blanket", [bx, D - 1.4, 0.625], [1.66, 1.4, 0.05], diffuse(blanket))
    r.box("blanket_fold", [bx, D - 0.72, 0.64], [1.66, 0.2, 0.07], diffuse([0.9, 0.9, 0.85]))
    for s in (-1, 1):
        r.box("pillow", [bx + s * 0.38, D - 0.32, 0.66], [0.62, 0.36, 0.14], diffuse([0.9, 0.88, 0.8]))
    r.box("headboard", [bx, D - 0.05, 0.62], [1.8, 0.1, 1.24], roughplastic([0.45, 0.4, 0.55], 0.5))
    # nightstand + bedside lamp
    r.box("nightstand", [bx + 1.15, D - 0.25, 0.27], [0.45, 0.42, 0.54], roughplastic([0.85, 0.82, 0.75], 0.2))
    r.lamp("bedside_lamp", [bx + 1.15, D - 0.25, 0.54], 0.3, 0.09, [9.0, 6.5, 3.5])
    # private photo over the bed
    r.framed_picture("photo_astronaut", "north", bx, 1.72, textures.photo("astronaut"), 0.62, source="skimage.data.astronaut")
    # wardrobe on the east wall
    wy = D - 1.25
    r.box("wardrobe", [W - 0.31, wy, 1.0], [0.6, 1.4, 2.0], roughplastic([0.9, 0.88, 0.82], 0.3))
    for s in (-1, 1):
        r.box("wardrobe_door", [W - 0.62, wy + s * 0.35, 1.0], [0.02, 0.68, 1.9], plastic([0.75, 0.55, 0.35]))
        r.sphere("wardrobe_knob", [W - 0.645, wy + s * 0.06, 1.05], 0.025, bsdf=roughplastic([0.1, 0.1, 0.1], 0.1))
    # desk + chair on the south wall, with a letter on the desk and a diary note pinned above
    dx = 2.8 + r.jitter()
    r.table("desk", [dx, 0.33, 0], [1.2, 0.6, 0.75], roughplastic([0.6, 0.45, 0.3], 0.25), diffuse([0.1, 0.1, 0.1]))
    r.chair("desk_chair", [dx + 0.1, 0.92, 0], 0.15, roughplastic([0.7, 0.1, 0.08], 0.3), diffuse([0.2, 0.2, 0.2]))
    # documents lying on furniture are oriented to be read from the room centre
    r.document("letter_desk", textures.fake_text("letter"), [dx - 0.2, 0.36, 0.752], [-math.cos(0.2), -math.sin(0.2), 0],
               [math.sin(0.2), -math.cos(0.2), 0], 0.36)
    r.box("laptop", [dx + 0.3, 0.3, 0.76], [0.34, 0.24, 0.02], roughplastic([0.6, 0.6, 0.62], 0.15), yaw=-0.2)
    r.box("corkboard", r.wall_point("south", dx, 1.55, 0.01), [0.9, 0.02, 0.6], diffuse([0.6, 0.42, 0.25]), obstacle=False)
    r.wall_document("diary_note", textures.fake_text("diary"), "south", dx - 0.12, 1.55, 0.5, offset=0.023)
    # low bookshelf + cat photo on the west wall
    r.bookshelf("shelf", "west", 1.1, 1.0, 0.9, 0.32, 2, roughplastic([0.4, 0.25, 0.12], 0.3))
    r.framed_picture("photo_cat", "west", 1.1, 1.55, textures.photo("chelsea"), 0.45, source="skimage.data.chelsea",
                     frame_bsdf=roughplastic([0.7, 0.6, 0.3], 0.2))
    # plant, rug, ceiling light
    r.plant("plant", [W - 0.4, 0.4, 0], 1.1)
    rug = r.save_texture("rug", textures.rug(rng, 1.8, 1.2, [0.6, 0.1, 0.1], [0.85, 0.75, 0.55], [0.1, 0.1, 0.3]))
    r.rect("rug", [2.9, 1.9, 0.004], [1, 0, 0], [0, 1, 0], 1.8, 1.2, bsdf=textured(rug))
    r.ceiling_panel("ceiling_light", W / 2, D / 2, 1.2, 1.2, [8.5, 8.2, 7.6])
    r.loop = (2.95, 2.0, 1.2, 0.9)


def build_office(r: RoomBuilder) -> None:
    W, D, H = r.size
    rng = r.rng
    r.shell(textures.wallpaper(rng, W, H, [0.72, 0.7, 0.66], "panels"), textures.carpet_tiles(rng, W, D, [0.32, 0.34, 0.38]),
            textures.ceiling(rng, W, D, tiles=True), diffuse([0.2, 0.2, 0.22]))
    desk_top = roughplastic([0.75, 0.72, 0.66], 0.2)
    steel = roughplastic([0.3, 0.3, 0.32], 0.25)
    black = plastic([0.02, 0.02, 0.02])
    # two desks with monitors along the north wall
    screens = [("screen_email", textures.fake_text("email", paper=(230, 240, 255)), "document"),
               ("screen_photo", textures.photo("camera"), "photo")]
    for k, x in enumerate([1.45 + r.jitter(), 3.65 + r.jitter()]):
        r.box("desk_top", [x, D - 0.42, 0.74], [1.6, 0.75, 0.04], desk_top)
        for s in (-1, 1):
            r.box("desk_side", [x + s * 0.76, D - 0.42, 0.36], [0.04, 0.7, 0.72], steel)
        r.cylinder("monitor_stand", [x, D - 0.3, 0.76], 0.18, 0.03, steel)
        r.box("monitor", [x, D - 0.3, 1.12], [0.62, 0.04, 0.38], black)
        name, img, kind = screens[k]
        r.document(name, img, [x, D - 0.3 - 0.022, 1.12], [1, 0, 0], [0, 0, 1], 0.34, kind=kind, glossy=True)
        if kind == "photo":
            r.private_items[-1]["source"] = "skimage.data.camera"
        r.box("keyboard", [x, D - 0.62, 0.77], [0.45, 0.15, 0.02], diffuse([0.12, 0.12, 0.12]))
        r.cylinder("mug", [x + 0.45, D - 0.55, 0.76], 0.1, 0.04, plastic([[0.7, 0.1, 0.1], [0.1, 0.3, 0.7]][k]))
        r.office_chair("office_chair", [x + 0.1 * (k - 0.5), D - 1.2, 0], math.pi + 0.2 * (k - 0.5), roughplastic([0.08, 0.1, 0.25], 0.4))
    # window above the desks
    r.window("window", "north", 2.55, 1.85, 2.4, 0.8, [2.2, 2.6, 3.2])
    # bookshelf on the west wall
    r.bookshelf("bookshelf", "west", 2.1, 1.5, 2.0, 0.35, 4, roughplastic([0.55, 0.4, 0.25], 0.3))
    # whiteboard with confidential notes on the east wall
    r.wall_box("whiteboard_frame", "east", 2.2, 1.45, 1.7, 1.08, 0.025, roughplastic([0.6, 0.6, 0.62], 0.15))
    r.wall_document("whiteboard", textures.fake_text("whiteboard", width=170, height=105, paper=(245, 245, 245), ink=(10, 40, 120)),
                    "east", 2.2, 1.45, 1.0, offset=0.028, glossy=True)
    # coffee photo + rocket poster on the south wall
    r.framed_picture("photo_coffee", "south", 1.4, 1.6, textures.photo("coffee"), 0.5, source="skimage.data.coffee")
    r.framed_picture("poster_rocket", "south", 3.9, 1.55, textures.photo("rocket"), 0.75, source="skimage.data.rocket",
                     frame_bsdf=roughplastic([0.8, 0.8, 0.8], 0.2))
    # round meeting table with two chairs and a memo
    tx, ty = 3.95 + r.jitter(), 1.3 + r.jitter()
    r.cylinder("meeting_table_top", [tx, ty, 0.72], 0.04, 0.6, roughplastic([0.9, 0.9, 0.88], 0.2))
    r.cylinder("meeting_table_post", [tx, ty, 0.03], 0.69, 0.05, steel, caps=False)
    r.cylinder("meeting_table_foot", [tx, ty, 0.0], 0.03, 0.3, steel)
    r.chair("meeting_chair", [tx - 0.85, ty - 0.1, 0], math.pi / 2 + 0.1, roughplastic([0.85, 0.5, 0.1], 0.3), steel)
    r.chair("meeting_chair", [tx + 0.85, ty + 0.1, 0], -math.pi / 2 - 0.2, roughplastic([0.85, 0.5, 0.1], 0.3), steel)
    r.document("memo_table", textures.fake_text("memo"), [tx, ty, 0.762], [1, 0, 0], [0, 1, 0], 0.32)
    # filing cabinet + plant
    r.box("cabinet", [W - 0.3, D - 0.35, 0.55], [0.5, 0.6, 1.1], roughplastic([0.45, 0.5, 0.55], 0.2))
    for k in range(3):
        r.box("drawer", [W - 0.3, D - 0.66, 0.2 + 0.35 * k], [0.44, 0.02, 0.3], roughplastic([0.55, 0.6, 0.65], 0.2))
    r.plant("plant", [W - 0.4, 0.4, 0], 1.3)
    r.plant("plant_small", [0.4, 0.4, 0], 0.9)
    for i, x in enumerate([W * 0.3, W * 0.7]):
        for j, y in enumerate([D * 0.33, D * 0.7]):
            r.ceiling_panel(f"panel_{i}{j}", x, y, 0.6, 1.2, [6.0, 6.0, 6.0])
    r.loop = (2.55, 2.05, 1.75, 0.95)


def build_livingroom(r: RoomBuilder) -> None:
    W, D, H = r.size
    rng = r.rng
    r.shell(textures.wallpaper(rng, W, H, [0.78, 0.68, 0.55], "trellis"), textures.wood_floor(rng, W, D, [0.62, 0.45, 0.28], 0.2),
            textures.ceiling(rng, W, D, tiles=False), diffuse([0.9, 0.9, 0.88]))
    fabric = diffuse([[0.1, 0.35, 0.38], [0.45, 0.3, 0.2], [0.3, 0.3, 0.35]][int(rng.integers(3))])
    sx = 3.0 + r.jitter()
    # sofa against the south wall
    r.box("sofa_base", [sx, 0.5, 0.22], [2.2, 0.9, 0.44], fabric)
    r.box("sofa_back", [sx, 0.14, 0.65], [2.2, 0.26, 0.42], fabric)
    for s in (-1, 1):
        r.box("sofa_arm", [sx + s * 1.0, 0.55, 0.55], [0.2, 0.86, 0.24], fabric)
    for k in (-1, 0, 1):
        r.box("cushion", [sx + k * 0.6, 0.58, 0.5], [0.58, 0.7, 0.12], fabric)
    r.box("throw_pillow", [sx - 0.65, 0.36, 0.68], [0.4, 0.14, 0.36], diffuse([0.8, 0.6, 0.1]), yaw=0.1)
    r.box("throw_pillow", [sx + 0.65, 0.36, 0.68], [0.4, 0.14, 0.36], diffuse([0.7, 0.15, 0.2]), yaw=-0.1)
    r.framed_picture("photo_cat", "south", sx, 1.62, textures.photo("chelsea"), 0.62, source="skimage.data.chelsea")
    # coffee table with a bank statement and magazines
    r.table("coffee_table", [sx, 1.65, 0], [1.1, 0.6, 0.42], plastic([0.3, 0.18, 0.08]), diffuse([0.1, 0.1, 0.1]))
    r.document("bank_statement", textures.fake_text("bank"), [sx - 0.18, 1.65, 0.422], [-math.cos(0.25), -math.sin(0.25), 0],
               [math.sin(0.25), -math.cos(0.25), 0], 0.34)
    r.box("magazine", [sx + 0.3, 1.62, 0.43], [0.22, 0.3, 0.02], diffuse([0.1, 0.4, 0.7]), yaw=0.4, obstacle=False)
    # TV on the north wall, showing the rocket photo
    r.box("tv_stand", [sx, D - 0.25, 0.25], [1.8, 0.45, 0.5], roughplastic([0.15, 0.12, 0.1], 0.25))
    r.box("tv", [sx, D - 0.05, 1.2], [1.3, 0.06, 0.78], plastic([0.02, 0.02, 0.02]))
    r.document("tv_screen", textures.photo("rocket"), [sx, D - 0.082, 1.2], [1, 0, 0], [0, 0, 1], 0.7, kind="photo", glossy=True)
    r.private_items[-1]["source"] = "skimage.data.rocket"
    r.plant("plant_tv", [sx + 0.7, D - 0.25, 0.5], 0.6)
    # armchair (east side, turned towards the room)
    ax, ay, yaw = W - 0.9, 1.6 + r.jitter(), -1.1
    R = rot_z(yaw)[:3, :3]
    arm = diffuse([0.55, 0.2, 0.15])
    c = np.array([ax, ay, 0])
    r.box("armchair_base", c + [0, 0, 0.22], [0.85, 0.8, 0.44], arm, yaw=yaw)
    r.box("armchair_back", c + R @ [0, 0.32, 0.65], [0.85, 0.18, 0.45], arm, yaw=yaw)
    for s in (-1, 1):
        r.box("armchair_arm", c + R @ [s * 0.37, 0, 0.55], [0.12, 0.8, 0.22], arm, yaw=yaw)
    # floor lamp in the north-west corner, window on the west wall
    r.lamp("floor_lamp", [0.4, D - 0.4, 0], 1.55, 0.16, [9.0, 7.0, 4.0])
    r.window("window", "west", 2.2, 1.45, 1.6, 1.2, [2.6, 2.9, 3.3])
    # bookshelf + family photo + calendar on the east wall
    r.bookshelf("bookshelf", "east", D - 1.1, 1.2, 1.8, 0.33, 4, roughplastic([0.7, 0.7, 0.68], 0.25))
    r.framed_picture("photo_family", "east", D - 2.55, 1.6, textures.photo("astronaut"), 0.5, source="skimage.data.astronaut",
                     frame_bsdf=roughplastic([0.75, 0.6, 0.25], 0.2))
    r.wall_document("calendar", textures.fake_text("calendar"), "east", 1.0, 1.55, 0.55, offset=0.006)
    # plant, rug, ceiling lights
    r.plant("plant", [0.45, 0.45, 0], 1.2)
    rug = r.save_texture("rug", textures.rug(rng, 2.6, 1.8, [0.75, 0.7, 0.6], [0.2, 0.3, 0.5], [0.6, 0.3, 0.15]))
    r.rect("rug", [sx, 1.9, 0.004], [1, 0, 0], [0, 1, 0], 2.6, 1.8, bsdf=textured(rug))
    for x in (W * 0.35, W * 0.65):
        r.ceiling_panel(f"ceiling_light_{x:.0f}", x, D / 2, 0.8, 0.8, [7.5, 7.1, 6.5])
    r.loop = (3.0, 2.65, 1.7, 1.05)


BUILDERS: Dict[str, Callable[[RoomBuilder], None]] = {
    "bedroom": build_bedroom,
    "office": build_office,
    "livingroom": build_livingroom,
}
"""The builder of each room (sizes: :data:`~s2nerf_ns.scenes.catalog.ROOM_SIZES`)."""

assert tuple(BUILDERS) == ROOM_NAMES, "every room needs a builder"


def build_room(scene: str, tex_dir: Path, seed: int = 0) -> RoomBuilder:
    """Construct a room description (shapes, obstacles, private items); textures are written to ``tex_dir``."""
    check_scene(scene)
    import mitsuba as mi

    if mi.variant() is None:
        mi.set_variant(VARIANT)
    tex_dir = Path(tex_dir)
    tex_dir.mkdir(parents=True, exist_ok=True)
    room = RoomBuilder(scene, room_size(scene), tex_dir, scene_rng(scene, seed, 0))
    BUILDERS[scene](room)
    return room
