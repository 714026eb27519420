"""s2nerf-ns: S²NeRF (split NeRF training, surrogate-model attacks, gradient-noise defense) for nerfstudio."""

from s2nerf_ns import errors, warnings_filter
from s2nerf_ns.compat import register_numpy_safe_globals

register_numpy_safe_globals()
warnings_filter.install()  # known third-party deprecation warnings (before nerfstudio's modules load theirs)
errors.install()  # bad inputs (config values, data files, --load-config) print one line, not a traceback

__version__ = "0.1.0"
