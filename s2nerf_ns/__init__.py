"""s2nerf-ns: S²NeRF (split NeRF training, surrogate-model attacks, gradient-noise defense) for nerfstudio."""

from s2nerf_ns.compat import register_numpy_safe_globals

register_numpy_safe_globals()

__version__ = "0.1.0"
