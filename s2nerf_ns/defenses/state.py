"""The defense's counters in the model's ``state_dict``: checkpoints (and so ``--load-dir`` and ``ns-eval``) keep
what the accountant and the schedule depend on.

:class:`Defense` keeps plain Python numbers (no device sync on the training path); this small module mirrors
them into ``int64`` buffers when a state dict is taken and back when one is loaded. The noise generators' states
are saved by the split trainer with its checkpoint (they only matter to a run that continues training).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from s2nerf_ns.defenses.defense import Defense

COUNTERS = ("releases", "rays_per_step", "schedule_steps")
"""releases / rays_per_step: the residual-noise accountant's counters; schedule_steps: the length the s2nerf noise
decays over (0: none)."""


class DefenseCounters(nn.Module):
    """Buffers ``releases``, ``rays_per_step``, ``schedule_steps`` mirroring a :class:`Defense`."""

    def __init__(self, defense: Defense) -> None:
        super().__init__()
        self._defense = [defense]  # a list: not a submodule, not a parameter
        for name in COUNTERS:
            self.register_buffer(name, torch.zeros((), dtype=torch.int64))
        self.loaded_schedule_steps: Optional[int] = None
        """The schedule length of the loaded checkpoint (None: nothing loaded, or a checkpoint without it)."""
        self.loaded = False
        """Whether a state dict with these counters was loaded."""
        self.register_state_dict_pre_hook(lambda module, prefix, keep_vars: module._mirror())
        self.register_load_state_dict_post_hook(lambda module, incompatible: module._restore(incompatible))

    @property
    def defense(self) -> Defense:
        return self._defense[0]

    def _mirror(self) -> None:
        d = self.defense
        for name in COUNTERS:
            getattr(self, name).fill_(int(getattr(d, name) or 0))

    def _restore(self, incompatible) -> None:
        missing = {key.rsplit(".", 1)[-1] for key in incompatible.missing_keys
                   if key.rsplit(".", 1)[-1] in COUNTERS}
        if missing:  # a checkpoint from before the counters were saved: keep the fresh defense's
            return
        self.defense.releases = int(self.releases)
        self.defense.rays_per_step = int(self.rays_per_step)
        self.loaded_schedule_steps = int(self.schedule_steps) or None
        self.loaded = True
