"""The built-in tasks, gathered from the catalogue modules into one table by name (custom tasks and look-ups:
:mod:`attemptctl.tasks`)."""

from __future__ import annotations

from attemptctl.tasks import glue, others, qa, superglue
from attemptctl.tasks.base import Task


def _catalogue() -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for task in (*glue.TASKS, *superglue.TASKS, *qa.TASKS, *others.TASKS):
        # Two declarations with one name would make the later silently win.
        if task.name in tasks:
            raise ValueError(f"task {task.name!r} is declared twice")
        tasks[task.name] = task
    return dict(sorted(tasks.items()))


TASKS: dict[str, Task] = _catalogue()
"""The built-in tasks, by name."""
