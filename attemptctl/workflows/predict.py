"""`predict`: outputs (and attention) of a registered prompt for new input rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from attemptctl.engine.evaluate import evaluate
from attemptctl.errors import DataError
from attemptctl.tasks import Example, task_of
from attemptctl.workflows import payloads
from attemptctl.workflows.eval import checked_decoding, generation_limit
from attemptctl.workflows.workspace import Workspace


@dataclass(frozen=True)
class Prediction:
    """One input's output and, for mixing targets, its attention over the sources and its own prompt."""

    input: str
    prediction: str
    attention: dict[str, float] | None


def parse_inputs(lines: Iterable[str], origin: str) -> list[dict]:
    """JSON objects, one per line (blank lines skipped); errors name ``origin:line``."""
    rows = []
    for number, line in enumerate(lines, start=1):
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{origin}:{number}:{exc.colno}: malformed JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise DataError(f"{origin}:{number}: expected a JSON object with the task's fields, got {type(row).__name__}")
        rows.append(row)
    if not rows:
        raise DataError(f"{origin}: no input; give one JSON object per line")
    return rows


def predict(ws: Workspace, ref: str, rows: Sequence[dict], *, origin: str = "input", decode: str = "rank",
            batch_size: int = 16, scoring: str | None = None) -> list[Prediction]:
    """Predict outputs for raw input rows (the task's fields) with a registered prompt."""
    scoring = checked_decoding(decode, scoring)
    registry = ws.registry()
    record = registry.find(ref, kinds=("target", "source"))
    task = task_of(record)
    examples = []
    for number, row in enumerate(rows, start=1):
        try:
            text, cut = task.input_and_cut(row)
            examples.append(Example(task.name, text, "", None, cut=cut))
        except KeyError as exc:
            raise DataError(f"{origin}:{number}: missing field {exc}; {task.name} takes "
                            f"{', '.join(task.fields)}") from None
        except ValueError as exc:
            raise DataError(f"{origin}:{number}: {exc}") from None
    backbone = ws.load_backbone(ws.backbone or record.backbone)
    mixture = payloads.load_mixture(registry, [record], backbone)
    result = evaluate(backbone, mixture, {record.name: examples}, {record.name: task},
                      max_length=record.config.get("max_length"), max_new_tokens=generation_limit(record),
                      batch_size=batch_size, decode=decode, score=False, scoring=scoring)[record.name]
    weights = result.weights
    return [Prediction(e.input, p, None if weights is None else dict(zip(mixture.columns, map(float, weights[i]))))
            for i, (e, p) in enumerate(zip(examples, result.predictions))]
