"""What a task is: a dataset, a text-to-text template and the metrics it is scored by.

Every task renders a row as ``"<task> field: value field: value"`` (T5's text-to-text style,
which ATTEMPT inherits) and its output as a label word, a number or an answer span. A task is
data, not a subclass: the few tasks that need more pass a small function instead of overriding
methods: ``answers_of`` for gold outputs that are not label words (STS-B, QA spans), ``group_of``
for rows scored together (MultiRC), ``row_map`` for T5's preprocessing before the template
(WSC's span marks, ReCoRD's passage) and ``row_filter`` for one dataset shared by several
tasks (MRQA's ``subset``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Row = Mapping[str, Any]

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


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
    cut: tuple[int, int] | None = field(default=None, compare=False)
    """Where ``input`` may be shortened when it is too long: the character span of its longest field's value
    (the premise, passage or context; never the hypothesis or question of a multi-field task). None: cut
    the end. Derived from ``input`` by rendering, so two examples equal in their text are equal."""


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
    """Names in :data:`attemptctl.tasks.metrics.METRICS`; the first is the primary metric."""
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
    label_field: str = "label"
    """The column holding the label (SciTail: ``gold_label``, WinoGrande: ``answer``)."""
    label_map: Mapping[str, int] | None = None
    """Raw label values to label indices, for datasets whose labels are strings (``"1"`` -> 0)."""
    row_map: Callable[[Row], Row] | None = None
    """T5-style preprocessing applied to a row before the template (must not change the label)."""
    row_filter: Callable[[Row], bool] | None = None
    """Keep only the rows it accepts (one MRQA subset of the shared ``mrqa`` dataset)."""
    template: str | None = None
    """A ``str.format`` template over ``fields`` replacing the T5 default (custom tasks)."""
    files: Mapping[str, str] | None = None
    """Split name -> local jsonl/csv path, used instead of the hub or ``--data-dir`` (custom tasks)."""
    origin: str = "built-in"
    """Where the declaration came from: ``built-in`` or a custom task's TOML path."""

    def __post_init__(self) -> None:
        # Catch catalogue mistakes at import, not in the middle of a training run.
        if not self.fields or not self.metrics:
            raise ValueError(f"task {self.name!r}: fields and metrics must not be empty")
        if self.labels is None and self.answers_of is None:
            raise ValueError(f"task {self.name!r}: a free-form task needs answers_of")
        if self.template is not None:
            unknown = set(_PLACEHOLDER.findall(self.template)) - set(self.fields)
            if unknown:
                raise ValueError(f"task {self.name!r}: template uses {sorted(unknown)} not in fields")

    @property
    def is_classification(self) -> bool:
        return self.labels is not None

    def template_text(self) -> str:
        """The template with ``{field}`` placeholders, e.g. ``"rte sentence1: {sentence1} ..."``."""
        if self.template is not None:
            return self.template
        return " ".join([self.name, *(f"{f}: {{{f}}}" for f in self.fields)])

    def keeps(self, row: Row) -> bool:
        """Whether a raw row belongs to this task and has a gold output (not a test row)."""
        if self.row_filter is not None and not self.row_filter(row):
            return False
        return not (self.labels is not None and row.get(self.label_field) in (-1, ""))

    def render_input(self, row: Row) -> str:
        """The input text of a row, which needs no label (what ``predict`` reads)."""
        return self.input_and_cut(row)[0]

    def input_and_cut(self, row: Row) -> tuple[str, tuple[int, int] | None]:
        """The input text and where it may be cut (:attr:`Example.cut`): the span of the longest field's value,
        for tasks of several fields; None for one field (its end is the only place to cut)."""
        if self.row_map is not None:
            row = self.row_map(row)
        values = {field: _text(row[field], field) for field in self.fields}
        parts, spans, at = [], {}, 0
        template = self.template_text()
        for piece, match in zip(_PLACEHOLDER.split(template)[::2], [*_PLACEHOLDER.finditer(template), None]):
            parts.append(piece)
            at += len(piece)
            if match is not None:
                value = values[match.group(1)]
                spans.setdefault(match.group(1), (at, at + len(value)))
                parts.append(value)
                at += len(value)
        if len(spans) < 2:
            return "".join(parts), None
        longest = max(spans, key=lambda field: spans[field][1] - spans[field][0])
        return "".join(parts), spans[longest]

    def render(self, row: Row) -> Example:
        """Render one dataset row; KeyError for a missing field, ValueError for a bad value."""
        text, cut = self.input_and_cut(row)
        if self.row_map is not None:
            row = self.row_map(row)
        group = self.group_of(row) if self.group_of is not None else None
        if self.labels is not None:
            label = _label_index(row[self.label_field], len(self.labels), self.label_map)
            return Example(self.name, text, self.labels[label], label, group=group, cut=cut)
        answers = tuple(self.answers_of(row))  # type: ignore[misc]  # checked in __post_init__
        if not answers:
            raise ValueError("row has no gold answer")
        return Example(self.name, text, answers[0], None, answers=answers, group=group, cut=cut)


def _text(value: Any, field: str) -> str:
    # A null or nested value would render as "None" or a dict repr and train on garbage silently.
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"field {field!r} must be text, got {type(value).__name__}")
    return str(value).strip()


def _label_index(value: Any, n_labels: int, label_map: Mapping[str, int] | None) -> int:
    if label_map is not None:
        # str() of an int matches a CSV's "0"; bool would silently become "True".
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) in label_map:
            return label_map[str(value)]
        raise ValueError(f"label {value!r} is not one of {', '.join(map(repr, label_map))}")
    # bool is an int subclass; a JSON true/false label means a wrong schema, not label 1/0.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"label must be an integer class index, got {value!r}")
    if not 0 <= value < n_labels:
        raise ValueError(f"label {value} out of range 0..{n_labels - 1}")
    return value


def find_span(words: list[str], span: str, index: int) -> int:
    """Word position of ``span`` at ``index``, or its nearest occurrence when the index is off.

    SuperGLUE's original WSC has a few stale indices and case differences ("The lawyer" at a
    lower-case "the lawyer"); T5's regex then marks nothing, silently. Matching ignores case
    and surrounding punctuation; a span found nowhere is a ValueError.
    """
    wanted = [_bare(w) for w in span.split()]

    def matches(at: int) -> bool:
        got = [_bare(w) for w in words[at : at + len(wanted)]]
        return len(got) == len(wanted) and all(g.startswith(w) for g, w in zip(got, wanted))

    for at in sorted(range(len(words)), key=lambda at: abs(at - index)):
        if matches(at):
            return at
    raise ValueError(f"span {span!r} not found in the text")


def _bare(word: str) -> str:
    return word.lower().strip(string.punctuation)
