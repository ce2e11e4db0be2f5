"""Multi-task ATTEMPT, the attention prior, compose, the sources study and every baseline/ablation,
end to end through the CLI on a tiny random Llama with the real tokenizer and real data slices."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load as load_tensors
from typer.testing import CliRunner

from attemptctl.engine.evaluate import evaluate
from attemptctl.engine.train import TrainConfig, _optimizer
from attemptctl.method import lm
from attemptctl.method.attention import AttentionModule
from attemptctl.method.backbones import load_backbone
from attemptctl.method.mixture import PromptMixture
from attemptctl.tasks import Example, get_task
from registry import Registry

runner = CliRunner()
SMALL = ["--max-steps", "2", "--train-limit", "12", "--dev-limit", "6", "--test-limit", "6", "--batch-size", "4",
         "--max-length", "40", "--eval-every", "2"]


def run(*args):
    result = runner.invoke(app_cli(), [str(a) for a in args])
    return result


def app_cli():
    from attemptctl.cli import app

    return app


@pytest.fixture(scope="module")
def sources_registry(tmp_path_factory, real_data_dir, tiny_causal_dir):
    """A registry with four tiny source prompts (m = 4)."""
    registry = tmp_path_factory.mktemp("variants") / "registry"
    common = ["--registry", registry, "--data-dir", real_data_dir]
    for i, task in enumerate(("mnli", "qqp", "qnli", "sst2")):
        extra = ["--backbone", tiny_causal_dir] if i == 0 else []
        result = run("source", "train", task, *common, *extra, *SMALL, "--prompt-length", "4")
        assert result.exit_code == 0, result.output
    return registry, common


def _blob(registry: Registry, kind: str, ref: str) -> dict:
    return load_tensors(registry.load_payload(registry.get(kind, ref)))


def test_multi_task_shares_one_attention_module_and_evaluates(sources_registry):
    path, common = sources_registry
    result = run("target", "train", "rte,cb", "--sources", "mnli,qqp", "--sampling-temperature", "4", *common, *SMALL)
    assert result.exit_code == 0, result.output
    registry = Registry(path)
    rte, cb = registry.get("target", "rte"), registry.get("target", "cb")
    assert rte.attention == cb.attention == "rte+cb@1"
    # Each dev check names every task with the rows it scored (--dev-limit 6); each target its own.
    printed = " ".join(result.output.split())
    assert re.search(r"step 2: dev: rte accuracy \d+\.\d on 6 rows; cb macro_f1 \d+\.\d, accuracy \d+\.\d on 6 rows",
                     printed), printed
    assert "registered target cb@1 (attempt over mnli@1, qqp@1; dev macro_f1 " in printed
    assert rte.metrics["dev_examples"] == {"rte": 6} and cb.metrics["dev_examples"] == {"cb": 6}
    assert rte.config["sampling_temperature"] == 4.0
    evaluated = json.loads(run("eval", "rte", "cb", *common, "--json").output)
    assert [row["prompt"] for row in evaluated] == ["rte@1", "cb@1"]
    assert all(row["examples"] == 6 for row in evaluated)


def test_attention_prior_initialises_g(sources_registry):
    path, common = sources_registry
    result = run("attn", "pretrain", "--sources", "mnli,qqp", "--name", "prior", *common, *SMALL)
    assert result.exit_code == 0, result.output
    registry = Registry(path)
    prior = registry.get("attention", "prior")
    assert prior.variant == "prior" and prior.config["sources"] == ["mnli@1", "qqp@1"]
    zero_lr = ["--attn-lr", "0"]  # G does not move, so the target's G must equal the prior exactly
    result = run("target", "train", "mrpc", "--sources", "mnli,qqp", "--attn-prior", "prior", *common, *SMALL, *zero_lr)
    assert result.exit_code == 0, result.output
    target = registry.get("target", "mrpc")
    assert target.config["attn_prior"] == "prior"
    trained, prior_tensors = _blob(registry, "attention", target.attention), _blob(registry, "attention", "prior")
    assert all(torch.equal(trained[k], prior_tensors[k]) for k in prior_tensors)


def test_compose_keeps_prompt_and_g_bit_identical(sources_registry, tiny_causal_dir):
    path, common = sources_registry
    assert run("target", "train", "boolq", "--sources", "mnli,qqp", *common, *SMALL).exit_code == 0
    result = run("target", "compose", "boolq", "--add", "qnli", "--remove", "qqp", *common)
    assert result.exit_code == 0, result.output
    registry = Registry(path)
    parent, child = registry.get("target", "boolq@1"), registry.get("target", "boolq@2")
    assert child.parent == "boolq@1" and child.sources == ("mnli@1", "qnli@1")
    assert child.sha256 == parent.sha256 and child.attention == parent.attention
    # The attention weights are a softmax over the new set: mnli, qnli and the target.
    shown = json.loads(run("attn", "show", "boolq@2", *common, "--json").output)
    weights = shown[0]["weights"] if isinstance(shown, list) else shown["rows"][0]["weights"]
    assert set(weights) == {"mnli@1", "qnli@1", "(target)"}
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    adapted = run("target", "compose", "boolq@1", "--add", "sst2", "--train-steps", "1", *common)
    assert adapted.exit_code == 0, adapted.output
    assert registry.get("target", "boolq@3").sources == ("mnli@1", "qqp@1", "sst2@1")
    bad = run("target", "compose", "boolq@1", "--remove", "sst2", *common)
    assert bad.exit_code == 1 and "does not mix 'sst2'" in bad.output


def test_sources_study_adds_one_source_at_a_time(sources_registry):
    path, common = sources_registry
    if not any(r.name == "boolq" for r in Registry(path).list(kind="target")):
        assert run("target", "train", "boolq", "--sources", "mnli,qqp", *common, *SMALL).exit_code == 0
    result = run("study", "sources", "boolq@1", "--sources", "mnli,qqp,sst2", *common, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["sources"] for r in rows] == [["mnli@1"], ["mnli@1", "qqp@1"], ["mnli@1", "qqp@1", "sst2@1"]]
    for row in rows:
        assert sum(row["attention"].values()) == pytest.approx(1.0, abs=1e-5)
    table = run("study", "sources", "boolq@1", "--sources", "mnli,qqp", *common)
    assert table.exit_code == 0 and "mnli + qqp" in table.output


@pytest.mark.parametrize("variant,extra", [("pt", []), ("spot", ["--init-from", "mnli"]),
                                           ("spot", ["--init-from", "auto", "--sources", "mnli,qqp"]),
                                           ("no-target", ["--sources", "mnli,qqp"]),
                                           ("uniform", ["--sources", "mnli,qqp"]), ("attempt", ["--sources", "mnli"])])
def test_every_variant_trains_and_evaluates(sources_registry, variant, extra, accuracy_by_hand):
    path, common = sources_registry
    length = ["--prompt-length", "4"] if variant == "pt" else []
    result = run("target", "train", "wnli", "--variant", variant, *extra, *common, *SMALL, *length)
    assert result.exit_code == 0, result.output
    record = Registry(path).list(kind="target", name="wnli")[-1]
    assert record.variant == variant
    if variant in ("pt", "spot"):
        assert record.sources == () and record.attention is None
    if variant == "spot":
        assert record.config["init"].startswith("source:")
    evaluated = json.loads(run("eval", record.ref, *common, "--json").output)
    assert evaluated[0]["prompt"] == record.ref
    assert evaluated[0]["metrics"]["accuracy"] == pytest.approx(accuracy_by_hand(path, common[3], record.ref))


def test_variant_mistakes_are_clear(sources_registry):
    _, common = sources_registry
    cases = [(["--variant", "pt", "--sources", "mnli"], "mixes no sources"),
             (["--variant", "spot"], "--init-from"),
             (["--variant", "attempt"], "--sources"),
             (["--variant", "nope", "--sources", "mnli"], "unknown variant"),
             (["--sources", "mnli", "--attn-prior", "missing"], "missing")]
    for args, fragment in cases:
        result = run("target", "train", "wnli", *args, *common, *SMALL)
        assert result.exit_code == 1 and fragment in result.output, (args, result.output)


def test_mixed_task_gradients_and_per_task_evaluation(tiny_causal_dir):
    """A task's prompt gets exactly zero gradient from a batch without its rows; G does not;
    evaluating tasks together gives the same scores as evaluating each alone."""
    backbone = load_backbone(str(tiny_causal_dir))
    torch.manual_seed(0)
    sources = {"s1@1": torch.randn(3, backbone.d), "s2@1": torch.randn(3, backbone.d)}
    mixture = PromptMixture({"rte": torch.randn(3, backbone.d), "cb": torch.randn(3, backbone.d)}, sources=sources,
                            attention=AttentionModule(backbone.d), variant="attempt")
    rows = [lm.encode(backbone, f"rte sentence1: s{i}. sentence2: t{i}.", "entailment", 32) for i in range(3)]
    batch = lm.collate(backbone, rows, [0, 0, 0])  # rte rows only
    prompt, _ = mixture(batch.task_ids, backbone.embed(batch.input_ids), batch.input_mask)
    lm.loss(backbone, prompt, batch).backward()
    assert torch.count_nonzero(mixture.prompts[1].grad) == 0
    assert torch.count_nonzero(mixture.prompts[0].grad) > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mixture.attention.parameters())

    tasks = {"rte": get_task("rte"), "cb": get_task("cb")}
    examples = {"rte": [Example("rte", f"rte sentence1: a{i}. sentence2: b{i}.", "entailment", 0) for i in range(4)],
                "cb": [Example("cb", f"cb premise: p{i}. hypothesis: h{i}.", "neutral", 2) for i in range(3)]}
    together = evaluate(backbone, mixture, examples, tasks, batch_size=8)
    for name in tasks:
        alone = evaluate(backbone, mixture, {name: examples[name]}, {name: tasks[name]}, batch_size=8)[name]
        assert alone.predictions == together[name].predictions
        assert alone.weights == pytest.approx(together[name].weights, abs=1e-5)


def test_two_learning_rates_land_on_their_groups():
    mixture = PromptMixture({"rte": torch.zeros(2, 8)}, sources={"s@1": torch.ones(2, 8)}, attention=AttentionModule(8),
                            variant="attempt")
    groups = {g["name"]: g for g in _optimizer(mixture, TrainConfig(lr=0.3, attn_lr=0.1)).param_groups}
    assert groups["prompts"]["lr"] == 0.3 and groups["attention"]["lr"] == 0.1
    assert {id(p) for p in groups["attention"]["params"]} == {id(p) for p in mixture.attention.parameters()}
