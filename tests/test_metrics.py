"""Metrics pinned against scikit-learn, scipy and hand-computed values, edge cases included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk

from attemptctl.tasks import Example, get_task
from attemptctl.tasks.metrics import (
    METRICS,
    binary_f1,
    compute_metrics,
    constant_answer,
    macro_f1,
    matthews_corrcoef,
    normalize_answer,
    pearson_corr,
    primary_metric,
    spearman_corr,
    squad_exact,
    squad_token_f1,
)


def examples_for(name: str, label_ids) -> list[Example]:
    task = get_task(name)
    return [Example(name, "x", task.labels[i], int(i)) for i in label_ids]


def words(name: str, label_ids) -> list[str]:
    return [get_task(name).labels[i] for i in label_ids]


@pytest.mark.parametrize("seed", range(5))
def test_label_metrics_match_sklearn_on_random_arrays(seed):
    rng = np.random.default_rng(seed)
    gold, pred = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    got = compute_metrics(get_task("mrpc"), words("mrpc", pred), examples_for("mrpc", gold))
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(gold, pred))
    assert got["f1"] == pytest.approx(sk.f1_score(gold, pred, pos_label=1))
    gold3, pred3 = rng.integers(0, 3, 100), rng.integers(0, 3, 100)
    cb = compute_metrics(get_task("cb"), words("cb", pred3), examples_for("cb", gold3))
    assert cb["macro_f1"] == pytest.approx(sk.f1_score(gold3, pred3, average="macro"))
    assert cb["accuracy"] == pytest.approx(sk.accuracy_score(gold3, pred3))
    assert matthews_corrcoef(list(gold3), list(pred3)) == pytest.approx(
        sk.matthews_corrcoef(gold3, pred3))


def test_hand_computed_f1():
    # tp=1, fp=1, fn=1 -> F1 = 2/(2+1+1) = 0.5; accuracy 2/4
    qqp = get_task("qqp")
    got = compute_metrics(qqp, words("qqp", [1, 1, 0, 0]), examples_for("qqp", [1, 0, 1, 0]))
    assert got == {"f1": 0.5, "accuracy": 0.5}
    assert primary_metric(get_task("qqp")) == "f1" and primary_metric(get_task("cb")) == "macro_f1"


def test_invalid_outputs_count_as_wrong_and_never_raise():
    task, gold = get_task("mrpc"), examples_for("mrpc", [1, 1, 0, 0])
    got = compute_metrics(task, ["equivalent", "yes", "", " not_equivalent \n"], gold)
    # gold 1 predicted "yes": a false negative, like sklearn with an unknown class
    expected_f1 = sk.f1_score([1, 1, 0, 0], [1, -1, -1, 0], labels=[1], average="macro")
    assert got["accuracy"] == 0.5 and got["f1"] == pytest.approx(expected_f1)


def test_macro_f1_invalid_output_costs_only_its_row():
    gold, pred = [0, 1, 2, 2], [0, 1, 2, -1]
    outputs = [*words("cb", pred[:3]), "maybe"]
    got = compute_metrics(get_task("cb"), outputs, examples_for("cb", gold))
    expected = sk.f1_score(gold, pred, labels=[0, 1, 2], average="macro")
    assert got["macro_f1"] == pytest.approx(expected)


@pytest.mark.parametrize("name", ["mrpc", "cb", "rte", "cola", "stsb", "squad", "multirc"])
def test_empty_predictions_give_zero_not_a_crash(name):
    task = get_task(name)
    assert compute_metrics(task, [], []) == {metric: 0.0 for metric in task.metrics}


@pytest.mark.filterwarnings("ignore:A single label was found")
def test_all_one_class_edge_cases():
    # no positive anywhere: F1 is 0.0 (sklearn's zero_division=0); accuracy is perfect
    mrpc = get_task("mrpc")
    got = compute_metrics(mrpc, words("mrpc", [0, 0, 0]), examples_for("mrpc", [0, 0, 0]))
    assert got == {"f1": 0.0, "accuracy": 1.0}
    assert sk.f1_score([0, 0, 0], [0, 0, 0], zero_division=0) == 0.0
    # a single class everywhere in CB: T5/the paper average over all three classes (absent ones score 0)
    got = compute_metrics(get_task("cb"), words("cb", [2, 2]), examples_for("cb", [2, 2]))
    expected = sk.f1_score([2, 2], [2, 2], labels=[0, 1, 2], average="macro", zero_division=0)
    assert got["macro_f1"] == pytest.approx(1 / 3) == pytest.approx(expected)
    same = [1, 1, 1]
    assert matthews_corrcoef(same, same) == sk.matthews_corrcoef(same, same) == 0.0


def test_length_mismatch_is_a_programming_error():
    with pytest.raises(ValueError, match="2 predictions for 1 examples"):
        compute_metrics(get_task("rte"), ["entailment"] * 2, examples_for("rte", [0]))


def test_matthews_for_cola_with_invalid_output():
    task = get_task("cola")
    gold, pred = [1, 0, 1, 1, 0, 0], [1, 0, 0, 1, -1, 0]
    outputs = [*words("cola", pred[:4]), "???", "unacceptable"]
    got = compute_metrics(task, outputs, examples_for("cola", gold))
    assert got["matthews"] == pytest.approx(sk.matthews_corrcoef(gold, pred))


@pytest.mark.parametrize("seed", range(3))
def test_correlations_match_scipy_including_ties(seed):
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(0, 5, 50) * 5) / 5  # 0.2 steps: many ties
    y = np.round((x + rng.normal(0, 1, 50)).clip(0, 5) * 5) / 5
    assert pearson_corr(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert spearman_corr(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


def test_stsb_metrics_on_strings_with_invalid_and_constant_outputs():
    task = get_task("stsb")
    gold = [Example("stsb", "x", t, None, (t,)) for t in ["1.0", "2.4", "3.8", "5.0"]]
    got = compute_metrics(task, ["1.2", "two", "3.6", "4.8"], gold)
    pred = [1.2, -1.0, 3.6, 4.8]  # "two" scores -1.0 as T5's string_to_float does
    assert got["pearson"] == pytest.approx(stats.pearsonr([1, 2.4, 3.8, 5], pred)[0])
    assert got["spearman"] == pytest.approx(stats.spearmanr([1, 2.4, 3.8, 5], pred)[0])
    constant = compute_metrics(task, ["3.0"] * 4, gold)
    assert constant == {"pearson": 0.0, "spearman": 0.0}
    assert not any(map(math.isnan, constant.values()))


def test_squad_normalisation_em_and_f1():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert squad_exact("the cat", ["A cat", "dog"]) == 1.0
    # "cat sat down" vs "cat sat": p=2/3, r=1 -> F1 0.8; best over golds
    assert squad_token_f1("cat sat down", ["dog", "the cat sat"]) == pytest.approx(0.8)
    assert squad_token_f1("", ["cat"]) == 0.0 and squad_token_f1("the", ["a"]) == 1.0
    task = get_task("squad")
    gold = [Example("squad", "q", "Denver Broncos", None, ("Denver Broncos", "Broncos")),
            Example("squad", "q", "1973", None, ("1973",))]
    got = compute_metrics(task, ["broncos", "in 1973"], gold)
    assert got == {"squad_f1": pytest.approx((1.0 + 2 / 3) / 2), "squad_em": 0.5}


def test_multirc_f1_over_answers_and_exact_match_per_question():
    task = get_task("multirc")
    rows = [("q1", "True"), ("q1", "False"), ("q2", "True"), ("q2", "True"), ("q3", "False")]
    gold = [Example("multirc", "x", t, ("False", "True").index(t), group=g) for g, t in rows]
    got = compute_metrics(task, ["True", "False", "True", "False", "oops"], gold)
    assert got["group_em"] == pytest.approx(1 / 3)  # only q1 is entirely right
    assert got["f1"] == pytest.approx(sk.f1_score([1, 0, 1, 1, 0], [1, 0, 1, 0, 0]))


def test_primitives_on_empty_and_no_positive_inputs():
    assert binary_f1([], [], 1) == 0.0 and macro_f1([], [], [0, 1]) == 0.0
    assert pearson_corr([1.0], [2.0]) == 0.0 and spearman_corr([], []) == 0.0
    assert set(METRICS) >= {"accuracy", "f1", "macro_f1", "matthews", "pearson", "spearman"}


# ---- SQuAD v1.1's official evaluation logic (evaluate-v1.1.py), copied to compare against ----


def official_normalize_answer(s):
    import re
    import string

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def official_f1(prediction, ground_truth):
    from collections import Counter

    prediction_tokens = official_normalize_answer(prediction).split()
    ground_truth_tokens = official_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def official_em(prediction, ground_truth):
    return official_normalize_answer(prediction) == official_normalize_answer(ground_truth)


def official_max(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, gt) for gt in ground_truths)


SQUAD_CASES = [
    ("The Denver Broncos", ["Denver Broncos", "Broncos"]),
    ("an apple, a pear!", ["apple pear"]),
    ("  Denver\tBroncos \n", ["denver broncos"]),
    ("theater", ["the theater"]),          # "the" inside a word is not an article
    ("Broncos Denver", ["Denver Broncos"]),  # order does not matter for F1
    ("U.S.", ["US", "United States"]),
    ("1,000 people", ["1000"]),
    ("the the cat", ["cat cat"]),
    ("Santa Clara, California", ["Levi's Stadium", "Santa Clara"]),
    ("nothing matches", ["Denver"]),
]


@pytest.mark.parametrize(("prediction", "golds"), SQUAD_CASES)
def test_squad_em_and_f1_agree_with_the_official_v11_script(prediction, golds):
    assert normalize_answer(prediction) == official_normalize_answer(prediction)
    assert squad_exact(prediction, golds) == float(official_max(official_em, prediction, golds))
    assert squad_token_f1(prediction, golds) == pytest.approx(official_max(official_f1, prediction, golds))


def test_squad_task_metrics_average_the_official_per_example_scores():
    task = get_task("squad")
    gold = [Example("squad", "q", g[0], None, tuple(g)) for _, g in SQUAD_CASES]
    got = compute_metrics(task, [p for p, _ in SQUAD_CASES], gold)
    f1 = np.mean([official_max(official_f1, p, g) for p, g in SQUAD_CASES])
    em = np.mean([official_max(official_em, p, g) for p, g in SQUAD_CASES])
    assert got == {"squad_f1": pytest.approx(f1), "squad_em": pytest.approx(em)}


def test_record_and_mrqa_score_the_best_gold_answer():
    for name in ("record", "nq", "newsqa"):
        task = get_task(name)
        gold = [Example(name, "q", "Ann Lee", None, ("Ann Lee", "Lee")), Example(name, "q", "Bob", None, ("Bob",))]
        got = compute_metrics(task, ["Lee", "bob."], gold)
        assert got == {"squad_f1": 1.0, "squad_em": 1.0}
        assert compute_metrics(task, ["", 3], gold) == {"squad_f1": 0.0, "squad_em": 0.0}  # invalid: wrong


def test_ties_in_spearman_and_constant_gold():
    assert spearman_corr([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(stats.spearmanr([1, 1, 2, 2], [1, 2, 3, 4])[0])
    assert pearson_corr([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0


def test_cb_macro_f1_counts_every_class_like_t5():
    gold, pred = [0, 0, 1, 1], [0, 1, 1, 1]  # neutral (2) absent everywhere
    got = compute_metrics(get_task("cb"), words("cb", pred), examples_for("cb", gold))
    assert got["macro_f1"] == pytest.approx(sk.f1_score(gold, pred, labels=[0, 1, 2], average="macro",
                                                        zero_division=0))


def test_scitail_and_winogrande_accuracy_with_invalid_outputs():
    wino = get_task("winogrande")
    gold = [Example("winogrande", "x", "option1", 0), Example("winogrande", "x", "option2", 1)]
    assert compute_metrics(wino, ["option1", "garage"], gold) == {"accuracy": 0.5}


def test_the_constant_answer_is_the_best_label_for_every_row():
    """MRPC, 3 of 8 rows equivalent: always "equivalent" has F1 2·3/(3+8) = 0.545 and accuracy 3/8, always
    "not_equivalent" F1 0 and accuracy 5/8; the primary metric (F1) picks "equivalent", accuracy the other."""
    rows = examples_for("mrpc", [1, 1, 1, 0, 0, 0, 0, 0])
    best = constant_answer(get_task("mrpc"), rows)
    assert best.answer == "equivalent" and best.metrics == pytest.approx({"f1": 6 / 11, "accuracy": 3 / 8})
    assert constant_answer(get_task("mrpc"), rows, "accuracy").answer == "not_equivalent"
    # CB: the most frequent class (2 of 4 neutral): macro-F1 (2·2/(2+4)) / 3 classes, accuracy 2/4.
    cb = constant_answer(get_task("cb"), examples_for("cb", [0, 1, 2, 2]))
    assert cb.answer == "neutral" and cb.metrics == pytest.approx({"macro_f1": 4 / 6 / 3, "accuracy": 2 / 4})
    assert constant_answer(get_task("rte"), examples_for("rte", [0, 1])).answer == "entailment"  # a tie: the first


def test_free_form_tasks_and_no_rows_have_no_constant_answer():
    squad = [Example("squad", "x", "Paris", None, answers=("Paris",))]
    assert constant_answer(get_task("squad"), squad) is None and constant_answer(get_task("stsb"), []) is None
    assert constant_answer(get_task("rte"), []) is None
