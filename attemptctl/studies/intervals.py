"""Paired bootstrap intervals of a method's difference from a baseline (PT), per target and over targets.

Two methods scored on the same test rows are compared row by row: each resample draws the rows with
replacement once and scores both methods on that one draw, so the luck of the rows they share (a hard
row is hard for both) cancels, and the interval measures what differs between the methods (Koehn,
2004; Dror et al., 2018). The metric is recomputed on every resample with the project's own code:
F1 and macro-F1 are not means over rows, so per-row scores averaged would give another number.

Seeds are pooled as the table pools them, by their mean: a resample's difference is the mean of the
seeds' differences. Seeds often test on the same rows (under ``--split-protocol heldout`` every seed tests
on the whole validation split, in its own order; the paper's halves of two seeds overlap by about half),
and resampling each seed on its own would count a shared row once per seed: the interval would be too
narrow. So when the rows carry ids (:func:`attemptctl.studies.answers.gold_of` keeps one per row), one
draw over the union of the seeds' rows serves every seed, each taking the drawn rows it has (a cluster
bootstrap by row). Rows kept before ids were are resampled per seed, as if the seeds' rows were disjoint. Over targets likewise: a
resample's difference is the mean of the targets' (each target resampled on its own), as the table's
average column is the mean of the targets' means. The interval is the 2.5th to 97.5th percentile of
the resampled differences; a difference *holds* when that interval excludes 0.

Pure: numpy and :mod:`attemptctl.tasks.metrics`; no registry, no torch.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from attemptctl.tasks.metrics import METRICS

if TYPE_CHECKING:  # annotations only, as metrics.py does
    from attemptctl.tasks.base import Example, Task

RESAMPLES = 1000
"""Bootstrap resamples B: enough for stable 2.5/97.5 percentiles (about ±0.3 points on a 1,000-row test)."""
LEVEL = 0.95


def _points(value: float) -> str:
    """A difference in [-1, 1] as signed points, ``+5.5``; a rounded zero is ``+0.0``, never ``-0.0``."""
    return f"{round(100 * value, 1) + 0.0:+.1f}"


@dataclass(frozen=True)
class Interval:
    """A difference (method − baseline, as a fraction) and its percentile bootstrap interval."""

    difference: float
    low: float
    high: float
    seeds: int
    """Seeds pooled (over targets: the fewest any target pooled)."""

    @property
    def holds(self) -> bool:
        """The interval excludes 0: the difference is more than the luck of the test rows drawn."""
        return self.low > 0 or self.high < 0

    def text(self) -> str:
        return f"{_points(self.difference)} [{_points(self.low)}, {_points(self.high)}]"

    def as_dict(self) -> dict:
        return {"difference": self.difference, "low": self.low, "high": self.high, "seeds": self.seeds,
                "holds": self.holds}


@dataclass(frozen=True)
class Scores:
    """A metric on all of one seed's test rows, and on each resample of those rows."""

    full: float
    resampled: np.ndarray
    """(B,): the metric on each draw of :func:`resample_rows`."""


@dataclass(frozen=True)
class Difference:
    """Method − baseline on the full rows and on each resample, pooled over seeds (or targets)."""

    point: float
    resampled: np.ndarray
    """(B,)"""
    seeds: int

    def interval(self, level: float = LEVEL) -> Interval:
        low, high = np.percentile(self.resampled, [50 * (1 - level), 50 * (1 + level)])
        return Interval(self.point, float(low), float(high), self.seeds)


def resample_rows(rows: int, resamples: int = RESAMPLES, seed: int | Sequence[int] = 0) -> np.ndarray:
    """(B, rows) row indices drawn with replacement, seeded; one draw serves every method scored on these
    rows, which is what pairs them."""
    if rows < 1 or resamples < 1:
        raise ValueError(f"a bootstrap needs rows and resamples; got {rows} rows, {resamples} resamples")
    return np.random.default_rng(seed).integers(0, rows, size=(resamples, rows))


@dataclass(frozen=True)
class Draws:
    """B resamples of one seed's ordered test rows, each resample's rows gathered once for every method
    scored on them."""

    examples: Sequence[Example]
    indices: np.ndarray | list[np.ndarray]
    """(B, n) row indices; or B arrays of any length (rows drawn from the union of several seeds' rows)."""
    rows: list[list[Example]]
    """The rows of each resample."""


def _gather(values: Sequence, indices: np.ndarray | list[np.ndarray]) -> list[list]:
    """``values[indices]`` for any objects, one list per resample: numpy's indexing, many times faster than a
    loop per row."""
    items = np.empty(len(values), dtype=object)
    items[:] = list(values)
    if isinstance(indices, np.ndarray):
        return items[indices].tolist()
    return [items[i].tolist() for i in indices]


def draw_rows(examples: Sequence[Example], resamples: int = RESAMPLES, seed: int | Sequence[int] = 0) -> Draws:
    """The resamples every method scored on ``examples`` shares (see :func:`resample_rows`)."""
    indices = resample_rows(len(examples), resamples, seed)
    return Draws(examples, indices, _gather(examples, indices))


def draw_shared_rows(examples: Sequence[Sequence[Example]], ids: Sequence[Sequence[str]], resamples: int = RESAMPLES,
                     seed: int | Sequence[int] = 0) -> list[Draws]:
    """One draw over the union of several seeds' rows (named by ``ids``), seen by each seed as the drawn rows it
    has, as often as they were drawn: each seed's :class:`Draws`. A row two seeds share counts once."""
    if len(examples) != len(ids) or any(len(e) != len(i) for e, i in zip(examples, ids)):
        raise ValueError("give one id per row of every seed")
    union = sorted({row for seed_ids in ids for row in seed_ids})
    position = {row: k for k, row in enumerate(union)}
    drawn = resample_rows(len(union), resamples, seed)  # (B, U) indices into the union
    draws = []
    for rows, seed_ids in zip(examples, ids):
        local: list[list[int]] = [[] for _ in union]  # union row -> this seed's rows with that id
        for i, row in enumerate(seed_ids):
            local[position[row]].append(i)
        if all(len(owned) <= 1 for owned in local):  # ids unique within the seed: one numpy lookup
            lookup = np.array([owned[0] if owned else -1 for owned in local])
            picked = lookup[drawn]
            indices = [row[row >= 0] for row in picked]
        else:  # an input repeated within the seed: a drawn id brings every row that has it
            indices = [np.array([i for u in row for i in local[u]], dtype=np.int64) for row in drawn]
        draws.append(Draws(rows, indices, _gather(rows, indices)))
    return draws


def scored(task: Task, metric: str, predictions: Sequence[str], draws: Draws) -> Scores:
    """``metric`` (a :data:`METRICS` name) of ``predictions`` on all the rows and on each resample's (a
    resample that drew none of this seed's rows scores as the full rows do: it adds no difference)."""
    if len(predictions) != len(draws.examples):
        raise ValueError(f"{task.name}: {len(predictions)} predictions for {len(draws.examples)} test rows")
    score = METRICS[metric]
    full = float(score(task, predictions, draws.examples))
    picked = _gather(predictions, draws.indices)
    resampled = [score(task, answers, rows) if rows else full for answers, rows in zip(picked, draws.rows)]
    return Scores(full, np.asarray(resampled, dtype=np.float64))


def paired(method: Sequence[Scores], baseline: Sequence[Scores]) -> Difference:
    """Pooled over seeds: ``method[i]`` and ``baseline[i]`` are one seed's scores on the same draws."""
    if not method or len(method) != len(baseline):
        raise ValueError(f"pair each seed's scores: {len(method)} of the method's, {len(baseline)} of the baseline's")
    point = statistics.fmean(m.full - b.full for m, b in zip(method, baseline))
    resampled = np.mean([m.resampled - b.resampled for m, b in zip(method, baseline)], axis=0)
    return Difference(point, resampled, len(method))


def averaged(differences: Sequence[Difference]) -> Difference:
    """The mean over targets, resample by resample (the table's average column, with its interval)."""
    if not differences:
        raise ValueError("average the differences of at least one target")
    return Difference(statistics.fmean(d.point for d in differences),
                      np.mean([d.resampled for d in differences], axis=0), min(d.seeds for d in differences))


@dataclass(frozen=True)
class SeedRows:
    """One seed's ordered test rows, as a method and the baseline answered them."""

    method: Sequence[str]
    baseline: Sequence[str]
    examples: Sequence[Example]
    ids: Sequence[str] | None = None
    """One id per row (:func:`attemptctl.studies.answers.row_ids`), so that seeds sharing rows share draws."""


def seed_draws(examples: Sequence[Sequence[Example]], ids: Sequence[Sequence[str] | None], resamples: int = RESAMPLES,
               seed: int | Sequence[int] = 0) -> list[Draws]:
    """Each seed's draws: one draw over the union of their rows when every seed's rows have ids
    (:func:`draw_shared_rows`), else each seed's rows on their own, by a generator of its own (``[*seed, i]``)."""
    base = [seed] if isinstance(seed, int) else list(seed)
    if ids and all(i is not None for i in ids):
        return draw_shared_rows(examples, ids, resamples, base)
    return [draw_rows(rows, resamples, (*base, i)) for i, rows in enumerate(examples)]


def paired_difference(task: Task, metric: str, seeds: Sequence[SeedRows], *, resamples: int = RESAMPLES,
                      seed: int = 0) -> Difference:
    """metric(method) − metric(baseline) on each seed's rows, pooled over seeds; the seeds share one draw over
    their rows when the rows have ids, else each seed's rows are resampled on their own."""
    draws = seed_draws([rows.examples for rows in seeds], [rows.ids for rows in seeds], resamples, seed)
    method = [scored(task, metric, rows.method, d) for rows, d in zip(seeds, draws)]
    baseline = [scored(task, metric, rows.baseline, d) for rows, d in zip(seeds, draws)]
    return paired(method, baseline)


POWER = 0.8
"""The power at which :func:`detectable_difference` reports (the usual 80%)."""


def detectable_difference(rows: int, *, discordant: float | None = None, accuracy: float = 0.5,
                          level: float = LEVEL, power: float = POWER) -> float:
    """The smallest accuracy difference a two-sided test at ``level`` finds with probability ``power`` on
    ``rows`` test rows (normal approximation), as a fraction.

    Unpaired (``discordant`` None): two independent accuracies near ``accuracy`` (0.5 is the worst case),
    ``(z_(1+level)/2 + z_power) * sqrt(2 p (1 - p) / rows)``. Paired, as the intervals are: two methods
    that disagree on a share ``discordant`` of the rows, ``(z + z) * sqrt(discordant / rows)`` (McNemar's
    test; the pairing removes the rows' luck that both share). F1 and macro-F1 are not accuracies: for
    them it is a guide, not the exact power. Seeds that test on the same rows do not add rows.
    """
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    z = statistics.NormalDist()
    spread = z.inv_cdf((1 + level) / 2) + z.inv_cdf(power)
    if discordant is None:
        return spread * (2 * accuracy * (1 - accuracy) / rows) ** 0.5
    if not 0 <= discordant <= 1:
        raise ValueError(f"discordant is a share of rows in [0, 1], got {discordant}")
    return spread * (discordant / rows) ** 0.5
