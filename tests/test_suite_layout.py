"""The suite's own conventions (tests/README.md): the README's command runs every test, the slow ones included;
one training loop for bare models; results scripts live in scripts/, not in docs/results/."""

import ast
import re
import tomllib
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def test_slow_is_registered_and_the_default_run_keeps_it():
    pytest_ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(m.startswith("slow:") for m in pytest_ini["markers"])
    assert "-m" not in str(pytest_ini.get("addopts", "")).split()  # python -m pytest -q deselects nothing
    assert "python -m pytest -q\n" in (ROOT / "README.md").read_text()


def test_only_helpers_defines_a_training_loop():
    """A test trains with helpers.train (nerfstudio's trainer) or helpers.train_model (a bare model): no file keeps
    its own ``train`` function."""
    own = []
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and re.fullmatch(r"_?train(_model)?", node.name):
                own.append(f"{path.name}:{node.lineno} {node.name}")
    assert not own, own


def test_results_folders_hold_no_scripts():
    """Scripts that back committed numbers are in scripts/, each results README names its script."""
    assert not sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs" / "results").rglob("*.py"))
    for script in sorted((ROOT / "scripts").glob("*.py")):
        source = script.read_text()
        assert "sys.path" not in source and "import *" not in source, script.name
        assert ast.get_docstring(ast.parse(source)), script.name
