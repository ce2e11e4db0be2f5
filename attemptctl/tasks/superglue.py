"""SuperGLUE tasks (hub id ``super_glue``), with T5's label words in Hugging Face label order.

Templates follow T5's SuperGLUE preprocessors (``t5.data.preprocessors.glue``, ``wsc``,
``record``): MultiRC and WiC with their fields in T5's order, WSC with the noun and pronoun
marked in the text, ReCoRD with the entities listed and the ``@highlight`` lines joined.
"""

from __future__ import annotations

import re

from attemptctl.tasks.base import Row, Task, find_span
from attemptctl.tasks.qa import unique_answers

_BOOL = ("False", "True")


def multirc_question(row: Row) -> str:
    """MultiRC rows are answer options; a question's options are scored together (exact match)."""
    idx = row["idx"]
    return f"{idx['paragraph']}-{idx['question']}"


def wsc_marked(row: Row) -> Row:
    """T5's ``wsc``: the noun (span1) between ``*``, the pronoun (span2) between ``#``.

    ``{"text": "This is a test sentence .", "span1_text": "test", "span2_text": "This", ...}``
    becomes ``"# This # is a * test * sentence ."``. Marks go by word position, so a repeated
    word is marked where the indices point, not at its first occurrence.
    """
    words = row["text"].split()
    spans = []
    for key, mark in (("span1", "*"), ("span2", "#")):
        span = row[f"{key}_text"]
        if not isinstance(span, str) or not isinstance(row[f"{key}_index"], int):
            raise ValueError(f"{key}_text must be text and {key}_index a word position")
        start = find_span(words, span, row[f"{key}_index"])
        spans.append((start, start + len(span.split()) - 1, mark))
    out: list[str] = []
    for i, word in enumerate(words):
        out += [m for s, _, m in spans if s == i]
        out.append(word)
        out += [m for _, e, m in reversed(spans) if e == i]
    return {**row, "text": " ".join(out)}


def record_inputs(row: Row) -> Row:
    """T5's ``record``: ``@highlight`` lines become sentences; entities joined by ``", "``."""
    passage = re.sub(r"(\.|\?|\!|\"|')\n@highlight\n", r"\1 ", row["passage"])
    passage = re.sub(r"\n@highlight\n", ". ", passage)
    entities = row["entities"]
    if isinstance(entities, str) or not all(isinstance(e, str) for e in entities):
        raise ValueError("entities must be a list of strings")
    return {**row, "passage": passage, "entities": ", ".join(entities)}


def record_answers(row: Row) -> tuple[str, ...]:
    """Every gold entity, de-duplicated (ATTEMPT's code kept duplicates, over-weighting them)."""
    return unique_answers(row["answers"], "answers")


TASKS = (
    Task("boolq", "super_glue", "boolq", ("question", "passage"), _BOOL, ("accuracy",)),
    Task("cb", "super_glue", "cb", ("premise", "hypothesis"),
         ("entailment", "contradiction", "neutral"), ("macro_f1", "accuracy")),
    Task("wic", "super_glue", "wic", ("sentence1", "sentence2", "word"), _BOOL, ("accuracy",)),
    Task("wsc", "super_glue", "wsc", ("text",), _BOOL, ("accuracy",), row_map=wsc_marked),
    # A choice between the two alternatives; rank classification scores both label words.
    Task("copa", "super_glue", "copa", ("premise", "question", "choice1", "choice2"),
         ("choice1", "choice2"), ("accuracy",)),
    Task("multirc", "super_glue", "multirc", ("question", "answer", "paragraph"), _BOOL,
         ("f1", "group_em"), max_length=348, group_of=multirc_question),
    Task("record", "super_glue", "record", ("query", "entities", "passage"), None,
         ("squad_f1", "squad_em"), answers_of=record_answers, row_map=record_inputs),
)
