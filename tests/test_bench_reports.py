"""Merging per-worker results and the verdicts against issues 11 and 14, on hand-made records (no training);
the README's generated blocks and the claims under them against the committed raw records."""

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from s2nerf_ns.bench import frontier, frontier_cells, frontier_report, pose_report
from s2nerf_ns.evaluation import confidence

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_FRONTIER = ROOT / "docs" / "results" / "frontier_cpu_2core" / "frontier.json"
COMMITTED_POSE = ROOT / "docs" / "results" / "pose_global_cpu"


OFFSETS = (-0.25, 0.25, -0.125, 0.125)
"""Per-view offsets (exact in binary, summing to zero: the means are the values given)."""


def _render_scores(prefix, attacks, leak, private, offset):
    """One view's raw scores: the attack ``leak`` (``private`` on the private items) over the best floor."""
    row = {}
    for p, value in (("", leak), ("private_", leak if private is None else private)):
        for m in frontier_report.METRICS:
            row[f"{prefix}floor_constant_{p}{m}"] = 0.5
            row[f"{prefix}floor_surrogate_{p}{m}"] = 0.4
            for attack, below in attacks:
                row[f"{prefix}{attack}_{p}{m}"] = 0.5 + value + 0.01 * offset - below
    return row


def record(room, family, value, seed, psnr, leak, dummy=None, private=None):
    """A frontier record with raw per-view scores only (no derived ``leakage_*`` fields), four eval views and
    four dummy images, whose every metric of a scope has the same leakage over the floor."""
    views = [{"view": v, "psnr": psnr + d, **_render_scores("", (("attack", 0.0), ("embedding_attack", 0.05)), leak,
                                                            private, d)} for v, d in enumerate(OFFSETS)]
    dummy_leak = leak if dummy is None else dummy
    images = [{"image": i, **_render_scores("dummy_", (("attack", 0.0),), dummy_leak, dummy_leak, d)}
              for i, d in enumerate(OFFSETS)]
    mean = lambda rows: {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}  # noqa: E731
    return {"room": room, "family": family, "value": value, "seed": seed, "adaptive_attacker": True,
            "psnr": mean(views)["psnr"], "ssim": 0.5, "leakage": mean(views), "per_view": views,
            "dummies": {"dummy_metrics": mean(images), "per_image": images}, "epsilon": None}


def write(path: Path, records, preset="cpu"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"preset": preset, "records": records, "provenance": {"git_commit": "abc"}}))
    return path


def test_merge_joins_workers_drops_duplicates_and_refuses_mixed_presets(tmp_path):
    a = write(tmp_path / "a" / "frontier.json", [record("office", "splitnerf", 0.0, 42, 25.0, 1.0),
                                                record("office", "s2nerf", 1.2, 42, 23.0, 0.5)])
    b = write(tmp_path / "b" / "frontier.json", [record("office", "s2nerf", 1.2, 42, 99.0, 0.0),  # duplicate: dropped
                                                record("office", "max-norm", 2.0, 42, 24.0, 0.05)])
    merged = frontier.merge([a, b], tmp_path / "out")
    assert len(merged["records"]) == 3 and len(merged["sources"]) == 2
    lost = {(r["family"], r["value"]): r["psnr_lost"] for r in merged["records"]}
    assert lost == {("splitnerf", 0.0): 0.0, ("s2nerf", 1.2): 2.0, ("max-norm", 2.0): 1.0}
    assert (tmp_path / "out" / "frontier.png").exists()
    c = write(tmp_path / "c" / "frontier.json", [record("office", "s2nerf", 0.3, 42, 24.0, 0.5)], preset="smoke")
    with pytest.raises(SystemExit, match="preset"):
        frontier.merge([a, c], tmp_path / "out2")


def test_goal_needs_every_room_scope_and_metric():
    records = []
    for room in ("office", "bedroom"):
        records.append(record(room, "splitnerf", 0.0, 42, 25.0, 0.3))
        records.append(record(room, "good", 1.0, 42, 24.0, 0.02))  # 1 dB lost, ratio 0.067 everywhere
        records.append(record(room, "costly", 1.0, 42, 23.0, 0.0))  # no leakage, but 2 dB lost
    # leaks on the dummies of one room only: fails there
    records.append(record("office", "dummy-leak", 1.0, 42, 24.5, 0.0, dummy=0.2))
    records.append(record("bedroom", "dummy-leak", 1.0, 42, 24.5, 0.0))
    verdict = frontier_report.verdicts(frontier.with_loss({"records": records}))
    assert verdict[("good", 1.0)]["meets_goal"]
    assert not verdict[("costly", 1.0)]["meets_goal"] and verdict[("costly", 1.0)]["max_psnr_lost"] == 2.0
    leak = verdict[("dummy-leak", 1.0)]
    assert not leak["meets_goal"] and leak["worst"][0][0].startswith("dummies")
    assert leak["worst"][1] == pytest.approx(0.2 / 0.3)
    text = frontier_report.markdown({"preset": "cpu", "records": frontier.with_loss({"records": records})})
    assert "Goal met" in text and "good 1" in text


def test_undefended_leakage_within_resolution_is_left_out():
    records = [record("office", "splitnerf", 0.0, 42, 25.0, 1.0, private=0.005),  # private: within resolution
               record("office", "d", 1.0, 42, 24.0, 0.05, private=0.005)]
    verdict = frontier_report.verdicts(frontier.with_loss({"records": records}))[("d", 1.0)]
    assert verdict["meets_goal"] and verdict["excluded"] == len(frontier_report.METRICS)


def cell(room, seed, errors, sma, ssma):
    metrics = lambda v: {m: v for m in pose_report.GAIN_METRICS}  # noqa: E731
    return {"room": room, "defense": "splitnerf", "seed": seed, "leaked_pose_errors": errors,
            "sma": metrics(sma), "ssma": metrics(ssma)}


def test_pose_report_medians_and_share(tmp_path):
    good = [{"rotation_error_deg": 1.0, "translation_error": 0.01}, {"rotation_error_deg": 2.0, "translation_error": 0.02}]
    bad = [{"rotation_error_deg": 90.0, "translation_error": 1.0}] * 2
    estimate = {"preset": "cpu", "num_leaked": 2, "cells": {
        "office/splitnerf/seed42": cell("office", 42, good, 1.0, 1.95),  # gain 0.95 of the known 1.0
        "bedroom/splitnerf/seed42": cell("bedroom", 42, bad, 1.0, 0.5)}}
    known = {"cells": {"office/splitnerf/seed42": cell("office", 42, None, 1.0, 2.0),
                       "bedroom/splitnerf/seed42": cell("bedroom", 42, None, 1.0, 2.0)}}
    text = pose_report.markdown(estimate, known)
    summary = {line.split("|")[1].strip(): line for line in text.splitlines() if line.count("|") == 8}
    assert summary["office"].rstrip().endswith("**yes** |") and "| 1.5 |" in summary["office"]
    assert summary["bedroom"].rstrip().endswith("no |")
    paths = []
    for i, (key, c) in enumerate(estimate["cells"].items()):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps({"preset": "cpu", "pose": "estimate", "num_leaked": 2, "cells": {key: c}}))
    assert len(pose_report.merge(paths)["cells"]) == 2
    paths[1].write_text(json.dumps({"preset": "gpu", "cells": {}}))
    with pytest.raises(SystemExit, match="preset"):
        pose_report.merge(paths)


def test_readme_frontier_block_is_generated_from_committed_results():
    results = json.loads(COMMITTED_FRONTIER.read_text())
    assert frontier_report.readme_matches(ROOT / "README.md", results)


def test_readme_pose_block_is_generated_from_committed_results():
    estimate = json.loads((COMMITTED_POSE / "estimate.json").read_text())
    known = json.loads((COMMITTED_POSE / "known.json").read_text())
    assert pose_report.readme_matches(ROOT / "README.md", estimate, known)


# ------------------------------------------------------------------ the README block follows the raw scores
def _committed_record(results, room, family, value, seed):
    return next(r for r in results["records"]
                if (r["room"], r["family"], r["value"], r["seed"]) == (room, family, value, seed))


RAW_SHIFTS = [  # (room, family, value, seed), where the raw score is, its key, the shift
    (("livingroom", "client-appearance", 0.0, 42), None, "psnr", -5.0),
    (("livingroom", "client-appearance", 0.0, 42), "leakage", "attack_private_cm_nmi", 1.0),
    (("bedroom", "client-appearance", 1.2, 43), "leakage", "embedding_attack_cmpsnr", 5.0),
    (("office", "splitnerf", 0.0, 43), "leakage", "attack_cm_lum_ssim", 0.5),
    (("bedroom", "s2nerf", 1.2, 42), "leakage", "floor_constant_cm_lum_ssim", 0.5),
    (("office", "max-norm", 1.0, 42), "dummies", "dummy_attack_cm_lum_ssim", 0.5),
    (("livingroom", "residual-noise", 0.2, 43), "leakage", "floor_surrogate_private_nmi", 1.0),
]


@functools.lru_cache(maxsize=1)
def _committed_block() -> str:
    return frontier_report.markdown(json.loads(COMMITTED_FRONTIER.read_text()))


@pytest.mark.parametrize("where, part, key, shift", RAW_SHIFTS, ids=lambda v: str(v))
def test_readme_frontier_block_changes_when_a_raw_score_of_a_committed_record_does(where, part, key, shift):
    """The block is recomputed from the raw scores: shifting one raw score of one committed record changes it
    (were it rebuilt from the stored derived fields, it would not)."""
    results = json.loads(COMMITTED_FRONTIER.read_text())
    before = _committed_block()
    record = _committed_record(results, *where)
    scores = {None: record, "leakage": record["leakage"], "dummies": record["dummies"]["dummy_metrics"]}[part]
    scores[key] += shift
    assert frontier_report.markdown(results) != before


def test_committed_frontier_md_is_generated_from_its_records():
    """Each committed frontier's frontier.md (the block's tables and every cell with its intervals) is what the
    records give."""
    for folder in (COMMITTED_FRONTIER.parent, COMMITTED_FRONTIER.parents[1] / "frontier_cpu_h200"):
        results = json.loads((folder / "frontier.json").read_text())
        assert (folder / "frontier.md").read_text() == frontier_report.document(results), folder


def test_readme_frontier_block_ignores_stored_derived_fields():
    """Shifting every stored derived field (leakage, floor, PSNR lost) of every record changes nothing."""
    results = json.loads(COMMITTED_FRONTIER.read_text())
    before = _committed_block()
    for r in results["records"]:
        r["psnr_lost"] = (r.get("psnr_lost") or 0.0) - 5.0
        for scores in (r["leakage"], r["dummies"]["dummy_metrics"]):
            for k in scores:
                if k.startswith(("leakage_", "floor_private_", "dummy_leakage_", "gradient_share_")) or \
                        k in {f"floor_{m}" for m in frontier_report.METRICS}:
                    scores[k] += 1.0
    assert frontier_report.markdown(results) == before


def test_every_raw_score_of_a_committed_record_moves_its_cell():
    """Every raw score a committed record holds for the verdict moves the cell it belongs to (a raw score
    that did not would be one the tables could silently drift from)."""
    results = json.loads(COMMITTED_FRONTIER.read_text())
    room, family, value = "livingroom", "client-appearance", 0.0
    seeds = (42, 43)
    defended = [_committed_record(results, room, family, value, s) for s in seeds]
    reference = [_committed_record(results, room, "splitnerf", 0.0, s) for s in seeds]

    def summary():
        c = frontier_cells.cell(defended, reference)
        return [c["psnr_lost"]] + [c[k][sm] for k in ("leakage", "reference", "ratio") for sm in sorted(c[k])]

    before = summary()
    for source in frontier_cells.SOURCES:
        for key in frontier_cells.columns(source):
            for record in defended + reference:
                scores = frontier_cells.mean_row(record, source)
                if key not in scores:
                    continue
                target = record if key == "psnr" else (record["leakage"] if source == "eval"
                                                       else record["dummies"]["dummy_metrics"])
                target[key] += 10.0
                assert summary() != before, (source, key, record["family"], record["seed"])
                target[key] -= 10.0


def test_readme_frontier_prose_claims():
    """The sentences under the README's frontier block ("What the table says"), recomputed from the raw
    records of the committed frontiers."""
    records = json.loads(COMMITTED_FRONTIER.read_text())["records"]
    cells = frontier_cells.cells(records)
    verdict = frontier_report.verdicts(records, computed=cells)
    colour = frontier_report.verdicts(records, frontier_report.COLOUR_METRICS, computed=cells)
    seeds = {p: {len(c["seeds"]) for c in v["rooms"].values()} for p, v in verdict.items()}
    two, one = {p for p, s in seeds.items() if s == {2}}, {p for p, s in seeds.items() if s == {1}}
    assert len(one) == 7 and two | one == set(verdict)
    assert not any(v["meets_goal"] for v in verdict.values())
    assert all(verdict[p]["verdict"] == "fail" for p in two) and all(verdict[p]["verdict"] == "not resolved" for p in one)
    assert {p for p in two if colour[p]["verdict"] == "not resolved"} == {("client-appearance", 1.2)}
    assert all(colour[p]["verdict"] == "fail" for p in two - {("client-appearance", 1.2)})

    def mean(family, value, scope, metric):
        return sum(c["leakage"][(scope, metric)].point for (room, f, v), c in cells.items()
                   if (f, v) == (family, value)) / 3

    by_cost = sorted(verdict, key=lambda p: verdict[p]["max_psnr_lost"])
    assert by_cost[:2] == [("residual-noise", 0.05), ("client-appearance", 0.0)]
    appearance = [p for p in verdict if p[0] == "client-appearance"]
    for p in appearance:
        assert abs(mean(*p, "render", "cm_lum_ssim")) <= 0.02 and abs(mean(*p, "render", "cmpsnr")) <= 0.15, p
        assert mean(*p, "private", "cm_lum_ssim") < 0 and mean(*p, "private", "cmpsnr") < 0, p
        room, scope, metric = frontier_report._where(verdict[p])
        assert (room, scope) == ("livingroom", "private") and metric in ("nmi", "cm_nmi"), p
    noisy, plain = ("client-appearance", 1.2), ("client-appearance", 0.0)
    for v in (verdict, colour):
        assert v[noisy]["worst"][1] < v[plain]["worst"][1]
    assert verdict[noisy]["max_psnr_lost"] > verdict[plain]["max_psnr_lost"]

    assert verdict[("s2nerf", 1.2)]["max_psnr_lost"] > frontier_report.MAX_PSNR_LOST
    near_floor = {p for p in verdict if p[0] in ("s2nerf", "s2nerf-floor", "max-norm")
                  and mean(*p, "render", "cm_lum_ssim") <= 0.02 and mean(*p, "render", "cmpsnr") <= 0.2}
    assert near_floor == {("max-norm", 2.0), ("max-norm", 4.0), ("s2nerf-floor", 0.3)}
    assert all(verdict[p]["max_psnr_lost"] > 3.5 for p in near_floor)
    assert mean("s2nerf", 2.4, "render", "cmpsnr") > 0.4

    residual = sorted(p for p in verdict if p[0] == "residual-noise")
    assert [p[1] for p in residual] == [0.05, 0.1, 0.2, 0.4]
    assert all(verdict[p]["max_psnr_lost"] <= 1.2 for p in residual)
    dummies = [mean(*p, "dummies", "cm_lum_ssim") for p in residual]
    assert dummies == sorted(dummies, reverse=True) and all(mean(*p, "render", "cm_lum_ssim") > 0.2 for p in residual)
    for s in (0.2, 0.4):
        for room in ("bedroom", "livingroom", "office"):
            rs = [r["leakage"] for r in records if (r["room"], r["family"], r["value"]) == (room, "residual-noise", s)]
            raw = {k: sum(r[k] for r in rs) / len(rs) for k in ("attack_cmpsnr", "embedding_attack_cmpsnr",
                                                               "attack_cm_lum_ssim", "embedding_attack_cm_lum_ssim")}
            assert raw["embedding_attack_cmpsnr"] >= raw["attack_cmpsnr"] - 0.01, (s, room)
            ahead = raw["embedding_attack_cm_lum_ssim"] > raw["attack_cm_lum_ssim"]
            assert ahead == (room != "livingroom"), (s, room)
    assert min(r["epsilon"] for r in records if r["family"] == "residual-noise") > 100

    h200 = json.loads((COMMITTED_FRONTIER.parents[1] / "frontier_cpu_h200" / "frontier.json").read_text())["records"]
    h_cells = frontier_cells.cells(h200)
    h_all, h_colour = (frontier_report.verdicts(h200, m, computed=h_cells)[plain]
                       for m in (frontier_report.METRICS, frontier_report.COLOUR_METRICS))
    assert round(h_all["max_psnr_lost"], 2) == 0.25 and h_colour["verdict"] == "pass" and h_all["verdict"] == "fail"
    failed = {sm[1] for c in h_all["rooms"].values() for sm, o in c["judged"].items() if o == "fail"}
    assert failed and failed <= {"nmi", "cm_nmi"}


# ------------------------------------------------------------------------------- confidence on every cell
def test_two_stage_bootstrap_and_judge():
    rng = np.random.default_rng(1)
    views = [np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([[10.0], [10.0], [10.0], [10.0]])]
    reps = confidence.two_stage_means(views, replicates=500, rng=rng)
    assert reps.shape == (500, 2, 1)
    seed_two = reps[..., 0][reps[..., 0] >= 10 - 1e-12]
    assert np.allclose(seed_two, 10.0)  # a seed whose views agree always resamples to its mean
    assert 0.0 <= reps[..., 0].min() and reps[..., 0][reps[..., 0] < 10].std() > 0  # views are resampled
    assert np.allclose(confidence.seed_means(views)[:, 0], [1.5, 10.0])
    interval = confidence.percentile_interval(5.75, reps.mean(axis=1)[:, 0])
    assert interval.low < 5.75 < interval.high and interval.resolved
    assert confidence.judge(confidence.Interval(0.05, 0.02, 0.09), 0.1) == confidence.PASS
    assert confidence.judge(confidence.Interval(0.3, 0.11, 0.5), 0.1) == confidence.FAIL
    assert confidence.judge(confidence.Interval(0.1, 0.05, 0.2), 0.1) == confidence.UNRESOLVED
    assert confidence.judge(confidence.Interval(0.05, math.nan, math.nan), 0.1) == confidence.UNRESOLVED
    assert not confidence.resolvable(1, [1]) and confidence.resolvable(1, [4]) and confidence.resolvable(2, [1, 1])


def test_a_cell_whose_interval_straddles_the_goal_is_not_resolved():
    """Same point values as a passing setting, but views that disagree: the verdict is 'not resolved', and a
    setting without per-view scores and with one seed is never judged."""
    records = [record("office", "splitnerf", 0.0, 42, 25.0, 0.3), record("office", "good", 1.0, 42, 24.0, 0.02)]
    for v, offset in zip(records[1]["per_view"], (-8.0, 8.0, -4.0, 4.0)):  # +-0.08 around 0.02 on every score
        for key in v:
            if key.startswith("attack_"):
                v[key] += 0.01 * offset
    verdict = frontier_report.verdicts(records)[("good", 1.0)]
    assert verdict["verdict"] == "not resolved" and verdict["counts"]["not resolved"] > 0
    assert verdict["worst"][1] == pytest.approx(0.02 / 0.3)  # the point value is unchanged
    for r in records:
        del r["per_view"]
        del r["dummies"]["per_image"]
    verdict = frontier_report.verdicts(records)[("good", 1.0)]
    assert verdict["verdict"] == "not resolved" and verdict["counts"]["pass"] == verdict["counts"]["fail"] == 0
    assert "[no interval]" in frontier_report.markdown({"preset": "cpu", "records": records})


def test_undefended_leakage_whose_interval_reaches_zero_is_not_resolved():
    ref = record("office", "splitnerf", 0.0, 42, 25.0, 0.1)
    for rows in (ref["per_view"], ref["dummies"]["per_image"]):
        for v, offset in zip(rows, (-30.0, 30.0, -15.0, 15.0)):  # every attack 0.1 +- 0.3: crosses zero
            for key in v:
                if key.startswith(("attack_", "embedding_attack_", "dummy_attack_")):
                    v[key] += 0.01 * offset
    verdict = frontier_report.verdicts([ref, record("office", "d", 1.0, 42, 24.5, 0.0)])[("d", 1.0)]
    assert verdict["counts"]["pass"] == 0 and verdict["verdict"] == "not resolved"
