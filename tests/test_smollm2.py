"""The real backbone end to end: one prompt-tuning step on real RTE rows lowers the loss.

Runs in CI (not marked slow): SmolLM2-135M from the packaged GGUF, 4 rows, m = 4, 64 input tokens.
"""

from __future__ import annotations

import torch

from attemptctl.method import lm
from attemptctl.method.backbones import load_backbone
from attemptctl.method.mixture import PromptMixture
from attemptctl.method.prompts import SoftPrompt
from attemptctl.tasks import get_task
from attemptctl.tasks.data import load_task


def test_one_adamw_step_on_the_prompt_lowers_the_loss(smollm2_dir, real_data_dir):
    backbone = load_backbone("smollm2-135m")
    assert not backbone.is_encoder_decoder and backbone.d == 576
    assert not any(p.requires_grad for p in backbone.model.parameters())
    rte = get_task("rte")
    rows = load_task(rte, data_dir=real_data_dir, train_limit=4).train
    assert len(rows) == 4 and {r.target for r in rows} <= set(rte.labels)

    init = SoftPrompt.from_vocab(backbone.model.get_input_embeddings().weight.detach(), 4,
                                 generator=torch.Generator().manual_seed(0),
                                 special_ids=backbone.tokenizer.all_special_ids)
    mixture = PromptMixture({"rte": init.weight})
    items = [lm.encode(backbone, r.input, r.target, 64) for r in rows]
    assert all(len(i.input_ids) <= 64 for i in items)
    batch = lm.collate(backbone, items, [0] * len(items))

    optimizer = torch.optim.AdamW(mixture.parameters(), lr=0.3, weight_decay=1e-5)
    prompt, weights = mixture(batch.task_ids)
    assert weights is None and prompt.shape == (4, 4, 576)
    before = lm.loss(backbone, prompt, batch)
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = lm.loss(backbone, mixture(batch.task_ids)[0], batch)
    assert torch.isfinite(before) and torch.isfinite(after)
    assert after.item() < before.item()
