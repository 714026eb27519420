"""End-to-end through nerfstudio's own command lines: ns-train, ns-eval, ns-render, ns-viewer."""

import json
import os
import signal
import subprocess
import time

import pytest


ROOM = ["s2nerf-rooms", "--resolution", "24", "--spp", "2", "--num-views", "16", "--num-extra-views", "2"]
TINY = ["--max-num-iterations", "20", "--vis", "tensorboard", "--steps-per-eval-image", "100000",
        "--steps-per-eval-batch", "100000", "--machine.device-type", "cpu",
        "--pipeline.datamanager.train-num-rays-per-batch", "256", "--pipeline.model.num-samples", "16",
        "--pipeline.model.num-levels", "4", "--pipeline.model.log2-hashmap-size", "12",
        "--pipeline.model.eval-num-rays-per-chunk", "1024"]
METHODS = ["splitnerf", "s2nerf", "s2nerf-central", "s2nerf-lite", "splitnerf-sma", "s2nerf-sma", "splitnerf-ssma",
           "s2nerf-ssma"]


def run(args, cwd, timeout=600):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def ns_train(method, tmp_path, *extra):
    """The ns-train command in a subprocess on the tiny room; returns the run's config.yml."""
    run(["ns-train", method, *TINY, "--output-dir", str(tmp_path / "outputs"), "--experiment-name", "cli",
         *extra, *ROOM], cwd=tmp_path)
    (config,) = (tmp_path / "outputs" / "cli" / method).glob("*/config.yml")
    return config


@pytest.mark.slow
def test_ns_train_help_lists_the_methods():
    out = run(["ns-train", "--help"], cwd=".").stdout
    for method in METHODS:
        assert method in out, method


@pytest.mark.slow
def test_train_eval_render_viewer_on_s2nerf(tmp_path):
    config = ns_train("s2nerf", tmp_path)
    run_dir = config.parent
    assert json.loads((run_dir / "transcript.json").read_text())["steps"] == 20
    run(["ns-eval", "--load-config", str(config), "--output-path", str(tmp_path / "eval.json")], cwd=tmp_path)
    results = json.loads((tmp_path / "eval.json").read_text())["results"]
    assert results["psnr"] > 5 and 0 < results["ssim"] <= 1
    assert "lpips" in results or results["lpips_available"] == 0.0
    run(["ns-render", "dataset", "--load-config", str(config), "--output-path", str(tmp_path / "renders"),
         "--split", "test", "--rendered-output-names", "rgb"], cwd=tmp_path)
    assert list((tmp_path / "renders").rglob("*.jpg")) or list((tmp_path / "renders").rglob("*.png"))
    # the viewer starts on a trained run and serves until stopped
    viewer = subprocess.Popen(["ns-viewer", "--load-config", str(config), "--viewer.websocket-port", "7321"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        deadline, seen = time.time() + 120, ""
        while time.time() < deadline and "7321" not in seen:
            line = viewer.stdout.readline()
            if not line and viewer.poll() is not None:
                break
            seen += line
        assert "7321" in seen and viewer.poll() is None, seen[-2000:]
    finally:
        os.killpg(viewer.pid, signal.SIGTERM)
        viewer.wait(timeout=30)


@pytest.mark.slow
def test_attack_run_and_eval_report_attack_metrics(tmp_path):
    config = ns_train("splitnerf-sma", tmp_path)
    run(["ns-eval", "--load-config", str(config), "--output-path", str(tmp_path / "eval.json")], cwd=tmp_path)
    results = json.loads((tmp_path / "eval.json").read_text())["results"]
    for key in ("psnr", "attack_psnr", "attack_ssim", "attack_cipsnr", "attack_lum_ssim", "attack_baseline_psnr",
                "attack_cipsnr_margin", "attack_lum_ssim_margin"):
        assert key in results, key
    assert (config.parent / "attack" / "dummies_gt_vs_dummy.png").exists()


@pytest.mark.slow
def test_bad_inputs_fail_cleanly(tmp_path):
    """Each bad input: a non-zero exit and ONE line naming it (no traceback, no tyro box), nothing written."""
    out = tmp_path / "outputs"
    for args, message in (
        (["ns-train", "splitnerf", *ROOM[:1], "--resolution", "-4"], "resolution must be a positive"),
        (["ns-train", "splitnerf", "--pipeline.model.cut-depth", "5"], "--pipeline.model.cut-depth 5 is impossible"),
        (["ns-train", "s2nerf", "--pipeline.model.defense.noise-scale", "-1"], "--pipeline.model.defense.noise-scale"),
        (["ns-train", "splitnerf", "--output-dir", str(out), "--max-num-iterations", "0"], "--max-num-iterations 0"),
        (["ns-eval", "--load-config", str(tmp_path / "nowhere" / "config.yml")], "--load-config"),
    ):
        proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "COLUMNS": "200"})
        assert proc.returncode != 0
        text = proc.stdout + proc.stderr
        errors = [line for line in text.splitlines() if "error:" in line]
        assert len(errors) == 1 and message in errors[0], text[-1500:]
        assert "Traceback" not in text and "__tyro" not in text and "│" not in text, text[-1500:]
    assert not out.exists()
