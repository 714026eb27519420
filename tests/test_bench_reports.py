"""Merging per-worker results and the verdicts against issues 11 and 14, on hand-made records (no training);
the README's generated blocks and the claims under them against the committed raw records."""

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from s2nerf_ns.bench import frontier, frontier_cells, frontier_coverage, frontier_report, pose_report
from s2nerf_ns.errors import InputError
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
        if p in one:  # "the one-seed c = 0.3 has no resolved cell, hence no worst ratio"
            assert verdict[p]["worst"] is None and verdict[p]["counts"]["pass"] + verdict[p]["counts"]["fail"] == 0
            continue
        room, scope, metric = frontier_report._where(verdict[p])
        assert (room, scope) == ("livingroom", "private") and metric in ("nmi", "cm_nmi"), p
    assert {p for p in appearance if p in one} == {("client-appearance", 0.3)}
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


# ------------------------------------------------------------- the authors' README example, "not run", the figure
def test_authors_readme_example_is_a_labelled_setting():
    """lucky9-cyou/S2-NeRF's README runs ``--noise_type random --noise_std 9.6 --noise_decay 1``; their std is
    ``max_i ||g_i|| * noise_std * std_scale * noise_decay^(t/T)`` with ``std_scale`` at its default 1.0: here
    ``kind s2nerf``, c = 9.6 (eight times the paper's 1.2), r = 1 (no decay), nothing else changed."""
    family, value = frontier.AUTHORS_POINT
    defense = frontier.SETTINGS[family][2](value)["defense"]
    assert (defense.kind, defense.noise_scale, defense.decay_ratio) == ("s2nerf", 9.6, 1.0)
    assert (defense.noise_floor, defense.variant, defense.clip_to_median) == (0.0, "random", False)
    assert value == 8 * frontier.PAPER_POINT[1] and family not in frontier.FAMILIES
    from s2nerf_ns.defenses.schedules import DecaySchedule

    assert {DecaySchedule(defense.decay_ratio, 300)(t) for t in (0, 150, 300, 600)} == {1.0}  # no decay
    for preset in ("smoke", "cpu", "judge"):
        assert frontier.AUTHORS_POINT in frontier.points(preset, list(frontier.SETTINGS))
    frontier.check_inputs(["office"], [family], [42], [value])
    with pytest.raises(InputError, match="--values 1.2"):
        frontier.check_inputs(["office"], [family], [42], [1.2])
    assert frontier.AUTHORS_POINT in frontier.LABELS and frontier.PAPER_POINT in frontier.LABELS

    records = [record("office", "splitnerf", 0.0, 42, 25.0, 0.3), record("office", family, value, 42, 22.0, 0.1)]
    text = frontier_report.markdown({"preset": "cpu", "records": records})
    assert f"{family} 9.6: the authors' README example" in text and f"| {family} | 9.6 |" in text
    assert f"{family} 9.6 (" not in text.split("\n")[0]  # it ran: not listed as not run


def test_frontier_header_lists_what_did_not_run():
    """The preset's settings with no record are named: label noise never ran on the committed frontier, nor did
    the authors' example; a family that ran on some values lists only the missing ones."""
    header = _committed_block().split("\n")[0]
    assert "label-noise (none of its values: 0.05, 0.1, 0.2, 0.4);" in header.split("Not run: ")[1]
    assert "s2nerf-authors 9.6 (the authors' README example" in header.split("Not run: ")[1]
    records = [record("office", "splitnerf", 0.0, 42, 25.0, 0.3), record("office", "label-noise", 0.1, 42, 24.0, 0.2)]
    line = frontier_report.not_run_line({"preset": "cpu", "records": records})
    assert "label-noise 0.05, 0.2, 0.4;" in line and "s2nerf (none of its values: 0.3, 0.6, 1.2, 2.4)" in line
    assert frontier_report.not_run_line({"preset": "handmade", "records": records}) == ""


def test_frontier_figure_is_recomputed_from_raw_scores(tmp_path):
    """The figure's points move with a raw score of a committed record and not with its stored derived fields."""
    from s2nerf_ns.bench import frontier_figure

    results = json.loads(COMMITTED_FRONTIER.read_text())
    before = frontier_figure.setting_points(results["records"])
    point = ("client-appearance", 1.2)
    for r in results["records"]:
        r["psnr_lost"] = 99.0
        r["leakage"]["leakage_cm_lum_ssim"] = 99.0
    assert {p: (e["x"], e["y"]) for p, e in frontier_figure.setting_points(results["records"]).items()} == \
        {p: (e["x"], e["y"]) for p, e in before.items()}
    target = _committed_record(results, "office", *point, 42)
    target["psnr"] -= 3.0
    target["leakage"]["embedding_attack_cm_lum_ssim"] += 0.6  # the best attack now
    after = frontier_figure.setting_points(results["records"])[point]
    assert after["x"] == pytest.approx(before[point]["x"] + 3.0 / 2 / 3)  # one of 2 seeds, one of 3 rooms
    assert after["y"] > before[point]["y"] + 0.05
    assert frontier_figure.axis("leakage_private_cmpsnr") == (("private", "cmpsnr"), None)
    assert frontier_figure.axis("dummy_leakage_private_nmi") == (("dummies private", "nmi"), None)
    sm, note = frontier_figure.axis("attack_lum_ssim_margin")
    assert sm == frontier_figure.DEFAULT_AXIS and "not a leakage" in note
    frontier_figure.plot(results, tmp_path / "f.png", "leakage_cmpsnr", frontier.LABELS)
    assert (tmp_path / "f.png").stat().st_size > 10_000


FRONTIER_FOLDERS = ("frontier_cpu_2core", "frontier_cpu_h200")


@pytest.mark.parametrize("name", FRONTIER_FOLDERS)
def test_frontier_folder_readme_coverage_is_generated(name):
    """Each committed frontier's README lists what ran from its records (a missing file fails)."""
    folder = ROOT / "docs" / "results" / name
    results = json.loads((folder / "frontier.json").read_text())
    assert frontier_report.block_matches(folder / "README.md", frontier_coverage.COVERAGE_BEGIN, frontier_coverage.END,
                                         frontier_coverage.coverage_block(results))
    rows = {tuple(c.strip() for c in line.split("|")[1:4:2]): line.split("|")[4].strip()
            for line in frontier_coverage.coverage_markdown(results).splitlines() if line.startswith("| ")}
    assert all(rows[("label-noise", v)] == "not run" for v in ("0.05", "0.1", "0.2", "0.4"))
    assert rows[("s2nerf-authors", "9.6")] == "not run"
    assert rows[("splitnerf", "0")] == "2 (42, 43) on every room"


def test_frontier_folder_readmes_prose():
    """The numbers the two frontier folders' READMEs state outside their generated blocks."""
    folder = ROOT / "docs" / "results"
    cpu = json.loads((folder / "frontier_cpu_2core" / "frontier.json").read_text())
    text = (folder / "frontier_cpu_2core" / "README.md").read_text()
    env = cpu["environment"]
    assert env["device"].startswith("CPU") and env["cpu_count"] == "2"
    assert f"torch {env['torch'].rsplit('.', 1)[0]}, Python {env['python'].rsplit('.', 1)[0]}" in text
    hand = [r for r in cpu["records"] if r.get("nmi_debiased_set_by_hand")]
    assert f"The {len(hand)} records of the first invocations (provenance `eeeb20e`, clean)" in text.replace("\n", " ")
    assert len(hand) == 8 and all(r["provenance"]["git_commit"].startswith("eeeb20e") and
                                  r["provenance"]["git_dirty"] is False for r in hand)
    for family, value in (("splitnerf", 0.0), ("s2nerf", 1.2), ("client-appearance", 0.0)):  # "ran first"
        assert {(r["room"], r["seed"]) for r in cpu["records"] if (r["family"], r["value"]) == (family, value)} == \
            {(room, s) for room in ("bedroom", "livingroom", "office") for s in (42, 43)}
    assert {r["provenance"]["git_commit"][:7] for r in cpu["records"]} == {"eeeb20e"}

    h200 = json.loads((folder / "frontier_cpu_h200" / "frontier.json").read_text())
    text = (folder / "frontier_cpu_h200" / "README.md").read_text().replace("\n", " ")
    env = h200["environment"]
    assert env["device"] == "NVIDIA H200" and "One NVIDIA H200" in text
    assert f"torch {env['torch'].rsplit('.', 1)[0]}, Python {env['python'].rsplit('.', 1)[0]}" in text
    status = (folder / "frontier_cpu_h200" / "gpu_session_status.txt").read_text().splitlines()
    finished = sum(": rc=0 " in line for line in status)
    not_started = int(next(line for line in status if line.startswith("not started:")).split(":")[1])
    assert f"({finished} of {finished + not_started} tasks finished;" in text and finished == len(status) - 1


# ----------------------------------------------------------- README prose outside the blocks, against the records
def _readme() -> str:
    return " ".join((ROOT / "README.md").read_text().split())  # whitespace-normalised: line breaks do not matter


COLOUR_FAMILIES = ("s2nerf", "s2nerf-floor", "max-norm", "residual-noise", "label-noise", "client-appearance")


def test_readme_frontier_section_prose():
    """The frontier paragraphs of "Defense families": preset, coverage, attacker, machine, goal, the H200 and
    tiny frontiers, the client-appearance sentence, the judge preset."""
    from s2nerf_ns.bench.common import PRESETS

    text = _readme()
    results = json.loads(COMMITTED_FRONTIER.read_text())
    records = results["records"]
    pv = results["preset_values"]
    assert (f"smoke: 2 per family, {frontier.FRONTIER_PRESETS['smoke'].steps} steps)" in text
            and all(len(frontier.points("smoke", [f])) == 2 for f in frontier.FAMILIES))
    assert (f"**The frontier at the `cpu` preset** ({pv['resolution']} px rooms, {pv['num_views']} views, "
            f"{pv['steps']} steps × {pv['rays']} rays, {pv['num_samples']} samples, {pv['num_levels']}-level grid, "
            f"{pv['replay_steps']} replay steps): three rooms,") in text
    rooms = {r["room"] for r in records}
    assert len(rooms) == 3
    ran = {r["family"] for r in records} - {"splitnerf"}
    for family in ran:  # every knob value of every family that ran, at seed 42, on every room
        for value in frontier.SETTINGS[family][1]:
            assert {r["room"] for r in records if (r["family"], r["value"], r["seed"]) == (family, value, 42)} == rooms
    assert "label-noise" not in ran and frontier.AUTHORS_POINT[0] not in ran
    assert not ran & (set(frontier.FAMILIES) - set(COLOUR_FAMILIES))  # "the geometry families ... did not run"
    for family, value in (("splitnerf", 0.0), frontier.PAPER_POINT, ("client-appearance", 0.0)):
        assert {r["room"] for r in records if (r["family"], r["value"], r["seed"]) == (family, value, 43)} == rooms
    assert all(r["adaptive_attacker"] for r in records) and "by the **adaptive** gradient attacker" in text
    env = results["environment"]
    assert env["device"].startswith("CPU") and env["cpu_count"] == "2" and "Run on this project's 2-core CPU" in text
    assert (f"at most {frontier_report.MAX_PSNR_LOST:g} dB lost and at most {frontier_report.MAX_LEAKAGE_RATIO:.0%} "
            "of splitnerf's leakage").replace("%", " %") in text
    assert not any(r.get("per_view") for r in records) and "These records predate per-view scores" in text
    assert not any(k.startswith("geometry_") for r in records for k in r["leakage"])  # "these records have none"
    assert "these records have none, and the block says so" in text and \
        "Geometry (depth) leakage: not measured" in _committed_block()

    # "s2nerf-plus ... loses the least PSNR of the client-appearance settings, while client appearance with the
    # paper's noise on top (c = 1.2) has the smaller worst ratio ..., at about a dB more cost; neither meets the goal"
    verdict = frontier_report.verdicts(records)
    appearance = {p: v for p, v in verdict.items() if p[0] == "client-appearance"}
    plain, noisy = appearance[("client-appearance", 0.0)], appearance[("client-appearance", 1.2)]
    assert min(appearance, key=lambda p: appearance[p]["max_psnr_lost"]) == ("client-appearance", 0.0)
    assert noisy["worst"][1] < plain["worst"][1] and 0.7 <= noisy["max_psnr_lost"] - plain["max_psnr_lost"] <= 1.3
    assert not plain["meets_goal"] and not noisy["meets_goal"]
    assert "at about a dB more cost; neither meets the goal" in text

    # "The same frontier on one H200 (1–2 points of every family but label noise and the geometry families, two
    # seeds on every room except residual noise s = 0.05, which has the second seed on office only; NMI before ...)"
    h200 = json.loads((ROOT / "docs" / "results" / "frontier_cpu_h200" / "frontier.json").read_text())
    assert h200["environment"]["device"] == "NVIDIA H200" and "**The same frontier on one H200**" in text
    hr = h200["records"]
    per_family = {f: len({r["value"] for r in hr if r["family"] == f}) for f in COLOUR_FAMILIES}
    assert per_family.pop("label-noise") == 0 and set(per_family.values()) <= {1, 2}
    assert not {r["family"] for r in hr} & (set(frontier.FAMILIES) - set(COLOUR_FAMILIES))
    assert "(1–2 points of every family but label noise and the geometry families," in text
    seeds = {}
    for r in hr:
        seeds.setdefault((r["family"], r["value"]), {}).setdefault(r["room"], set()).add(r["seed"])
    short = {p: {room for room, s in by_room.items() if s == {42, 43}} for p, by_room in seeds.items()
             if any(s != {42, 43} for s in by_room.values()) or len(by_room) < 3}
    assert short == {("residual-noise", 0.05): {"office"}}
    assert "except residual noise `s = 0.05`, which has the second seed on office only" in text
    assert not any(r.get("nmi_debiased") for r in hr) and "NMI before the permutation baseline" in text

    tiny = json.loads((ROOT / "docs" / "results" / "frontier_tiny" / "frontier.json").read_text())
    assert {r["room"] for r in tiny["records"]} == {"office"}
    assert not any(r["adaptive_attacker"] for r in tiny["records"])
    assert {r["seed"] for r in tiny["records"]} == {42} and tiny["preset"] == "smoke"
    assert f"(office only, {tiny['preset_values']['steps']} steps, smoke-sized model, plain attacker)" in text

    judge = PRESETS["judge"]
    assert f"The `judge` preset ({judge.resolution} px rooms, {judge.steps} steps × {judge.rays:,} rays;" in text


def test_readme_results_section_prose():
    """Where each committed result ran ("Results") and the privacy benchmark's setting, against the records."""
    from s2nerf_ns.bench import report
    from s2nerf_ns.bench.common import PRESETS
    from s2nerf_ns.bench.privacy import GPU_DEFENSES

    text = _readme()
    results = ROOT / "docs" / "results"
    assert "(`docs/results/frontier_cpu_2core/`, in [Defense families](#defense-families)) ran on this project's " \
           "2-core CPU machine" in text
    assert json.loads((results / "frontier_cpu_2core" / "frontier.json").read_text())["environment"]["cpu_count"] == "2"
    pose = json.loads((results / "pose_global_cpu" / "estimate.json").read_text())
    assert {s["environment"]["device"] for s in pose["sources"]} == {"NVIDIA H200"}
    assert "and the pose-search table (in [SSMA](#scene-aided-surrogate-model-attack-ssma)) ran on one H200." in text
    privacy = report.load(results / "privacy_cpu" / "results.json")
    speed = json.loads((results / "bench_cpu" / "speed.json").read_text())
    for env in (privacy["environment"], speed["environment"]):
        assert env["device"] == "CPU (x86_64)" and env["torch"] == "2.14.1"
    assert "measured on a 2-core CPU machine (x86_64, torch 2.14.1)" in text and \
        privacy["environment"]["cpu_count"] == "2"

    cells = privacy["cells"].values()
    pv = privacy["preset_values"]
    assert {c["room"] for c in cells} == {"bedroom", "office", "livingroom"}
    assert {c["defense"] for c in cells} == {"splitnerf", "s2nerf c=1.2 r=1e-4"}
    assert {c["seed"] for c in cells} == {42, 43}
    assert "Three rooms × {`splitnerf`, `s2nerf c=1.2 r=1e-4`} × 2 seeds (42, 43)" in text
    assert (f"the victim ran for {pv['steps']} steps instead of the preset's {PRESETS['cpu'].steps}, with "
            f"{pv['post_training_steps']} attacker-only leaked-photo steps and {pv['replay_steps']} replay "
            "steps") in text
    assert len(privacy["command"]) == 2 and all("--seed-list" in c for c in privacy["command"])  # one per seed

    gpu = PRESETS["gpu"]
    assert set(GPU_DEFENSES) == {"splitnerf", "s2nerf c=1.2 r=1e-4", "s2nerf c=1.2 r=1"} and gpu.seeds == 3
    assert (f"{{`splitnerf`, `s2nerf c=1.2 r=1e-4`, `s2nerf c=1.2 r=1`}}, {gpu.steps:,} steps at {gpu.rays:,} rays, "
            f"the reference model, {gpu.resolution} px rooms") in text


def test_readme_privacy_prose_claims():
    """"What the tables show" under the privacy block: every number and comparison, recomputed from the raw
    scores of the committed results.json (through the block's own summary, which recomputes the derived ones)."""
    from s2nerf_ns.bench import report

    text = _readme()
    results = report.load(ROOT / "docs/results/privacy_cpu/results.json")
    rows = {(e["room"], e["defense"]): e for e in report._rows(results)}
    rooms = ("bedroom", "office", "livingroom")
    plain, paper = "splitnerf", "s2nerf c=1.2 r=1e-4"

    def m(room, defense, key, part="sma"):
        return rows[(room, defense)][part][key]["mean"]

    f = lambda v: f"{v:+.2f}"  # noqa: E731
    leak = {d: [m(r, d, "leakage_cmpsnr") for r in rooms] for d in (plain, paper)}
    assert (f"The best attack beats the floor by {f(leak[plain][0])} (bedroom), {f(leak[plain][1])} (office) and "
            f"{f(leak[plain][2])} (living room).") in text
    share = [m(r, plain, "gradient_share_cmpsnr") for r in rooms]
    spread = rows[("livingroom", plain)]["sma"]["gradient_share_cmpsnr"]["std"]
    assert share[0] < 0 and share[1] < 0 and 0 < share[2] < spread  # embedding attack best in two rooms
    assert (f"the gradient share is {share[0]:.2f} and {share[1]:.2f}".replace("-", "−") in text and
            f"ahead by {f(share[2])} ± {spread:.2f}, within the seed spread" in text)
    assert f"leaves {f(leak[paper][0])}, {f(leak[paper][1])} and {f(leak[paper][2])} of leakage" in text
    own = [m(r, paper, "attack_leakage_cmpsnr") for r in rooms]
    assert f"margin falls to {f(min(own))} to {f(max(own))}" in text
    office_embedding = m("office", paper, "embedding_attack_leakage_cmpsnr")
    assert office_embedding == max(m(r, paper, "embedding_attack_leakage_cmpsnr") for r in rooms)
    assert f"in the office the embedding attack still shows {f(office_embedding)}" in text
    assert sum(v <= 0.5 for v in leak[paper]) == 2 and "within 0.5 dB of the floor in two rooms of three" in text
    lost = [m(r, plain, "psnr", "victim") - m(r, paper, "psnr", "victim") for r in rooms]
    assert f"The victim loses {lost[0]:.2f}, {lost[1]:.2f} and {lost[2]:.2f} dB." in text
    raw = [m(r, d, "attack_psnr") for r in rooms for d in (plain, paper)]
    assert f"Raw attacker PSNR ({min(raw):.1f} to {max(raw):.1f} dB in every cell)" in text
    assert all(abs(m(r, plain, "attack_psnr") - m(r, paper, "attack_psnr")) < 0.1 for r in rooms)  # no separation
    private = {(r, d): m(r, d, "leakage_private_cmpsnr") for r in rooms for d in (plain, paper)}
    top = max(private, key=private.get)
    assert top == ("office", plain) and all(v < 0 for k, v in private.items() if k != top)
    assert (f"The private leakage is at most {f(private[top])} (office, undefended); every other cell is "
            "negative.") in text
    ssma = {d: [m(r, d, "attack_leakage_cmpsnr", "ssma") for r in rooms] for d in (plain, paper)}
    assert (f"margin is {f(min(ssma[plain]))} to {f(max(ssma[plain]))} undefended, and {f(ssma[paper][0])}, "
            f"{f(ssma[paper][1])} and {f(ssma[paper][2])} with the defense") in text
    dummy = max(abs(m(r, d, "dummy_leakage_cmpsnr", "dummies")) for r in rooms for d in (plain, paper))
    assert f"(within ±{dummy:.2f} in every cell)" in text
    lum = {d: [m(r, d, "dummy_leakage_cm_lum_ssim", "dummies") for r in rooms] for d in (plain, paper)}
    assert (f"Their cm lum-SSIM margin is {f(min(lum[plain]))} to {f(max(lum[plain]))} undefended and "
            f"{f(min(lum[paper]))} to {f(max(lum[paper]))} with the defense") in text


def test_readme_privacy_block_follows_raw_scores():
    """Shifting one raw score of one committed cell changes the privacy block; shifting the stored derived fields
    (leakage, margins, gradient share, floor, the stored summary) does not."""
    from s2nerf_ns.bench import report

    results = report.load(ROOT / "docs/results/privacy_cpu/results.json")
    before = report.privacy_tables(results)
    results["summary"] = {}
    for c in results["cells"].values():
        for part in ("sma", "ssma", "dummies"):
            for k in list(c.get(part) or {}):
                if k.startswith(("leakage_", "attack_leakage_", "embedding_attack_leakage_", "gradient_share_",
                                 "dummy_leakage_")) or k in {f"floor_{m}" for m in frontier_report.METRICS}:
                    c[part][k] += 1.0
    assert report.privacy_tables(results) == before
    results["cells"]["office/splitnerf/seed42"]["sma"]["embedding_attack_cmpsnr"] += 2.0
    assert report.privacy_tables(results) != before


# --------------------------------------------------------------------------------------- geometry in the verdict
def with_geometry(rec: dict, leak: float, vs_victim: float = 0.9) -> dict:
    """``rec`` with per-view depth scores (``geometry_<name>_[private_]<metric>``): every floor at abs-rel 0.3 and
    30 % within 10 %, every attack ``leak`` better than that on both metrics (the surrogate a little worse)."""
    attacks, floors = frontier_cells.GEOMETRY_SOURCES
    for row, d in zip(rec["per_view"], OFFSETS):
        for p in ("", "private_"):
            for f in floors:
                row[f"geometry_{f}_{p}absrel"], row[f"geometry_{f}_{p}within10"] = 0.3, 0.3
            for i, a in enumerate(attacks):
                gain = leak + 0.01 * d - 0.01 * i
                row[f"geometry_{a}_{p}absrel"], row[f"geometry_{a}_{p}within10"] = 0.3 - gain, 0.3 + gain
        for f in floors:  # against the client's own depth: floors at 0.3 / 30 %, attacks at 1 - vs_victim / vs_victim
            row[f"geometry_{f}_vs_victim_absrel"], row[f"geometry_{f}_vs_victim_within10"] = 0.3, 0.3
        for a in attacks:
            row[f"geometry_{a}_vs_victim_absrel"], row[f"geometry_{a}_vs_victim_within10"] = 1.0 - vs_victim, vs_victim
    return rec


def test_geometry_cells_are_judged_and_rendered():
    """A setting that hides the colour but not the geometry fails the goal on its geometry cells; the geometry
    table shows the leakage, the worst ratio and the outcomes, recomputed from the per-view depth scores."""
    records = [with_geometry(record("office", "splitnerf", 0.0, 42, 25.0, 0.3), 0.2),
               with_geometry(record("office", "hides-colour", 1.0, 42, 24.5, 0.01), 0.15),
               with_geometry(record("office", "hides-both", 1.0, 42, 24.5, 0.01), 0.01, vs_victim=0.2)]
    verdict = frontier_report.verdicts(records)
    colour_only = frontier_report.verdicts(records, frontier_report.METRICS)
    assert colour_only[("hides-colour", 1.0)]["meets_goal"] and colour_only[("hides-both", 1.0)]["meets_goal"]
    leaky = verdict[("hides-colour", 1.0)]
    assert leaky["verdict"] == "fail" and leaky["worst"][0][0].startswith(frontier_report.GEOMETRY)
    # worst: against the client's own depth, where it leaks as much as splitnerf (+0.6 within 10 % over the floor)
    assert leaky["worst"][0][0] == "geometry vs_victim" and leaky["worst"][1] == pytest.approx(1.0)
    ratios = leaky["rooms"]["office"]["ratios"]
    assert ratios[("geometry render", "within10")].point == pytest.approx(0.15 / 0.2)
    assert verdict[("hides-both", 1.0)]["meets_goal"]
    text = frontier_report.markdown({"preset": "handmade", "records": records})
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.count("|") == 13}
    assert "+0.150 | +0.150 | +0.150 | +0.150 | +0.600 | +0.200 | 1.00 [" in rows["hides-colour"]
    assert rows["hides-colour"].rstrip().endswith("| 0 / 6 / 0 / 0 | 0.900 |")
    assert rows["hides-both"].rstrip().endswith("| 6 / 0 / 0 / 0 | 0.200 |")
    assert "| -0.100 | -0.500 |" in rows["hides-both"]
    assert "| victim |" not in text and "| unknown |" in rows["splitnerf"]
    assert "Geometry (depth) leakage: not measured" not in text
    cells_text = frontier_report.cells_markdown({"records": records})
    assert "| hides-colour | 1 | office | geometry private | within10 | +0.150 [" in cells_text
    for r in records:  # without depth scores: one line, and the geometry cells are neither judged nor listed
        for row in r["per_view"]:
            for k in [k for k in row if k.startswith("geometry_")]:
                del row[k]
    text = frontier_report.markdown({"preset": "handmade", "records": records})
    assert "Geometry (depth) leakage: not measured" in text
    assert "geometry" not in frontier_report.cells_markdown({"records": records})


def test_every_committed_record_moves_its_cell():
    """Every record of the README's frontier counts: shifting its raw PSNR, its best render attack's raw score or
    its dummies' raw score moves the cell it belongs to (a splitnerf record: the cells of its room and seed)."""
    records = json.loads(COMMITTED_FRONTIER.read_text())["records"]
    groups = {}
    for r in records:
        groups.setdefault((r["room"], r["family"], r["value"]), []).append(r)

    def cell_of(room, family, value):  # the cell's point values, as frontier_cells.cell computes them (no bootstrap)
        defended = sorted(groups[(room, family, value)], key=lambda r: r["seed"])
        reference = [next(x for x in groups[(room, "splitnerf", 0.0)] if x["seed"] == r["seed"]) for r in defended]
        stats = {}
        for source in frontier_cells.SOURCES:
            samples = [frontier_cells.paired(d, ref, source)[0] for d, ref in zip(defended, reference)]
            stats.update(frontier_cells.statistics(confidence.seed_means(samples), source))
        keys = ("psnr_lost", "defended|render|cm_lum_ssim", "defended|dummies|cm_lum_ssim",
                "reference|render|cm_lum_ssim", "reference|dummies|cm_lum_ssim")
        return tuple(float(stats[k]) for k in keys)

    for r in records:
        # a defended record is judged against splitnerf of its seed; a splitnerf record moves the reference of
        # every setting on its room (checked on the paper's point)
        family, value = (r["family"], r["value"]) if r["family"] != "splitnerf" else frontier.PAPER_POINT
        before = cell_of(r["room"], family, value)
        best = max(frontier_cells.EVAL_ATTACKS, key=lambda a: r["leakage"].get(f"{a}_cm_lum_ssim", -math.inf))
        reference = r["family"] == "splitnerf"
        shifts = [(r, "psnr", 0), (r["leakage"], f"{best}_cm_lum_ssim", 3 if reference else 1),
                  (r["dummies"]["dummy_metrics"], "dummy_attack_cm_lum_ssim", 4 if reference else 2)]
        for target, key, moved in shifts:
            target[key] += 0.5
            after = cell_of(r["room"], family, value)
            target[key] -= 0.5
            assert after[moved] != before[moved], (r["room"], r["family"], r["value"], r["seed"], key)


def test_worst_ratio_names_only_resolved_cells_and_no_repeated_geometry_cells():
    """A cell within noise is never a setting's worst; without ground-truth depth the vs-client geometry cells repeat
    the reference ones and are counted once."""
    iv = confidence.Interval
    intervals = {("render", "cmpsnr"): iv(0.3, 0.2, 0.4), ("private", "nmi"): iv(5.0, -1.0, 12.0),
                 ("dummies", "nmi"): iv(0.05, 0.01, 0.08)}
    judged = {("render", "cmpsnr"): confidence.FAIL, ("private", "nmi"): confidence.UNRESOLVED,
              ("dummies", "nmi"): confidence.PASS}
    assert frontier_report.worst_resolved(judged, intervals) == (("render", "cmpsnr"), intervals[("render", "cmpsnr")])
    judged[("render", "cmpsnr")] = confidence.UNRESOLVED
    assert frontier_report.worst_resolved(judged, intervals)[0] == ("dummies", "nmi")
    assert frontier_report.worst_resolved({sm: confidence.UNRESOLVED for sm in judged}, intervals) is None

    geometry = {(scope, m): iv(0.5, 0.4, 0.6) for scope in ("render", "private", "vs_victim", "vs_victim private")
                for m in ("absrel", "within10")}
    entry = {"ratio": {("render", "cmpsnr"): iv(0.3, 0.2, 0.4)}, "geometry_ratio": geometry}
    for against, count in (("ground_truth", 9), ("victim", 5)):
        kept = frontier_report.counted_ratios({**entry, "geometry_against": against})
        assert len(kept) == count and len(frontier_report.ratios({**entry, "geometry_against": against})) == 9
        assert ("geometry render", "absrel") in kept and ("render", "cmpsnr") in kept
        assert (("geometry vs_victim", "absrel") in kept) == (against == "ground_truth")
