"""Configuration as structure (issue 27): the server's architecture written once (``ServerFieldConfig``), configs not
changed after they are built outside the trainer's documented hand-over, sized configs built so their checks run,
the attack's paper settings as a named config."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import List, Set, Tuple, get_origin, get_type_hints

import pytest
import torch

from nerfstudio.data.scene_box import SceneBox

from s2nerf_ns.attacks.surrogate import PAPER, SurrogateAttackConfig
from s2nerf_ns.bench.common import Preset, sized_config
from s2nerf_ns.errors import InputError
from s2nerf_ns.integration.methods import method_config
from s2nerf_ns.integration.model import SplitNerfModelConfig
from s2nerf_ns.protocol.server import ServerFieldConfig, ServerSide, arch_fields
from s2nerf_ns.transport.client import remote_arch
from s2nerf_ns.transport.wire import ARCH_INT_LIMITS, WireError, check_arch

PACKAGE = Path(__file__).resolve().parents[1] / "s2nerf_ns"
CONFIGISH = re.compile(r"config|cfg", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------- (a) no mutation
class ConfigMutations(ast.NodeVisitor):
    """Assignments to an attribute (or item) of a config, and ``setattr`` on one, with the function they are in.

    A config is an expression whose chain of names (``config.pipeline.model``, ``self.config``, ``floor_cfg``)
    contains ``config`` or ``cfg``, or a local name bound to such a chain (``model = config.pipeline.model``;
    aliases of aliases too), in the same function."""

    def __init__(self) -> None:
        self.found: List[Tuple[str, str]] = []  # (function, what)
        self.scopes: List[Tuple[str, Set[str]]] = [("<module>", set())]

    def _chain(self, node: ast.AST) -> Tuple[str, List[str]]:
        names: List[str] = []
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
            if isinstance(node, ast.Attribute):
                names.append(node.attr)
            node = node.func if isinstance(node, ast.Call) else node.value
        root = node.id if isinstance(node, ast.Name) else ""
        return root, [root, *reversed(names)]

    def _is_config(self, node: ast.AST) -> bool:
        root, chain = self._chain(node)
        return bool(root) and (root in self.scopes[-1][1] or any(CONFIGISH.search(n) for n in chain))

    def visit_FunctionDef(self, node) -> None:
        self.scopes.append((node.name, set()))
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def _targets(self, targets) -> None:
        for target in targets:
            for t in target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]:
                if isinstance(t, (ast.Attribute, ast.Subscript)) and self._is_config(t.value):
                    self.found.append((self.scopes[-1][0], ast.unparse(t)))

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        self._targets(node.targets)
        if isinstance(node.value, (ast.Attribute, ast.Subscript)) and self._is_config(node.value):
            self.scopes[-1][1].update(t.id for t in node.targets if isinstance(t, ast.Name))

    def visit_AugAssign(self, node) -> None:
        self.generic_visit(node)
        self._targets([node.target])

    visit_AnnAssign = visit_AugAssign

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        is_setattr = (isinstance(func, ast.Name) and func.id == "setattr") or (
            isinstance(func, ast.Attribute) and func.attr == "__setattr__")
        if is_setattr and node.args and self._is_config(node.args[0]):
            self.found.append((self.scopes[-1][0], ast.unparse(node)))


def config_mutations(source: str) -> List[Tuple[str, str]]:
    visitor = ConfigMutations()
    visitor.visit(ast.parse(source))
    return visitor.found


ALLOWED = {
    ("integration/trainer.py", "setup"): "the documented hand-over of the run's seed, length and server schedule",
    ("integration/trainer.py", "train"): "the same hand-over: nerfstudio counts the steps after a checkpoint",
    ("integration/methods.py", "remote_trainer"): "the registry's default address, set after the default config is "
                                                  "built so that the token-file check runs on the command line's",
}
"""(file, function) -> why. Only the trainer changes a run's config."""


def test_the_scan_finds_what_it_looks_for():
    source = """
def f(config, cfg, model):
    config.max_num_iterations = 3
    setattr(cfg, "a", 1)
    m = config.pipeline.model
    n = m.defense
    n.kind, other = "none", 1
    self.config.x += 1
    model.x = 2
    self.step = 1
    self.config = config
"""
    found = [what for _, what in config_mutations(source)]
    assert found == ["config.max_num_iterations", "setattr(cfg, 'a', 1)", "n.kind", "self.config.x"], found


def test_no_config_is_changed_after_it_is_built_outside_the_trainer():
    seen = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        for function, what in config_mutations(path.read_text()):
            seen.setdefault((rel, function), []).append(what)
    bad = {k: v for k, v in seen.items() if k not in ALLOWED}
    assert not bad, bad
    assert set(ALLOWED) <= set(seen), "an allowed place no longer changes a config: remove it from ALLOWED"


# ------------------------------------------------------------------------------ (b) the architecture, written once
def test_the_server_architecture_is_declared_once():
    names = set(arch_fields())
    assert {"num_levels", "cut_depth", "hidden_dim", "num_samples", "near_plane", "sampler"} <= names
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Config") and node.name != "ServerFieldConfig":
                declared = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)
                            and isinstance(s.target, ast.Name)}
                assert not declared & names, f"{rel}: {node.name} declares {sorted(declared & names)}"
            keys = (node.keys if isinstance(node, ast.Dict) else node.elts
                    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [])
            spelled = [k.value for k in keys if isinstance(k, ast.Constant) and k.value in names]
            if rel != "protocol/server.py" and len(spelled) > 4 and rel != "transport/wire.py":
                pytest.fail(f"{rel}:{node.lineno} spells the architecture's field names again: {spelled}")
    hints = get_type_hints(ServerFieldConfig)
    ints = {n for n in names if hints[n] is int or get_origin(hints[n]) is tuple}
    assert set(ARCH_INT_LIMITS) == ints  # the wire's bounds: one per int of the dataclass, no other name


def test_hello_carries_the_config_and_the_server_rebuilds_the_same_fields():
    server = ServerFieldConfig(num_levels=4, max_res=64, log2_hashmap_size=12, num_samples=8, hidden_dim=16,
                               cut_depth=1, num_density_layers=3, near_plane=0.05)
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    arch = remote_arch(server, box)
    assert set(arch) == set(arch_fields()) | {"aabb"}
    checked = check_arch(arch)
    assert {k: v for k, v in checked.items() if k != "aabb"} == server.to_dict()
    rebuilt = ServerFieldConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in checked.items()
                                   if k != "aabb"}).setup(scene_box=SceneBox(aabb=torch.tensor(checked["aabb"])))
    here = server.setup(scene_box=box)
    assert isinstance(rebuilt, ServerSide)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in here.state_dict().items()}
    for name in arch_fields():  # every field is required: the key list is the dataclass's, not a copy
        with pytest.raises(WireError, match=f"arch.{name} "):
            check_arch({k: v for k, v in arch.items() if k != name})
    with pytest.raises(WireError, match="uniform sampler only"):
        check_arch({**arch, "sampler": "proposal"})
    assert check_arch({**arch, "implementation": "tcnn"})["implementation"] == "torch"  # the server's own choice


def test_flags_of_the_nested_config_keep_their_names():
    import tyro

    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    config = tyro.cli(AnnotatedBaseConfigUnion, args=["s2nerf", "--pipeline.model.num-levels", "3",
                                                      "--pipeline.model.num-proposal-samples", "32", "64",
                                                      "--pipeline.model.sh-levels", "2"])
    model = config.pipeline.model
    assert (model.server.num_levels, model.server.num_proposal_samples, model.sh_levels) == (3, (32, 64), 2)
    with pytest.raises(InputError, match=r"^--pipeline.model.num-levels 0: must be a positive number$"):
        SplitNerfModelConfig(server=ServerFieldConfig(num_levels=0))


def test_a_config_yml_saved_with_the_flat_fields_still_loads():
    import yaml

    config = SplitNerfModelConfig(server=ServerFieldConfig(num_levels=3, cut_depth=0, near_plane=0.1), sh_levels=2)
    new = yaml.dump(config)
    assert yaml.load(new, Loader=yaml.Loader).server == config.server
    lines, old, inside = new.splitlines(), [], False  # the same config as written before: server's fields flat
    for line in lines:
        if line.startswith("server: !!python/object:s2nerf_ns.protocol.server.ServerFieldConfig"):
            inside = True
        elif inside and line.startswith("  "):
            old += [] if line.strip().startswith("_target:") else [line[2:]]
        else:
            inside = False
            old.append(line)
    assert "num_levels: 3" in old and not any(line.startswith("server:") for line in old)
    model = yaml.load("\n".join(old), Loader=yaml.Loader)
    assert model.server == config.server and model.sh_levels == 2
    assert not set(arch_fields()) & set(vars(model))


# ------------------------------------------------------------------------------------ (c) sized configs, checked
PRESET = Preset(resolution=24, spp=2, num_views=16, steps=5, rays=64, num_samples=16, num_levels=4, max_res=64,
                log2_hashmap_size=12, post_training_steps=0, replay_steps=0)


def test_a_sized_config_is_built_by_replace_and_runs_the_checks(tmp_path):
    base = method_config("s2nerf-lite")
    config = sized_config(base, PRESET, "office", tmp_path, "run", hidden_dim=8, client_appearance=True, max_res=32)
    model = config.pipeline.model
    assert (model.server.num_levels, model.server.max_res, model.server.hidden_dim, model.server.cut_depth,
            model.client_appearance) == (4, 32, 8, 2, True)  # the preset's sizes, a field given winning over them
    assert base.pipeline.model.server.num_levels == 16 and base.pipeline.model.server.hidden_dim == 64  # a copy
    assert config.optimizers["server_fields"]["scheduler"].max_steps == 5
    assert base.optimizers["server_fields"]["scheduler"].max_steps != 5
    with pytest.raises(InputError, match="--pipeline.model.num-levels 0"):
        sized_config(base, dataclasses.replace(PRESET, num_levels=0), "office", tmp_path, "run")
    with pytest.raises(InputError, match="--pipeline.model.cut-depth 3 is impossible"):
        sized_config(base, PRESET, "office", tmp_path, "run", cut_depth=3)
    with pytest.raises(InputError, match="--pipeline.model.server-token-file is needed"):
        sized_config(method_config("s2nerf-remote"), PRESET, "office", tmp_path, "run")


# --------------------------------------------------------------------------------- presets as named configs
def test_the_paper_attack_is_a_named_config_and_keeps_what_is_given():
    paper = SurrogateAttackConfig.paper()
    assert {k: getattr(paper, k) for k in PAPER} == PAPER
    assert SurrogateAttackConfig.paper(lambda_g=0.5).lambda_g == 0.5
    from_flag = SurrogateAttackConfig(preset="paper", lambda_g=0.0)  # --pipeline.attack.preset paper + a flag
    assert from_flag.lambda_g == 0.0 and from_flag.dummy_update == PAPER["dummy_update"]
    assert dataclasses.replace(SurrogateAttackConfig(preset="paper"), lambda_g=0.0).lambda_g == 0.0
    assert {f for f in PAPER if getattr(SurrogateAttackConfig(), f) == PAPER[f]} <= {
        "attacker_steps_per_victim_step", "replay_steps"}  # the paper differs from the engineered defaults
