"""`--device`, `--precision` and `--eval-batch-size`: the bf16 path on the CPU (autocast works there),
every tensor on the backbone's device, one backbone load per workspace, and CUDA runs skipped without
a GPU (the GPU recipe runs this file on the H200: docs/gpu.md)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from attemptctl.cli import app
from attemptctl.engine.evaluate import evaluate
from attemptctl.engine.train import TrainConfig, train
from attemptctl.errors import ConfigError
from attemptctl.method.backbones import load_backbone
from attemptctl.method.mixture import PromptMixture
from attemptctl.method.runtime import Runtime
from attemptctl.tasks import get_task
from attemptctl.workflows.runs import vocab_prompt
from attemptctl.workflows.workspace import Workspace

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TINY = ["--max-steps", "3", "--train-limit", "16", "--dev-limit", "8", "--test-limit", "8", "--batch-size", "4",
        "--max-length", "32", "--eval-every", "3", "--warmup-steps", "0"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def bf16(tiny_causal_dir):
    return load_backbone(str(tiny_causal_dir), device="cpu", precision="bf16")


def test_runtime_refuses_unknown_devices_and_precisions_in_one_line():
    with pytest.raises(ConfigError, match="unknown device 'gpu'; choose auto, cpu, cuda or cuda:N"):
        Runtime(device="gpu")
    with pytest.raises(ConfigError, match="unknown precision 'fp16'; choose one of fp32, tf32, bf16"):
        Runtime(precision="fp16")
    with pytest.raises(ConfigError, match="eval-batch-size must be at least 1"):
        Runtime(eval_batch_size=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_one_is_a_clear_error(tmp_path, real_data_dir):
    result = run("source", "train", "rte", "--registry", tmp_path / "reg", "--data-dir", real_data_dir,
                 "--device", "cuda", *TINY)
    assert result.exit_code == 1
    assert "--device cuda: this machine has no CUDA device torch can use" in result.output
    assert "use --device cpu or auto" in result.output
    assert not (tmp_path / "reg" / "blobs").exists() or not any((tmp_path / "reg" / "blobs").rglob("*.safetensors"))


def test_the_fingerprint_is_taken_before_any_cast(tiny_causal_dir, bf16):
    fp32 = load_backbone(str(tiny_causal_dir), device="cpu")
    assert bf16.fingerprint == fp32.fingerprint
    assert bf16.runtime.precision == "bf16" and bf16.model.dtype == torch.float32  # autocast, weights as loaded


def _rows(task: str, n: int):
    from attemptctl.tasks import Example

    labels = get_task(task).labels
    return [Example(task, f"{task} sentence1: w{i} w{i % 3} and more #{i}. sentence2: x{i}.", labels[i % 2], i % 2)
            for i in range(n)]


def test_bf16_trains_prompts_in_float32_and_its_lm_runs_in_bf16(bf16):
    """Under bf16 the LM's matrix products run in bfloat16 (its logits come out in bf16), while the
    prompt, its gradient and its optimizer state stay float32, and training moves the prompt."""
    seen = []
    hook = bf16.model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        start = vocab_prompt(bf16, 4, seed=0)
        mixture = PromptMixture({"rte": start})
        config = TrainConfig(prompt_length=4, batch_size=4, lr=0.3, max_steps=3, warmup_steps=0, eval_every=3)
        task = get_task("rte")
        result = train(bf16, mixture, {"rte": _rows("rte", 12)}, {"rte": _rows("rte", 4)}, {"rte": task}, config)
    finally:
        hook.remove()
    assert seen and set(seen) == {torch.bfloat16}
    state = result.state["prompts.0"]
    assert state.dtype == torch.float32 and torch.isfinite(state).all()
    assert not torch.equal(state, start)
    assert result.dev["rte"]["accuracy"] >= 0


def test_bf16_scores_stay_close_to_fp32(tiny_causal_dir, bf16):
    """The same prompt scored both ways: the ranks agree on (almost) every row, the logprobs closely."""
    fp32 = load_backbone(str(tiny_causal_dir), device="cpu")
    mixture = PromptMixture({"rte": vocab_prompt(fp32, 4, seed=1)})
    rows = _rows("rte", 16)
    a = evaluate(fp32, mixture, {"rte": rows}, {"rte": get_task("rte")}, max_length=32)["rte"]
    b = evaluate(bf16, mixture, {"rte": rows}, {"rte": get_task("rte")}, max_length=32)["rte"]
    agree = sum(x == y for x, y in zip(a.predictions, b.predictions))
    assert agree >= len(rows) - 2


def test_every_starting_prompt_is_made_on_the_cpu_and_the_mixture_follows_the_lm(bf16):
    """The CUDA crash: a vocabulary prompt made on the LM's device beside sources read on the CPU broke
    ``torch.cat``. Starts are made on the CPU; train/evaluate move the mixture as a whole."""
    start = vocab_prompt(bf16, 4, seed=0)
    assert start.device.type == "cpu" and start.dtype == torch.float32
    mixture = PromptMixture({"rte": start}, sources={"s@1": torch.randn(4, bf16.d)}, variant="uniform")
    devices = {t.device for t in [*mixture.parameters(), *mixture.buffers()]}
    assert devices == {torch.device("cpu")}
    evaluate(bf16, mixture, {"rte": _rows("rte", 2)}, {"rte": get_task("rte")}, max_length=16)
    assert {t.device for t in [*mixture.parameters(), *mixture.buffers()]} == {bf16.device}


def test_a_workspace_loads_its_backbone_once(tmp_path, tiny_causal_dir):
    ws = Workspace(tmp_path / "reg", runtime=Runtime(device="cpu", precision="bf16"))
    first = ws.load_backbone(str(tiny_causal_dir))
    assert ws.load_backbone(str(tiny_causal_dir)) is first
    assert first.runtime == ws.runtime


def test_bf16_cli_run_trains_evaluates_and_the_prompt_serves_fp32(tmp_path, real_data_dir, tiny_causal_dir):
    """A user's bf16 run end to end through the CLI: the prompt it registers is float32 and fp32
    evaluation serves it; --eval-batch-size is accepted by training and does not enter the record."""
    common = ["--registry", tmp_path / "reg", "--data-dir", real_data_dir]
    result = run("source", "train", "rte", *common, "--backbone", tiny_causal_dir, "--prompt-length", "4", *TINY,
                 "--device", "cpu", "--precision", "bf16", "--eval-batch-size", "3")
    assert result.exit_code == 0, result.output
    result = run("target", "train", "cb", "--sources", "rte", *common, *TINY, "--init", "vocab",
                 "--precision", "bf16")
    assert result.exit_code == 0, result.output
    result = run("eval", "cb", *common, "--json", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["prompt"].startswith("cb@") and 0 <= row["metrics"]["macro_f1"] <= 1
    from registry import Registry

    record = Registry(tmp_path / "reg").find("cb")
    assert "eval_batch_size" not in record.config and "precision" not in record.config


@CUDA
def test_cuda_target_training_with_a_vocabulary_start_and_the_attention_prior(tmp_path, real_data_dir, tiny_causal_dir):
    """On a GPU: `--init vocab` and `attn pretrain` (both made the CPU/GPU torch.cat crash), in bf16."""
    common = ["--registry", tmp_path / "reg", "--data-dir", real_data_dir, "--device", "cuda", "--precision", "bf16"]
    for task in ("rte", "mnli"):
        result = run("source", "train", task, *common, "--backbone", tiny_causal_dir, "--prompt-length", "4", *TINY)
        assert result.exit_code == 0, result.output
    result = run("attn", "pretrain", "--sources", "rte,mnli", *common, *TINY)
    assert result.exit_code == 0, result.output
    result = run("target", "train", "cb", "--sources", "rte,mnli", "--init", "vocab", "--attn-prior", "prior",
                 *common, *TINY)
    assert result.exit_code == 0, result.output
    result = run("eval", "cb", *common, "--json")
    assert result.exit_code == 0, result.output
    assert 0 <= json.loads(result.output)[0]["metrics"]["accuracy"] <= 1


@CUDA
def test_cuda_bf16_and_fp32_agree_on_a_prompt(tiny_causal_dir):
    fp32 = load_backbone(str(tiny_causal_dir), device="cuda", precision="fp32")
    bf16 = load_backbone(str(tiny_causal_dir), device="cuda", precision="bf16")
    assert fp32.fingerprint == bf16.fingerprint and fp32.device.type == "cuda"
    mixture = PromptMixture({"rte": vocab_prompt(fp32, 4, seed=1)})
    rows = _rows("rte", 16)
    a = evaluate(fp32, mixture, {"rte": rows}, {"rte": get_task("rte")}, max_length=32)["rte"]
    b = evaluate(bf16, mixture, {"rte": rows}, {"rte": get_task("rte")}, max_length=32)["rte"]
    assert sum(x == y for x, y in zip(a.predictions, b.predictions)) >= len(rows) - 2
