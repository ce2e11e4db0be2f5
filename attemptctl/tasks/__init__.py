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
from attemptctl.tasks.base import Example, Task
from attemptctl.tasks.catalogue import TASKS
from attemptctl.tasks.custom import custom_task, custom_tasks

__all__ = ["CONFIG_BEFORE", "LABEL_FORMATS", "TASKS", "Example", "Task", "all_tasks", "borrow_words", "borrowed_from",
           "get_task", "label_words_of", "labelled", "labels_of", "parse_label_words", "task_names", "task_of"]

LABEL_FORMATS = ("words", "index")
"""How a label task writes its answers: ``words``, T5's label words (``entailment``, ``not_entailment``);
``index``, the Hugging Face label index as a digit (``0``, ``1``), as ATTEMPT's released code does, which
gives every task one shared answer space (MNLI's ``0`` is RTE's ``0``, entailment; QQP's ``1`` is MRPC's
``1``, a paraphrase)."""


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
#: value they were trained with: a prompt from before label formats answers in words, in its own task's,
#: and its run scored dev only after training steps.
CONFIG_BEFORE = {"labels": "words", "label_words": None, "eval_start": False, "attn_norm": "trained",
                 "split_protocol": "paper", "curve_steps": None, "batching": "length"}


def parse_label_words(value: str | None) -> str | None:
    """The canonical form of ``--label-words``: ``TASK=SOURCE`` pairs (that target answers in the label
    words of task SOURCE) and at most one bare ``SOURCE`` (every other label target does), comma-separated;
    sorted, so one choice has one spelling. None or empty: every task answers in its own words."""
    if not value or not value.strip():
        return None
    pairs: dict[str, str] = {}
    bare: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        target, _, source = item.rpartition("=")
        if not source or (not target and "=" in item) or not item:
            raise ConfigError(f"malformed --label-words item '{item}'; write TASK=SOURCE (e.g. rte=mnli) or one SOURCE")
        if target:
            if target in pairs:
                raise ConfigError(f"--label-words names {target} twice; give each target once")
            get_task(target)  # UnknownTaskError names the known tasks
            pairs[target] = source
        else:
            bare.append(source)
        get_task(source)
    if len(bare) > 1:
        raise ConfigError("--label-words takes at most one bare SOURCE (the words of every target not named); "
                          "name the others as TASK=SOURCE")
    return ",".join([*(f"{t}={s}" for t, s in sorted(pairs.items())), *bare])


def borrowed_from(label_words: str | None, task: str) -> str | None:
    """The task whose label words ``task`` answers in under ``label_words`` (canonical form), or None."""
    if not label_words:
        return None
    default = None
    for item in label_words.split(","):
        target, _, source = item.rpartition("=")
        if target == task:
            return source
        if not target:
            default = source
    return default


def borrow_words(task: Task, source: Task) -> Task:
    """``task`` answering in ``source``'s label words, so a source prompt's answers keep their meaning
    on the target: a label word both tasks have keeps its label (CB is MNLI's words already); the
    target's other labels take the source's remaining words in index order (RTE's ``not_entailment``
    becomes MNLI's ``neutral``, MRPC's ``equivalent`` QQP's ``duplicate``)."""
    if not task.labels:
        return task
    if not source.labels or len(source.labels) < len(task.labels):
        have = f"{len(source.labels)} label words" if source.labels else "free-form answers"
        raise ConfigError(f"{task.name} cannot answer in {source.name}'s label words: it has {len(task.labels)} "
                          f"labels and {source.name} {have}; borrow from a task with at least as many labels")
    spare = iter(word for word in source.labels if word not in task.labels)
    return replace(task, labels=tuple(word if word in source.labels else next(spare) for word in task.labels))


def labelled(task: Task, labels: str = "words", label_words: str | None = None) -> Task:
    """``task`` answering in the label format ``labels`` (see :data:`LABEL_FORMATS`), in the label words of
    the task ``label_words`` names for it (see :func:`parse_label_words`); free-form tasks are the same in all."""
    if labels not in LABEL_FORMATS:
        raise ConfigError(f"unknown labels '{labels}'; choose one of {', '.join(LABEL_FORMATS)}")
    if not task.labels:
        return task
    if labels == "index":
        return replace(task, labels=tuple(str(index) for index in range(len(task.labels))))
    source = borrowed_from(label_words, task.name)
    return task if source is None else borrow_words(task, get_task(source))


def labels_of(record: Any) -> str:
    """The label format a registered prompt answers in (records written before formats existed: words)."""
    return record.config.get("labels", CONFIG_BEFORE["labels"])


def label_words_of(record: Any) -> str | None:
    """The task whose label words a registered prompt answers in, when not its own."""
    return borrowed_from(record.config.get("label_words", CONFIG_BEFORE["label_words"]), record.task)


def task_of(record: Any) -> Task:
    """The task a registered prompt was trained on, in the label format and words it was trained with."""
    return labelled(get_task(record.task), labels_of(record),
                    record.config.get("label_words", CONFIG_BEFORE["label_words"]))
