"""The task catalogue: every benchmark task ATTEMPT trains or evaluates on, by name.

Built-in tasks are declared in the catalogue modules (:mod:`.glue`, :mod:`.superglue`,
:mod:`.qa`, :mod:`.others`), one ``Task(...)`` each; custom tasks are TOML files in the user's
tasks folder (:mod:`.custom`). This module gathers them and answers look-ups, so a custom task
works everywhere a built-in one does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from attemptctl.errors import ConfigError, UnknownTaskError
from attemptctl.tasks import glue, others, qa, superglue
from attemptctl.tasks.base import Example, Task
from attemptctl.tasks.custom import custom_task, custom_tasks

__all__ = ["CONFIG_BEFORE", "LABEL_FORMATS", "TASKS", "Example", "Task", "all_tasks", "get_task", "labelled", "labels_of",
           "task_names", "task_of"]

LABEL_FORMATS = ("words", "index")
"""How a label task writes its answers: ``words``, T5's label words (``entailment``, ``not_entailment``);
``index``, the Hugging Face label index as a digit (``0``, ``1``), as ATTEMPT's released code does, which
gives every task one shared answer space (MNLI's ``0`` is RTE's ``0``, entailment; QQP's ``1`` is MRPC's
``1``, a paraphrase)."""


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


def task_names() -> list[str]:
    """Every built-in task name, sorted."""
    return list(TASKS)


def all_tasks() -> dict[str, Task]:
    """Built-in and custom tasks, sorted by name (reads the custom tasks folder)."""
    return dict(sorted({**custom_tasks(), **TASKS}.items()))


def get_task(name: str) -> Task:
    """The built-in or custom task called ``name``; UnknownTaskError listing the known names."""
    if name in TASKS:
        return TASKS[name]
    task = custom_task(name)
    if task is not None:
        return task
    known = ", ".join(sorted([*TASKS, *_custom_names()]))
    raise UnknownTaskError(f"unknown task {name!r}; known tasks: {known}")


def _custom_names() -> list[str]:
    from attemptctl.tasks.custom import tasks_dir

    folder = tasks_dir()
    return [p.stem for p in folder.glob("*.toml")] if folder.is_dir() else []


#: Config fields that records, checkpoints and exports written before the field existed lack, with the
#: value they were trained with: a prompt from before label formats answers in words.
CONFIG_BEFORE = {"labels": "words"}


def labelled(task: Task, labels: str = "words") -> Task:
    """``task`` answering in the label format ``labels`` (see :data:`LABEL_FORMATS`); free-form tasks
    are the same in both."""
    if labels not in LABEL_FORMATS:
        raise ConfigError(f"unknown labels '{labels}'; choose one of {', '.join(LABEL_FORMATS)}")
    if labels == "words" or not task.labels:
        return task
    return replace(task, labels=tuple(str(index) for index in range(len(task.labels))))


def labels_of(record: Any) -> str:
    """The label format a registered prompt answers in (records written before formats existed: words)."""
    return record.config.get("labels", CONFIG_BEFORE["labels"])


def task_of(record: Any) -> Task:
    """The task a registered prompt was trained on, in the label format it was trained with."""
    return labelled(get_task(record.task), labels_of(record))
