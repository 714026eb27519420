"""The trust boundary as import rules, read from the source (not by convention): who may import what, the rooms
as floors with no upward import, no import cycle between files, no private helper imported across modules."""

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


# ------------------------------------------------------------------------------------------------ layering
FLOORS = (
    ("errors", "compat", "warnings_filter"),  # the package's own plumbing
    ("__init__",),  # the package's face (Python runs it before any submodule): it imports only the plumbing
    ("defenses", "scenes"),
    ("protocol",),  # the split: server part, channel, client head (knows the defenses)
    ("attacks",),  # the curious server: only what crosses the channel
    ("evaluation", "transport"),  # the evaluator (ground truth) and the two-process wire know nothing of each other
    ("data",),  # nerfstudio dataparsers (their checks use the evaluation's minimum image size)
    ("integration",),  # nerfstudio model, pipelines, trainer: where the rooms meet
    ("bench",),  # benchmarks and reports over whole runs
)
"""The package's rooms, bottom to top: a module imports only rooms on a lower floor (and its own room)."""
FLOOR = {room: i for i, rooms in enumerate(FLOORS) for room in rooms}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    """``s2nerf_ns.attacks.pose.camera`` -> ``attacks``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_graph(package: Path = PACKAGE) -> dict:
    """File -> the files of the package it imports (every import, top level or inside functions), by module name:
    ``from a.b import c`` names the file ``a/b/c.py`` when it exists, else ``a/b.py`` (or ``a/b/__init__.py``);
    ``import a.b`` names ``a/b``."""
    modules = {module_name(p, package): p for p in sorted(package.rglob("*.py"))}

    def file_of(dotted: str):
        parts = dotted.split(".")
        return next((".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in modules), None)

    graph = {}
    for name, path in modules.items():
        imported = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported += [f"{node.module}.{alias.name}" for alias in node.names]
        graph[name] = {f for f in map(file_of, imported) if f is not None and f != name}
    return graph


def upward_imports(package: Path = PACKAGE) -> list:
    """(importer, imported) pairs where a module imports a room on its own floor (another room) or above."""
    bad = []
    for name, targets in import_graph(package).items():
        mine = room_of(name)
        for target in targets:
            theirs = room_of(target)
            if theirs != mine and FLOOR[theirs] >= FLOOR[mine]:
                bad.append((name, target))
    return sorted(bad)


def import_cycles(package: Path = PACKAGE) -> list:
    """Strongly connected components of more than one file (Tarjan), each sorted."""
    graph = import_graph(package)
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(out)


def test_every_room_has_a_floor():
    rooms = {room_of(name) for name in import_graph()}
    assert rooms <= set(FLOOR), f"rooms without a floor in FLOORS: {sorted(rooms - set(FLOOR))}"


def test_no_module_imports_a_room_above_its_own():
    assert not upward_imports(), "\n".join(f"{a} imports {b}" for a, b in upward_imports())


def test_no_import_cycle_between_files():
    assert not import_cycles(), import_cycles()


def test_transport_knows_no_benchmark_or_pipeline():
    """The server process imports the wire, the protocol and the attacks: never a benchmark or nerfstudio's side."""
    for path in package_files("transport"):
        bad = {m for m in imports_of(path) if m.startswith(("s2nerf_ns.bench", "s2nerf_ns.integration"))}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_pose_search_is_one_package_split_by_meaning():
    assert (PACKAGE / "attacks" / "pose" / "__init__.py").exists()
    assert not sorted((PACKAGE / "attacks").glob("pose*.py")), "pose modules outside attacks/pose/"


def test_no_module_imports_another_modules_private_names():
    """Private helpers stay private: a caller imports a public name from the module it lives in (no re-exports)."""
    bad = []
    for path in package_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("s2nerf_ns"):
                bad += [f"{path.relative_to(PACKAGE)}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and a.name != "__version__"]
    assert not bad, bad


def test_the_layering_rules_see_an_upward_import_and_a_function_level_cycle(tmp_path):
    """The two graph rules on a made-up package holding one violation of each (as this package held before)."""
    files = {"__init__.py": "", "transport/__init__.py": "", "bench/__init__.py": "", "data/__init__.py": "",
             "transport/bench.py": "from s2nerf_ns.bench.common import Preset\n", "bench/common.py": "Preset = 1\n",
             "data/checks.py": "def check():\n    from s2nerf_ns.data.rooms import Rooms\n",
             "data/rooms.py": "from s2nerf_ns.data.checks import check\n\nRooms = 1\n"}
    for name, text in files.items():
        (tmp_path / "s2nerf_ns" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "s2nerf_ns" / name).write_text(text)
    package = tmp_path / "s2nerf_ns"
    assert upward_imports(package) == [("s2nerf_ns.transport.bench", "s2nerf_ns.bench.common")]
    assert import_cycles(package) == [["s2nerf_ns.data.checks", "s2nerf_ns.data.rooms"]]
