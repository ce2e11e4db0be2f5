"""One :class:`Variant` record per method: what users name with ``--variant``, what the registry records,
and what each mixes. Every check of "does this variant have G / mix sources / add its target prompt"
reads it here (torch-free, for fast paths).

- ``attempt``: P_target + Σ a_j P_j, G over the sources and the target (the method);
- ``uniform``: P_target + (1/t) Σ_sources P_j (constant attention);
- ``no-target``: Σ a_j P_j with G over the sources only, no target prompt added;
- ``pt``, ``spot`` and ``prompt-tuning`` (recorded for sources): the task's own prompt, nothing mixed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """A method as users name it and the registry records it."""

    name: str
    mixing: str
    """How :class:`~attemptctl.method.mixture.PromptMixture` combines the prompts: the name of the mixing
    variant (``attempt``, ``uniform``, ``no-target`` or ``prompt-tuning``)."""
    selectable: bool = True
    """Whether ``target train --variant`` takes it (``prompt-tuning`` is what sources record)."""

    @property
    def mixes_sources(self) -> bool:
        """Whether it mixes source prompts (and so has attention weights to show)."""
        return self.mixing != "prompt-tuning"

    @property
    def has_attention(self) -> bool:
        """Whether it has an attention module G (that a prior can initialise)."""
        return self.mixing in ("attempt", "no-target")

    @property
    def adds_target(self) -> bool:
        """Whether the target's own prompt enters the instance prompt (all but ``no-target``)."""
        return self.mixing != "no-target"


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("attempt", "attempt"), Variant("uniform", "uniform"), Variant("no-target", "no-target"),
    Variant("pt", "prompt-tuning"), Variant("spot", "prompt-tuning"),
    Variant("prompt-tuning", "prompt-tuning", selectable=False))}
SELECTABLE = tuple(name for name, v in VARIANTS.items() if v.selectable)
"""What ``target train --variant`` accepts."""
MIXINGS = tuple(dict.fromkeys(v.mixing for v in VARIANTS.values()))
"""The ways a mixture combines prompts."""

TARGET_INITS = ("auto", "vocab", "zeros", "best-source")
"""Starts of a mixing variant's target prompt besides ``source:NAME`` (``target train --init``): auto (the
paper's: MNLI's prompt for classification, SQuAD's for QA), a random-vocabulary prompt, zeros, or the
source whose prompt alone scores best on the target's dev rows."""

TARGET_COLUMN = "(target)"
"""The attention column of a target's own prompt (a_{t+1}, shown before the +1), beside its sources' refs."""


def variant_of(name: str) -> Variant:
    """The record of a variant name; a name this version does not know reads as plain prompt tuning."""
    return VARIANTS.get(name) or VARIANTS["prompt-tuning"]


def mixes_sources(variant: str) -> bool:
    """Whether a recorded variant mixes source prompts (and so has attention weights to show)."""
    return variant_of(variant).mixes_sources
