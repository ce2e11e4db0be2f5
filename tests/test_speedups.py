"""Every speed-up computes the same thing as the plain path (issue 7): checked here, timed in benchmarks/."""

from __future__ import annotations

import torch

from attemptctl.method import lm
from attemptctl.method.backbones import load_backbone
from attemptctl.method.mixture import PromptMixture


def _batch(backbone, texts, targets):
    items = [lm.encode(backbone, t, y, 64) for t, y in zip(texts, targets)]
    return lm.collate(backbone, items, [0] * len(items))


TEXTS = ["rte sentence1: A man is eating. sentence2: Someone eats.",
         "rte sentence1: The cat sat on the mat near the door of the old house. sentence2: A dog ran.",
         "rte sentence1: Short. sentence2: Tiny."]
TARGETS = ["entailment", "not_entailment", "entailment"]


def test_shared_prefix_gives_the_same_loss_and_prompt_gradient(tiny_causal_dir):
    backbone = load_backbone(str(tiny_causal_dir))
    batch = _batch(backbone, TEXTS, TARGETS)
    torch.manual_seed(0)
    shared = torch.randn(5, backbone.d, requires_grad=True)
    per_row = shared.detach().clone().requires_grad_(True)
    loss_shared = lm.loss(backbone, shared, batch)                      # (m, d): prompt computed once
    loss_rows = lm.loss(backbone, per_row.unsqueeze(0).expand(len(batch), -1, -1), batch)
    loss_shared.backward()
    loss_rows.backward()
    assert torch.allclose(loss_shared, loss_rows, atol=1e-5)
    assert shared.grad.abs().sum() > 0
    assert torch.allclose(shared.grad, per_row.grad, atol=1e-5)


def test_mixture_shares_a_prompt_only_when_every_row_has_it():
    prompts = {"a": torch.randn(3, 4), "b": torch.randn(3, 4)}
    mixture = PromptMixture(prompts)
    same, _ = mixture(torch.tensor([1, 1, 1]), share=True)
    mixed, _ = mixture(torch.tensor([0, 1, 1]), share=True)
    assert same.shape == (3, 4) and torch.equal(same, prompts["b"])
    assert mixed.shape == (3, 3, 4) and torch.equal(mixed[0], prompts["a"])


def test_shared_input_label_scores_match_per_label_sequences(tiny_backbone_dir):
    """Scoring candidates from one encoded input equals scoring each (input, label) sequence alone."""
    backbone = load_backbone(str(tiny_backbone_dir))
    torch.manual_seed(1)
    prompt = torch.randn(len(TEXTS), 4, backbone.d)
    labels = [lm.encode(backbone, "", w, 8).target_ids[:-1] for w in ("entailment", "not_entailment", "maybe so")]
    items = [lm.encode(backbone, t, None, 64) for t in TEXTS]
    fast = lm.label_scores(backbone, prompt, items, [labels] * len(items))
    for i, item in enumerate(items):
        for j, label in enumerate(labels):
            alone = lm.collate(backbone, [lm.Encoded(item.input_ids, label)], [0])
            slow = lm.token_logprobs(backbone, prompt[i:i + 1], alone).sum().item()
            assert abs(fast[i][j] - slow) < 1e-4
