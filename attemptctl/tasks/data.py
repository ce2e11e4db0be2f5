"""Loading a task's rows (local JSONL or the Hugging Face hub) and splitting them as the paper does.

Paper protocol (ATTEMPT §4, after Karimi Mahabadi et al. 2021), with a fixed seed:

- train split under 10,000 rows: the validation split is shuffled and halved, the first half
  becomes dev and the second test; train stays train;
- otherwise 1,000 shuffled train rows become dev, the rest train, and validation is test;
- a task with dedicated dev/test splits (MNLI: mismatched/matched) uses them when they exist.

``protocol="heldout"`` (``--split-protocol heldout``) tests on the whole validation split wherever the
train split can spare a dev set: under 10,000 but at least 600 train rows, the first fifth of the
shuffled train rows (at most 1,000) becomes dev and the rest train, so RTE tests on all 277 validation
rows instead of 139 and Yelp on 400 instead of 200. Smaller train splits (CB 250, WSC 554) keep the
halves. Larger ones are split as under the paper's protocol already.

Every list is shuffled with ``random.Random(seed)``, whose permutations are the same on every
machine and Python version, and limits take a prefix afterwards: a limited run sees a subset of
a full run's data, never different data.
"""

from __future__ import annotations

import csv
import json
import os
import random
import socket
import sys
import urllib.parse
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attemptctl.errors import ConfigError, DataError
from attemptctl.tasks.base import Example, Task

DATA_DIR_ENV = "ATTEMPTCTL_DATA_DIR"
SMALL_TRAIN_ROWS = 10_000
"""Train splits smaller than this get dev and test from the halved validation split."""
DEV_ROWS_FROM_TRAIN = 1_000
"""Rows carved off a large train split to become dev."""
PROTOCOLS = ("paper", "heldout")
"""How dev and test are drawn: the paper's halves of validation for small tasks, or dev held out of train."""
HELDOUT_MIN_TRAIN = 600
"""The smallest train split ``heldout`` takes dev rows from (a fifth: 120 rows); smaller ones keep the halves."""
HELDOUT_SHARE = 5
"""``heldout`` takes 1/HELDOUT_SHARE of the train rows as dev, at most DEV_ROWS_FROM_TRAIN."""


@dataclass(frozen=True)
class TaskSplits:
    """A task's train, dev and test examples after the paper's split protocol."""

    task: str
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    source: str
    """Where the rows came from: a directory, or ``hub:<dataset>/<config>``."""


# A source answers two questions: does a split exist, and what are its examples.
_HasSplit = Callable[[str], bool]
_ReadSplit = Callable[[str], list[Example]]


def load_task(
    task: Task,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 42,
    train_limit: int | None = None,
    dev_limit: int | None = None,
    test_limit: int | None = None,
    shots: int | None = None,
    protocol: str = "paper",
) -> TaskSplits:
    """Load ``task`` from ``data_dir`` (else $ATTEMPTCTL_DATA_DIR, else the hub) and split it by ``protocol``
    (:data:`PROTOCOLS`).

    A custom task with its own files reads them whatever ``data_dir`` says. ``shots=K`` keeps K
    training rows per class (K in all for a free-form task), drawn with ``seed``, before
    ``train_limit``; dev and test are untouched, as in the paper's few-shot runs.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown split protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}")
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if task.files is not None:
        source, has_split, read_split = _files_source(task)
    elif data_dir is not None:
        source, has_split, read_split = _local_source(task, Path(data_dir))
    else:
        source, has_split, read_split = _hub_source(task)
    train, dev, test = _split(task, source, has_split, read_split, seed, protocol)
    if shots is not None:
        train = few_shot(train, shots, seed)
    return TaskSplits(
        task=task.name,
        train=_prefix(train, train_limit),
        dev=_prefix(dev, dev_limit),
        test=_prefix(test, test_limit),
        source=source,
    )


def _split(
    task: Task, source: str, has_split: _HasSplit, read_split: _ReadSplit, seed: int, protocol: str = "paper"
) -> tuple[list[Example], list[Example], list[Example]]:
    train = _shuffled(read_split(task.train_split), seed)
    if task.dev_split and task.test_split:
        if has_split(task.dev_split) and has_split(task.test_split):
            dev = _shuffled(read_split(task.dev_split), seed)
            return train, dev, _shuffled(read_split(task.test_split), seed)
        # Offline copies often have a single validation split; say the protocol changed.
        warnings.warn(
            f"{task.name}: {source} has no {task.dev_split}/{task.test_split} splits; "
            f"dev and test come from '{task.validation_split}' by the generic protocol",
            stacklevel=3,
        )
    validation = _shuffled(read_split(task.validation_split), seed)
    if len(train) >= SMALL_TRAIN_ROWS:
        return train[DEV_ROWS_FROM_TRAIN:], train[:DEV_ROWS_FROM_TRAIN], validation
    if protocol == "heldout" and len(train) >= HELDOUT_MIN_TRAIN:
        held = min(DEV_ROWS_FROM_TRAIN, len(train) // HELDOUT_SHARE)
        return train[held:], train[:held], validation
    half = len(validation) // 2
    return train, validation[:half], validation[half:]


def _shuffled(examples: list[Example], seed: int) -> list[Example]:
    # A fresh generator per list, so one split's order never depends on another's size.
    order = list(examples)
    random.Random(seed).shuffle(order)
    return order


def few_shot(examples: list[Example], shots: int, seed: int) -> list[Example]:
    """K examples per class (per label; K in all for free-form rows), drawn reproducibly.

    The draw takes the first K of each class from one seeded shuffle, so K rows are a subset
    of K+1 rows for the same seed; the result is shuffled again so classes interleave.
    A class with fewer than K rows gives all it has.
    """
    if shots < 1:
        raise ConfigError(f"--shots must be >= 1, got {shots}")
    taken: dict[int | None, int] = {}
    chosen = []
    for example in _shuffled(examples, seed):
        if taken.get(example.label, 0) < shots:
            taken[example.label] = taken.get(example.label, 0) + 1
            chosen.append(example)
    return _shuffled(chosen, seed + 1)


def _prefix(examples: list[Example], limit: int | None) -> list[Example]:
    if limit is None:
        return examples
    if limit < 0:
        raise ConfigError(f"a row limit must be >= 0, got {limit}")
    return examples[:limit]


def task_folder(task: Task, data_dir: Path) -> Path:
    """``<data_dir>/<dataset>/<config>``; no config folder for a dataset without configs."""
    folder = data_dir / task.dataset
    return folder / task.config if task.config is not None else folder


def split_path(task: Task, data_dir: Path, split: str) -> Path:
    """Where a split's JSONL file lives: ``<data_dir>/<dataset>/<config>/<split>.jsonl``."""
    return task_folder(task, data_dir) / f"{split}.jsonl"


def check_data_dir(data_dir: Path) -> Path:
    """``data_dir`` if it is a folder; else the one-line error every command gives for it."""
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a directory; give --data-dir (or ${DATA_DIR_ENV}) the folder that holds "
                        "<dataset>/<config>/<split>.jsonl")
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found (--data-dir or ${DATA_DIR_ENV})")
    return data_dir


def _local_source(task: Task, data_dir: Path) -> tuple[str, _HasSplit, _ReadSplit]:
    check_data_dir(data_dir)

    def read_split(split: str) -> list[Example]:
        path = split_path(task, data_dir, split)
        if not path.is_file():
            layout = "/".join(p for p in (task.dataset, task.config, f"{split}.jsonl") if p)
            raise DataError(
                f"{path}: file not found; expected {layout} under the data directory (--data-dir)"
            )
        return _nonempty(task, _render_rows(task, _jsonl_rows(path), lambda n: f"{path}:{n}"), path)

    def has_split(split: str) -> bool:
        return split_path(task, data_dir, split).is_file()

    return str(task_folder(task, data_dir)), has_split, read_split


def _files_source(task: Task) -> tuple[str, _HasSplit, _ReadSplit]:
    """A custom task's own jsonl/csv files, one per split."""
    files = dict(task.files or {})

    def read_split(split: str) -> list[Example]:
        if split not in files:
            raise DataError(f"task {task.name} ({task.origin}): no file for split '{split}'")
        path = Path(files[split])
        if not path.is_file():
            raise DataError(f"{path}: file not found (split '{split}' of task {task.name}, {task.origin})")
        rows = read_rows(path)
        return _nonempty(task, _render_rows(task, rows, lambda n: f"{path}:{n}"), path)

    return task.origin, lambda split: split in files, read_split


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, row) of a .csv/.tsv (header first) or JSON-lines file."""
    return _csv_rows(path) if path.suffix.lower() in (".csv", ".tsv") else _jsonl_rows(path)


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, row dict) per CSV record; a header line names the fields, .tsv uses tabs."""
    with path.open(encoding="utf-8-sig", newline="") as lines:
        reader = csv.DictReader(lines, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        try:
            for row in reader:
                if None in row or None in row.values():  # DictReader's marks of extra/missing cells
                    raise DataError(f"{path}:{reader.line_num}: wrong number of columns "
                                    f"(the header has {len(reader.fieldnames or [])})")
                yield reader.line_num, row
        except csv.Error as err:
            raise DataError(f"{path}:{reader.line_num}: malformed CSV: {err}") from None
        except UnicodeDecodeError as err:  # a user's file, not a bug: exit 1, not 70
            raise DataError(f"{path}: not UTF-8 text ({err.reason}); save it as UTF-8") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) per non-blank line; utf-8-sig drops a BOM if one is there."""
    with path.open(encoding="utf-8-sig") as lines:
        try:
            for lineno, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{lineno}: malformed JSON: {err}") from None
        except UnicodeDecodeError as err:  # a user's file, not a bug: exit 1, not 70
            raise DataError(f"{path}: not UTF-8 text ({err.reason}); save it as UTF-8") from None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host answers a TCP connection within ``timeout`` seconds (offline mode: no)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urllib.parse.urlparse(endpoint)
    try:
        with socket.create_connection((parsed.hostname or "huggingface.co", parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def _offline(offline: bool):
    """Hugging Face offline mode for the block (both the environment and an imported ``datasets``), restored after."""
    if not offline:
        yield
        return
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: "1" for name in names})
    config = getattr(sys.modules.get("datasets"), "config", None)
    previous = getattr(config, "HF_HUB_OFFLINE", None)
    if config is not None:
        config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        # ``datasets`` imported inside the block read offline mode from the environment: undo that too.
        config = getattr(sys.modules.get("datasets"), "config", config)
        if config is not None and hasattr(config, "HF_HUB_OFFLINE"):
            config.HF_HUB_OFFLINE = previous if previous is not None else (
                (saved["HF_HUB_OFFLINE"] or "").lower() in ("1", "true", "yes"))


def _hub_source(task: Task) -> tuple[str, _HasSplit, _ReadSplit]:
    hub_id = f"{task.dataset}/{task.config}" if task.config else task.dataset
    reachable = _hub_reachable()
    try:
        # No network: read only what the Hugging Face cache already holds, at once, instead of
        # spending half a minute in retries before the same error.
        with _offline(not reachable):
            import datasets  # lazy: heavy, and only this path needs it

            dataset_dict = datasets.load_dataset(task.dataset, task.config)
    except Exception as err:  # network, auth, missing dataset: all mean "use local files"
        why = ("the hub is not reachable from here and the Hugging Face cache has no copy" if not reachable
               else f"{type(err).__name__}: {err}")
        raise DataError(
            f"hub:{hub_id}: could not load from the Hugging Face hub ({why}). "
            f"Point --data-dir (or ${DATA_DIR_ENV}) at local <dataset>/<config>/<split>.jsonl files"
        ) from err

    def read_split(split: str) -> list[Example]:
        if split not in dataset_dict:
            raise DataError(f"hub:{hub_id}: no split '{split}' (has {', '.join(dataset_dict)})")
        rows = enumerate(dataset_dict[split])
        place = f"hub:{hub_id}[{split}]"
        return _nonempty(task, _render_rows(task, rows, lambda n: f"{place} row {n}"), place)

    return f"hub:{hub_id}", lambda split: split in dataset_dict, read_split


def _render_rows(
    task: Task, rows: Iterator[tuple[int, Any]], place: Callable[[int], str]
) -> list[Example]:
    """Render every labelled row; errors name the row's place (file:line or hub row)."""
    examples = []
    for position, row in rows:
        if not isinstance(row, Mapping):
            raise DataError(f"{place(position)}: expected a JSON object, got {type(row).__name__}")
        if not task.keeps(row):  # unlabelled test rows, another MRQA subset
            continue
        try:
            examples.append(task.render(row))
        except KeyError as err:
            raise DataError(
                f"{place(position)}: missing field {err.args[0]!r} "
                f"(task {task.name} reads {', '.join(_needed_fields(task))})"
            ) from None
        except (ValueError, TypeError) as err:
            raise DataError(f"{place(position)}: {err}") from None
    return examples


def _needed_fields(task: Task) -> list[str]:
    extra = [task.label_field] if task.is_classification else []
    return [*task.fields, *extra]


def _filtered(task: Task) -> str:
    name = getattr(task.row_filter, "__name__", "a filter")
    return f" for task {task.name} (rows kept by {name})" if task.row_filter else ""


def _nonempty(task: Task, examples: list[Example], place: object) -> list[Example]:
    # An empty split would train or score on nothing and report a meaningless 0.0.
    if not examples:
        raise DataError(f"{place}: no labelled rows{_filtered(task)}")
    return examples
