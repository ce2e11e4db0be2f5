"""Training and evaluation fixes of the training-correctness review, each tested on the real code.

- an absent task's prompt (and its AdamW state) stays bit-identical through a mixed-task step;
- multi-task batches stay mixed under length grouping;
- labels are scored with their EOS, so a label that is a token prefix of another can win or lose;
- BOS where the tokenizer adds one, and never pooled by G;
- free-form answers may take as many tokens as the longest training answer, plus a margin;
- ``logits_to_keep`` and ``use_cache`` really act.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from attemptctl.engine.batching import label_groups, length_grouped_batches
from attemptctl.engine.evaluate import answer_token_limit, evaluate, label_candidates
from attemptctl.engine.train import TrainConfig, _optimizer, _step, train
from attemptctl.method import lm
from attemptctl.method.attention import AttentionModule
from attemptctl.method.backbones import bos_prefix, load_backbone
from attemptctl.method.mixture import PromptMixture
from attemptctl.tasks import Example, get_task

M = 3


@pytest.fixture(scope="module")
def backbone(tiny_causal_dir):
    return load_backbone(str(tiny_causal_dir))


def _rows(task: str, n: int, words: int = 4) -> list[Example]:
    labels = get_task(task).labels
    return [Example(task, f"{task} sentence1: " + " ".join(f"w{i}" for _ in range(words)) + f" #{i}.", labels[i % 2], i % 2)
            for i in range(n)]


# --- absent tasks -----------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["prompt-tuning", "attempt"])
def test_a_task_without_rows_in_a_step_keeps_its_prompt_and_adamw_state(backbone, variant):
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(0)
    targets = {"rte": torch.randn(M, backbone.d), "cb": torch.randn(M, backbone.d)}
    sources = {"s@1": torch.randn(M, backbone.d)} if variant == "attempt" else None
    mixture = PromptMixture(targets, sources=sources, variant=variant,
                            attention=AttentionModule(backbone.d, rank=8) if variant == "attempt" else None)
    config = TrainConfig(prompt_length=M, lr=0.3, weight_decay=1e-5)
    optimizer = _optimizer(mixture, config)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, 10)
    accelerator = Accelerator(cpu=True)
    rte, cb = mixture.tasks.index("rte"), mixture.tasks.index("cb")

    def batch(rows, task_id):
        return lm.collate(backbone, [lm.encode(backbone, e.input, e.target, 32) for e in rows], [task_id] * len(rows))

    # Both tasks once, so cb has AdamW moments that a wrong step would move.
    both = lm.collate(backbone, [lm.encode(backbone, e.input, e.target, 32) for e in _rows("rte", 2) + _rows("cb", 2)],
                      [rte, rte, cb, cb])
    _step(accelerator, backbone, mixture, optimizer, scheduler, both)
    cb_prompt = mixture.prompts[cb].detach().clone()
    cb_state = {k: v.clone() if torch.is_tensor(v) else v for k, v in optimizer.state[mixture.prompts[cb]].items()}
    rte_prompt = mixture.prompts[rte].detach().clone()
    _step(accelerator, backbone, mixture, optimizer, scheduler, batch(_rows("rte", 3), rte))
    assert torch.equal(mixture.prompts[cb].detach(), cb_prompt)
    for key, value in optimizer.state[mixture.prompts[cb]].items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(cb_state[key])), key
    assert not torch.equal(mixture.prompts[rte].detach(), rte_prompt)  # the present task did train


# --- mixed batches ----------------------------------------------------------------------------

def _two_task_lengths(seed: int = 0) -> tuple[list[int], list[int]]:
    """A short task and a long one (like RTE and BoolQ): length alone would separate them."""
    rng = random.Random(seed)
    lengths = [rng.randint(20, 60) for _ in range(300)] + [rng.randint(70, 128) for _ in range(200)]
    return lengths, [0] * 300 + [1] * 200


def test_multi_task_batches_mix_tasks_in_proportion():
    lengths, groups = _two_task_lengths()
    for seed in range(3):
        batches = length_grouped_batches(lengths, 10, shuffle=True, seed=seed, groups=groups)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for b in batches:
            long_rows = sum(groups[i] for i in b)
            assert long_rows in (3, 4, 5), b  # 40% of every batch of 10, within rounding
    # Length alone (no groups) puts the two tasks into batches of their own.
    unmixed = length_grouped_batches(lengths, 10, shuffle=True, seed=0)
    assert sum(len({groups[i] for i in b}) == 1 for b in unmixed) > len(unmixed) // 2


def test_mixed_batches_pad_less_than_random_ones():
    lengths, groups = _two_task_lengths(1)

    def padding(batches):
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)

    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    random_batches = [order[i:i + 10] for i in range(0, len(order), 10)]
    grouped = length_grouped_batches(lengths, 10, shuffle=True, seed=0, groups=groups)
    assert padding(grouped) < 0.8 * padding(random_batches)


def test_label_groups_name_each_task_and_label_pair_once():
    assert label_groups([0, 0, 1, 1, 0, 1], [0, 1, 0, 0, 1, None]) == [0, 1, 2, 2, 1, 3]


def test_one_task_batches_keep_each_labels_share_where_label_lengths_differ():
    """RTE-like: one label's inputs run longer. Sorting by length alone gathers each label in batches of its
    own; grouped by label, every batch holds each label's share of the window."""
    rng = random.Random(4)
    labels = [0] * 240 + [1] * 160
    lengths = [rng.randint(20, 70) if label == 0 else rng.randint(50, 128) for label in labels]
    groups = label_groups([0] * len(labels), labels)

    def drift(batches):
        return sum(abs(sum(labels[i] for i in b) / len(b) - 0.4) for b in batches) / len(batches)
    by_length = length_grouped_batches(lengths, 10, shuffle=True, seed=0)
    by_label = length_grouped_batches(lengths, 10, shuffle=True, seed=0, groups=groups)
    assert sorted(i for b in by_label for i in b) == list(range(len(labels)))
    assert all(sum(labels[i] for i in b) in (3, 4, 5) for b in by_label)  # 40% of 10, within rounding
    assert drift(by_length) > 0.25 and drift(by_label) < 0.06


def test_one_task_batches_are_grouped_by_length_alone():
    lengths, _ = _two_task_lengths(2)
    assert (length_grouped_batches(lengths, 8, shuffle=True, seed=3, groups=[5] * len(lengths))
            == length_grouped_batches(lengths, 8, shuffle=True, seed=3))


# --- labels scored with EOS -------------------------------------------------------------------

def test_a_label_that_prefixes_another_is_scored_with_its_eos(backbone):
    """`yes` / `yes sir`: without EOS, log p(yes) >= log p(yes sir) always, so `yes` always won."""
    task = dataclasses.replace(get_task("rte"), labels=("yes", "yes sir"))
    candidates = label_candidates(backbone, task)
    assert all(c[-1] == backbone.eos_id for c in candidates)
    assert candidates[1][:len(candidates[0]) - 1] == candidates[0][:-1]  # the token prefix
    item = lm.encode(backbone, "rte sentence1: row one. sentence2: row.", None, 24)
    for seed in range(16):
        prompt = torch.randn(1, M, backbone.d, generator=torch.Generator().manual_seed(seed))
        [scores] = lm.label_scores(backbone, prompt, [item], [candidates])
        for label, score in zip(task.labels, scores):  # each score is what training's loss sees for that target
            target = lm.encode(backbone, "", label, 1).target_ids
            full = lm.collate(backbone, [lm.Encoded(item.input_ids, target)], [0])
            assert score == pytest.approx(lm.token_logprobs(backbone, prompt, full).sum().item(), abs=1e-4)
        [without_eos] = lm.label_scores(backbone, prompt, [item], [[c[:-1] for c in candidates]])
        assert without_eos[0] >= without_eos[1]  # the old score: the prefix always won
        assert scores[0] < without_eos[0]  # now `yes` pays for ending there, as `yes sir` pays for going on


# --- BOS --------------------------------------------------------------------------------------

class _Tokenizer:
    """The two behaviours a real tokenizer can have, for bos_prefix (not our code: a stand-in for HF's)."""

    def __init__(self, adds_bos: bool):
        self.bos_token_id, self.adds_bos = 7, adds_bos

    def __call__(self, text, add_special_tokens=True):
        ids = [7] if add_special_tokens and self.adds_bos else []
        return type("Out", (), {"input_ids": ids + [100]})()


def test_bos_follows_the_tokenizer_default():
    assert bos_prefix(_Tokenizer(adds_bos=True)) == (7,)
    assert bos_prefix(_Tokenizer(adds_bos=False)) == ()


def test_smollm2_and_llama_style_tokenizers(backbone, tiny_causal_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_causal_dir)
    assert backbone.bos_prefix == bos_prefix(tok) == ()  # SmolLM2's tokenizer adds no BOS: inputs stay as they were
    tok.add_bos_token = True  # a Llama-3-style tokenizer
    if tok("a").input_ids[:1] == [tok.bos_token_id]:
        assert bos_prefix(tok) == (tok.bos_token_id,)


def test_a_bos_is_seen_by_the_model_but_not_pooled_by_g(backbone):
    bos = dataclasses.replace(backbone, bos_prefix=(backbone.tokenizer.bos_token_id,))
    item = lm.encode(bos, "rte sentence1: a b c.", "entailment", 32)
    plain = lm.encode(backbone, "rte sentence1: a b c.", "entailment", 32)
    assert item.input_ids == (bos.bos_prefix[0], *plain.input_ids) and item.special == 1
    batch = lm.collate(bos, [item, plain], [0, 0])
    row = batch.input_mask[0].tolist()
    start = batch.attention_mask[0].tolist().index(1)
    assert row[start] is False and row[start + 1:start + len(item.input_ids)] == [True] * len(plain.input_ids)
    assert batch.input_mask[0].sum() == batch.input_mask[1].sum()


# --- generation limit -------------------------------------------------------------------------

def test_answer_limit_comes_from_the_longest_training_answer(backbone, real_data_dir):
    from attemptctl.tasks.data import load_task

    squad = get_task("squad")
    splits = load_task(squad, data_dir=real_data_dir, seed=42, train_limit=300, dev_limit=4)
    lengths = [len(lm.encode(backbone, e.input, e.target, 8).target_ids) for e in splits.train]
    assert max(lengths) > 16  # the old fixed limit cut these answers
    limit = answer_token_limit(lengths)
    assert max(lengths) < limit <= max(lengths) + max(4, max(lengths) // 4)
    config = TrainConfig(prompt_length=M, max_length=48, batch_size=4, warmup_steps=0, max_steps=1, eval_every=1)
    result = train(backbone, PromptMixture({"squad": torch.randn(M, backbone.d)}), {"squad": splits.train},
                   {"squad": splits.dev}, {"squad": squad}, config)
    assert result.max_new_tokens == {"squad": limit}


def test_generation_stops_at_each_rows_own_limit(backbone):
    squad = get_task("squad")
    rows = [Example("squad", f"question: what is {i}? context: it is {i}.", "x", None) for i in range(3)]
    mixture = PromptMixture({"squad": torch.randn(M, backbone.d)})
    long = evaluate(backbone, mixture, {"squad": rows}, {"squad": squad}, decode="generate", max_new_tokens=12,
                    score=False)["squad"].predictions
    short = evaluate(backbone, mixture, {"squad": rows}, {"squad": squad}, decode="generate",
                     max_new_tokens={"squad": 3}, score=False)["squad"].predictions
    assert all(a.startswith(b) for a, b in zip(long, short))  # greedy: the same answer, cut sooner
    assert sum(len(b) < len(a) for a, b in zip(long, short)) >= 1


# --- the forward's keywords -------------------------------------------------------------------

def test_logits_to_keep_is_honoured_and_the_cache_is_asked_for(backbone):
    items = [lm.encode(backbone, "rte sentence1: a b c.", "entailment", 32)] * 2
    batch = lm.collate(backbone, items, [0, 0])
    shared = torch.randn(M, backbone.d)
    for prompt in (shared, shared.expand(2, -1, -1)):
        out = lm._decoder_forward(backbone, prompt, batch, keep=3, use_cache=True)
        assert out.logits.shape[:2] == (2, 3)  # not the full m + L positions
        assert out.past_key_values is not None
        assert out.past_key_values.get_seq_length() == M + batch.input_ids.shape[1]


def test_batching_is_an_option_that_old_studies_pin_to_length():
    from attemptctl.engine.train import TrainConfig
    from attemptctl.errors import ConfigError
    from attemptctl.tasks import CONFIG_BEFORE

    assert TrainConfig().batching == "label" and CONFIG_BEFORE["batching"] == "length"  # records from before
    with pytest.raises(ConfigError, match="unknown batching 'random'; choose one of label, length"):
        TrainConfig(batching="random")
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("study_recipe", Path(__file__).resolve().parents[1] / "recipes" / "study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    # every part trained before label-balanced batches keeps its batches; the parts made since take the default
    since = {"main-v2", "gpu-main-v2", "curves-300"}
    assert all(part["budget"].get("--batching") == "length" for name, part in study.PARTS.items()
               if name not in since and not part.get("gpu"))
    assert all("--batching" not in study.PARTS[name]["budget"] for name in since)
    assert "--batching" not in study.PARTS["main-v2"]["budget"]
