"""Serving throughput: `attemptctl serve` against one PEFT model per prompt answering one request at a time.

    python benchmarks/serve.py --clients 16 --requests 25 --json serve.json

Both servers run in their own process, one after the other, over the same HTTP stack (FastAPI on uvicorn)
and the same API, on the same backbone and prompts: ``--prompts`` source prompts (random vocabulary
prompts of ``--prompt-length``, registered in a fresh registry: speed does not depend on their values),
one per label task of :data:`TASKS`. ``--clients`` concurrent clients each send ``--requests`` requests of
``--rows`` input rows, to prompts drawn at random (seeded), each waiting for its answer before the next.

- ``peft``:  one ``PeftModel`` (``PromptTuningConfig``) per prompt, each on its own copy of the backbone;
             a lock lets one request run at a time; a request's rows and labels go through one forward
             pass of its prompt's model (rank classification, as attemptctl scores labels).
- ``serve``: ``attemptctl serve --max-batch --max-wait-ms``: requests for all prompts batched together,
             the prompts' keys and values cached.

Reported per server: requests/s over the whole run (after a warm-up request per prompt), p50 and p99
latency. The goal (issue 32): ``serve`` at least 3x the requests/s of ``peft`` at an equal or lower p99.
Needs the ``serve`` and ``bench`` extras (FastAPI, uvicorn, httpx; peft).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("sst2", "rte", "mnli", "qqp", "qnli", "cola", "mrpc", "boolq")
"""The label tasks the prompts are for, in order (``--prompts`` takes the first N)."""
TEXTS = ("a gorgeous, witty film that never lets up", "The committee met on Tuesday to discuss the budget.",
         "Is the museum open on public holidays?", "dull, long and far too pleased with itself",
         "A man is playing a guitar on the street corner while people walk by.", "The results were not significant.",
         "Scientists found water ice near the moon's south pole in 2009.", "Nobody expected the vote to pass.")
SERVERS = ("peft", "serve")
GOAL_SPEEDUP = 3.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="smollm2-135m", help="alias, local folder or hub id")
    p.add_argument("--prompts", type=int, default=4, help=f"prompts the requests spread over (4 to {len(TASKS)})")
    p.add_argument("--prompt-length", type=int, default=20, help="m (the zoo's: 20)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients")
    p.add_argument("--requests", type=int, default=25, help="requests per client")
    p.add_argument("--rows", type=int, default=1, help="input rows per request")
    p.add_argument("--max-batch", type=int, default=32, help="attemptctl serve --max-batch")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="attemptctl serve --max-wait-ms")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--only", default=",".join(SERVERS), help=f"comma-separated servers out of {','.join(SERVERS)}")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--peft-server", type=Path, metavar="REGISTRY", help=argparse.SUPPRESS)  # the baseline process
    opts = p.parse_args(argv)
    opts.only = [name.strip() for name in opts.only.split(",") if name.strip()]
    if set(opts.only) - set(SERVERS):
        p.error(f"--only: choose from {', '.join(SERVERS)}")
    if not 1 <= opts.prompts <= len(TASKS):
        p.error(f"--prompts must be between 1 and {len(TASKS)}")
    for name in ("prompt_length", "clients", "requests", "rows", "max_batch"):
        if getattr(opts, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return opts


# ---------------------------------------------------------------- the prompts and the requests

def prepare_registry(path: Path, opts) -> list[str]:
    """A fresh registry with one random vocabulary source prompt per task; the prompt names."""
    from attemptctl.method.backbones import load_backbone
    from attemptctl.workflows import payloads
    from attemptctl.workflows.runs import vocab_prompt
    from registry import Registry

    backbone = load_backbone(opts.backbone, device="cpu")
    registry = Registry(path)
    names = list(TASKS[:opts.prompts])
    for i, task in enumerate(names):
        prompt = vocab_prompt(backbone, opts.prompt_length, opts.seed + i)
        registry.register(kind="source", name=task, task=task, backbone=opts.backbone, fingerprint=backbone.fingerprint,
                          d=backbone.d, m=opts.prompt_length, payload=payloads.prompt_payload(prompt),
                          variant="prompt-tuning", config={"max_length": 128})
    registry.close()
    return names


def workload(names: Sequence[str], opts) -> tuple[list[dict], list[list[dict]]]:
    """A warm-up request per prompt, and each client's requests: a seeded draw of prompts, each with ``--rows``
    rows of its task's fields."""
    from attemptctl.tasks import get_task

    rng = random.Random(opts.seed)
    fields = {name: get_task(name).fields for name in names}

    def request(name: str) -> dict:
        rows = [{field: rng.choice(TEXTS) for field in fields[name]} for _ in range(opts.rows)]
        return {"prompt": name, "inputs": rows}

    warmup = [request(name) for name in names]
    return warmup, [[request(rng.choice(names)) for _ in range(opts.requests)] for _ in range(opts.clients)]


# ---------------------------------------------------------------- the servers

class Process:
    """A server in a subprocess; the first line it prints names its URL."""

    def __init__(self, command: list[str]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                        env=env)
        line = self.process.stdout.readline()
        match = re.search(r"(http://\S+:\d+)", line)
        if match is None:
            self.process.kill()
            raise RuntimeError(f"{' '.join(command[:4])}: no ready line: {line!r}\n{self.process.stderr.read()}")
        self.url = match.group(1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start(server: str, registry: Path, opts) -> Process:
    if server == "serve":
        return Process([sys.executable, "-m", "attemptctl", "serve", "--registry", str(registry), "--port", "0",
                        "--backbone", opts.backbone, "--device", "cpu", "--max-batch", str(opts.max_batch),
                        "--max-wait-ms", str(opts.max_wait_ms)])
    return Process([sys.executable, str(Path(__file__).resolve()), "--peft-server", str(registry),
                    "--backbone", opts.backbone])


def peft_server(registry_path: Path, opts) -> None:
    """The baseline: one PEFT model per registered prompt, one request at a time, same API."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from peft import set_peft_model_state_dict

    from attemptctl.engine.evaluate import label_candidates
    from attemptctl.method.backbones import load_backbone
    from attemptctl.tasks import task_of
    from attemptctl.workflows import payloads
    from benchmarks.runners import peft_model
    from registry import Registry

    backbone = load_backbone(opts.backbone, device="cpu")
    registry = Registry(registry_path, read_only=True)
    models, tasks = {}, {}
    for record in registry.list(kind="source"):
        model = peft_model(backbone, record.m, "cpu").eval()
        set_peft_model_state_dict(model, {"prompt_embeddings": payloads.load_prompt(registry, record, backbone)})
        models[record.name], tasks[record.name] = model, task_of(record)
    candidates = {name: label_candidates(backbone, task) for name, task in tasks.items()}
    lock = threading.Lock()
    app = FastAPI()

    @app.post("/v1/predict")
    def predict(body: dict) -> dict:
        name, task = body["prompt"], tasks[body["prompt"]]
        texts = [task.render_input(row) for row in body["inputs"]]
        with lock, torch.no_grad():
            scores = _peft_label_scores(backbone, models[name], texts, candidates[name])
        return {"prompt": name, "predictions": [{"label": task.labels[max(range(len(s)), key=s.__getitem__)],
                                                 "scores": dict(zip(task.labels, s))} for s in scores]}

    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(f"peft baseline at http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


def _peft_label_scores(backbone, model, texts: Sequence[str], candidates) -> list[list[float]]:
    """Summed log-probabilities of every (row, label) pair, "input label<eos>", in one forward pass."""
    import torch

    tok, m = backbone.tokenizer, model.peft_config["default"].num_virtual_tokens
    inputs = [tok(text, truncation=True, max_length=128)["input_ids"] for text in texts]
    pairs = [(ids, list(label)) for ids in inputs for label in candidates]
    width = max(len(ids) + len(label) for ids, label in pairs)
    ids = [a + b + [backbone.pad_id] * (width - len(a) - len(b)) for a, b in pairs]
    mask = [[1] * (len(a) + len(b)) + [0] * (width - len(a) - len(b)) for a, b in pairs]
    logits = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits[:, m:].float()
    logprobs = torch.log_softmax(logits, -1)
    totals = [sum(logprobs[k, len(a) - 1 + j, token].item() for j, token in enumerate(b))
              for k, (a, b) in enumerate(pairs)]
    n = len(candidates)
    return [totals[i * n:(i + 1) * n] for i in range(len(texts))]


# ---------------------------------------------------------------- the clients

def measure(url: str, warmup: list[dict], requests: list[list[dict]]) -> dict:
    """Warm every prompt up, then run the clients; requests/s, p50 and p99 latency (ms), errors."""
    import httpx

    with httpx.Client(base_url=url, timeout=600) as client:
        for body in warmup:
            client.post("/v1/predict", json=body).raise_for_status()

    def run_client(mine: list[dict]) -> tuple[list[float], int]:
        latencies, errors = [], 0
        with httpx.Client(base_url=url, timeout=600) as client:
            for body in mine:
                started = time.perf_counter()
                response = client.post("/v1/predict", json=body)
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200
        return latencies, errors

    started = time.perf_counter()
    with ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(run_client, requests))
    seconds = time.perf_counter() - started
    latencies = sorted(t for client, _ in results for t in client)
    return {"requests": len(latencies), "seconds": seconds, "requests_per_s": len(latencies) / seconds,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * _percentile(latencies, 0.99),
            "errors": sum(e for _, e in results)}


def _percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank percentile of sorted values."""
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


# ---------------------------------------------------------------- driver

def run_benchmark(opts) -> dict:
    rows = {}
    with tempfile.TemporaryDirectory(prefix="attemptctl-serve-bench-") as folder:
        registry = Path(folder) / "registry"
        warmup, requests = workload(prepare_registry(registry, opts), opts)
        for server in (s for s in SERVERS if s in opts.only):
            process = start(server, registry, opts)
            try:
                rows[server] = measure(process.url, warmup, requests)
            finally:
                process.stop()
    settings = {k: getattr(opts, k) for k in ("backbone", "prompts", "prompt_length", "clients", "requests", "rows",
                                               "max_batch", "max_wait_ms", "seed")}
    return {"settings": settings | {"cpus": os.cpu_count()}, "rows": rows, "goal": goal(rows)}


def goal(rows: dict) -> dict | None:
    if not {"peft", "serve"} <= set(rows):
        return None
    speedup = rows["serve"]["requests_per_s"] / rows["peft"]["requests_per_s"]
    met = speedup >= GOAL_SPEEDUP and rows["serve"]["p99_ms"] <= rows["peft"]["p99_ms"]
    return {"speedup": speedup, "p99_ratio": rows["serve"]["p99_ms"] / rows["peft"]["p99_ms"], "met": met}


def render(result: dict) -> str:
    """The markdown table docs/performance.md quotes."""
    lines = ["| server | requests/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|"]
    for name, row in result["rows"].items():
        lines.append(f"| {name} | {row['requests_per_s']:.1f} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | "
                     f"{row['errors']} |")
    if result["goal"] is not None:
        g = result["goal"]
        lines.append(f"\nserve / peft: {g['speedup']:.2f}x requests/s, p99 ratio {g['p99_ratio']:.2f} "
                     f"(goal: >= {GOAL_SPEEDUP:.0f}x at <= 1): {'met' if g['met'] else 'NOT met'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict | None:
    opts = parse_args(argv)
    if opts.peft_server is not None:
        sys.path.insert(0, str(ROOT))  # benchmarks.runners, from a checkout
        peft_server(opts.peft_server, opts)
        return None
    result = run_benchmark(opts)
    print(render(result))
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps({**result, "argv": list(argv or sys.argv[1:])}, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
