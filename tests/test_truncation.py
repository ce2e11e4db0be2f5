"""Truncation cuts the longest field (premise, passage, context), never the hypothesis or question after it
(DESIGN §1; issue 28: at 128 tokens, 41 of RTE's 277 validation rows used to lose part of their hypothesis)."""

from __future__ import annotations

import pytest

from attemptctl.method import lm
from attemptctl.method.backbones import load_backbone
from attemptctl.tasks import get_task
from attemptctl.tasks.data import load_task

LONG = " ".join(f"The committee met on day {i} and discussed the budget at length." for i in range(40))


@pytest.fixture(scope="module")
def causal(tiny_causal_dir):
    return load_backbone(str(tiny_causal_dir), device="cpu")


def test_the_cut_is_the_longest_fields_span_and_single_field_tasks_have_none():
    example = get_task("rte").render({"sentence1": "A long premise, longer than the rest.", "sentence2": "Short.", "label": 0})
    start, end = example.cut
    assert example.input[start:end] == "A long premise, longer than the rest."
    boolq = get_task("boolq").render({"question": "is it?", "passage": "A passage that is long.", "label": 1})
    assert boolq.input[slice(*boolq.cut)] == "A passage that is long."
    assert get_task("sst2").render({"sentence": "fine", "label": 1}).cut is None


def test_a_long_premise_is_cut_and_the_hypothesis_stays_whole(causal):
    example = get_task("rte").render({"sentence1": LONG, "sentence2": "The committee discussed money.", "label": 0})
    ids = lm.encode(causal, example.input, None, 48, example.cut).input_ids
    assert len(ids) == 48
    text = causal.tokenizer.decode(ids)
    assert text.startswith("rte sentence1: The committee met on day 0")
    assert text.endswith(" sentence2: The committee discussed money.")
    cut_at_end = causal.tokenizer.decode(lm.encode(causal, example.input, None, 48).input_ids)
    assert "sentence2" not in cut_at_end  # what truncation did before


def test_an_input_that_fits_is_encoded_exactly_as_before(causal):
    example = get_task("rte").render({"sentence1": "A cat sat on the mat.", "sentence2": "A cat sat.", "label": 0})
    assert lm.encode(causal, example.input, "entailment", 128, example.cut) == lm.encode(causal, example.input,
                                                                                          "entailment", 128)


def test_when_the_other_fields_alone_are_too_long_the_end_is_cut(causal):
    example = get_task("rte").render({"sentence1": LONG, "sentence2": LONG + " more", "label": 0})
    assert lm.encode(causal, example.input, None, 16, example.cut).input_ids == \
        lm.encode(causal, example.input, None, 16).input_ids


def test_t5_keeps_the_hypothesis_and_closes_with_eos(tiny_t5_dir):
    t5 = load_backbone(str(tiny_t5_dir), device="cpu")
    example = get_task("rte").render({"sentence1": LONG, "sentence2": "The committee discussed money.", "label": 0})
    ids = lm.encode(t5, example.input, None, 48, example.cut).input_ids
    assert len(ids) <= 48 and ids[-1] == t5.eos_id
    assert t5.tokenizer.decode(ids, skip_special_tokens=True).endswith("The committee discussed money.")


@pytest.mark.parametrize("name", ["rte", "cb"])
def test_every_real_validation_row_keeps_its_hypothesis_at_128_tokens(real_data_dir, causal, name):
    splits = load_task(get_task(name), data_dir=real_data_dir, seed=42)
    long = 0
    for example in splits.dev + splits.test:
        ids = lm.encode(causal, example.input, None, 128, example.cut).input_ids
        if len(causal.tokenizer(example.input, add_special_tokens=False).input_ids) <= 128:
            continue
        long += 1
        hypothesis = example.input[example.cut[1]:]  # " hypothesis: …" (CB) or " sentence2: …" (RTE)
        assert causal.tokenizer.decode(ids).endswith(hypothesis), example.input[-120:]
    assert long >= 5  # the check saw rows that needed the cut
