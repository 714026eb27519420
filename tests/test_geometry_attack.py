"""The geometry attacks: the server reads the client's density out of the gradients it receives (client appearance),
renders depth with it, and the evaluator scores that depth against a floor that knows nothing of the room."""

from __future__ import annotations

import json
import math

import pytest
import torch

from s2nerf_ns.attacks.geometry import DensityReadout, HeadDensity, composited_depth, is_linear_density_head, shade
from s2nerf_ns.evaluation import geometry as geo
from s2nerf_ns.protocol.channel import ServerView
from helpers import tiny_config
from test_attack import reachable

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 150


@pytest.fixture(scope="module")
def plus_run(tmp_path_factory):
    """A tiny client-appearance (s2nerf-plus architecture) run under the SMA pipeline, with a second read-out fed
    noise of the same shape in place of the received gradients (the negative control)."""
    torch.manual_seed(0)
    config = tiny_config("splitnerf-sma", tmp_path_factory.mktemp("geometry"), steps=STEPS, client_appearance=True)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    pipeline = trainer.pipeline
    control = DensityReadout(pipeline.split_model.client_head.in_dim, seed=1)
    noise = torch.Generator().manual_seed(7)

    def observe_noise(view: ServerView) -> None:
        fake = torch.randn(view.grad.shape, generator=noise) * float(view.grad.std())
        control.observe(ServerView(view.step, view.ray_indices, view.origins, view.directions, view.positions,
                                   view.bins, view.h, fake.to(view.grad)))

    pipeline.split_model.channel.add_observer(observe_noise)
    trainer.train()
    return trainer, control


def eval_depths(pipeline, readout: DensityReadout):
    """Per eval view: the victim's z-depth (the client's own density), the read-out's, and the gradient-free
    surrogate's (floor)."""
    model, dataset = pipeline.split_model, pipeline.datamanager.eval_dataset
    model.eval()
    views = []
    with torch.no_grad():
        for i in range(len(dataset)):
            camera = dataset.cameras[i : i + 1]
            rays = camera.generate_rays(camera_indices=0)
            shape = rays.origins.shape[:2]
            o, d = rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3)
            h, bins = model.server.embed(o, d)
            out = model.client_render(rays.flatten(), bins, h)
            victim = composited_depth(out["depth"], out["accumulation"], bins)  # as its colour is composited
            ours = readout.render(h, o, d, bins)["depth"]
            floor = model.server_renders["floor_depth"](h, o, d, bins)
            box = model.server_renders["ray_last_sample"](h, o, d, bins)
            c2w = camera.camera_to_worlds[0]
            z = lambda t: geo.z_depth(t.reshape(shape), rays.directions, c2w)  # noqa: E731
            views.append((z(victim), z(ours), z(floor), z(box)))
    return views


def leakage_against_victim(views):
    """Mean over views of the read-out's scores, the floor's (best constant per metric, the gradient-free surrogate's
    or the scene box's far side, whichever is better) and the leakage, all against the victim's own depth."""
    rows = []
    for victim, ours, floor, box in views:
        scores = geo.best_constant_scores(victim, prefix="geometry_floor_constant_")
        scores.update(geo.depth_scores(floor, victim, prefix="geometry_floor_surrogate_"))
        scores.update(geo.depth_scores(box, victim, prefix="geometry_floor_box_"))
        scores.update(geo.depth_scores(ours, victim, prefix="geometry_readout_"))
        rows.append(scores)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    return mean, geo.geometry_leakage(mean, ("readout",))


def test_readout_recovers_the_density_direction_and_the_depth(plus_run):
    trainer, _ = plus_run
    pipeline = trainer.pipeline
    readout = pipeline.ensure_readout()
    w = pipeline.split_model.client_head.density_layers[0].weight[0].detach()
    cos = float(readout.direction @ w / w.norm())
    stats = pipeline.readout_stats()
    scores, lk = leakage_against_victim(eval_depths(pipeline, readout))
    print("read-out |cos|", abs(cos), "confidence", float(readout.confidence), "scale |a|/|w|",
          stats["geometry_readout_scale_ratio"], "sign right", stats["geometry_readout_sign_right"])
    print("vs the victim's depth: read-out abs-rel %.4f within10 %.3f | floor abs-rel %.4f within10 %.3f" % (
        scores["geometry_readout_absrel"], scores["geometry_readout_within10"], lk["geometry_floor_absrel"],
        lk["geometry_floor_within10"]))
    assert abs(cos) > 0.999
    assert float(readout.confidence) > 0.99
    assert stats["geometry_readout_sign_right"] == 1.0  # chosen without ground truth
    assert 0.25 < stats["geometry_readout_scale_ratio"] < 4.0
    # a wide margin over the floor: less than half its error, and at least 30 points more pixels within 10 %
    assert scores["geometry_readout_absrel"] < 0.5 * lk["geometry_floor_absrel"]
    assert lk["geometry_leakage_within10"] > 0.3


def test_noise_in_place_of_the_gradients_reads_out_nothing(plus_run):
    """Fed noise of the same shape, the read-out finds no direction (and its eigen-gap says so) and loses the
    client's depth: several times the error. Not all of the margin over the floor goes: the server's own ``h``
    carries geometry without any gradient (a random direction of ``h``, exponentiated with a fitted scale, still
    draws part of the room: measured 2 % to 71 % of pixels within 10 %, against about 31 % for the floor)."""
    trainer, control = plus_run
    pipeline = trainer.pipeline
    pipeline.split_model.eval()
    control.fit(pipeline.split_model.server.embed)
    w = pipeline.split_model.client_head.density_layers[0].weight[0].detach()
    cos = float(control.direction @ w / w.norm())
    scores, lk = leakage_against_victim(eval_depths(pipeline, control))
    real_scores, real_lk = leakage_against_victim(eval_depths(pipeline, pipeline.ensure_readout()))
    print("noise: |cos|", abs(cos), "confidence", float(control.confidence),
          "abs-rel %.4f within10 %.3f | floor %.4f %.3f" % (
              scores["geometry_readout_absrel"], scores["geometry_readout_within10"], lk["geometry_floor_absrel"],
              lk["geometry_floor_within10"]))
    assert abs(cos) < 0.5
    assert float(control.confidence) < 0.1  # the eigen-gap says so
    assert scores["geometry_readout_absrel"] > 3 * real_scores["geometry_readout_absrel"]
    assert lk["geometry_leakage_within10"] < real_lk["geometry_leakage_within10"] - 0.15


def test_ns_eval_reports_geometry_and_shading_next_to_the_colour_keys(plus_run):
    from nerfstudio.utils.eval_utils import eval_setup

    trainer, _ = plus_run
    summary = json.loads((trainer.base_dir / "attack" / "attack_summary.json").read_text())
    metrics = summary["eval_metrics"]
    assert summary["geometry_reference"] == "ground_truth"  # the built-in rooms render depth
    assert summary["inversion_public_rooms"] == ["bedroom", "livingroom"]
    for name in ("readout", "surrogate", "floor_constant", "floor_surrogate", "floor_box", "floor", "attack",
                 "leakage", "victim"):
        for k in ("absrel", "within10", "private_absrel", "private_within10"):
            assert math.isfinite(metrics[f"geometry_{name}_{k}"]), (name, k)
    floors, attacks = ("floor_constant", "floor_surrogate", "floor_box"), ("readout", "surrogate")
    for k in ("absrel", "private_absrel"):  # leakage = the better floor's error minus the better attack's
        floor, best = (min(metrics[f"geometry_{n}_{k}"] for n in names) for names in (floors, attacks))
        assert metrics[f"geometry_leakage_{k}"] == pytest.approx(floor - best)
    for k in ("within10", "private_within10"):
        floor, best = (max(metrics[f"geometry_{n}_{k}"] for n in names) for names in (floors, attacks))
        assert metrics[f"geometry_leakage_{k}"] == pytest.approx(best - floor)
    colour = ("attack", "embedding_attack", "shading_attack", "inversion_attack")
    for k in ("cmpsnr", "cm_nmi", "private_cmpsnr"):  # the shading and inversion attacks compete in leakage_*
        assert math.isfinite(metrics[f"shading_attack_{k}"]) and math.isfinite(metrics[f"inversion_attack_{k}"])
        floor = max(metrics[f"floor_constant_{k}"], metrics[f"floor_surrogate_{k}"])
        best = max(metrics[f"{a}_{k}"] for a in colour)
        assert metrics[f"leakage_{k}"] == pytest.approx(best - floor)
    print({k: round(v, 4) for k, v in metrics.items() if k.startswith(("geometry_", "shading_attack_leakage_c",
                                                                          "inversion_attack_leakage_c", "leakage_c"))})
    assert metrics["geometry_readout_direction_cos"] > 0.999
    assert metrics["geometry_readout_vs_victim_within10"] > 0.6  # the client's own depth, read out by the server
    for k in ("absrel", "within10", "private_absrel", "private_within10"):  # the same leakage, against the client
        floors = [metrics[f"geometry_{n}_vs_victim_{k}"] for n in ("floor_constant", "floor_surrogate", "floor_box")]
        attacks = [metrics[f"geometry_{n}_vs_victim_{k}"] for n in ("readout", "surrogate")]
        floor, best_of = (min(floors), min(attacks)) if "absrel" in k else (max(floors), max(attacks))
        sign = -1.0 if "absrel" in k else 1.0
        assert metrics[f"geometry_vs_victim_leakage_{k}"] == pytest.approx(sign * (best_of - floor)), k
    assert metrics["geometry_vs_victim_leakage_within10"] > 0.2  # the read-out beats every floor on the client's depth
    _, pipeline, _, _ = eval_setup(trainer.base_dir / "config.yml", test_mode="test")
    again = pipeline.get_average_eval_image_metrics()
    keys = [k for k in metrics if k.startswith(("geometry_", "shading_attack_", "inversion_attack_", "leakage_"))]
    assert len(keys) > 40
    for key in keys:  # the read-out is in the checkpoint: ns-eval renders the same geometry
        assert again[key] == pytest.approx(metrics[key], rel=1e-4, abs=1e-5), key


def test_readout_holds_nothing_of_the_client(plus_run):
    """The read-out (and, for heads not linear in h, its fallback: the SMA surrogate's density) reaches no client
    state, no model, no data."""
    pipeline = plus_run[0].pipeline
    fallback = DensityReadout(pipeline.split_model.client_head.in_dim, linear=False)
    fallback.fallback = HeadDensity(pipeline.surrogate.head)
    client = pipeline.split_model.client_head
    for readout in (pipeline.geometry, fallback):
        ids = {id(o) for o in reachable(readout)}
        assert id(client) not in ids and not any(id(p) in ids for p in client.parameters())
        assert id(pipeline.model) not in ids and id(pipeline.datamanager) not in ids and id(pipeline) not in ids


def test_the_inversion_never_sees_the_victims_room(plus_run, monkeypatch):
    """Trained on the other built-in rooms only (the victim's is office), once, and kept in the checkpoint."""
    from s2nerf_ns.integration import geometry_attacks

    trainer, _ = plus_run
    pipeline = trainer.pipeline
    victim = pipeline.config.datamanager.dataparser.scene
    assert victim == "office" and pipeline.inversion.public_rooms == ["bedroom", "livingroom"]
    assert int(pipeline.inversion.trained_steps) > 0
    state = torch.load(sorted((trainer.base_dir / "nerfstudio_models").glob("*.ckpt"))[-1], map_location="cpu",
                       weights_only=False)["pipeline"]
    assert int(state["inversion.trained_steps"]) == int(pipeline.inversion.trained_steps)
    seen = []
    real = geometry_attacks.public_room_views
    monkeypatch.setattr(geometry_attacks, "public_room_views", lambda dp, rooms: seen.extend(rooms) or real(dp, rooms))
    pipeline.inversion.trained_steps.zero_()
    assert pipeline.ensure_inversion() and seen == ["bedroom", "livingroom"]
    for room in ("bedroom", "livingroom"):  # whichever the victim's room, it is left out
        monkeypatch.setattr(pipeline.config.datamanager.dataparser, "scene", room)
        assert room not in pipeline.public_rooms() and len(pipeline.public_rooms()) == 2


# ------------------------------------------------------------------------------------------------ unit tests
def test_depth_metrics_on_synthetic_maps():
    ref = torch.tensor([[1.0, 2.0], [4.0, 8.0]])
    assert geo.depth_scores(ref, ref) == {"absrel": 0.0, "within10": 1.0}
    pred = ref * torch.tensor([[1.05, 1.2], [0.5, 1.0]])
    s = geo.depth_scores(pred, ref, prefix="x_")
    assert s["x_absrel"] == pytest.approx((0.05 + 0.2 + 0.5 + 0.0) / 4)
    assert s["x_within10"] == pytest.approx(0.5)
    mask = torch.tensor([[True, False], [True, False]])
    assert geo.depth_scores(pred, ref, mask)["absrel"] == pytest.approx((0.05 + 0.5) / 2)
    assert math.isnan(geo.depth_scores(pred, ref, torch.zeros(2, 2, dtype=torch.bool))["absrel"])
    # the best constant: abs-rel is minimised by the 1/ref-weighted median (here 1: cost (0 + 0.5 + 0.75 + 0.875) / 4)
    const = geo.best_constant_scores(ref)
    assert const["absrel"] == pytest.approx((0.0 + 0.5 + 0.75 + 0.875) / 4)
    brute = min(float(((c - ref).abs() / ref).mean()) for c in torch.linspace(0.5, 9, 8501))
    assert const["absrel"] == pytest.approx(brute, abs=1e-3)
    # within10: three of four values fit in one +-10 % window only if they are close; here at most one does
    assert const["within10"] == pytest.approx(0.25)
    close = torch.tensor([[1.0, 1.05], [1.15, 3.0]])  # c = 1.06 covers 1.0 (6 %), 1.05, 1.15 (7.8 %)
    assert geo.best_constant_scores(close)["within10"] == pytest.approx(0.75)
    # leakage: floor error minus attack error, per metric
    metrics = {"geometry_readout_absrel": 0.1, "geometry_readout_within10": 0.8,
               "geometry_floor_constant_absrel": 0.3, "geometry_floor_constant_within10": 0.3,
               "geometry_floor_surrogate_absrel": 0.25, "geometry_floor_surrogate_within10": 0.2}
    out = geo.geometry_leakage(metrics, ("readout",))
    assert out["geometry_floor_absrel"] == 0.25 and out["geometry_floor_within10"] == 0.3
    assert out["geometry_leakage_absrel"] == pytest.approx(0.15)
    assert out["geometry_leakage_within10"] == pytest.approx(0.5)


def test_scores_and_leakage_against_the_clients_own_depth():
    victim = torch.tensor([[1.0, 2.0], [4.0, 8.0]])
    depths = {"readout": victim * 1.05, "floor_box": torch.full((2, 2), 8.0)}
    mask = torch.tensor([[True, False], [True, False]])
    scores = geo.score_view_vs_victim(depths, victim, mask)
    assert scores["geometry_readout_vs_victim_within10"] == 1.0
    assert scores["geometry_floor_box_vs_victim_within10"] == 0.25
    assert scores["geometry_floor_box_vs_victim_private_absrel"] == pytest.approx((7 / 1 + 4 / 4) / 2)
    assert scores["geometry_floor_constant_vs_victim_within10"] == pytest.approx(0.25)
    assert {k for k in scores if "vs_victim" not in k} == set()
    out = geo.geometry_leakage_vs_victim(scores, ("readout",), ("floor_constant", "floor_box"))
    assert out["geometry_vs_victim_leakage_within10"] == pytest.approx(0.75)
    assert out["geometry_vs_victim_leakage_absrel"] == pytest.approx(
        min(scores["geometry_floor_constant_vs_victim_absrel"], scores["geometry_floor_box_vs_victim_absrel"]) - 0.05)
    assert not any(k.startswith(("geometry_leakage_", "geometry_floor_")) for k in out)  # the ground-truth keys stay


def test_z_depth_and_shading():
    c2w = torch.eye(4)[:3]  # looks along -z
    dirs = torch.nn.functional.normalize(torch.tensor([[[0.0, 0.0, -1.0], [0.6, 0.0, -0.8]]]), dim=-1)
    t = torch.tensor([[2.0, 2.5]])
    assert torch.allclose(geo.z_depth(t, dirs, c2w), torch.tensor([[2.0, 2.0]]))
    normals = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    img = shade(normals, dirs[0], torch.tensor([[1.0], [3.0]]), depth_scale=2.0)
    assert img.shape == (2, 3) and img.min() >= 0 and img.max() <= 1
    assert img[0, 0] > img[1, 0]  # lit from above
    assert img[0, 2] > img[1, 2]  # nearer is brighter in the depth cue


def test_readout_on_synthetic_rank_one_gradients_with_noise():
    """Rows parallel to w plus isotropic noise: the Gram matrix's top eigenvector is still w (the noise adds a
    multiple of the identity), with a lower confidence than without noise."""
    g = torch.Generator().manual_seed(0)
    d = 16
    w = torch.randn(d, generator=g)
    results = []
    for noise in (0.0, 0.3):
        readout = DensityReadout(d, rays_per_step=8)
        for step in range(20):
            coef = torch.randn(64, 8, 1, generator=g) * torch.rand(64, 8, 1, generator=g)
            grad = coef * w + noise * torch.randn(64, 8, d, generator=g) * float(coef.std() * w.norm()) / d**0.5
            bins = torch.linspace(0, 1, 9).expand(64, 9)
            readout.observe(ServerView(step, torch.zeros(64, 3, dtype=torch.long), torch.zeros(64, 3),
                                       torch.nn.functional.normalize(torch.randn(64, 3, generator=g), dim=-1),
                                       torch.zeros(64, 8, 3), bins, torch.zeros(64, 8, d), grad))
        u, gap, _ = readout.eigen()
        results.append((abs(float(u @ w / w.norm())), float(gap)))
    (cos_clean, gap_clean), (cos_noisy, gap_noisy) = results
    assert cos_clean > 0.99999 and gap_clean > 0.9999
    assert cos_noisy > 0.99 and gap_noisy < gap_clean
    assert is_linear_density_head(dict(num_density_layers=2, cut_depth=1, appearance_resolution=32,
                                       appearance_features=4))
    assert not is_linear_density_head(dict(num_density_layers=2, cut_depth=1))  # geometry features: not rank one
    assert not is_linear_density_head(dict(num_density_layers=3, cut_depth=1, appearance_resolution=32,
                                           appearance_features=4))


def test_inversion_features_and_training():
    from s2nerf_ns.attacks.inversion import InversionAttack, geometry_features, normals_from_depth

    # a camera at the origin looking along -z at the plane z = -2: normals (0, 0, 1), z-depth 2 everywhere
    n = 12
    v, u = torch.meshgrid(torch.linspace(-0.5, 0.5, n), torch.linspace(-0.5, 0.5, n), indexing="ij")
    directions = torch.nn.functional.normalize(torch.stack([u, -v, -torch.ones_like(u)], -1), dim=-1)
    origins = torch.zeros(n, n, 3)
    t = 2.0 / -directions[..., 2]
    normals = normals_from_depth(t, origins, directions)
    assert torch.allclose(normals, torch.tensor([0.0, 0.0, 1.0]).expand(n, n, 3), atol=1e-5)
    c2w = torch.eye(4)[:3]
    feats = geometry_features(t, origins, directions, c2w)
    assert feats.shape == (7, n, n) and torch.isfinite(feats).all()
    # learnable: luminance = a function of the geometry features; training lowers the error well below the start
    g = torch.Generator().manual_seed(0)
    examples = []
    for _ in range(6):
        tilt = torch.nn.functional.normalize(torch.randn(3, generator=g) * 0.3 + torch.tensor([0, 0, 1.0]), dim=0)
        depth = 2.0 / (-(directions @ tilt)).clamp_min(0.2)
        f = geometry_features(depth, origins, directions, c2w)
        examples.append((f, (0.2 + 0.6 * f[4]).clamp(0, 1)))
    attack = InversionAttack(width=8, seed=0)
    before = float(sum((attack.render(f)[..., 0] - y).pow(2).mean() for f, y in examples))
    attack.fit(examples, ["public"], steps=300, seconds=30)
    after = float(sum((attack.render(f)[..., 0] - y).pow(2).mean() for f, y in examples))
    assert attack.is_trained and attack.public_rooms == ["public"]
    assert after < 0.2 * before
