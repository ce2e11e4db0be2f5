"""User tasks declared in small TOML files, kept in a tasks folder and found by name.

The folder is ``$ATTEMPTCTL_TASKS_DIR``, else ``$XDG_CONFIG_HOME/attemptctl/tasks``, else
``~/.config/attemptctl/tasks``. A file there named ``<name>.toml`` declares the task ``name``::

    name = "tweet_sentiment"
    metrics = ["accuracy", "macro_f1"]       # optional; first is primary
    max_length = 128                          # optional (256)

    [dataset]                                 # local files (relative to the TOML's folder) ...
    train = "tweets/train.jsonl"
    validation = "tweets/validation.csv"
    # test = "tweets/test.jsonl"              # optional: else the paper's split protocol
    # hub = "tweet_eval"                      # ... or a hub dataset (or --data-dir layout)
    # config = "sentiment"

    [input]
    fields = ["text"]
    template = "tweet: {text}"                # optional: else "tweet_sentiment text: {text}"

    [output]
    labels = ["negative", "positive"]         # label words by class index ...
    values = ["neg", "pos"]                   # optional: the raw labels in the data, same order
    label_field = "label"                     # optional
    # answer_field = "answer"                 # ... or free-form output: a text or list of texts

Every problem is a ConfigError ``file:line: what to fix``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attemptctl.errors import ConfigError
from attemptctl.tasks.base import Row, Task
from attemptctl.tasks.qa import unique_answers

TASKS_DIR_ENV = "ATTEMPTCTL_TASKS_DIR"
_KEYS = {
    None: {"name", "metrics", "max_length", "data_root", "dataset", "input", "output"},
    "dataset": {"train", "validation", "test", "hub", "config"},
    "input": {"fields", "template"},
    "output": {"labels", "values", "label_field", "answer_field"},
}
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def tasks_dir() -> Path:
    """Where custom task files live (see the module docstring)."""
    if os.environ.get(TASKS_DIR_ENV):
        return Path(os.environ[TASKS_DIR_ENV])
    config_home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config_home) / "attemptctl" / "tasks"


def custom_task(name: str) -> Task | None:
    """The custom task ``name`` from the tasks folder, or None if there is none."""
    path = tasks_dir() / f"{name}.toml"
    return load_task_file(path) if _NAME.fullmatch(name) and path.is_file() else None


def custom_tasks() -> dict[str, Task]:
    """Every custom task in the tasks folder, by name."""
    folder = tasks_dir()
    paths = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    return {task.name: task for task in map(load_task_file, paths)}


def add_task_file(path: Path, builtin: Mapping[str, Task], *, force: bool = False) -> Task:
    """Validate ``path`` and copy it into the tasks folder; relative data paths are pinned."""
    task = load_task_file(path, builtin)
    for split, file in (task.files or {}).items():
        if not Path(file).is_file():
            raise ConfigError(f"{path}:{_line_of(_read(path), 'dataset', split)}: "
                              f"{split} file {file} not found; fix the path (relative to the TOML's folder)")
    target = tasks_dir() / f"{task.name}.toml"
    if target.exists() and not force:
        raise ConfigError(f"custom task {task.name!r} exists ({target}); remove it with "
                          f"`attemptctl task rm {task.name}` or add with --force")
    text = _read(path)
    if "data_root" not in _parse(path, text):
        # The copy lives elsewhere: record where relative paths were meant to start.
        text = f"data_root = {_toml_string(str(path.resolve().parent))}\n{text}"
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".toml.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(target)
    return load_task_file(target, builtin)


def remove_task_file(name: str) -> Path:
    """Delete the custom task ``name``; ConfigError if there is none."""
    path = tasks_dir() / f"{name}.toml"
    if not _NAME.fullmatch(name) or not path.is_file():
        raise ConfigError(f"no custom task {name!r} in {tasks_dir()} (built-in tasks cannot be removed)")
    path.unlink()
    return path


def load_task_file(path: Path, builtin: Mapping[str, Task] | None = None) -> Task:
    """Parse and validate one task TOML into a :class:`Task`."""
    text = _read(path)
    spec = _parse(path, text)

    def fail(table: str | None, key: str | None, problem: str) -> ConfigError:
        return ConfigError(f"{path}:{_line_of(text, table, key)}: {problem}")

    for table, allowed in _KEYS.items():
        section = spec if table is None else spec.get(table, {})
        if not isinstance(section, dict):
            raise fail(None, table, f"{table} must be a table: [{table}]")
        for key in section:
            if key not in allowed:
                raise fail(table, key, f"unknown key {key!r}; expected one of {', '.join(sorted(allowed))}")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise fail(None, "name", "name must be lower-case letters, digits and _ (e.g. name = \"my_task\")")
    if name in (builtin if builtin is not None else _builtin()):
        raise fail(None, "name", f"name {name!r} is a built-in task; choose another name")
    root = Path(spec.get("data_root", path.resolve().parent))
    source = _source(spec.get("dataset", {}), root, lambda key, msg: fail("dataset", key, msg))
    fields, template = _input(spec.get("input", {}), lambda key, msg: fail("input", key, msg))
    output = _output(spec.get("output", {}), lambda key, msg: fail("output", key, msg))
    options = {"max_length": spec.get("max_length", 256), "template": template, "origin": str(path), **source,
               **output}
    if not isinstance(options["max_length"], int) or options["max_length"] < 1:
        raise fail(None, "max_length", "max_length must be a positive integer")
    metrics = spec.get("metrics", ["accuracy"] if output["labels"] is not None else ["squad_f1", "squad_em"])
    _check_metrics(metrics, output, lambda msg: fail(None, "metrics", msg))
    try:
        return Task(name, fields=fields, metrics=tuple(metrics), **options)
    except ValueError as err:
        raise fail("input", "template", str(err)) from None


def _source(section: dict, root: Path, fail) -> dict[str, Any]:
    if "hub" in section:
        if any(k in section for k in ("train", "validation", "test")):
            raise fail("hub", "give either hub (and config) or local files, not both")
        config = section.get("config")
        if not isinstance(section["hub"], str) or not (config is None or isinstance(config, str)):
            raise fail("hub", "hub and config must be strings")
        return {"dataset": section["hub"], "config": config}
    for split in ("train", "validation"):
        if not isinstance(section.get(split), str):
            raise fail(split if section else None,
                       f"[dataset] needs {split} = \"path.jsonl\" (or .csv), or hub = \"<hub id>\"")
    files = {split: str((root / section[split]).resolve()) for split in ("train", "validation", "test")
             if split in section}
    for split, file in files.items():
        if Path(file).suffix.lower() not in (".jsonl", ".json", ".csv", ".tsv"):
            raise fail(split, f"{split} must be a .jsonl, .csv or .tsv file")
    dedicated = {"dev_split": "validation", "test_split": "test"} if "test" in files else {}
    return {"dataset": "local", "config": None, "files": files, **dedicated}


def _input(section: dict, fail) -> tuple[tuple[str, ...], str | None]:
    template = section.get("template")
    if template is not None and not isinstance(template, str):
        raise fail("template", "template must be a string such as \"review: {text}\"")
    fields = section.get("fields")
    if fields is None and template is not None:
        fields = list(dict.fromkeys(re.findall(r"\{(\w+)\}", template)))
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        raise fail("fields", "[input] needs fields = [\"column\", ...] naming the input columns")
    return tuple(fields), template


def _output(section: dict, fail) -> dict[str, Any]:
    if ("labels" in section) == ("answer_field" in section):
        raise fail(None, "[output] needs labels = [...] (label words) or answer_field = \"column\", not both")
    label_field = section.get("label_field", "label")
    if "answer_field" in section:
        field = section["answer_field"]
        if not isinstance(field, str):
            raise fail("answer_field", "answer_field must be a column name")
        return {"labels": None, "answers_of": functools.partial(_answers, field)}
    labels, values = section["labels"], section.get("values")
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
        raise fail("labels", "labels must list at least two label words")
    if len(set(labels)) != len(labels):
        raise fail("labels", "labels must be distinct")
    values = list(range(len(labels))) if values is None else values
    if not isinstance(values, list) or len(values) != len(labels) or len({str(v) for v in values}) != len(values):
        raise fail("values", f"values must list {len(labels)} distinct raw labels, one per label word")
    if not isinstance(label_field, str):
        raise fail("label_field", "label_field must be a column name")
    return {"labels": tuple(labels), "label_field": label_field,
            "label_map": {str(v): i for i, v in enumerate(values)}}


def _check_metrics(metrics: Any, output: dict, fail) -> None:
    from attemptctl.tasks.metrics import METRICS  # late: numpy stays out of `attemptctl --help`

    if not isinstance(metrics, list) or not metrics or not all(m in METRICS for m in metrics):
        raise fail(f"metrics must be a non-empty list of {', '.join(METRICS)}")
    labels = output.get("labels")
    if "f1" in metrics and (labels is None or len(labels) != 2):
        raise fail("metric f1 is the F1 of the second label word: it needs exactly two labels")


def _answers(field: str, row: Row) -> tuple[str, ...]:
    value = row[field]
    return unique_answers([value] if isinstance(value, str) else value, field)


def _builtin() -> Mapping[str, Task]:
    from attemptctl.tasks.catalogue import TASKS

    return TASKS


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the task file ({err.strerror})") from None


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        where = re.search(r"\(at line (\d+), column (\d+)\)", message)
        place = f"{where.group(1)}:{where.group(2)}" if where else "1"
        problem = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
        raise ConfigError(f"{path}:{place}: invalid TOML: {problem}; see docs/tasks.md for the format") from None


def _line_of(text: str, table: str | None, key: str | None) -> int:
    """Line of ``key`` in ``[table]`` (of the header when key is None); 1 when not found."""
    current, header = None, 1
    for number, line in enumerate(text.splitlines(), start=1):
        heading = re.match(r"\s*\[\s*([\w.-]+)\s*\]", line)
        if heading:
            current = heading.group(1)
            if current == table:
                header = number
            continue
        if current == table and key is not None and re.match(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
            return number
    return header


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
