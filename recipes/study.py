"""The recipe behind docs/results.md: does ATTEMPT beat prompt tuning on smollm2-135m?

Each part is one ``attemptctl study methods`` study over the zoo's sources, trained through the real
CLI into a build registry outside the checkout, one method on one target at a time (so that the
first targets show PT, SPoT and ATTEMPT side by side early), every finished cell exported as it
finishes to ``recipes/results/studies/<study>/<export>.json``.

    python recipes/study.py run main --data-dir DIR        # 6 targets x pt, spot, attempt, attempt-mt x 2 seeds
    python recipes/study.py run start-lr --data-dir DIR    # the same at lr 0.03 with --eval-start, RTE in MNLI's words
    python recipes/study.py run ablations --data-dir DIR   # rte, cb x attempt, no-target, uniform, single (lr 0.03)
    python recipes/study.py run few-shot --data-dir DIR    # cb, boolq x pt, spot, attempt at k = 4, 16, 32
    python recipes/study.py run budget --data-dir DIR      # rte, cb x pt, attempt at 4x the main study's steps
    python recipes/study.py run budget-lr --data-dir DIR   # rte, cb x pt, spot, attempt: start-lr at 4x the steps
    python recipes/study.py run index --data-dir DIR       # the main study, every task answering by label index
    python recipes/study.py run curves-300 --data-dir DIR  # yelp, imdb, rte x pt, spot, attempt: 300-step curves
    python recipes/study.py run main-v2 --seed 2 --build-registry DIR2 --data-dir DIR  # beside a --seed 1 run
    python recipes/study.py carry main-v2 --seed 1        # its unfinished ATTEMPT-MT run, to commit and continue
    python recipes/study.py status [PART]                  # cells done and left (committed exports), time left
    python recipes/study.py table PART                     # the part's Markdown table, from the exports
    python recipes/study.py curves PART [--png FILE]       # its learning curves (terminal drawing, PNG)
    python recipes/study.py baselines PART --data-dir DIR  # the best constant answer on the same test rows
    python recipes/study.py per-seed PART --data-dir DIR   # every cell's score seed by seed, each seed's constant
    python recipes/study.py docs --data-dir DIR            # rewrite docs/results.md's tables from the exports
    python recipes/study.py transfer --data-dir DIR        # each source prompt on each target, untrained
    python recipes/study.py power --data-dir DIR           # per target: test rows and the difference they can detect
    python recipes/study.py compare defaults               # the defaults' candidates side by side, against PT
    python recipes/study.py transfer --by-index --data-dir DIR  # the same, each source in its own label words
    python recipes/study.py transfer --by-index --split all --data-dir DIR  # on dev and test halves together
    python recipes/study.py transfer --labels index --prompts-from REG --data-dir DIR  # index prompts, index targets

Resumable across machines: a cell in any committed export is never trained again. A build registry
lost with its machine only loses the cell that was in training (``carry`` commits an unfinished multi-task
run's checkpoint, which ``run`` then continues on any machine); the next run writes a new export
next to the old ones, and ``attemptctl study show NAME --from A --from B`` joins them (checking the
equal budget across all of them), which is what ``table`` prints.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPORTS = ROOT / "recipes" / "results" / "studies"


def _build(study: str) -> Path:
    """Where a part's build registry is unless ``--build-registry`` says (read from HOME when asked)."""
    return Path.home() / ".cache" / "attemptctl" / "study-build" / study


ZOO_PINS = Path.home() / ".cache" / "attemptctl" / "zoo-pins"
"""Where the zoos that parts pin by commit are extracted (once each)."""
BACKBONE = "smollm2-135m"
SOURCES = "mnli,qqp,sst2"  # the zoo as shipped when the study started (QNLI under its floor, SQuAD untrained)
#: The budget every part builds on (chosen for the 2-core CPU: about 5 minutes per cell; see
#: docs/results.md). The main study (part start-lr), the ablations and the few-shot part add lr 0.03 and
#: --eval-start to it; the first parts (main, budget, index, borrowed) ran it as it stands, at lr 0.3.
BUDGET = {"--preset": "cpu", "--max-steps": 100, "--batch-size": 8, "--max-length": 128, "--warmup-steps": 10,
          "--train-limit": 10000, "--dev-limit": 100, "--eval-every": 50, "--test-limit": 1000, "--recipe": "v1",
          "--batching": "length"}
# Every part so far ran before the transfer recipe became the default: --recipe v1 keeps their mixing cells
# where they were (target from MNLI's prompt, lr 0.3 unless a part gives its own, G at 0.01), and before batches
# kept labels balanced: --batching length keeps their batches.
PARTS = {
    "main": {"study": "six-targets", "targets": ("rte", "mrpc", "cb", "boolq", "wic", "wsc"),
             "methods": ("pt", "spot", "attempt", "attempt-mt"), "seeds": (1, 2), "shots": (None,), "budget": BUDGET},
    # At the main study's settings (the start-lr part's: lr 0.03, the start on dev as a candidate, RTE in
    # MNLI's words), which replaced the first, lr-0.3 ablation plan before any of its cells ran.
    "ablations": {"study": "ablations-rte-cb-lr0.03", "targets": ("rte", "cb"),
                  "methods": ("attempt", "no-target", "uniform", "single"), "seeds": (1,), "shots": (None,),
                  "budget": {**BUDGET, "--lr": 0.03, "--eval-start": None}, "label_words": "rte=mnli"},
    # Is BUDGET too small to rank the methods? PT against ATTEMPT at 4x the steps (same rows per step).
    "budget": {"study": "budget-rte-cb", "targets": ("rte", "cb"), "methods": ("pt", "attempt"), "seeds": (1,),
               "shots": (None,), "budget": {**BUDGET, "--max-steps": 400, "--warmup-steps": 40, "--eval-every": 100}},
    # The main study's budget and methods with every task answering by label index (ATTEMPT's code), over
    # the index zoo's sources: does a shared answer space let the sources' knowledge through?
    "index": {"study": "six-targets-index", "targets": ("rte", "mrpc", "cb", "boolq", "wic", "wsc"),
              "methods": ("pt", "spot", "attempt", "attempt-mt"), "seeds": (1, 2), "shots": (None,), "budget": BUDGET,
              "labels": "index"},
    # The main study's budget with RTE and MRPC answering in the label words of the source whose knowledge
    # they need (docs/results.md: untrained, the MNLI prompt scores 61.2 on RTE in MNLI's words, 48.9 in
    # RTE's). CB needs no part of its own: its words are MNLI's.
    "borrowed": {"study": "borrowed-words-rte-mrpc", "targets": ("rte", "mrpc"), "methods": ("pt", "spot", "attempt"),
                 "seeds": (1, 2), "shots": (None,), "budget": BUDGET, "label_words": "mrpc=qqp,rte=mnli"},
    # Does target training keep what the source brings? The borrowed part's RTE cells with the start on dev
    # as a candidate (--eval-start), at the zoo's prompt rate and at a tenth of it.
    "start": {"study": "rte-start-lr0.3", "targets": ("rte",), "methods": ("spot", "attempt"), "seeds": (1,),
              "shots": (None,), "budget": {**BUDGET, "--eval-start": None}, "label_words": "rte=mnli"},
    # (CB, whose words are MNLI's, was added once RTE showed the lower rate keeping MNLI's knowledge; then the
    # other four targets and ATTEMPT-MT, which makes it the main study at this setting: its first 12 cells
    # are the RTE and CB probe's. MRPC keeps its own words: untrained, QQP's prompt scores 0 F1 on it in QQP's.)
    "start-lr": {"study": "rte-start-lr0.03", "targets": ("rte", "mrpc", "cb", "boolq", "wic", "wsc"),
                 "methods": ("pt", "spot", "attempt", "attempt-mt"), "seeds": (1, 2),
                 "shots": (None,), "budget": {**BUDGET, "--lr": 0.03, "--eval-start": None},
                 "label_words": "rte=mnli"},
    # ATTEMPT's start is P_target + the mix; with P_target at MNLI's prompt that is about twice MNLI's prompt.
    # From zeros, the start is the mix alone.
    "start-zeros": {"study": "rte-start-zeros", "targets": ("rte",), "methods": ("attempt",), "seeds": (1,),
                    "shots": (None,), "budget": {**BUDGET, "--eval-start": None, "--target-init": "zeros"},
                    "label_words": "rte=mnli"},
    # Is the main study's budget too small to rank the methods? Its settings at 4x the steps, with the whole
    # dev half as the dev check (100 rows chose among noise: 11 of 36 cells kept their start).
    "budget-lr": {"study": "budget-lr0.03-rte-cb", "targets": ("rte", "cb"), "methods": ("pt", "spot", "attempt"),
                  "seeds": (1, 2), "shots": (None,),
                  "budget": {**BUDGET, "--max-steps": 400, "--warmup-steps": 40, "--eval-every": 100,
                             "--dev-limit": 1000, "--lr": 0.03, "--eval-start": None},
                  "label_words": "rte=mnli"},
    # At the start-lr part's settings (lr 0.03, the start on dev as a candidate), the ones under which a
    # target keeps what its source brings; half its steps, since K rows per class are few.
    "few-shot": {"study": "few-shot-cb-boolq", "targets": ("cb", "boolq"), "methods": ("pt", "spot", "attempt"),
                 "seeds": (1, 2), "shots": (4, 16, 32),
                 "budget": {**BUDGET, "--max-steps": 50, "--eval-every": 25, "--lr": 0.03, "--eval-start": None}},
}
# The GPU recipe's studies (recipes/gpu/gpu.py trains them on a lent H200; `run` here would train them on
# the CPU at hours per cell): the start-lr part's settings at ten times its budget (250 steps of batch 32),
# all five zoo sources, the sentiment targets first. `table`, `baselines` and `per-seed` read them here.
GPU_BUDGET = {**BUDGET, "--max-steps": 250, "--batch-size": 32, "--warmup-steps": 25, "--lr": 0.03,
              "--eval-start": None}
GPU_TARGETS = ("yelp", "imdb", "rte", "mrpc", "cb", "boolq", "wic", "wsc")
for _part, _study, _methods, _extra in (
        ("gpu-main", "gpu-main", ("pt", "spot", "attempt", "attempt-mt"), {}),
        ("gpu-zeros-lr1e-2", "gpu-attempt-zeros-lr0.01", ("attempt",), {"--target-init": "zeros", "--lr": 0.01}),
        ("gpu-zeros-lr1e-3", "gpu-attempt-zeros-lr0.001", ("attempt",), {"--target-init": "zeros", "--lr": 0.001}),
        ("gpu-pt-lr3e-1", "gpu-pt-lr0.3", ("pt",), {"--lr": 0.3})):
    PARTS[_part] = {"study": _study, "targets": GPU_TARGETS, "methods": _methods, "seeds": (1, 2, 3), "shots": (None,),
                     "budget": {**GPU_BUDGET, **_extra}, "label_words": "rte=mnli", "gpu": True}
# Issue 28: which defaults keep what the sources know? `target train` exactly as a user runs it (the cpu
# preset, no other option) at the budget of that check (48 steps), on the sentiment targets and
# on CB, RTE and MRPC, over all five zoo sources; each part changes one setting of ATTEMPT's target
# prompt (where it starts, how fast it trains) against PT and SPoT at their defaults. Seeds 1 and 2.
DEFAULTS_BUDGET = {"--preset": "cpu", "--max-steps": 48, "--test-limit": 200, "--recipe": "v1", "--batching": "length"}
DEFAULTS_TARGETS = ("yelp", "imdb", "cb", "rte", "mrpc")
for _part, _methods, _extra in (
        ("defaults-pt", ("pt",), {}),
        ("defaults-attempt", ("attempt",), {}),  # today's defaults: target from MNLI's prompt, lr 0.3
        ("defaults-zeros-lr1e-2", ("attempt",), {"--target-init": "zeros", "--lr": 0.01}),
        ("defaults-zeros-lr1e-3", ("attempt",), {"--target-init": "zeros", "--lr": 0.001}),
        ("defaults-mnli-lr1e-2", ("attempt",), {"--lr": 0.01}),
        # the positive control's setting (recipes/control.py): a zero, slow target prompt, and G ten times faster
        ("defaults-zeros-lr1e-3-g1e-1", ("attempt",), {"--target-init": "zeros", "--lr": 0.001, "--attn-lr": 0.1}),
        # the control's setting, started from the source that alone scores best on the target's dev rows
        # (keeps MNLI's knowledge for CB, which the zero start lost: 46.8 against 55.0 on seed 1)
        ("defaults-best-lr1e-3-g1e-1", ("attempt",), {"--target-init": "best-source", "--lr": 0.001,
                                                      "--attn-lr": 0.1}),
        # the official code's G: its LayerNorm frozen (the v1 defaults otherwise)
        ("defaults-frozen-norm", ("attempt",), {"--attn-norm": "frozen"}),
        # the transfer recipe (the default since issue 28) with G's LayerNorm frozen, as the official code has it
        ("defaults-transfer-frozen-norm", ("attempt",), {"--recipe": "transfer", "--attn-norm": "frozen"}),
        # the target's weight in the mixture: the transfer recipe without a target prompt (weight 0, not 1 + a_t)
        ("defaults-transfer-no-target", ("no-target",), {"--recipe": "transfer"}),
        ("defaults-spot", ("spot",), {})):
    PARTS[_part] = {"study": _part, "targets": DEFAULTS_TARGETS, "methods": _methods, "seeds": (1, 2),
                    "shots": (None,), "budget": {**DEFAULTS_BUDGET, **_extra}, "sources": "mnli,qqp,qnli,sst2,squad"}
# Issue 29: the main study again, under the transfer recipe (the default since issue 28) and the held-out split
# protocol (dev held out of train, the whole validation split as test: twice the test rows wherever train can
# spare them), three seeds, the sentiment targets beside the paper's, a learning curve in every cell, at the
# largest budget the CPU allows (resumable: many sessions). The GPU recipe runs it at ten times the budget
# (`run --plan main`, study gpu-main-v2).
MAIN_BUDGET = {"--preset": "cpu", "--max-steps": 100, "--batch-size": 8, "--max-length": 128, "--warmup-steps": 10,
               "--train-limit": 10000, "--dev-limit": 200, "--eval-every": 25, "--test-limit": 1000,
               "--split-protocol": "heldout", "--recipe": "transfer", "--curve-steps": "0,25,50,100"}
# Its sources are the zoo as it shipped when the study began (pinned by commit: `run` pulls that zoo, not the
# package's), so sources retrained and shipped while it runs (issue 28) do not change its cells.
MAIN_ZOO = "055d243f69a0bfd8f0b3cb65c642faee77f4c7dd"
PARTS["main-v2"] = {"study": "main-v2", "targets": GPU_TARGETS, "methods": ("pt", "spot", "attempt", "attempt-mt"),
                    "seeds": (1, 2, 3), "shots": (None,), "budget": MAIN_BUDGET,
                    "sources": "mnli,qqp,qnli,sst2,squad", "zoo": MAIN_ZOO}
PARTS["gpu-main-v2"] = {**PARTS["main-v2"], "study": "gpu-main-v2", "gpu": True,
                        "budget": {**MAIN_BUDGET, "--max-steps": 250, "--batch-size": 32, "--warmup-steps": 25,
                                   "--eval-every": 50, "--curve-steps": "0,25,50,100,150,200,250"}}
# Issue 29's longer learning curves: the targets where issue 28 found learning (the sentiment targets, RTE), the
# single-target methods, three seeds, three times main-v2's steps, on the same rows; the dev check every 100 steps,
# each of them a curve step (so a cell's score is a point of its curve).
PARTS["curves-300"] = {**PARTS["main-v2"], "study": "curves-300", "targets": ("yelp", "imdb", "rte"),
                       "methods": ("pt", "spot", "attempt"),
                       "budget": {**MAIN_BUDGET, "--max-steps": 300, "--warmup-steps": 30, "--eval-every": 100,
                                  "--curve-steps": "0,25,100,200,300"}}
# Where no source helps (MRPC, WiC, WSC in main-v2), G settles on the transfer recipe's zero-started target prompt,
# which at lr 0.001 stays near 0: ATTEMPT cannot learn what PT learns. The transfer recipe with a target prompt ten
# times faster, over the zoo the other defaults parts mixed (they ran before any source was retrained).
PARTS["defaults-transfer-lr1e-2"] = {**PARTS["defaults-transfer-no-target"], "study": "defaults-transfer-lr1e-2",
                                     "methods": ("attempt",), "zoo": MAIN_ZOO,
                                     "budget": {**DEFAULTS_BUDGET, "--recipe": "transfer", "--lr": 0.01}}
METHOD_ORDER = ("pt", "spot", "attempt", "no-target", "uniform", "single")
"""Single-target methods, in the order each target trains them (attempt before the single that reads it)."""


def _flags(settings: dict) -> list[str]:
    """Command-line flags from ``{"--flag": value}``; a value of None is a switch given alone."""
    return [str(part) for key, value in settings.items() for part in ((key,) if value is None else (key, value))]


def _exports(study: str) -> list[Path]:
    return sorted((EXPORTS / study).glob("*.json"))


def _done(study: str) -> dict[tuple, dict]:
    """(method, target, seed, shots) -> the exported cell, over every committed export of the study."""
    cells = {}
    for path in _exports(study):
        for row in json.loads(path.read_text())["cells"]:
            cells[(row["method"], row["target"], row["seed"], row["shots"])] = row
    return cells


def _todo(part: dict) -> list[tuple]:
    """Every cell of the part, in training order: per shot count and seed, each target's single-target
    methods in turn, then the one multi-task run over all the targets."""
    cells = []
    for shots in part["shots"]:
        for seed in part["seeds"]:
            for target in part["targets"]:
                cells += [(m, target, seed, shots) for m in METHOD_ORDER if m in part["methods"]]
            if "attempt-mt" in part["methods"]:
                cells += [("attempt-mt", t, seed, shots) for t in part["targets"]]
    return cells


def _registry(study: str, build: str | None = None) -> tuple[Path, Path]:
    """This machine's build registry for the study (``build``, or one under ~/.cache) and the export it writes
    (named by a token kept in the registry, so a new registry never overwrites another's export: two runs of
    one part, each with its own --seed and --build-registry, train side by side)."""
    registry = Path(build) if build else _build(study)
    registry.mkdir(parents=True, exist_ok=True)
    token_file = registry / "export-token"
    if not token_file.exists():
        token_file.write_text(secrets.token_hex(4))
    return registry, EXPORTS / study / f"{token_file.read_text().strip()}.json"


def _attemptctl(*argv: str, echo: bool = True, columns: int | None = None) -> int:
    """Run the CLI; ``columns`` fixes the terminal width its tables are drawn for (the same text anywhere)."""
    if echo:
        print("$ attemptctl " + " ".join(argv), flush=True)
    env = None if columns is None else {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-m", "attemptctl.cli", *argv], check=False, env=env).returncode


def _cell_command(name: str, cell: tuple, registry: Path, export: Path, data_dir: str,
                  sources: str | None = None) -> list[str]:
    """The `attemptctl study methods` call that trains one cell of part ``name`` (attempt-mt: the one run
    over every target of the cell's seed and shot count), over ``sources`` (default: the part's, by name)."""
    part, (method, target, seed, shots) = PARTS[name], cell
    study, labels = part["study"], part.get("labels", "words")
    targets = part["targets"] if method == "attempt-mt" else (target,)
    extra = []
    if method == "single":  # the most attended source of the same seed's attempt cell, from any export
        attempt = _done(study).get(("attempt", target, seed, shots))
        if attempt is None:
            sys.exit(f"single on {target} needs the attempt cell of seed {seed} first")
        weights = {ref: w for ref, w in attempt["attention"].items() if ref != "(target)"}
        extra = ["--single-source", max(weights, key=weights.get).split("@")[0]]
    return ["study", "methods", ",".join(targets), "--name", study, "--methods", method, "--seeds", str(seed),
            *(["--shots", str(shots)] if shots else []), *extra,
            *([] if method == "pt" else ["--sources", sources or part.get("sources", SOURCES)]),
            *([] if labels == "words" else ["--labels", labels]),  # PT mixes no source to take it from
            *(["--label-words", part["label_words"]] if part.get("label_words") else []),
            "--registry", str(registry), "--data-dir", data_dir, "--backbone", BACKBONE,
            *_flags(part["budget"]), "--export", str(export), "--resume"]


def pinned_zoo(commit: str, into: Path) -> Path:
    """The zoo folder (``attemptctl/zoo``) as ``commit`` shipped it, extracted once under ``into`` from this
    checkout's history: what a part that pins its sources pulls."""
    into.mkdir(parents=True, exist_ok=True)
    folder = into / commit[:12]
    if (folder / "attemptctl" / "zoo").is_dir():
        return folder / "attemptctl" / "zoo"
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit, "attemptctl/zoo"],
                                 capture_output=True, check=False)
        why = archive.stderr.decode().strip()
    except FileNotFoundError:
        archive, why = None, "git is not installed"
    if archive is None or archive.returncode != 0:
        sys.exit(f"the zoo of commit {commit[:12]} cannot be read ({why}); "
                 "run the recipe from a git clone of attemptctl with its full history")
    staging = Path(tempfile.mkdtemp(dir=into, prefix=".zoo-"))
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(staging, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    try:
        staging.replace(folder)  # whole or not at all
    except OSError:  # another run (the other seed's) extracted it first: the same commit, the same files
        shutil.rmtree(staging)
    return folder / "attemptctl" / "zoo"


def _pull(registry: Path, labels: str, zoo: Path | None) -> dict[str, str]:
    """Register the zoo's sources into the build registry (the zoo at ``zoo``, or the package's): source name ->
    the exact version that holds the zoo's prompt."""
    argv = ["source", "pull", "--registry", str(registry), "--backbone", BACKBONE, "--labels", labels,
            *(["--zoo", str(zoo)] if zoo else []), "--json"]
    print("$ attemptctl " + " ".join(argv), flush=True)
    done = subprocess.run([sys.executable, "-m", "attemptctl.cli", *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        sys.exit(f"could not register the zoo's sources (labels {labels}); "
                 f"`python recipes/zoo.py train TASK --labels {labels}` trains them")
    pulled = json.loads(done.stdout)
    return {ref.split("@")[0]: ref for ref in [*pulled["added"], *pulled["present"]]}


CARRIED = ROOT / "recipes" / "results" / "study-resume"
"""Checkpoints of unfinished multi-task runs (a part's ATTEMPT-MT, longer than a machine may live), committed so
that the next machine continues them (`carry`)."""


def _mt_checkpoint(part: dict, registry: Path) -> Path:
    """Where the part's multi-task run checkpoints in ``registry`` (one run at a time per build registry)."""
    return registry / "checkpoints" / ("target-" + "+".join(part["targets"]) + ".safetensors")


def _carried(part: dict, seed: int, shots: int | None) -> Path:
    """Where `carry` keeps the multi-task run of ``seed`` (and ``shots``) in the checkout."""
    return CARRIED / part["study"] / (f"seed-{seed}" + ("" if shots is None else f"-shots-{shots}") + ".safetensors")


def carry(args) -> None:
    """Copy the part's unfinished multi-task run (of --seed) out of the build registry into the checkout, to
    commit: `run` with the same part and seed continues it on any machine whose build registry has none."""
    part = PARTS[args.part]
    if "attempt-mt" not in part["methods"]:
        sys.exit(f"{args.part} has no multi-task run to carry (its methods: {', '.join(part['methods'])})")
    if args.seed not in part["seeds"]:
        sys.exit(f"{args.part} has no seed {args.seed}; its seeds are {', '.join(map(str, part['seeds']))}")
    registry = Path(args.build_registry) if args.build_registry else _build(part["study"])
    carried_any = False
    for shots in part["shots"]:
        checkpoint, carried = _mt_checkpoint(part, registry), _carried(part, args.seed, shots)
        if checkpoint.exists():
            carried.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(checkpoint, carried)
            carried_any = True
            print(f"{checkpoint} -> {carried.relative_to(ROOT)} ({carried.stat().st_size:,} bytes); commit it")
    if not carried_any:
        sys.exit(f"{args.part}: no unfinished multi-task run of seed {args.seed} in {registry}; nothing to carry")


def _restore_carried(part: dict, cell: tuple, registry: Path) -> None:
    """Before the multi-task run of ``cell``: continue its carried checkpoint unless this registry has its own."""
    sys.path.insert(0, str(ROOT))
    from attemptctl.engine.checkpoints import adopt

    method, _, seed, shots = cell
    if method == "attempt-mt":
        checkpoint, carried = _mt_checkpoint(part, registry), _carried(part, seed, shots)
        if adopt(carried, checkpoint):
            print(f"continuing the committed checkpoint {carried.relative_to(ROOT)}", flush=True)


def _forget_carried(part: dict, cell: tuple) -> None:
    """A finished multi-task run's carried checkpoint is spent: its cells are in the export now."""
    method, _, seed, shots = cell
    if method == "attempt-mt":
        carried = _carried(part, seed, shots)
        if carried.exists():
            carried.unlink()
            print(f"{carried.relative_to(ROOT)} is spent (the run finished): commit its removal", flush=True)


def run(args) -> None:
    part = PARTS[args.part]
    study = part["study"]
    registry, export = _registry(study, args.build_registry)
    labels = part.get("labels", "words")
    zoo = pinned_zoo(part["zoo"], ZOO_PINS) if part.get("zoo") else None
    pulled = _pull(registry, labels, zoo)
    # A pinned zoo's prompts by exact version: a registry that also holds newer ones still mixes these.
    sources = ",".join(pulled[name] for name in part.get("sources", SOURCES).split(",")) if zoo else None
    wanted = [c for c in _todo(part) if args.seed is None or c[2] == args.seed]
    pending = [c for c in wanted if c not in _done(study)]
    while pending:
        command = _cell_command(args.part, pending[0], registry, export, args.data_dir, sources)
        _restore_carried(part, pending[0], registry)
        code = _attemptctl(*command)
        if code != 0:
            sys.exit(f"stopped (exit {code}); run the same command again to continue"
                     + (f", or `python recipes/study.py carry {args.part} --seed {pending[0][2]}` to continue it on "
                        "another machine" if pending[0][0] == "attempt-mt" else ""))
        left = [c for c in wanted if c not in _done(study)]
        if left and left[0] == pending[0]:
            sys.exit(f"{pending[0]} did not finish; see the output above")
        _forget_carried(part, pending[0])
        pending = left
    print(f"{args.part}: every cell is done; `python recipes/study.py table {args.part}` prints the table")


def _seconds(row: dict) -> float | None:
    """A finished cell's training and test time, as its export records it (older exports may not)."""
    if row.get("train_seconds") is None:
        return None
    return float(row["train_seconds"]) + float(row.get("eval_seconds") or 0.0)


def time_left(part: dict, done: dict[tuple, dict]) -> float | None:
    """Seconds the part's unfinished cells should take, at the pace of its finished ones on this machine kind:
    a cell takes what the same method took on the same target (mean over seeds), else what the target's other
    single-target cells took, else their mean over every target; the multi-task run, what it took before, else
    the sum of its targets' ATTEMPT cells. None when no finished cell recorded its time."""
    timed = {cell: seconds for cell, row in done.items() if (seconds := _seconds(row)) is not None}
    single = {cell: seconds for cell, seconds in timed.items() if cell[0] != "attempt-mt"}
    if not single:
        return None

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    def cell(method: str, target: str) -> float:
        return (mean([v for (m, t, _, _), v in single.items() if (m, t) == (method, target)])
                or mean([v for (_, t, _, _), v in single.items() if t == target])
                or mean(list(single.values())))

    # The multi-task run's cells all carry the run's time: one value per finished run.
    mt_runs = {(seed, shots): v for (m, _, seed, shots), v in timed.items() if m == "attempt-mt"}
    mt = mean(list(mt_runs.values())) or sum(cell("attempt", t) for t in part["targets"])
    left = [c for c in _todo(part) if c not in done]
    singles = sum(cell(method, target) for method, target, _, _ in left if method != "attempt-mt")
    return singles + mt * len({(seed, shots) for method, _, seed, shots in left if method == "attempt-mt"})


def status(args) -> None:
    for name in [args.part] if args.part else PARTS:
        part = PARTS[name]
        done = _done(part["study"])
        todo = _todo(part)
        left = [c for c in todo if c not in done]
        seconds = time_left(part, done) if left else None
        print(f"{name} ({part['study']}): {len(todo) - len(left)}/{len(todo)} cells done in "
              f"{len(_exports(part['study']))} export(s)" + (f"; next: {left[0]}" if left else "")
              + ("" if seconds is None else f"; about {_duration(seconds)} of training left at the pace of the "
                                            "cells done"))
        for carried in sorted((CARRIED / part["study"]).glob("*.safetensors")):
            print(f"  carried multi-task run {carried.relative_to(ROOT)}: {_carried_step(carried)}")


def _carried_step(path: Path) -> str:
    """Where a carried checkpoint stands ("step 300"), or why that cannot be read."""
    sys.path.insert(0, str(ROOT))
    from attemptctl.engine.checkpoints import load
    from attemptctl.errors import AttemptError

    try:
        return f"step {load(path).step}; `run` continues it"
    except AttemptError as exc:
        return f"unreadable ({exc})"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.0f} h"


def _targets_done(part: dict) -> list[str]:
    """The part's targets that have a finished cell, in the part's order: the table's columns and the
    constant-answer row's, whatever order the cells were trained in."""
    done = {target for _, target, _, _ in _done(part["study"])}
    return [t for t in part["targets"] if t in done]


def _show(name: str, *options: str, columns: int | None = None) -> int:
    """``attemptctl study show`` over every committed export of part ``name``, its targets in the part's order."""
    part = PARTS[name]
    study = part["study"]
    files = [arg for path in _exports(study) for arg in ("--from", str(path))]
    if not files:
        sys.exit(f"no export of {study} yet; `python recipes/study.py run {name} --data-dir DIR` makes them")
    return _attemptctl("study", "show", study, *files, "--targets", ",".join(_targets_done(part)), *options,
                       echo=False, columns=columns)


def table(args) -> None:
    sys.exit(_show(args.part, "--json" if args.json else "--markdown"))


CURVE_COLUMNS = 100
"""The terminal width the curves are drawn for in the docs: the same text on every machine."""


def curves(args) -> None:
    """The part's learning curves as `study show --curves` draws them (CURVE_COLUMNS wide), and with --png
    the plot."""
    sys.exit(_show(args.part, "--curves", *(["--png", str(args.png)] if args.png else []), columns=CURVE_COLUMNS))


def constant_answers(part: dict, data_dir: str) -> dict[str, list[float]]:
    """Per target and seed (in the part's seed order): the best score a constant answer gets on the
    cells' test rows (the same split and limit), in the target's primary metric: what "learned
    nothing" scores, to read the table against."""
    sys.path.insert(0, str(ROOT))
    from attemptctl.tasks import get_task
    from attemptctl.tasks.data import load_task
    from attemptctl.tasks.metrics import constant_answer, primary_metric

    limit = int(part["budget"]["--test-limit"])
    scores = {}
    for target in part["targets"]:
        task, metric, per_seed = get_task(target), primary_metric(get_task(target)), []
        for seed in part["seeds"]:
            rows = load_task(task, data_dir=data_dir, seed=seed, train_limit=1, test_limit=limit,
                             protocol=part["budget"].get("--split-protocol", "paper")).test
            per_seed.append(constant_answer(task, rows).metrics[metric])
        scores[target] = per_seed
    return scores


def _table_shape(part: dict) -> tuple[dict, list[int], list[str]]:
    """The part's finished cells, and the seeds and targets (in the part's order) the table has."""
    done = _done(part["study"])
    seeds = sorted({seed for _, _, seed, _ in done}) or list(part["seeds"])
    return done, seeds, _targets_done(part) or list(part["targets"])


def baselines(args) -> None:
    part = PARTS[args.part]
    _, seeds, targets = _table_shape(part)
    scores = constant_answers({**part, "seeds": tuple(seeds), "targets": tuple(targets)}, args.data_dir)
    means = [sum(v) / len(v) for v in scores.values()]
    print("| constant answer | 0 | " + " | ".join(f"{100 * v:.1f}" for v in means)
          + f" | {100 * sum(means) / len(means):.1f} |")


def per_seed(args) -> None:
    """Every cell's test score, seed by seed (``a / b``), per method and target, with the constant answer
    of each seed's split: the numbers behind the table's means (one row per method and shot count)."""
    sys.path.insert(0, str(ROOT))
    from attemptctl.studies.cells import METHODS  # the table's labels and order (no torch)

    part = PARTS[args.part]
    done, seeds, targets = _table_shape(part)
    print(f"| method (seed {' / '.join(map(str, seeds))}) | " + " | ".join(targets) + " |")
    print("|---|" + "---|" * len(targets))
    for shots in part["shots"]:
        for method in (m for m in METHODS if any(c[0] == m and c[3] == shots for c in done)):
            cells = [" / ".join(f"{100 * done[(method, t, s, shots)]['score']:.1f}" if (method, t, s, shots) in done
                                else "—" for s in seeds) for t in targets]
            print(f"| {METHODS[method][1]}" + (f" ({shots}-shot)" if shots else "") + " | " + " | ".join(cells) + " |")
    if args.data_dir:
        scores = constant_answers({**part, "seeds": tuple(seeds), "targets": tuple(targets)}, args.data_dir)
        print("| constant answer | " + " | ".join(" / ".join(f"{100 * v:.1f}" for v in scores[t]) for t in targets)
              + " |")


DOC_KINDS = ("results-table", "per-seed", "power", "compare", "headroom", "curves")
DOC_BLOCK = rf"<!-- ({'|'.join(DOC_KINDS)}): ([\w-]+) -->\n(.*?)<!-- /\1 -->"
"""A quoted table in docs/results.md: the recipe's output for a part, between two HTML comments."""


def curve_quote(name: str, printed: str) -> str:
    """A ``curves: PART`` quote: the terminal drawing as a text block, then the PNG that ``docs`` writes beside
    the page."""
    drawing = "\n".join(line.rstrip() for line in printed.strip().splitlines())  # no trailing blanks in the page
    return f"```text\n{drawing}\n```\n\n![Learning curves of {name}](img/curves-{name}.png)"


def _printed(*argv: str) -> str:
    """What this recipe prints for ``argv``; a failure stops with its last error line, nothing rewritten."""
    return _printed_by(Path(__file__).resolve(), *argv)


def _printed_by(script: Path, *argv: str) -> str:
    """What a recipe script prints for ``argv``; a failure stops with its last error line, nothing rewritten."""
    done = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[-1]
        sys.exit(f"`python recipes/{script.name} {' '.join(argv)}` failed: {reason}; nothing rewritten")
    return done.stdout.strip()


def docs(args) -> None:
    """Rewrite every quoted table of docs/results.md from the committed exports: ``results-table: PART``
    is ``table PART`` with ``baselines PART`` under its first table (unless its cells kept their test rows,
    whose constant-answer row the table has), ``per-seed: PART`` is ``per-seed PART``
    with each seed's constant answer, ``power: all`` is ``power``, ``compare: NAME`` is ``compare NAME``,
    ``headroom: NAME`` is ``recipes/headroom.py table NAME``, ``curves: PART`` is ``curves PART`` with its PNG
    written to docs/img/curves-PART.png. tests/test_results_doc.py checks the page against the same output."""
    page = ROOT / "docs" / "results.md"

    def block(match) -> str:
        kind, name = match.group(1), match.group(2)
        if kind == "power":  # ``power: all``: every target of POWER_TARGETS
            text = _printed("power", "--data-dir", args.data_dir)
        elif kind == "compare":
            text = _printed("compare", name)
        elif kind == "headroom":  # recipes/headroom.py's LoRA row
            text = _printed_by(ROOT / "recipes" / "headroom.py", "table", name)
        elif kind == "per-seed":
            text = _printed("per-seed", name, "--data-dir", args.data_dir)
        elif kind == "curves":  # the terminal drawing, and the PNG: put beside the page once every quote is made
            drawn = Path(staging) / f"curves-{name}.png"
            text = curve_quote(name, _printed("curves", name, "--png", str(drawn)))
            pngs[drawn] = page.parent / "img" / drawn.name
        else:
            lines = _printed("table", name).splitlines()
            end = next(i for i, line in enumerate(lines) if i and not line.startswith("|"))
            # cells that kept their test rows bring the constant answer's row; older exports get it from the data
            constant = [] if any(line.startswith("| constant answer |") for line in lines[:end]) else [
                _printed("baselines", name, "--data-dir", args.data_dir)]
            text = "\n".join([*lines[:end], *constant, *lines[end:]])
        return f"<!-- {kind}: {name} -->\n{text}\n<!-- /{kind} -->"

    before = page.read_text()
    quotes = list(re.finditer(DOC_BLOCK, before, flags=re.DOTALL))
    matched = {m.start() for m in quotes}
    for opening in re.finditer(rf"<!-- (?:{'|'.join(DOC_KINDS)}): ", before):
        if opening.start() not in matched:
            line = before.count("\n", 0, opening.start()) + 1
            sys.exit(f"{page.relative_to(ROOT)}:{line}: a quote must open with `<!-- KIND: PART -->` on a line of "
                     "its own and close with `<!-- /KIND -->`; nothing rewritten")
    unknown = sorted({m.group(2) for m in quotes if m.group(1) in ("results-table", "per-seed", "curves")} - set(PARTS))
    if unknown:
        sys.exit(f"{page.relative_to(ROOT)} quotes unknown part '{unknown[0]}'; parts: {', '.join(PARTS)}")
    pngs: dict[Path, Path] = {}
    with tempfile.TemporaryDirectory() as staging:
        after = re.sub(DOC_BLOCK, block, before, flags=re.DOTALL)
        for drawn, final in pngs.items():
            final.parent.mkdir(exist_ok=True)
            shutil.move(drawn, final)
    page.write_text(after)
    print(f"{page.relative_to(ROOT)}: {len(quotes)} tables, " + ("changed" if after != before else "unchanged"))


#: Parts compared side by side (``compare NAME``): each part's one method, on the same targets and seeds, against
#: the first part's PT cells. ``defaults``: issue 28's candidates for ATTEMPT's defaults.
COMPARISONS = {
    "defaults": ("defaults-pt", "defaults-attempt", "defaults-zeros-lr1e-2", "defaults-zeros-lr1e-3",
                 "defaults-mnli-lr1e-2", "defaults-zeros-lr1e-3-g1e-1", "defaults-best-lr1e-3-g1e-1",
                 "defaults-transfer-frozen-norm", "defaults-transfer-no-target", "defaults-transfer-lr1e-2"),
}


def _cells_of(part: str, method: str | None = None) -> dict[tuple[str, int], dict]:
    """(target, seed) -> the part's cell of ``method`` (None: the part's only method), from its committed exports
    (with the export's gold rows of the cell kept beside it when it kept its answers)."""
    methods = PARTS[part]["methods"]
    if method is None and len(methods) != 1:
        raise ValueError(f"part {part} trains {', '.join(methods)}: name the method whose cells to read")
    method = method or methods[0]
    cells = {}
    for path in _exports(PARTS[part]["study"]):
        doc = json.loads(path.read_text())
        for row in doc["cells"]:
            if row["method"] != method:
                continue
            gold = (doc.get("test_rows") or {}).get(row.get("test_rows") or "")
            cells[(row["target"], row["seed"])] = {**row, "gold": gold}
    return cells


def compare(args) -> None:
    """One row per part of a comparison: its mean test score per target over the seeds it has (their number
    in brackets where fewer than the part's), the average over targets where every target has a cell, and the
    difference from the first part's PT with its 95% paired bootstrap interval, pooled over the seeds where
    both cells kept their answers (their number in brackets where fewer; bold where it holds)."""
    sys.path.insert(0, str(ROOT))
    from attemptctl.studies.answers import decode, examples_of, row_ids
    from attemptctl.studies.intervals import SeedRows, averaged, paired_difference
    from attemptctl.tasks import get_task
    from attemptctl.tasks.metrics import primary_metric

    parts = COMPARISONS[args.name]
    targets = list(PARTS[parts[0]]["targets"])
    baseline = _cells_of(parts[0])
    print("| setting | " + " | ".join(targets) + " | avg | " + " | ".join(f"Δ {t}" for t in targets) + " | Δ avg |")
    print("|---|" + "---:|" * (2 * len(targets) + 2))
    for part in parts:
        cells, seeds = _cells_of(part), PARTS[part]["seeds"]
        means, differences = [], []
        for target in targets:
            task = get_task(target)
            scores = [cells[(target, s)]["score"] for s in seeds if (target, s) in cells]
            means.append((sum(scores) / len(scores), len(scores)) if scores else None)
            pairs = [SeedRows(decode(task, mine["predictions"]), decode(task, base["predictions"]),
                              examples_of(task, mine["gold"]), row_ids(mine["gold"]))
                     for s in seeds if part != parts[0]
                     for mine, base in [(cells.get((target, s)), baseline.get((target, s)))]
                     if mine and base and mine.get("test_rows") and mine["test_rows"] == base.get("test_rows")]
            differences.append(paired_difference(task, primary_metric(task), pairs) if pairs else None)
        average = sum(m[0] for m in means) / len(means) if all(means) else None
        intervals = [d and d.interval() for d in differences]
        intervals.append(averaged(differences).interval() if all(differences) else None)

        def score(mean) -> str:
            return "—" if mean is None else f"{100 * mean[0]:.1f}" + ("" if mean[1] == len(seeds) else f" ({mean[1]})")

        def shown(interval) -> str:
            if interval is None:
                return "—"
            text = interval.text() + (f" ({interval.seeds})" if interval.seeds < len(seeds) else "")
            return f"**{text}**" if interval.holds else text
        print(f"| {part} | " + " | ".join(map(score, means)) + " | " + ("—" if average is None else f"{100 * average:.1f}")
              + " | " + " | ".join(map(shown, intervals)) + " |")


POWER_TARGETS = ("yelp", "imdb", "rte", "mrpc", "cb", "boolq", "wic", "wsc")


def _discordance() -> dict[str, tuple[float, int]]:
    """Per target: the mean share of test rows on which PT and another method's cell of the same rows (any
    committed export, any study) answer differently, and how many such pairs there are."""
    cells: dict[str, list[tuple[str, str, str]]] = {}
    for path in sorted(EXPORTS.glob("*/*.json")):
        for row in json.loads(path.read_text())["cells"]:
            if row.get("test_rows") and isinstance(row.get("predictions"), str):
                cells.setdefault(row["test_rows"], []).append((row["method"], row["target"], row["predictions"]))
    shares: dict[str, list[float]] = {}
    for group in cells.values():
        baselines = {answers for method, _, answers in group if method == "pt"}
        for method, target, answers in group:
            if method != "pt":
                shares.setdefault(target, []).extend(
                    sum(a != b for a, b in zip(answers, base)) / len(base) for base in baselines)
    return {target: (sum(s) / len(s), len(s)) for target, s in shares.items() if s}


def power(args) -> None:
    """Per target: its test rows under each split protocol and the smallest accuracy difference they detect
    at 80% power (α 0.05): unpaired, and paired at the disagreement between PT and the other methods seen in
    the committed cells that kept their answers."""
    sys.path.insert(0, str(ROOT))
    from attemptctl.studies.intervals import detectable_difference
    from attemptctl.tasks import get_task
    from attemptctl.tasks.data import load_task
    from attemptctl.tasks.metrics import primary_metric

    seen = _discordance()
    print("| target | metric | test rows, paper | detectable, unpaired | test rows, heldout | detectable, unpaired "
          "| PT and another method disagree on | detectable, paired (heldout) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for target in args.targets.split(","):
        task = get_task(target)
        rows = {protocol: len(load_task(task, data_dir=args.data_dir, seed=1, train_limit=1, test_limit=args.test_limit,
                                        protocol=protocol).test) for protocol in ("paper", "heldout")}
        share, pairs = seen.get(target, (None, 0))
        paired = (f"{100 * share:.0f}% of rows ({pairs} pairs)", f"{100 * detectable_difference(rows['heldout'], discordant=share):.1f}") \
            if share is not None else ("—", "—")
        print(f"| {target} | {primary_metric(task)} | {rows['paper']} | {100 * detectable_difference(rows['paper']):.1f} "
              f"| {rows['heldout']} | {100 * detectable_difference(rows['heldout']):.1f} | {paired[0]} | {paired[1]} |")


def transfer(args) -> None:
    """What each prompt does on a target before any target training: every zoo source and an untrained
    vocabulary prompt scored on the target's test rows (seed 1 split, the study's input length), with
    the share of the most predicted label. A source whose knowledge transfers scores above the
    constant answer here; one that does not is no better a start than vocabulary.

    ``--by-index`` asks whether the label words are what stops it: each source prompt then answers in
    its own task's label words, read as the target label of the same Hugging Face index (QQP's
    ``duplicate`` as MRPC's ``equivalent``, MNLI's ``neutral`` as RTE's ``not_entailment``), which
    is the label space ATTEMPT's released code gives every task (labels as index digits).

    ``--labels index`` scores prompts trained to answer by index (the index zoo, or with
    ``--prompts-from`` a registry's sources of that format, such as a zoo build registry whose prompt
    missed its floor) on the targets answering by index."""
    sys.path.insert(0, str(ROOT))
    from collections import Counter
    from dataclasses import replace

    from attemptctl.engine.evaluate import evaluate
    from attemptctl.method.backbones import load_backbone
    from attemptctl.method.mixture import PromptMixture
    from attemptctl.tasks import get_task, labelled, labels_of
    from attemptctl.tasks.data import load_task
    from attemptctl.tasks.metrics import compute_metrics, primary_metric
    from attemptctl.workflows.payloads import load_prompt
    from attemptctl.workflows.runs import vocab_prompt
    from attemptctl.zoo import pull_zoo
    from registry import Registry

    if args.by_index and args.labels != "words":
        sys.exit("--by-index reads word-format prompts by index; leave out --labels")
    if args.prompts_from:
        registry = Registry(Path(args.prompts_from))
    else:
        registry = Registry(Path.home() / ".cache" / "attemptctl" / "study-build" / f"transfer-{args.labels}")
        pull_zoo(registry, BACKBONE, labels=args.labels)
    backbone = load_backbone(BACKBONE)
    m = int(BUDGET.get("--prompt-length", 20))
    prompts = {} if args.by_index else {"vocabulary (untrained)": (vocab_prompt(backbone, m, 1), None)}
    for record in registry.list(kind="source"):
        if labels_of(record) == args.labels:
            prompts[record.ref] = (load_prompt(registry, record, backbone), record.task)
    print(f"| target | prompt | answers in | {args.split} score | most predicted label (share) |")
    print("|---|---|---|---:|---|")
    for target in args.targets.split(","):
        task = labelled(get_task(target), args.labels)
        splits = load_task(task, data_dir=args.data_dir, seed=1, train_limit=1,
                           test_limit=int(BUDGET["--test-limit"]))
        rows = {"test": splits.test, "dev": splits.dev, "all": [*splits.dev, *splits.test]}[args.split]
        for name, (prompt, source) in prompts.items():
            words = task.labels
            if args.by_index:
                words = get_task(source).labels
                if not words or len(words) < len(task.labels):
                    continue  # no label of the same index for every target label
                words = words[:len(task.labels)]
            scored = replace(task, labels=words)
            result = evaluate(backbone, PromptMixture({target: prompt}), {target: rows}, {target: scored},
                              max_length=int(BUDGET["--max-length"]), batch_size=16)[target]
            predictions = [task.labels[words.index(p)] for p in result.predictions]
            score = compute_metrics(task, predictions, rows)[primary_metric(task)]
            label, count = Counter(predictions).most_common(1)[0]
            answers = "/".join(words) if args.by_index else f"{target}'s {'words' if args.labels == 'words' else 'indices'}"
            print(f"| {target} | {name} | {answers} | {100 * score:.1f} | {label} ({100 * count / len(rows):.0f}%) |",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train the part's unfinished cells")
    p.add_argument("part", choices=PARTS)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--seed", type=int, help="only this seed's cells (several parts can then go seed by seed)")
    p.add_argument("--build-registry", help="train in this registry [~/.cache/attemptctl/study-build/STUDY]; a "
                   "second run of the part beside the first (another --seed) needs its own")
    p = sub.add_parser("carry", help="the part's unfinished multi-task run into the checkout, to commit")
    p.add_argument("part", choices=PARTS)
    p.add_argument("--seed", type=int, required=True, help="the seed whose run to carry")
    p.add_argument("--build-registry", help="the registry it trains in [~/.cache/attemptctl/study-build/STUDY]")
    p = sub.add_parser("baselines", help="the best constant answer per target, as a table row")
    p.add_argument("part", choices=PARTS)
    p.add_argument("--data-dir", required=True)
    p = sub.add_parser("per-seed", help="each cell's test score, seed by seed, and each seed's constant answer")
    p.add_argument("part", choices=PARTS)
    p.add_argument("--data-dir", help="also print the constant answer of each seed's test rows")
    p = sub.add_parser("curves", help="the part's learning curves, drawn as in a terminal")
    p.add_argument("part", choices=PARTS)
    p.add_argument("--png", help="also write the plot to this PNG file (needs matplotlib)")
    p = sub.add_parser("docs", help="rewrite docs/results.md's quoted tables from the committed exports")
    p.add_argument("--data-dir", required=True)
    p = sub.add_parser("transfer", help="each zoo source (and a vocabulary prompt) scored on targets, untrained")
    p.add_argument("--targets", default="rte,mrpc,cb,wic,wsc")
    p.add_argument("--labels", choices=("words", "index"), default="words",
                   help="score prompts trained in this label format, the targets answering in it")
    p.add_argument("--prompts-from", help="a registry whose sources to score (default: the zoo of --labels)")
    p.add_argument("--by-index", action="store_true",
                   help="each source answers in its own label words, read as the target label of the same index")
    p.add_argument("--split", choices=("test", "dev", "all"), default="test",
                   help="the seed-1 split's test half (the cells' test rows), its dev half, or both")
    p.add_argument("--data-dir", required=True)
    p = sub.add_parser("compare", help="parts side by side: each one's scores and its paired difference from PT")
    p.add_argument("name", choices=COMPARISONS)
    p = sub.add_parser("power", help="per target: test rows per protocol and the smallest difference they detect")
    p.add_argument("--targets", default=",".join(POWER_TARGETS))
    p.add_argument("--test-limit", type=int, default=int(MAIN_BUDGET["--test-limit"]),
                   help="test rows kept at most (the main study's --test-limit)")
    p.add_argument("--data-dir", required=True)
    p = sub.add_parser("status", help="cells done and left")
    p.add_argument("part", nargs="?", choices=PARTS)
    p = sub.add_parser("table", help="the part's table from its exports")
    p.add_argument("part", choices=PARTS)
    p.add_argument("--json", action="store_true", help="the joined table as JSON instead of Markdown")
    args = parser.parse_args()
    {"run": run, "carry": carry, "status": status, "table": table, "baselines": baselines, "per-seed": per_seed,
     "docs": docs, "transfer": transfer, "power": power, "compare": compare, "curves": curves}[args.command](args)


if __name__ == "__main__":
    main()
