"""Variant names as users give them and the registry records them (torch-free, for fast paths)."""

#: recorded variant -> how the prompt mixture combines prompts (see attemptctl.method.mixture)
RECORDED_VARIANTS = {"attempt": "attempt", "uniform": "uniform", "no-target": "no-target", "pt": "prompt-tuning",
                     "spot": "prompt-tuning", "prompt-tuning": "prompt-tuning"}


TARGET_COLUMN = "(target)"
"""The attention column of a target's own prompt (a_{t+1}, shown before the +1), beside its sources' refs."""


def mixes_sources(variant: str) -> bool:
    """Whether a recorded variant mixes source prompts (and so has attention weights to show)."""
    return RECORDED_VARIANTS.get(variant, "prompt-tuning") != "prompt-tuning"
