"""The tests the training-correctness review (issue 14) found missing, each against a reference.

- Rank classification with ONE shared (m, d) prompt — the path of every source, PT and SPoT
  evaluation — equals the slow one-row-at-a-time computation of ``test_model.py`` (both tiny model
  families; SmolLM2 with multi-token labels).
- G pools exactly the input tokens of real training batches: never padding, never the target (were
  the target pooled, G would see the label in training only, and nothing else would fail).
- Resuming an ATTEMPT target (two parameter groups: prompts and G) and a multi-task run is exact,
  AND the resumed run trains only the remaining steps: a silent restart from step 0 gives the same
  bytes (training is deterministic), so only the step accounting can catch it.
- Temperature sampling draws each task as often as its formula says.
- Free-form evaluation (``decode="generate"``) returns the model's greedy answers and scores them as
  SQuAD's official script does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import signal
import string
from collections import Counter

import pytest
import torch
from test_model import slow_greedy, slow_target_logprobs

from attemptctl.engine.checkpoints import CheckpointPlan
from attemptctl.engine.evaluate import evaluate, label_candidates
from attemptctl.engine.train import TrainConfig, epoch_rows, train
from attemptctl.method import lm
from attemptctl.method.attention import AttentionModule
from attemptctl.method.backbones import Backbone, load_backbone
from attemptctl.method.mixture import PromptMixture
from attemptctl.method.prompts import SoftPrompt
from attemptctl.tasks import Example, get_task
from attemptctl.tasks.data import load_task

M = 3
TEXTS = [
    "rte sentence1: A cat sat on the mat. sentence2: An animal sat.",
    ("rte sentence1: The committee approved the budget for the next fiscal year after a long debate "
     "about spending. sentence2: The budget was rejected."),
    "rte sentence1: Rain. sentence2: It is wet.",
    "rte sentence1: Two dogs ran across the wide green field. sentence2: Animals moved.",
]


@pytest.fixture
def backbone(tiny_backbone_dir) -> Backbone:
    return load_backbone(str(tiny_backbone_dir))


@pytest.fixture(scope="module")
def smollm2(smollm2_dir) -> Backbone:
    return load_backbone(str(smollm2_dir))


def vocab_prompt(backbone: Backbone, seed: int = 0, m: int = M) -> torch.Tensor:
    """An (m, d) prompt from frequent-token embeddings, as training initialises one: embedding-sized."""
    return SoftPrompt.from_vocab(backbone.model.get_input_embeddings().weight.detach(), m,
                                 generator=torch.Generator().manual_seed(seed),
                                 special_ids=backbone.tokenizer.all_special_ids).weight.detach().clone()


def slow_scores(backbone: Backbone, prompt: torch.Tensor, items, candidates) -> list[list[float]]:
    """Rank-classification scores the slow way: every (row, label) alone, full logits, prompt (m, d)."""
    with torch.no_grad():
        return [[slow_target_logprobs(backbone, prompt, item.input_ids, label).sum().item() for label in row]
                for item, row in zip(items, candidates)]


def argmax(values) -> int:
    return max(range(len(values)), key=values.__getitem__)


# --- 1. rank classification with a shared prompt ------------------------------------------------


@pytest.mark.parametrize("labels", [("entailment", "not_entailment"), ("yes", "yes sir", "no")],
                         ids=["multi-token", "token-prefix"])
def test_shared_prompt_label_scores_equal_the_slow_per_row_scores(backbone, labels):
    candidates = label_candidates(backbone, dataclasses.replace(get_task("rte"), labels=labels))
    assert len({len(c) for c in candidates}) > 1  # labels of different lengths continue the same cache
    items = [lm.encode(backbone, text, None, 64) for text in TEXTS]
    assert len({len(i.input_ids) for i in items}) == len(items)  # padding is exercised
    prompt = vocab_prompt(backbone, seed=1)
    assert prompt.shape == (M, backbone.d)
    got = lm.label_scores(backbone, prompt, items, [candidates] * len(items))
    want = slow_scores(backbone, prompt, items, [candidates] * len(items))
    for row_got, row_want in zip(got, want):
        assert row_got == pytest.approx(row_want, abs=1e-4)


def test_shared_prompt_rows_with_different_label_sets_in_one_batch(backbone):
    """Rows of different tasks share a batch: each row is scored against its own labels only."""
    rte = label_candidates(backbone, get_task("rte"))
    cb = label_candidates(backbone, get_task("cb"))
    items = [lm.encode(backbone, text, None, 64) for text in TEXTS]
    candidates = [rte, cb, cb, rte]
    prompt = vocab_prompt(backbone, seed=2)
    got = lm.label_scores(backbone, prompt, items, candidates)
    assert [len(row) for row in got] == [2, 3, 3, 2]
    for row_got, row_want in zip(got, slow_scores(backbone, prompt, items, candidates)):
        assert row_got == pytest.approx(row_want, abs=1e-4)


def _check_prompt_tuning_evaluation(backbone: Backbone, task_name: str, texts, seed: int, abs_tol: float):
    """``evaluate`` of a prompt-tuning mixture (the shared path) predicts the slow argmax on every row."""
    task = get_task(task_name)
    prompt = vocab_prompt(backbone, seed=seed)
    mixture = PromptMixture({task_name: prompt})
    rows = [Example(task_name, text, task.labels[i % len(task.labels)], i % len(task.labels))
            for i, text in enumerate(texts)]
    items = [lm.encode(backbone, row.input, None, 64) for row in rows]
    batch = lm.collate(backbone, items, [0] * len(items))
    shared, weights = mixture(batch.task_ids, backbone.embed(batch.input_ids), batch.input_mask, share=True)
    assert shared.dim() == 2 and weights is None  # evaluation really takes the shared-prompt path
    candidates = label_candidates(backbone, task)
    assert any(len(c) > 2 for c in candidates)  # multi-token labels (word pieces + EOS)
    want = slow_scores(backbone, prompt, items, [candidates] * len(items))
    got = lm.label_scores(backbone, shared, items, [candidates] * len(items))
    for row_got, row_want in zip(got, want):
        assert row_got == pytest.approx(row_want, abs=abs_tol)
    result = evaluate(backbone, mixture, {task_name: rows}, {task_name: task}, max_length=64, batch_size=len(rows))
    predicted = result[task_name].predictions
    assert predicted == [task.labels[argmax(scores)] for scores in want]
    hits = sum(p == row.target for p, row in zip(predicted, rows))
    assert result[task_name].metrics["accuracy"] == pytest.approx(hits / len(rows))


def test_evaluate_with_a_shared_prompt_predicts_the_slow_argmax(backbone):
    _check_prompt_tuning_evaluation(backbone, "rte", TEXTS, seed=3, abs_tol=1e-4)


def test_smollm2_shared_prompt_rank_classification_equals_the_slow_scores(smollm2):
    texts = ["cb premise: The man said he would come tomorrow. hypothesis: He will come.",
             "cb premise: No one believed the story she told us. hypothesis: The story was true."]
    _check_prompt_tuning_evaluation(smollm2, "cb", texts, seed=0, abs_tol=2e-3)


# --- 2. G's input mask in real training batches -------------------------------------------------


def _attempt_mixture(backbone: Backbone, tasks, seed: int = 0) -> PromptMixture:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    sources = {f"s{j}@1": torch.randn(M, backbone.d, generator=gen) for j in range(2)}
    targets = {task: torch.randn(M, backbone.d, generator=gen) * 0.5 for task in tasks}
    return PromptMixture(targets, sources=sources, attention=AttentionModule(backbone.d, rank=8), variant="attempt")


def _real_rows(real_data_dir, names=("rte", "cb"), n: int = 4) -> dict[str, list[Example]]:
    return {name: load_task(get_task(name), data_dir=real_data_dir, train_limit=n, dev_limit=1, test_limit=1).train
            for name in names}


def _training_batch(backbone, mixture, rows, max_length=48):
    """A batch as ``train`` builds it: ``encode`` of every real row with its target, then ``collate``."""
    items, task_ids = [], []
    for name, examples in rows.items():
        for example in examples:
            items.append(lm.encode(backbone, example.input, example.target, max_length))
            task_ids.append(mixture.tasks.index(name))
    return items, task_ids, lm.collate(backbone, items, task_ids)


def test_g_mask_is_true_exactly_on_the_input_tokens_of_a_real_batch(backbone, real_data_dir):
    rows = _real_rows(real_data_dir)
    mixture = _attempt_mixture(backbone, rows)
    items, _, batch = _training_batch(backbone, mixture, rows)
    assert (batch.attention_mask == 0).any() and len({len(i.target_ids) for i in items}) > 1
    for i, item in enumerate(items):
        mask = batch.input_mask[i]
        # The masked positions hold exactly the input's tokens, in order: no pad, no target, no BOS.
        assert batch.input_ids[i][mask].tolist() == list(item.input_ids[item.special:])
        assert not (mask & (batch.attention_mask[i] == 0)).any()
        if not backbone.is_encoder_decoder:  # the target is in the token row: its positions are the last K
            assert not mask[-len(item.target_ids):].any()
            assert batch.input_ids[i][-len(item.target_ids):].tolist() == list(item.target_ids)


def test_g_ignores_the_padding_and_target_embeddings_of_a_real_batch(backbone, real_data_dir):
    rows = _real_rows(real_data_dir)
    mixture = _attempt_mixture(backbone, rows).eval()
    items, task_ids, batch = _training_batch(backbone, mixture, rows)
    embeds = backbone.embed(batch.input_ids)
    with torch.no_grad():
        query = mixture.attention.query(embeds, batch.input_mask)
        prompt, weights = mixture(batch.task_ids, embeds, batch.input_mask, share=True)
        noise = torch.randn(embeds.shape, generator=torch.Generator().manual_seed(0)) * 1e3
        outside = ~batch.input_mask.unsqueeze(-1)
        perturbed = torch.where(outside, embeds + noise, embeds)  # every pad and target position, huge
        assert torch.equal(mixture.attention.query(perturbed, batch.input_mask), query)
        prompt2, weights2 = mixture(batch.task_ids, perturbed, batch.input_mask, share=True)
        assert torch.equal(weights2, weights) and torch.equal(prompt2, prompt)
        # Positive control: the same noise on input tokens does change G's query and weights.
        inside = torch.where(outside, embeds, embeds + noise)
        assert not torch.allclose(mixture.attention.query(inside, batch.input_mask), query)

        # Another label on every row: G's weights do not move (it must not see the answer) ...
        other = {name: [dataclasses.replace(e, target=get_task(name).labels[(get_task(name).labels.index(e.target) + 1)
                                                                            % len(get_task(name).labels)])
                        for e in examples] for name, examples in rows.items()}
        _, _, relabelled = _training_batch(backbone, mixture, other)
        _, weights3 = mixture(relabelled.task_ids, backbone.embed(relabelled.input_ids), relabelled.input_mask)
        assert torch.allclose(weights3, weights, atol=1e-6)
        # ... and they are what evaluation computes for the same row alone, encoded without a target.
        for i, (name, example) in enumerate((name, e) for name, examples in rows.items() for e in examples):
            alone = lm.collate(backbone, [lm.encode(backbone, example.input, None, 48)], [task_ids[i]])
            _, a = mixture(alone.task_ids, backbone.embed(alone.input_ids), alone.input_mask)
            assert torch.allclose(a[0], weights[i], atol=1e-6), (name, i)


def test_training_steps_feed_g_only_input_tokens(tiny_causal_dir, real_data_dir):
    """Observed inside the real loop: every row G pools during ``train`` is one example's input tokens."""
    backbone = load_backbone(str(tiny_causal_dir))
    rows = _real_rows(real_data_dir, n=6)
    mixture = _attempt_mixture(backbone, rows)
    inputs = [lm.encode(backbone, e.input, e.target, 48, e.cut) for examples in rows.values() for e in examples]
    expected = [backbone.embed(torch.tensor(i.input_ids[i.special:])) for i in inputs]
    seen = []

    def record(module, args):
        if module.training:
            seen.append((args[0].detach().clone(), args[1].clone()))

    mixture.attention.register_forward_pre_hook(record)
    config = TrainConfig(prompt_length=M, max_length=48, batch_size=4, warmup_steps=0, max_steps=3, seed=0)
    examples = []
    result = train(backbone, mixture, rows, {name: [] for name in rows}, {n: get_task(n) for n in rows}, config,
                   on_event=lambda event, **data: examples.append(data["examples"]) if event == "step" else None)
    assert result.steps == 3 and len(seen) == 3
    pooled = 0
    for embeds, mask in seen:
        assert (~mask).any()  # the batch has positions G must skip (pads, targets)
        for row in range(len(mask)):
            masked = embeds[row][mask[row]]
            assert any(masked.shape == e.shape and torch.equal(masked, e) for e in expected)
            pooled += 1
    assert pooled == sum(examples) == 12  # every row of the 3 steps' batches was checked


# --- 3. exact resume that really continues ------------------------------------------------------

RESUME_ROWS = {
    "rte": [Example("rte", f"rte sentence1: row {i} is here. sentence2: row {i % 3}.",
                    ("entailment", "not_entailment")[i % 2], i % 2) for i in range(12)],
    "cb": [Example("cb", f"cb premise: premise {i} holds. hypothesis: it {i % 4}.",
                   ("entailment", "contradiction", "neutral")[i % 3], i % 3) for i in range(8)],
}
RESUME_CONFIG = TrainConfig(prompt_length=M, max_length=24, batch_size=4, lr=0.3, attn_lr=0.05, warmup_steps=2,
                            max_steps=7, eval_every=3)


def _digest(state: dict[str, torch.Tensor]) -> str:
    return hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()


def _resumable_run(backbone, tasks, plan=None, stop_at=None):
    events: list[tuple[str, dict]] = []

    def on_event(event, **data):
        events.append((event, data))
        if stop_at is not None and event == "step" and data["step"] == stop_at:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C in the middle of the step's bookkeeping

    mixture = _attempt_mixture(backbone, tasks)
    result = train(backbone, mixture, {t: RESUME_ROWS[t] for t in tasks}, {t: RESUME_ROWS[t][:3] for t in tasks},
                   {t: get_task(t) for t in tasks}, RESUME_CONFIG, on_event=on_event, checkpoint=plan)
    return result, events


_STRAIGHT: dict[tuple[str, ...], tuple] = {}


def _steps(events) -> list[dict]:
    return [data for event, data in events if event == "step"]


@pytest.mark.parametrize("tasks,stop_at", [(("rte",), 4), (("rte", "cb"), 3), (("rte", "cb"), 5)],
                         ids=["attempt-stop-4", "multi-task-stop-3", "multi-task-stop-5"])
def test_resume_is_exact_and_trains_only_the_remaining_steps(tiny_causal_dir, tmp_path, tasks, stop_at):
    backbone = load_backbone(str(tiny_causal_dir))
    total = RESUME_CONFIG.max_steps
    if tasks not in _STRAIGHT:  # the uninterrupted run, once per set of tasks
        _STRAIGHT[tasks] = _resumable_run(backbone, tasks)
    straight, straight_events = _STRAIGHT[tasks]
    assert straight.steps == total and [s["step"] for s in _steps(straight_events)] == list(range(1, total + 1))
    plan = CheckpointPlan(tmp_path / "run.safetensors")
    first, first_events = _resumable_run(backbone, tasks, plan, stop_at=stop_at)
    assert first.interrupted and first.steps == stop_at and plan.path.exists()
    assert [s["step"] for s in _steps(first_events)] == list(range(1, stop_at + 1))

    resumed, events = _resumable_run(backbone, tasks, CheckpointPlan(plan.path, resume=True))
    [start] = [data for event, data in events if event == "start"]
    assert start["resumed_at"] == stop_at and start["total"] == total
    steps = _steps(events)
    assert [s["step"] for s in steps] == list(range(stop_at + 1, total + 1))  # a restart from 0 fails here
    by_step = {s["step"]: s for s in _steps(straight_events)}
    for step in steps:  # each remaining step trains what the straight run trained at that step
        want = by_step[step["step"]]
        assert (step["loss"], step["lr"], step["examples"]) == (want["loss"], want["lr"], want["examples"])
    assert not resumed.interrupted and resumed.steps == total
    assert _digest(resumed.state) == _digest(straight.state)
    assert resumed.best_step == straight.best_step and resumed.dev == straight.dev
    assert [h["step"] for h in resumed.history] == [h["step"] for h in straight.history]
    # Both parameter groups are in the resumed state: every task prompt and G.
    names = {f"prompts.{i}" for i in range(len(tasks))} | {"attention.down.weight", "attention.up.weight",
                                                             "attention.norm.weight", "attention.norm.bias"}
    assert set(resumed.state) == names
    init = dict(_attempt_mixture(backbone, tasks).named_parameters())
    assert all(not torch.equal(resumed.state[n], init[n].detach()) for n in names)  # every one trained
    assert not plan.path.exists()


# --- 4. temperature sampling --------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(2490, 250, 9427), (50, 10, 3), (40, 7, 7, 13)],
                         ids=["rte-cb-boolq", "small", "four-tasks"])
@pytest.mark.parametrize("temperature", [2.0, 3.0, 10.0])
def test_temperature_sampling_draws_each_task_as_its_formula_says(sizes, temperature):
    task_ids = [t for t, n in enumerate(sizes) for _ in range(n)]
    task_ids = task_ids[1::2] + task_ids[::2]  # tasks interleaved, as several tasks' rows may come
    rows = epoch_rows(task_ids, temperature, seed=7)
    weights = [n ** (1.0 / temperature) for n in sizes]
    ideal = [len(task_ids) * w / sum(weights) for w in weights]
    counts = Counter(task_ids[i] for i in rows)
    for t, x in enumerate(ideal):  # n_t^(1/T) / Σ n^(1/T) of the epoch's rows, within rounding
        assert counts[t] in (math.floor(x), math.ceil(x)), (t, counts[t], x)
    assert len(rows) == len(task_ids), "the epoch keeps the total number of rows"
    for t, n in enumerate(sizes):
        drawn = [i for i in rows if task_ids[i] == t]
        if counts[t] <= n:  # drawn less often than it has rows: a subset, no row twice
            assert len(set(drawn)) == len(drawn)
    assert epoch_rows(task_ids, temperature, seed=7) == rows  # seeded


def test_temperature_one_is_every_row_once_and_a_large_one_is_uniform():
    sizes = (60, 12, 3)
    task_ids = [t for t, n in enumerate(sizes) for _ in range(n)]
    assert epoch_rows(task_ids, 1.0, seed=0) == list(range(len(task_ids)))
    counts = Counter(task_ids[i] for i in epoch_rows(task_ids, 1e6, seed=0))
    assert all(abs(counts[t] - len(task_ids) / 3) <= 0.5 for t in range(3)), counts


# --- 5. free-form evaluation --------------------------------------------------------------------


def squad_normalize(text: str) -> str:
    """SQuAD v1.1's official ``normalize_answer``: lower case, no punctuation, no articles, one space."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def squad_f1(prediction: str, gold: str) -> float:
    """SQuAD v1.1's official ``f1_score`` (v2's convention for empty answers: equal or 0)."""
    pred, truth = squad_normalize(prediction).split(), squad_normalize(gold).split()
    if not pred or not truth:
        return float(pred == truth)
    common = sum((Counter(pred) & Counter(truth)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(truth)
    return 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("variant", ["prompt-tuning", "attempt"])
def test_free_form_evaluation_scores_the_greedy_answers_as_squad_does(backbone, variant):
    squad = get_task("squad")
    # No final full stop: a random tiny Llama with tied embeddings then repeats the last word, not "."
    texts = [f"squad question: What did {who} see? context: By the river, {who} saw a {what}"
             for who, what in (("Anna", "heron"), ("Bob", "boat"), ("Carl", "bridge"), ("Dana", "fox"))]
    if variant == "prompt-tuning":
        mixture = PromptMixture({"squad": vocab_prompt(backbone, seed=4)})
    else:
        mixture = _attempt_mixture(backbone, ["squad"], seed=4)
    steps = 5
    unknown = [Example("squad", text, "x", None, ("x",)) for text in texts]
    first = evaluate(backbone, mixture, {"squad": unknown}, {"squad": squad}, max_length=64, decode="generate",
                     max_new_tokens=steps)["squad"]
    # The predictions are the model's greedy answers, computed token by token for each row alone.
    with torch.no_grad():
        for text, predicted in zip(texts, first.predictions):
            item = lm.encode(backbone, text, None, 64)
            alone = lm.collate(backbone, [item], [0])
            prompt, _ = mixture(alone.task_ids, backbone.embed(alone.input_ids), alone.input_mask)
            tokens = slow_greedy(backbone, prompt[0], item.input_ids, steps)
            assert predicted == backbone.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    predictions = first.predictions
    assert any(squad_normalize(p) for p in predictions)  # something to score
    # Known answers: the exact prediction; a longer gold among distractors (max over golds); a wrong one;
    # the prediction in other case and punctuation (normalised away).
    golds = [(predictions[0],),
             ("zebra quantum", f"{predictions[1]} beside the water"),
             ("completely unrelated words",),
             (f"The {predictions[3].upper()}!",)]
    known = [Example("squad", text, gold[0], None, gold) for text, gold in zip(texts, golds)]
    scored = evaluate(backbone, mixture, {"squad": known}, {"squad": squad}, max_length=64, decode="generate",
                      max_new_tokens=steps)["squad"]
    assert scored.predictions == predictions
    em = [max(float(squad_normalize(p) == squad_normalize(g)) for g in gold) for p, gold in zip(predictions, golds)]
    f1 = [max(squad_f1(p, g) for g in gold) for p, gold in zip(predictions, golds)]
    assert em[0] == 1.0 and em[3] == 1.0 and 0.0 < f1[1] < 1.0
    assert scored.metrics["squad_em"] == pytest.approx(sum(em) / len(em))
    assert scored.metrics["squad_f1"] == pytest.approx(sum(f1) / len(f1))
