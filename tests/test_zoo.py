"""The source prompt zoo: shipped files match their manifest, pulling is verified and idempotent,
a registry on another backbone is refused, and a shipped prompt really is trained."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attemptctl.errors import AttemptError
from attemptctl.zoo import (
    MANIFEST_NAME,
    PACKAGE_ZOO,
    load_manifest,
    portable_data_path,
    pull_zoo,
    safetensors_shape,
    zoo_dir,
)
from registry import Registry

runner = CliRunner()
BACKBONE = "smollm2-135m"


def _cli(*args, env=None):
    from attemptctl.cli import app

    return runner.invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def manifest() -> dict:
    return load_manifest(BACKBONE)


#: The label formats the package ships a zoo for (words always; index once its recipe has shipped a prompt).
SHIPPED_FORMATS = [f for f in ("words", "index") if (zoo_dir(BACKBONE, labels=f) / MANIFEST_NAME).is_file()]


@pytest.mark.parametrize("labels", SHIPPED_FORMATS)
def test_every_shipped_prompt_matches_its_manifest(labels, smollm2_dir, real_data_dir):
    from attemptctl.method.backbones import load_backbone

    manifest = load_manifest(BACKBONE, labels=labels)
    folder = zoo_dir(BACKBONE, labels=labels)
    fingerprint = load_backbone(str(smollm2_dir)).fingerprint
    for key in ("class", "d", "vocab_size", "config_sha256", "embedding_sha256"):
        assert manifest["fingerprint"][key] == fingerprint[key], key
    assert manifest["prompts"] or labels != "words", "the zoo ships no prompt"
    total = 0
    for task, entry in manifest["prompts"].items():
        payload = (folder / entry["file"]).read_bytes()
        assert hashlib.sha256(payload).hexdigest() == entry["sha256"], task
        assert safetensors_shape(payload) == [entry["m"], 576] and entry["d"] == 576
        assert entry["task"] == task and entry["steps"] > 0 and entry["rows_seen"] == entry["steps"] * entry["config"]["batch_size"]
        assert entry["test"]["metrics"] and entry["dev"]
        # Its data, named the same on every machine: a task folder under the data directory (--data-dir).
        assert not Path(entry["data"]).is_absolute() and (real_data_dir / entry["data"] / "train.jsonl").is_file(), task
        assert entry["config"].get("labels", "words") == labels  # each zoo holds prompts of its own format
        total += len(payload)
    assert len({e["m"] for e in manifest["prompts"].values()}) <= 1  # targets mix them: one length
    assert total < 1_000_000  # small enough to ship in the package
    assert "record" in manifest["missing"]
    # Nothing in the folder that the manifest does not account for (the word zoo holds the other formats' folders).
    others = {f for f in SHIPPED_FORMATS if f != "words"} if labels == "words" else set()
    assert {p.name for p in folder.iterdir()} == {MANIFEST_NAME, *others, *(e["file"] for e in manifest["prompts"].values())}


def test_pull_twice_adds_once_and_says_where_prompts_came_from(tmp_path, manifest):
    registry = tmp_path / "registry"
    first = _cli("source", "pull", "--registry", registry)
    assert first.exit_code == 0, first.output
    records = Registry(registry).list(kind="source")
    assert sorted(r.name for r in records) == sorted(manifest["prompts"])
    for record in records:
        entry = manifest["prompts"][record.name]
        assert record.sha256 == entry["sha256"] and record.m == entry["m"] and record.backbone == BACKBONE
        assert record.config["origin"]["type"] == "zoo" and record.metrics["test"] == entry["test"]
    second = _cli("source", "pull", "--registry", registry)
    assert second.exit_code == 0 and "already here" in second.output
    assert Registry(registry).list(kind="source") == records  # nothing added
    listing = _cli("registry", "list", "--registry", registry)
    assert listing.exit_code == 0 and listing.output.count(" zoo ") >= len(records)
    shown = json.loads(_cli("registry", "show", records[0].ref, "--registry", registry).output)
    assert shown["origin"]["type"] == "zoo" and BACKBONE in shown["origin"]["from"]


def test_pull_from_a_zoo_folder_registers_its_prompts_and_names_the_folder(tmp_path, manifest):
    """`source pull --zoo DIR`: the prompts of another copy of the zoo (an earlier release's, or the one a study
    pins), verified against that copy's manifest, with the folder on record as their origin."""
    copy = tmp_path / "zoo-copy"
    shutil.copytree(PACKAGE_ZOO, copy, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    registry = tmp_path / "registry"
    done = _cli("source", "pull", "--zoo", copy, "--tasks", "sst2", "--registry", registry, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["added"] == ["sst2@1"]
    record = Registry(registry).get("source", "sst2")
    assert record.sha256 == manifest["prompts"]["sst2"]["sha256"]
    assert record.config["origin"]["from"] == f"zoo folder {copy.resolve()}: {BACKBONE}/sst2.safetensors"
    # The copy's manifest is what is checked: a prompt file changed in the copy is refused, and nothing lands.
    (copy / BACKBONE / "mnli.safetensors").write_bytes(b"\0" * 64)
    refused = _cli("source", "pull", "--zoo", copy, "--registry", registry)
    assert refused.exit_code == 1 and "does not match its sha256" in refused.output
    assert [r.ref for r in Registry(registry).list(kind="source")] == ["sst2@1"]


def test_pull_refuses_a_registry_on_another_backbone(tmp_path, real_data_dir, tiny_causal_dir):
    registry = tmp_path / "registry"
    trained = _cli("source", "train", "rte", "--registry", registry, "--data-dir", real_data_dir, "--backbone",
                   tiny_causal_dir, "--max-steps", "1", "--train-limit", "4", "--dev-limit", "2", "--prompt-length", "2",
                   "--batch-size", "2", "--max-length", "16")
    assert trained.exit_code == 0, trained.output
    before = Registry(registry).list()
    done = _cli("source", "pull", "--registry", registry, "--backbone", BACKBONE)
    assert done.exit_code == 1
    assert f"the zoo's prompts are for '{BACKBONE}'" in done.output and len(done.output.strip().splitlines()) == 1
    assert Registry(registry).list() == before
    done = _cli("source", "pull", "--registry", registry)  # the registry's own backbone has no zoo
    assert done.exit_code == 1 and "no source prompt zoo for backbone" in done.output


def test_a_damaged_zoo_file_is_refused_before_anything_is_registered(tmp_path, manifest):
    root = tmp_path / "zoo"
    shutil.copytree(zoo_dir(BACKBONE), root / BACKBONE)
    last = sorted(manifest["prompts"])[-1]
    path = root / BACKBONE / manifest["prompts"][last]["file"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    registry = Registry(tmp_path / "registry")
    with pytest.raises(AttemptError, match="does not match its sha256"):
        pull_zoo(registry, BACKBONE, root=root)
    assert registry.list() == []
    with pytest.raises(AttemptError, match="has no prompt for record"):
        pull_zoo(registry, BACKBONE, tasks=["record"], root=root)
    (root / BACKBONE / MANIFEST_NAME).write_text("{")
    with pytest.raises(AttemptError, match="is damaged"):
        pull_zoo(registry, BACKBONE, root=root)
    assert PACKAGE_ZOO.is_dir() and registry.list() == []


def test_a_shipped_source_beats_its_vocabulary_initialised_start(tmp_path, manifest, smollm2_dir, real_data_dir):
    """Would fail if the zoo held untrained prompts: the zoo's SST-2 prompt against a fresh one."""
    import torch

    from attemptctl.engine.evaluate import evaluate
    from attemptctl.method.backbones import load_backbone
    from attemptctl.method.mixture import PromptMixture
    from attemptctl.workflows.runs import vocab_prompt
    from attemptctl.workflows.workspace import Workspace, split_examples

    task = "sst2" if "sst2" in manifest["prompts"] else sorted(manifest["prompts"])[0]
    registry = tmp_path / "registry"
    assert _cli("source", "pull", "--registry", registry, "--tasks", task).exit_code == 0
    done = _cli("eval", task, "--split", "test", "--limit", "64", "--registry", registry, "--data-dir", real_data_dir,
                "--json")
    assert done.exit_code == 0, done.output
    [row] = json.loads(done.output)
    record = Registry(registry).get("source", task)
    backbone = load_backbone(str(smollm2_dir))
    spec, examples = split_examples(Workspace(registry, real_data_dir), record, "test", 64)
    fresh = PromptMixture({task: vocab_prompt(backbone, record.m, int(record.config.get("seed", 42)))})
    with torch.no_grad():
        start = evaluate(backbone, fresh, {task: examples}, {task: spec},
                         max_length=record.config.get("max_length"))[task].metrics
    metric = next(iter(row["metrics"]))
    assert row["examples"] == 64
    assert row["metrics"][metric] >= start[metric] + 0.15, (row["metrics"], start)


def test_each_label_format_has_its_own_zoo_and_pulls_into_its_own_records(tmp_path, manifest):
    """An index-format zoo (a copy of the shipped one, re-labelled) sits under <backbone>/index/; a
    pull from it registers prompts that answer by index, beside, not instead of, the word ones."""
    root = tmp_path / "zoo"
    shutil.copytree(PACKAGE_ZOO / BACKBONE, root / BACKBONE, ignore=shutil.ignore_patterns("index"))
    index = zoo_dir(BACKBONE, root, "index")
    assert index == root / BACKBONE / "index"
    with pytest.raises(AttemptError, match="--labels index"):
        pull_zoo(Registry(tmp_path / "r"), BACKBONE, root=root, labels="index")
    index.mkdir()
    shutil.copy(root / BACKBONE / "mnli.safetensors", index / "mnli.safetensors")
    entry = {**manifest["prompts"]["mnli"], "config": {**manifest["prompts"]["mnli"]["config"], "labels": "index"}}
    (index / MANIFEST_NAME).write_text(json.dumps({**manifest, "prompts": {"mnli": entry}, "missing": {}}))
    registry = Registry(tmp_path / "r")
    words = pull_zoo(registry, BACKBONE, root=root, tasks=["mnli"]).added
    digits = pull_zoo(registry, BACKBONE, root=root, tasks=["mnli"], labels="index")
    assert [r.config["labels"] for r in words] == ["words"]
    # The same bytes, but another answer format: a record of its own, and a second pull adds nothing.
    [record] = digits.added
    assert record.ref == "mnli@2" and record.config["labels"] == "index" and "/index/" in record.config["origin"]["from"]
    again = pull_zoo(registry, BACKBONE, root=root, tasks=["mnli"], labels="index")
    assert not again.added and [r.ref for r in again.present] == ["mnli@2"]
    assert registry.get("source", "mnli@1").config["labels"] == "words"


def test_the_manifest_records_data_relative_to_the_data_directory(tmp_path):
    folder = tmp_path / "data" / "glue" / "mnli"
    folder.mkdir(parents=True)
    assert portable_data_path(str(folder), tmp_path / "data") == "glue/mnli"
    assert portable_data_path(str(folder), str(tmp_path / "data") + "/") == "glue/mnli"
    elsewhere = tmp_path / "mine" / "mnli"
    assert portable_data_path(str(elsewhere), tmp_path / "data") == str(elsewhere)  # not under it: kept as it is
    assert portable_data_path("hub:nyu-mll/glue/mnli", None) == "hub:nyu-mll/glue/mnli"
    assert portable_data_path(None, tmp_path) is None



def test_registry_list_shows_each_pulled_source_by_its_primary_metric(tmp_path, manifest):
    """The registry stores score keys sorted (squad_em before squad_f1, accuracy before f1); the
    list's dev column is still the metric each task is ranked by: SQuAD's F1, QQP's F1."""
    from attemptctl.tasks import get_task

    registry = tmp_path / "registry"
    assert _cli("source", "pull", "--registry", registry).exit_code == 0
    listed = _cli("registry", "list", "--registry", registry, env={"COLUMNS": "120", "NO_COLOR": "1"}).output
    cells = {line.split()[1]: line.split()[5] for line in listed.splitlines() if line.startswith("source ")}
    for task, entry in manifest["prompts"].items():
        primary = get_task(task).metrics[0]
        assert cells[f"{task}@1"] == f"{100 * entry['dev'][task][primary]:.1f}", (task, primary, listed)
    assert any(len(get_task(t).metrics) > 1 and get_task(t).metrics[0] != sorted(get_task(t).metrics)[0]
               for t in manifest["prompts"])  # a source whose primary metric is not the first key sorted
