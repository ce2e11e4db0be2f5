"""What ``attemptctl task list`` and ``task show`` report: pure data, rendered by the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attemptctl.tasks import Example, Task, all_tasks, get_task
from attemptctl.tasks.data import check_data_dir, read_rows, split_path


@dataclass(frozen=True)
class TaskSummary:
    """One catalogue line: where the task comes from, its data and how it is scored."""

    name: str
    origin: str
    """``built-in`` or the custom task's TOML path."""
    dataset: str
    output: str
    metrics: tuple[str, ...]
    sizes: dict[str, int] | None
    """Raw rows per split file where the files are at hand; None otherwise."""


@dataclass(frozen=True)
class TaskView:
    """A task's template with one rendered example."""

    task: Task
    template: str
    example: Example
    example_from: str
    """The file the example came from, or ``placeholder``."""


def list_tasks(data_dir: Path | None = None) -> list[TaskSummary]:
    """Every built-in and custom task, with split sizes where its files are local."""
    _check(data_dir)
    return [_summary(task, data_dir) for task in all_tasks().values()]


def show_task(name: str, data_dir: Path | None = None) -> TaskView:
    """The template of ``name`` and its first real validation row (else a placeholder)."""
    task = get_task(name)
    _check(data_dir)
    for split in (task.validation_split, task.train_split):
        path = _split_file(task, data_dir, split)
        example = _first_example(task, path) if path is not None else None
        if example is not None:
            return TaskView(task, task.template_text(), example, str(path))
    return TaskView(task, task.template_text(), placeholder_example(task), "placeholder")


def _check(data_dir: Path | None) -> None:
    """A data directory that was named must exist: a typo is an error, not a table of blanks."""

    if data_dir is not None:
        check_data_dir(Path(data_dir))


def placeholder_example(task: Task) -> Example:
    """The template filled with ``<field>`` markers and the first label word (or ``<answer>``)."""
    text = task.template_text()
    for field in task.fields:
        text = text.replace(f"{{{field}}}", f"<{field}>")
    if task.labels is not None:
        return Example(task.name, text, task.labels[0], 0)
    return Example(task.name, text, "<answer>", None, answers=("<answer>",))


def _summary(task: Task, data_dir: Path | None) -> TaskSummary:
    dataset = "local files" if task.files else "/".join(p for p in (task.dataset, task.config) if p)
    output = " / ".join(task.labels) if task.labels else "free text"
    sizes = None
    if task.row_filter is None:  # a shared file's line count is not this task's size
        splits = [task.train_split, task.validation_split, "test", task.dev_split, task.test_split]
        found = {s: _split_file(task, data_dir, s) for s in dict.fromkeys(x for x in splits if x)}
        sizes = {s: _count_rows(p) for s, p in found.items() if p is not None} or None
    return TaskSummary(task.name, task.origin, dataset, output, task.metrics, sizes)


def _split_file(task: Task, data_dir: Path | None, split: str) -> Path | None:

    if task.files is not None:
        path = Path(task.files[split]) if split in task.files else None
    else:
        path = split_path(task, Path(data_dir), split) if data_dir is not None else None
    return path if path is not None and path.is_file() else None


def _count_rows(path: Path) -> int:
    with path.open("rb") as lines:
        count = sum(1 for line in lines if line.strip())
    return count - 1 if path.suffix.lower() in (".csv", ".tsv") else count  # the header


def _first_example(task: Task, path: Path) -> Example | None:

    for _, row in read_rows(path):
        if isinstance(row, dict) and task.keeps(row):
            try:
                return task.render(row)
            except (KeyError, ValueError, TypeError):
                return None
    return None

