"""Compatibility fixes applied when the package is imported.

nerfstudio's learning-rate schedulers leave numpy scalars in checkpoints; torch >= 2.6 loads checkpoints
with ``weights_only=True`` and refuses them, so ``ns-eval`` / ``ns-render`` fail on any nerfstudio run.
We allow exactly the numpy scalar and dtype types (data, not code) as safe globals.
"""

from __future__ import annotations

import numpy as np
import torch


def numpy_safe_globals() -> list:
    """The numpy objects nerfstudio checkpoints contain: scalars (reconstructed through ``scalar``) and dtypes."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import scalar  # type: ignore
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_)]
    return [scalar, np.dtype, *dtypes]


def register_numpy_safe_globals() -> None:
    add = getattr(getattr(torch, "serialization", None), "add_safe_globals", None)
    if add is not None:  # torch < 2.4 has no weights_only default problem
        add(numpy_safe_globals())
