"""A methods study's table as files and text: JSON exports (written after every cell, read back by
``study show --from``), Markdown and CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping

from attemptctl.errors import ConfigError
from attemptctl.formatting import percent
from attemptctl.studies.cells import METHODS, TARGET_COLUMN
from attemptctl.studies.differences import difference_note, difference_rows, differences, differences_dict, has_answers
from attemptctl.studies.table import CONSTANT_LABEL, MethodsTable


def read_export(path) -> dict:
    """A ``study show --json`` export, or one clear error naming the file."""
    from pathlib import Path

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"study export {path} does not exist; write one with `study methods --export {path}`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"study export {path} is not readable JSON ({e}); export it again") from None


def check_export(path, table: MethodsTable) -> None:
    """Refuse to overwrite an export that holds a cell this table lacks (another registry's work)."""
    from pathlib import Path

    if not Path(path).exists():
        return
    doc = read_export(path)
    mine = {(c.cell.method, c.cell.target, c.cell.seed, c.cell.shots, c.ref) for c in table.cells}
    theirs = [(r.get("method"), r.get("target"), r.get("seed"), r.get("shots"), r.get("prompt"))
              for r in doc.get("cells") or [] if isinstance(r, Mapping)]
    lost = [t for t in theirs if t not in mine]
    if doc.get("study") not in (None, table.name) or lost:
        what = f"study '{doc.get('study')}'" if doc.get("study") != table.name else f"{len(lost)} cell(s) this registry lacks"
        raise ConfigError(f"{path} holds {what}; export to a new file (`study show --from` reads several)")


def write_export(path, table: MethodsTable) -> None:
    """The table's JSON, written whole or not at all (a temporary file renamed over the old one)."""
    import os
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(table_json(table), indent=1, sort_keys=True) + "\n")
    os.replace(temporary, path)


def table_json(table: MethodsTable) -> dict:
    """``study show --json`` and the export: the table, its cells with their answers, and the differences from
    PT with their intervals (recomputed from the answers whenever the export is read)."""
    return {**table.as_dict(), "differences": differences_dict(differences(table))}


def _header(table: MethodsTable, shots) -> list[str]:
    what = f" ({shots}-shot)" if shots else ""
    return [f"method{what}", "params/task", *table.targets, "avg"]


def _row(table: MethodsTable, method: str, shots) -> list[str]:
    def text(summary, marked=False):
        return "—" if summary is None else summary.text() + (" †" if marked else "")
    params = table.params(method, shots)
    return [METHODS[method][1], "—" if params is None else f"{params:,}",
            *(text(table.score(method, t, shots), table.marked(method, t, shots)) for t in table.targets),
            text(table.average(method, shots))]


def _constant_row(table: MethodsTable, shots) -> list[str] | None:
    """The constant answer's row (params 0, no spread: it learns nothing); None when no target's cells kept
    their test rows (an export from before answers were kept: the results page adds its own row then)."""
    scores = [table.constant(t, shots) for t in table.targets]
    if not any(scores):
        return None
    average = table.constant_average(shots)
    return [CONSTANT_LABEL, "0", *("—" if s is None else percent(s.mean) for s in scores),
            "—" if average is None else percent(average.mean)]


def table_rows(table: MethodsTable) -> list[tuple[int | None, list[str], list[list[str]]]]:
    """(shots, header, rows of text) per shot count: what every rendering prints, the constant answer last."""
    tables = []
    for shots in table.shots:
        rows = [_row(table, m, shots) for m in table.methods
                if any(c.cell.method == m and c.cell.shots == shots for c in table.cells)]
        constant = _constant_row(table, shots)
        tables.append((shots, _header(table, shots), rows + ([constant] if constant else [])))
    return tables


def table_markdown(table: MethodsTable) -> str:
    parts = []
    for _, header, rows in table_rows(table):
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        parts.append("\n".join(lines))
    note = f"\n\nTest scores (%) of study `{table.name}`, {table.seeds_caption()}."
    if table.budget_issues:
        note += " †: a cell whose budget differs from the study's."
    for extra in (table.borrowed_note(), table.kept_start_note()):
        note += f" {extra}" if extra else ""
    attention = attention_markdown(table)
    intervals = differences_markdown(table)
    return ("\n\n".join(parts) + note + (f"\n\n{intervals}" if intervals else "")
            + (f"\n\n{attention}" if attention else ""))


def differences_markdown(table: MethodsTable) -> str:
    """Each method's difference from PT with its interval, bold where it holds; ``""`` for a study with no PT
    cell or none of whose cells kept its answers (an export from before they were kept prints as it did)."""
    rows = differences(table) if has_answers(table) else []
    if not rows:
        return ""
    parts = []
    for _, header, body in difference_rows(table, rows):
        lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        lines += ["| " + " | ".join(f"**{text}**" if holds else text for text, holds in row) + " |" for row in body]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n\n" + difference_note(rows, mark="**Bold**")


def attention_markdown(table: MethodsTable) -> str:
    """The mean test attention of every ATTEMPT target as a Markdown table (the heatmap's numbers)."""
    groups = table.attention()
    if not groups:
        return ""
    columns = list(dict.fromkeys(c for *_, weights in groups for c in weights if c != TARGET_COLUMN))
    columns.append(TARGET_COLUMN)
    lines = ["| method | target | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * len(columns)]
    for method, target, shots, weights in groups:
        cells = [f"{weights[c]:.2f}" if c in weights else "" for c in columns]
        lines.append(f"| {METHODS[method][1]} | {target}" + (f" ({shots}-shot)" if shots else "") + " | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + ("\n\nMean attention over each target's test examples, averaged over seeds; "
                               f"{TARGET_COLUMN} is a_t+1, the target prompt's own weight before the +1.")


def table_csv(table: MethodsTable) -> str:
    """One line per method, target and shot count: mean, std and seeds, plus the average as target ``avg``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["study", "method", "shots", "target", "metric", "mean", "std", "seeds", "params_per_task",
                     "budget_differs"])
    for row in table.as_dict()["rows"]:
        metrics = {c.cell.target: c.metric for c in table.cells}
        for target, summary in [*row["scores"].items(), ("avg", row["average"])]:
            if summary is None:
                continue
            differs = target != "avg" and table.marked(row["method"], target, row["shots"])
            writer.writerow([table.name, row["method"], row["shots"] or "", target, metrics.get(target, ""),
                             f"{summary['mean']:.6f}", "" if summary["std"] is None else f"{summary['std']:.6f}",
                             summary["n"], row["params"], int(differs)])
    return buffer.getvalue().rstrip("\n")
