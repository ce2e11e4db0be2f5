"""Which label scoring should rank classification use? Measured on existing prompts, without training.

    python recipes/scoring.py --data-dir DIR [--registry R …] [--split dev] [--limit 200]

Every label prompt of the zoo (pulled into a temporary registry) and every latest target of the given
registries is scored once on its split's rows; one pass gives each candidate label's summed, mean
(length-normalised) and first-token log-probability (``lm.label_score_table``). For each scoring the
table prints the prompt's primary metric, how often it answers with the task's shortest label (in
tokens), and the mean margin of the gold label over the best other one. The summed log-probability
favours short labels (RTE's ``entailment`` is 3 tokens, ``not_entailment`` 6): this is how much.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attemptctl.method.lm import SCORINGS  # noqa: E402  (after the path)


def _rows_of(ws, record, split: str, limit: int):
    from attemptctl.workflows.workspace import split_examples

    task, examples = split_examples(ws, record, split, limit)
    return task, examples


def score_prompt(ws, backbone, record, split: str, limit: int, batch_size: int = 16) -> dict | None:
    """Per scoring: the primary metric, the share of shortest-label answers, the mean gold margin."""
    import torch

    from attemptctl.engine.batching import length_grouped_batches
    from attemptctl.engine.evaluate import label_candidates
    from attemptctl.method import lm
    from attemptctl.tasks.metrics import compute_metrics, primary_metric
    from attemptctl.workflows import payloads

    task, examples = _rows_of(ws, record, split, limit)
    if not task.labels or not examples:
        return None
    mixture = payloads.load_mixture(ws.registry(), [record], backbone).eval().to(backbone.device)
    candidates = label_candidates(backbone, task)
    shortest = min(range(len(candidates)), key=lambda k: len(candidates[k]))
    items = [lm.encode(backbone, e.input, None, record.config.get("max_length") or task.max_length, e.cut)
             for e in examples]
    table: list = [None] * len(items)
    with torch.no_grad():
        for indices in length_grouped_batches([len(i) for i in items], batch_size, shuffle=False):
            batch = lm.collate(backbone, [items[i] for i in indices], [0] * len(indices))
            prompt, _ = mixture(batch.task_ids, backbone.embed(batch.input_ids), batch.input_mask, share=True)
            for i, row in zip(indices, lm.label_score_table(backbone, prompt, [items[i] for i in indices],
                                                              [candidates] * len(indices))):
                table[i] = row
    metric, result = primary_metric(task), {"rows": len(examples)}
    for scoring in SCORINGS:
        picks = [max(range(len(row)), key=lambda k: row[k][scoring]) for row in table]
        predictions = [task.labels[k] for k in picks]
        margins = [row[e.label][scoring] - max(v[scoring] for k, v in enumerate(row) if k != e.label)
                   for row, e in zip(table, examples)]
        result[scoring] = {metric: compute_metrics(task, predictions, examples)[metric],
                           "shortest": sum(k == shortest for k in picks) / len(picks),
                           "margin": statistics.fmean(margins)}
    result["metric"], result["shortest_label"] = metric, task.labels[shortest]
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--registry", action="append", default=[], help="also score this registry's latest targets")
    parser.add_argument("--split", default="dev", choices=("dev", "test"))
    parser.add_argument("--limit", type=int, default=200, help="rows per prompt")
    args = parser.parse_args(argv)

    from attemptctl.workflows.workspace import Workspace
    from attemptctl.zoo import pull_zoo

    zoo = Workspace(Path(tempfile.mkdtemp(prefix="scoring-zoo-")), Path(args.data_dir), "smollm2-135m")
    pull_zoo(zoo.registry(), "smollm2-135m")
    spaces = [(zoo, "source")] + [(Workspace(Path(r), Path(args.data_dir)), "target") for r in args.registry]
    backbone = zoo.load_backbone("smollm2-135m")
    print("| prompt | registry | rows | shortest label | " + " | ".join(f"{s}: metric / shortest / margin"
                                                                        for s in SCORINGS) + " |")
    print("|---|---|---:|---|" + "---|" * len(SCORINGS))
    means = {s: [] for s in SCORINGS}
    for ws, kind in spaces:
        for record in ws.registry().list(kind=kind, latest_only=True):
            result = score_prompt(ws, backbone, record, args.split, args.limit)
            if result is None:
                continue
            cells = [f"{100 * result[s][result['metric']]:.1f} / {100 * result[s]['shortest']:.0f}% / "
                     f"{result[s]['margin']:+.2f}" for s in SCORINGS]
            where = "zoo" if ws is zoo else ws.registry_path.name
            print(f"| {record.ref} | {where} | {result['rows']} | {result['shortest_label']} | " + " | ".join(cells)
                  + " |", flush=True)
            for s in SCORINGS:
                means[s].append(result[s][result["metric"]])
    print("| **mean** | | | | " + " | ".join(f"**{100 * statistics.fmean(v):.1f}**" if v else "" for v in means.values())
          + " |")


if __name__ == "__main__":
    main()
