"""A methods study's table, from the registry or from exports, with no torch."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from attemptctl.errors import ConfigError
from attemptctl.formatting import percent
from attemptctl.method.variants import variant_of
from attemptctl.studies.answers import Stored, examples_of, stored_answers
from attemptctl.studies.cells import (
    ATTENTION_METHODS,
    BUDGET_KEYS,
    METHODS,
    PER_TARGET_BUDGET,
    Cell,
    cell_of,
    finished_cells,
    stored_attention,
    study_names,
    study_records,
)
from attemptctl.tasks import CONFIG_BEFORE, get_task, label_words_of
from attemptctl.tasks.metrics import constant_answer, primary_metric
from attemptctl.workflows.workspace import Workspace
from registry import NotFoundError, PromptRecord, Registry


CONSTANT = "constant"
"""The constant-answer row's method name in the JSON and CSV (no method trains it)."""
CONSTANT_LABEL = "constant answer"


@dataclass(frozen=True)
class CellResult:
    """A finished cell as the registry holds it."""

    cell: Cell
    ref: str
    sources: tuple[str, ...]
    metric: str
    score: float
    """The target's primary test metric, in [0, 1]."""
    params: int
    """Trainable parameters of this task: its prompt (none for no-target) and its share of G."""
    budget: dict
    train_seconds: float
    eval_seconds: float
    run: str
    """The training run (cells of one attempt-mt run share it)."""
    attention: dict[str, float] | None
    best_step: int | None = None
    """The step whose state was kept on dev: 0 is the untrained start (``--eval-start``); None for an
    export written before it was recorded."""
    start: str | None = None
    """Where the prompt started (the record's ``init``: ``vocab``, ``source:mnli@1``, …), so SPoT's pick
    is on record; None for an export written before it was recorded."""
    predictions: Stored | None = None
    """The cell's test answers row by row (:mod:`attemptctl.studies.answers`); None for a cell scored
    before they were kept."""
    test_rows: str | None = None
    """The digest of the test rows ``predictions`` answer (the table's ``test_rows`` holds their gold)."""
    curve: tuple[tuple[int, float], ...] | None = None
    """A learning curve (``--curve-steps``): (step, the primary test metric) at each step scored; None without."""
    source_sha256: dict[str, str] | None = None
    """Each source prompt the cell mixed or started from, by ref, with the first 16 hex digits of its sha256:
    what ``mnli@1`` was in the registry that trained it. None for a cell exported before they were kept."""


@dataclass(frozen=True)
class Summary:
    """One table cell: mean and sample standard deviation over seeds (None under two seeds)."""

    mean: float
    std: float | None
    n: int

    def text(self) -> str:
        return percent(self.mean) + (f" ± {percent(self.std)}" if self.std is not None else "")


def _summary(values: Sequence[float]) -> Summary | None:
    if not values:
        return None
    return Summary(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


@dataclass(frozen=True)
class MethodsTable:
    """A methods study: its finished cells, how they summarise, and which break the equal budget."""

    name: str
    cells: tuple[CellResult, ...]
    methods: tuple[str, ...]
    targets: tuple[str, ...]
    seeds: tuple[int, ...]
    shots: tuple[int | None, ...]
    budget_issues: tuple[str, ...]
    flagged: frozenset
    """Cells whose budget differs from the study's (marked in the table)."""
    unfinished: int
    """Cells tagged in the registry that have no finished version (interrupted or never evaluated)."""
    test_rows: Mapping[str, Mapping] = field(default_factory=dict)
    """Digest -> the gold answers of one target's test rows at one seed, kept once for all its cells."""

    def seeds_caption(self) -> str:
        """What a table's ± is over: "seed 1", "mean ± std over seeds 1, 2" when every cell group has every
        seed, else which groups have fewer (a study still running has some cells on one seed only)."""
        seeds = ", ".join(map(str, self.seeds))
        if len(self.seeds) < 2:
            return f"seed {seeds}"
        groups: dict[tuple, set[int]] = defaultdict(set)
        for c in self.cells:
            groups[(c.cell.method, c.cell.target, c.cell.shots)].add(c.cell.seed)
        if all(len(have) == len(self.seeds) for have in groups.values()):
            return f"mean ± std over seeds {seeds}"
        return (f"mean ± std over the seeds each cell has of {seeds} ({sum(len(h) == 1 for h in groups.values())} "
                f"of {len(groups)} table cells rest on one seed so far, and show no ±)")

    def _scores(self, method: str, target: str, shots) -> dict[int, float]:
        return {c.cell.seed: c.score for c in self.cells
                if (c.cell.method, c.cell.target, c.cell.shots) == (method, target, shots)}

    def score(self, method: str, target: str, shots=None) -> Summary | None:
        return _summary(list(self._scores(method, target, shots).values()))

    def average(self, method: str, shots=None) -> Summary | None:
        """Mean of the targets' means; the spread is over seeds that have every target."""
        by_target = [self._scores(method, t, shots) for t in self.targets]
        if not by_target or not all(by_target):
            return None
        mean = statistics.fmean(statistics.fmean(s.values()) for s in by_target)
        complete = [seed for seed in self.seeds if all(seed in s for s in by_target)]
        spread = [statistics.fmean(s[seed] for s in by_target) for seed in complete]
        return Summary(mean, statistics.stdev(spread) if len(spread) > 1 else None, len(complete))

    def constant(self, target: str, shots=None) -> Summary | None:
        """The best constant answer's score on the test rows the target's cells were scored on, mean over
        seeds (each seed has its own rows); None unless every such cell kept its rows (answers kept) and they
        agree within a seed, or for a free-form task."""
        rows: dict[int, set] = defaultdict(set)
        for c in self.cells:
            if (c.cell.target, c.cell.shots) == (target, shots):
                rows[c.cell.seed].add(c.test_rows)
        if not rows or any(len(digests) != 1 or None in digests for digests in rows.values()):
            return None
        task = get_task(target)
        metric = primary_metric(task)
        scores = []
        for seed in sorted(rows):
            constant = constant_answer(task, examples_of(task, self.test_rows[next(iter(rows[seed]))]), metric)
            if constant is None:
                return None
            scores.append(constant.metrics[metric])
        return Summary(statistics.fmean(scores), None, len(scores))  # the rows' own number: no spread to report

    def constant_average(self, shots=None) -> Summary | None:
        """The constant answer's mean over targets (None unless every target has one); no spread."""
        by_target = [self.constant(t, shots) for t in self.targets]
        if not by_target or None in by_target:
            return None
        return Summary(statistics.fmean(s.mean for s in by_target), None, min(s.n for s in by_target))

    def curves(self) -> list[tuple[str, str, int | None, dict[int, Summary]]]:
        """(method, target, shots, step -> the test score over the seeds that reached it) for every cell group
        with a learning curve, in the table's method and target order."""
        groups: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for c in self.cells:
            for step, score in c.curve or ():
                groups[(c.cell.method, c.cell.target, c.cell.shots)][step].append(score)
        order = {m: i for i, m in enumerate(METHODS)}
        return [(m, t, k, {step: _summary(values) for step, values in sorted(points.items())})
                for (m, t, k), points in sorted(groups.items(), key=lambda kv: (order[kv[0][0]],
                                                                                self.targets.index(kv[0][1])))]

    def params(self, method: str, shots=None) -> int | None:
        counts = Counter(c.params for c in self.cells if c.cell.method == method and c.cell.shots == shots)
        return counts.most_common(1)[0][0] if counts else None

    def marked(self, method: str, target: str, shots=None) -> bool:
        return any((c.method, c.target, c.shots) == (method, target, shots) for c in self.flagged)

    def attention(self) -> list[tuple[str, str, int | None, dict[str, float]]]:
        """(method, target, shots, mean attention over seeds) for every ATTEMPT cell group."""
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for c in self.cells:
            if c.attention:
                groups[(c.cell.method, c.cell.target, c.cell.shots)].append(c.attention)
        order = {m: i for i, m in enumerate(METHODS)}
        return [(m, t, k, {col: statistics.fmean(a.get(col, 0.0) for a in rows) for col in rows[0]})
                for (m, t, k), rows in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], self.targets.index(kv[0][1])))]

    def borrowed_words(self) -> dict[str, str]:
        """Target -> the task whose label words its cells answer in, for targets not answering in their own."""
        words = {c.cell.target: c.budget["label_words"] for c in self.cells if c.budget.get("label_words")}
        return {t: words[t] for t in self.targets if t in words}

    def borrowed_note(self) -> str:
        """One sentence naming the borrowed label words, or ``""``."""
        words = self.borrowed_words()
        return ("Label words: " + "; ".join(f"{t} answers in {s}'s" for t, s in words.items()) + ".") if words else ""

    def kept_start_note(self) -> str:
        """One sentence counting, per method, the cells that kept their untrained start (best dev step 0,
        so what was scored is the initial prompt and an untrained G), or ``""`` when none did."""
        kept = Counter(c.cell.method for c in self.cells if c.best_step == 0)
        if not kept:
            return ""
        known = Counter(c.cell.method for c in self.cells if c.best_step is not None)
        unknown = sum(c.best_step is None for c in self.cells)

        def cells(n: int) -> str:
            return f"{n} cell" + ("" if n == 1 else "s")
        return ("Kept the untrained start (dev best at step 0): "
                + ", ".join(f"{METHODS[m][1]} {kept[m]} of {cells(known[m])}" for m in self.methods if known[m])
                + (" (a multi-task run's cells share its step)" if known["attempt-mt"] else "") + "."
                + (f" {cells(unknown)} {'has' if unknown == 1 else 'have'} no kept step on record (trained or "
                   "exported before it was recorded)." if unknown else ""))

    @property
    def seconds(self) -> float:
        """Training time (a shared run once) plus evaluation time of every finished cell."""
        runs = {c.run: c.train_seconds for c in self.cells}
        return sum(runs.values()) + sum(c.eval_seconds for c in self.cells)

    def as_dict(self) -> dict:
        rows = []
        for shots in self.shots:
            for method in self.methods:
                summaries = {t: self.score(method, t, shots) for t in self.targets}
                average = self.average(method, shots)
                rows.append({"method": method, "label": METHODS[method][1], "shots": shots,
                             "params": self.params(method, shots),
                             "scores": {t: None if s is None else vars(s) for t, s in summaries.items()},
                             "average": None if average is None else vars(average)})
            constants = {t: self.constant(t, shots) for t in self.targets}
            if any(constants.values()):
                average = self.constant_average(shots)
                rows.append({"method": CONSTANT, "label": CONSTANT_LABEL, "shots": shots, "params": 0,
                             "scores": {t: None if s is None else vars(s) for t, s in constants.items()},
                             "average": None if average is None else vars(average)})
        cells = [{**c.cell.tag, "prompt": c.ref, "sources": list(c.sources), "metric": c.metric, "score": c.score,
                  "params": c.params, "budget": c.budget, "train_seconds": c.train_seconds,
                  "eval_seconds": c.eval_seconds, "run": c.run, "attention": c.attention,
                  "best_step": c.best_step, "start": c.start, "budget_differs": c.cell in self.flagged,
                  "predictions": c.predictions, "test_rows": c.test_rows,
                  "curve": None if c.curve is None else [list(point) for point in c.curve],
                  "source_sha256": c.source_sha256}
                 for c in self.cells]
        used = {c.test_rows for c in self.cells if c.test_rows}
        return {"study": self.name, "targets": list(self.targets), "seeds": list(self.seeds), "shots": list(self.shots),
                "rows": rows, "cells": cells, "budget_issues": list(self.budget_issues), "seconds": self.seconds,
                "unfinished": self.unfinished,
                "test_rows": {digest: dict(gold) for digest, gold in self.test_rows.items() if digest in used}}


def _parameters(payload: bytes) -> int:
    """Trainable values in G's safetensors bytes, from the header alone.

    G's weights live in submodules (``down.weight``, ``norm.bias``); its top-level entries are buffers
    (calibration statistics such as ``input_mean``) that never train.
    """
    size = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8:8 + size])
    total = 0
    for key, info in header.items():
        if key != "__metadata__" and "." in key:
            count = 1
            for dim in info["shape"]:
                count *= dim
            total += count
    return total


def _trainable(registry: Registry, record: PromptRecord, seen: dict[str, tuple[int, int]]) -> int:
    prompt = record.m * record.d if variant_of(record.variant).adds_target else 0  # no-target's prompt never enters
    if not record.attention:
        return prompt
    if record.attention not in seen:
        module = registry.get("attention", record.attention)
        seen[record.attention] = (_parameters(registry.load_payload(module)), len(module.task.split(",")))
    values, tasks = seen[record.attention]
    return prompt + round(values / tasks)  # a G shared by several targets counts once among them


def _budget(record: PromptRecord) -> dict:
    """Steps per target (a multi-task run's steps divided among its targets), batch, m and data rows."""
    steps, tasks = record.metrics.get("steps"), len(record.config.get("tasks") or [record.task])
    per_target = None if steps is None else steps // tasks if steps % tasks == 0 else steps / tasks
    return {"steps": per_target, "batch_size": record.config.get("batch_size"), "prompt_length": record.m,
            "rows": record.config.get("rows"), "labels": record.config.get("labels", CONFIG_BEFORE["labels"]),
            "label_words": label_words_of(record)}


def _spent(cell: CellResult, key: str):
    """One budget value of a cell (an export written before ``key`` existed has its old value)."""
    return cell.budget.get(key, CONFIG_BEFORE.get(key))


def _budget_issues(cells: Sequence[CellResult]) -> tuple[list[str], set[Cell]]:
    """Cells whose steps, batch, prompt length or label format differ from the study's usual one (per shot count), or
    whose data rows or borrowed label words differ from the other cells of their target."""
    issues, flagged = [], set()
    for key in BUDGET_KEYS:
        groups: dict[tuple, list[CellResult]] = defaultdict(list)
        for c in cells:
            groups[(c.cell.shots,) + ((c.cell.target,) if key in PER_TARGET_BUDGET else ())].append(c)
        for members in groups.values():
            usual, _ = Counter(json.dumps(_spent(c, key), sort_keys=True) for c in members).most_common(1)[0]
            for c in members:
                if json.dumps(_spent(c, key), sort_keys=True) != usual:
                    issues.append(f"{c.cell} ({c.ref}): {key.replace('_', ' ')} {_spent(c, key)}, "
                                  f"the study's {json.loads(usual)}")
                    flagged.add(c.cell)
    return issues, flagged


def _curve(points, task: str, metric: str, tasks: int = 1) -> tuple[tuple[int, float], ...] | None:
    """A record's learning curve (``metrics["curve"]``) as (step per target, the task's primary test metric): a
    multi-task run over ``tasks`` targets took ``tasks`` steps for each of a single-task cell's."""
    if not points:
        return None
    return tuple((int(p["step"]) // tasks, float(p["test"][task][metric])) for p in points
                 if metric in p["test"].get(task, {}))


def methods_table(registry: Registry, name: str) -> MethodsTable:
    """The study's table from its tagged versions and their stored test evaluations; no torch."""
    records = study_records(registry, name)
    done = finished_cells(registry, records)
    seen: dict[str, tuple[int, int]] = {}
    cells, test_rows = [], {}
    for cell, (record, evaluation) in done.items():
        metric = primary_metric(get_task(record.task))
        digest, predictions, gold = stored_answers(registry, record) or (None, None, None)
        if digest:
            test_rows[digest] = gold
        cells.append(CellResult(cell, record.ref, tuple(record.sources), metric, float(evaluation.metrics[metric]),
                                _trainable(registry, record, seen), _budget(record),
                                float(record.metrics.get("seconds", 0.0)), float(evaluation.seconds),
                                record.attention or record.ref,
                                stored_attention(registry, record) if cell.method in ATTENTION_METHODS else None,
                                record.metrics.get("best_step"), record.config.get("init"), predictions, digest,
                                _curve(record.metrics.get("curve"), record.task, metric,
                                       len(record.config.get("tasks") or [record.task])),
                                _source_sha256(registry, record)))
    unfinished = len({cell_of(r) for r in records} - set(done))
    return _table(name, cells, [cell_of(r).target for r in records], unfinished, test_rows)


def _source_sha256(registry: Registry, record: PromptRecord) -> dict[str, str]:
    """The sources ``record`` mixed, and the one it started from (SPoT's ``source:sst2@1``), each by ref with
    the start of its sha256."""
    init = str(record.config.get("init") or "")
    refs = [*record.sources, *([init.removeprefix("source:")] if init.startswith("source:") else [])]
    digests = {}
    for ref in dict.fromkeys(refs):
        try:
            digests[ref] = registry.get("source", ref).sha256[:16]
        except NotFoundError:  # a start source removed since (the mixed ones cannot be: they are linked)
            continue
    return digests


def _table(name: str, cells: list[CellResult], target_order: Sequence[str], unfinished: int,
           test_rows: Mapping[str, Mapping]) -> MethodsTable:
    cells = sorted(cells, key=lambda c: (list(METHODS).index(c.cell.method), c.cell))
    issues, flagged = _budget_issues(cells)
    first_seen = list(dict.fromkeys(target_order))
    return MethodsTable(name, tuple(cells), tuple(m for m in METHODS if any(c.cell.method == m for c in cells)),
                        tuple(t for t in first_seen if any(c.cell.target == t for c in cells)),
                        tuple(sorted({c.cell.seed for c in cells})),
                        tuple(sorted({c.cell.shots for c in cells}, key=lambda k: (k is not None, k or 0))),
                        tuple(issues), frozenset(flagged), unfinished, dict(test_rows))


def table_from_exports(name: str, exports: Sequence[tuple[str, Mapping]]) -> MethodsTable:
    """A study's table from ``--json`` exports of its cells (``study show --from``), with no registry.

    A study run on several machines or in several registries is one table this way: each export
    holds finished cells, a cell may appear in several exports only with the same prompt and score,
    and the equal budget is checked across all of them as within one registry. ``exports`` is
    (where it came from, the export's JSON) per export.
    """
    found: dict[Cell, tuple[str, CellResult]] = {}
    order: list[str] = []
    test_rows: dict[str, Mapping] = {}
    sources: dict[str, tuple[str, str, str]] = {}  # source name -> (the first export naming it, its ref, sha256)
    for origin, doc in exports:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("cells"), list):
            raise ConfigError(f"{origin} is not a study export (no list of cells); write one with "
                              "`attemptctl study show NAME --json`")
        if doc.get("study") != name:
            raise ConfigError(f"{origin} holds study '{doc.get('study')}', not '{name}'; give that name or other files")
        order += doc.get("targets") or []
        gold = doc.get("test_rows") or {}
        for row in doc["cells"]:
            try:
                cell = Cell(row["method"], row["target"], int(row["seed"]), row["shots"])
                result = CellResult(cell, row["prompt"], tuple(row["sources"]), row["metric"], float(row["score"]),
                                    int(row["params"]), dict(row["budget"]), float(row["train_seconds"]),
                                    float(row["eval_seconds"]), f"{origin}:{row['run']}", row["attention"],
                                    None if row.get("best_step") is None else int(row["best_step"]),
                                    None if row.get("start") is None else str(row["start"]),
                                    *_exported_answers(row, gold, test_rows),
                                    None if not row.get("curve") else tuple((int(s), float(v)) for s, v in row["curve"]),
                                    _exported_sources(row))
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"{origin}: a cell lacks or mangles {e}; export it again with `study show --json`") \
                    from None
            if cell.method not in METHODS:
                raise ConfigError(f"{origin}: unknown method '{cell.method}' in cell {cell}")
            for ref, digest in (result.source_sha256 or {}).items():
                first, known_ref, known = sources.setdefault(ref.split("@")[0], (origin, ref, digest))
                if known != digest:
                    raise ConfigError(f"source {known_ref} is sha256 {known} in {first} but {ref} is {digest} in "
                                      f"{origin}: their cells mixed different {ref.split('@')[0]} prompts; keep the "
                                      "exports of one set of sources (a study that outlives its zoo pins it: "
                                      "`source pull --zoo`)")
            if cell in found:
                first, seen = found[cell]
                if (seen.ref, seen.score) != (result.ref, result.score):
                    raise ConfigError(f"cell {cell} is in {first} ({seen.ref}, {percent(seen.score)}) and in {origin} "
                                      f"({result.ref}, {percent(result.score)}); keep one of the two files")
                # The same cell, one copy perhaps exported before best_step, start or its answers were recorded.
                answers = (seen.predictions, seen.test_rows) if seen.test_rows else (result.predictions,
                                                                                     result.test_rows)
                found[cell] = (first, replace(seen, best_step=result.best_step if seen.best_step is None
                                              else seen.best_step, start=seen.start or result.start,
                                              predictions=answers[0], test_rows=answers[1],
                                              curve=seen.curve or result.curve,
                                              source_sha256=None if seen.source_sha256 is None
                                              and result.source_sha256 is None
                                              else {**(result.source_sha256 or {}), **(seen.source_sha256 or {})}))
                continue
            found[cell] = (origin, result)
    if not found:
        raise ConfigError(f"no finished cell of study '{name}' in {', '.join(o for o, _ in exports) or 'no file'}")
    return _table(name, [result for _, result in found.values()], order, 0, test_rows)


def _exported_sources(row: Mapping) -> dict[str, str] | None:
    """An exported cell's ``source_sha256`` (ref -> the start of its sha256); None for a cell exported before
    they were kept. A mangled one raises TypeError."""
    kept = row.get("source_sha256")
    if kept is None:
        return None
    if not isinstance(kept, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in kept.items()):
        raise TypeError("source_sha256 (not a map of source refs to sha256 digits)")
    return dict(kept)


def _exported_answers(row: Mapping, gold: Mapping, test_rows: dict) -> tuple:
    """An exported cell's (predictions, test rows' digest), its rows' gold added to ``test_rows``; (None,
    None) for a cell exported before answers were kept. A mangled one raises KeyError or ValueError."""
    digest, predictions = row.get("test_rows"), row.get("predictions")
    if digest is None:
        return None, None
    rows = gold[digest]
    count = len(rows["labels"] if "labels" in rows else rows["targets"])
    if not isinstance(predictions, (str, list)) or len(predictions) != count:
        raise ValueError("predictions (not one per test row)")
    kept = test_rows.setdefault(digest, rows)

    def without_ids(gold: Mapping) -> dict:
        return {k: v for k, v in gold.items() if k != "ids"}
    if without_ids(kept) != without_ids(rows):
        raise ValueError(f"test rows {digest} (two exports disagree)")
    if "ids" in rows and "ids" not in kept:  # the same rows, one export from before ids were kept
        test_rows[digest] = rows
    return predictions, digest


def curve_panels(table: MethodsTable) -> list[tuple[str, str, list[tuple[str, dict[int, Summary]]]]]:
    """The learning curves by target (and shot count): (title, the target's metric, [(method label, step ->
    score over seeds)]), the constant answer last where the cells kept their test rows; refused, saying how
    to get them, when no cell has one."""
    panels: dict[tuple, list] = {}
    for method, target, shots, points in table.curves():
        label = METHODS[method][1] + (f" ({shots}-shot)" if shots else "")
        panels.setdefault((target, shots), []).append((label, points))
    if not panels:
        raise ConfigError(f"study '{table.name}' has no learning curve; train its cells with --curve-steps 0,100,300 "
                          "(study methods passes it to every cell)")
    metrics = {c.cell.target: c.metric for c in table.cells}
    for (target, shots), series in panels.items():  # the best constant answer, flat at every step drawn
        constant = table.constant(target, shots)
        if constant is not None:
            series.append((CONSTANT_LABEL, {step: constant for step in sorted({k for _, p in series for k in p})}))
    return [(target + (f" ({shots}-shot)" if shots else ""), metrics[target], series)
            for (target, shots), series in panels.items()]


def in_order(table: MethodsTable, targets: Sequence[str]) -> MethodsTable:
    """The table with ``targets`` as its first columns, in that order (the rest follow as they were);
    a target the study has no cell of is refused, naming the ones it has."""
    if not targets:
        raise ConfigError(f"--targets names no target; give some of: {', '.join(table.targets)}")
    unknown = [t for t in targets if t not in table.targets]
    if unknown:
        raise ConfigError(f"study '{table.name}' has no cell of target '{unknown[0]}'; "
                          f"give --targets some of: {', '.join(table.targets)}")
    rest = tuple(t for t in table.targets if t not in targets)
    return replace(table, targets=tuple(dict.fromkeys(targets)) + rest)


def show_study(ws: Workspace, name: str) -> MethodsTable:
    """``study show``: a study's table, refused when the registry holds no cell of it."""
    registry = ws.registry()
    table = methods_table(registry, name)
    if not table.cells:
        known = study_names(registry)
        raise ConfigError(f"no finished cell of study '{name}' in registry {registry.root}; "
                          + (f"studies: {', '.join(known)}" if known else "run `attemptctl study methods` first"))
    return table
