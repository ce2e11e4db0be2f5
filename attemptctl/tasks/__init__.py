"""The task catalogue: every benchmark task ATTEMPT trains or evaluates on, by name.

Tasks are declared in the catalogue modules (:mod:`.glue`, :mod:`.superglue`, :mod:`.qa`,
:mod:`.others`), one ``Task(...)`` each; this module only gathers them and answers look-ups.
"""

from __future__ import annotations

from attemptctl.errors import UnknownTaskError
from attemptctl.tasks import glue, others, qa, superglue
from attemptctl.tasks.base import Example, Task

__all__ = ["Example", "Task", "TASKS", "get_task", "task_names"]


def _catalogue() -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for task in (*glue.TASKS, *superglue.TASKS, *qa.TASKS, *others.TASKS):
        # Two declarations with one name would make the later silently win.
        if task.name in tasks:
            raise ValueError(f"task {task.name!r} is declared twice")
        tasks[task.name] = task
    return dict(sorted(tasks.items()))


TASKS: dict[str, Task] = _catalogue()


def task_names() -> list[str]:
    """Every task name, sorted."""
    return list(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``; UnknownTaskError listing the known names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        known = ", ".join(TASKS)
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {known}") from None
