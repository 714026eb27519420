"""s2nerf-ns: S²NeRF (split NeRF training, surrogate-model attacks, gradient-noise defense) for nerfstudio."""

from s2nerf_ns import warnings_filter
from s2nerf_ns.compat import register_numpy_safe_globals

register_numpy_safe_globals()
warnings_filter.install()  # known third-party deprecation warnings (before nerfstudio's modules load theirs)
# The one-line error printers (sys.excepthook, tyro's parse-error hook) are installed by the commands: ours in their
# main(), nerfstudio's ns-* through the plugin module they load (method_configs/s2nerf_methods.py). Not here.

__version__ = "0.1.0"
