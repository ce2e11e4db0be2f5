"""`eval`: score registered prompts from ONE loaded backbone, and store each result with its version.

Every prompt to score becomes a slot of a :class:`~attemptctl.method.mixture.PromptBank`; rows of all
slots share batches, each row with its own instance prompt (attention: :mod:`attemptctl.workflows.attn`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from attemptctl.engine.evaluate import DECODES, DEFAULT_MAX_NEW_TOKENS, evaluate
from attemptctl.errors import ConfigError
from attemptctl.method.lm import DEFAULT_SCORING, SCORINGS
from attemptctl.method.mixture import PromptBank, PromptMixture
from attemptctl.tasks.base import Example, Task
from attemptctl.tasks.metrics import ConstantAnswer, constant_answer
from attemptctl.workflows import payloads
from attemptctl.workflows.workspace import SPLITS, Workspace, select_records, split_examples
from registry import PromptRecord, Registry


@dataclass(frozen=True)
class EvalRow:
    """One evaluated prompt version."""

    record: PromptRecord
    split: str
    metrics: dict[str, float]
    examples: int
    seconds: float
    constant: ConstantAnswer | None = None
    """The best single label answered for every one of the same rows (None for free-form tasks)."""
    task: Task | None = field(default=None, repr=False, compare=False)
    """The task as scored (its label format and words)."""
    rows: tuple[Example, ...] = field(default=(), repr=False, compare=False)
    """The rows scored, in order (what a study keeps with ``predictions`` for its paired intervals)."""
    predictions: tuple[str, ...] = field(default=(), repr=False, compare=False)
    """The answer to each of ``rows``."""


def _mixtures(registry: Registry, records: Sequence[PromptRecord], backbone) -> dict[str, tuple[PromptMixture, str]]:
    """A mixture per training run (targets sharing G and sources share one); slot = prompt ref."""
    groups: dict[str, list[PromptRecord]] = defaultdict(list)
    for record in records:
        key = f"attention:{record.attention}:{record.sources}" if record.attention else f"{record.kind}:{record.ref}"
        # Two versions of one task cannot share a mixture (its tasks are names): split them.
        while any(r.name == record.name for r in groups[key]):
            key += "'"
        groups[key].append(record)
    slots = {}
    for group in groups.values():
        mixture = payloads.load_mixture(registry, group, backbone)
        slots.update({record.ref: (mixture, record.name) for record in group})
    return slots


def _banks(slots: Mapping[str, tuple[PromptMixture, str]]) -> list[PromptBank]:
    """One bank per prompt length: rows of equal-length prompts share batches."""
    by_length: dict[int, dict] = defaultdict(dict)
    for ref, (mixture, task) in slots.items():
        by_length[mixture.prompts[0].shape[0]][ref] = (mixture, task)
    return [PromptBank(group) for group in by_length.values()]


def generation_limit(record: PromptRecord) -> int:
    """New tokens a free-form answer of ``record`` may take: the limit its training derived from the
    task's training answers; older records get the default."""
    return record.metrics.get("max_new_tokens", {}).get(record.task, DEFAULT_MAX_NEW_TOKENS)


def compare_refs(registry: Registry, names: Sequence[str]) -> list[str]:
    """``--compare``: every version of each bare name (``boolq`` -> boolq@1, boolq@2, …), pinned refs kept."""
    refs: list[str] = []
    for name in names:
        if "@" in name:
            refs.append(name)
            continue
        record = registry.find(name, kinds=("target", "source"))
        refs += [r.ref for r in registry.list(kind=record.kind, name=record.name)]
    return refs


def checked_decoding(decode: str, scoring: str | None) -> str:
    """Refuse an unknown ``--decode`` or ``--label-scoring`` in one line; the label scoring to use."""
    if decode not in DECODES:
        raise ConfigError(f"unknown decode '{decode}'; choose rank or generate")
    scoring = scoring or DEFAULT_SCORING
    if scoring not in SCORINGS:
        raise ConfigError(f"unknown label scoring '{scoring}'; choose one of {', '.join(SCORINGS)}")
    return scoring


def evaluate_prompts(ws: Workspace, refs: Sequence[str] | None = None, *, split: str = "test", decode: str = "rank",
                     limit: int | None = None, batch_size: int = 16, compare: bool = False,
                     on_batch=None, scoring: str | None = None) -> list[EvalRow]:
    """Evaluate prompts (default: every latest target) in shared batches; store each result with its version.

    Each row carries its task's constant answer on the same rows, the floor to read its score against.
    Only results of the default label scoring are stored (what training selected on and studies compare);
    another ``scoring`` is printed, not stored."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; choose dev or test")
    scoring = checked_decoding(decode, scoring)
    registry = ws.registry()
    if compare and not refs:
        raise ConfigError("--compare lays versions of named tasks side by side; name them, e.g. `eval boolq --compare`")
    records = select_records(registry, compare_refs(registry, refs) if compare else refs)
    data = {r.ref: split_examples(ws, r, split, limit) for r in records}
    backbone = ws.load_backbone(ws.backbone or records[0].backbone)
    results = {}
    for bank in _banks(_mixtures(registry, records, backbone)):
        results.update(evaluate(backbone, bank, {ref: data[ref][1] for ref in bank.tasks},
                                {ref: data[ref][0] for ref in bank.tasks},
                                max_length={r.ref: r.config.get("max_length") for r in records},
                                max_new_tokens={r.ref: generation_limit(r) for r in records},
                                batch_size=batch_size, decode=decode, on_batch=on_batch, scoring=scoring))
    rows = []
    for record in records:
        result = results[record.ref]
        if scoring == DEFAULT_SCORING:
            registry.add_evaluation(record.kind, record.ref, split, result.metrics, result.examples, result.seconds)
        task, examples = data[record.ref]
        rows.append(EvalRow(record, split, result.metrics, result.examples, result.seconds,
                            constant_answer(task, examples), task=task, rows=tuple(examples),
                            predictions=tuple(result.predictions)))
    return rows


