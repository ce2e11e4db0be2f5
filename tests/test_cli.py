"""End to end through the real CLI (typer's CliRunner): train sources, a target, show attention,
evaluate — on tiny random T5 and Llama models, real tokenizer, real data slices, real SQLite."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attemptctl.cli import app
from registry import Registry

runner = CliRunner()
TINY_TARGET = ["--max-steps", "2", "--train-limit", "16", "--dev-limit", "8", "--test-limit", "8", "--batch-size", "4",
               "--max-length", "48", "--eval-every", "2"]
TINY = [*TINY_TARGET, "--prompt-length", "4"]  # targets take their sources' prompt length


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def workspace(tmp_path, real_data_dir, tiny_backbone_dir):
    """Options every command gets: a fresh registry, the real data, a tiny backbone."""
    registry = tmp_path / "registry"
    return {"registry": registry, "common": ["--registry", registry, "--data-dir", real_data_dir],
            "backbone": tiny_backbone_dir}


def test_mission_commands_end_to_end(workspace, accuracy_by_hand):
    common, backbone = workspace["common"], workspace["backbone"]
    result = run("source", "train", "mnli", *common, "--backbone", backbone, *TINY)
    assert result.exit_code == 0, result.output
    assert "registered source mnli@1" in result.output
    # The registry now remembers the backbone: no --backbone from here on.
    result = run("source", "train", "qqp", *common, *TINY)
    assert result.exit_code == 0, result.output
    result = run("target", "train", "boolq", "--sources", "mnli,qqp", *common, *TINY_TARGET)
    assert result.exit_code == 0, result.output
    assert "registered target boolq@1" in result.output

    registry = Registry(workspace["registry"])
    target = registry.get("target", "boolq")
    assert target.sources == ("mnli@1", "qqp@1")
    assert target.backbone == str(backbone)
    assert target.m == 4 and registry.get("attention", target.attention).kind == "attention"

    result = run("attn", "show", "boolq", *common, "--json")
    assert result.exit_code == 0, result.output
    [summary] = json.loads(result.output)
    weights = summary["weights"]
    assert set(weights) == {"mnli@1", "qqp@1", "(target)"}
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)  # the target's own weight before the +1
    table = run("attn", "show", "boolq", *common)
    assert table.exit_code == 0 and "boolq@1" in table.output and "mnli@1" in table.output

    result = run("eval", *common, "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["prompt"] == "boolq@1" and row["examples"] == 8
    assert row["metrics"]["accuracy"] == pytest.approx(accuracy_by_hand(workspace["registry"], common[3], "boolq@1"))
    shown = json.loads(run("registry", "show", "boolq", "--registry", workspace["registry"]).output)
    assert shown["evaluations"][0]["metrics"] == row["metrics"]

    table = run("eval", "mnli", *common)  # a source is evaluated on its own task
    assert table.exit_code == 0 and "mnli" in table.output and "accuracy" in table.output


def test_second_training_makes_version_two(tmp_path, real_data_dir, tiny_causal_dir):
    common = ["--registry", tmp_path / "r", "--data-dir", real_data_dir, "--backbone", tiny_causal_dir]
    for _ in range(2):
        assert run("source", "train", "rte", *common, *TINY).exit_code == 0
    listed = json.loads(run("registry", "list", "--registry", tmp_path / "r", "--json").output)
    assert [r["prompt"] for r in listed] == ["rte@1", "rte@2"]


def _registry_files(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() and not p.name.startswith("catalog"))


@pytest.fixture
def trained(tmp_path_factory, real_data_dir, tiny_causal_dir):
    """A registry holding one tiny source prompt, for the error tests."""
    registry = tmp_path_factory.mktemp("errors") / "registry"
    result = run("source", "train", "mnli", "--registry", registry, "--data-dir", real_data_dir,
                 "--backbone", tiny_causal_dir, *TINY)
    assert result.exit_code == 0, result.output
    return registry


def _bad_data_dir(tmp_path: Path, real_data_dir: Path) -> Path:
    bad = tmp_path / "bad-data"
    shutil.copytree(real_data_dir / "super_glue" / "cb", bad / "super_glue" / "cb")
    lines = (bad / "super_glue/cb/train.jsonl").read_text().splitlines()
    lines[2] = lines[2][:-5]  # cut a record in half
    (bad / "super_glue/cb/train.jsonl").write_text("\n".join(lines) + "\n")
    return bad


@pytest.mark.parametrize("case", ["unknown task", "unknown source", "missing data file", "malformed line",
                                  "wrong backbone", "bad option"])
def test_bad_input_is_one_clear_line_and_writes_nothing(case, trained, tmp_path, real_data_dir, tiny_t5_dir):
    before = _registry_files(trained)
    count = len(Registry(trained).list())
    data = ["--data-dir", real_data_dir]
    args, expected, code = {
        "unknown task": (["source", "train", "nosuchtask", *data], ["unknown task 'nosuchtask'", "rte"], 1),
        "unknown source": (["target", "train", "rte", "--sources", "mnli,qqp", *data], ["qqp", "mnli@1"], 1),
        "missing data file": (["source", "train", "rte", "--data-dir", tmp_path], ["rte", "not found", "--data-dir"], 1),
        "malformed line": (["target", "train", "cb", "--sources", "mnli", "--data-dir", _bad_data_dir(tmp_path, real_data_dir)],
                           ["train.jsonl:3", "malformed JSON"], 1),
        "wrong backbone": (["target", "train", "rte", "--sources", "mnli", *data, "--backbone", tiny_t5_dir],
                           ["mnli@1", "trained on backbone", "--backbone"], 1),
        "bad option": (["source", "train", "rte", *data, "--batch-size", "0"], ["batch-size"], 1),
    }[case]
    result = run(*args, "--registry", trained, *TINY[:2])
    assert result.exit_code == code, result.output
    for fragment in expected:
        assert fragment in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3  # one error line (rich may wrap it)
    assert _registry_files(trained) == before and len(Registry(trained).list()) == count


def test_help_of_every_command_has_an_example():
    for command in (["source", "train"], ["target", "train"], ["attn", "show"], ["eval"], ["registry", "list"],
                    ["registry", "show"], ["registry", "rm"]):
        result = run(*command, "--help")
        assert result.exit_code == 0 and "Example" in result.output, command


def test_rm_refuses_a_source_a_target_mixes(workspace):
    common, backbone = workspace["common"], workspace["backbone"]
    assert run("source", "train", "rte", *common, "--backbone", backbone, *TINY).exit_code == 0
    assert run("target", "train", "cb", "--sources", "rte", *common, *TINY_TARGET).exit_code == 0
    refused = run("registry", "rm", "rte", "--kind", "source", "--registry", workspace["registry"])
    assert refused.exit_code == 1 and "cb@1" in refused.output
    assert Registry(workspace["registry"]).get("source", "rte").version == 1
    forced = run("registry", "rm", "rte", "--kind", "source", "--force", "--registry", workspace["registry"])
    assert forced.exit_code == 0 and "removed source rte@1" in forced.output


def test_help_starts_without_torch():
    """`attemptctl --help` must stay fast: no torch or transformers import on the way."""
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from attemptctl.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.strip() == "[]"


def test_registry_errors_are_one_line(tmp_path):
    import sqlite3

    assert run("registry", "list", "--registry", tmp_path / "r").exit_code == 1  # no registry there yet
    Registry(tmp_path / "r").close()
    listed = run("registry", "list", "--registry", tmp_path / "r")
    assert listed.exit_code == 0 and "the registry is empty" in listed.output, listed.output
    with sqlite3.connect(tmp_path / "r" / "catalog.sqlite") as db:
        db.execute("PRAGMA user_version = 99")
    for command in (["registry", "show", "x"], ["registry", "rm", "x"], ["registry", "list"]):
        result = run(*command, "--registry", tmp_path / "r")
        assert result.exit_code == 1 and "newer attemptctl" in result.output and "Traceback" not in result.output


def test_few_shot_trains_on_k_rows_per_class(tmp_path, real_data_dir, tiny_causal_dir):
    common = ["--registry", tmp_path / "r", "--data-dir", real_data_dir, "--backbone", tiny_causal_dir]
    result = run("source", "train", "rte", "--shots", "3", *common, *TINY)
    assert result.exit_code == 0, result.output
    record = Registry(tmp_path / "r").get("source", "rte")
    assert record.config["shots"] == 3 and record.metrics["train_rows"] == 6  # two classes × 3


def test_weight_decay_is_an_option_that_changes_the_trained_prompt(tmp_path, real_data_dir, tiny_causal_dir):
    """Training is deterministic, so the same run at another --weight-decay gives other bytes only if
    the option reaches AdamW; the record keeps the value it trained with."""
    common = ["--registry", tmp_path / "r", "--data-dir", real_data_dir, "--backbone", tiny_causal_dir]
    for decay in ("0", "0.5", "0"):
        result = run("source", "train", "rte", "--weight-decay", decay, *common, *TINY)
        assert result.exit_code == 0, result.output
    store = Registry(tmp_path / "r")
    plain, decayed, again = (store.get("source", f"rte@{v}") for v in (1, 2, 3))
    assert [r.config["weight_decay"] for r in (plain, decayed, again)] == [0.0, 0.5, 0.0]
    assert plain.sha256 == again.sha256 and decayed.sha256 != plain.sha256
    negative = run("source", "train", "rte", "--weight-decay", "-1", *common, *TINY)
    assert negative.exit_code == 1 and "weight-decay must not be negative" in negative.output


def _commands(group, path=()):
    for info in group.registered_commands:
        yield (*path, info.name or info.callback.__name__)
    for sub in group.registered_groups:
        yield from _commands(sub.typer_instance, (*path, sub.name))


def test_no_help_text_loses_its_default_to_markup():
    """Help written as `[default: …]` was eaten by rich markup, leaving "Registry folder ." behind."""
    from attemptctl.cli import app

    commands = list(_commands(app))
    assert ("source", "pull") in commands and len(commands) > 15
    for command in commands:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, command
        stray = [line for line in result.output.splitlines() if re.search(r" \.(\s|$)", line)]
        assert not stray, (command, stray)


@pytest.mark.parametrize("field", ["lr", "attn_lr", "weight_decay", "attn_temperature", "sampling_temperature"])
def test_a_nan_rate_or_temperature_is_refused(field):
    """NaN passes every comparison (`nan < 0` is false): a NaN learning rate once trained and registered a NaN prompt."""
    from attemptctl.engine.train import TrainConfig
    from attemptctl.errors import ConfigError

    with pytest.raises(ConfigError, match=f"{field.replace('_', '-')} must be a finite number, got nan"):
        TrainConfig(**{field: float("nan")})


def test_an_infinite_sampling_temperature_is_uniform_sampling_not_an_error():
    from attemptctl.engine.train import TrainConfig
    from attemptctl.errors import ConfigError

    assert TrainConfig(sampling_temperature=float("inf")).sampling_temperature == float("inf")
    with pytest.raises(ConfigError, match="lr must be a finite number, got inf"):
        TrainConfig(lr=float("inf"))


def test_registry_show_says_how_large_a_prompt_is_and_survives_a_damaged_file(tmp_path):
    """`registry show` reports the stored prompt's row norms (how far training moved it), and a damaged
    file is described in the view instead of failing it."""
    import torch

    from attemptctl.workflows.payloads import prompt_payload

    prompt = torch.zeros(3, 8)
    prompt[0, 0], prompt[1, :4], prompt[2] = 3.0, 1.0, 0.5  # rows of norm 3, 2 and sqrt(2)
    registry = Registry(tmp_path / "r")
    record = registry.register(kind="source", name="mnli", task="mnli", backbone="tiny", fingerprint={"d": 8}, d=8,
                               m=3, payload=prompt_payload(prompt), variant="prompt-tuning", config={})
    shown = run("registry", "show", "mnli", "--registry", tmp_path / "r")
    assert shown.exit_code == 0, shown.output
    payload = json.loads(shown.output)["payload"]
    assert payload["shape"] == [3, 8]
    assert payload["row_norm"] == {"mean": pytest.approx((3 + 2 + 2 ** 0.5) / 3, abs=1e-4), "min": pytest.approx(
        2 ** 0.5, abs=1e-4), "max": pytest.approx(3.0)}

    blob = tmp_path / "r" / "blobs" / record.sha256[:2] / f"{record.sha256}.safetensors"
    blob.write_bytes(b"not a prompt")
    shown = run("registry", "show", "mnli", "--registry", tmp_path / "r")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["prompt"] == "mnli@1" and "registry verify" in data["payload"]["error"]
    assert data["payload"]["error"].startswith("source prompt mnli@1: file ") and "backup" in data["payload"]["error"]
