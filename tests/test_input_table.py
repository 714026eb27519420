"""Issue 21, data and scene inputs: every case is ONE line naming the data or flag, and nothing is left behind
(no run folder, no rendered cache, no deleted file). Cases: images too small for SSIM (nerfstudio captures,
room folders, the built-in rooms' --resolution, ns-eval of such a run), images with transparent pixels or
unreadable modes, the s2nerf-rooms options, and s2nerf-render-room's --output-dir/--overwrite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from test_errors import TINY, capture, ns_train_config, refused  # noqa: E402  (the one-line helpers)

from s2nerf_ns.errors import DataSetupError, one_line_error  # noqa: E402
from s2nerf_ns.evaluation import image_metrics  # noqa: E402


def _replace_image(folder: Path, name: str, pixels: np.ndarray, mode: str = "") -> None:
    image = Image.fromarray(pixels)
    (image.convert(mode) if mode else image).save(folder / "images" / name)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Captures and folders of each kind, built once (tiny PNGs; no rendering)."""
    root = tmp_path_factory.mktemp("inputs")
    out = {"root": root, **{f"px{n}": capture(root / f"px{n}", size=n) for n in (1, 5, 6)}}
    opaque = np.full((8, 8, 4), 200, np.uint8)
    opaque[..., 3] = 255
    clear = opaque.copy()
    clear[2, 3, 3] = 0
    for name, pixels, mode in (("rgba", clear, ""), ("rgba_opaque", opaque, ""), ("grey", opaque[..., 0], ""),
                               ("palette", opaque[..., :3], "P"), ("grey_alpha", opaque[..., :2], "")):
        out[name] = capture(root / name)
        _replace_image(out[name], "002.png", pixels, mode)
    out["junk"] = capture(root / "junk")
    (out["junk"] / "images" / "004.png").write_bytes(b"not a png")
    out["six"] = capture(root / "six", num_frames=6)
    out["named"] = capture(root / "named")  # --eval-mode filename: names without train/eval
    out["lists"] = capture(root / "lists")
    meta = json.loads((out["lists"] / "transforms.json").read_text())
    meta["train_filenames"] = [frame["file_path"] for frame in meta["frames"][1:]]
    (out["lists"] / "transforms.json").write_text(json.dumps(meta))
    room = root / "room4"  # what check_room_data reads of a rendered room: s2nerf_room.json + transforms.json
    room.mkdir()
    (room / "s2nerf_room.json").write_text(json.dumps({"format": "s2nerf-room"}))
    (room / "transforms.json").write_text(json.dumps({"w": 4, "h": 4, "frames": []}))
    out["room4"] = room
    return out


SSIM_LINE = "too small for SSIM (its 11x11 window needs at least 6x6 px), so a run would fail at its first evaluation"

NS_TRAIN_TABLE = [  # (command line after `ns-train`, with {name} for a folder of `data`), expected fragments
    (["splitnerf", "nerfstudio-data", "--data", "{px1}"], ["{px1}/images/000.png: 1x1 px images", SSIM_LINE,
                                                           "use images of at least 6x6 px"]),
    (["s2nerf", "nerfstudio-data", "--data", "{px5}"], ["{px5}/images/000.png: 5x5 px images", SSIM_LINE]),
    (["splitnerf", "nerfstudio-data", "--data", "{px6}", "--downscale-factor", "2"],
     ["{px6}/images/000.png: 3x3 px images", SSIM_LINE]),
    (["splitnerf", "s2nerf-rooms", "--resolution", "1"],
     ["s2nerf-rooms --resolution 1: 1x1 px images", SSIM_LINE, "give --resolution 6 or more"]),
    (["splitnerf-sma", "s2nerf-rooms", "--resolution", "5"], ["s2nerf-rooms --resolution 5: 5x5 px images"]),
    (["splitnerf", "s2nerf-rooms", "--data", "{room4}"],
     ["--data {room4}: 4x4 px images", SSIM_LINE, "s2nerf-render-room --resolution 6 or more"]),
    (["splitnerf", "nerfstudio-data", "--data", "{rgba}"],
     ["{rgba}/images/002.png: has transparent pixels (alpha channel)", "would drop the alpha silently",
      "flatten it onto a background colour"]),
    (["s2nerf-ssma", "nerfstudio-data", "--data", "{grey_alpha}"], ["{grey_alpha}/images/002.png: has transparent"]),
    (["splitnerf", "nerfstudio-data", "--data", "{palette}"],
     ["{palette}/images/002.png: a 'P' image", "convert it to RGB first"]),
    (["splitnerf", "nerfstudio-data", "--data", "{junk}"], ["{junk}/images/004.png: not a readable image"]),
    (["splitnerf", "nerfstudio-data", "--data", "{six}"],
     ["--data {six}: its 6 images leave no evaluation image at --train-split-fraction 0.9 (nerfstudio trains on "
      "ceil(6 x 0.9) = 6), so a run would fail at its first evaluation", "--train-split-fraction 0.83"]),
    (["splitnerf", "nerfstudio-data", "--data", "{px6}", "--eval-mode", "interval", "--eval-interval", "1"],
     ["--data {px6}: its 10 images leave no training image at --eval-interval 1"]),
    (["splitnerf", "nerfstudio-data", "--data", "{named}", "--eval-mode", "filename"],
     ["{named}/images/000.png: --eval-mode filename needs 'train' or 'eval' in every image's name"]),
    (["splitnerf", "nerfstudio-data", "--data", "{lists}"],
     ["{lists}/transforms.json: val_filenames is missing or empty"]),
    (["splitnerf", "s2nerf-rooms", "--scene", "kitchen"],
     ["--scene kitchen: not a choice; give one of bedroom, office, livingroom"]),
    (["splitnerf", "s2nerf-rooms", "--spp", "0"], ["s2nerf-rooms --spp: spp must be a positive integer, got 0"]),
    (["splitnerf", "s2nerf-rooms", "--resolution", "0"], ["s2nerf-rooms --resolution: resolution must be a positive"]),
    (["splitnerf", "s2nerf-rooms", "--num-views", "0"], ["s2nerf-rooms --num-views: num_views must be a positive"]),
    (["splitnerf", "s2nerf-rooms", "--num-views", "3"],
     ["s2nerf-rooms --num-views 3 --eval-interval 8: eval_interval (8) must not exceed num_views (3)"]),
    (["splitnerf", "s2nerf-rooms", "--eval-interval", "1"], ["s2nerf-rooms --eval-interval 1: eval_interval must be"]),
    (["splitnerf", "s2nerf-rooms", "--seed", "-1"], ["s2nerf-rooms --seed: seed must be an integer in [0, 2**31)"]),
]


def _fill(text: str, data) -> str:
    return text.format(**{k: v for k, v in data.items() if isinstance(v, Path)})


@pytest.mark.parametrize("args,expected", NS_TRAIN_TABLE, ids=[" ".join(args) for args, _ in NS_TRAIN_TABLE])
def test_ns_train_refuses_in_one_line_and_writes_nothing(args, expected, data, capsys, tmp_path):
    cache = Path(os.environ["S2NERF_CACHE"])
    cached = set(cache.iterdir()) if cache.is_dir() else set()
    out = tmp_path / "outputs"
    method, rest = args[0], [_fill(a, data) for a in args[1:]]
    line = refused([method, "--output-dir", str(out), *rest], capsys)
    for fragment in expected:
        assert _fill(fragment, data) in line, line
    assert not out.exists()
    assert (set(cache.iterdir()) if cache.is_dir() else set()) == cached, "nothing rendered into the room cache"


@pytest.mark.parametrize("name", ["px6", "rgba_opaque", "grey", "six:--train-split-fraction=0.83"])
def test_usable_captures_still_build(name, data):
    """The smallest size SSIM scores, opaque RGBA (its alpha carries nothing) and grey images are accepted."""
    name, *extra = name.split(":")
    config = ns_train_config(["splitnerf", "nerfstudio-data", "--data", str(data[name]), *extra])
    assert Path(config.pipeline.datamanager.dataparser.data) == data[name]


def test_ssim_refuses_tiny_images_in_one_line():
    """The metrics' own minimum: torchmetrics' SSIM reflection-pads by 5 px, so 6 px is the smallest side."""
    assert image_metrics.MIN_IMAGE_SIZE == 6
    for h, w in ((1, 1), (5, 40), (40, 5)):
        with pytest.raises(DataSetupError) as err:
            image_metrics.ssim(torch.rand(h, w, 3), torch.rand(h, w, 3))
        assert one_line_error(err.value) == (f"cannot evaluate: {w}x{h} px images are too small for SSIM (its 11x11 "
                                             "window needs at least 6x6 px); train on larger images")
    assert -1.0 <= image_metrics.ssim(torch.rand(6, 6, 3), torch.rand(6, 6, 3)) <= 1.0


def test_lpips_is_skipped_below_alexnets_minimum(caplog):
    """LPIPS (when its weights exist) needs 31 px; smaller images get no LPIPS and one warning, not a crash."""
    calls = []

    class Distance(torch.nn.Module):
        def forward(self, x, y):
            calls.append(tuple(x.shape))
            return (x - y).abs().mean()

    a, b = torch.zeros(31, 40, 3), torch.ones(31, 40, 3)
    assert image_metrics.lpips_score(Distance(), a, b) == pytest.approx(1.0)
    assert calls == [(1, 3, 31, 40)]
    image_metrics._warn_once.cache_clear()
    with caplog.at_level("WARNING", logger=image_metrics.LOG.name):
        assert image_metrics.lpips_score(Distance(), a[:30], b[:30]) is None
    assert "LPIPS skipped: 40x30 px images" in caplog.text and len(calls) == 1
    assert image_metrics.lpips_score(None, a, b) is None


def test_ns_eval_of_a_run_on_tiny_images_prints_one_line(data, tmp_path):
    """A run whose images are too small (made by bypassing the config check, as an older version allowed):
    ns-eval prints one line instead of torchmetrics' padding traceback, and writes no metrics file."""
    from helpers import train

    config = ns_train_config(["splitnerf", *TINY, "--output-dir", str(tmp_path / "outputs"), "nerfstudio-data",
                              "--data", str(data["px6"])])
    config.pipeline.datamanager.dataparser.data = data["px5"]  # what the check refuses
    config.set_timestamp()
    train(config)
    path = config.get_base_dir() / "config.yml"
    proc = subprocess.run(["ns-eval", "--load-config", str(path), "--output-path", str(tmp_path / "eval.json")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    text = proc.stdout + proc.stderr
    errors = [line for line in text.splitlines() if "error:" in line]
    assert proc.returncode != 0 and "Traceback" not in text, text[-3000:]
    assert errors == ["ns-eval: error: cannot evaluate: 5x5 px images are too small for SSIM (its 11x11 window "
                      "needs at least 6x6 px); train on larger images"], text[-3000:]
    assert not (tmp_path / "eval.json").exists()


# ------------------------------------------------------------------------------------------------------------
# s2nerf-render-room --output-dir / --overwrite: only a folder this command wrote is replaced
# ------------------------------------------------------------------------------------------------------------

ROOM = dict(scene="bedroom", resolution=8, spp=1, num_views=2, num_extra_views=0)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One real render (8 px, 2 views: seconds), copied by the tests that change it."""
    from s2nerf_ns.scenes.cli import RenderRoomArgs, run

    out = tmp_path_factory.mktemp("render") / "room"
    run(RenderRoomArgs(output_dir=out, preview=out / "preview.png", **ROOM))
    return out


def _tree(folder: Path) -> dict:
    """Every path under ``folder`` with its file's modification time (folders: None)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.stat().st_mtime_ns for p in folder.rglob("*")}


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _refused_render(output_dir: Path, overwrite: bool) -> str:
    from s2nerf_ns.scenes.cli import RenderRoomArgs, run

    with pytest.raises(SystemExit) as err:
        run(RenderRoomArgs(output_dir=output_dir, overwrite=overwrite, **ROOM))
    line = str(err.value.code)
    assert "\n" not in line and line.startswith("s2nerf-render-room: error: --output-dir "), line
    return line


def test_render_room_marks_its_folder(rendered):
    from s2nerf_ns.scenes.render import MARKER, marker_entries

    names = {p.name for p in rendered.iterdir()}
    assert MARKER in names and names - {MARKER} <= set(marker_entries(rendered))
    assert "preview.png" in marker_entries(rendered), "a preview the command wrote into the folder is its own"


@pytest.mark.parametrize("overwrite", [False, True])
def test_render_room_leaves_foreign_folders_alone(tmp_path, overwrite, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    (tmp_path / "notes.txt").write_text("keep")
    before = _tree(tmp_path)
    line = _refused_render(folder, overwrite)
    assert f"--output-dir {folder}: not empty and not written by s2nerf-render-room (no .s2nerf-render-room " \
           "marker), so it is left alone" in line
    assert ("even with --overwrite" in line) == overwrite
    monkeypatch.chdir(tmp_path)  # --output-dir . --overwrite would have emptied the current directory
    assert "--output-dir .: not empty and not written by s2nerf-render-room" in _refused_render(Path("."), overwrite)
    (tmp_path / "file").write_text("x")
    assert _refused_render(Path("file"), overwrite) == "s2nerf-render-room: error: --output-dir file: exists and is " \
                                                       "not a directory"
    (tmp_path / "file").unlink()
    assert _tree(tmp_path) == before, "nothing deleted, nothing written"


def test_render_room_overwrites_only_its_own_files(rendered, tmp_path):
    room = _copy(rendered, tmp_path / "room")
    (room / "notes.txt").write_text("mine")
    before = _tree(tmp_path)
    assert _refused_render(room, True) == (f"s2nerf-render-room: error: --output-dir {room}: holds notes.txt, which "
                                           "s2nerf-render-room did not write, so it is left alone: move those out or "
                                           "choose a new folder")
    (room / "notes.txt").unlink()
    assert _refused_render(room, False) == (f"s2nerf-render-room: error: --output-dir {room}: holds a room rendered "
                                            "earlier; pass --overwrite to replace it")
    assert _tree(tmp_path) == {k: v for k, v in before.items() if k != "room/notes.txt"}

    from s2nerf_ns.scenes.cli import RenderRoomArgs, run

    run(RenderRoomArgs(output_dir=room, overwrite=True, **{**ROOM, "num_views": 3}))  # its own folder: replaced
    assert len(json.loads((room / "transforms.json").read_text())["frames"]) == 3
    assert not (room / "preview.png").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["room"]


@pytest.mark.parametrize("args,expected", [
    (["--scene", "kitchen"], "--scene kitchen: not a choice; give one of bedroom, office, livingroom"),
    (["--resolution", "0"], "--resolution: resolution must be a positive integer, got 0"),
    (["--spp", "-1"], "--spp: spp must be a positive integer, got -1"),
    (["--num-views", "0"], "--num-views: num_views must be a positive integer, got 0"),
    (["--num-extra-views", "-1"], "--num-extra-views: num_extra_views must be a non-negative integer, got -1"),
])
def test_render_room_options_one_line(args, expected, tmp_path, capsys):
    import tyro

    from s2nerf_ns.scenes.cli import RenderRoomArgs

    with pytest.raises(SystemExit) as err:
        tyro.cli(RenderRoomArgs, args=["--output-dir", str(tmp_path / "out"), *args])
    assert err.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and "error: " in lines[0], lines
    assert not (tmp_path / "out").exists()
