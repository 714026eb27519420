"""SERVER SIDE (attacker): the scene-aided phase's settings, spelled once. The in-process attack pipeline
(``--pipeline.*`` of ``splitnerf-ssma``) and the two-process server (``s2nerf-server --attack ssma``) both inherit
them, so a default or a help string cannot drift between the two (as inherited fields they come first in each
one's ``--help``). Plain values only (no torch, nothing of the package): the server's command line imports this
module even without ``--attack``, and a test keeps it that way."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SceneAidedSettings:
    """Leaked-photo fitting and pose estimation (the settings both front ends share)."""

    leak_rays_per_step: int = 1024
    """Scene-aided attack: leaked-photo rays per attacker step."""
    leak_weight: float = 1.0
    """Scene-aided attack: weight of the leaked-photo loss."""
    leak_lr: float = 1e-2
    """Scene-aided attack: learning rate of the surrogate's leaked-photo fitting."""
    leak_during_training: bool = True
    """Scene-aided attack with a known pose: fit the leak after every victim step too (not only after training)."""
    post_training_steps: int = 500
    """Scene-aided attack: attacker-only leaked-photo steps after the victim's last step (for the server: run_steps
    from Hello), on the final server fields."""
    post_training_replay_every: int = 0
    """Scene-aided attack: interleave one replayed gradient-matching step every N post-training steps (0: never;
    replayed gradient matching also pulls the surrogate towards the gray-ish dummies and was measured to hurt)."""
    pose_rounds: int = 3
    """Scene-aided attack, estimated pose: rounds of (refine the pose, then fit the surrogate to the leak at that
    pose)."""
    pose_refine_steps: int = 150
    """Scene-aided attack, estimated pose: iNeRF steps per round."""
    pose_fit_steps: int = 100
    """Scene-aided attack, estimated pose: surrogate fitting steps per round."""
