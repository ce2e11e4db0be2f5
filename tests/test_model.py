"""The prompted, frozen LM against the slow, obvious computation — for both model families.

"The slow way" is one unpadded row at a time: ``[prompt; embed(input + target)]`` through the
unmodified Hugging Face model with full logits (decoder-only), or ``[prompt; embed(input)]`` to the
encoder and ``[start] + target[:-1]`` to the decoder (T5). Everything the library does to go fast
(left padding, ``logits_to_keep``, position ids from the mask, one forward for single-token labels,
``generate``) must give the same numbers.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attemptctl.engine.evaluate import evaluate, label_candidates
from attemptctl.engine.train import TrainConfig, _optimizer, train
from attemptctl.errors import BackboneError
from attemptctl.method import lm
from attemptctl.method.attention import AttentionModule
from attemptctl.method.backbones import Backbone, check_fingerprint, load_backbone
from attemptctl.method.mixture import PromptMixture
from attemptctl.tasks import Example, get_task

M = 3
TEXTS = [
    "rte sentence1: A cat sat on the mat. sentence2: An animal sat.",
    ("rte sentence1: The committee approved the budget for the next fiscal year after a long debate "
     "about spending. sentence2: The budget was rejected."),
    "rte sentence1: Rain. sentence2: It is wet.",
]
TARGETS = ["entailment", "not_entailment", "entailment"]


@pytest.fixture
def backbone(tiny_backbone_dir) -> Backbone:
    return load_backbone(str(tiny_backbone_dir))


def rand_prompts(backbone: Backbone, rows: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, M, backbone.d, generator=torch.Generator().manual_seed(seed)) * 0.5


def mixture_for(backbone: Backbone, variant: str = "attempt", seed: int = 0, t: int = 2) -> PromptMixture:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    sources = {f"s{j}@1": torch.randn(M, backbone.d, generator=gen) for j in range(t)}
    attention = AttentionModule(backbone.d, rank=8) if variant in ("attempt", "no-target") else None
    return PromptMixture({"rte": torch.randn(M, backbone.d, generator=gen) * 0.5},
                         sources=sources if variant != "prompt-tuning" else None, attention=attention, variant=variant)


def rte_rows(n: int) -> list[Example]:
    rte = get_task("rte")
    return [Example("rte", TEXTS[i % len(TEXTS)] + f" #{i}", rte.labels[i % 2], i % 2) for i in range(n)]


# --- the slow way -----------------------------------------------------------------------------


def slow_target_logprobs(backbone: Backbone, prompt: torch.Tensor, input_ids, target_ids) -> torch.Tensor:
    """log p(target_k | prompt, input, target_<k) for one unpadded row; prompt (m, d) -> (K,)."""
    model = backbone.model
    target = torch.tensor(target_ids)
    if backbone.is_encoder_decoder:
        enc = torch.cat([prompt[None], backbone.embed(torch.tensor([list(input_ids)]))], dim=1)
        start = model.config.decoder_start_token_id
        dec = torch.tensor([[start, *target_ids[:-1]]])
        logits = model(inputs_embeds=enc, decoder_input_ids=dec, use_cache=False).logits[0]
    else:
        ids = torch.tensor([[*input_ids, *target_ids]])
        embeds = torch.cat([prompt[None], backbone.embed(ids)], dim=1)
        logits = model(inputs_embeds=embeds, use_cache=False).logits[0]      # all m+L positions
        first = prompt.shape[0] + len(input_ids) - 1                         # predicts target[0]
        logits = logits[first:first + len(target_ids)]
    return torch.log_softmax(logits.float(), -1).gather(-1, target[:, None]).squeeze(-1)


def slow_greedy(backbone: Backbone, prompt: torch.Tensor, input_ids, steps: int) -> list[int]:
    model, out = backbone.model, []
    start = model.config.decoder_start_token_id if backbone.is_encoder_decoder else None
    for _ in range(steps):
        if backbone.is_encoder_decoder:
            enc = torch.cat([prompt[None], backbone.embed(torch.tensor([list(input_ids)]))], dim=1)
            logits = model(inputs_embeds=enc, decoder_input_ids=torch.tensor([[start, *out]]), use_cache=False).logits
        else:
            embeds = torch.cat([prompt[None], backbone.embed(torch.tensor([[*input_ids, *out]]))], dim=1)
            logits = model(inputs_embeds=embeds, use_cache=False).logits
        token = int(logits[0, -1].argmax())
        if token == backbone.eos_id:
            break
        out.append(token)
    return out


# --- frozen LM and training -------------------------------------------------------------------


def test_train_changes_the_prompt_and_never_the_lm(backbone):
    assert not any(p.requires_grad for p in backbone.model.parameters())
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    mixture = mixture_for(backbone)
    prompt0 = mixture.task_prompt("rte").detach().clone()
    g0 = [p.detach().clone() for p in mixture.attention.parameters()]
    sources0 = mixture.source_prompts.clone()
    rte = get_task("rte")
    config = TrainConfig(prompt_length=M, max_length=32, batch_size=3, lr=0.3, warmup_steps=0, max_steps=3, seed=0)
    result = train(backbone, mixture, {"rte": rte_rows(6)}, {"rte": rte_rows(2)}, {"rte": rte}, config)
    assert result.steps == 3
    assert "accuracy" in result.dev["rte"]
    after = backbone.model.state_dict()
    assert after.keys() == before.keys()
    for name, value in before.items():
        assert torch.equal(after[name], value), f"frozen LM weight {name} changed"
    assert not any(p.requires_grad for p in backbone.model.parameters())
    assert not torch.equal(mixture.task_prompt("rte").detach(), prompt0)
    assert any(not torch.equal(p.detach(), q) for p, q in zip(mixture.attention.parameters(), g0))
    assert torch.equal(mixture.source_prompts, sources0)
    assert set(result.state) == {n for n, _ in mixture.named_parameters()}


def test_only_the_mixture_gets_gradients(backbone):
    mixture = mixture_for(backbone)
    items = [lm.encode(backbone, t, y, 64) for t, y in zip(TEXTS, TARGETS)]
    batch = lm.collate(backbone, items, [0, 0, 0])
    prompt, _ = mixture(batch.task_ids, backbone.embed(batch.input_ids), batch.input_mask)
    lm.loss(backbone, prompt, batch).backward()
    assert all(p.grad is None for p in backbone.model.parameters())
    assert mixture.source_prompts.grad is None
    for name, p in mixture.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, f"{name} got no gradient"
    # LayerNorm is trainable (the paper's code froze it silently).
    assert {"attention.norm.weight", "attention.norm.bias"} <= {n for n, _ in mixture.named_parameters()}


# --- loss and per-token log-probabilities -----------------------------------------------------


def test_loss_equals_the_slow_full_sequence_loss(backbone):
    items = [lm.encode(backbone, t, y, 64) for t, y in zip(TEXTS, TARGETS)]
    assert len({len(i.input_ids) for i in items}) == 3 and len({len(i.target_ids) for i in items}) == 2
    assert all(i.target_ids[-1] == backbone.eos_id for i in items)
    batch = lm.collate(backbone, items, [0, 0, 0])
    assert (batch.attention_mask == 0).any()  # padding is exercised
    prompt = rand_prompts(backbone, 3)
    with torch.no_grad():
        got = lm.loss(backbone, prompt, batch)
        per_token = [slow_target_logprobs(backbone, prompt[i], it.input_ids, it.target_ids) for i, it in enumerate(items)]
    want = -torch.cat(per_token).mean()
    assert abs(got.item() - want.item()) < 1e-5


def test_a_rows_loss_does_not_change_with_longer_rows_in_its_batch(backbone):
    items = [lm.encode(backbone, t, y, 64) for t, y in zip(TEXTS, TARGETS)]
    prompt = rand_prompts(backbone, 3, seed=4)
    with torch.no_grad():
        together = lm.token_logprobs(backbone, prompt, lm.collate(backbone, items, [0, 0, 0]))
        for i, item in enumerate(items):
            alone = lm.token_logprobs(backbone, prompt[i:i + 1], lm.collate(backbone, [item], [0]))
            assert together[i].sum().item() == pytest.approx(alone.sum().item(), abs=1e-5)
            k = len(item.target_ids)
            nonzero = together[i][together[i] != 0]
            assert nonzero.numel() == k
            single = lm.loss(backbone, prompt[i:i + 1], lm.collate(backbone, [item], [0]))
            assert single.item() == pytest.approx(-alone.sum().item() / k, abs=1e-5)


# --- rank classification ----------------------------------------------------------------------


def _check_rank(backbone, task, prompt, texts):
    candidates = label_candidates(backbone, task)
    items = [lm.encode(backbone, t, None, 64) for t in texts]
    with torch.no_grad():
        scores = lm.label_scores(backbone, prompt, items, [candidates] * len(items))
        for i, item in enumerate(items):
            slow = [slow_target_logprobs(backbone, prompt[i], item.input_ids, c).sum().item() for c in candidates]
            assert scores[i] == pytest.approx(slow, abs=1e-4)
            assert max(range(len(slow)), key=slow.__getitem__) == max(range(len(slow)), key=scores[i].__getitem__)
    return candidates, scores


def test_rank_classification_single_token_labels(backbone):
    task = dataclasses.replace(get_task("rte"), labels=("yes", "no", "True", "False"))
    candidates, _ = _check_rank(backbone, task, rand_prompts(backbone, 3, seed=1), TEXTS)
    assert all(len(c) == 2 and c[-1] == backbone.eos_id for c in candidates)  # the word, then EOS


def test_rank_classification_multi_token_labels(backbone):
    candidates, _ = _check_rank(backbone, get_task("rte"), rand_prompts(backbone, 3, seed=2), TEXTS)
    assert any(len(c) > 1 for c in candidates)
    assert len(candidates[0]) != len(candidates[1])  # labels of different lengths are scored together


def test_evaluate_predicts_the_slow_argmax(backbone):
    rte = get_task("rte")
    mixture = mixture_for(backbone, seed=5)
    rows = rte_rows(5)
    result = evaluate(backbone, mixture, {"rte": rows}, {"rte": rte}, max_length=64, batch_size=2)["rte"]
    assert result.weights.shape == (5, 3)
    candidates = label_candidates(backbone, rte)
    with torch.no_grad():
        for example, predicted, weights in zip(rows, result.predictions, result.weights):
            item = lm.encode(backbone, example.input, None, 64)
            batch = lm.collate(backbone, [item], [0])
            prompt, a = mixture(batch.task_ids, backbone.embed(batch.input_ids), batch.input_mask)
            assert torch.allclose(torch.from_numpy(weights), a[0], atol=1e-6)
            slow = [slow_target_logprobs(backbone, prompt[0], item.input_ids, c).sum().item() for c in candidates]
            assert predicted == rte.labels[max(range(len(slow)), key=slow.__getitem__)]


# --- generation -------------------------------------------------------------------------------


def test_generate_equals_step_by_step_greedy(backbone):
    items = [lm.encode(backbone, t, None, 64) for t in TEXTS[:2]]
    batch = lm.collate(backbone, items, [0, 0])
    prompt = rand_prompts(backbone, 2, seed=3)
    steps = 4
    got = lm.generate(backbone, prompt, batch, max_new_tokens=steps)
    with torch.no_grad():
        want = [slow_greedy(backbone, prompt[i], item.input_ids, steps) for i, item in enumerate(items)]
    assert got == want
    assert any(len(w) > 0 for w in want)


# --- optimizer --------------------------------------------------------------------------------


def _one_step(backbone, lr, attn_lr):
    mixture = mixture_for(backbone, seed=9)
    config = TrainConfig(prompt_length=M, lr=lr, attn_lr=attn_lr, weight_decay=1e-5)
    optimizer = _optimizer(mixture, config)
    before = {n: p.detach().clone() for n, p in mixture.named_parameters()}
    items = [lm.encode(backbone, t, y, 64) for t, y in zip(TEXTS, TARGETS)]
    batch = lm.collate(backbone, items, [0, 0, 0])
    prompt, _ = mixture(batch.task_ids, backbone.embed(batch.input_ids), batch.input_mask)
    lm.loss(backbone, prompt, batch).backward()
    optimizer.step()
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in mixture.named_parameters()}
    return mixture, optimizer, moved


def test_two_learning_rates_land_on_the_right_groups(backbone):
    mixture, optimizer, moved = _one_step(backbone, lr=0.3, attn_lr=0.05)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["prompts"]["lr"] == 0.3 and groups["attention"]["lr"] == 0.05
    assert {id(p) for p in groups["prompts"]["params"]} == {id(p) for p in mixture.prompts.parameters()}
    assert {id(p) for p in groups["attention"]["params"]} == {id(p) for p in mixture.attention.parameters()}
    # Adam's first step moves each weight by about lr (|m̂/√v̂| = 1 where the gradient is not tiny).
    assert moved["prompts.0"] == pytest.approx(0.3, rel=1e-2)
    for name in ("attention.down.weight", "attention.up.weight", "attention.norm.weight", "attention.norm.bias"):
        assert moved[name] == pytest.approx(0.05, rel=1e-2), name

    _, _, frozen_g = _one_step(backbone, lr=0.3, attn_lr=0.0)
    assert all(v == 0 for n, v in frozen_g.items() if n.startswith("attention."))
    assert frozen_g["prompts.0"] == pytest.approx(0.3, rel=1e-2)


# --- fingerprints -----------------------------------------------------------------------------


def test_check_fingerprint_refuses_the_other_model(tiny_causal_dir, tiny_t5_dir):
    causal, t5 = load_backbone(str(tiny_causal_dir)), load_backbone(str(tiny_t5_dir))
    check_fingerprint("prompt rte@1", dict(causal.fingerprint), causal)  # its own is accepted
    with pytest.raises(BackboneError, match="class") as info:
        check_fingerprint("prompt rte@1", causal.fingerprint, t5)
    assert "prompt rte@1" in str(info.value) and "embedding_sha256" in str(info.value)
    # A single differing field is named, and only that one.
    tampered = {**t5.fingerprint, "embedding_sha256": "0" * 64}
    with pytest.raises(BackboneError, match="embedding_sha256") as info:
        check_fingerprint("source prompt mnli@1", tampered, t5)
    assert "config_sha256" not in str(info.value)
