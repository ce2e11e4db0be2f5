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

from attemptctl.errors import ConfigError


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


#: How a target that mixes sources trains its own prompt and G (``--recipe``). A preset sets sizes (prompt
#: and input lengths, batch, steps, rows); a recipe sets the method: where the target prompt starts
#: (``init``, see :data:`TARGET_INITS`) and the rates. An option the user
#: gives overrides both. Measurements behind each: docs/method.md.
RECIPES: dict[str, dict] = {
    # Chosen by measurement (issue 28): the target prompt starts at zero and trains slowly, so the instance
    # prompt is the mixture of sources and G, ten times faster than before, picks what transfers.
    "transfer": {"init": "zeros", "lr": 1e-3, "attn_lr": 0.1},
    # Asai et al. 2022 as published: the target starts from MNLI's prompt, prompts and G train at 0.3,
    # G's logits are divided by d·e^K of the raw max-pooled prompts, and its LayerNorm is frozen.
    "paper": {"init": "auto", "lr": 0.3, "attn_lr": 0.3, "attn_scale": "paper", "attn_pool": "max", "attn_norm": "frozen"},
    # attemptctl before the transfer recipe: the paper's start and prompt rate, G calibrated at 0.01.
    "v1": {"init": "auto", "lr": 0.3},
}
DEFAULT_RECIPE = "transfer"


def apply_recipe(recipe: str, overrides: dict | None) -> tuple[str, dict]:
    """A mixing target's start and training options: the recipe's, under what the user gave (None: not given)."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe '{recipe}'; choose one of {', '.join(RECIPES)}")
    settings = dict(RECIPES[recipe])
    init = settings.pop("init")
    return init, {**settings, **{k: v for k, v in (overrides or {}).items() if v is not None}}
