"""`task list / show / add / rm`: the catalogue, built-in and custom."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from attemptctl.cli.app import call, out, task_app
from attemptctl.cli.options import DataDirOpt, JsonOpt

# -- task ------------------------------------------------------------------------------------------


@task_app.command("list")
def task_list(data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """Every task, built-in and custom, with sizes where the data is local. Example: attemptctl task list"""
    from rich.table import Table

    from attemptctl.tasks.overview import list_tasks

    summaries = call(list_tasks, data_dir)
    if as_json:
        out.print_json(json.dumps([dataclasses.asdict(s) for s in summaries]))
        return
    table = Table(title="Tasks")
    for column in ("task", "source", "dataset", "output", "metrics", "rows (train / val)"):
        table.add_column(column)
    for s in summaries:
        sizes = " / ".join(f"{n:,}" for n in s.sizes.values()) if s.sizes else "-"
        table.add_row(s.name, s.origin, s.dataset, s.output, ", ".join(s.metrics), sizes)
    out.print(table)


@task_app.command("show")
def task_show(name: Annotated[str, typer.Argument(help="Task name.")], data_dir: DataDirOpt = None) -> None:
    """A task's template and one rendered example (real with --data-dir). Example: attemptctl task show rte"""
    from attemptctl.tasks.overview import show_task

    view = call(show_task, name, data_dir)
    task = view.task
    out.print(f"[bold]{task.name}[/]  ({task.origin}; {'/'.join(p for p in (task.dataset, task.config) if p)})")
    out.print(f"template: {view.template}", highlight=False, markup=False)
    out.print(f"output:   {' / '.join(task.labels) if task.labels else 'free text'}", highlight=False, markup=False)
    out.print(f"metrics:  {', '.join(task.metrics)}; max length {task.max_length}", highlight=False, markup=False)
    out.print(f"example ({view.example_from}):", highlight=False, markup=False)
    out.print(f"  input:  {view.example.input}", highlight=False, markup=False)
    out.print(f"  target: {view.example.target}", highlight=False, markup=False)


@task_app.command("add")
def task_add(path: Annotated[Path, typer.Argument(help="The task's TOML file.")],
             force: Annotated[bool, typer.Option("--force", help="Replace a custom task of that name.")] = False,
             ) -> None:
    """Validate a custom task TOML and register it. Example: attemptctl task add my_task.toml"""
    from attemptctl.tasks import TASKS
    from attemptctl.tasks.custom import add_task_file

    task = call(add_task_file, path, TASKS, force=force)
    out.print(f"added task {task.name} ({task.origin})", highlight=False, markup=False)


@task_app.command("rm")
def task_rm(name: Annotated[str, typer.Argument(help="Custom task name.")]) -> None:
    """Remove a custom task (its data stays). Example: attemptctl task rm my_task"""
    from attemptctl.tasks.custom import remove_task_file

    path = call(remove_task_file, name)
    out.print(f"removed task {name} ({path})", highlight=False, markup=False)
