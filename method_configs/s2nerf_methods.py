"""Method specifications registered with nerfstudio (``ns-train <name>``); built in
:mod:`s2nerf_ns.integration.methods`, which documents each method."""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from s2nerf_ns import errors
from s2nerf_ns.integration.methods import METHODS, method_config

# nerfstudio's commands (ns-train, ns-eval, ns-render, the viewer) load this module through the plugin registry
# before they parse their command line: the one place where they get the one-line error printers.
errors.install()


def _spec(name: str) -> MethodSpecification:
    return MethodSpecification(config=method_config(name), description=METHODS[name][1])


splitnerf = _spec("splitnerf")
s2nerf = _spec("s2nerf")
s2nerf_central = _spec("s2nerf-central")
s2nerf_lite = _spec("s2nerf-lite")
s2nerf_plus = _spec("s2nerf-plus")
splitnerf_sma = _spec("splitnerf-sma")
s2nerf_sma = _spec("s2nerf-sma")
splitnerf_ssma = _spec("splitnerf-ssma")
s2nerf_ssma = _spec("s2nerf-ssma")
splitnerf_remote = _spec("splitnerf-remote")
s2nerf_remote = _spec("s2nerf-remote")
