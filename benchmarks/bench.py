"""Speed of attemptctl side by side with PEFT prompt tuning, in one process on the same backbone and data.

    python benchmarks/bench.py --data-dir ../shared/data

``--device`` and ``--precision`` are attemptctl's own options; PEFT's rows run on the same device
under the same autocast. GPU sizes (the GPU recipe, docs/gpu.md): ``--batch-size 32 --prompt-length 100
--max-length 256``.

Rows (``--only`` takes a comma-separated subset of these names):

- ``peft-train``     PEFT prompt tuning (``PromptTuningConfig`` + ``get_peft_model``), a plain AdamW
                     loop over randomly shuffled batches padded to their longest row;
- ``peft-train-grouped``  the same PEFT model and loop, batches in the order of the Trainer's
                     ``group_by_length=True`` (transformers' LengthGroupedSampler). Training speed-ups
                     are stated against the faster of the two PEFT rows;
- ``source-train``   our source-prompt training: :func:`attemptctl.engine.train.train` on a
                     ``PromptMixture`` of variant ``prompt-tuning``;
- ``attempt-train``  our ATTEMPT target training over 4 frozen source prompts (vocabulary-sampled,
                     not trained: speed does not depend on their values) with the attention module G;
- ``peft-generate``  PEFT evaluation with ``model.generate`` (greedy): the evaluation anchor;
- ``rank-eval``      :func:`attemptctl.engine.evaluate.evaluate` with ``decode="rank"``;
- ``generate-eval``  :func:`attemptctl.engine.evaluate.evaluate` with ``decode="generate"``;
- ``help``           ``attemptctl --help`` in a subprocess (median of 5).

Training steps are timed between consecutive "step" events of ``train()`` (the loop itself:
collate, forward, backward, optimizer; on a GPU each event first waits for the device's queue, since
the loop itself no longer syncs every step); the first ``--warmup`` steps are dropped and the rest cut
into ``--repeats`` blocks of ``--steps`` steps, each block one repetition. Evaluation runs the
whole evaluation set once per repetition after one warm-up batch. Numbers are medians over
repetitions. Memory is the peak a row adds over what the process held when it started (CUDA:
``max_memory_allocated``; CPU: peak RSS, reset per row through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/bench.py` from a checkout
    sys.path.insert(0, str(ROOT))

# Imported after ROOT is on the path, so the script also runs from a plain checkout.
from benchmarks.measure import PeakMemory, blocks
from benchmarks.runners import (
    N_SOURCES,
    mixtures,
    our_eval_runs,
    our_train_steps,
    peft_generate_runs,
    peft_model,
    peft_train_steps,
)

PEFT_TRAIN_ROWS = ("peft-train", "peft-train-grouped")
TRAIN_ROWS = (*PEFT_TRAIN_ROWS, "source-train", "attempt-train")
EVAL_ROWS = ("peft-generate", "rank-eval", "generate-eval")
ROWS = (*TRAIN_ROWS, *EVAL_ROWS, "help")
BEST_PEFT_TRAIN = "the faster PEFT training row"
"""Anchor of every training goal and ratio: whichever of ``PEFT_TRAIN_ROWS`` ran faster."""
# (row, anchor, at least this many times the anchor's examples/s): the goals of issue 7, with
# training held against the best standard PEFT set-up (issue 13), not the weakest.
GOALS = (("source-train", BEST_PEFT_TRAIN, 2.5), ("attempt-train", BEST_PEFT_TRAIN, 1.3),
         ("rank-eval", "peft-generate", 5.0), ("rank-eval", "generate-eval", 5.0))
HELP_GOAL_S = 0.5


@dataclass
class Row:
    """One measured row; throughputs are medians over repetitions, None where not measured."""

    name: str
    what: str
    examples_per_s: float | None = None
    tokens_per_s: float | None = None
    seconds_per_step: float | None = None
    """Training: seconds per optimizer step. Evaluation: per batch. ``help``: per call."""
    peak_mib: float | None = None
    ratio: float | None = None
    """examples/s over the anchor's (training: the faster PEFT training row; evaluation: peft-generate)."""
    repeats: list[dict] = field(default_factory=list)
    error: str | None = None


def _summarise(row: Row, measured: Sequence[tuple[float, int, int | None]], units: int) -> Row:
    """Fill ``row`` from per-repetition (seconds, examples, tokens); ``units`` steps or batches per block."""
    row.repeats = [{"seconds": s, "examples": n, "tokens": t} for s, n, t in measured]
    row.examples_per_s = statistics.median(n / s for s, n, _ in measured)
    if all(t is not None for _, _, t in measured):
        row.tokens_per_s = statistics.median(t / s for s, _, t in measured)
    row.seconds_per_step = statistics.median(s / units for s, _, _ in measured)
    return row


def time_help(runs: int = 5) -> Row:
    """Median wall time of ``attemptctl --help`` in a fresh process."""
    beside = Path(sys.executable).with_name("attemptctl")  # the real console script, not a pyenv shim
    command = [str(beside)] if beside.exists() else [shutil.which("attemptctl") or ""]
    if not command[0]:
        command = [sys.executable, "-c", "from attemptctl.cli import main; main()"]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([*command, "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    row = Row("help", "attemptctl --help (subprocess)", seconds_per_step=statistics.median(times))
    row.repeats = [{"seconds": t} for t in times]
    return row


# ---------------------------------------------------------------- driver

def run_benchmark(opts) -> dict:
    """Run the selected rows; returns {"settings": …, "rows": [Row, …]} (also what --json writes)."""
    import torch

    from attemptctl.engine.evaluate import label_candidates
    from attemptctl.method.backbones import load_backbone
    from attemptctl.tasks import get_task
    from attemptctl.tasks.data import load_task

    selected = [name for name in ROWS if name in opts.only]
    task = get_task(opts.task)
    n_train = opts.batch_size * (opts.warmup + opts.steps * opts.repeats)
    splits = load_task(task, data_dir=opts.data_dir, seed=opts.seed, train_limit=n_train)
    eval_examples = (splits.dev + splits.test)[:opts.eval_examples]
    backbone = load_backbone(opts.backbone, device=opts.device, precision=opts.precision)
    device = backbone.device  # train() keeps it there (Accelerate runs on the CPU only when asked to)
    max_new_tokens = max(len(c) for c in label_candidates(backbone, task))  # the label and its EOS
    work = _row_work(backbone, task, splits.train, eval_examples, opts, device, max_new_tokens,
                     with_peft=bool({*PEFT_TRAIN_ROWS, "peft-generate"} & set(selected)))
    rows = []
    for name in selected:
        if name == "help":
            rows.append(time_help())
            continue
        rows.append(_measure_row(name, *work[name], opts, device))
        print(f"  {name}: done", file=sys.stderr, flush=True)
    _ratios(rows)
    import peft
    import transformers

    settings = {
        "backbone": opts.backbone, "task": task.name, "data": splits.source, "device": _device_name(device),
        "precision": opts.precision,
        "torch_threads": torch.get_num_threads(), "batch_size": opts.batch_size, "prompt_length": opts.prompt_length,
        "max_length": opts.max_length, "steps": opts.steps, "warmup": opts.warmup, "repeats": opts.repeats,
        "train_rows": len(splits.train), "eval_examples": len(eval_examples), "max_new_tokens": max_new_tokens,
        "seed": opts.seed, "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                        "peft": peft.__version__, "python": sys.version.split()[0]},
    }
    return {"settings": settings, "rows": rows}


def _device_name(device) -> str:
    """``cpu``, or ``cuda:0 (NVIDIA H200)``: a GPU row names its card."""
    import torch

    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)


def _row_work(backbone, task, train_rows, eval_rows, opts, device, max_new_tokens: int, *,
              with_peft: bool) -> dict[str, tuple[str, Callable]]:
    """row name -> (description, the work to measure). Models and prompts are built here, unmeasured."""
    source, attempt = mixtures(backbone, opts.prompt_length, opts.seed, task.name)
    # Before any row is measured, so PEFT's copy of the LM does not count as PEFT's peak memory.
    peft = peft_model(backbone, opts.prompt_length, device) if with_peft else None
    source.to(device)  # train() moves it itself; evaluate() expects it in place

    def ours_eval(decode: str) -> Callable:
        return lambda: our_eval_runs(backbone, source, task, eval_rows, opts, decode, max_new_tokens)

    return {
        "peft-train": ("PEFT prompt tuning, plain loop",
                       lambda: peft_train_steps(peft, backbone, train_rows, opts, device)),
        "peft-train-grouped": ("PEFT, batches grouped by length",
                               lambda: peft_train_steps(peft, backbone, train_rows, opts, device, grouped=True)),
        "source-train": ("ours: source prompt (train)",
                         lambda: our_train_steps(backbone, source, task, train_rows, opts, source=True)),
        "attempt-train": (f"ours: ATTEMPT target, {N_SOURCES} sources",
                          lambda: our_train_steps(backbone, attempt, task, train_rows, opts, source=False)),
        "peft-generate": ("PEFT model.generate (greedy)",
                          lambda: peft_generate_runs(peft, backbone, eval_rows, opts, device, max_new_tokens)),
        "rank-eval": ("ours: evaluate, rank classification", ours_eval("rank")),
        "generate-eval": ("ours: evaluate --decode generate", ours_eval("generate")),
    }


def _measure_row(name: str, what: str, work: Callable, opts, device) -> Row:
    row = Row(name, what)
    try:
        with PeakMemory(device) as memory:
            measured = work()
        row.peak_mib = memory.mib
        if name in TRAIN_ROWS:
            return _summarise(row, blocks(measured, opts.warmup, opts.steps), opts.steps)
        return _summarise(row, measured, math.ceil(measured[0][1] / opts.batch_size))
    except Exception as exc:  # noqa: BLE001  one broken row must not hide the others
        row.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        return row


def anchor_row(by_name: dict[str, Row], anchor: str) -> Row | None:
    """The measured row an anchor names; ``BEST_PEFT_TRAIN`` is the faster measured PEFT training row."""
    if anchor != BEST_PEFT_TRAIN:
        return by_name.get(anchor)
    measured = [by_name[name] for name in PEFT_TRAIN_ROWS if name in by_name and by_name[name].examples_per_s]
    return max(measured, key=lambda row: row.examples_per_s, default=None)


def _ratios(rows: list[Row]) -> None:
    by_name = {row.name: row for row in rows}
    for row in rows:
        anchor = anchor_row(by_name, BEST_PEFT_TRAIN if row.name in TRAIN_ROWS else "peft-generate")
        if row.name != "help" and anchor and anchor.examples_per_s and row.examples_per_s:
            row.ratio = row.examples_per_s / anchor.examples_per_s


def goals(rows: Sequence[Row]) -> list[dict]:
    """Issue 7's goals, each with the measured value and whether it is met (None: not measured)."""
    by_name = {row.name: row for row in rows}
    out = []
    for name, anchor, factor in GOALS:
        a, b = by_name.get(name), anchor_row(by_name, anchor)
        value = a.examples_per_s / b.examples_per_s if a and b and a.examples_per_s and b.examples_per_s else None
        against = anchor if b is None else (f"{b.name}, {anchor}" if anchor == BEST_PEFT_TRAIN else b.name)
        out.append({"goal": f"{name} >= {factor}x {against} (examples/s)", "value": value,
                    "met": None if value is None else value >= factor})
    if "help" in by_name:
        value = by_name["help"].seconds_per_step
        out.append({"goal": f"attemptctl --help < {HELP_GOAL_S} s", "value": value, "met": value < HELP_GOAL_S})
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(result: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=max(Console().width, 132))  # the table stays readable in logs
    s = result["settings"]
    title = (f"{s['backbone']} on {s['device']} ({s['torch_threads']} threads, {s.get('precision', 'fp32')}) · "
             f"{s['task']} · batch {s['batch_size']}"
             f" · m={s['prompt_length']} · max-length {s['max_length']} · {s['steps']} steps x {s['repeats']}"
             f" repeats after {s['warmup']} warm-up · {s['eval_examples']} eval examples")
    table = Table(title=title, title_justify="left")
    for header in ("row", "what", "examples/s", "tokens/s", "s/step", "peak MiB", "x PEFT"):
        table.add_column(header, justify="left" if header in ("row", "what") else "right")
    for row in result["rows"]:
        if row.error:
            table.add_row(row.name, row.what, f"[red]error: {row.error}[/]", "", "", "", "")
            continue
        table.add_row(row.name, row.what, _fmt(row.examples_per_s, ".2f"), _fmt(row.tokens_per_s, ".1f"),
                      _fmt(row.seconds_per_step, ".3f"), _fmt(row.peak_mib, ".0f"),
                      _fmt(row.ratio, ".2f") + ("x" if row.ratio is not None else ""))
    console.print(table)
    best = anchor_row({row.name: row for row in result["rows"] if not row.error}, BEST_PEFT_TRAIN)
    console.print("s/step: seconds per optimizer step (training), per batch (evaluation), per call (help). "
                  "Evaluation tokens are input tokens. x PEFT: training rows over the faster PEFT training row"
                  f"{f' ({best.name})' if best else ''}, evaluation rows over peft-generate.")
    for goal in result["goals"]:
        mark = {True: "[green]met[/]", False: "[red]not met[/]", None: "not measured"}[goal["met"]]
        value = "" if goal["value"] is None else f" ({goal['value']:.2f})"
        console.print(f"goal: {goal['goal']}{value}: {mark}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    default_data = os.environ.get("ATTEMPTCTL_DATA_DIR")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=default_data, help="local data directory (default: $ATTEMPTCTL_DATA_DIR, "
                   "else the Hugging Face hub)")
    p.add_argument("--backbone", default="smollm2-135m", help="alias, local folder or hub id")
    p.add_argument("--task", default="rte")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (as attemptctl's --device)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"),
                   help="as attemptctl's --precision; PEFT's rows run under the same autocast")
    p.add_argument("--steps", type=int, default=6, help="timed optimizer steps per repetition")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (evaluation: one batch)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--prompt-length", type=int, default=100)
    p.add_argument("--max-length", type=int, default=128, help="input tokens kept per example")
    p.add_argument("--eval-examples", type=int, default=32)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--only", default=",".join(ROWS), help=f"comma-separated rows out of {','.join(ROWS)}")
    p.add_argument("--json", type=Path, help="also write the results here")
    opts = p.parse_args(argv)
    opts.only = [name.strip() for name in opts.only.split(",") if name.strip()]
    unknown = sorted(set(opts.only) - set(ROWS))
    if unknown:
        p.error(f"unknown rows {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    for name in ("steps", "repeats", "batch_size", "prompt_length", "max_length", "eval_examples"):
        if getattr(opts, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if opts.warmup < 0:
        p.error("--warmup must not be negative")
    return opts


def main(argv: Sequence[str] | None = None) -> dict:
    """Run, print the table, write --json; returns the result (rows as :class:`Row`)."""
    opts = parse_args(argv)
    # Known, harmless notices of the libraries under test; they would bury the table.
    warnings.filterwarnings("ignore", message="Position ids are not supported")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    result = run_benchmark(opts)
    result["goals"] = goals(result["rows"])
    render(result)
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {**result, "rows": [asdict(row) for row in result["rows"]], "argv": list(argv or sys.argv[1:])}
        opts.json.write_text(json.dumps(payload, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
