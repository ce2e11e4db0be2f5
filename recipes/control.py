"""The positive control of docs/results.md: a target whose task IS one of its sources.

    python recipes/control.py --data-dir DIR [--tasks sst2,qnli] [--steps 24] [--test-limit 200] [--settings v1,transfer]

For each task it trains a target over the zoo's label sources (MNLI, QQP, QNLI, SST-2) into a fresh
registry, twice: with the v1 recipe (target prompt from MNLI's, lr 0.3, G at 0.01), the defaults before
issue 28, and with the transfer recipe (target prompt from zeros trained slowly, lr 0.001, and G at 0.1). It prints, on the same test rows, the
source prompt's own score (the oracle), each run's score and the weight G puts on the oracle. ATTEMPT
passes when it keeps the oracle's score (within 3 points) and G puts at least 0.5 on it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCES = "mnli,qqp,qnli,sst2"
SETTINGS = {"v1": ["--recipe", "v1"], "transfer": ["--recipe", "transfer"],
            "transfer-lr1e-2": ["--recipe", "transfer", "--lr", "0.01"]}
"""The defaults before the transfer recipe (target from MNLI's prompt, lr 0.3, G at 0.01), the transfer
recipe (target from zeros at lr 0.001, G at 0.1), and a candidate: the transfer recipe with a ten times faster
target prompt (the defaults study's `defaults-transfer-lr1e-2`); the first two run unless --settings says."""


def _cli(*argv: str) -> str:
    done = subprocess.run([sys.executable, "-m", "attemptctl.cli", *map(str, argv)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"attemptctl {' '.join(map(str, argv))} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def oracle_score(registry: Path, data_dir: str, task: str) -> tuple[float, int]:
    """The source prompt alone on the target's test rows (the same split, seed and limit)."""
    from attemptctl.engine.evaluate import evaluate
    from attemptctl.tasks.metrics import primary_metric
    from attemptctl.workflows import payloads
    from attemptctl.workflows.workspace import Workspace, split_examples

    ws = Workspace(registry, Path(data_dir))
    target = ws.registry().get("target", task)
    spec, examples = split_examples(ws, target, "test", None)
    source = ws.registry().get("source", task)
    backbone = ws.load_backbone(source.backbone)
    result = evaluate(backbone, payloads.load_mixture(ws.registry(), [source], backbone), {task: examples},
                      {task: spec}, max_length=target.config.get("max_length"))[task]
    return result.metrics[primary_metric(spec)], len(examples)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--tasks", default="sst2,qnli")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--test-limit", type=int, default=200)
    parser.add_argument("--settings", default="v1,transfer", help=f"comma-separated, of {', '.join(SETTINGS)}")
    args = parser.parse_args(argv)
    settings = args.settings.split(",")
    if unknown := [name for name in settings if name not in SETTINGS]:
        parser.error(f"unknown setting {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    print("| target = source | setting | test rows | oracle alone | ATTEMPT | G on the oracle | passes |")
    print("|---|---|---:|---:|---:|---:|---|")
    for task in args.tasks.split(","):
        for setting in settings:
            options = SETTINGS[setting]
            registry = Path(tempfile.mkdtemp(prefix=f"control-{task}-"))
            common = ["--registry", registry, "--data-dir", args.data_dir]
            _cli("source", "pull", "--registry", registry)
            _cli("target", "train", task, "--sources", SOURCES, *common, *options, "--max-steps", args.steps,
                 "--test-limit", args.test_limit)
            shown = json.loads(_cli("attn", "show", task, *common, "--json"))
            weights = (shown[0] if isinstance(shown, list) else shown)["weights"]
            (row,) = json.loads(_cli("eval", task, *common, "--json"))
            oracle, rows = oracle_score(registry, args.data_dir, task)
            metric = next(iter(row["metrics"]))
            score, weight = row["metrics"][metric], weights[f"{task}@1"]
            passes = score >= oracle - 0.03 and weight >= 0.5
            print(f"| {task} | {setting} | {rows} | {100 * oracle:.1f} | {100 * score:.1f} | {weight:.2f} | "
                  f"{'yes' if passes else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
