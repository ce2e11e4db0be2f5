"""Each method's difference from PT with its paired bootstrap interval, per target and for the average over
targets: the table ``study show`` prints under the scores. Torch-free.

A method's cell is paired with PT's cell of the same target, seed and shot count when both answered the same
ordered test rows (their digests agree), and the pairs of a target are pooled over seeds
(:mod:`attemptctl.studies.intervals`: seeds that test on the same rows share one draw over them). The constant-answer row does the same for the best single label of each
seed's rows (the label that scores best there, the results page's constant answer): a method's row reads
against PT, and PT's against a prompt that learned nothing.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from attemptctl.studies.answers import decode, examples_of, row_ids
from attemptctl.studies.cells import METHODS, Cell
from attemptctl.studies.intervals import (
    LEVEL,
    RESAMPLES,
    Difference,
    Draws,
    Interval,
    Scores,
    averaged,
    draw_rows,
    draw_shared_rows,
    paired,
    scored,
)
from attemptctl.studies.table import CONSTANT, CONSTANT_LABEL, CellResult, MethodsTable
from attemptctl.tasks import get_task
from attemptctl.tasks.base import Task
from attemptctl.tasks.metrics import constant_answer

BASELINE = "pt"
BOOTSTRAP_SEED = 0
"""With the target, seed and shot count, seeds the draw of a target's rows: every method shares it (paired),
each target and seed has its own (resampled independently), and the numbers are the same at every show."""


@dataclass(frozen=True)
class DifferenceRow:
    """One row of the table: a method (or the constant answer) minus PT, per target and on average."""

    method: str
    """A :data:`METHODS` name, or :data:`CONSTANT`."""
    shots: int | None
    targets: dict[str, Interval | None]
    """None: no pair on record (answers not kept, or no PT cell of the same rows)."""
    average: Interval | None
    """The mean over targets, resample by resample; None unless every target has its interval."""

    @property
    def label(self) -> str:
        return CONSTANT_LABEL if self.method == CONSTANT else METHODS[self.method][1]

    def as_dict(self) -> dict:
        return {"method": self.method, "label": self.label, "shots": self.shots,
                "targets": {t: None if i is None else i.as_dict() for t, i in self.targets.items()},
                "average": None if self.average is None else self.average.as_dict()}


@dataclass(frozen=True)
class _Baseline:
    """PT's cell of one target and seed, scored on the draws every method of those rows shares."""

    task: Task
    metric: str
    draws: Draws
    scores: Scores
    digest: str


def _baselines(table: MethodsTable, cells: Sequence[CellResult], resamples: int) -> dict[int, _Baseline | None]:
    """Seed -> PT's cell of one target and shot count scored on its draws. When every seed's rows have ids the
    seeds share one draw over the union of their rows (a row two seeds test on is drawn once); else each
    seed's rows are drawn on their own. The draws are seeded from the target and shot count."""
    task = get_task(cells[0].cell.target)
    kept = [c for c in cells if c.test_rows is not None]
    found: dict[int, _Baseline | None] = {c.cell.seed: None for c in cells}
    if not kept:
        return found
    gold = [table.test_rows[c.test_rows] for c in kept]
    examples = [examples_of(task, g) for g in gold]
    ids = [row_ids(g) for g in gold]
    target, shots = kept[0].cell.target, kept[0].cell.shots or 0
    if all(i is not None for i in ids):
        draws = draw_shared_rows(examples, ids, resamples, (BOOTSTRAP_SEED, zlib.crc32(target.encode()), shots))
    else:  # rows kept before ids were: each seed's on its own
        draws = [draw_rows(rows, resamples, (BOOTSTRAP_SEED, zlib.crc32(target.encode()), c.cell.seed, shots))
                 for c, rows in zip(kept, examples)]
    for c, d in zip(kept, draws):
        found[c.cell.seed] = _Baseline(task, c.metric, d, scored(task, c.metric, decode(task, c.predictions), d),
                                       c.test_rows)
    return found


def _constant(base: _Baseline) -> list[str] | None:
    """The best constant answer on these rows, every row answered alike; None for a free-form task."""
    rows = base.draws.examples
    constant = constant_answer(base.task, rows, base.metric)
    return None if constant is None else [constant.answer] * len(rows)


def _difference(cells: Mapping[Cell, CellResult], method: str, target: str, shots: int | None, seeds: Sequence[int],
                baselines: Mapping[tuple[str, int], _Baseline | None]) -> Difference | None:
    """``method`` − PT on ``target``, pooled over the seeds that have both on the same rows."""
    method_scores, pt_scores = [], []
    for seed in seeds:
        base = baselines.get((target, seed))
        if base is None:
            continue
        if method == CONSTANT:
            predictions = _constant(base)
        else:
            cell = cells.get(Cell(method, target, seed, shots))
            predictions = decode(base.task, cell.predictions) if cell and cell.test_rows == base.digest else None
        if predictions is not None:
            method_scores.append(scored(base.task, base.metric, predictions, base.draws))
            pt_scores.append(base.scores)
    return paired(method_scores, pt_scores) if method_scores else None


def differences(table: MethodsTable, resamples: int = RESAMPLES) -> list[DifferenceRow]:
    """Per shot count with PT cells: one row per other method, then the constant answer's; [] without PT."""
    cells = {c.cell: c for c in table.cells}
    rows = []
    for shots in table.shots:
        pts: dict[str, list[CellResult]] = {}
        for c in table.cells:
            if c.cell.method == BASELINE and c.cell.shots == shots:
                pts.setdefault(c.cell.target, []).append(c)
        baselines = {(target, seed): base for target, cells_of_target in pts.items()
                     for seed, base in _baselines(table, cells_of_target, resamples).items()}
        if not baselines:
            continue
        methods = [m for m in table.methods if m != BASELINE and any(c.method == m and c.shots == shots for c in cells)]
        for method in [*methods, CONSTANT]:
            found = {t: _difference(cells, method, t, shots, table.seeds, baselines) for t in table.targets}
            average = averaged(list(found.values())).interval() if all(found.values()) else None
            rows.append(DifferenceRow(method, shots, {t: d and d.interval() for t, d in found.items()}, average))
    return rows


def has_answers(table: MethodsTable) -> bool:
    """Whether any cell kept its per-row answers (an export from before they were kept has none)."""
    return any(c.test_rows for c in table.cells)


def difference_rows(table: MethodsTable, rows: list[DifferenceRow]) -> list[tuple[int | None, list[str], list[list]]]:
    """(shots, header, rows of (text, holds) cells) per shot count: what every rendering prints."""
    tables = []
    for shots in dict.fromkeys(row.shots for row in rows):
        what = f" ({shots}-shot)" if shots else ""
        body = [[(row.label, False), *((_text(row.targets[t]), _holds(row.targets[t])) for t in table.targets),
                 (_text(row.average), _holds(row.average))] for row in rows if row.shots == shots]
        tables.append((shots, [f"difference from PT{what}", *table.targets, "avg"], body))
    return tables


def _text(interval: Interval | None) -> str:
    return "n/a" if interval is None else interval.text()


def _holds(interval: Interval | None) -> bool:
    return interval is not None and interval.holds


def difference_note(rows: list[DifferenceRow], resamples: int = RESAMPLES, mark: str = "marked") -> str:
    """What the numbers are, how a difference that holds is marked, and why a cell is n/a when one is."""
    note = (f"Difference from PT in points of each target's metric: the method's cell minus PT's on the same "
            f"test rows at the same seed, pooled over seeds by their mean; in brackets the {LEVEL:.0%} paired "
            f"bootstrap interval ({resamples:,} resamples of the rows, the same draws for both). {mark}: the "
            "interval excludes 0, the difference holds.")
    if any(i is None for row in rows for i in (*row.targets.values(), row.average)):
        note += (" n/a: no per-row test answers on record for the cell or for PT's cell of the same seed and rows "
                 "(cells scored before answers were kept; the constant answer of a free-form task); an average "
                 "needs every target.")
    return note


def differences_dict(rows: list[DifferenceRow], resamples: int = RESAMPLES) -> dict:
    """The JSON of the table (the export's ``differences``)."""
    return {"baseline": BASELINE, "resamples": resamples, "level": LEVEL, "rows": [r.as_dict() for r in rows],
            "note": difference_note(rows, resamples, "holds") if rows else "no PT cell: no differences"}
