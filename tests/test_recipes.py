"""`--recipe` (issue 28): how a target that mixes sources trains by default (transfer), as the paper
published it (paper), and as attemptctl did before (v1). Real CLI, tiny random Llama, real data slices;
what each run recorded is read back from the real registry, and the registered prompt is checked where
a recipe fixes it (a target that starts at zero and trains at lr 0 stays zero)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load as load_tensors
from typer.testing import CliRunner

from attemptctl.cli import app
from registry import Registry

SMALL = ["--max-steps", "2", "--train-limit", "8", "--dev-limit", "4", "--test-limit", "4", "--batch-size", "4",
         "--max-length", "40", "--eval-every", "2"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sources(tmp_path_factory, real_data_dir, tiny_causal_dir):
    registry = tmp_path_factory.mktemp("recipes") / "registry"
    common = ["--registry", registry, "--data-dir", real_data_dir]
    for i, task in enumerate(("mnli", "sst2")):
        extra = ["--backbone", tiny_causal_dir] if i == 0 else []
        result = run("source", "train", task, *common, *extra, *SMALL, "--prompt-length", "4")
        assert result.exit_code == 0, result.output
    return registry, common


def _train(common, *extra):
    result = run("target", "train", "rte", "--sources", "mnli,sst2", *common, *SMALL, *extra)
    assert result.exit_code == 0, result.output
    return result


def test_the_default_is_the_transfer_recipe(sources):
    path, common = sources
    _train(common)
    record = Registry(path).get("target", "rte")
    assert record.config["recipe"] == "transfer"
    assert record.config["init"] == "zeros"
    assert record.config["lr"] == pytest.approx(1e-3) and record.config["attn_lr"] == pytest.approx(0.1)


def test_v1_and_paper_keep_the_earlier_and_the_published_recipe(sources):
    path, common = sources
    _train(common, "--recipe", "v1")
    v1 = Registry(path).get("target", "rte")
    assert (v1.config["recipe"], v1.config["init"], v1.config["lr"], v1.config["attn_lr"]) == \
        ("v1", "source:mnli@1", 0.3, 0.01)
    assert v1.config["attn_scale"] == "calibrated" and v1.config["attn_norm"] == "trained"
    _train(common, "--recipe", "paper")
    paper = Registry(path).get("target", "rte")
    assert paper.version == v1.version + 1
    assert (paper.config["init"], paper.config["lr"], paper.config["attn_lr"]) == ("source:mnli@1", 0.3, 0.3)
    assert (paper.config["attn_scale"], paper.config["attn_pool"], paper.config["attn_norm"]) == ("paper", "max", "frozen")


def test_options_given_win_over_the_recipe(sources):
    path, common = sources
    _train(common, "--lr", "0", "--attn-lr", "0.05")
    registry = Registry(path)
    record = registry.get("target", "rte")
    assert record.config["recipe"] == "transfer" and record.config["lr"] == 0
    assert record.config["attn_lr"] == pytest.approx(0.05)
    prompt = load_tensors(registry.load_payload(record))["prompt"]
    assert torch.count_nonzero(prompt) == 0  # started at zero (the recipe's) and never moved (lr 0, given)


def test_plain_prompt_tuning_ignores_the_recipe(sources):
    path, common = sources
    result = run("target", "train", "rte", "--variant", "pt", *common, *SMALL, "--prompt-length", "4",
                 "--backbone", Registry(path).get("source", "mnli").backbone)
    assert result.exit_code == 0, result.output
    record = Registry(path).get("target", "rte")
    assert record.variant == "pt" and record.config["recipe"] is None and record.config["lr"] == 0.3


def test_an_unknown_recipe_is_one_line_naming_the_choices(sources):
    path, common = sources
    before = len(Registry(path).list(kind="target"))
    result = run("target", "train", "rte", "--sources", "mnli", *common, *SMALL, "--recipe", "fast")
    assert result.exit_code != 0
    assert "unknown recipe 'fast'; choose one of transfer, paper, v1" in result.output
    assert len(Registry(path).list(kind="target")) == before


def test_a_study_trains_mixing_cells_by_the_recipe_and_pt_at_its_own_rate(sources):
    path, common = sources
    result = run("study", "methods", "rte", "--sources", "mnli,sst2", "--methods", "pt,attempt", "--seeds", "1",
                 "--name", "recipe-study", *common, *SMALL)
    assert result.exit_code == 0, result.output
    cells = {r.config["study"]["method"]: r for r in Registry(path).list(kind="target")
             if (r.config.get("study") or {}).get("name") == "recipe-study"}
    assert cells["pt"].config["lr"] == 0.3 and cells["attempt"].config["lr"] == pytest.approx(1e-3)
    assert cells["attempt"].config["study"]["recipe"] == "transfer"
    assert cells["attempt"].config["study"]["target_init"] == "zeros"
    # the same study under another recipe is refused, naming the option that differs
    again = run("study", "methods", "rte", "--sources", "mnli,sst2", "--methods", "pt,attempt", "--seeds", "2",
                "--name", "recipe-study", "--recipe", "v1", *common, *SMALL)
    assert again.exit_code != 0
    assert "recipe-study" in again.output
