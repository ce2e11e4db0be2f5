"""What a task is: a dataset, a text-to-text template and the metrics it is scored by.

Every task renders a row as ``"<task> field: value field: value"`` (T5's text-to-text style,
which ATTEMPT inherits) and its output as a label word, a number or an answer span. A task is
data, not a subclass: the few tasks whose gold output is not a label word (STS-B's number,
SQuAD's spans) or that group rows (MultiRC) pass a small function instead of overriding methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Example:
    """One rendered row, ready for tokenisation and scoring."""

    task: str
    input: str
    """Rendered text-to-text input, e.g. ``"rte sentence1: ... sentence2: ..."``."""
    target: str
    """The gold output text, e.g. ``"not_entailment"``; ``answers[0]`` for span tasks."""
    label: int | None
    """The Hugging Face label index for label tasks; None for free-form output."""
    answers: tuple[str, ...] = ()
    """Every gold answer of a span task (scored by the best match)."""
    group: str | None = None
    """Rows scored together, e.g. a MultiRC question's answer options."""


@dataclass(frozen=True)
class Task:
    """One benchmark task. Adding a task is one ``Task(...)`` in a catalogue module."""

    name: str
    """Catalogue name and template prefix, e.g. ``"rte"``."""
    dataset: str
    """Hugging Face hub id, e.g. ``"glue"``; also the first folder under ``--data-dir``."""
    config: str | None
    """Hub config, e.g. ``"rte"``; None if the dataset has none (then no config folder)."""
    fields: tuple[str, ...]
    """Input fields in template order."""
    labels: tuple[str, ...] | None
    """Label words indexed by the Hugging Face label id; None for free-form output."""
    metrics: tuple[str, ...]
    """Names in :data:`attemptctl.metrics.METRICS`; the first is the primary metric."""
    max_length: int = 256
    train_split: str = "train"
    validation_split: str = "validation"
    dev_split: str | None = None
    """A dedicated dev split (MNLI: ``validation_mismatched``) used instead of carving one."""
    test_split: str | None = None
    """A dedicated test split (MNLI: ``validation_matched``)."""
    answers_of: Callable[[Row], tuple[str, ...]] | None = None
    """Gold outputs of a free-form row (the first is the target); required when labels is None."""
    group_of: Callable[[Row], str] | None = None
    """Key of the group a row is scored in (MultiRC's question)."""

    def __post_init__(self) -> None:
        # Catch catalogue mistakes at import, not in the middle of a training run.
        if not self.fields or not self.metrics:
            raise ValueError(f"task {self.name!r}: fields and metrics must not be empty")
        if self.labels is None and self.answers_of is None:
            raise ValueError(f"task {self.name!r}: a free-form task needs answers_of")

    @property
    def is_classification(self) -> bool:
        return self.labels is not None

    def render(self, row: Row) -> Example:
        """Render one dataset row; KeyError for a missing field, ValueError for a bad value."""
        parts = [self.name]
        for field in self.fields:
            parts.append(f"{field}: {_text(row[field], field)}")
        text = " ".join(parts)
        group = self.group_of(row) if self.group_of is not None else None
        if self.labels is not None:
            label = _label_index(row["label"], len(self.labels))
            return Example(self.name, text, self.labels[label], label, group=group)
        answers = tuple(self.answers_of(row))  # type: ignore[misc]  # checked in __post_init__
        if not answers:
            raise ValueError("row has no gold answer")
        return Example(self.name, text, answers[0], None, answers=answers, group=group)


def _text(value: Any, field: str) -> str:
    # A null or nested value would render as "None" or a dict repr and train on garbage silently.
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"field {field!r} must be text, got {type(value).__name__}")
    return str(value).strip()


def _label_index(value: Any, n_labels: int) -> int:
    # bool is an int subclass; a JSON true/false label means a wrong schema, not label 1/0.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"label must be an integer class index, got {value!r}")
    if not 0 <= value < n_labels:
        raise ValueError(f"label {value} out of range 0..{n_labels - 1}")
    return value
