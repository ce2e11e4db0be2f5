"""`task list`: the catalogue."""

from __future__ import annotations

from attemptctl.cli.common import out, task_app

# -- task ------------------------------------------------------------------------------------------

@task_app.command("list")
def task_list() -> None:
    """Every task in the catalogue. Example: attemptctl task list"""
    from rich.table import Table

    from attemptctl.tasks import TASKS

    table = Table(title="Tasks")
    for column in ("task", "dataset", "input fields", "output", "metrics"):
        table.add_column(column)
    for task in TASKS.values():
        dataset = f"{task.dataset}/{task.config}" if task.config else task.dataset
        output = " / ".join(task.labels) if task.labels else "free text"
        table.add_row(task.name, dataset, ", ".join(task.fields), output, ", ".join(task.metrics))
    out.print(table)
