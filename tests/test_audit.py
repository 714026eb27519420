"""s2nerf-audit on finished runs: the same keys as ns-eval of an attack run, from a recorded server view; the
gradient-free attacks alone without one; audit.json and a self-contained report.html; one-line input errors."""

import json

import pytest

from s2nerf_ns.errors import InputError
from s2nerf_ns.integration.audit import AuditConfig, run_audit
from helpers import tiny_config, train


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    """A splitnerf victim that recorded its server view, the same victim trained as splitnerf-sma, and an
    s2nerf-plus run without a record."""
    out = tmp_path_factory.mktemp("audit")
    victim = tiny_config("splitnerf", out, steps=30)
    victim.pipeline.record_server_view = True
    recorded = train(victim)
    attack_run = train(tiny_config("splitnerf-sma", out, steps=30))
    plain = train(tiny_config("s2nerf-plus", out, steps=10))
    return recorded, attack_run, plain


@pytest.mark.slow
def test_audit_from_a_record_has_the_keys_of_ns_eval_of_an_attack_run(runs):
    recorded, attack_run, _ = runs
    live = attack_run.pipeline.get_average_eval_image_metrics()
    result = run_audit(AuditConfig(load_config=recorded.base_dir / "config.yml"))
    assert set(result["eval_metrics"]) == set(live)
    assert "replayed from 30 recorded steps" in " ".join(result["attacks"].values())
    assert result["record"]["steps"] == 30
    for key in ("leakage_cmpsnr", "leakage_cm_nmi", "attack_cmpsnr", "embedding_attack_cmpsnr"):
        assert abs(result["eval_metrics"][key]) < 100
    folder = recorded.base_dir / "audit"
    on_disk = json.loads((folder / "audit.json").read_text())
    assert on_disk["eval_metrics"] == pytest.approx(result["eval_metrics"])
    assert on_disk["provenance"]["commit"]
    page = (folder / "report.html").read_text()
    assert result["verdict"] in page.replace("&#x27;", "'")
    assert page.count("<img src='data:image/png;base64,") >= 9 * result["eval_views"]  # every panel inlined


@pytest.mark.slow
def test_audit_without_a_record_runs_the_gradient_free_attacks_only(runs):
    _, _, plain = runs
    result = run_audit(AuditConfig(load_config=plain.base_dir / "config.yml"))
    metrics = result["eval_metrics"]
    assert "not run" in result["attacks"]["gradient attacks"]
    assert "embedding_attack_cmpsnr" in metrics and "leakage_cmpsnr" in metrics
    assert not [k for k in metrics if k.startswith(("attack_", "floor_surrogate_", "gradient_share_"))]
    assert metrics["leakage_cmpsnr"] == pytest.approx(metrics["embedding_attack_cmpsnr"] - metrics["floor_cmpsnr"])


def test_audit_inputs_are_checked_before_anything_is_loaded(tmp_path):
    with pytest.raises(InputError, match="--load-config"):
        run_audit(AuditConfig(load_config=tmp_path / "nope.yml"))
    config = tmp_path / "config.yml"
    config.write_text("x: 1\n")
    with pytest.raises(InputError, match="--server-run"):
        run_audit(AuditConfig(load_config=config, server_run=tmp_path / "missing"))
    assert not (tmp_path / "audit").exists()
