"""`--split-protocol heldout` through the CLI (issue 29): a target trained under it records the protocol, and
`eval` scores it on the rows its training drew (dev held out of train, the whole validation split as test),
while a target trained under the paper's protocol keeps its half of validation."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from attemptctl.tasks import get_task
from attemptctl.tasks.data import load_task
from registry import Registry

runner = CliRunner()
SMALL = ["--max-steps", "1", "--train-limit", "8", "--dev-limit", "4", "--batch-size", "4", "--max-length", "40",
         "--eval-every", "1", "--prompt-length", "4", "--variant", "pt"]


def run(*args):
    from attemptctl.cli import app

    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_data_dir, tiny_causal_dir):
    path = tmp_path_factory.mktemp("protocol") / "registry"
    common = ["--registry", path, "--data-dir", real_data_dir]
    for protocol in ("paper", "heldout"):  # rte@1, rte@2
        result = run("target", "train", "rte", "--backbone", tiny_causal_dir, "--split-protocol", protocol,
                     *common, *SMALL)
        assert result.exit_code == 0, result.output
    return path, common


def test_the_protocol_is_recorded_and_eval_scores_the_rows_training_drew(trained, real_data_dir):
    path, common = trained
    registry = Registry(path)
    assert [registry.get("target", f"rte@{v}").config["split_protocol"] for v in (1, 2)] == ["paper", "heldout"]
    assert registry.get("target", "rte@1").config["batching"] == "label"  # recorded, the default
    shown = json.loads(run("eval", "rte@1", "rte@2", *common, "--limit", 1000, "--json").output)  # past the preset's 100
    rows = {row["prompt"]: row["examples"] for row in shown}
    paper, heldout = (load_task(get_task("rte"), data_dir=real_data_dir, protocol=p) for p in ("paper", "heldout"))
    assert rows == {"rte@1": len(paper.test), "rte@2": len(heldout.test)} and len(heldout.test) > len(paper.test)
    dev = json.loads(run("eval", "rte@2", *common, "--split", "dev", "--json").output)
    assert dev[0]["examples"] == 4  # the recorded dev limit, of the rows held out of train


def test_an_unknown_protocol_is_one_line_naming_the_choices(trained):
    path, common = trained
    result = run("target", "train", "rte", "--split-protocol", "halves", *common, *SMALL)
    assert result.exit_code != 0
    assert "split-protocol 'halves'" in result.output and "paper, heldout" in result.output
    assert len(Registry(path).list(kind="target")) == 2  # nothing registered
