"""The headroom recipe (recipes/headroom.py, issue 29): LoRA through PEFT on a study part's rows and budget,
trained and scored for real on the tiny Llama, written cell by cell, and read back as a table row."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def headroom():
    spec = importlib.util.spec_from_file_location("headroom_recipe", ROOT / "recipes" / "headroom.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PART = {"study": "tiny-pt-no-exports", "targets": ("rte",), "seeds": (1,), "methods": ("pt",),
        "budget": {"--preset": "cpu", "--max-steps": 4, "--batch-size": 4, "--max-length": 32, "--train-limit": 16,
                   "--dev-limit": 4, "--test-limit": 8, "--eval-every": 2, "--warmup-steps": 1}}


def test_a_lora_cell_trains_on_the_parts_rows_and_scores_its_test_rows(headroom, real_data_dir, tiny_causal_dir,
                                                                        tmp_path, monkeypatch, capsys):
    from attemptctl.studies.answers import decode, examples_of
    from attemptctl.tasks import get_task
    from attemptctl.tasks.data import load_task
    from attemptctl.tasks.metrics import compute_metrics

    monkeypatch.setitem(headroom.study.PARTS, "tiny-pt", PART)
    monkeypatch.setitem(headroom.HEADROOM, "tiny", "tiny-pt")
    monkeypatch.setattr(headroom, "RESULTS", tmp_path)
    args = SimpleNamespace(name="tiny", data_dir=str(real_data_dir), seed=None, targets=None, rank=2, lr=1e-2,
                           backbone=str(tiny_causal_dir))
    headroom.run(args)
    [cell] = json.loads((tmp_path / "tiny.json").read_text())["cells"]
    task = get_task("rte")
    test = load_task(task, data_dir=real_data_dir, seed=1, train_limit=1, test_limit=8).test
    assert (cell["target"], cell["seed"], cell["steps"]) == ("rte", 1, 4)
    assert [h["step"] for h in cell["history"]] == [2, 4] and cell["best_step"] in (2, 4)
    assert cell["settings"]["target_modules"] == ["q_proj", "v_proj"] and cell["settings"]["rank"] == 2
    assert cell["params"] > 0 and cell["budget"]["test_limit"] == 8
    answers = decode(task, cell["predictions"])
    assert len(answers) == 8 and [e.target for e in examples_of(task, cell["gold"])] == [e.target for e in test]
    assert compute_metrics(task, answers, test)["accuracy"] == pytest.approx(cell["score"])
    headroom.run(args)  # done cells are not trained again
    assert len(json.loads((tmp_path / "tiny.json").read_text())["cells"]) == 1
    capsys.readouterr()
    headroom.table(SimpleNamespace(name="tiny"))  # the row, with no PT cell of the same rows to pair with
    row, delta = capsys.readouterr().out.strip().splitlines()[2:]
    assert row == f"| LoRA (rank 2) | {cell['params']:,} | {100 * cell['score']:.1f} |" and delta == "| LoRA − PT | | — |"
