"""Loading and the paper's split protocol, on the real offline data and on hand-made files."""

from __future__ import annotations

import json
import os
import sys
import types
from collections import Counter
from pathlib import Path

import pytest

from attemptctl.errors import ConfigError, DataError
from attemptctl.tasks import get_task
from attemptctl.tasks.data import DATA_DIR_ENV, TaskSplits, load_task


@pytest.fixture
def data_dir(real_data_dir: Path) -> Path:
    """The real data (see conftest.real_data_dir), under the name these tests use."""
    return real_data_dir


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rte_rows(n: int, start: int = 0) -> list[str]:
    return [json.dumps({"sentence1": f"s{i}", "sentence2": f"t{i}", "label": i % 2, "idx": i})
            for i in range(start, start + n)]


def rendered(data_dir: Path, name: str, split: str) -> Counter:
    task = get_task(name)
    with (data_dir / task.dataset / task.config / f"{split}.jsonl").open() as lines:
        return Counter(task.render(json.loads(line)) for line in lines if line.strip())


# ---- the split protocol on the real files ----


@pytest.mark.parametrize(
    ("name", "sizes"),
    [
        ("rte", (2490, 138, 139)),   # small: validation 277 halved
        ("cb", (250, 28, 28)),
        ("mrpc", (3668, 204, 204)),
        ("boolq", (2270, 500, 500)),
        ("qqp", (8999, 500, 500)),   # the offline subset has 8,999 train rows: small protocol
        ("sst2", (66349, 1000, 872)),  # large: 1,000 train rows become dev, validation is test
    ],
)
def test_split_sizes_on_real_data(data_dir, name, sizes):
    task = get_task(name)
    splits = load_task(task, data_dir=data_dir)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == sizes
    assert splits.task == name and splits.source == str(data_dir / task.dataset / task.config)


def test_small_protocol_partitions_validation_and_keeps_train(data_dir):
    splits = load_task(get_task("rte"), data_dir=data_dir)
    assert Counter(splits.dev + splits.test) == rendered(data_dir, "rte", "validation")
    assert Counter(splits.train) == rendered(data_dir, "rte", "train")
    assert not set(splits.dev) & set(splits.test)


def test_large_protocol_carves_dev_from_train(data_dir):
    splits = load_task(get_task("sst2"), data_dir=data_dir)
    assert Counter(splits.train + splits.dev) == rendered(data_dir, "sst2", "train")
    assert Counter(splits.test) == rendered(data_dir, "sst2", "validation")


@pytest.mark.parametrize(
    ("name", "sizes"),
    [
        ("rte", (1992, 498, 277)),    # a fifth of train is dev; the whole validation split is test
        ("mrpc", (2935, 733, 408)),
        ("yelp", (480, 120, 400)),    # 600 train rows: the smallest train split heldout takes dev from
        ("cb", (250, 28, 28)),        # too few train rows to spare: the halves, as the paper has them
        ("wsc", (554, 52, 52)),
        ("sst2", (66349, 1000, 872)),  # large: the same as the paper's protocol
    ],
)
def test_heldout_protocol_tests_on_the_whole_validation_split(data_dir, name, sizes):
    task = get_task(name)
    splits = load_task(task, data_dir=data_dir, protocol="heldout")
    assert (len(splits.train), len(splits.dev), len(splits.test)) == sizes
    paper = load_task(task, data_dir=data_dir)
    if len(paper.train) < 10_000 and len(splits.test) > len(paper.test):  # dev came out of train
        assert Counter(splits.train + splits.dev) == Counter(paper.train)
        assert Counter(splits.test) == Counter(paper.dev + paper.test)
        assert splits.dev == paper.train[:len(splits.dev)]  # a prefix of the seeded shuffle, as limits are
    else:
        assert splits == paper


def test_an_unknown_split_protocol_is_refused(data_dir):
    with pytest.raises(ConfigError, match="unknown split protocol 'halves'; choose one of paper, heldout"):
        load_task(get_task("rte"), data_dir=data_dir, protocol="halves")


def test_splits_are_deterministic_and_depend_on_the_seed(data_dir):
    first = load_task(get_task("rte"), data_dir=data_dir)
    assert load_task(get_task("rte"), data_dir=data_dir) == first
    other = load_task(get_task("rte"), data_dir=data_dir, seed=7)
    assert other.dev != first.dev
    assert Counter(other.dev + other.test) == Counter(first.dev + first.test)


def test_limits_are_prefixes_of_the_full_splits(data_dir):
    full = load_task(get_task("rte"), data_dir=data_dir)
    small = load_task(get_task("rte"), data_dir=data_dir, train_limit=32, dev_limit=5, test_limit=0)
    assert small.train == full.train[:32] and small.dev == full.dev[:5] and small.test == []
    assert full.train != rendered_in_file_order(data_dir)[: len(full.train)]  # train is shuffled


def rendered_in_file_order(data_dir: Path) -> list:
    task = get_task("rte")
    with (data_dir / "glue/rte/train.jsonl").open() as lines:
        return [task.render(json.loads(line)) for line in lines]


def test_mnli_without_matched_files_warns_and_halves_validation(data_dir):
    with pytest.warns(UserWarning, match="validation_mismatched/validation_matched"):
        splits = load_task(get_task("mnli"), data_dir=data_dir)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (8999, 500, 500)


def test_mnli_uses_mismatched_as_dev_and_matched_as_test(tmp_path, recwarn):
    row = '{{"premise": "{0}", "hypothesis": "h", "label": 0}}'
    write_jsonl(tmp_path / "glue/mnli/train.jsonl", [row.format(f"p{i}") for i in range(20)])
    write_jsonl(tmp_path / "glue/mnli/validation_mismatched.jsonl", [row.format("mm")] * 3)
    write_jsonl(tmp_path / "glue/mnli/validation_matched.jsonl", [row.format("m")] * 4)
    splits = load_task(get_task("mnli"), data_dir=tmp_path)
    assert [e.input for e in splits.dev] == ["mnli premise: mm hypothesis: h"] * 3
    assert len(splits.test) == 4 and len(splits.train) == 20 and not recwarn.list


def test_large_protocol_on_hand_made_files(tmp_path):
    write_jsonl(tmp_path / "glue/rte/train.jsonl", rte_rows(10_050))
    write_jsonl(tmp_path / "glue/rte/validation.jsonl", rte_rows(7, start=20_000))
    splits = load_task(get_task("rte"), data_dir=tmp_path)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (9050, 1000, 7)
    assert not {e.input for e in splits.train} & {e.input for e in splits.dev}


def test_data_dir_comes_from_the_environment(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "glue/rte/train.jsonl", rte_rows(4))
    write_jsonl(tmp_path / "glue/rte/validation.jsonl", rte_rows(4, start=10))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    splits = load_task(get_task("rte"))
    assert isinstance(splits, TaskSplits) and splits.source == str(tmp_path / "glue/rte")


# ---- file problems become DataError naming the place ----


@pytest.fixture
def rte_dir(tmp_path) -> Path:
    write_jsonl(tmp_path / "glue/rte/validation.jsonl", rte_rows(4, start=10))
    return tmp_path


def load_rte_train(data_dir: Path, lines: list[str]) -> TaskSplits:
    write_jsonl(data_dir / "glue/rte/train.jsonl", lines)
    return load_task(get_task("rte"), data_dir=data_dir)


def test_malformed_line_names_file_and_line(rte_dir):
    with pytest.raises(DataError, match=r"train\.jsonl:3: malformed JSON: "):
        load_rte_train(rte_dir, [*rte_rows(2), '{"sentence1": "a", '])


def test_missing_field_names_file_line_and_field(rte_dir):
    with pytest.raises(DataError, match=r"train\.jsonl:2: missing field 'sentence2'"):
        load_rte_train(rte_dir, [*rte_rows(1), '{"sentence1": "a", "label": 0}'])


def test_label_out_of_range_names_file_and_line(rte_dir):
    bad = '{"sentence1": "a", "sentence2": "b", "label": 5}'
    with pytest.raises(DataError, match=r"train\.jsonl:1: label 5 out of range 0\.\.1"):
        load_rte_train(rte_dir, [bad])


def test_non_object_line_is_refused(rte_dir):
    with pytest.raises(DataError, match=r"train\.jsonl:1: expected a JSON object, got list"):
        load_rte_train(rte_dir, ["[1, 2]"])


def test_missing_file_says_what_layout_is_expected(tmp_path):
    (tmp_path / "glue").mkdir()
    with pytest.raises(DataError, match=r"rte/train\.jsonl: file not found; expected "
                                        r"glue/rte/train\.jsonl under the data directory"):
        load_task(get_task("rte"), data_dir=tmp_path)


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataError, match="data directory not found"):
        load_task(get_task("rte"), data_dir=tmp_path / "nope")


def test_bom_blank_lines_and_unlabelled_rows_are_tolerated(rte_dir):
    lines = rte_rows(3)
    lines[0] = "\ufeff" + lines[0]
    lines.insert(2, "   ")
    lines.append('{"sentence1": "x", "sentence2": "y", "label": -1}')
    splits = load_rte_train(rte_dir, lines)
    expected = [f"rte sentence1: s{i} sentence2: t{i}" for i in range(3)]
    assert sorted(e.input for e in splits.train) == expected


def test_negative_limit_is_a_config_error(rte_dir):
    write_jsonl(rte_dir / "glue/rte/train.jsonl", rte_rows(2))
    with pytest.raises(ConfigError, match="limit must be >= 0"):
        load_task(get_task("rte"), data_dir=rte_dir, dev_limit=-1)


def test_empty_split_is_an_error(rte_dir):
    with pytest.raises(DataError, match="no labelled rows"):
        load_rte_train(rte_dir, [""])


# ---- the hub path, with a stand-in for the datasets package ----


def fake_datasets(load_dataset) -> types.ModuleType:
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    return module


def test_hub_failure_suggests_data_dir(monkeypatch):
    """A hub that answers but fails: the error says why, and where local files go."""
    import socket

    def failing(*args, **kwargs):
        raise ConnectionError("dataset is gated")

    with socket.create_server(("127.0.0.1", 0)) as server:  # a host that accepts connections, on this machine
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv(DATA_DIR_ENV, raising=False)
        monkeypatch.setitem(sys.modules, "datasets", fake_datasets(failing))
        with pytest.raises(DataError, match=r"hub:glue/rte: could not load .*dataset is gated.*--data-dir"):
            load_task(get_task("rte"))


def test_an_unreachable_hub_fails_at_once_in_offline_mode(monkeypatch):
    """No retries against a hub that cannot answer: offline mode for the load, then the usual advice."""
    import socket

    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seen = {}

    def load_dataset(*args, **kwargs):
        seen["offline"] = os.environ.get("HF_HUB_OFFLINE"), os.environ.get("HF_DATASETS_OFFLINE")
        raise ConnectionError("offline mode is enabled")

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(load_dataset))
    with pytest.raises(DataError, match=r"hub is not reachable from here .*--data-dir"):
        load_task(get_task("rte"))
    assert seen["offline"] == ("1", "1")
    assert "HF_HUB_OFFLINE" not in os.environ and "HF_DATASETS_OFFLINE" not in os.environ  # restored


def test_hub_rows_are_split_like_local_ones(monkeypatch):
    rows = [json.loads(line) for line in rte_rows(6)]
    calls = []

    def load_dataset(dataset, config):
        calls.append((dataset, config))
        return {"train": rows, "validation": rows[:4], "test": [{**rows[0], "label": -1}]}

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(load_dataset))
    splits = load_task(get_task("rte"))
    assert calls == [("glue", "rte")] and splits.source == "hub:glue/rte"
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (6, 2, 2)


# ---- every real task: sizes and disjointness; few-shot sampling; MRQA; custom files ----

REAL = ("mnli", "qqp", "qnli", "sst2", "mrpc", "rte", "wnli", "boolq", "cb", "wic", "wsc", "multirc", "squad")


@pytest.mark.parametrize("name", REAL)
def test_every_real_task_splits_into_disjoint_parts_of_its_files(data_dir, name):
    task = get_task(name)
    splits = load_task(task, data_dir=data_dir)
    train, validation = rendered(data_dir, name, "train"), rendered(data_dir, name, "validation")
    if sum(train.values()) < 10_000:
        assert Counter(splits.train) == train and Counter(splits.dev + splits.test) == validation
    else:
        assert Counter(splits.train + splits.dev) == train and Counter(splits.test) == validation
    dev_ids, test_ids = {id(e) for e in splits.dev}, {id(e) for e in splits.test}
    assert not dev_ids & test_ids and splits.dev and splits.test


def test_shots_sample_k_per_class_reproducibly(data_dir):
    rte = get_task("rte")
    four = load_task(rte, data_dir=data_dir, shots=4, seed=3)
    assert Counter(e.label for e in four.train) == {0: 4, 1: 4}
    assert load_task(rte, data_dir=data_dir, shots=4, seed=3) == four
    sixteen = load_task(rte, data_dir=data_dir, shots=16, seed=3)
    assert set(four.train) <= set(sixteen.train)  # K rows are a subset of K' > K rows
    assert load_task(rte, data_dir=data_dir, shots=4, seed=4).train != four.train
    full = load_task(rte, data_dir=data_dir, seed=3)
    assert four.dev == full.dev and four.test == full.test
    cb = load_task(get_task("cb"), data_dir=data_dir, shots=32)
    assert Counter(e.target for e in cb.train) == {"entailment": 32, "contradiction": 32, "neutral": 16}  # all 16 it has
    squad = load_task(get_task("squad"), data_dir=data_dir, shots=5, train_limit=3)
    assert len(squad.train) == 3
    with pytest.raises(ConfigError, match="--shots must be >= 1"):
        load_task(rte, data_dir=data_dir, shots=0)


def mrqa_row(subset: str, i: int) -> dict:
    return {"subset": subset, "question": f"q{i}", "context": "c", "answers": [f"a{i}"], "qid": str(i)}


def test_mrqa_tasks_read_only_their_subset(tmp_path):
    rows = [json.dumps(mrqa_row(s, i)) for i, s in enumerate(["NewsQA", "SQuAD", "HotpotQA", "NewsQA"] * 3)]
    write_jsonl(tmp_path / "mrqa/plain_text/train.jsonl", rows)
    write_jsonl(tmp_path / "mrqa/plain_text/validation.jsonl", rows)
    splits = load_task(get_task("newsqa"), data_dir=tmp_path)
    assert len(splits.train) == 6 and all(e.input.startswith("newsqa question: ") for e in splits.train)
    with pytest.raises(DataError, match="no labelled rows for task nq .*subset_is_NaturalQuestionsShort"):
        load_task(get_task("nq"), data_dir=tmp_path)


def test_missing_mrqa_is_a_clear_error_never_squad(monkeypatch, tmp_path):
    def missing(dataset, config):
        raise FileNotFoundError(f"Dataset '{dataset}' doesn't exist on the Hub")

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(missing))
    with pytest.raises(DataError, match=r"hub:mrqa/plain_text: could not load") as caught:
        load_task(get_task("hotpotqa"))
    assert "squad" not in str(caught.value).lower()
    (tmp_path / "squad").mkdir()
    with pytest.raises(DataError, match=r"mrqa/plain_text/train\.jsonl: file not found"):
        load_task(get_task("searchqa"), data_dir=tmp_path)


def test_custom_files_read_csv_and_name_bad_lines(tmp_path):
    from attemptctl.tasks import Task

    (tmp_path / "train.csv").write_text("text,label\nnice,pos\n\"bad, really\",neg\nok,pos\n", encoding="utf-8")
    (tmp_path / "dev.csv").write_text("text,label\nmeh,neg\nyay,pos\n", encoding="utf-8")
    files = {"train": str(tmp_path / "train.csv"), "validation": str(tmp_path / "dev.csv")}
    task = Task("tone", "local", None, ("text",), ("negative", "positive"), ("accuracy",),
                label_map={"neg": 0, "pos": 1}, files=files)
    splits = load_task(task, data_dir=tmp_path / "ignored")
    assert sorted(e.input for e in splits.train) == ["tone text: bad, really", "tone text: nice", "tone text: ok"]
    assert len(splits.dev) == 1 and len(splits.test) == 1
    (tmp_path / "train.csv").write_text("text,label\nnice,pos\nodd,pos,extra\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv:3: wrong number of columns"):
        load_task(task)
    (tmp_path / "train.csv").write_text("text,label\nnice,maybe\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv:2: label 'maybe' is not one of 'neg', 'pos'"):
        load_task(task)
    (tmp_path / "train.csv").write_bytes("text,label\ncaf\u00e9,pos\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"train\.csv: not UTF-8 text"):
        load_task(task)


def test_amazon_reads_the_collections_layout_like_yelp(data_dir, tmp_path):
    """Amazon, the collection's third set, is not in ../shared/data: a folder of the same layout (Yelp's rows
    here) under sentiment_labelled_sentences/amazon loads with Yelp's sizes under both protocols, and the
    `task show` / `task list` commands find it there."""
    from typer.testing import CliRunner

    from attemptctl.cli import app

    folder = tmp_path / "sentiment_labelled_sentences" / "amazon"
    folder.mkdir(parents=True)
    for split in ("train", "validation"):
        (folder / f"{split}.jsonl").write_bytes((data_dir / "sentiment_labelled_sentences" / "yelp" / f"{split}.jsonl").read_bytes())
    for protocol, sizes in (("paper", (600, 200, 200)), ("heldout", (480, 120, 400))):
        splits = load_task(get_task("amazon"), data_dir=tmp_path, protocol=protocol)
        assert (len(splits.train), len(splits.dev), len(splits.test)) == sizes
        yelp = load_task(get_task("yelp"), data_dir=data_dir, protocol=protocol)
        for split in ("train", "dev", "test"):  # the same rows, split the same way, under amazon's name
            ours, theirs = getattr(splits, split), getattr(yelp, split)
            assert [(e.input.replace("amazon sentence: ", "yelp sentence: ", 1), e.target) for e in ours] == \
                [(e.input, e.target) for e in theirs]
    shown = CliRunner().invoke(app, ["task", "show", "amazon", "--data-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert str(folder / "validation.jsonl") in "".join(shown.output.split())  # the example's file; rich wraps it
    listed = CliRunner().invoke(app, ["task", "list", "--data-dir", str(tmp_path), "--json"])
    assert listed.exit_code == 0, listed.output
    (amazon,) = [t for t in json.loads(listed.output) if t["name"] == "amazon"]
    assert amazon["sizes"] == {"train": 600, "validation": 400}
