"""Extractive question answering: the output is an answer span, scored SQuAD's way.

The four MRQA 2019 sets the paper uses live in one hub dataset, ``mrqa``, whose rows say which
set they come from in ``subset``; each task keeps its own rows with a ``row_filter``. When that
dataset is missing the loader raises a DataError naming it: the paper's code silently loaded
SQuAD instead, so its "MRQA" numbers could be SQuAD numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attemptctl.tasks.base import Row, Task

MRQA_MAX_LENGTH = 512


def unique_answers(texts: Any, field: str) -> tuple[str, ...]:
    """Answer texts stripped, empty ones dropped, duplicates removed in order."""
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise ValueError(f"{field} must be a list of strings")
    if not all(isinstance(t, str) for t in texts):
        raise ValueError(f"{field} must be a list of strings")
    return tuple(dict.fromkeys(t.strip() for t in texts if t.strip()))


def squad_answers(row: Row) -> tuple[str, ...]:
    """Every gold answer text of a SQuAD row (``answers.text``), de-duplicated."""
    return unique_answers(row["answers"]["text"], "answers.text")


def mrqa_answers(row: Row) -> tuple[str, ...]:
    """Every gold answer of an MRQA row (a list of strings in ``answers``), de-duplicated."""
    return unique_answers(row["answers"], "answers")


def mrqa_subset(subset: str) -> Callable[[Row], bool]:
    def keeps(row: Row) -> bool:
        return row.get("subset") == subset

    keeps.__name__ = f"subset_is_{subset}"
    return keeps


def _mrqa(name: str, subset: str) -> Task:
    return Task(name, "mrqa", "plain_text", ("question", "context"), None, ("squad_f1", "squad_em"),
                max_length=MRQA_MAX_LENGTH, answers_of=mrqa_answers, row_filter=mrqa_subset(subset))


TASKS = (
    Task("squad", "squad", "plain_text", ("question", "context"), None,
         ("squad_f1", "squad_em"), answers_of=squad_answers),
    _mrqa("nq", "NaturalQuestionsShort"),
    _mrqa("hotpotqa", "HotpotQA"),
    _mrqa("searchqa", "SearchQA"),
    _mrqa("newsqa", "NewsQA"),
)
