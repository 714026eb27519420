"""EVALUATION (reads ground truth, never part of an attacker): image metrics, leakage scores, figures."""
