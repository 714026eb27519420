"""Every bad input gets one clear line: the flag or file, the problem and the fix; no traceback, and no run
folder for a run that could be refused before it started (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2nerf_ns.errors import DataSetupError, InputError, data_setup

TINY = ["--max-num-iterations", "2", "--vis", "tensorboard", "--machine.device-type", "cpu",
        "--pipeline.datamanager.train-num-rays-per-batch", "64", "--pipeline.model.num-samples", "8",
        "--pipeline.model.num-levels", "2", "--pipeline.model.log2-hashmap-size", "10"]


def capture(folder: Path, num_frames: int = 10, size: int = 8) -> Path:
    """A tiny nerfstudio capture (transforms.json + PNGs), cameras on a circle looking at the origin."""
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    frames = []
    for i in range(num_frames):
        angle = 2 * np.pi * i / num_frames
        eye = np.array([2 * np.cos(angle), 2 * np.sin(angle), 0.5])
        back = eye / np.linalg.norm(eye)  # camera +z points away from the scene (OpenGL convention)
        right = np.cross([0.0, 0.0, 1.0], back)
        right /= np.linalg.norm(right)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, eye
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"images/{i:03d}.png")
        frames.append({"file_path": f"images/{i:03d}.png", "transform_matrix": c2w.tolist()})
    meta = {"fl_x": size, "fl_y": size, "cx": size / 2, "cy": size / 2, "w": size, "h": size,
            "camera_model": "OPENCV", "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    root = tmp_path_factory.mktemp("captures")
    plain = capture(root / "plain")
    bad_json = capture(root / "bad_json")
    (bad_json / "transforms.json").write_text((bad_json / "transforms.json").read_text()[:120])
    missing = capture(root / "missing_image")
    (missing / "images" / "003.png").unlink()
    truncated = capture(root / "truncated", size=64)
    data = (truncated / "images" / "003.png").read_bytes()
    (truncated / "images" / "003.png").write_bytes(data[: len(data) // 2])
    return {"plain": plain, "bad_json": bad_json, "missing": missing, "truncated": truncated, "root": root}


def ns_train_config(args):
    """Build ns-train's config from a command line in-process, exactly as ns-train does (tyro + the plugins)."""
    import tyro

    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    return tyro.cli(AnnotatedBaseConfigUnion, args=args)


def refused(args, capsys) -> str:
    """The one line ns-train prints for a refused command line (exit status 2, before anything is written)."""
    with pytest.raises(SystemExit) as exit_info:
        ns_train_config(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{Path(sys.argv[0]).name}: error: ") and "__tyro" not in err, err
    assert "Traceback" not in err
    return lines[0]


def test_config_time_inputs_are_refused_in_one_line(captures, capsys):
    plain, root = captures["plain"], captures["root"]
    cases = [
        (["splitnerf", "--max-num-iterations", "0"], ["--max-num-iterations 0", "at least 1 step"]),
        (["splitnerf", "--pipeline.datamanager.train-num-rays-per-batch", "0"],
         ["--pipeline.datamanager.train-num-rays-per-batch 0", "at least 1 ray"]),
        (["splitnerf-ssma", "--pipeline.leaked.num-leaked", "99"],
         ["--pipeline.leaked.num-leaked 99", "only 4 extra", "--pipeline.leaked.source train"]),
        (["splitnerf-ssma", "--pipeline.leaked.num-leaked", "2", "--pipeline.leaked.indices", "0"],
         ["--pipeline.leaked.indices", "--pipeline.leaked.num-leaked 2"]),
        (["splitnerf", "nerfstudio-data", "--data", str(root / "nonexistent")],
         ["--data", "nonexistent", "no such file"]),
        (["splitnerf", "nerfstudio-data", "--data", str(captures["bad_json"])],
         [str(captures["bad_json"] / "transforms.json"), "invalid JSON"]),
        (["splitnerf", "nerfstudio-data", "--data", str(captures["missing"])],
         [str(captures["missing"] / "images" / "003.png"), "image missing"]),
        (["splitnerf", "s2nerf-rooms", "--data", str(plain)],
         [f"--data {plain}", "not a valid s2nerf room folder", f"nerfstudio-data --data {plain}"]),
        (["s2nerf", "--data", str(plain)], ["not a valid s2nerf room folder", "nerfstudio-data"]),
    ]
    for args, expected in cases:
        line = refused(args, capsys)
        for text in expected:
            assert text in line, (args, line)


def test_valid_command_lines_still_build(captures):
    config = ns_train_config(["splitnerf-ssma", "nerfstudio-data", "--data", str(captures["plain"])])
    assert config.max_num_iterations >= 1 and config.pipeline.leaked.source == "extra"  # falls back at setup


def test_leak_source_falls_back_to_training_views_with_one_logged_line(captures, capsys):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from s2nerf_ns.data.leaked_views import LeakedViewsDataParserConfig

    cfg = LeakedViewsDataParserConfig(victim=NerfstudioDataParserConfig(data=captures["plain"]), num_leaked=2)
    outputs = cfg.setup().get_dataparser_outputs("train")
    assert len(outputs.image_filenames) == 2 and outputs.metadata["leaked_source"] == "train"
    # The config stays as given (issue 27); the metadata above, and so the leak report, say what was used.
    assert cfg.source == "extra"
    assert "--pipeline.leaked.source train" in " ".join(capsys.readouterr().out.split())
    too_many = LeakedViewsDataParserConfig(victim=NerfstudioDataParserConfig(data=captures["plain"]), num_leaked=99)
    with pytest.raises(InputError, match=r"--pipeline.leaked.num-leaked 99: only \d+ training views exist"):
        too_many.setup().get_dataparser_outputs("train")


def test_setup_time_data_errors_name_the_file(captures):
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    def load(folder):
        with data_setup("the training data"):
            VanillaDataManagerConfig(dataparser=NerfstudioDataParserConfig(data=folder)).setup(device="cpu")

    with pytest.raises(DataSetupError, match=r"003\.png: image file is truncated"):
        load(captures["truncated"])
    with pytest.raises(DataSetupError, match=r"transforms\.json: invalid JSON"):
        load(captures["bad_json"])
    with pytest.raises(DataSetupError, match=r"003\.png: no such file"):
        load(captures["missing"])
    with pytest.raises(ZeroDivisionError):  # not a data error: untouched
        with data_setup("the training data"):
            1 / 0


def run(args, cwd):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    return proc, proc.stdout + proc.stderr


def test_ns_train_truncated_image_one_line_and_no_run_folder(captures, tmp_path):
    """Found only at setup (after ns-train saved config.yml): one line naming the image, and the run folder
    (which held nothing but config.yml) is removed. The known third-party warnings are filtered."""
    out = tmp_path / "outputs"
    proc, text = run(["ns-train", "splitnerf", *TINY, "--output-dir", str(out), "nerfstudio-data", "--data",
                      str(captures["truncated"])], tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in text, text[-3000:]
    errors = [line for line in text.splitlines() if "error:" in line]
    assert len(errors) == 1 and "003.png: image file is truncated" in errors[0], text[-3000:]
    assert not list(out.rglob("config.yml")) and not list(out.rglob("*.ckpt"))
    for noise in ("custom_fwd", "custom_bwd", "GradScaler", "worker processes", "non-tuple sequence"):
        assert noise not in text, noise


def test_ns_eval_missing_config_one_line(tmp_path):
    proc, text = run(["ns-eval", "--load-config", str(tmp_path / "nonexistent.yml")], tmp_path)
    assert proc.returncode != 0 and "Traceback" not in text
    assert f"--load-config {tmp_path / 'nonexistent.yml'}: no such file" in text


def test_attack_figure_of_a_run_without_attacker(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from helpers import tiny_config

    from s2nerf_ns.bench.cli import Figure

    config = tiny_config("splitnerf", tmp_path / "runs", steps=2)
    config.set_timestamp()
    config.save_config()  # a run without an attacker (no training needed to refuse it)
    path = config.get_base_dir() / "config.yml"
    with pytest.raises(InputError, match=f"--load-config {path}: this splitnerf run has no attacker"):
        Figure(load_config=path, out=tmp_path / "attack.png").main()
    with pytest.raises(InputError, match="--load-config .*nonexistent.yml: no such file"):
        Figure(load_config=tmp_path / "nonexistent.yml", out=tmp_path / "attack.png").main()
    assert not (tmp_path / "attack.png").exists()


def test_one_line_printer():
    """What the excepthook prints for the project's input errors (and what it leaves to the previous hook)."""
    from s2nerf_ns.errors import one_line_error

    assert one_line_error(InputError("--flag 0: give\n 1")) == "--flag 0: give 1"
    assert one_line_error(DataSetupError("cannot load x: y")) == "cannot load x: y"
    assert one_line_error(RuntimeError("a bug")) is None
    assert one_line_error(FileNotFoundError(2, "No such file", "/elsewhere.yml")) is None
