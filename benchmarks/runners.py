"""What the benchmark rows run: PEFT's standard prompt-tuning recipe, and attemptctl's own entry points.

Each function returns timings as (seconds, examples, real tokens) tuples: per optimizer step for
training, per repetition over the evaluation set for evaluation.
"""

from __future__ import annotations

import copy
import itertools
import random
import time
from collections.abc import Sequence

from benchmarks.measure import eval_repeats

N_SOURCES = 4
"""Source prompts the ATTEMPT row mixes."""


def peft_model(backbone, m: int, device):
    from peft import PromptTuningConfig, TaskType, get_peft_model

    task_type = TaskType.SEQ_2_SEQ_LM if backbone.is_encoder_decoder else TaskType.CAUSAL_LM
    # A private copy: PEFT wraps the model it is given, ours must stay untouched.
    config = PromptTuningConfig(task_type=task_type, num_virtual_tokens=m)
    return get_peft_model(copy.deepcopy(backbone.model), config).to(device)


def _peft_encode(backbone, text: str, target: str | None, max_length: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) the usual way: decoder-only "input target<eos>" with the input masked out."""
    tok, eos = backbone.tokenizer, backbone.eos_id
    ids = tok(text, truncation=True, max_length=max_length)["input_ids"]
    if target is None:
        return ids, []
    if backbone.is_encoder_decoder:
        labels = tok(target)["input_ids"]
        return ids, labels if labels and labels[-1] == eos else [*labels, eos]
    target_ids = tok(" " + target, add_special_tokens=False)["input_ids"] + [eos]
    return ids + target_ids, [-100] * len(ids) + target_ids


def _peft_collate(backbone, rows: Sequence[tuple[list[int], list[int]]], *, left: bool = False) -> dict:
    """Pad to the batch's longest row (right padding; left for decoder-only generation)."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids, mask = [], []
    for row, _ in rows:
        pad = [backbone.pad_id] * (width - len(row))
        ids.append(pad + row if left else row + pad)
        mask.append([0] * len(pad) + [1] * len(row) if left else [1] * len(row) + [0] * len(pad))
    batch = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
    if rows[0][1]:
        label_width = max(len(labels) for _, labels in rows)
        batch["labels"] = torch.tensor([labels + [-100] * (label_width - len(labels)) for _, labels in rows])
    return batch


def length_grouped_order(lengths: Sequence[int], batch_size: int, seed: int) -> list[int]:
    """The row order of the Trainer's ``group_by_length=True``: transformers' own LengthGroupedSampler indices.

    Shuffled, cut into megabatches of ``min(n // (4 · batch_size), 50)`` batches (at least one), each
    sorted longest first, and the batch holding the longest row moved to the front.
    """
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    return get_length_grouped_indices(list(lengths), batch_size, generator=torch.Generator().manual_seed(seed))


def peft_train_steps(model, backbone, examples, opts, device, *, grouped: bool = False) -> list[tuple[float, int, int]]:
    """Per-step (seconds, examples, real tokens) of PEFT prompt tuning with our optimizer settings.

    ``grouped``: batches in the Trainer's length-grouped order instead of a shuffling DataLoader's.
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    model.train()
    total = opts.warmup + opts.steps * opts.repeats
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.3, weight_decay=1e-5)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, total)
    rows = [_peft_encode(backbone, e.input, e.target, opts.max_length) for e in examples]
    if grouped:
        order = length_grouped_order([len(ids) for ids, _ in rows], opts.batch_size, opts.seed)
    else:
        order = list(range(len(rows)))
        random.Random(opts.seed).shuffle(order)  # a shuffling DataLoader
    steps = []
    for step in range(total):
        started = time.perf_counter()
        start = (step * opts.batch_size) % len(order)
        batch = _peft_collate(backbone, [rows[i] for i in order[start:start + opts.batch_size]])
        tokens = int(batch["attention_mask"].sum())
        with backbone.autocast():  # the same precision as ours (bf16: autocast, fp32 trainables)
            out = model(**{k: v.to(device) for k, v in batch.items()})
        out.loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        out.loss.item()
        steps.append((time.perf_counter() - started, len(batch["input_ids"]), tokens))
    return steps


def peft_generate_runs(model, backbone, examples, opts, device, max_new_tokens: int) -> list[tuple[float, int, int]]:
    """Per-repetition (seconds, examples, input tokens) of greedy ``generate`` over the evaluation set."""
    import torch

    model.eval()
    rows = [_peft_encode(backbone, e.input, None, opts.max_length) for e in examples]
    left = not backbone.is_encoder_decoder  # decoder-only generation needs left padding

    def run(subset) -> tuple[float, int, int]:
        started, tokens = time.perf_counter(), 0
        with torch.no_grad():
            for start in range(0, len(subset), opts.batch_size):
                batch = _peft_collate(backbone, subset[start:start + opts.batch_size], left=left)
                tokens += int(batch["attention_mask"].sum())
                with backbone.autocast():
                    model.generate(**{k: v.to(device) for k, v in batch.items()}, max_new_tokens=max_new_tokens,
                                   do_sample=False, num_beams=1, pad_token_id=backbone.pad_id,
                                   eos_token_id=backbone.eos_id)
        return time.perf_counter() - started, len(subset), tokens

    return eval_repeats(run, rows, opts)


def our_train_steps(backbone, mixture, task, examples, opts, *, source: bool) -> list[tuple[float, int, int | None]]:
    """Per-step (seconds, examples, real tokens) of :func:`attemptctl.engine.train.train`, from its step events."""
    from attemptctl.engine.train import TrainConfig, train
    from attemptctl.method import lm

    config = TrainConfig(prompt_length=opts.prompt_length, max_length=opts.max_length, batch_size=opts.batch_size,
                         lr=0.3, weight_decay=1e-5, warmup_steps=0, max_steps=opts.warmup + opts.steps * opts.repeats,
                         seed=opts.seed)
    stamps: list[tuple[float, dict]] = []
    collated: list[int] = []
    real_collate = lm.collate

    def counting_collate(backbone, items, *args, **kwargs):  # the real tokens of every training batch
        collated.append(sum(len(item) for item in items))
        return real_collate(backbone, items, *args, **kwargs)

    def on_event(kind, **info) -> None:
        if kind in ("start", "step"):
            _synchronize(backbone)  # a GPU step is timed when it is done, not when it is queued
            stamps.append((time.perf_counter(), info))

    lm.collate = counting_collate
    try:
        train(backbone, mixture, {task.name: examples}, {task.name: []}, {task.name: task}, config,
              source=source, on_event=on_event)
    finally:
        lm.collate = real_collate
    steps = [(t1 - t0, info["examples"], info.get("tokens")) for (t0, _), (t1, info) in itertools.pairwise(stamps)]
    if all(t is None for _, _, t in steps) and len(collated) == len(steps):
        steps = [(s, n, t) for (s, n, _), t in zip(steps, collated)]
    return steps


def _synchronize(backbone) -> None:
    """Wait for the GPU's queue (train() no longer syncs every step; a per-step time must)."""
    if backbone.device.type == "cuda":
        import torch

        torch.cuda.synchronize(backbone.device)


def our_eval_runs(backbone, mixture, task, examples, opts, decode: str, max_new_tokens: int):
    """Per-repetition (seconds, examples, input tokens) of :func:`attemptctl.engine.evaluate.evaluate`."""
    from attemptctl.engine.evaluate import evaluate
    from attemptctl.method import lm

    max_length = opts.max_length

    def run(subset) -> tuple[float, int, int]:
        tokens = sum(len(lm.encode(backbone, e.input, None, max_length).input_ids) for e in subset)
        started = time.perf_counter()
        evaluate(backbone, mixture, {task.name: subset}, {task.name: task}, max_length=max_length,
                 batch_size=opts.batch_size, decode=decode, max_new_tokens=max_new_tokens)
        return time.perf_counter() - started, len(subset), tokens

    return eval_repeats(run, list(examples), opts)


def mixtures(backbone, m: int, seed: int, task_name: str):
    """(source mixture, ATTEMPT mixture over N_SOURCES vocabulary-sampled source prompts)."""
    import torch

    from attemptctl.method.attention import AttentionModule
    from attemptctl.method.mixture import PromptMixture
    from attemptctl.workflows.runs import vocab_prompt

    source = PromptMixture({task_name: vocab_prompt(backbone, m, seed)})
    sources = {f"random-{j}@1": vocab_prompt(backbone, m, seed + 1 + j) for j in range(N_SOURCES)}
    torch.manual_seed(seed)
    attempt = PromptMixture({task_name: vocab_prompt(backbone, m, seed)}, sources=sources,
                            attention=AttentionModule(backbone.d), variant="attempt")
    return source, attempt
