"""`s2nerf-bench` refuses bad input with one line naming the flag, before anything is written (issue 21), and
refuses to write results from a git checkout with uncommitted changes unless --allow-dirty (issue 23)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tyro

from s2nerf_ns.bench import cli, common, frontier, frontier_report, privacy, report
from s2nerf_ns.errors import InputError

COMMANDS = {"privacy": cli.Privacy, "frontier": cli.Frontier, "report": cli.Report}


def bench(argv, capsys):
    """Parse (and, if parsing succeeds, run) ``s2nerf-bench <argv>`` in this process: (exit code, the error
    line). A value refused while parsing is printed by the tyro hook; one refused in ``main`` is raised."""
    try:
        command = tyro.cli(COMMANDS[argv[0]], args=argv[1:])
        command.main()
    except SystemExit as e:
        err = capsys.readouterr().err.strip()
        return e.code, err.splitlines()[-1] if err else ""
    except InputError as e:
        return 1, f"s2nerf-bench: error: {e}"
    return 0, ""


def one_line(code, line, *needles):
    assert code not in (0, None), line
    assert re.match(r"^\S+: error: ", line) and "\n" not in line, line  # the program name, then one line
    for needle in needles:
        assert needle in line, line


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    ("not json at all", "not JSON"),
    (json.dumps({"records": []}), "not a privacy benchmark's results.json (it has no 'cells' entry)"),
    (json.dumps([1, 2]), "it has no 'cells' entry"),
    (json.dumps({"cells": {"a": {"room": "office"}}}), "cell 'a' has no defense, seed"),
])
def test_report_results_that_are_not_privacy_results(tmp_path, capsys, content, expected):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    code, line = bench(["report", "--results", str(path)], capsys)
    one_line(code, line, f"--results {path}", expected)
    assert not (tmp_path / "results.md").exists()


def test_report_missing_file_prints_one_line_without_traceback(tmp_path):
    """The real command: the excepthook prints the project's one line, no traceback, exit status 1."""
    proc = subprocess.run([sys.executable, "-m", "s2nerf_ns.bench.cli", "report", "--results",
                           str(tmp_path / "none.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"cli.py: error: --results {tmp_path / 'none.json'}: no such file (give the " \
                                  "privacy benchmark's results.json a benchmark wrote)"


@pytest.mark.parametrize("argv, needles", [
    (["frontier", "--seeds"], ("--seeds: give at least one seed",)),
    (["privacy", "--seeds"], ("--seeds: give at least one seed",)),
    (["frontier", "--seeds", "-1"], ("--seeds -1: a seed must be between 0 and",)),
    (["privacy", "--seeds", "42", "42"], ("--seeds 42 42: a seed is given twice",)),
    (["privacy", "--seed", "42", "--seeds", "2"], ("--seed 42: removed; --seeds now lists the seeds",)),
    (["privacy", "--seed-list", "42", "43"], ("--seed-list: renamed --seeds", "--seeds 42 43")),
    (["privacy", "--num-leaked", "3"], ("--num-leaked 3: the benchmark's rooms have 2 off-trajectory extra views",)),
    (["privacy", "--num-leaked", "0"], ("--num-leaked 0",)),
    (["frontier", "--values", "7"], ("--values 7: no such knob value",)),
    (["frontier", "--families", "nosuch"], ("--families nosuch: unknown family",)),
    (["privacy", "--defenses", "nosuch"], ("--defenses 'nosuch': unknown defense",)),
])
def test_bad_values_are_one_line(tmp_path, capsys, argv, needles):
    code, line = bench(argv + ["--out", str(tmp_path / "out")], capsys)
    one_line(code, line, *needles)
    assert not (tmp_path / "out").exists()


def test_missing_readme_and_bad_merge_inputs_are_one_line(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"cells": {}}))
    code, line = bench(["report", "--results", str(results), "--readme", str(tmp_path / "none.md")], capsys)
    one_line(code, line, f"--readme {tmp_path / 'none.md'}: no such file")
    (tmp_path / "privacy.json").write_text(json.dumps({"cells": {}}))
    for path, needle in ((tmp_path / "none.json", "no such file"), (tmp_path / "privacy.json", "not a frontier.json")):
        code, line = bench(["frontier", "--merge", str(path), "--out", str(tmp_path / "out")], capsys)
        one_line(code, line, f"--merge {path}", needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["privacy", "frontier"])
def test_unknown_room_fails_before_any_folder(tmp_path, capsys, command):
    code, line = bench([command, "--rooms", "nosuch", "--out", str(tmp_path / "out")], capsys)
    one_line(code, line, "--rooms nosuch: unknown room", "office")
    assert not (tmp_path / "out").exists()


def test_seeds_is_a_list_of_seeds_in_both_subcommands():
    """`--seeds 0` is seed 0 (results for it), the same list in both; the default is the preset's."""
    assert tyro.cli(cli.Privacy, args=["--seeds", "0"]).seeds == [0]
    assert tyro.cli(cli.Frontier, args=["--seeds", "0"]).seeds == [0]
    assert tyro.cli(cli.Privacy, args=["--seeds", "42", "43"]).seeds == [42, 43]
    assert privacy.default_seeds("cpu") == [42, 43] and privacy.default_seeds("smoke") == [42]


def test_num_leaked_help_matches_the_rendered_rooms(capsys):
    """The help names the extra views the benchmark renders, which is what its cells and points request."""
    config = privacy.cell_config("office", "splitnerf", privacy.PRESETS["smoke"], Path("/nonexistent"), 42)
    assert config.pipeline.datamanager.dataparser.num_extra_views == common.EXTRA_VIEWS == 2
    with pytest.raises(SystemExit):
        tyro.cli(cli.Privacy, args=["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "1 or 2 (the benchmark renders its rooms with 2 off-trajectory extra views" in text


def _dirty(monkeypatch):
    monkeypatch.setattr(common, "provenance", lambda: {"git_commit": "abc", "git_dirty": True,
                                                      "git_dirty_files": ["a.py", "b.py", "c.py", "d.py"]})


def test_dirty_tree_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    _dirty(monkeypatch)
    for run in (lambda out: frontier.run("smoke", out, rooms=["office"], families=["s2nerf"]),
                lambda out: privacy.run("smoke", out, rooms=["office"])):
        with pytest.raises(InputError, match=r"uncommitted changes \(a.py, b.py, c.py and 1 more\).*--allow-dirty"):
            run(tmp_path / "out")
        assert not (tmp_path / "out").exists()
    assert common.checked_provenance(allow_dirty=True)["allow_dirty"] is True
    monkeypatch.setattr(common, "provenance", lambda: {"git_commit": "abc", "git_dirty": False, "git_dirty_files": []})
    assert common.checked_provenance()["allow_dirty"] is False


def test_allow_dirty_is_shown_in_the_generated_blocks():
    prov = {"git_commit": "abcdef1234567", "git_dirty": True, "git_dirty_files": ["a.py"], "allow_dirty": True}
    assert report.provenance_text(prov) == "commit abcdef1234 with 1 modified files (`--allow-dirty`)"
    old = {k: v for k, v in prov.items() if k != "allow_dirty"}
    assert "before the benchmarks refused a dirty tree" in report.provenance_text(old)
    records = [{"provenance": prov}, {"provenance": {**prov, "git_dirty": False, "allow_dirty": False}}]
    line = frontier_report.provenance_line({"records": records})
    assert "1 of 2 runs from a tree with uncommitted changes (1 written with `--allow-dirty`)" in line
