"""Tests for the built-in Mitsuba rooms and the ``s2nerf-rooms`` dataparser (tiny renders, < ~1 min)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2nerf_ns.scenes import ROOM_NAMES, render_room, save_preview
from s2nerf_ns.scenes import renderer as mrender
from s2nerf_ns.scenes.builder import RoomBuilder

TINY = dict(resolution=24, spp=2, num_views=9, num_extra_views=2)


def _load_view(folder: Path, meta: dict, i: int):
    fr = meta["frames"][i]
    rgb = np.asarray(Image.open(folder / fr["file_path"]).convert("RGB"), dtype=np.float64) / 255.0
    depth = np.load(folder / fr["depth_file_path"])
    return rgb, depth, np.asarray(fr["transform_matrix"], dtype=np.float64)


def _reproject(folder: Path, a: int, b: int, camera_fix: np.ndarray | None = None):
    """Unproject view a's z-depth with nerfstudio pose/intrinsics, project into view b.

    Returns (in_bounds mask, relative depth error, colour error, colour error against a random pixel
    of view b) over all pixels of view a.
    ``camera_fix`` right-multiplies both poses (used for a negative control with the wrong convention).
    """
    with open(folder / "transforms.json") as f:
        meta = json.load(f)
    fx, fy, cx, cy, w, h = (meta[k] for k in ("fl_x", "fl_y", "cx", "cy", "w", "h"))
    rgb_a, d_a, pose_a = _load_view(folder, meta, a)
    rgb_b, d_b, pose_b = _load_view(folder, meta, b)
    if camera_fix is not None:
        pose_a, pose_b = pose_a @ camera_fix, pose_b @ camera_fix
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    # nerfstudio / OpenGL camera: x right, y up, looking along -z; pixel centres at i + 0.5
    pts = np.stack([(u + 0.5 - cx) / fx * d_a, -(v + 0.5 - cy) / fy * d_a, -d_a, np.ones_like(d_a)], -1).reshape(-1, 4)
    world = pts @ pose_a.T
    cam_b = world @ np.linalg.inv(pose_b).T
    z_b = -cam_b[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u_b = fx * cam_b[:, 0] / z_b + cx
        v_b = -fy * cam_b[:, 1] / z_b + cy
    inb = (z_b > 0.05) & (u_b >= 0) & (u_b < w) & (v_b >= 0) & (v_b < h) & (d_a.reshape(-1) > 0)
    ui = np.clip(np.nan_to_num(u_b).astype(int), 0, w - 1)
    vi = np.clip(np.nan_to_num(v_b).astype(int), 0, h - 1)
    rel = np.abs(d_b[vi, ui] - z_b) / np.maximum(z_b, 1e-6)
    col = np.abs(rgb_b[vi, ui] - rgb_a.reshape(-1, 3)).mean(-1)
    rng = np.random.default_rng(0)
    col_random = np.abs(rgb_b.reshape(-1, 3)[rng.integers(0, w * h, w * h)] - rgb_a.reshape(-1, 3)).mean(-1)
    return inb, rel, col, col_random


# --------------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_rooms(tmp_path_factory):
    base = tmp_path_factory.mktemp("rooms")
    return {s: render_room(s, base / s, seed=0, progress=False, **TINY) for s in ROOM_NAMES}


def test_tiny_render_files(tiny_rooms):
    for scene, folder in tiny_rooms.items():
        meta = json.loads((folder / "transforms.json").read_text())
        assert meta["camera_model"] == "OPENCV" and meta["w"] == meta["h"] == 24
        assert len(meta["frames"]) == 9
        assert meta["val_filenames"] == meta["test_filenames"] == ["images/frame_00000.png", "images/frame_00008.png"]
        assert len(meta["train_filenames"]) == 7
        for fr in meta["frames"]:
            img = np.asarray(Image.open(folder / fr["file_path"]))
            assert img.shape == (24, 24, 3) and img.dtype == np.uint8
            assert img.std() > 5, f"{scene}: {fr['file_path']} is (nearly) constant"
            depth = np.load(folder / fr["depth_file_path"])
            assert depth.shape == (24, 24) and depth.dtype == np.float32
            assert np.all(depth > 0.05) and np.all(depth < 10), "closed room: every pixel hits something"
            assert "mask_path" not in fr, "private masks must not become nerfstudio's training masks"
            mask = np.asarray(Image.open(folder / fr["private_mask_file_path"]))
            assert mask.shape == (24, 24) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
            c2w = np.asarray(fr["transform_matrix"])
            assert c2w.shape == (4, 4) and np.allclose(c2w[3], [0, 0, 0, 1])
            assert np.allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-6)
        room = json.loads((folder / "s2nerf_room.json").read_text())
        assert room["room"] == scene and room["seed"] == 0
        lo, hi = np.asarray(room["room_aabb"])
        assert 4 <= hi[0] - lo[0] <= 6.5 and 3 <= hi[1] - lo[1] <= 5 and 2.4 <= hi[2] - lo[2] <= 2.8
        assert len(room["render_time_s"]["per_view"]) == 9 + 2
        assert sum(item["kind"] == "photo" for item in room["private_items"]) >= 1
        assert sum(item["kind"] == "document" for item in room["private_items"]) >= 1
        for item in room["private_items"]:
            assert (folder / item["texture"]).is_file()
        extra = json.loads((folder / "extra" / "extra_transforms.json").read_text())
        assert len(extra["frames"]) == 2
        for fr in extra["frames"]:
            assert (folder / "extra" / fr["file_path"]).is_file() and (folder / "extra" / fr["depth_file_path"]).is_file()
            assert np.asarray(Image.open(folder / "extra" / fr["private_mask_file_path"])).shape == (24, 24)
        assert meta["frames"][3]["private_mask_file_path"] == "masks/frame_00003.png"
        assert extra["frames"][1]["private_mask_file_path"] == "masks/extra_00001.png"
        assert all(item["shape"] and len(item["corners"]) == 4 for item in room["private_items"])
        # cameras are inside the room, at hand-held height
        pos = np.array([np.asarray(fr["transform_matrix"])[:3, 3] for fr in meta["frames"]])
        assert np.all(pos > lo) and np.all(pos < hi)
        assert np.all((pos[:, 2] > 1.1) & (pos[:, 2] < 1.8))


def test_rooms_differ(tiny_rooms):
    imgs = {s: np.asarray(Image.open(f / "images/frame_00001.png"), dtype=np.float64) for s, f in tiny_rooms.items()}
    for a in ROOM_NAMES:
        for b in ROOM_NAMES:
            if a < b:
                assert np.abs(imgs[a] - imgs[b]).mean() > 10


def test_deterministic_and_seed_dependent(tiny_rooms, tmp_path):
    ref = tiny_rooms["office"]
    again = render_room("office", tmp_path / "again", seed=0, progress=False, **TINY)
    for sub in ("images/frame_00000.png", "images/frame_00005.png", "extra/images/extra_00001.png"):
        assert (ref / sub).read_bytes() == (again / sub).read_bytes()
    for sub in ("depths/frame_00003.npy", "extra/depths/extra_00000.npy"):
        assert np.array_equal(np.load(ref / sub), np.load(again / sub))
    for sub in ("masks/frame_00004.png", "extra/masks/extra_00001.png"):
        assert (ref / sub).read_bytes() == (again / sub).read_bytes()
    assert json.loads((ref / "transforms.json").read_text()) == json.loads((again / "transforms.json").read_text())
    other = render_room("office", tmp_path / "seed1", seed=1, progress=False, **TINY)
    assert (ref / "images/frame_00000.png").read_bytes() != (other / "images/frame_00000.png").read_bytes()


def test_render_room_rejects_bad_args(tmp_path):
    with pytest.raises(ValueError, match="bedroom, office, livingroom"):
        render_room("kitchen", tmp_path / "x")
    for kw in (dict(resolution=0), dict(spp=0), dict(num_views=-3), dict(num_extra_views=-1)):
        with pytest.raises(ValueError, match="must be"):
            render_room("office", tmp_path / "x", progress=False, **kw)
    assert not (tmp_path / "x").exists()


def test_render_replaces_existing_folder_atomically(tmp_path):
    out = tmp_path / "room"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    render_room("bedroom", out, resolution=16, spp=1, num_views=2, num_extra_views=0, progress=False)
    assert not (out / "stale.txt").exists() and (out / "transforms.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["room"], "no temporary folders left behind"


def test_depth_pass_is_zdepth():
    """Mitsuba's depth AOV is the ray distance from the near plane; the depth pass converts to z-depth,
    so a fronto-parallel wall at distance 3 must have z-depth 3 in every pixel (the ray distance would
    grow towards the image corners)."""
    import mitsuba as mi

    mi.set_variant("scalar_rgb")
    res = 32
    c2w = np.eye(4)  # nerfstudio camera looking along -z ...
    c2w[:3, 3] = [0.3, -0.2, 0.5]  # ... from z = 0.5
    wall = np.diag([50.0, 50.0, 1.0, 1.0])
    wall[2, 3] = -2.5  # rectangle in the plane z = -2.5, i.e. at distance 3
    scene = mi.load_dict({"type": "scene", "integrator": {"type": "path"}, "light": {"type": "constant"},
                          "wall": {"type": "rectangle", "to_world": mi.ScalarTransform4f(wall.tolist())}})
    room = RoomBuilder("test", (1.0, 1.0, 1.0), Path("."), np.random.default_rng(0))
    renderer = mrender.Renderer(room, res, 4)
    renderer.scene = scene
    aov = np.array(mi.render(scene, sensor=mrender.sensor(c2w, res, 4), integrator=renderer.aov, spp=4, seed=0))
    t = aov[..., 0]
    assert t[0, 0] > t[res // 2, res // 2] + 0.5, "raw depth AOV is a ray distance, larger in the corners"
    assert np.allclose(mrender.aov_to_zdepth(t, res), 3.0, rtol=0.01), "z = t * d_z + near_clip (approximately)"
    _, z = renderer.render(c2w, seed=0)
    assert z.dtype == np.float32 and z.shape == (res, res)
    assert np.allclose(z, 3.0, atol=1e-4), (z.min(), z.max())


# --------------------------------------------------------------------------------------------------
# private-item masks
# --------------------------------------------------------------------------------------------------


def _all_views(folder: Path):
    """(intrinsics header, [(base folder, frame)]) of the trajectory views and the extra views."""
    meta = json.loads((folder / "transforms.json").read_text())
    extra = json.loads((folder / "extra" / "extra_transforms.json").read_text())
    return meta, [(folder, fr) for fr in meta["frames"]] + [(folder / "extra", fr) for fr in extra["frames"]]


def _project(meta: dict, c2w: np.ndarray, pts: np.ndarray):
    """Pixel coordinates (u, v) and z-depth of world points ``pts`` [N, 3] (nerfstudio camera)."""
    cam = np.c_[pts, np.ones(len(pts))] @ np.linalg.inv(c2w).T
    z = -cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return meta["fl_x"] * cam[:, 0] / z + meta["cx"], -meta["fl_y"] * cam[:, 1] / z + meta["cy"], z


def _inside_convex(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Whether 2-D points [M, 2] lie inside the convex polygon [K, 2] (either orientation)."""
    edges = np.roll(poly, -1, axis=0) - poly
    cross = edges[None, :, 0] * (pts[:, None, 1] - poly[None, :, 1]) - edges[None, :, 1] * (pts[:, None, 0] - poly[None, :, 0])
    return np.all(cross >= 0, axis=1) | np.all(cross <= 0, axis=1)


def test_private_masks_nonempty_and_minority(tiny_rooms):
    for scene, folder in tiny_rooms.items():
        _, views = _all_views(folder)
        fractions = [float((np.asarray(Image.open(base / fr["private_mask_file_path"])) > 0).mean()) for base, fr in views]
        assert max(fractions) > 0, f"{scene}: no private item visible in any view"
        assert max(fractions) < 0.5 and np.mean(fractions) < 0.2, (scene, fractions)


def test_private_masks_align_with_item_geometry(tiny_rooms):
    """Masked pixels lie on the projections of the private items' rectangles (recorded corners), and a pixel
    fully inside an item's projection whose depth is the item's depth (so the item is visible there) is masked."""
    for scene, folder in tiny_rooms.items():
        room = json.loads((folder / "s2nerf_room.json").read_text())
        meta, views = _all_views(folder)
        w, h = meta["w"], meta["h"]
        visible_checked = 0
        for base, fr in views:
            c2w = np.asarray(fr["transform_matrix"])
            mask = np.asarray(Image.open(base / fr["private_mask_file_path"])) > 0
            depth = np.load(base / fr["depth_file_path"])
            allowed = np.zeros((h, w), bool)
            for item in room["private_items"]:
                corners = np.asarray(item["corners"])
                u, v, z = _project(meta, c2w, corners)
                if np.all(z <= 0.05):
                    continue  # behind the camera
                if np.any(z <= 0.05):
                    allowed[:] = True  # crosses the camera plane: projection unbounded, no constraint
                    continue
                lo_u, hi_u = int(np.floor(u.min())) - 1, int(np.ceil(u.max())) + 1
                lo_v, hi_v = int(np.floor(v.min())) - 1, int(np.ceil(v.max())) + 1
                allowed[max(lo_v, 0):max(hi_v, 0), max(lo_u, 0):max(hi_u, 0)] = True
                # the pixel under the item's centre, if entirely inside the item's projection and not occluded
                cu, cv, cz = _project(meta, c2w, corners.mean(0, keepdims=True))
                i, j = int(np.floor(cv[0])), int(np.floor(cu[0]))
                if not (0 <= i < h and 0 <= j < w):
                    continue
                pixel = np.array([[j, i], [j + 1, i], [j + 1, i + 1], [j, i + 1]], dtype=float)
                if _inside_convex(np.c_[u, v], pixel).all() and abs(depth[i, j] - cz[0]) < 0.02 * cz[0]:
                    assert mask[i, j], f"{scene} {fr['file_path']}: visible private item {item['name']} not masked"
                    visible_checked += 1
            assert not (mask & ~allowed).any(), f"{scene} {fr['file_path']}: mask outside every private item"
        assert visible_checked >= 1, scene


def test_mask_pass_leaves_colour_and_depth_unchanged(tmp_path):
    from s2nerf_ns.scenes.layouts import build_room
    from s2nerf_ns.scenes.trajectory import trajectory_poses

    room = build_room("livingroom", tmp_path / "tex", seed=0)
    c2w = trajectory_poses(room, 8, 0)[2]
    with_masks = mrender.Renderer(room, 16, 2)
    rgb, depth = with_masks.render(c2w, 7)
    assert with_masks.render_mask(c2w, 7).any()
    room.private_items.clear()
    plain = mrender.Renderer(room, 16, 2)
    assert plain.mask_scene is None and not plain.render_mask(c2w, 7).any()
    rgb2, depth2 = plain.render(c2w, 7)
    assert np.array_equal(rgb, rgb2) and np.array_equal(depth, depth2)


# --------------------------------------------------------------------------------------------------
# scene facts defined once
# --------------------------------------------------------------------------------------------------


def test_catalog_is_the_single_source():
    import typing

    from s2nerf_ns.data.rooms_dataparser import RoomsDataParser, RoomsDataParserConfig
    from s2nerf_ns.scenes import (EVAL_INTERVAL, RENDER_VERSION, SCENES, RoomName, eval_split_indices, params_hash,
                                  render_params)
    from s2nerf_ns.scenes.cli import RenderRoomArgs

    assert ROOM_NAMES == typing.get_args(RoomName) == SCENES == ("bedroom", "office", "livingroom")
    assert typing.get_type_hints(RoomsDataParserConfig)["scene"] == RoomName
    assert typing.get_type_hints(RenderRoomArgs)["scene"] == RoomName
    assert RoomsDataParserConfig().eval_interval == EVAL_INTERVAL
    assert eval_split_indices(9, 8, "val") == eval_split_indices(9, 8, "test") == [0, 8]
    assert eval_split_indices(9, 8, "train") == [1, 2, 3, 4, 5, 6, 7]
    assert RoomsDataParser(RoomsDataParserConfig(num_views=20, eval_interval=5)).split_indices(20, "val") == [0, 5, 10, 15]
    with pytest.raises(ValueError, match="split"):
        eval_split_indices(9, 8, "bogus")
    # the cache key is computed as before the refactor (same value for render_version 1), so caches stay valid
    params = render_params("office", 128, 32, 120, 4, 0)
    assert params.pop("render_version") == RENDER_VERSION >= 2
    assert params_hash({**params, "render_version": 1}) == "a97dbfef8d"
    assert RoomsDataParserConfig(cache_dir=Path("/x")).cache_key() == f"office-128px-32spp-{params_hash(render_params('office', 128, 32, 120, 4, 0))}"


def test_cli_flags(tmp_path):
    import tyro

    from s2nerf_ns.scenes.cli import RenderRoomArgs

    args = tyro.cli(RenderRoomArgs, args=["--scene", "bedroom", "--resolution", "16", "--spp", "2", "--num-views", "5",
                                          "--num-extra-views", "1", "--seed", "3", "--output-dir", str(tmp_path / "o"),
                                          "--overwrite", "--preview", str(tmp_path / "p.png")])
    assert (args.scene, args.resolution, args.spp, args.num_views, args.num_extra_views, args.seed) == ("bedroom", 16, 2, 5, 1, 3)
    assert args.output_dir == tmp_path / "o" and args.overwrite and args.preview == tmp_path / "p.png"
    with pytest.raises(ValueError, match="resolution"):
        RenderRoomArgs(output_dir=tmp_path, resolution=0)


# --------------------------------------------------------------------------------------------------
# the key convention check: multi-view depth reprojection
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reproj_room(tmp_path_factory):
    return render_room("office", tmp_path_factory.mktemp("reproj") / "office", resolution=40, spp=16, num_views=24,
                       num_extra_views=0, seed=0, progress=False)


@pytest.mark.parametrize("a,b", [(0, 1), (5, 7), (12, 13), (19, 21)])
def test_depth_reprojection_consistency(reproj_room, a, b):
    inb, rel, col, col_random = _reproject(reproj_room, a, b)
    assert inb.mean() > 0.25, "consecutive views must overlap"
    good = inb & (rel < 0.03)
    # the pixel footprint at 40 px is ~2.5% of the depth: nearest-pixel lookups agree to well below that
    assert np.median(rel[inb]) < 0.01, np.median(rel[inb])
    assert good.sum() / inb.sum() > 0.8, good.sum() / inb.sum()
    # colours of the matching pixels agree (diffuse surfaces dominate; noise + a few glossy highlights)
    assert col[good].mean() < 0.06, col[good].mean()
    # ... much better than unrelated pixels do
    assert col[good].mean() < 0.5 * col_random[good].mean(), (col[good].mean(), col_random[good].mean())


def test_depth_reprojection_fails_with_mitsuba_convention(reproj_room):
    """Negative control: using the poses as if they were Mitsuba camera frames (+x left, +z forward)
    breaks the consistency, so the test above really checks the convention."""
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])
    for a, b in [(0, 1), (12, 13)]:
        inb, rel, _, _ = _reproject(reproj_room, a, b, camera_fix=flip)
        ok_frac = (inb & (rel < 0.03)).sum() / max(inb.sum(), 1)
        assert inb.sum() == 0 or ok_frac < 0.5 or np.median(rel[inb]) > 0.03


# --------------------------------------------------------------------------------------------------
# dataparser
# --------------------------------------------------------------------------------------------------


def _config(tmp_path, **kw):
    from s2nerf_ns.data.rooms_dataparser import RoomsDataParserConfig

    params = dict(scene="bedroom", resolution=20, spp=1, num_views=16, num_extra_views=2, cache_dir=tmp_path / "cache")
    params.update(kw)
    return RoomsDataParserConfig(**params)


def test_dataparser_outputs_and_cache(tmp_path, monkeypatch):
    import s2nerf_ns.data.rooms_dataparser as rdp

    cfg = _config(tmp_path)
    parser = cfg.setup()
    train = parser.get_dataparser_outputs("train")
    val = parser.get_dataparser_outputs("val")
    test = parser.get_dataparser_outputs("test")
    folder = cfg.cache_path()
    assert folder.parent == tmp_path / "cache" and folder.name.startswith("bedroom-20px-1spp-")
    assert len(train.image_filenames) == 14 and len(val.image_filenames) == 2 and len(test.image_filenames) == 2
    assert [p.name for p in val.image_filenames] == ["frame_00000.png", "frame_00008.png"]
    assert not set(train.image_filenames) & set(val.image_filenames)
    assert train.cameras.camera_to_worlds.shape == (14, 3, 4)
    assert train.cameras.camera_to_worlds.dtype.is_floating_point
    assert int(train.cameras.width[0]) == 20 and float(train.cameras.fx[0]) > 0
    aabb = train.scene_box.aabb.numpy()
    assert np.all(aabb >= -1.0 - 1e-6) and np.all(aabb <= 1.0 + 1e-6)
    assert np.isclose(np.abs(aabb).max(), 1.0, atol=1e-5), "largest axis of the room (+margin) spans [-1, 1]"
    for out in (train, val):
        pos = out.cameras.camera_to_worlds[:, :, 3].numpy()
        assert np.all(pos > aabb[0]) and np.all(pos < aabb[1])
    # normalisation: p_norm = scale * (p_world - centre), reported as transform + scale
    meta = json.loads((folder / "transforms.json").read_text())
    world = np.asarray(meta["frames"][1]["transform_matrix"])[:3, 3]
    T, s = train.dataparser_transform.numpy(), train.dataparser_scale
    assert np.allclose(s * (T[:, :3] @ world + T[:, 3]), train.cameras.camera_to_worlds[0, :, 3].numpy(), atol=1e-5)
    room = json.loads((folder / "s2nerf_room.json").read_text())
    half = np.ptp(np.asarray(room["room_aabb"]), axis=0) / 2
    assert np.isclose(s, 1 / (1.02 * half.max()))
    md = train.metadata
    assert len(md["depth_filenames"]) == 14 and all(p.is_file() for p in md["depth_filenames"])
    for out in (train, val):
        masks = out.metadata["private_mask_filenames"]
        assert [p.name for p in masks] == [p.name for p in out.image_filenames]
        assert all(p.is_file() and p.parent == folder / "masks" for p in masks)
        assert out.mask_filenames is None, "private masks are not nerfstudio training masks"
    assert md["depth_unit_scale_factor"] == 1.0 and np.isclose(md["depth_to_normalized_scale"], s)
    # extra ("leaked") views: same normalised frame, not part of train/eval
    extra = parser.get_extra_views()
    assert len(extra.image_filenames) == 2 and len(extra.cameras) == 2 and len(extra.depth_filenames) == 2
    assert [p.name for p in extra.private_mask_filenames] == [p.name for p in extra.image_filenames]
    assert all(p.is_file() and p.parent == folder / "extra" / "masks" for p in extra.private_mask_filenames)
    assert all(p.is_file() for p in extra.image_filenames)
    all_files = set(train.image_filenames) | set(val.image_filenames)
    assert not set(extra.image_filenames) & all_files
    assert np.all(np.abs(extra.cameras.camera_to_worlds[:, :, 3].numpy()) < 1.0)

    # second use: loaded from the cache, never re-rendered
    mtime = (folder / "transforms.json").stat().st_mtime_ns

    def _no_render(*a, **k):
        raise AssertionError("cache should have been reused")

    monkeypatch.setattr(rdp, "render_room", _no_render)
    again = _config(tmp_path).setup().get_dataparser_outputs("train")
    assert again.image_filenames == train.image_filenames
    assert (folder / "transforms.json").stat().st_mtime_ns == mtime
    # a different parameter -> a different cache folder
    assert _config(tmp_path, spp=2).cache_path() != folder
    assert _config(tmp_path, seed=3).cache_path() != folder


def test_dataparser_depth_scale_with_nerfstudio_depth_dataset(tmp_path):
    from nerfstudio.data.datasets.depth_dataset import DepthDataset

    out = _config(tmp_path, num_extra_views=0).setup().get_dataparser_outputs("train")
    ds = DepthDataset(out)
    got = ds.get_metadata({"image_idx": 0})["depth_image"].numpy()[..., 0]
    raw = np.load(out.metadata["depth_filenames"][0])
    assert np.allclose(got, raw * out.metadata["depth_to_normalized_scale"], rtol=1e-5)
    assert got.max() < 2 * np.sqrt(3), "normalised depth stays within the scene box diagonal"


@pytest.mark.parametrize("damage", ["delete_image", "delete_mask", "truncate_transforms", "empty_folder"])
def test_dataparser_rerenders_corrupt_cache(tmp_path, monkeypatch, caplog, damage):
    import s2nerf_ns.data.rooms_dataparser as rdp

    cfg = _config(tmp_path, num_views=8, num_extra_views=1)
    folder = cfg.cache_path()
    if damage == "empty_folder":
        folder.mkdir(parents=True)
    else:
        cfg.setup().get_dataparser_outputs("train")
        if damage == "delete_image":
            (folder / "images" / "frame_00003.png").unlink()
        elif damage == "delete_mask":
            (folder / "extra" / "masks" / "extra_00000.png").unlink()
        else:
            text = (folder / "transforms.json").read_text()
            (folder / "transforms.json").write_text(text[: len(text) // 2])
    calls = []
    real = rdp.render_room
    monkeypatch.setattr(rdp, "render_room", lambda *a, **k: calls.append(1) or real(*a, **k))
    with caplog.at_level(logging.WARNING):
        out = _config(tmp_path, num_views=8, num_extra_views=1).setup().get_dataparser_outputs("train")
    assert calls == [1]
    assert "re-rendering" in caplog.text
    assert all(p.is_file() for p in out.image_filenames) and len(out.image_filenames) == 7


def test_dataparser_config_validation(tmp_path):
    from s2nerf_ns.data.rooms_dataparser import RoomsDataParserConfig

    for kw, msg in [(dict(resolution=0), "resolution"), (dict(spp=-1), "spp"), (dict(num_views=0), "num_views"),
                    (dict(num_extra_views=-1), "num_extra_views"), (dict(eval_interval=1), "eval_interval"),
                    (dict(eval_interval=50, num_views=10), "eval_interval"), (dict(scene="kitchen"), "valid scenes")]:
        with pytest.raises(ValueError, match=msg):
            RoomsDataParserConfig(cache_dir=tmp_path, **kw)
    cfg = RoomsDataParserConfig(cache_dir=tmp_path)
    assert cfg.scene == "office" and cfg.resolution == 128 and cfg.spp == 32 and cfg.num_views == 120
    assert cfg.data == Path() and cfg.eval_interval == 8 and cfg.num_extra_views == 4


def test_dataparser_registered_entry_point():
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    from s2nerf_ns.data.rooms_dataparser import RoomsDataParserConfig

    configs, descriptions = discover_dataparsers()
    assert isinstance(configs["s2nerf-rooms"], RoomsDataParserConfig)


def test_dataparser_loads_explicit_data_folder(tiny_rooms, tmp_path):
    from s2nerf_ns.data.rooms_dataparser import RoomsDataParserConfig

    cfg = RoomsDataParserConfig(data=tiny_rooms["livingroom"], cache_dir=tmp_path / "unused")
    out = cfg.setup().get_dataparser_outputs("train")
    assert len(out.image_filenames) == 7 and out.image_filenames[0].parent.parent == tiny_rooms["livingroom"]
    assert not (tmp_path / "unused").exists()
    with pytest.raises(ValueError, match="not a valid s2nerf room folder"):
        RoomsDataParserConfig(data=tmp_path, cache_dir=tmp_path).setup().get_dataparser_outputs("train")


# --------------------------------------------------------------------------------------------------
# nerfstudio compatibility, preview, CLI
# --------------------------------------------------------------------------------------------------


def test_nerfstudio_dataparser_parses_folder(tiny_rooms):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    folder = tiny_rooms["office"]
    parser = NerfstudioDataParserConfig(data=folder).setup()
    train = parser.get_dataparser_outputs("train")
    val = parser.get_dataparser_outputs("val")
    assert len(train.image_filenames) == 7 and len(val.image_filenames) == 2
    assert [p.name for p in train.metadata["depth_filenames"]][:2] == ["frame_00001.npy", "frame_00002.npy"]
    assert int(train.cameras.width[0]) == 24
    assert all(p.is_file() for p in train.image_filenames)


def test_save_preview(tiny_rooms, tmp_path):
    single = save_preview(tiny_rooms["bedroom"], tmp_path / "one.png")
    assert Image.open(single).size == (48, 48)
    sheet = save_preview(tiny_rooms["bedroom"], tmp_path / "sheet.png", indices=[0, 1, 2, 3], scale=1)
    assert Image.open(sheet).size == (24 * 2 + 4, 24 * 2 + 4)


def test_cli_refuses_to_overwrite(tmp_path, capsys):
    from s2nerf_ns.scenes.cli import RenderRoomArgs, run

    out = tmp_path / "cli"
    args = RenderRoomArgs(output_dir=out, scene="livingroom", resolution=16, spp=1, num_views=3, num_extra_views=1)
    run(args)
    assert "s/view" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--overwrite"):
        run(args)
    args.overwrite = True
    run(args)
    assert (out / "extra" / "images" / "extra_00000.png").is_file()
