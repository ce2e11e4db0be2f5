"""`attemptctl serve` (issue 32): every registered prompt behind one frozen backbone, over real HTTP.

A registry of real prompt files (random tensors, on the tiny Llama; a tiny T5 for the library checks):
sources (prompt tuning, one free-form), an ATTEMPT target with its G, a constant-attention target and two
versions of a PT target. Served answers are checked against ``predict`` (labels bit for bit, scores within
1e-5 of the offline scoring path); the server runs in a subprocess, started through the real CLI, and is
talked to with httpx.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from attemptctl.method import lm
from attemptctl.method.attention import AttentionModule
from attemptctl.method.backbones import load_backbone
from attemptctl.serving.server import open_service
from attemptctl.serving.service import BatchConfig
from attemptctl.workflows import payloads
from attemptctl.workflows.predict import predict
from attemptctl.workflows.workspace import Workspace
from registry import Registry, RegistryError

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parents[1]
M = 4

RTE = [{"sentence1": "A cat sat on the mat.", "sentence2": "An animal sat."},
       {"sentence1": "It rained all day in the town.", "sentence2": "The streets were dry."}]
CB = [{"premise": "Dana said the plan would work.", "hypothesis": "The plan works."}]
SST2 = [{"sentence": "a gorgeous, witty film"}, {"sentence": "dull and far too long"}]
BOOLQ = [{"question": "is the sky blue", "passage": "The sky is blue on a clear day."}]
SQUAD = [{"context": "Paris is the capital of France.", "question": "What is the capital of France?"}]
REQUESTS = [("rte", RTE), ("cb", CB), ("sst2", SST2), ("boolq@1", BOOLQ), ("boolq", BOOLQ), ("squad", SQUAD)]


def _register_all(path: Path, model_dir: Path) -> None:
    """Prompts of every kind the server handles, registered as training registers them."""
    backbone = load_backbone(str(model_dir))
    registry = Registry(path)
    torch.manual_seed(0)
    scale = backbone.model.get_input_embeddings().weight.std().item()
    common = {"backbone": str(model_dir), "fingerprint": backbone.fingerprint, "d": backbone.d,
              "config": {"max_length": 64}}

    def prompt(kind, name, task, m=M, **extra):
        tensor = torch.randn(m, backbone.d) * scale * 4
        return registry.register(kind=kind, name=name, task=task, m=m, payload=payloads.prompt_payload(tensor),
                                 metrics={"dev": {task: {"accuracy": 0.5}}}, **common, **extra)

    for name in ("mnli", "qqp", "sst2", "cola"):
        prompt("source", name, name, variant="prompt-tuning")
    prompt("source", "squad", "squad", variant="prompt-tuning")
    module = AttentionModule(backbone.d, rank=8)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, 0.5)
    attention = registry.register(kind="attention", name="rte", task="rte", m=0, variant="attempt",
                                  payload=payloads.attention_payload(module),
                                  **{**common, "config": {**common["config"], **payloads.attention_settings(module)}})
    prompt("target", "rte", "rte", variant="attempt", sources=("mnli", "qqp"), attention=attention.ref)
    prompt("target", "cb", "cb", variant="uniform", sources=("mnli", "qqp"))
    prompt("target", "boolq", "boolq", variant="pt")
    prompt("target", "boolq", "boolq", variant="spot", m=M + 2)  # another prompt length: its own pass
    registry.close()


@pytest.fixture(scope="module", params=["causal", "t5"])
def family_registry(request, tmp_path_factory):
    model_dir = request.getfixturevalue("tiny_causal_dir" if request.param == "causal" else "tiny_t5_dir")
    path = tmp_path_factory.mktemp(f"serve-{request.param}") / "registry"
    _register_all(path, model_dir)
    return path


@pytest.fixture(scope="module")
def served_registry(tmp_path_factory, tiny_causal_dir):
    path = tmp_path_factory.mktemp("serve-http") / "registry"
    _register_all(path, tiny_causal_dir)
    return path


def _offline_scores(ws: Workspace, ref: str, row: dict) -> list[float]:
    """What ``eval`` and ``predict`` rank by for one row alone: the prompt's own mixture, the plain path."""
    registry = ws.registry()
    record = registry.find(ref)
    from attemptctl.engine.evaluate import label_candidates
    from attemptctl.tasks import task_of

    task = task_of(record)
    backbone = ws.load_backbone(record.backbone)
    mixture = payloads.load_mixture(registry, [record], backbone).eval()
    text, cut = task.input_and_cut(row)
    item = lm.encode(backbone, text, None, record.config["max_length"], cut)
    batch = lm.collate(backbone, [item], [0])
    with torch.no_grad():
        prompt, _ = mixture(batch.task_ids, backbone.embed(batch.input_ids), batch.input_mask, share=True)
        [scores] = lm.label_scores(backbone, prompt, [item], [label_candidates(backbone, task)])
    return scores


def test_a_mixed_batch_answers_each_request_as_predict_does(family_registry):
    """Requests for six prompts (ATTEMPT, constant attention, PT of two lengths, sources, a free-form one) queued
    together run as one batch and get predict's labels bit for bit, its scores within 1e-5, its attention."""
    ws = Workspace(family_registry)
    service = open_service(ws, BatchConfig(max_batch=64, max_wait_ms=2000))
    try:
        futures = [(ref, rows, service.submit(ref, rows)) for ref, rows in REQUESTS]
        answered = [(ref, rows, record, future.result(60)) for ref, rows, (record, future) in futures]
        assert service.batcher.batches == 1
    finally:
        service.close()
    for ref, rows, record, answers in answered:
        expected = predict(ws, ref, rows)
        assert len(answers) == len(expected) == len(rows)
        for row, answer, offline in zip(rows, answers, expected):
            if record.task == "squad":
                assert answer.text == offline.prediction and answer.label is None
                continue
            assert answer.label == offline.prediction
            assert list(answer.scores.values()) == pytest.approx(_offline_scores(ws, record.ref, row), abs=1e-5)
            assert answer.label == max(answer.scores, key=answer.scores.get)
            if offline.attention is None:
                assert answer.attention is None
            else:
                assert answer.attention == pytest.approx(offline.attention, abs=1e-5)
    assert answered[4][2].ref == "boolq@2" and answered[3][2].ref == "boolq@1"


def test_prefix_of_a_fixed_prompt_is_computed_once_and_joined_per_row(tiny_causal_dir):
    """Rows behind cached prefixes of two prompts, joined, score as the plain path with each prompt in front."""
    backbone = load_backbone(str(tiny_causal_dir))
    torch.manual_seed(1)
    a, b = torch.randn(M, backbone.d), torch.randn(M, backbone.d)
    items = [lm.encode(backbone, text, None, 64) for text in ("one two three", "four", "five six")]
    candidates = [[(5, 2), (7, 9, 2)]] * 3
    prefix = lm.Prefix.join([lm.prompt_prefix(backbone, a[None]).rows(2), lm.prompt_prefix(backbone, b[None]).rows(1)])
    with torch.no_grad():
        cached = lm.label_scores(backbone, prefix, items, candidates)
        plain = lm.label_scores(backbone, torch.stack([a, a, b]), items, candidates)
    flat = itertools.chain.from_iterable
    assert list(flat(cached)) == pytest.approx(list(flat(plain)), abs=1e-5)


def test_the_served_registry_is_read_only(served_registry):
    registry = Registry(served_registry, read_only=True)
    before = (served_registry / "catalog.sqlite").read_bytes()
    with pytest.raises(RegistryError, match="read-only"):
        registry.remove("source", "cola")
    with pytest.raises(RegistryError, match="no registry at"):
        Registry(served_registry.parent / "missing", read_only=True)
    assert not (served_registry.parent / "missing").exists()
    assert (served_registry / "catalog.sqlite").read_bytes() == before


# -- over HTTP --------------------------------------------------------------------------------------------


class Server:
    """``attemptctl serve`` in a subprocess on a free port."""

    def __init__(self, registry: Path, *options: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "attemptctl", "serve", "--registry", str(registry), "--port", "0", *options],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        line = self.process.stdout.readline()
        match = re.search(r"at (http://\S+:\d+) ", line)
        if match is None:
            self.process.kill()
            raise AssertionError(f"no ready line: {line!r} {self.process.stderr.read()}")
        self.url = match.group(1)
        self.client = httpx.Client(base_url=self.url, timeout=120)

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> tuple[int, str, str]:
        self.process.send_signal(sig)
        out, err = self.process.communicate(timeout=timeout)
        self.client.close()
        return self.process.returncode, out, err


@pytest.fixture(scope="module")
def server(served_registry):
    running = Server(served_registry, "--max-wait-ms", "300")
    yield running
    if running.process.poll() is None:
        running.stop()


def test_health_and_the_prompt_list(server):
    health = server.client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["prompts"] == 9
    listed = {(p["kind"], p["ref"]): p for p in server.client.get("/v1/prompts").json()["prompts"]}
    rte = listed["target", "rte@1"]
    assert rte["variant"] == "attempt" and rte["sources"] == ["mnli@1", "qqp@1"] and rte["task"] == "rte"
    assert rte["labels"] == ["entailment", "not_entailment"] and rte["dev"] == {"accuracy": 0.5}
    assert listed["source", "squad@1"]["labels"] is None
    assert [listed["target", f"boolq@{v}"]["latest"] for v in (1, 2)] == [False, True]
    assert server.client.get("/docs").status_code == 200
    assert "/v1/predict" in server.client.get("/openapi.json").json()["paths"]


def test_concurrent_requests_for_mixed_prompts_share_batches_and_answer_as_alone(server):
    alone = {ref: server.client.post("/v1/predict", json={"prompt": ref, "inputs": rows}).json()
             for ref, rows in REQUESTS}
    batches = server.client.get("/health").json()["batches"]
    with ThreadPoolExecutor(len(REQUESTS)) as pool:
        together = list(pool.map(lambda r: server.client.post("/v1/predict", json={"prompt": r[0], "inputs": r[1]}),
                                 REQUESTS))
    assert server.client.get("/health").json()["batches"] - batches < len(REQUESTS)  # requests shared passes
    for (ref, _), response in zip(REQUESTS, together):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["prompt"] == alone[ref]["prompt"]
        for mixed, single in zip(body["predictions"], alone[ref]["predictions"]):
            assert mixed.keys() == single.keys()
            if "label" in mixed:
                assert mixed["label"] == single["label"]
                assert mixed["scores"] == pytest.approx(single["scores"], abs=1e-5)
            else:
                assert mixed["text"] == single["text"]
            if "attention" in mixed:
                assert mixed["attention"] == pytest.approx(single["attention"], abs=1e-5)
    assert set(alone["rte"]["predictions"][0]["attention"]) == {"mnli@1", "qqp@1", "(target)"}
    assert "attention" not in alone["sst2"]["predictions"][0]


@pytest.mark.parametrize("body,status,fragment", [
    ({"prompt": "nosuch", "inputs": SST2}, 404, "no prompt 'nosuch'"),
    ({"prompt": "sst2@9", "inputs": SST2}, 404, "no prompt 'sst2@9'"),
    ({"prompt": "sst2", "inputs": [{"text": "x"}]}, 422, "inputs[0]: missing field 'sentence'"),
    ({"prompt": "sst2", "inputs": [{"sentence": "x", "label": "1"}]}, 422, "inputs[0]: unknown field 'label'"),
    ({"prompt": "rte", "inputs": [RTE[0], {"sentence1": "a", "sentence2": 3}]}, 422,
     "inputs[1]: field 'sentence2' must be a string, got number"),
    ({"prompt": "sst2", "inputs": []}, 422, "inputs: empty list"),
    ({"prompt": "sst2", "inputs": [["a list"]]}, 422, "inputs[0]"),
    ({"prompt": "sst2"}, 422, "inputs: Field required"),
    ({"prompt": "sst2", "inputs": SST2, "extra": 1}, 422, "extra: unknown key"),
    ({"prompt": "bad@ref@", "inputs": SST2}, 422, "bad prompt reference"),
    ({"prompt": "sst2", "inputs": [{"sentence": "x"}] * 300}, 422, "at most 256"),
])
def test_bad_input_is_a_4xx_naming_the_problem_and_the_server_goes_on(server, body, status, fragment):
    response = server.client.post("/v1/predict", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    assert server.client.get("/health").status_code == 200


def test_malformed_json_and_an_oversized_body(server):
    response = server.client.post("/v1/predict", content=b'{"prompt": "sst2", "inputs": [',
                                  headers={"content-type": "application/json"})
    assert response.status_code == 400 and "malformed JSON" in response.json()["error"]
    form = server.client.post("/v1/predict", content=json.dumps({"prompt": "sst2", "inputs": SST2}),
                              headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and "content-type application/json" in form.json()["error"]
    huge = json.dumps({"prompt": "sst2", "inputs": [{"sentence": "x" * (2 << 20)}]})
    response = server.client.post("/v1/predict", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "over" in response.json()["error"]

    def chunks():  # no Content-Length: refused while it streams in
        yield b'{"prompt": "sst2", "inputs": [{"sentence": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}]}'

    response = server.client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert server.client.get("/v1/nothing").status_code == 404
    assert server.client.get("/v1/predict").status_code == 405
    assert server.client.get("/health").status_code == 200


def test_reload_picks_up_a_prompt_registered_since_start(server, served_registry):
    assert server.client.post("/v1/predict", json={"prompt": "sst2@2", "inputs": SST2}).status_code == 404
    registry = Registry(served_registry)
    first = registry.get("source", "sst2@1")
    registry.register(kind="source", name="sst2", task="sst2", backbone=first.backbone, fingerprint=first.fingerprint,
                      d=first.d, m=first.m, payload=payloads.prompt_payload(torch.randn(first.m, first.d)),
                      variant="prompt-tuning",
                      config=dict(first.config))
    reloaded = server.client.post("/v1/reload")
    assert reloaded.status_code == 200 and reloaded.json()["prompts"] == reloaded.json()["before"] + 1
    response = server.client.post("/v1/predict", json={"prompt": "sst2", "inputs": SST2})
    assert response.status_code == 200 and response.json()["prompt"] == "sst2@2"


def test_a_corrupt_blob_fails_its_prompt_with_a_500_naming_it_and_others_keep_serving(server, served_registry):
    record = Registry(served_registry).get("source", "cola")
    blob = served_registry / "blobs" / record.sha256[:2] / f"{record.sha256}.safetensors"
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    cola = {"prompt": "cola", "inputs": [{"sentence": "The book was read by me."}]}
    with ThreadPoolExecutor(2) as pool:  # in one batch with a healthy request
        broken, healthy = pool.map(lambda body: server.client.post("/v1/predict", json=body),
                                   [cola, {"prompt": "sst2@1", "inputs": SST2}])
    assert broken.status_code == 500 and str(blob) in broken.json()["error"] and "cola@1" in broken.json()["error"]
    assert healthy.status_code == 200
    assert server.client.post("/v1/predict", json=cola).status_code == 500  # read again, still corrupt
    assert server.client.post("/v1/predict", json={"prompt": "rte", "inputs": RTE}).status_code == 200
    assert hashlib.sha256(blob.read_bytes()).hexdigest() != record.sha256  # the server never repairs or writes


def test_sigterm_drains_the_request_in_flight_and_exits_0(served_registry):
    running = Server(served_registry, "--max-wait-ms", "2000")
    results = []
    sender = threading.Thread(target=lambda: results.append(
        running.client.post("/v1/predict", json={"prompt": "rte", "inputs": RTE})))
    sender.start()
    with httpx.Client(base_url=running.url) as probe:  # the request waits in the batcher for others to join
        while probe.get("/health").json()["pending"] == 0:
            time.sleep(0.02)
    code, out, err = running.stop(signal.SIGTERM)
    sender.join(30)
    assert code == 0, err
    assert "stopped" in out and "Traceback" not in err
    [response] = results
    assert response.status_code == 200 and len(response.json()["predictions"]) == 2


def test_without_the_extra_one_line_says_what_to_install(monkeypatch):
    from typer.testing import CliRunner

    from attemptctl.cli import app

    monkeypatch.setitem(sys.modules, "fastapi", None)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 1
    assert "pip install 'attemptctl[serve]'" in result.output and len(result.output.strip().splitlines()) == 1


def test_done_when_on_the_real_zoo(tmp_path, smollm2_dir):
    """A fresh registry, `source pull`, `attemptctl serve`: health, sst2 says positive, an unknown prompt is a 404
    naming it, a missing field a 422 naming the field."""
    from typer.testing import CliRunner

    from attemptctl.cli import app

    registry = tmp_path / "registry"
    assert CliRunner().invoke(app, ["source", "pull", "--registry", str(registry)]).exit_code == 0
    running = Server(registry)
    try:
        assert running.client.get("/health").json()["backbone"] == "smollm2-135m"
        response = running.client.post("/v1/predict", json={"prompt": "sst2",
                                                             "inputs": [{"sentence": "a gorgeous, witty film"}]})
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["label"] == "positive"
        unknown = running.client.post("/v1/predict", json={"prompt": "nosuch", "inputs": SST2})
        assert unknown.status_code == 404 and "'nosuch'" in unknown.json()["error"]
        missing = running.client.post("/v1/predict", json={"prompt": "sst2", "inputs": [{"text": "x"}]})
        assert missing.status_code == 422 and "'sentence'" in missing.json()["error"]
    finally:
        code, _, err = running.stop(signal.SIGINT)
    assert code == 0, err


def test_the_benchmark_runs_on_tiny_settings(tiny_causal_dir, monkeypatch):
    """benchmarks/serve.py end to end (both servers, every request answered); its timings are not checked."""
    pytest.importorskip("peft")
    monkeypatch.syspath_prepend(str(ROOT))  # benchmarks/ is not installed; it runs from a checkout
    import importlib

    bench = importlib.import_module("benchmarks.serve")
    result = bench.main(["--backbone", str(tiny_causal_dir), "--clients", "2", "--requests", "2", "--prompt-length",
                         str(M), "--rows", "2"])
    assert set(result["rows"]) == {"peft", "serve"}
    for row in result["rows"].values():
        assert row["requests"] == 4 and row["errors"] == 0 and row["requests_per_s"] > 0
        assert row["p99_ms"] >= row["p50_ms"] > 0
    assert result["goal"]["speedup"] > 0
