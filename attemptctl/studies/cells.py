"""What a methods study is: its methods, its cells, its options, and the registry's versions tagged
with its name. Torch-free."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from attemptctl.errors import ConfigError
from attemptctl.formatting import repeated
from attemptctl.method.variants import DEFAULT_RECIPE, RECIPES, TARGET_COLUMN, TARGET_INITS, variant_of  # noqa: F401  (TARGET_COLUMN: the studies' column name)
from attemptctl.tasks import get_task
from registry import PromptRecord, Registry

#: method -> (variant of ``target train``, label in the table); in the table's row order
METHODS = {"pt": ("pt", "PT"), "spot": ("spot", "SPoT"), "attempt": ("attempt", "ATTEMPT"),
           "attempt-mt": ("attempt", "ATTEMPT-MT"), "no-target": ("no-target", "no target prompt"),
           "uniform": ("uniform", "uniform attention"), "single": ("attempt", "single source")}
ATTENTION_METHODS = ("attempt", "attempt-mt")
"""Methods whose mean test attention is stored with the cell (the heatmap; ``single`` reads attempt's)."""
BUDGET_KEYS = ("steps", "batch_size", "prompt_length", "rows", "labels", "label_words")
PER_TARGET_BUDGET = ("rows", "label_words")
"""Budget keys compared among the cells of one target only (each target has its own data and answer words)."""
UNCOMPARED_OPTIONS = ("seed", "shots", "checkpoint_every")
"""Training options that may differ between the cells of one study: the rest must be equal."""
SCALED_OPTIONS = ("max_steps", "warmup_steps", "eval_every")
"""Step counts a multi-task run multiplies by its number of targets (see :func:`run_options`)."""
MIXING_METHODS = tuple(m for m, (variant, _) in METHODS.items() if variant_of(variant).mixes_sources)
"""Methods whose target prompt starts at ``target_init`` (PT and SPoT have starts of their own)."""
UNIFORM_SAMPLING = 1e6
"""attempt-mt's sampling temperature: size^(1/1e6) is 1 for every task, so the shares are equal."""


@dataclass(frozen=True, order=True)
class Cell:
    """One trained and evaluated version: a method on a target for one seed and shot count."""

    method: str
    target: str
    seed: int
    shots: int | None = None

    @property
    def tag(self) -> dict:
        return {"method": self.method, "target": self.target, "seed": self.seed, "shots": self.shots}

    def __str__(self) -> str:
        return f"{self.method} · {self.target} · seed {self.seed}" + (f" · {self.shots} shots" if self.shots else "")


def default_name(targets: Sequence[str]) -> str:
    return "methods-" + "+".join(targets)


def _names(values: Sequence[str], what: str) -> tuple[str, ...]:
    names = tuple(v for v in values if v)
    twice = repeated(names)
    if twice:
        raise ConfigError(f"{what} {', '.join(twice)} is listed twice; give each once")
    return names


@dataclass(frozen=True)
class MethodsStudyConfig:
    """What ``study methods`` trains: every method on every target, for every seed and shot count."""

    targets: tuple[str, ...]
    """Target tasks, e.g. ``("rte", "mrpc", "cb")``; the table's columns."""
    sources: tuple[str, ...] = ()
    """Source prompts (NAME or NAME@V) every mixing method mixes and SPoT picks from."""
    methods: tuple[str, ...] = tuple(METHODS)
    seeds: tuple[int, ...] = (42,)
    shots: tuple[int | None, ...] = (None,)
    """Few-shot K rows per class per cell; None: the full (limited) training set."""
    name: str | None = None
    """The study's tag; None: ``methods-`` and the targets joined by ``+``."""
    preset: str = "cpu"
    overrides: Mapping = field(default_factory=dict)
    """Training options shared by every cell, named like TrainConfig's fields (None: not given)."""
    single_source: str | None = None
    """``single``: this source for every target instead of the attempt cell's most attended one."""
    attn_prior: str | None = None
    """Initialise G of the attention methods from this attention prior."""
    target_init: str | None = None
    """Where the mixing methods' target prompt starts (``target train --init``): auto (MNLI's prompt for a
    classification target, as the paper), vocab, zeros, best-source (the source that scores best on the
    target's dev rows) or source:NAME; None: the recipe's. PT starts from vocabulary, SPoT from its chosen
    source."""
    recipe: str = DEFAULT_RECIPE
    """How the mixing methods train (``target train --recipe``); PT and SPoT keep the preset's rate."""

    def __post_init__(self) -> None:
        if not self.targets:
            raise ConfigError("give the target tasks, e.g. `study methods rte,mrpc,cb`")
        _names(self.targets, "target")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ConfigError(f"unknown method '{(unknown or [''])[0]}'; choose from {', '.join(METHODS)}")
        _names(self.methods, "method")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("give each seed once, e.g. --seeds 1,2,3")
        if not self.shots or len(set(self.shots)) != len(self.shots) or any(k is not None and k < 1 for k in self.shots):
            raise ConfigError("--shots takes distinct positive counts, e.g. --shots 4,16,32")
        if any(m != "pt" and not (m == "single" and self.single_source) for m in self.methods) and not self.sources:
            raise ConfigError("every method but pt uses source prompts; give them with --sources a,b")
        if self.single_source and "single" not in self.methods:
            raise ConfigError("--single-source names the source of the `single` method; add it to --methods")
        for target in self.targets:
            get_task(target)  # an unknown task fails here, before anything trains
        names = [ref.split("@")[0] for ref in self.sources]
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe '{self.recipe}'; choose one of {', '.join(RECIPES)}")
        init = self.mixing_init
        if init not in TARGET_INITS and not (init.startswith("source:") and init[7:] in names):
            raise ConfigError(f"unknown --target-init '{init}'; use {', '.join(TARGET_INITS)} or "
                              f"source:NAME with NAME one of the sources ({', '.join(names) or 'none given'})")

    @property
    def mixing_init(self) -> str:
        """Where the mixing methods' target prompts start: as given, else the recipe's start."""
        return self.target_init or RECIPES[self.recipe]["init"]

    @property
    def study(self) -> str:
        return self.name or default_name(self.targets)

    def cells(self) -> list[Cell]:
        """Every cell in training order: an attempt cell before the single cell that reads it."""
        return [Cell(method, target, seed, shots) for shots in self.shots for seed in self.seeds
                for method in METHODS if method in self.methods for target in self.targets]


def study_records(registry: Registry, name: str) -> list[PromptRecord]:
    """Every target version tagged with study ``name``, oldest first."""
    records = [r for r in registry.list(kind="target") if (r.config.get("study") or {}).get("name") == name]
    return sorted(records, key=lambda r: r.created_at)


def study_names(registry: Registry) -> list[str]:
    return sorted({r.config["study"]["name"] for r in registry.list(kind="target")
                   if isinstance(r.config.get("study"), Mapping) and "name" in r.config["study"]})


def cell_of(record: PromptRecord) -> Cell:
    tag = record.config["study"]
    return Cell(tag["method"], tag["target"], int(tag["seed"]), tag.get("shots"))


def test_evaluation(registry: Registry, record: PromptRecord):
    return next((e for e in registry.evaluations("target", record.ref) if e.split == "test"), None)


def finished_cells(registry: Registry, records: Sequence[PromptRecord]) -> dict[Cell, tuple[PromptRecord, object]]:
    """Cell -> (latest finished record, its test evaluation). Interrupted or unevaluated versions don't count."""
    done: dict[Cell, tuple[PromptRecord, object]] = {}
    for record in records:  # oldest first: a later version of a cell replaces an earlier one
        if record.metrics.get("interrupted"):
            continue
        evaluation = test_evaluation(registry, record)
        if evaluation is not None:
            done[cell_of(record)] = (record, evaluation)
    return done


def attention_key(record: PromptRecord) -> str:
    return f"study-attention/{record.ref}/{record.sha256[:16]}"


def stored_attention(registry: Registry, record: PromptRecord) -> dict[str, float] | None:
    payload = registry.get_cache(attention_key(record))
    return None if payload is None else json.loads(payload)
