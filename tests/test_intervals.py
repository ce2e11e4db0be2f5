"""Paired bootstrap intervals of a method's difference from PT: the pure function on hand-made answers whose
interval is known (identical answers, a method right where PT is wrong, F1 recomputed on every resample, seeds
pooled, targets averaged), the compact answers a cell keeps, and `study methods` → `study show` end to end on
the tiny Llama, from the registry and from the export alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as sk
from typer.testing import CliRunner

from attemptctl.studies.answers import decode, encode, examples_of, gold_of, rows_digest
from attemptctl.studies.intervals import (
    RESAMPLES,
    SeedRows,
    averaged,
    paired_difference,
    resample_rows,
)
from attemptctl.tasks import get_task, labelled
from attemptctl.tasks.base import Example
from attemptctl.tasks.metrics import compute_metrics, primary_metric

RTE, MRPC, CB = get_task("rte"), get_task("mrpc"), get_task("cb")


def _rows(task, labels):
    return [Example(task.name, f"row {i}", task.labels[label], label) for i, label in enumerate(labels)]


def _gold(rows):
    return [e.target for e in rows]


# -- the pure function -------------------------------------------------------------------------------


def test_identical_answers_differ_by_exactly_zero():
    rows = _rows(RTE, [0, 1, 1, 0, 1, 0, 0, 1, 1, 1])
    answers = [RTE.labels[i % 2] for i in range(10)]  # half right, half wrong: any score, the same for both
    interval = paired_difference(RTE, "accuracy", [SeedRows(answers, answers, rows)]).interval()
    assert (interval.difference, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert not interval.holds and interval.text() == "+0.0 [+0.0, +0.0]" and interval.seeds == 1


def test_a_method_right_everywhere_pt_wrong_on_half_holds_above_zero():
    rows = _rows(RTE, [i % 2 for i in range(40)])
    pt = [RTE.labels[0]] * 40  # right on the 20 entailment rows, wrong on the other 20
    interval = paired_difference(RTE, "accuracy", [SeedRows(_gold(rows), pt, rows)]).interval()
    assert interval.difference == pytest.approx(0.5)
    assert 0 < interval.low < 0.5 < interval.high <= 1 and interval.holds
    # A paired draw: the method is right on every row it draws, so the difference is PT's error rate on it.
    draws = resample_rows(40, RESAMPLES, (0, 0))
    wrong = np.array([[rows[i].label == 1 for i in draw] for draw in draws]).mean(axis=1)
    assert (interval.low, interval.high) == pytest.approx(tuple(np.percentile(wrong, [2.5, 97.5])))
    # ... and the other way round it holds below zero.
    assert paired_difference(RTE, "accuracy", [SeedRows(pt, _gold(rows), rows)]).interval().high < 0


def test_f1_is_recomputed_on_each_resample_not_averaged_over_rows():
    rng = np.random.default_rng(3)
    gold = rng.integers(0, 2, 60)
    method = np.where(rng.random(60) < 0.8, gold, 1 - gold)
    pt = np.where(rng.random(60) < 0.6, gold, 1 - gold)
    rows = _rows(MRPC, gold)
    words = MRPC.labels
    difference = paired_difference(MRPC, "f1", [SeedRows([words[i] for i in method], [words[i] for i in pt], rows)],
                                   resamples=200, seed=9)
    draws = resample_rows(60, 200, (9, 0))
    reference = [sk.f1_score(gold[d], method[d], zero_division=0) - sk.f1_score(gold[d], pt[d], zero_division=0)
                 for d in draws]  # F1 of each draw: MRPC's positive class is label 1, as scikit-learn's default
    assert difference.resampled == pytest.approx(reference)
    assert difference.point == pytest.approx(sk.f1_score(gold, method) - sk.f1_score(gold, pt))
    per_row = [np.mean(gold[d] == method[d]) - np.mean(gold[d] == pt[d]) for d in draws]  # a mean over rows
    assert not np.allclose(difference.resampled, per_row)


def test_macro_f1_of_cb_is_recomputed_from_answers_and_gold():
    rng = np.random.default_rng(5)
    gold, method, pt = rng.integers(0, 3, 30), rng.integers(0, 3, 30), rng.integers(0, 3, 30)
    rows = _rows(CB, gold)
    difference = paired_difference(CB, "macro_f1", [SeedRows([CB.labels[i] for i in method],
                                                             [CB.labels[i] for i in pt], rows)], resamples=50)

    def macro(y, p):
        return sk.f1_score(y, p, labels=[0, 1, 2], average="macro", zero_division=0)
    draws = resample_rows(30, 50, (0, 0))
    assert difference.resampled == pytest.approx([macro(gold[d], method[d]) - macro(gold[d], pt[d]) for d in draws])


def test_seeds_are_pooled_by_the_mean_of_their_differences():
    rows = _rows(RTE, [i % 2 for i in range(20)])
    wrong = [RTE.labels[1 - e.label] for e in rows]
    better, even = SeedRows(_gold(rows), wrong, rows), SeedRows(wrong, wrong, rows)
    pooled = paired_difference(RTE, "accuracy", [better, even])
    # Seed 1: +1.0 on every draw (right against wrong); seed 2: 0 on every draw; pooled: exactly +0.5.
    assert pooled.point == 0.5 and set(pooled.resampled) == {0.5} and pooled.seeds == 2
    assert pooled.interval().text() == "+50.0 [+50.0, +50.0]"
    # Each seed's rows are drawn on their own, and the pooled draw is the mean of the seeds' draws.
    half = [RTE.labels[0]] * 20  # right on the label-0 rows only
    ahead, behind = SeedRows(_gold(rows), half, rows), SeedRows(half, _gold(rows), rows)
    both = paired_difference(RTE, "accuracy", [ahead, behind], seed=4)
    first, second = resample_rows(20, RESAMPLES, (4, 0)), resample_rows(20, RESAMPLES, (4, 1))
    assert not np.array_equal(first, second)
    ones = [np.array([[rows[i].label for i in d] for d in draws]).mean(axis=1) for draws in (first, second)]
    # Seed 1 is ahead by the share of label-1 rows in its draw, seed 2 behind by the share in its own.
    assert both.resampled == pytest.approx((ones[0] - ones[1]) / 2) and both.point == pytest.approx(0.0)


def test_the_average_over_targets_is_the_mean_of_the_targets_on_each_resample():
    rows = _rows(RTE, [i % 2 for i in range(20)])
    wrong = [RTE.labels[1 - e.label] for e in rows]
    right = paired_difference(RTE, "accuracy", [SeedRows(_gold(rows), wrong, rows)])
    cb_rows = _rows(CB, [0, 1, 2] * 5)
    noisy = [CB.labels[(i * 7) % 3] for i in range(15)]
    tie = paired_difference(CB, "macro_f1", [SeedRows(noisy, noisy, cb_rows)])
    average = averaged([right, tie])
    assert average.point == pytest.approx(0.5) and set(average.resampled) == {0.5}
    mixed = paired_difference(CB, "macro_f1", [SeedRows(_gold(cb_rows), noisy, cb_rows)])
    assert averaged([right, mixed]).resampled == pytest.approx((right.resampled + mixed.resampled) / 2)


def test_seeds_that_test_on_the_same_rows_share_one_draw_and_add_no_rows():
    """Under --split-protocol heldout every seed tests on the whole validation split, each in its own order:
    three seeds with the same rows and answers are one seed's evidence, not three seeds'."""
    rng = np.random.default_rng(5)
    gold = rng.integers(0, 2, 80)
    method = np.where(rng.random(80) < 0.75, gold, 1 - gold)
    pt = np.where(rng.random(80) < 0.65, gold, 1 - gold)
    rows = _rows(RTE, gold)
    ids = [f"row{i}" for i in range(80)]
    words = RTE.labels

    def seed(order):
        return SeedRows([words[method[i]] for i in order], [words[pt[i]] for i in order], [rows[i] for i in order],
                        [ids[i] for i in order])
    one = paired_difference(RTE, "accuracy", [seed(range(80))]).interval()
    orders = [rng.permutation(80) for _ in range(3)]
    three = paired_difference(RTE, "accuracy", [seed(o) for o in orders]).interval()
    assert (three.difference, three.low, three.high) == pytest.approx((one.difference, one.low, one.high))
    # Without ids the copies were resampled as if they were other rows: a narrower, wrong interval.
    blind = paired_difference(RTE, "accuracy", [SeedRows(s.method, s.baseline, s.examples) for s in map(seed, orders)])
    assert blind.interval().high - blind.interval().low < 0.8 * (three.high - three.low)


def test_a_shared_draw_gives_each_seed_the_drawn_rows_it_has():
    from attemptctl.studies.intervals import draw_shared_rows

    first, second = _rows(RTE, [0, 1, 0, 1]), _rows(RTE, [1, 1, 0, 0])
    draws = draw_shared_rows([first, second], [["a", "b", "c", "d"], ["c", "d", "e", "f"]], resamples=50, seed=3)
    union = ["a", "b", "c", "d", "e", "f"]
    drawn = resample_rows(6, 50, 3)
    for b in range(50):
        names = [union[u] for u in drawn[b]]
        assert [["a", "b", "c", "d"][i] for i in draws[0].indices[b]] == [n for n in names if n in "abcd"]
        assert [["c", "d", "e", "f"][i] for i in draws[1].indices[b]] == [n for n in names if n in "cdef"]


def test_rows_carry_ids_that_leave_their_digest_as_it_was():
    rows = _rows(RTE, [0, 1, 1])
    gold = gold_of(RTE, rows)
    assert len(set(gold["ids"])) == 3
    assert rows_digest("rte", 1, rows, gold) == rows_digest("rte", 1, rows, {k: v for k, v in gold.items() if k != "ids"})


def test_unpaired_answers_are_refused():
    rows = _rows(RTE, [0, 1, 0])
    with pytest.raises(ValueError, match="2 predictions for 3 test rows"):
        paired_difference(RTE, "accuracy", [SeedRows(_gold(rows)[:2], _gold(rows), rows)])
    with pytest.raises(ValueError, match="rows and resamples"):
        resample_rows(0)


# -- what a cell keeps -------------------------------------------------------------------------------


def test_label_answers_are_one_symbol_per_row_whatever_words_the_cell_answered_in():
    rows = _rows(CB, [0, 2, 1, 1, 0])
    assert encode(CB, ["entailment", "neutral", " contradiction ", "maybe", ""]) == "021.."
    index = labelled(CB, "index")  # a cell answering "0", "1", "2" keeps the same symbols
    assert encode(index, ["0", "2", "1", "x", "1"]) == "021.1"
    assert decode(CB, "021.1") == ["entailment", "neutral", "contradiction", "", "contradiction"]
    for task, answers in ((CB, ["entailment", "neutral", "x", "contradiction", "entailment"]),
                          (index, ["0", "2", "x", "1", "0"])):
        own = [Example("cb", e.input, task.labels[e.label], e.label) for e in rows]  # gold in the cell's words
        back = compute_metrics(CB, decode(CB, encode(task, answers)), examples_of(CB, gold_of(task, own)))
        assert back == pytest.approx(compute_metrics(task, answers, own))  # the kept answers score as the cell
    with pytest.raises(ValueError, match="does not have"):
        decode(RTE, "02")


def test_free_form_and_grouped_rows_keep_what_their_metrics_read():
    squad = get_task("squad")
    rows = [Example("squad", "q1", "Paris", None, ("Paris", "paris, France")), Example("squad", "q2", "7", None, ("7",))]
    answers = ["paris", "seven"]
    gold = gold_of(squad, rows)
    assert encode(squad, answers) == answers and gold["answers"] == [["Paris", "paris, France"], ["7"]]
    assert compute_metrics(squad, answers, examples_of(squad, gold)) == compute_metrics(squad, answers, rows)
    multirc = get_task("multirc")
    grouped = [Example("multirc", f"r{i}", multirc.labels[i % 2], i % 2, group=f"q{i // 2}") for i in range(6)]
    answers = [multirc.labels[0]] * 6
    assert compute_metrics(multirc, answers, examples_of(multirc, gold_of(multirc, grouped))) == \
        compute_metrics(multirc, answers, grouped)
    assert rows_digest("cb", 1, grouped, gold_of(multirc, grouped)) != rows_digest("cb", 2, grouped,
                                                                                  gold_of(multirc, grouped))


# -- end to end: `study methods` then `study show` -----------------------------------------------------

runner = CliRunner()
SMALL = ["--max-steps", "2", "--train-limit", "8", "--dev-limit", "4", "--test-limit", "12", "--batch-size", "4",
         "--max-length", "32", "--eval-every", "2"]


def run(*args):
    from attemptctl.cli import app

    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def study(tmp_path_factory, real_data_dir, tiny_causal_dir):
    """pt and attempt on rte and cb, seeds 1 and 2, exported as the cells finish."""
    folder = tmp_path_factory.mktemp("intervals")
    common = ["--registry", folder / "registry", "--data-dir", real_data_dir]
    for i, task in enumerate(("mnli", "qqp")):
        extra = ["--backbone", tiny_causal_dir] if i == 0 else []
        result = run("source", "train", task, *common, *extra, *SMALL, "--prompt-length", "4")
        assert result.exit_code == 0, result.output
    export = folder / "export.json"
    result = run("study", "methods", "rte,cb", "--sources", "mnli,qqp", "--methods", "pt,attempt", "--seeds", "1,2",
                 "--name", "paired", "--export", export, *common, *SMALL)
    assert result.exit_code == 0, result.output
    return common, export


def test_show_prints_the_difference_table_and_the_export_carries_its_intervals(study):
    common, export = study
    shown = run("study", "show", "paired", "--registry", common[1], "--json")
    assert shown.exit_code == 0, shown.output
    table = json.loads(shown.output)
    assert json.loads(export.read_text()) == table  # the export is the show's JSON, intervals included
    cells = {(c["method"], c["target"], c["seed"]): c for c in table["cells"]}
    # Every cell kept one answer per test row; PT and ATTEMPT of a target and seed answered the same rows,
    # whose gold is kept once per target and seed.
    assert len(table["test_rows"]) == 4
    for (method, target, seed), cell in cells.items():
        task = get_task(target)
        gold = table["test_rows"][cell["test_rows"]]
        assert (gold["target"], gold["seed"]) == (target, seed) and len(cell["predictions"]) == 12
        assert cell["test_rows"] == cells[("pt", target, seed)]["test_rows"]
        rescored = compute_metrics(task, decode(task, cell["predictions"]), examples_of(task, gold))
        assert rescored[primary_metric(task)] == pytest.approx(cell["score"])  # what the registry's evaluation holds
    differences = table["differences"]
    assert differences["resamples"] == RESAMPLES and differences["level"] == 0.95
    assert [row["method"] for row in differences["rows"]] == ["attempt", "constant"]
    attempt, constant = differences["rows"]
    for target in ("rte", "cb"):
        got = attempt["targets"][target]
        expected = np.mean([cells[("attempt", target, s)]["score"] - cells[("pt", target, s)]["score"] for s in (1, 2)])
        assert got["difference"] == pytest.approx(expected) and got["seeds"] == 2
        assert got["low"] <= got["high"] and got["holds"] == (got["low"] > 0 or got["high"] < 0)
        assert constant["targets"][target]["seeds"] == 2
    average = attempt["average"]
    assert average["difference"] == pytest.approx(np.mean([attempt["targets"][t]["difference"] for t in ("rte", "cb")]))
    # The scores table ends with the constant answer on the same rows: the best single label of each seed's
    # rows, scored as the data gives them, its mean over seeds (PT + its difference from PT, too).
    score_rows = {row["method"]: row for row in table["rows"]}
    assert list(score_rows) == ["pt", "attempt", "constant"] and score_rows["constant"]["params"] == 0
    for target in ("rte", "cb"):
        task = get_task(target)
        best = [max(compute_metrics(task, [label] * 12, examples_of(task, table["test_rows"][
            cells[("pt", target, s)]["test_rows"]]))[primary_metric(task)] for label in task.labels) for s in (1, 2)]
        assert score_rows["constant"]["scores"][target]["mean"] == pytest.approx(np.mean(best))
        pt_mean = score_rows["pt"]["scores"][target]["mean"]
        assert score_rows["constant"]["scores"][target]["mean"] == pytest.approx(
            pt_mean + constant["targets"][target]["difference"])
    # The terminal table and the Markdown: one row per method and the constant answer, the average column.
    text = " ".join(run("study", "show", "paired", "--registry", common[1]).output.split())
    assert "difference from PT (points, 95% paired bootstrap)" in text and "paired bootstrap interval" in text
    assert "constant answer" in text and "n/a" not in text
    markdown = run("study", "show", "paired", "--registry", common[1], "--markdown").output
    assert "| difference from PT | rte | cb | avg |" in markdown and "| constant answer |" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| ATTEMPT |") and "[" in line)
    interval = attempt["targets"]["rte"]
    shown_rte = row.split("|")[2].strip()
    assert shown_rte.strip("*").startswith(f"{round(100 * interval['difference'], 1) + 0.0:+.1f} [")
    assert shown_rte.startswith("**") == interval["holds"]


def test_the_export_alone_gives_the_same_intervals_and_an_old_export_shows_as_before(study, tmp_path):
    _, export = study
    joined = json.loads(run("study", "show", "paired", "--from", export, "--json").output)
    assert joined["differences"] == json.loads(export.read_text())["differences"]
    # An export written before answers were kept: its table as it was, every interval n/a with a note.
    old = json.loads(export.read_text())
    for cell in old["cells"]:
        del cell["predictions"], cell["test_rows"]
    del old["test_rows"], old["differences"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    shown = json.loads(run("study", "show", "paired", "--from", path, "--json").output)
    assert shown["rows"] == [row for row in joined["rows"] if row["method"] != "constant"]  # no rows to score it on
    assert all(i is None for row in shown["differences"]["rows"] for i in [*row["targets"].values(), row["average"]])
    markdown = run("study", "show", "paired", "--from", path, "--markdown").output
    assert "difference from PT" not in markdown and "| PT |" in markdown and "| constant answer |" not in markdown
    text = " ".join(run("study", "show", "paired", "--from", path).output.split())  # the note wraps at 80 columns
    assert "n/a" in text and "no per-row test answers on record" in text
    # Joined with the new export, each cell takes the copy that kept its answers.
    both = json.loads(run("study", "show", "paired", "--from", path, "--from", export, "--json").output)
    assert both["differences"] == joined["differences"]
    # Answers that do not fit their rows are the one-line export error.
    mangled = json.loads(export.read_text())
    mangled["cells"][0]["predictions"] = mangled["cells"][0]["predictions"][:-1]
    path.write_text(json.dumps(mangled))
    result = run("study", "show", "paired", "--from", path)
    assert result.exit_code == 1 and "lacks or mangles" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_detectable_difference_matches_the_issues_figures_and_pairing_shrinks_it():
    from attemptctl.studies.intervals import detectable_difference

    # Issue 29's table (unpaired, 80% power, α 0.05, accuracy near 0.5): RTE's 139 test rows ~17 points,
    # BoolQ's 500 ~9, WSC's 52 ~27.
    assert [round(100 * detectable_difference(n)) for n in (139, 500, 52)] == [17, 9, 27]
    assert detectable_difference(277) < detectable_difference(139)  # the whole validation split
    # Paired: methods that disagree on 20% of 400 rows; a pair that never disagrees detects any difference.
    paired_400 = detectable_difference(400, discordant=0.2)
    assert paired_400 == pytest.approx((1.959964 + 0.841621) * (0.2 / 400) ** 0.5, rel=1e-5)
    assert paired_400 < detectable_difference(400) and detectable_difference(400, discordant=0) == 0
    with pytest.raises(ValueError, match="rows must be at least 1"):
        detectable_difference(0)
