"""Shared fixtures: real data, the real SmolLM2 tokenizer, and tiny random models built from configs.

No downloads: the tokenizer comes from the SmolLM2 backbone the ``smollm2-135m`` alias converts
once (cached under ``$ATTEMPTCTL_CACHE``, default ``~/.cache/attemptctl``); tiny T5 and tiny
Llama models are created here from a config with random weights and saved as local model folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def empty_tasks_dir(tmp_path_factory) -> Iterator[Path]:
    """Custom tasks come from an empty folder, never the user's own (a task of theirs could shadow or
    break a look-up). Session-wide, so module-scoped fixtures and CLI subprocesses get it too; a test
    that needs custom tasks points ``$ATTEMPTCTL_TASKS_DIR`` elsewhere with ``monkeypatch``."""
    from attemptctl.tasks.custom import TASKS_DIR_ENV

    folder = tmp_path_factory.mktemp("no-custom-tasks")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TASKS_DIR_ENV, str(folder))
        yield folder


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """``../shared/data`` beside the repository (or ``$ATTEMPTCTL_TEST_DATA``)."""
    path = Path(os.environ.get("ATTEMPTCTL_TEST_DATA") or ROOT.parent / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"real benchmark data not found at {path} (set ATTEMPTCTL_TEST_DATA)")
    return path


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The converted SmolLM2-135M folder (converts the packaged GGUF on first use, ~30 s)."""
    from attemptctl.method.backbones import _materialise

    return Path(_materialise("smollm2-135m"))


def _save_tokenizer(smollm2_dir: Path, target: Path, *, pad_token: str | None = None) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    if pad_token:
        tokenizer.pad_token = pad_token
    tokenizer.save_pretrained(target)


@pytest.fixture(scope="session")
def tiny_causal_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer, d=64 Llama with random weights and SmolLM2's real tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    target = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(target)
    _save_tokenizer(smollm2_dir, target)
    return target


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A 2+2-layer, d=64 T5 with random weights; pad/decoder-start 0 and EOS 2 as in T5."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    target = tmp_path_factory.mktemp("tiny-t5")
    torch.manual_seed(0)
    config = T5Config(vocab_size=49152, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
                      num_heads=4, pad_token_id=0, eos_token_id=2, decoder_start_token_id=0)
    T5ForConditionalGeneration(config).save_pretrained(target)
    _save_tokenizer(smollm2_dir, target, pad_token="<|endoftext|>")
    return target


@pytest.fixture(params=["causal", "t5"])
def tiny_backbone_dir(request) -> Path:
    """Both model families, one test run each."""
    return request.getfixturevalue("tiny_causal_dir" if request.param == "causal" else "tiny_t5_dir")


@pytest.fixture(scope="session")
def accuracy_by_hand():
    """``accuracy_by_hand(registry, data_dir, ref, split="test")``: a registered prompt's accuracy counted
    by hand — its own mixture alone (no shared bank, no metrics module) predicts every example of the
    split as training saw it, and the hits are counted against the gold label words."""

    def compute(registry_path, data_dir, ref: str, split: str = "test") -> float:
        from attemptctl.engine.evaluate import evaluate
        from attemptctl.method.backbones import load_backbone
        from attemptctl.workflows import payloads
        from attemptctl.workflows.workspace import Workspace, split_examples

        ws = Workspace(Path(registry_path), Path(data_dir))
        registry = ws.registry()
        record = registry.find(ref)
        task, examples = split_examples(ws, record, split, None)
        backbone = load_backbone(record.backbone)
        mixture = payloads.load_mixture(registry, [record], backbone)
        predicted = evaluate(backbone, mixture, {record.name: examples}, {record.name: task},
                             max_length=record.config.get("max_length"), score=False)[record.name].predictions
        assert len(predicted) == len(examples) > 0
        return sum(p == e.target for p, e in zip(predicted, examples)) / len(examples)

    return compute
