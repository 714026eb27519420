"""The geometry defenses (issue 22, item 4): density-noise (noise on the one direction that carries the density under
client appearance) and client geometry (the server keeps the coarse hash levels, the client the fine geometry).
Each: its knobs fail closed, it trains, and the server's density read-out reproduces the client's depth worse under
it than without it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from s2nerf_ns.attacks.geometry import DensityReadout, composited_depth
from s2nerf_ns.defenses import DefenseConfig
from s2nerf_ns.defenses.defense import Defense
from s2nerf_ns.defenses.density_noise import DensityNoise
from s2nerf_ns.errors import InputError
from s2nerf_ns.protocol.fine_geometry import coarse_levels, level_resolutions

sys.path.insert(0, str(Path(__file__).parent))
from conftest import random_batch, tiny_model  # noqa: E402
from helpers import tiny_config  # noqa: E402
from test_errors import refused  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
FLAG = "--pipeline.model."


# ------------------------------------------------------------------------------------------------ fail closed
@pytest.mark.parametrize("kwargs, expected", [
    (dict(density_clip=0.1), f"{FLAG}defense.density-clip 0.1 is a knob of {FLAG}defense.kind density-noise"),
    (dict(kind="s2nerf", density_noise_scale=2.0), f"{FLAG}defense.density-noise-scale 2.0 is a knob of"),
    (dict(kind="density-noise", density_noise_scale=0.0), "the density-noise defense would add no noise"),
    (dict(kind="density-noise", density_clip=0.0), f"{FLAG}defense.density-clip 0.0: must be a finite number > 0"),
    (dict(kind="density-noise", residual_noise_std=0.3), "the kind is 'density-noise'"),
    (dict(dp_delta=1e-6), f"{FLAG}defense.kind residual-noise or density-noise"),
])
def test_density_noise_knobs_fail_closed(kwargs, expected):
    with pytest.raises(InputError) as info:
        DefenseConfig(**kwargs)
    assert expected in str(info.value), str(info.value)


@pytest.mark.parametrize("overrides, expected", [
    (dict(client_geometry_server_res=16), f"{FLAG}client-geometry-server-res 16 is a knob of client geometry, which "
                                          f"is off: add {FLAG}client-geometry True"),
    (dict(client_geometry_resolution=32, client_geometry_features=4), "are knobs of client geometry"),
    (dict(client_geometry=True, client_geometry_server_res=8), "under the hash grid's coarsest resolution"),
    (dict(client_geometry=True, client_geometry_server_res=64), "client geometry would hide nothing"),
    (dict(client_geometry=True, client_geometry_features=0), f"{FLAG}client-geometry-features 0: must be a positive"),
    (dict(defense=DefenseConfig(kind="density-noise")), f"add {FLAG}client-appearance True"),
    (dict(defense=DefenseConfig(kind="density-noise"), client_appearance=True, num_density_layers=3),
     "keep one client density layer"),
])
def test_model_geometry_knobs_fail_closed(overrides, expected):
    with pytest.raises(InputError) as info:
        tiny_model(**overrides)
    assert expected in str(info.value), str(info.value)


def test_ns_train_refuses_a_geometry_knob_without_its_switch_in_one_line(capsys):
    line = refused(["s2nerf-plus", "--pipeline.model.client-geometry-server-res", "16"], capsys)
    assert f"add {FLAG}client-geometry True" in line
    line = refused(["s2nerf", "--pipeline.model.defense.kind", "density-noise"], capsys)
    assert f"{FLAG}client-appearance True" in line


# ------------------------------------------------------------------------------------------------ unit level
def test_density_noise_sends_only_the_density_direction_clipped_and_noised():
    torch.manual_seed(0)
    w = torch.randn(16)
    u = w / w.norm()
    grad = (torch.randn(32, 8) * 1e-3)[..., None] * w  # what a linear density head sends: rank one, parallel to w
    quiet = DensityNoise(clip=0.01, noise_scale=1e-9)
    sent = quiet(grad, grad, 0, torch.Generator().manual_seed(1))
    assert torch.allclose(sent, (sent @ u)[..., None] * u, atol=1e-12)  # along w only
    assert float(((sent @ u) * 32).norm(dim=-1).max()) <= 0.01 * (1 + 1e-5)  # each ray's scalars (per-ray units) <= C
    assert float(quiet.last_clipped) > 0.5 and float(quiet.last_off_axis) < 1e-10
    # the noise: std m C per sample, in per-ray units (the loss averages over the batch's rays)
    tiny = (torch.randn(64, 16) * 1e-12)[..., None] * w
    noise = DensityNoise(clip=0.01, noise_scale=0.5)
    out = noise(tiny, tiny, 0, torch.Generator().manual_seed(2))
    assert float((out @ u).std() * 64) == pytest.approx(0.005, rel=0.08)
    assert float(noise.last_sigma) == pytest.approx(0.5 * 0.01 / 64)
    # rows off one direction (a head the model refuses): the off part is not sent, what is sent is rank one
    off = grad + 1e-4 * torch.randn_like(grad)
    out = noise(off, off, 0, torch.Generator().manual_seed(3))
    assert float(noise.last_off_axis) > 0
    singular = torch.linalg.svdvals(out.reshape(-1, 16))
    assert float(singular[1]) < 1e-6 * float(singular[0])


def test_density_noise_reports_a_per_pixel_guarantee_with_noise_multiplier_half_the_scale():
    config = DefenseConfig(kind="density-noise", density_noise_scale=4.0, density_clip=0.02)
    defense = Defense(config, seed=0, schedule_steps=None)
    defense.training_pixels = 24 * 24 * 16
    grad = torch.randn(64, 8, 1) * torch.randn(16)
    for step in range(3):
        defense.gradient_to_send(grad, grad, step)
    report = defense.privacy()
    assert report["noise_multiplier"] == 2.0 and report["steps"] == 3 and report["rays_per_step"] == 64
    assert report["epsilon"] is not None and report["epsilon"] > 0 and "direction u = w / |w|" in report["scope"]
    assert defense.public() == {"kind": "density-noise", "density_clip": 0.02, "density_noise_scale": 4.0}


def test_coarse_levels_are_the_full_grids_levels_up_to_the_server_resolution():
    assert level_resolutions(8, 16, 256) == [16, 23, 35, 52, 78, 115, 172, 256]
    assert coarse_levels(8, 16, 256, 64) == (4, 52.0)
    assert coarse_levels(8, 16, 256, 16) == (1, 16.0)
    assert coarse_levels(8, 16, 256, 4096) == (8, 256.0)


def test_client_geometry_server_holds_no_finer_level_and_the_client_planes_carry_the_rest():
    plain = tiny_model(client_appearance=True)
    model = tiny_model(client_appearance=True, client_geometry=True, client_geometry_server_res=32)
    assert plain.server.field.encoding.scalings.tolist() == [16.0, 25.0, 40.0, 63.0]
    assert model.server.field.encoding.scalings.tolist() == [16.0, 25.0]  # nothing above 32 on the server
    server_params = {id(p) for p in model.server.parameters()}
    planes = model.client_head.fine_geometry
    assert planes is not None and not {id(p) for p in planes.parameters()} & server_params
    assert {id(p) for p in planes.parameters()} <= {id(p) for p in model.get_param_groups()["client_head"]}
    arch = model.client_architecture()
    assert arch["geometry_resolution"] == 64 and arch["geometry_features"] == 8
    # the client's planes receive gradient and change the density; the server's h is the same function of position
    model.train()
    bundle, batch = random_batch(32)
    planes.out.weight.data.fill_(0.5)
    outputs = model(bundle)
    loss = model.get_loss_dict(outputs, batch)["rgb_loss"]
    loss.backward()
    assert float(planes.planes.plane_coef.grad.abs().sum()) > 0
    h = torch.rand(4, 8, model.client_head.in_dim)
    directions = torch.nn.functional.normalize(torch.randn(4, 8, 3), dim=-1)
    a, b = torch.rand(4, 8, 3) - 0.5, torch.rand(4, 8, 3) - 0.5
    with torch.no_grad():  # same h, different positions: the client's density differs (its planes), the server's not
        assert not torch.allclose(model.client_head(h, directions, a)[0], model.client_head(h, directions, b)[0])


# ------------------------------------------------------------------------------------------------ trained runs
STEPS = 150


def readout_run(out_dir: Path, name: str, **model_overrides):
    """A tiny client-appearance ``splitnerf`` run with the server's density read-out observing the channel; returns
    (the victim's PSNR, the read-out's abs-rel and share within 10 % against the client's own depth, the model)."""
    torch.manual_seed(0)
    config = tiny_config("splitnerf", out_dir, steps=STEPS, client_appearance=True, **model_overrides)
    config.timestamp = name
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    model = trainer.pipeline.model
    readout = DensityReadout(model.client_head.in_dim, seed=1)
    model.channel.add_observer(readout.observe)
    trainer.train()
    readout.fit(model.server.embed)
    model.eval()
    dataset = trainer.pipeline.datamanager.eval_dataset
    psnr, absrel, within = [], [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            rays = dataset.cameras[i : i + 1].generate_rays(camera_indices=0)
            o, d = rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3)
            h, bins = model.server.embed(o, d)
            out = model.client_render(rays.flatten(), bins, h)
            victim = composited_depth(out["depth"], out["accumulation"], bins)[:, 0]
            err = (readout.render(h, o, d, bins)["depth"][:, 0] - victim).abs() / victim
            image = dataset.get_image_float32(i)[..., :3].reshape(-1, 3)
            psnr.append(float(-10 * torch.log10(((out["rgb"] - image) ** 2).mean())))
            absrel.append(float(err.mean()))
            within.append(float((err < 0.1).float().mean()))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return mean(psnr), mean(absrel), mean(within), trainer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("geometry_defenses")
    return {
        "plain": readout_run(out, "plain"),
        "density-noise": readout_run(out, "noise", defense=DefenseConfig(kind="density-noise")),
        "client-geometry": readout_run(out, "geometry", client_geometry=True, client_geometry_server_res=16),
    }


def test_without_a_geometry_defense_the_readout_reproduces_the_clients_depth(runs):
    psnr, absrel, within, _ = runs["plain"]
    assert psnr > 14 and absrel < 0.03 and within > 0.97, (psnr, absrel, within)


def test_density_noise_trains_and_breaks_the_readouts_depth(runs):
    psnr, absrel, within, trainer = runs["density-noise"]
    plain_psnr, plain_absrel, plain_within, _ = runs["plain"]
    assert psnr > plain_psnr - 1.5, (psnr, plain_psnr)
    assert absrel > 3 * plain_absrel and within < plain_within - 0.3, (absrel, within, plain_absrel, plain_within)
    privacy = (Path(trainer.base_dir) / "privacy.json").read_text()
    assert '"epsilon"' in privacy and '"noise_multiplier": 0.5' in privacy


def test_client_geometry_trains_and_the_readout_misses_the_fine_geometry(runs):
    psnr, absrel, within, trainer = runs["client-geometry"]
    plain_psnr, plain_absrel, plain_within, _ = runs["plain"]
    model = trainer.pipeline.model
    assert model.server.field.encoding.scalings.tolist() == [16.0]
    assert float(model.client_head.fine_geometry.out.weight.abs().max()) > 0  # the client's planes were trained
    assert psnr > plain_psnr - 1.5, (psnr, plain_psnr)
    assert absrel > 1.5 * plain_absrel and within < plain_within - 0.03, (absrel, within, plain_absrel, plain_within)


# ------------------------------------------------------------------------------------------------ the frontier
def test_frontier_runs_the_geometry_families_and_its_cells_carry_geometry_columns(tmp_path):
    import math

    from s2nerf_ns.bench import frontier, frontier_cells

    assert frontier.points("smoke", ["density-noise", "client-geometry", "client-density-layers"]) == [
        ("density-noise", 0.3), ("density-noise", 3.0), ("client-geometry", 16), ("client-geometry", 48),
        ("client-density-layers", 2), ("client-density-layers", 4)]
    results = frontier.run("smoke", tmp_path, rooms=["office"], families=["density-noise", "client-geometry"],
                           values=[0.3, 16], allow_dirty=True)
    records = {r["family"]: r for r in results["records"]}
    assert set(records) == {"splitnerf", "density-noise", "client-geometry"}
    assert records["density-noise"]["settings"]["kind"] == "density-noise"
    assert records["density-noise"]["epsilon"] is not None  # the per-pixel accountant applies
    assert records["client-geometry"]["settings"]["client_geometry_server_res"] == 16
    for r in records.values():  # per-view geometry scores: what the geometry intervals resample
        assert all({"geometry_readout_absrel", "geometry_floor_box_within10"} <= set(v) for v in r["per_view"])
    computed = frontier_cells.cells(results["records"])
    for (room, family, value), cell in computed.items():
        record = records[family]
        assert set(cell["geometry_leakage"]) == {(s, m) for s in frontier_cells.GEOMETRY_SCOPES
                                                 for m in ("absrel", "within10")}
        assert cell["geometry_against"] == "ground_truth"
        for m in ("absrel", "within10"):  # recomputed from the per-view raw scores = the pipeline's own leakage
            stored = record["leakage"][f"geometry_leakage_{m}"]
            assert cell["geometry_leakage"][("render", m)].point == pytest.approx(stored, abs=1e-6), (family, m)
            stored = record["leakage"][f"geometry_vs_victim_leakage_{m}"]  # and against the client's own depth
            assert cell["geometry_leakage"][("vs_victim", m)].point == pytest.approx(stored, abs=1e-6), (family, m)
            assert cell["geometry_leakage"][("render", m)].resolved  # an interval over the eval views
            assert math.isfinite(cell["geometry_vs_victim"][m]["defended"].point)
        if family == "splitnerf":
            assert cell["geometry_ratio"][("render", "absrel")].point == pytest.approx(1.0)


def _geometry_record(family: str, readout_absrel: float, readout_within: float, views: int = 6) -> dict:
    """A frontier record holding only per-view geometry scores (floors fixed: abs-rel 0.3, 40 % within 10 %)."""
    rows = []
    for v in range(views):
        jitter = 0.01 * (v - (views - 1) / 2)  # mean zero
        row = {"view": v, "psnr": 20.0}
        for name in ("floor_constant", "floor_surrogate", "floor_box", "surrogate"):
            row.update({f"geometry_{name}_absrel": 0.3, f"geometry_{name}_within10": 0.4})
        row.update({"geometry_readout_absrel": readout_absrel + jitter, "geometry_readout_within10": readout_within,
                    "geometry_readout_vs_victim_absrel": readout_absrel / 2, "geometry_readout_vs_victim_within10": 0.9,
                    "geometry_surrogate_vs_victim_absrel": 0.5, "geometry_surrogate_vs_victim_within10": 0.1})
        rows.append(row)
    return {"room": "office", "family": family, "value": 0.0, "seed": 42, "adaptive_attacker": False, "psnr": 20.0,
            "leakage": {"geometry_reference_victim": 0.0}, "per_view": rows, "dummies": {}}


def test_geometry_cells_leakage_is_floor_error_minus_the_best_attacks_and_its_ratio_to_splitnerfs():
    from s2nerf_ns.bench import frontier_cells

    undefended = _geometry_record("splitnerf", 0.1, 0.8)
    defended = _geometry_record("density-noise", 0.25, 0.5)
    cell = frontier_cells.cells([undefended, defended])[("office", "density-noise", 0.0)]
    assert cell["geometry_leakage"][("render", "absrel")].point == pytest.approx(0.3 - 0.25)
    assert cell["geometry_leakage"][("render", "within10")].point == pytest.approx(0.5 - 0.4)
    assert cell["geometry_reference"][("render", "absrel")].point == pytest.approx(0.3 - 0.1)
    assert cell["geometry_ratio"][("render", "absrel")].point == pytest.approx(0.05 / 0.2)
    assert cell["geometry_ratio"][("render", "within10")].point == pytest.approx(0.1 / 0.4)
    interval = cell["geometry_leakage"][("render", "absrel")]
    assert interval.resolved and interval.low < 0.05 < interval.high  # resampled over the eval views
    assert cell["geometry_vs_victim"]["absrel"]["defended"].point == pytest.approx(0.125)
    assert cell["geometry_vs_victim"]["within10"]["reference"].point == pytest.approx(0.9)
    assert cell["geometry_against"] == "ground_truth"
    assert not any(map(lambda iv: iv.resolved, [cell["geometry_leakage"][("private", "absrel")]]))  # no private rows
