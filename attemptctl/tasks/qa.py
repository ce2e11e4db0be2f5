"""Extractive question answering: the output is an answer span, scored SQuAD's way."""

from __future__ import annotations

from attemptctl.tasks.base import Row, Task


def squad_answers(row: Row) -> tuple[str, ...]:
    """Every gold answer text, de-duplicated in order (duplicates would skew nothing but waste)."""
    texts = row["answers"]["text"]
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("answers.text must be a list of strings")
    return tuple(dict.fromkeys(t.strip() for t in texts if t.strip()))


TASKS = (
    Task("squad", "squad", "plain_text", ("question", "context"), None,
         ("squad_f1", "squad_em"), answers_of=squad_answers),
)
