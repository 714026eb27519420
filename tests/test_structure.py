"""The trust boundary as import rules, read from the source (not by convention)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "s2nerf_ns"


def imports_of(path: Path) -> set:
    """Every module a file imports (top level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def package_files(folder: str = ""):
    return sorted((PACKAGE / folder).rglob("*.py"))


def test_layout():
    for folder in ("protocol", "defenses", "attacks", "evaluation", "integration", "data", "scenes", "bench"):
        assert (PACKAGE / folder / "__init__.py").exists(), folder


ATTACKER_MAY_IMPORT = ("s2nerf_ns.attacks", "s2nerf_ns.protocol.client", "s2nerf_ns.protocol.rendering",
                       "s2nerf_ns.protocol.channel", "s2nerf_ns.protocol.cut")


@pytest.mark.parametrize("path", package_files("attacks"), ids=lambda p: p.name)
def test_attacks_import_only_public_protocol_knowledge(path):
    """No model, pipeline, evaluation (ground truth), data or defense internals: only the head's architecture,
    the shared renderer and what crosses the channel."""
    ours = {m for m in imports_of(path) if m.startswith("s2nerf_ns")}
    bad = {m for m in ours if not m.startswith(ATTACKER_MAY_IMPORT)}
    assert not bad, f"{path.name} imports {sorted(bad)}"
    assert not {m for m in imports_of(path) if m.startswith(("nerfstudio.models", "nerfstudio.pipelines"))}


def test_the_model_knows_nothing_of_attacks_or_leakage_scores():
    ours = imports_of(PACKAGE / "integration" / "model.py")
    assert not {m for m in ours if m.startswith(("s2nerf_ns.attacks", "s2nerf_ns.evaluation.leakage"))}


def test_protocol_and_defenses_know_nothing_of_attacks_integration_or_evaluation_scores():
    for path in package_files("protocol") + package_files("defenses"):
        bad = {m for m in imports_of(path)
               if m.startswith(("s2nerf_ns.attacks", "s2nerf_ns.integration", "s2nerf_ns.evaluation", "s2nerf_ns.bench"))}
        assert not bad, f"{path} imports {sorted(bad)}"


def test_method_configs_is_imported_by_nothing_in_the_package():
    for path in package_files():
        assert not {m for m in imports_of(path) if m.startswith("method_configs")}, path


def test_no_file_over_500_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in package_files() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


def test_importing_the_package_installs_no_global_hook():
    """The one-line error printers are installed by the commands (their main(), or the plugin module nerfstudio's
    commands load), never as a side effect of ``import s2nerf_ns``."""
    import subprocess
    import sys

    code = ("import sys; hook = sys.excepthook; import s2nerf_ns, s2nerf_ns.integration.model, s2nerf_ns.errors as e; "
            "print(sys.excepthook is hook, e._installed, e._tyro_context is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["True", "False", "True"], out.stderr[-2000:]
