"""Silence known third-party deprecation warnings that say nothing to the user of a run.

Each filter names the warning's category and the start of its message (and, where that is not specific
enough, the module it is raised from); nothing is ignored globally. A run started with ``-W`` or
``PYTHONWARNINGS`` keeps exactly the filters asked for. Installed when the package is imported, i.e. when a
nerfstudio command loads the plugins, and first thing by this project's own commands.

``ns-train``, ``ns-eval`` and the other nerfstudio commands import ``nerfstudio.cameras`` before they load
any plugin, so the first ``torch.jit.script`` FutureWarning has been printed by then: only those commands
still show that one line.
"""

from __future__ import annotations

import sys
import warnings

KNOWN = (
    # torch 2.5+: nerfstudio 1.1.5 still decorates with torch.jit.script and torch.cuda.amp.custom_fwd/bwd
    (FutureWarning, r"`torch\.jit\.script` is deprecated", ""),
    (FutureWarning, r"`torch\.cuda\.amp\.custom_(fwd|bwd)\(args\.\.\.\)` is deprecated", ""),
    (FutureWarning, r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated", ""),
    (FutureWarning, r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated", ""),
    # nerfstudio's cameras.py indexes with a list of tensors (deprecated in torch 2.9)
    (UserWarning, r"Using a non-tuple sequence for multidimensional indexing is deprecated", r"nerfstudio\."),
    # nerfstudio's writer calls float() on its scalars
    (UserWarning, r"Converting a tensor with requires_grad=True to a scalar", r"nerfstudio\.utils\.writer"),
    # nerfstudio's CacheDataloader asks for more workers than a small machine has: only a speed hint
    (UserWarning, r"This DataLoader will create \d+ worker processes in total", r"torch\.utils\.data"),
    # torchmetrics' functional re-exports, imported by nerfstudio
    (FutureWarning, r"Importing `\w+` from `torchmetrics\.functional` was deprecated", ""),
    # viser (the viewer) imports websockets' legacy API
    (DeprecationWarning, r"websockets\.(legacy|connection|server|client)", ""),
    (DeprecationWarning, r"websockets\.\w+ (is deprecated|was renamed)", ""),
    (DeprecationWarning, r"remove second argument of ws_handler", ""),
)
"""(category, message regex, module regex) of every warning filtered."""


def install() -> None:
    """Ignore exactly the known warnings, unless the user chose warning filters with -W / PYTHONWARNINGS."""
    if sys.warnoptions:
        return
    for category, message, module in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
