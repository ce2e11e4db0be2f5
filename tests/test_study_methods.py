"""`study methods` and `study show` end to end on a tiny random Llama with real data slices: every cell
in the table, resuming after a real interruption, adding seeds, the torch-free show, the equal budget
and the single-source choice."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from attemptctl.studies import METHODS, MethodsStudyConfig, methods_table, study_methods, study_records
from attemptctl.studies.cells import MIXING_METHODS
from attemptctl.workflows.target import train_target
from attemptctl.workflows.workspace import Workspace
from registry import Registry

runner = CliRunner()
SMALL = ["--max-steps", "2", "--train-limit", "8", "--dev-limit", "4", "--test-limit", "4", "--batch-size", "4",
         "--max-length", "32", "--eval-every", "2"]
OVERRIDES = dict(max_steps=2, train_limit=8, dev_limit=4, test_limit=4, batch_size=4, max_length=32, eval_every=2)
TAG_KEYS = {"name", "method", "target", "seed", "shots"}


def run(*args):
    from attemptctl.cli import app

    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sources(tmp_path_factory, real_data_dir, tiny_causal_dir):
    """A registry with two tiny source prompts (m = 4, d = 64)."""
    path = tmp_path_factory.mktemp("study") / "registry"
    common = ["--registry", path, "--data-dir", real_data_dir]
    for i, task in enumerate(("mnli", "qqp")):
        extra = ["--backbone", tiny_causal_dir] if i == 0 else []
        result = run("source", "train", task, *common, *extra, *SMALL, "--prompt-length", "4")
        assert result.exit_code == 0, result.output
    return path, common, Workspace(path, real_data_dir)


@pytest.fixture(scope="module")
def full_study(sources):
    """Every method on rte and cb, one seed, through the CLI."""
    path, common, _ = sources
    result = run("study", "methods", "rte,cb", "--sources", "mnli,qqp", *common, *SMALL, "--json")
    assert result.exit_code == 0, result.output
    return path, common


def _table(path, name):
    result = run("study", "show", name, "--registry", path, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_table_has_every_cell(full_study):
    path, _ = full_study
    table = _table(path, "methods-rte+cb")
    assert [row["method"] for row in table["rows"]] == [*METHODS, "constant"]  # the constant answer comes last
    for row in table["rows"]:
        assert all(row["scores"][t]["n"] == 1 for t in ("rte", "cb")) and row["average"] is not None
        mean = (row["scores"]["rte"]["mean"] + row["scores"]["cb"]["mean"]) / 2
        assert row["average"]["mean"] == pytest.approx(mean)
    assert len(table["cells"]) == 2 * len(METHODS)
    registry = Registry(path)
    records = study_records(registry, "methods-rte+cb")
    assert len(records) == 2 * len(METHODS)
    for record, cell in zip(sorted(records, key=lambda r: r.ref), sorted(table["cells"], key=lambda c: c["prompt"])):
        mixing = {"target_init", "recipe"} if record.config["study"]["method"] in MIXING_METHODS else set()
        assert set(record.config["study"]) == TAG_KEYS | mixing and record.ref == cell["prompt"]
        evaluation = next(e for e in registry.evaluations("target", record.ref) if e.split == "test")
        assert evaluation.examples == 4 and evaluation.metrics[cell["metric"]] == cell["score"]
    # Trainable parameters per task: a prompt is m·d; ATTEMPT adds G; ATTEMPT-MT shares one G over 2 targets.
    params = {row["method"]: row["params"] for row in table["rows"]}
    g = params["attempt"] - 4 * 64
    from attemptctl.method.attention import AttentionModule

    assert g == sum(p.numel() for p in AttentionModule(64).parameters())  # G's weights, not its buffers
    assert params["pt"] == params["spot"] == params["uniform"] == 4 * 64
    assert params["attempt-mt"] == 4 * 64 + g // 2 and params["no-target"] == g
    mt = [c for c in table["cells"] if c["method"] == "attempt-mt"]
    assert len({c["run"] for c in mt}) == 1  # trained once, as one multi-task run
    # ... of twice the steps, tasks drawn uniformly: each target gets its single-task cell's budget.
    [run_record] = {r.ref: r for r in study_records(registry, "methods-rte+cb")
                    if r.config["study"]["method"] == "attempt-mt" and r.task == "rte"}.values()
    assert run_record.metrics["steps"] == run_record.config["max_steps"] == 2 * 2
    assert run_record.config["eval_every"] == 2 * 2 and run_record.config["sampling_temperature"] == 1e6
    assert {c["budget"]["steps"] for c in table["cells"]} == {2}
    assert all(c["attention"] for c in table["cells"] if c["method"] in ("attempt", "attempt-mt"))


def test_every_cell_records_the_same_budget(full_study):
    path, _ = full_study
    table = _table(path, "methods-rte+cb")
    assert table["budget_issues"] == []
    budgets = {(c["target"], json.dumps(c["budget"], sort_keys=True)) for c in table["cells"]}
    assert len(budgets) == 2  # one budget per target: the same steps, batch, prompt length and rows
    for target, budget in map(lambda b: (b[0], json.loads(b[1])), budgets):
        assert budget["steps"] == 2 and budget["batch_size"] == 4 and budget["prompt_length"] == 4
        assert budget["rows"]["train"] == 8 and budget["rows"]["test"] == 4


def test_a_cell_of_another_budget_is_flagged_and_other_options_refused(sources):
    path, common, ws = sources
    study = ["study", "methods", "rte", "--methods", "pt", "--name", "budget", "--prompt-length", "4", *common, *SMALL]
    assert run(*study, "--seeds", "1,42").exit_code == 0
    # A cell trained at 3 steps under the study's tag (another seed, so another cell).
    tag = {"name": "budget", "method": "pt", "target": "rte", "seed": 7, "shots": None}
    [record], _ = train_target(ws, ["rte"], [], variant="pt", overrides={**OVERRIDES, "max_steps": 3, "seed": 7,
                                                                         "prompt_length": 4},
                               record_config={"rte": {"study": tag}})
    from attemptctl.workflows.eval import evaluate_prompts

    evaluate_prompts(ws, [record.ref])
    shown = run("study", "show", "budget", "--registry", path)
    assert shown.exit_code == 0, shown.output
    assert "budget differs" in shown.output and "steps 3, the study's 2" in shown.output and "†" in shown.output
    table = methods_table(Registry(path), "budget")
    assert {str(c) for c in table.flagged} == {"pt · rte · seed 7"}
    refused = run(*study, "--lr", "0.1")
    assert refused.exit_code == 1 and "lr 0.3, this run asks 0.1" in refused.output


def test_single_takes_the_most_attended_source_of_the_attempt_cell(full_study):
    path, common = full_study
    table = _table(path, "methods-rte+cb")
    cells = {(c["method"], c["target"]): c for c in table["cells"]}
    for target in ("rte", "cb"):
        attempt = cells[("attempt", target)]
        shown = json.loads(run("attn", "show", attempt["prompt"], *common, "--json").output)[0]["weights"]
        assert shown == pytest.approx(attempt["attention"])
        best = max((ref for ref in shown if ref != "(target)"), key=shown.get)
        assert cells[("single", target)]["sources"] == [best]


def test_single_source_by_name_and_refused_without_an_attempt_cell(sources):
    path, common, _ = sources
    named = run("study", "methods", "rte,cb", "--methods", "single", "--single-source", "qqp", "--name", "named",
                *common, *SMALL)
    assert named.exit_code == 0, named.output
    registry = Registry(path)
    assert [r.sources for r in study_records(registry, "named")] == [("qqp@1",), ("qqp@1",)]
    refused = run("study", "methods", "rte", "--methods", "single", "--sources", "mnli,qqp", "--name", "lonely",
                  *common, *SMALL)
    assert refused.exit_code == 1 and "--single-source" in refused.output
    assert study_records(registry, "lonely") == []


def test_an_interrupted_study_trains_only_the_rest(sources):
    path, common, ws = sources
    config = MethodsStudyConfig(("rte", "cb"), ("mnli", "qqp"), ("pt", "attempt"), name="interrupted",
                                overrides=OVERRIDES)
    starts = []

    def interrupt_second_cell(event, **data):  # Ctrl-C's second press: KeyboardInterrupt inside the loop
        starts.append(event) if event == "start" else None
        if event == "step" and starts.count("start") == 2:
            raise KeyboardInterrupt

    result = study_methods(ws, config, on_event=interrupt_second_cell)
    assert result.interrupted and [str(c) for c in result.trained] == ["pt · rte · seed 42"]
    registry = Registry(path)
    first = {r.ref for r in study_records(registry, "interrupted")}
    assert len(first) == 2  # the finished cell and the interrupted one (kept, but not counted as done)
    assert [str(c.cell) for c in methods_table(registry, "interrupted").cells] == ["pt · rte · seed 42"]
    again = run("study", "methods", "rte,cb", "--sources", "mnli,qqp", "--methods", "pt,attempt", "--name",
                "interrupted", *common, *SMALL)
    assert again.exit_code == 0, again.output
    assert "3 cell(s) trained" in again.output and "1 already done" in again.output
    table = methods_table(registry, "interrupted")
    assert len(table.cells) == 4 and table.unfinished == 0
    pt_rte = next(c for c in table.cells if str(c.cell) == "pt · rte · seed 42")
    assert pt_rte.ref in first  # never trained again


def test_a_cell_killed_before_its_evaluation_is_evaluated_not_retrained(sources):
    path, _, ws = sources
    tag = {"name": "killed", "method": "pt", "target": "rte", "seed": 42, "shots": None}
    [record], _ = train_target(ws, ["rte"], [], variant="pt", overrides={**OVERRIDES, "prompt_length": 4},
                               record_config={"rte": {"study": tag}})  # registered; then the process died
    events = []
    result = study_methods(ws, MethodsStudyConfig(("rte",), ("mnli",), ("pt",), name="killed", overrides=OVERRIDES),
                           on_event=lambda event, **data: events.append(event))
    assert "start" not in events and [c.ref for c in result.table.cells] == [record.ref]
    assert any(e.split == "test" for e in Registry(path).evaluations("target", record.ref))


def test_adding_a_seed_trains_only_new_cells_and_show_needs_no_torch(full_study):
    path, common = full_study
    before = {c["prompt"] for c in _table(path, "methods-rte+cb")["cells"]}
    more = run("study", "methods", "rte,cb", "--sources", "mnli,qqp", "--methods", "pt,attempt", "--seeds", "42,7",
               *common, *SMALL, "--json")
    assert more.exit_code == 0, more.output
    assert "4 cell(s) trained" in more.output and "4 already done" in more.output
    printed = json.loads(more.stdout)
    after = {c["prompt"] for c in printed["cells"]}
    assert before < after and len(after - before) == 4
    assert {c["seed"] for c in printed["cells"] if c["method"] == "pt"} == {7, 42}
    assert next(r for r in printed["rows"] if r["method"] == "pt")["scores"]["rte"]["n"] == 2
    code = ("import sys, json; from typer.testing import CliRunner; from attemptctl.cli import app; "
            f"r = CliRunner().invoke(app, ['study', 'show', 'methods-rte+cb', '--registry', {str(path)!r}, '--json']); "
            "assert r.exit_code == 0, r.output; "
            "print(json.dumps({'torch': [m for m in ('torch', 'transformers') if m in sys.modules], "
            "'table': json.loads(r.output)}))")
    shown = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert shown["torch"] == []
    assert shown["table"] == printed
    text = run("study", "show", "methods-rte+cb", "--registry", path, "--markdown")
    # Only PT and ATTEMPT have seed 7: the other methods' ten cells (of 2 targets x 7 rows) are named as one seed's.
    assert "| ATTEMPT-MT |" in text.output and ("mean ± std over the seeds each cell has of 7, 42 (10 of 14 table "
                                                 "cells rest on one seed so far") in " ".join(text.output.split())
    # The attention table: one row per ATTEMPT target, its weights those the JSON holds, each row summing to 1.
    heat = [line for line in text.output.splitlines() if line.startswith(("| ATTEMPT |", "| ATTEMPT-MT |"))
            and line.split("|")[2].strip() in ("rte", "cb")]
    assert len(heat) == 4
    for line in heat:  # the mean over seeds of each cell's stored attention
        label, target, *weights = [part.strip() for part in line.strip("|").split("|")]
        method = "attempt" if label == "ATTEMPT" else "attempt-mt"
        cells = [c["attention"] for c in printed["cells"] if (c["method"], c["target"]) == (method, target)]
        means = [sum(a[k] for a in cells) / len(cells) for k in ("mnli@1", "qqp@1", "(target)")]
        assert [float(w) for w in weights] == pytest.approx(means, abs=0.0051)
        assert sum(map(float, weights)) == pytest.approx(1, abs=0.02)


@pytest.mark.parametrize("args,code,words", [
    (["rte", "--methods", "pt,bogus"], 1, ["unknown method 'bogus'"]),
    (["nosuch", "--methods", "pt"], 1, ["nosuch"]),
    (["rte,rte", "--methods", "pt"], 1, ["listed twice"]),
    (["rte", "--seeds", "1,x"], 2, ["--seeds"]),
    (["rte", "--methods", "pt", "--shots", "0"], 1, ["--shots"]),
    (["rte", "--methods", "attempt"], 1, ["--sources"]),
    (["rte", "--methods", "pt", "--preset", "paper"], 1, ["--max-steps"]),
    (["rte", "--sources", "nosuch"], 1, ["nosuch"]),
])
def test_bad_input_is_one_line_and_trains_nothing(tmp_path, args, code, words):
    result = run("study", "methods", *args, "--registry", tmp_path / "r")
    assert result.exit_code == code, result.output
    assert all(w in result.output for w in words) and "Traceback" not in result.output
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_show_of_an_unknown_study_names_the_known_ones(full_study):
    path, _ = full_study
    result = run("study", "show", "nosuch", "--registry", path)
    assert result.exit_code == 1 and "methods-rte+cb" in result.output and len(result.output.strip().splitlines()) == 1


def test_show_puts_the_named_targets_first_with_the_same_numbers(full_study):
    """`--targets cb,rte` reorders the columns only: each target's scores and the average stay as they were."""
    path, _ = full_study
    trained = json.loads(run("study", "show", "methods-rte+cb", "--registry", path, "--json").output)
    result = run("study", "show", "methods-rte+cb", "--registry", path, "--json", "--targets", "cb,rte")
    assert result.exit_code == 0, result.output
    reordered = json.loads(result.output)
    assert trained["targets"] == ["rte", "cb"] and reordered["targets"] == ["cb", "rte"]
    assert reordered["rows"] == trained["rows"]
    header = run("study", "show", "methods-rte+cb", "--registry", path, "--markdown", "--targets", "cb").output
    assert "| method | params/task | cb | rte | avg |" in header
    result = run("study", "show", "methods-rte+cb", "--registry", path, "--targets", "cb,wsc")
    assert result.exit_code == 1 and "'wsc'" in result.output and "rte, cb" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = run("study", "show", "methods-rte+cb", "--registry", path, "--targets", ",")
    assert result.exit_code == 1 and "names no target" in result.output and "rte, cb" in result.output


def test_each_cell_exports_its_kept_step_and_the_table_counts_kept_starts(full_study, tmp_path):
    """The step kept on dev travels with every exported cell; a cell whose start was kept (step 0) is
    counted under the table, and an export written before the step was recorded is counted apart."""
    path, _ = full_study
    export = json.loads(run("study", "show", "methods-rte+cb", "--registry", path, "--json").output)
    for cell in export["cells"]:
        shown = json.loads(run("registry", "show", cell["prompt"], "--registry", path).output)
        assert cell["best_step"] == shown["metrics"]["best_step"] and isinstance(cell["best_step"], int)
        assert cell["start"] == shown["config"]["init"]  # SPoT's pick, MNLI for the mixing methods, vocab for PT
    assert {c["start"] for c in export["cells"] if c["method"] == "pt"} == {"vocab"}
    assert all(c["start"].startswith("source:") for c in export["cells"] if c["method"] == "spot")
    plain = run("study", "show", "methods-rte+cb", "--registry", path, "--markdown").output
    assert ("Kept the untrained start" in plain) == any(c["best_step"] == 0 for c in export["cells"])
    pt = [c for c in export["cells"] if c["method"] == "pt"]
    pt[0]["best_step"] = 0  # as --eval-start records a start that training did not beat
    del pt[-1]["best_step"]  # as an export written before the kept step was recorded
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(export))
    text = run("study", "show", "methods-rte+cb", "--from", edited, "--markdown").output
    kept, known = sum(c.get("best_step") == 0 for c in pt), len(pt) - 1  # the fixture may hold several seeds
    assert re.search(rf"PT {kept} of {known} cell{'' if known == 1 else 's'}\b", text)
    assert "1 cell has no kept step on record" in text
    # The same cells in an older export listed first: the fields come from whichever copy has them.
    old = json.loads(edited.read_text())
    for cell in old["cells"]:
        cell.pop("best_step", None), cell.pop("start")
    older = tmp_path / "older.json"
    older.write_text(json.dumps(old))
    joined = json.loads(run("study", "show", "methods-rte+cb", "--from", older, "--from", edited, "--json").output)
    assert {c["prompt"]: (c.get("best_step"), c["start"]) for c in joined["cells"]} == \
        {c["prompt"]: (c.get("best_step"), c["start"]) for c in export["cells"]}
    export["cells"][0]["best_step"] = "step"  # a mangled field is the one-line export error
    edited.write_text(json.dumps(export))
    result = run("study", "show", "methods-rte+cb", "--from", edited)
    assert result.exit_code == 1 and "lacks or mangles" in result.output


def test_cells_name_the_exact_source_prompts_and_show_refuses_exports_that_disagree(full_study, tmp_path):
    """Each exported cell records the sha256 of every source it mixed or started from, so exports whose MNLI
    prompts differ (two registries that pulled different zoos) are never joined into one table, whatever
    version numbers they carry; the same cells exported before the digests were kept join with them."""
    path, _ = full_study
    export = json.loads(run("study", "show", "methods-rte+cb", "--registry", path, "--json").output)
    digests = {ref: json.loads(run("registry", "show", ref, "--registry", path).output)["sha256"][:16]
               for ref in ("mnli@1", "qqp@1")}
    for cell in export["cells"]:
        start = cell["start"].removeprefix("source:") if cell["start"].startswith("source:") else None
        named = {*cell["sources"], *([start] if start else [])}
        assert cell["source_sha256"] == {ref: digests[ref] for ref in named}, cell["method"]
    assert all(c["source_sha256"] == {} for c in export["cells"] if c["method"] == "pt")
    mixing = next(c for c in export["cells"] if c["method"] == "attempt")
    assert set(mixing["source_sha256"]) == {"mnli@1", "qqp@1"}
    mine, theirs = tmp_path / "mine.json", tmp_path / "theirs.json"
    mine.write_text(json.dumps(export))

    def show_with(edit):
        other = json.loads(json.dumps(export))
        other["cells"] = [dict(c, seed=c["seed"] + 10) for c in other["cells"]]  # other cells, as another machine's
        edit(next(c for c in other["cells"] if c["method"] == "attempt"))
        theirs.write_text(json.dumps(other))
        return run("study", "show", "methods-rte+cb", "--from", mine, "--from", theirs, "--json")

    assert show_with(lambda cell: None).exit_code == 0
    for edit, named in ((lambda cell: cell["source_sha256"].update({"mnli@1": "0" * 16}), "mnli@1"),
                        (lambda cell: cell["source_sha256"].update({"mnli@2": "0" * 16}), "mnli@2")):
        result = show_with(edit)  # the same ref, or another version of MNLI, that is another prompt
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
        assert f"source mnli@1 is sha256 {digests['mnli@1']} in {mine} but {named} is {'0' * 16}" in result.output
    for mangled in ([], {"mnli@1": None}):
        result = show_with(lambda cell, bad=mangled: cell.update(source_sha256=bad))
        assert result.exit_code == 1 and "lacks or mangles source_sha256" in result.output
    # The same cells exported before the digests were kept, listed first: the joined cells keep them.
    older = json.loads(json.dumps(export))
    for cell in older["cells"]:
        del cell["source_sha256"]
    theirs.write_text(json.dumps(older))
    joined = json.loads(run("study", "show", "methods-rte+cb", "--from", theirs, "--from", mine, "--json").output)
    assert {c["prompt"]: c["source_sha256"] for c in joined["cells"]} == \
        {c["prompt"]: c["source_sha256"] for c in export["cells"]}


def test_export_after_each_cell_and_show_joins_exports_of_two_registries(sources, tmp_path, tiny_causal_dir):
    """A study run in two registries (two machines) is one table: `--export` writes each registry's cells as
    they finish, `study show --from A --from B` joins them, and a file of another registry is never overwritten."""
    path, common, _ = sources
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    study = ["study", "methods", "rte", "--methods", "pt", "--name", "joined", "--prompt-length", "4", *SMALL]
    assert run(*study, "--seeds", "1", *common, "--export", first).exit_code == 0
    one = json.loads(first.read_text())
    assert [(c["method"], c["target"], c["seed"]) for c in one["cells"]] == [("pt", "rte", 1)]
    # The second machine: a registry of its own, seed 2 only.
    other = tmp_path / "other-registry"
    other_common = ["--registry", other, *common[2:]]
    result = run(*study, "--seeds", "2", *other_common, "--backbone", tiny_causal_dir, "--export", second)
    assert result.exit_code == 0, result.output
    result = run("study", "show", "joined", "--from", first, "--from", second, "--json")
    assert result.exit_code == 0, result.output
    joined = json.loads(result.output)
    assert sorted(c["seed"] for c in joined["cells"]) == [1, 2]
    row, constant = joined["rows"]  # the one method, then the constant answer on both seeds' rows
    assert constant["method"] == "constant" and constant["scores"]["rte"]["n"] == 2
    scores = sorted(c["score"] for c in joined["cells"])
    assert row["scores"]["rte"]["n"] == 2 and row["scores"]["rte"]["mean"] == pytest.approx(sum(scores) / 2)
    assert joined["budget_issues"] == []
    assert "mean ± std over seeds 1, 2." in run("study", "show", "joined", "--from", first, "--from", second,
                                                "--markdown").output
    # A table cell with fewer seeds than the table (a study still running): the caption says so, not "over seeds
    # 1, 2" for every cell.
    partial = json.loads(first.read_text())
    partial["cells"][0]["method"] = "spot"
    third = tmp_path / "c.json"
    third.write_text(json.dumps(partial))
    shown = run("study", "show", "joined", "--from", first, "--from", second, "--from", third, "--markdown")
    assert shown.exit_code == 0, shown.output
    assert ("mean ± std over the seeds each cell has of 1, 2 (1 of 2 table cells rest on one seed so far, and "
            "show no ±)") in " ".join(shown.output.split())
    # The same file twice is the same cells, not twice as many; a file of another registry is not overwritten.
    result = run("study", "show", "joined", "--from", first, "--from", first, "--json")
    assert result.exit_code == 0 and len(json.loads(result.output)["cells"]) == 1
    before = second.read_text()
    result = run(*study, "--seeds", "1", *common, "--export", second)
    assert result.exit_code == 1 and "export to a new file" in result.output and second.read_text() == before


@pytest.mark.parametrize("content,words", [
    (None, "does not exist"), ("{not json", "not readable JSON"), ('{"study": "joined"}', "not a study export"),
    ('{"study": "other", "cells": []}', "holds study 'other'"),
    ('{"study": "joined", "cells": [{"method": "pt"}]}', "a cell lacks"),
])
def test_show_from_a_bad_export_is_one_line(tmp_path, content, words):
    path = tmp_path / "export.json"
    if content is not None:
        path.write_text(content)
    result = run("study", "show", "joined", "--from", path)
    assert result.exit_code == 1 and words in result.output and len(result.output.strip().splitlines()) == 1
