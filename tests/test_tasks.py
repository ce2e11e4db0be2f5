"""The task catalogue: look-ups, templates on real records, label words, bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attemptctl.errors import UnknownTaskError
from attemptctl.tasks import TASKS, Example, Task, get_task, task_names
from attemptctl.tasks.metrics import METRICS

PAPER_EIGHT = ("mnli", "qqp", "qnli", "sst2", "boolq", "rte", "cb", "mrpc")


@pytest.fixture
def data_dir(real_data_dir: Path) -> Path:
    """The real data (see conftest.real_data_dir), under the name these tests use."""
    return real_data_dir


def test_look_ups_never_read_the_users_own_tasks_folder(empty_tasks_dir):
    """conftest points every test at an empty custom-tasks folder: a task in the user's own folder
    cannot shadow, add to or break the catalogue these tests check."""
    from attemptctl.tasks import all_tasks
    from attemptctl.tasks.custom import custom_tasks, tasks_dir

    assert tasks_dir() == empty_tasks_dir and not any(empty_tasks_dir.iterdir())
    assert custom_tasks() == {} and set(all_tasks()) == set(TASKS)


def first_row(data_dir: Path, task: Task, split: str = "train", index: int = 0) -> dict:
    folder = data_dir / task.dataset / (task.config or "")
    with (folder / f"{split}.jsonl").open(encoding="utf-8") as lines:
        for _ in range(index):
            lines.readline()
        return json.loads(lines.readline())


PAPER_TASKS = (*PAPER_EIGHT, "squad", "record", "wnli", "stsb", "cola", "multirc", "wic", "wsc", "copa",
               "nq", "hotpotqa", "searchqa", "newsqa", "scitail", "yelp_polarity", "winogrande", "paws")
SENTIMENT_TASKS = ("amazon", "imdb", "yelp")  # the small sentiment transfer targets (not the paper's); amazon is not in ../shared/data


def test_catalogue_has_every_task_of_the_paper_and_sorted_names():
    assert set(PAPER_TASKS) | set(SENTIMENT_TASKS) == set(TASKS)
    assert task_names() == sorted(TASKS)
    assert all(get_task(name).name == name for name in task_names())


def test_unknown_task_lists_known_names():
    with pytest.raises(UnknownTaskError, match=r"unknown task 'foo'; known tasks: amazon, boolq, cb, "):
        get_task("foo")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_metric_name_exists(name):
    assert all(metric in METRICS for metric in get_task(name).metrics)


@pytest.mark.parametrize(
    ("name", "labels", "metrics"),
    [
        ("mnli", ("entailment", "neutral", "contradiction"), ("accuracy",)),
        ("qqp", ("not_duplicate", "duplicate"), ("f1", "accuracy")),
        ("qnli", ("entailment", "not_entailment"), ("accuracy",)),
        ("sst2", ("negative", "positive"), ("accuracy",)),
        ("boolq", ("False", "True"), ("accuracy",)),
        ("rte", ("entailment", "not_entailment"), ("accuracy",)),
        ("cb", ("entailment", "contradiction", "neutral"), ("macro_f1", "accuracy")),
        ("mrpc", ("not_equivalent", "equivalent"), ("f1", "accuracy")),
    ],
)
def test_label_words_follow_hf_index_order(name, labels, metrics):
    task = get_task(name)
    assert task.labels == labels and task.metrics == metrics and task.is_classification


@pytest.mark.parametrize(
    ("name", "split", "index", "expected_input", "target"),
    [
        ("rte", "train", 0, "rte sentence1: No Weapons of Mass Destruction Found in Iraq Yet. "
         "sentence2: Weapons of Mass Destruction Found in Iraq.", "not_entailment"),
        ("sst2", "train", 0, "sst2 sentence: hide new secretions from the parental units",
         "negative"),
        ("mnli", "validation", 0, "mnli premise: Salt kept the town fed. "
         "hypothesis: Salt kept the town thriving.", "entailment"),
        ("qqp", "validation", 1, "qqp question1: If I want to change my name what should I do? "
         "question2: I want to change my name, how do I do it?", "duplicate"),
        ("boolq", "validation", 0, "boolq question: can u drive in canada with us license "
         "passage: American entry into Canada by land -- Persons driving into Canada must have "
         "their vehicle's registration document and proof of insurance.", "True"),
    ],
)
def test_real_record_renders_exactly(data_dir, name, split, index, expected_input, target):
    task = get_task(name)
    example = task.render(first_row(data_dir, task, split, index))
    assert example == Example(name, expected_input, target, task.labels.index(target))


NO_LOCAL_DATA = ("amazon", "cola", "stsb", "copa", "yelp_polarity", "paws", "scitail", "winogrande", "record",
                 "nq", "hotpotqa", "searchqa", "newsqa")


@pytest.mark.parametrize("name", [n for n in sorted(TASKS) if n not in NO_LOCAL_DATA])
def test_every_task_renders_its_real_first_rows(data_dir, name):
    task = get_task(name)
    for split in ("train", "validation"):
        row = first_row(data_dir, task, split)
        example = task.render(row)
        prefix = f"{name} {task.fields[0]}: "
        assert example.input.startswith(prefix), example.input[:80]
        assert all(f" {field}: " in example.input for field in task.fields[1:])
        if task.is_classification:
            assert example.target == task.labels[row["label"]] and example.label == row["label"]
        else:
            assert example.label is None and example.target == example.answers[0]


def test_cb_and_mrpc_label_words_on_real_rows(data_dir):
    cb = get_task("cb").render(first_row(data_dir, get_task("cb"), "validation"))
    assert cb.input.startswith("cb premise: Valence the void-brain")
    assert cb.target == "contradiction"
    mrpc = get_task("mrpc").render(first_row(data_dir, get_task("mrpc")))
    assert mrpc.target == "equivalent" and mrpc.label == 1


def test_squad_renders_answers_and_multirc_groups(data_dir):
    squad = get_task("squad").render(first_row(data_dir, get_task("squad")))
    assert squad.input.startswith("squad question: When did the 1973 oil crisis begin? context: ")
    assert squad.target == "October 1973" and squad.answers[0] == "October 1973"
    multirc = get_task("multirc").render(first_row(data_dir, get_task("multirc"), "validation"))
    assert multirc.group == "0-0" and multirc.target == "False"
    assert get_task("multirc").max_length == 348


def test_hand_made_records_for_tasks_without_local_data():
    cola = get_task("cola").render({"sentence": " The book was read. ", "label": 1, "idx": 0})
    assert (cola.input, cola.target) == ("cola sentence: The book was read.", "acceptable")
    copa = get_task("copa").render(
        {"premise": "The man broke his toe.", "choice1": "He dropped a hammer.",
         "choice2": "He got a hole in his sock.", "question": "cause", "label": 0}
    )
    assert copa.input == ("copa premise: The man broke his toe. question: cause "
                          "choice1: He dropped a hammer. choice2: He got a hole in his sock.")
    assert copa.target == "choice1"
    yelp = get_task("yelp_polarity").render({"text": "Great tacos.", "label": 1})
    assert (yelp.input, yelp.target) == ("yelp_polarity text: Great tacos.", "positive")
    paws = get_task("paws").render({"id": 1, "sentence1": "A b.", "sentence2": "B a.", "label": 0})
    assert (paws.input, paws.target) == ("paws sentence1: A b. sentence2: B a.", "not_paraphrase")


@pytest.mark.parametrize(("score", "text"), [(3.8, "3.8"), (3.75, "3.8"), (4.0, "4.0"),
                                             (0.0, "0.0"), (2.52, "2.6"), (5, "5.0"), (1.1, "1.2")])
def test_stsb_target_rounds_to_fifths(score, text):
    example = get_task("stsb").render({"sentence1": "a", "sentence2": "b", "label": score})
    assert example.target == text and example.label is None and example.answers == (text,)


@pytest.mark.parametrize(
    ("row", "error", "match"),
    [
        ({"sentence2": "b", "label": 0}, KeyError, "sentence1"),
        ({"sentence1": "a", "sentence2": "b"}, KeyError, "label"),
        ({"sentence1": "a", "sentence2": "b", "label": 2}, ValueError, "out of range 0..1"),
        ({"sentence1": "a", "sentence2": "b", "label": -1}, ValueError, "out of range"),
        ({"sentence1": "a", "sentence2": "b", "label": True}, ValueError, "integer"),
        ({"sentence1": "a", "sentence2": "b", "label": "1"}, ValueError, "integer"),
        ({"sentence1": None, "sentence2": "b", "label": 0}, ValueError, "must be text"),
    ],
)
def test_bad_rows_raise_key_or_value_error(row, error, match):
    with pytest.raises(error, match=match):
        get_task("rte").render(row)


def test_stsb_rejects_out_of_range_scores():
    with pytest.raises(ValueError, match="0..5"):
        get_task("stsb").render({"sentence1": "a", "sentence2": "b", "label": 7.0})


def test_free_form_task_must_say_how_to_find_answers():
    with pytest.raises(ValueError, match="answers_of"):
        Task("x", "d", None, ("a",), None, ("accuracy",))


# ---- the tasks added for the full catalogue, and T5's formats ----


def test_wsc_marks_noun_and_pronoun_as_t5_does(data_dir):
    wsc = get_task("wsc")
    # T5's own docstring example for preprocessors.wsc
    row = {"text": "This is a test sentence .", "span1_text": "test", "span1_index": 3,
           "span2_text": "This", "span2_index": 0, "label": 0, "idx": 0}
    assert wsc.render(row) == Example("wsc", "wsc text: # This # is a * test * sentence .", "False", 0)
    real = wsc.render(first_row(data_dir, wsc))
    assert real.input == ("wsc text: * Mark * told Pete many lies about himself, which Pete included in his "
                          "book. # He # should have been more skeptical.")
    # a stale index and a case difference (original WSC) still mark the right words
    stale = {**row, "text": "The lawyer asked the witness , but he said no", "span1_text": "the lawyer",
             "span1_index": 0, "span2_text": "he", "span2_index": 5}
    assert wsc.render(stale).input == "wsc text: * The lawyer * asked the witness , but # he # said no"


def test_every_real_wsc_row_gets_both_marks(data_dir):
    wsc = get_task("wsc")
    for split in ("train", "validation"):
        with (data_dir / "super_glue/wsc" / f"{split}.jsonl").open() as lines:
            for line in lines:
                text = wsc.render(json.loads(line)).input
                assert text.count("* ") >= 1 and text.count("# ") == 2, text


def test_scitail_and_winogrande_map_string_labels():
    scitail = get_task("scitail").render({"sentence1": "Plants make food.", "sentence2": "Plants eat.",
                                          "gold_label": "neutral"})
    assert scitail == Example("scitail", "scitail sentence1: Plants make food. sentence2: Plants eat.",
                              "neutral", 1)
    row = {"sentence": "The trophy does not fit in the suitcase because the _ is too big.",
           "option1": "trophy", "option2": "suitcase", "answer": "2"}
    wino = get_task("winogrande").render(row)
    assert wino.input == ("winogrande sentence: The trophy does not fit in the suitcase because the _ is too "
                          "big. option1: trophy option2: suitcase")  # both options, not option1 twice
    assert (wino.target, wino.label) == ("option2", 1)
    with pytest.raises(ValueError, match="'3' is not one of '1', '2'"):
        get_task("winogrande").render({**row, "answer": "3"})
    assert not get_task("winogrande").keeps({**row, "answer": ""})  # unlabelled test row


def test_record_joins_highlights_lists_entities_and_deduplicates_answers():
    row = {"passage": "Ann won the race.\n@highlight\nAnn is fast\n@highlight\nBob lost",
           "query": "@placeholder won.", "entities": ["Ann", "Bob", "Ann"],
           "answers": ["Ann", " Ann ", "Ann"], "idx": {"passage": 0, "query": 0}}
    example = get_task("record").render(row)
    assert example.input == ("record query: @placeholder won. entities: Ann, Bob, Ann passage: "
                             "Ann won the race. Ann is fast. Bob lost")
    assert example.answers == ("Ann",) and example.target == "Ann" and example.label is None
    with pytest.raises(ValueError, match="no gold answer"):
        get_task("record").render({**row, "answers": []})


@pytest.mark.parametrize(("name", "subset"), [("nq", "NaturalQuestionsShort"), ("hotpotqa", "HotpotQA"),
                                              ("searchqa", "SearchQA"), ("newsqa", "NewsQA")])
def test_mrqa_tasks_keep_their_subset_and_read_512_tokens(name, subset):
    task = get_task(name)
    row = {"subset": subset, "question": "who?", "context": "[PAR] Ann did.", "answers": ["Ann", "Ann"]}
    assert task.keeps(row) and not task.keeps({**row, "subset": "SQuAD"})
    assert task.render(row) == Example(name, f"{name} question: who? context: [PAR] Ann did.", "Ann", None,
                                       answers=("Ann",))
    assert task.dataset == "mrqa" and task.max_length == 512 and task.metrics == ("squad_f1", "squad_em")


def test_templates_of_label_tasks_and_placeholder():
    from attemptctl.tasks.overview import placeholder_example

    assert get_task("rte").template_text() == "rte sentence1: {sentence1} sentence2: {sentence2}"
    shown = placeholder_example(get_task("copa"))
    assert shown.input == "copa premise: <premise> question: <question> choice1: <choice1> choice2: <choice2>"
    assert shown.target == "choice1"


def test_custom_template_renders_and_is_checked():
    task = Task("mine", "local", None, ("text",), ("no", "yes"), ("accuracy",), template="review: {text} =>")
    assert task.render({"text": " fine ", "label": 1}).input == "review: fine =>"
    with pytest.raises(ValueError, match="not in fields"):
        Task("mine", "local", None, ("text",), ("no", "yes"), ("accuracy",), template="{body}")


def test_sentiment_targets_render_real_rows_and_halve_validation(data_dir):
    """IMDB and Yelp (600 train rows each) take the small-set protocol: validation halved into dev and test."""
    from attemptctl.tasks.data import load_task

    yelp = get_task("yelp").render(first_row(data_dir, get_task("yelp")))
    assert (yelp.input, yelp.target) == ("yelp sentence: Great time - family dinner on a Sunday night.", "positive")
    imdb = get_task("imdb").render(first_row(data_dir, get_task("imdb"), index=2))
    assert imdb.target == "negative" and imdb.input.startswith("imdb sentence: Hackneyed writing")
    for name in ("imdb", "yelp"):  # amazon has no local data here: tests/test_data.py loads it from a copy
        splits = load_task(get_task(name), data_dir=data_dir, seed=42)
        assert (len(splits.train), len(splits.dev), len(splits.test)) == (600, 200, 200)
