"""`eval` across training runs in shared batches, `--compare`, `--csv`, and `predict` (issue 4)."""

from __future__ import annotations

import csv
import io
import json

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
def trained(tmp_path_factory, real_data_dir, tiny_causal_dir):
    """Two sources, an ATTEMPT target (rte) and a PT target (rte@2) and another target (cb)."""
    path = tmp_path_factory.mktemp("eval") / "registry"
    common = ["--registry", path, "--data-dir", real_data_dir]
    steps = [["source", "train", "mnli", "--backbone", tiny_causal_dir, "--prompt-length", "4"],
             ["source", "train", "qqp", "--prompt-length", "4"],
             ["target", "train", "rte", "--sources", "mnli,qqp"],
             ["target", "train", "rte", "--variant", "pt", "--prompt-length", "4"],
             ["target", "train", "cb", "--sources", "mnli"]]
    for step in steps:
        result = run(*step, *common, *SMALL)
        assert result.exit_code == 0, result.output
    return path, common


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
    # Δ is each version's accuracy minus the first version's, in points; the last cell of its line.
    first = rows[0]["metrics"]["accuracy"]
    for row in rows:
        [line] = [line for line in table.output.splitlines() if row["prompt"] in line]
        assert line.strip(" │").split("│")[-1].strip() == f"{100 * (row['metrics']['accuracy'] - first):+.1f}"


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
