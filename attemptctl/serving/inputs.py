"""What a ``/v1/predict`` request may carry: its input rows, checked against the prompt's task before
anything runs, each refusal one line naming the row and the field.

A row holds the task's fields, as in its data files, with string values: ``{"sentence": "…"}`` for SST-2.
A task whose rows are preprocessed before its template (WSC marks its spans by word position, ReCoRD
joins its entity list) takes its data files' rows as they are, and its preprocessing checks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attemptctl.serving.errors import ServeError
from attemptctl.tasks import Example, Task

MAX_INPUTS = 256
"""Input rows one request may carry."""
MAX_BODY_BYTES = 1 << 20
"""Bytes a request body may have (413 beyond)."""


def checked_examples(task: Task, inputs: Sequence[Any]) -> list[Example]:
    """The input rows as examples to answer (no gold output), or a 422 naming the first bad row and field."""
    takes = f"{task.name} takes {', '.join(task.fields)}"
    if not inputs:
        raise ServeError(422, f"inputs: empty list; give at least one object ({takes})")
    if len(inputs) > MAX_INPUTS:
        raise ServeError(422, f"inputs: {len(inputs)} rows; at most {MAX_INPUTS} per request (split them)")
    return [_example(task, row, f"inputs[{i}]", takes) for i, row in enumerate(inputs)]


def _example(task: Task, row: Any, where: str, takes: str) -> Example:
    if not isinstance(row, dict):
        raise ServeError(422, f"{where}: expected an object with the task's fields, got {_json_type(row)}; {takes}")
    missing = [field for field in task.fields if field not in row]
    if missing:
        raise ServeError(422, f"{where}: missing field '{missing[0]}'; {takes}")
    if task.row_map is None:  # preprocessed rows (WSC, ReCoRD) carry more than the template's fields
        extra = [key for key in row if key not in task.fields]
        if extra:
            raise ServeError(422, f"{where}: unknown field '{extra[0]}'; {takes}")
        for field in task.fields:
            if not isinstance(row[field], str):
                raise ServeError(422, f"{where}: field '{field}' must be a string, got {_json_type(row[field])}")
    try:
        text, cut = task.input_and_cut(row)
    except KeyError as exc:
        raise ServeError(422, f"{where}: missing field {exc}; {takes}") from None
    except (ValueError, TypeError) as exc:
        raise ServeError(422, f"{where}: {exc}") from None
    return Example(task.name, text, "", None, cut=cut)


def _json_type(value: Any) -> str:
    """A value's type as JSON names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)
