"""`eval` across training runs in shared batches, `--compare`, `--csv`, and `predict` (issue 4)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import torch
from typer.testing import CliRunner

from attemptctl.engine.evaluate import evaluate
from attemptctl.method.attention import AttentionModule
from attemptctl.method.backbones import load_backbone
from attemptctl.method.mixture import PromptBank, PromptMixture
from attemptctl.tasks import Example, get_task
from registry import Registry

runner = CliRunner()
SMALL = ["--max-steps", "2", "--train-limit", "12", "--dev-limit", "6", "--test-limit", "6", "--batch-size", "4",
         "--max-length", "40", "--eval-every", "2"]


def run(*args, **kwargs):
    from attemptctl.cli import app

    return runner.invoke(app, [str(a) for a in args], **kwargs)


@pytest.fixture(scope="module")
def training(tmp_path_factory, real_data_dir, tiny_causal_dir):
    """Two sources, an ATTEMPT target (rte) and a PT target (rte@2) and another target (cb); with what
    each training printed."""
    path = tmp_path_factory.mktemp("eval") / "registry"
    common = ["--registry", path, "--data-dir", real_data_dir]
    steps = [["source", "train", "mnli", "--backbone", tiny_causal_dir, "--prompt-length", "4"],
             ["source", "train", "qqp", "--prompt-length", "4"],
             ["target", "train", "rte", "--sources", "mnli,qqp"],
             ["target", "train", "rte", "--variant", "pt", "--prompt-length", "4"],
             ["target", "train", "cb", "--sources", "mnli"]]
    printed = []
    for step in steps:
        result = run(*step, *common, *SMALL)
        assert result.exit_code == 0, result.output
        printed.append(result.output)
    return path, common, printed


@pytest.fixture(scope="module")
def trained(training):
    return training[:2]


def test_eval_every_target_in_one_table_and_csv(trained, accuracy_by_hand):
    path, common = trained
    table = run("eval", *common)
    assert table.exit_code == 0, table.output
    assert "rte" in table.output and "cb" in table.output
    rows = list(csv.DictReader(io.StringIO(run("eval", *common, "--csv").output)))
    assert [r["prompt"] for r in rows] == ["cb@1", "rte@2"]
    for row in rows:  # the shared-bank evaluation counts what each prompt alone predicts
        assert float(row["accuracy"]) == pytest.approx(accuracy_by_hand(path, common[3], row["prompt"]))


def test_compare_lays_versions_side_by_side(trained):
    _, common = trained
    result = run("eval", "rte", "--compare", *common, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["prompt"], r["variant"]) for r in rows] == [("rte@1", "attempt"), ("rte@2", "pt")]
    table = run("eval", "rte", "--compare", *common)
    assert table.exit_code == 0 and "Δ accuracy" in table.output
    # Δ is each version's accuracy minus the first version's, in points; the last cell of its line, after
    # the constant answer's accuracy on the same rows.
    first = rows[0]["metrics"]["accuracy"]
    for row in rows:
        [line] = [line for line in table.output.splitlines() if row["prompt"] in line]
        assert line.strip(" │").split("│")[-1].strip() == f"{100 * (row['metrics']['accuracy'] - first):+.1f}"
        assert line.strip(" │").split("│")[-2].strip() == f"{100 * row['constant']['metrics']['accuracy']:.1f}"


def constant_by_hand(data_dir, ref: str, registry_path, split: str = "test", limit: int | None = None
                     ) -> tuple[str, float]:
    """The best constant answer of a prompt's rows, counted by hand: for accuracy the most frequent gold
    label; for CB's macro-F1 (F1 2n/(n+N) of the label answered, 0 for the other two) the same label."""
    from collections import Counter
    from pathlib import Path

    from attemptctl.workflows.workspace import Workspace, split_examples

    ws = Workspace(Path(registry_path), Path(data_dir))
    task, rows = split_examples(ws, ws.registry().find(ref), split, limit)
    counts = Counter(e.target for e in rows)
    answer = max(task.labels, key=lambda label: counts[label])  # ties: the first label, as the tool breaks them
    n, total = counts[answer], len(rows)
    return answer, (2 * n / (n + total) / len(task.labels) if task.name == "cb" else n / total)


def test_eval_shows_the_constant_answer_on_the_same_rows(trained):
    """JSON, CSV and the table carry the best single label's score on the rows each prompt was scored on."""
    path, common = trained
    rows = json.loads(run("eval", *common, "--json").output)
    assert [r["prompt"] for r in rows] == ["cb@1", "rte@2"]
    for row in rows:
        answer, score = constant_by_hand(common[3], row["prompt"], path)
        primary = next(iter(row["metrics"]))
        assert row["constant"]["answer"] == answer and set(row["constant"]["metrics"]) == set(row["metrics"])
        assert row["constant"]["metrics"][primary] == pytest.approx(score)
    table = run("eval", *common)
    assert table.exit_code == 0, table.output
    header = next(line for line in table.output.splitlines() if "prompt" in line)
    assert header.split()[-3:] == ["constant", "rows", "s"]
    for row in rows:  # the constant sits beside the score, before the row count
        words = next(line for line in table.output.splitlines() if line.startswith(row["prompt"])).split()
        assert words[-3] == f"{100 * row['constant']['metrics'][next(iter(row['metrics']))]:.1f}"
    by_csv = {r["prompt"]: r for r in csv.DictReader(io.StringIO(run("eval", *common, "--csv").output))}
    assert float(by_csv["rte@2"]["constant_accuracy"]) == pytest.approx(rows[1]["constant"]["metrics"]["accuracy"])
    assert by_csv["cb@1"]["constant_answer"] == rows[0]["constant"]["answer"]
    [limited] = json.loads(run("eval", "rte@2", *common, "--split", "dev", "--limit", "3", "--json").output)
    assert limited["examples"] == 3  # the constant is counted on the rows scored, not the whole split
    answer, score = constant_by_hand(common[3], "rte@2", path, "dev", 3)
    assert limited["constant"] == {"answer": answer, "metrics": {"accuracy": pytest.approx(score)}}


def test_a_free_form_task_has_no_constant_answer(tmp_path, real_data_dir, tiny_causal_dir):
    common = ["--registry", tmp_path / "registry", "--data-dir", real_data_dir]
    tiny = ["--max-steps", "1", "--train-limit", "4", "--dev-limit", "2", "--test-limit", "2", "--batch-size", "2",
            "--max-length", "40", "--prompt-length", "4"]
    trained = run("source", "train", "squad", "--backbone", tiny_causal_dir, *common, *tiny)
    assert trained.exit_code == 0, trained.output
    [row] = json.loads(run("eval", "squad", *common, "--json").output)
    assert row["constant"] is None and row["examples"] == 2
    table = run("eval", "squad", *common)
    assert next(line for line in table.output.splitlines() if line.startswith("squad@1")).split()[-3] == "—"


def test_training_lines_name_the_split_and_the_rows(training):
    """Each dev check and each registration line reads ``dev accuracy 62.5 on 6 rows`` (6: --dev-limit)."""
    path, _, printed = training
    lines = [" ".join(text.split()) for text in printed]  # rich wraps long lines at 80 columns
    registry = Registry(path)
    mnli, rte, cb = registry.get("source", "mnli@1"), registry.get("target", "rte@1"), registry.get("target", "cb@1")
    assert re.search(r"^step 2: dev accuracy \d+\.\d on 6 rows", printed[2], re.MULTILINE), printed[2]
    assert f"registered source mnli@1 (dev accuracy {100 * mnli.metrics['dev']['mnli']['accuracy']:.1f} on 6 rows; " \
        in lines[0]
    assert f"registered target rte@1 (attempt over mnli@1, qqp@1; dev accuracy " \
           f"{100 * rte.metrics['dev']['rte']['accuracy']:.1f} on 6 rows)" in lines[2]
    dev = cb.metrics["dev"]["cb"]
    assert f"dev macro_f1 {100 * dev['macro_f1']:.1f}, accuracy {100 * dev['accuracy']:.1f} on 6 rows)" in lines[4]
    assert rte.metrics["dev_examples"] == {"rte": 6} and mnli.metrics["dev_examples"] == {"mnli": 6}
    assert not any(": dev rte:" in text or "rte accuracy" in text for text in lines)  # the old forms


def test_predict_from_argument_file_and_stdin(trained, tmp_path):
    _, common = trained
    registry = common[:2]
    one = '{"sentence1": "A cat sat on the mat.", "sentence2": "An animal sat."}'
    result = run("predict", "rte@1", one, *registry, "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["prediction"] in ("entailment", "not_entailment")
    assert row["input"].startswith("rte sentence1: A cat sat")
    assert set(row["attention"]) == {"mnli@1", "qqp@1", "(target)"}
    assert sum(row["attention"].values()) == pytest.approx(1.0, abs=1e-5)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(one + "\n\n" + one.replace("cat", "dog") + "\n")
    from_file = json.loads(run("predict", "rte@1", "--file", inputs, *registry, "--json").output)
    from_stdin = json.loads(run("predict", "rte@1", *registry, "--json", input=inputs.read_text()).output)
    assert len(from_file) == 2 and from_file == from_stdin
    assert from_file[0]["prediction"] == row["prediction"]  # the same input predicts the same, batched or not
    plain = run("predict", "rte@2", one, *registry)
    assert plain.exit_code == 0 and "—" in plain.output  # plain prompt tuning has no attention


@pytest.mark.parametrize("payload,fragment", [("{not json", "argument:1:2: malformed JSON"),
                                              ('["a list"]', "expected a JSON object"),
                                              ('{"sentence1": "only one"}', "missing field 'sentence2'")])
def test_predict_bad_input_is_one_line(trained, payload, fragment):
    result = run("predict", "rte@1", payload, *trained[1][:2])
    assert result.exit_code == 1 and fragment in result.output and "Traceback" not in result.output


def test_eval_stores_results_with_each_version(trained):
    path, common = trained
    run("eval", "cb", *common, "--split", "dev")
    [latest, *_] = Registry(path).evaluations("target", "cb@1")
    assert latest.split == "dev" and latest.examples == 6


def test_a_mixed_bank_batch_scores_each_row_as_its_own_run(tiny_causal_dir):
    """Rows of two training runs (different sources and G) in one batch get the same predictions and
    attention as each run evaluated alone."""
    backbone = load_backbone(str(tiny_causal_dir))
    torch.manual_seed(3)
    d = backbone.d
    run_a = PromptMixture({"rte": torch.randn(3, d)}, sources={"s1@1": torch.randn(3, d), "s2@1": torch.randn(3, d)},
                          attention=AttentionModule(d), variant="attempt")
    run_b = PromptMixture({"cb": torch.randn(3, d)}, sources={"s3@1": torch.randn(3, d)},
                          attention=AttentionModule(d), variant="attempt")
    plain = PromptMixture({"rte": torch.randn(3, d)})
    bank = PromptBank({"rte@1": (run_a, "rte"), "cb@1": (run_b, "cb"), "rte@2": (plain, "rte")})
    examples = {"rte@1": [Example("rte", f"rte sentence1: a{i}. sentence2: b{i}.", "entailment", 0) for i in range(3)],
                "cb@1": [Example("cb", f"cb premise: p{i}. hypothesis: h{i}.", "neutral", 2) for i in range(3)],
                "rte@2": [Example("rte", f"rte sentence1: c{i}. sentence2: d{i}.", "entailment", 0) for i in range(2)]}
    tasks = {"rte@1": get_task("rte"), "cb@1": get_task("cb"), "rte@2": get_task("rte")}
    together = evaluate(backbone, bank, examples, tasks, batch_size=16)
    alone = {**evaluate(backbone, run_a, {"rte": examples["rte@1"]}, {"rte": tasks["rte@1"]}),
             **evaluate(backbone, run_b, {"cb": examples["cb@1"]}, {"cb": tasks["cb@1"]})}
    assert together["rte@1"].predictions == alone["rte"].predictions
    assert together["cb@1"].predictions == alone["cb"].predictions
    assert together["rte@1"].weights == pytest.approx(alone["rte"].weights, abs=1e-5)
    assert together["cb@1"].weights.shape == (3, 2) and together["rte@2"].weights is None


# --- label scoring (issue 28: summed log-probabilities favour short labels) ----------------------

def test_each_label_scoring_is_what_the_label_tokens_log_probabilities_say(tiny_causal_dir):
    """sum, mean and first from one pass equal the same numbers taken from the training path's
    per-token log-probabilities (``token_logprobs`` on the input with each label as its target)."""
    import torch

    from attemptctl.engine.evaluate import label_candidates
    from attemptctl.method import lm
    from attemptctl.method.backbones import load_backbone
    from attemptctl.tasks import get_task

    backbone = load_backbone(str(tiny_causal_dir), device="cpu")
    task = get_task("rte")  # entailment / not_entailment: labels of different token lengths
    candidates = label_candidates(backbone, task)
    assert len({len(c) for c in candidates}) == 2
    torch.manual_seed(0)
    prompt = torch.randn(4, backbone.d) * 0.02
    item = lm.encode(backbone, "rte sentence1: A cat sat. sentence2: A cat is sitting.", None, 64)
    (table,) = lm.label_score_table(backbone, prompt, [item], [candidates])
    for label, scored in zip(task.labels, table):
        encoded = lm.encode(backbone, "rte sentence1: A cat sat. sentence2: A cat is sitting.", label, 64)
        per_token = lm.token_logprobs(backbone, prompt, lm.collate(backbone, [encoded], [0]))[0]
        per_token = per_token[per_token != 0]
        assert scored["sum"] == pytest.approx(float(per_token.sum()), abs=1e-4)
        assert scored["mean"] == pytest.approx(float(per_token.sum()) / len(encoded.target_ids), abs=1e-4)
        assert scored["first"] == pytest.approx(float(per_token[0]), abs=1e-4)
    sums = lm.label_scores(backbone, prompt, [item], [candidates])
    assert sums == [[row["sum"] for row in table]]


def test_eval_with_another_label_scoring_prints_and_stores_nothing(trained):
    from registry import Registry

    path, common = trained
    before = len(Registry(path).evaluations("target", "cb@1"))
    result = run("eval", "cb", *common, "--label-scoring", "mean", "--json")
    assert result.exit_code == 0, result.output
    assert 0 <= json.loads(result.output)[0]["metrics"]["accuracy"] <= 1
    assert len(Registry(path).evaluations("target", "cb@1")) == before
    bad = run("eval", "cb", *common, "--label-scoring", "longest")
    assert bad.exit_code == 1 and "unknown label scoring 'longest'; choose one of sum, mean, first" in bad.output
