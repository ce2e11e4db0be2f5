"""The headroom row (issue 29): LoRA through PEFT on a study part's rows and budget, to tell what the backbone
can learn at that budget with far more trainable parameters than a prompt.

    python recipes/headroom.py run defaults --data-dir DIR [--seed 1] [--targets yelp,imdb]
    python recipes/headroom.py table defaults            # the LoRA row, from the committed results

A *headroom* part names a study part of ``recipes/study.py`` and takes its targets, seeds and budget: the
same preset, steps, batch, input length, training / dev / test rows and seed, so the rows are the very
rows that part's cells trained and were tested on. LoRA (rank ``--rank`` on the attention's query and
value projections, PEFT's ``inject_adapter_in_model``) trains on them with AdamW at ``--lr``, a linear
schedule after the part's warm-up, with labels balanced in length-grouped batches as ``target train`` has
them, and the best dev check kept. Test is scored as every cell is, by rank classification of the label
words (:func:`attemptctl.engine.evaluate.evaluate`, through a prompt of length 0). Each finished cell is
written to ``recipes/results/headroom/<part>.json`` at once, with its per-row answers, so that
``table`` pairs it with the part's PT cells (a paired bootstrap interval, as ``study show`` gives).

The LoRA settings are common ones (rank 8, alpha 16, lr 1e-3), not tuned here: the row says what LoRA
learns at this budget without a search, which is what each prompt method gets too. Needs ``peft`` (the
``bench`` extra). On SmolLM2 a LoRA step costs about what a prompt-tuning step does: both back-propagate
through every layer.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "recipes"))

import study  # noqa: E402  (recipes/study.py: the parts whose rows and budget this reuses)

RESULTS = ROOT / "recipes" / "results" / "headroom"
HEADROOM = {"defaults": "defaults-pt", "main-v2": "main-v2"}
"""Headroom part -> the study part whose targets, seeds and budget it takes (and whose PT cells it pairs with)."""
LORA = {"rank": 8, "alpha": 16, "dropout": 0.0, "lr": 1e-3}


def _budget(part: dict) -> dict:
    """The part's training settings as TrainConfig fields: its preset with its own flags over them."""
    from attemptctl.engine.train import make_config

    flags = {key.removeprefix("--").replace("-", "_"): value for key, value in part["budget"].items()
             if key not in ("--preset", "--recipe")}
    return make_config(part["budget"].get("--preset", "cpu"), **flags).to_dict()


def _lora_modules(model) -> list[str]:
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for pair in (("q_proj", "v_proj"), ("q", "v")):  # Llama-style decoders; T5
        if set(pair) <= names:
            return list(pair)
    raise SystemExit("no q_proj/v_proj (or T5's q/v) modules to put LoRA on in this backbone")


def train_cell(target: str, seed: int, part: dict, args) -> dict:
    """One LoRA cell: train on the part's rows, keep the best dev state, score test; its record."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import get_linear_schedule_with_warmup

    from attemptctl.engine.batching import label_groups, length_grouped_batches
    from attemptctl.engine.evaluate import evaluate
    from attemptctl.method import lm
    from attemptctl.method.backbones import load_backbone
    from attemptctl.method.mixture import PromptMixture
    from attemptctl.studies.answers import encode, gold_of, rows_digest
    from attemptctl.tasks import get_task
    from attemptctl.tasks.data import load_task
    from attemptctl.tasks.metrics import primary_metric

    config = _budget(part)
    torch.manual_seed(seed)
    backbone = load_backbone(args.backbone)
    model = backbone.model
    inject_adapter_in_model(LoraConfig(r=args.rank, lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                       target_modules=_lora_modules(model)), model)
    trained = [(name, p) for name, p in model.named_parameters() if "lora_" in name]
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    task = get_task(target)
    splits = load_task(task, data_dir=args.data_dir, seed=seed, train_limit=config["train_limit"],
                       dev_limit=config["dev_limit"], test_limit=config["test_limit"],
                       protocol=config["split_protocol"])
    max_length = config["max_length"] or task.max_length
    items = [lm.encode(backbone, e.input, e.target, max_length, e.cut) for e in splits.train]
    groups = label_groups([0] * len(items), [e.label for e in splits.train])
    empty = PromptMixture({target: torch.zeros(0, backbone.d)})  # no prompt: the LoRA'd LM alone
    optimizer = torch.optim.AdamW([p for _, p in trained], lr=args.lr, weight_decay=config["weight_decay"])
    total = config["max_steps"]
    scheduler = get_linear_schedule_with_warmup(optimizer, min(config["warmup_steps"], total), total)
    metric = primary_metric(task)

    def score(rows):
        model.eval()
        result = evaluate(backbone, empty, {target: rows}, {target: task}, max_length=max_length,
                          batch_size=max(config["batch_size"], 8))[target]
        return result

    best, best_state, best_step, history, step, epoch = -math.inf, None, 0, [], 0, 0
    started = time.perf_counter()
    while step < total:
        batches = length_grouped_batches([len(i) for i in items], config["batch_size"], shuffle=True,
                                         seed=seed + epoch, groups=groups)
        for indices in batches:
            model.train()
            batch = lm.collate(backbone, [items[i] for i in indices], [0] * len(indices))
            loss = lm.loss(backbone, torch.zeros(len(indices), 0, backbone.d, device=model.device), batch)  # no prompt
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % config["eval_every"] == 0 or step == total:
                dev = score(splits.dev).metrics[metric]
                history.append({"step": step, "dev": dev})
                print(f"{target} seed {seed} step {step}: loss {float(loss.detach()):.3f}, dev {metric} {100 * dev:.1f} "
                      f"on {len(splits.dev)} rows", flush=True)
                if dev > best:
                    best, best_step = dev, step
                    best_state = {name: p.detach().clone() for name, p in trained}
            if step >= total:
                break
        epoch += 1
    seconds = time.perf_counter() - started
    with torch.no_grad():
        for name, p in trained:
            p.copy_(best_state[name])
    result = score(splits.test)
    gold = gold_of(task, splits.test)
    return {"method": "lora", "target": target, "seed": seed, "metric": metric, "score": result.metrics[metric],
            "metrics": result.metrics, "params": sum(p.numel() for _, p in trained), "best_step": best_step,
            "steps": step, "history": history, "train_seconds": round(seconds, 1),
            "settings": {**LORA, "rank": args.rank, "lr": args.lr, "target_modules": _lora_modules(model)},
            "budget": {**{k: config[k] for k in ("max_steps", "batch_size", "max_length", "train_limit", "dev_limit",
                                                 "test_limit", "warmup_steps", "eval_every", "split_protocol")},
                       "batching": "label"},  # always label-balanced, whatever the part's cells used
            "test_rows": rows_digest(target, seed, splits.test, gold), "gold": gold,
            "predictions": encode(task, result.predictions)}


def _path(name: str) -> Path:
    return RESULTS / f"{name}.json"


def _load(name: str) -> dict:
    path = _path(name)
    return json.loads(path.read_text()) if path.exists() else {"headroom": name, "part": HEADROOM[name], "cells": []}


def run(args) -> None:
    part = study.PARTS[HEADROOM[args.name]]
    doc = _load(args.name)
    done = {(c["target"], c["seed"]) for c in doc["cells"]}
    targets = args.targets.split(",") if args.targets else part["targets"]
    seeds = [args.seed] if args.seed else part["seeds"]
    for seed in seeds:
        for target in targets:
            if (target, seed) in done:
                continue
            cell = train_cell(target, seed, part, args)
            doc["cells"].append(cell)
            RESULTS.mkdir(parents=True, exist_ok=True)
            temporary = _path(args.name).with_suffix(".tmp")
            temporary.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
            temporary.replace(_path(args.name))
            print(f"LoRA {target} seed {seed}: test {cell['metric']} {100 * cell['score']:.1f} "
                  f"({cell['params']:,} parameters, {cell['train_seconds']:.0f} s)", flush=True)


def table(args) -> None:
    """The LoRA row (mean over seeds; their number in brackets where fewer than the part's) and its difference
    from the part's PT cells of the same rows, with the paired bootstrap interval (bold where it holds)."""
    from attemptctl.studies.answers import decode, examples_of, row_ids
    from attemptctl.studies.intervals import SeedRows, paired_difference
    from attemptctl.tasks import get_task

    part = study.PARTS[HEADROOM[args.name]]
    cells = {(c["target"], c["seed"]): c for c in _load(args.name)["cells"]}
    if not cells:
        sys.exit(f"no LoRA cell of {args.name} yet; `python recipes/headroom.py run {args.name} --data-dir DIR` "
                 "trains them")
    pt = study._cells_of(HEADROOM[args.name], "pt")
    targets = [t for t in part["targets"] if any(t == target for target, _ in cells)]
    print("| row | params | " + " | ".join(targets) + " |")
    print("|---|---:|" + "---:|" * len(targets))
    scores, deltas = [], []
    for target in targets:
        task = get_task(target)
        mine = [cells[(target, s)] for s in part["seeds"] if (target, s) in cells]
        mean = sum(c["score"] for c in mine) / len(mine)
        scores.append(f"{100 * mean:.1f}" + ("" if len(mine) == len(part["seeds"]) else f" ({len(mine)})"))
        pairs = [SeedRows(decode(task, c["predictions"]), decode(task, pt[(target, c["seed"])]["predictions"]),
                          examples_of(task, c["gold"]), row_ids(c["gold"]))
                 for c in mine if pt.get((target, c["seed"]), {}).get("test_rows") == c["test_rows"]]
        if pairs:
            interval = paired_difference(task, mine[0]["metric"], pairs).interval()
            text = interval.text() + ("" if interval.seeds == len(part["seeds"]) else f" ({interval.seeds})")
            deltas.append(f"**{text}**" if interval.holds else text)
        else:
            deltas.append("—")
    first = next(iter(cells.values()))
    print(f"| LoRA (rank {first['settings']['rank']}) | {first['params']:,} | " + " | ".join(scores) + " |")
    print("| LoRA − PT | | " + " | ".join(deltas) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train the part's LoRA cells not yet in its results file")
    p.add_argument("name", choices=HEADROOM)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--seed", type=int, help="only this seed")
    p.add_argument("--targets", help="only these targets (comma-separated)")
    p.add_argument("--rank", type=int, default=LORA["rank"])
    p.add_argument("--lr", type=float, default=LORA["lr"])
    p.add_argument("--backbone", default=study.BACKBONE, help="the part's (the zoo's) by default")
    p = sub.add_parser("table", help="the LoRA row and its paired difference from PT")
    p.add_argument("name", choices=HEADROOM)
    args = parser.parse_args()
    {"run": run, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
