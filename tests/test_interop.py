"""PEFT prompt-tuning adapters in and out (issue 13), with the real ``peft`` package on tiny random Llama and T5.

The reference for every logit comparison is PEFT's own forward (``PeftModel``); ours is
:func:`attemptctl.method.lm.target_logits`. Both get the same token ids, taken from
:func:`attemptctl.method.lm.encode` (so a BOS added there reaches both), one unpadded row at a time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from typer.testing import CliRunner

from attemptctl.cli import app
from attemptctl.method import lm
from attemptctl.method.backbones import load_backbone
from attemptctl.workflows import payloads
from registry import Registry

peft = pytest.importorskip("peft")

runner = CliRunner()
M = 4
SMALL = ["--max-steps", "2", "--train-limit", "12", "--dev-limit", "6", "--test-limit", "6", "--batch-size", "4",
         "--max-length", "40", "--eval-every", "2"]
TEXTS = [("rte sentence1: A cat sat on the mat. sentence2: An animal sat.", "entailment"),
         ("rte sentence1: It rained all day in Paris. sentence2: Paris was dry.", "not_entailment")]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _tensor_sha(prompt: torch.Tensor) -> str:
    return hashlib.sha256(prompt.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def backbones(tiny_causal_dir, tiny_t5_dir):
    """Both tiny backbones, loaded once (on the CPU, where PEFT's copy lives too)."""
    return {"causal": load_backbone(str(tiny_causal_dir), device="cpu"),
            "t5": load_backbone(str(tiny_t5_dir), device="cpu")}


def _peft_reference(backbone_dir: Path):
    """The base model as a PEFT user loads it: a fresh, independent copy from the folder."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if AutoConfig.from_pretrained(backbone_dir).is_encoder_decoder else AutoModelForCausalLM
    return auto.from_pretrained(backbone_dir).eval()


def _rows(backbone) -> list[lm.Encoded]:
    return [lm.encode(backbone, text, target, max_length=64) for text, target in TEXTS]


def _ours(backbone, prompt: torch.Tensor, item: lm.Encoded) -> torch.Tensor:
    """attemptctl's logits (K, V) at the label positions: the prompt shared (m, d) and per row (1, m, d) agree."""
    batch = lm.collate(backbone, [item], [0])
    with torch.no_grad():
        shared = lm.target_logits(backbone, prompt, batch)[0]
        per_row = lm.target_logits(backbone, prompt.unsqueeze(0), batch)[0]
    torch.testing.assert_close(shared, per_row, rtol=1e-4, atol=1e-5)
    return per_row


def _peft_logits(peft_model, backbone, item: lm.Encoded) -> torch.Tensor:
    """PEFT's logits (K, V) for the same token ids, at the positions that predict each label token."""
    k = len(item.target_ids)
    with torch.no_grad():
        if backbone.is_encoder_decoder:
            out = peft_model(input_ids=torch.tensor([item.input_ids]), attention_mask=torch.ones(1, len(item.input_ids),
                             dtype=torch.long), labels=torch.tensor([item.target_ids]))
            return out.logits[0]
        ids = torch.tensor([item.input_ids + item.target_ids])
        logits = peft_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]  # (m + L, V)
    length = len(item.input_ids) + k
    return logits[M + length - k - 1: M + length - 1]  # position j predicts token j + 1


def _assert_same_logits(peft_model, backbone, prompt: torch.Tensor) -> None:
    for item in _rows(backbone):
        ours, theirs = _ours(backbone, prompt, item), _peft_logits(peft_model, backbone, item)
        assert ours.shape == theirs.shape and ours.shape[0] == len(item.target_ids)
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def _train_peft_adapter(backbone_dir: Path, backbone, folder: Path, steps: int = 3) -> torch.Tensor:
    """A PEFT prompt-tuning model trained for a few steps and saved with save_pretrained; returns its prompt."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    seq2seq = backbone.is_encoder_decoder
    config = PromptTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM,
                                num_virtual_tokens=M, num_transformer_submodules=1 if seq2seq else None)
    torch.manual_seed(0)
    model = get_peft_model(_peft_reference(backbone_dir), config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.3)
    start = model.get_prompt_embedding_to_save("default").detach().clone()
    for _ in range(steps):
        for item in _rows(backbone):
            if seq2seq:
                loss = model(input_ids=torch.tensor([item.input_ids]), labels=torch.tensor([item.target_ids])).loss
            else:
                ids = torch.tensor([item.input_ids + item.target_ids])
                labels = torch.tensor([[-100] * len(item.input_ids) + list(item.target_ids)])
                loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    trained = model.get_prompt_embedding_to_save("default").detach().clone()
    assert not torch.equal(start, trained)  # it really trained
    model.save_pretrained(folder)
    return trained


# -- in: PEFT adapters as sources ----------------------------------------------------------------

@pytest.mark.parametrize("family", ["causal", "t5"])
def test_imported_peft_prompt_gives_peft_logits(family, backbones, tiny_causal_dir, tiny_t5_dir, tmp_path):
    backbone_dir = tiny_t5_dir if family == "t5" else tiny_causal_dir
    backbone = backbones[family]
    adapter = tmp_path / "adapter"
    trained = _train_peft_adapter(backbone_dir, backbone, adapter)
    assert (adapter / "adapter_model.safetensors").is_file()

    registry_dir = tmp_path / "registry"
    result = run("source", "import", adapter, "--task", "mnli", "--registry", registry_dir, "--backbone", backbone_dir)
    assert result.exit_code == 0, result.output
    assert "registered source mnli@1" in result.output
    registry = Registry(registry_dir)
    record = registry.get("source", "mnli")
    assert record.config["origin"] == {"type": "imported", "from": str(adapter.resolve()), "format": "peft"}
    assert (record.kind, record.m, record.d, record.variant) == ("source", M, 64, "prompt-tuning")
    assert record.fingerprint == backbone.fingerprint
    prompt = payloads.load_prompt(registry, record, backbone)
    assert torch.equal(prompt, trained.float())

    from peft import PeftModel

    reference = PeftModel.from_pretrained(_peft_reference(backbone_dir), adapter).eval()
    _assert_same_logits(reference, backbone, prompt)
    item = _rows(backbone)[0]  # negative control: the comparison sees the prompt (its rows reordered differ)
    assert not torch.allclose(_ours(backbone, prompt.flip(0), item), _peft_logits(reference, backbone, item), atol=1e-3)


def test_import_name_and_listing(backbones, tiny_causal_dir, tmp_path):
    adapter = tmp_path / "adapter"
    _train_peft_adapter(tiny_causal_dir, backbones["causal"], adapter, steps=1)
    registry_dir = tmp_path / "registry"
    common = ["--registry", registry_dir, "--backbone", tiny_causal_dir]
    assert run("source", "import", adapter, "--task", "qqp", "--name", "qqp-peft", *common).exit_code == 0
    record = Registry(registry_dir).get("source", "qqp-peft")
    assert record.task == "qqp" and record.config["peft"]["num_virtual_tokens"] == M
    listed = run("registry", "list", "--registry", registry_dir)
    assert listed.exit_code == 0 and "qqp-peft@1" in listed.output
    assert record.config["labels"] == "words"  # what a PEFT adapter answers unless told otherwise
    assert run("source", "import", adapter, "--task", "qqp", "--name", "qqp-index", "--labels", "index",
               *common).exit_code == 0
    assert Registry(registry_dir).get("source", "qqp-index").config["labels"] == "index"
    refused = run("source", "import", adapter, "--task", "qqp", "--name", "qqp-x", "--labels", "digits", *common)
    assert refused.exit_code == 1 and "unknown labels 'digits'" in refused.output
    assert sorted(r.name for r in Registry(registry_dir).list(kind="source")) == ["qqp-index", "qqp-peft"]


# -- out: our prompts as PEFT adapters -----------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_data_dir, tiny_causal_dir, tiny_t5_dir):
    """Per family, a registry with sources mnli@1 and qqp@1, a pt target, a spot target and an attempt target."""
    worlds = {}
    for family, backbone_dir in (("causal", tiny_causal_dir), ("t5", tiny_t5_dir)):
        registry = tmp_path_factory.mktemp(f"interop-{family}") / "registry"
        common = ["--registry", registry, "--data-dir", real_data_dir]
        steps = [["source", "train", "mnli", "--backbone", backbone_dir, "--prompt-length", M],
                 ["source", "train", "qqp", "--prompt-length", M],
                 ["target", "train", "rte", "--variant", "pt", "--prompt-length", M],
                 ["target", "train", "cb", "--variant", "spot", "--init-from", "mnli"],
                 ["target", "train", "boolq", "--sources", "mnli,qqp"]]
        if family == "t5":
            steps = steps[:1] + steps[2:3]  # the T5 checks need one source and one pt target
        for step in steps:
            result = run(*step, *common, *SMALL)
            assert result.exit_code == 0, result.output
        worlds[family] = {"registry": registry, "common": common, "backbone_dir": backbone_dir}
    return worlds


def _export(world, ref: str, folder: Path, *extra):
    return run("registry", "export", ref, "--format", "peft", "--output", folder, "--registry", world["registry"], *extra)


@pytest.mark.parametrize("family,kind,ref", [("causal", "source", "mnli@1"), ("causal", "target", "rte@1"),
                                             ("causal", "target", "cb@1"), ("t5", "source", "mnli@1"),
                                             ("t5", "target", "rte@1")])
def test_exported_prompt_loads_in_peft_with_our_logits(trained, backbones, family, kind, ref, tmp_path):
    from peft import PeftConfig, PeftModel

    world, backbone = trained[family], backbones[family]
    folder = tmp_path / "exported"
    result = _export(world, ref, folder, "--kind", kind)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    config = PeftConfig.from_pretrained(folder)
    assert config.peft_type == "PROMPT_TUNING" and config.num_virtual_tokens == M and config.token_dim == 64
    assert config.task_type == ("SEQ_2_SEQ_LM" if family == "t5" else "CAUSAL_LM")
    assert config.base_model_name_or_path == str(Path(world["backbone_dir"]).resolve())

    registry = Registry(world["registry"])
    record = registry.get(kind, ref)
    prompt = payloads.load_prompt(registry, record, backbone)
    loaded = PeftModel.from_pretrained(_peft_reference(world["backbone_dir"]), folder).eval()
    assert torch.equal(loaded.get_prompt_embedding_to_save("default").float(), prompt)
    _assert_same_logits(loaded, backbone, prompt)


@pytest.mark.parametrize("ref", ["mnli@1", "rte@1"])
def test_round_trip_keeps_the_tensor_bit_for_bit(trained, ref, tmp_path):
    world = trained["causal"]
    kind = "source" if ref.startswith("mnli") else "target"
    folder = tmp_path / "out"
    assert _export(world, ref, folder, "--kind", kind).exit_code == 0
    registry_dir = tmp_path / "again"
    result = run("source", "import", folder, "--task", "mnli", "--registry", registry_dir,
                 "--backbone", world["backbone_dir"])
    assert result.exit_code == 0, result.output
    original_registry, again = Registry(world["registry"]), Registry(registry_dir)
    original, imported = original_registry.get(kind, ref), again.get("source", "mnli")
    backbone = load_backbone(str(world["backbone_dir"]), device="cpu")
    before = payloads.load_prompt(original_registry, original, backbone)
    after = payloads.load_prompt(again, imported, backbone)
    assert _tensor_sha(after) == _tensor_sha(before)
    assert imported.sha256 == original.sha256  # the stored payload is the same bytes too
    assert imported.config["origin"]["from"] == str(folder.resolve())


def test_export_refuses_mixing_targets_and_attention(trained, tmp_path):
    world = trained["causal"]
    for ref, extra, message in [("boolq@1", [], "has no input-independent prompt"),
                                (Registry(world["registry"]).get("target", "boolq").attention, ["--kind", "attention"],
                                 "is an attention module, not a prompt"),
                                ("mnli@1", ["--kind", "prompt"], "unknown prompt kind 'prompt'"),
                                ("mnli@1", ["--format", "onnx"], "unknown export format 'onnx'")]:
        folder = tmp_path / "nothing"
        result = run("registry", "export", ref, "--output", folder, "--registry", world["registry"], *extra)
        assert result.exit_code == 1, result.output
        assert message in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) <= 3  # one line (rich may wrap it)
        assert not folder.exists()
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    result = _export(world, "mnli@1", occupied)
    assert result.exit_code == 1 and "not an empty folder" in result.output
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _export(world, "mnli@1", empty).exit_code == 0 and (empty / "adapter_model.safetensors").is_file()


def test_export_needs_no_torch(trained, tmp_path):
    """Exporting rewrites stored bytes: it must not import torch (or transformers)."""
    world = trained["causal"]
    code = ("import sys; from typer.testing import CliRunner; from attemptctl.cli import app; "
            f"r = CliRunner().invoke(app, ['registry', 'export', 'mnli@1', '--kind', 'source', '--output', "
            f"{str(tmp_path / 'out')!r}, '--registry', {str(world['registry'])!r}]); "
            "assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


# -- an imported prompt as a source of ATTEMPT ----------------------------------------------------

def test_imported_prompt_is_mixed_by_target_train(trained, backbones, tiny_causal_dir, real_data_dir, tmp_path):
    world = trained["causal"]
    adapter = tmp_path / "adapter"
    _train_peft_adapter(tiny_causal_dir, backbones["causal"], adapter, steps=1)
    registry_dir = tmp_path / "registry"
    common = ["--registry", registry_dir, "--data-dir", real_data_dir]
    assert run("source", "import", adapter, "--task", "mnli", *common[:2], "--backbone", tiny_causal_dir).exit_code == 0
    assert _export(world, "qqp@1", tmp_path / "qqp", "--kind", "source").exit_code == 0
    assert run("source", "import", tmp_path / "qqp", "--task", "qqp", *common[:2]).exit_code == 0
    result = run("target", "train", "rte", "--sources", "mnli,qqp", "--init", "auto", *common, *SMALL)
    assert result.exit_code == 0, result.output
    registry = Registry(registry_dir)
    target = registry.get("target", "rte")
    assert target.sources == ("mnli@1", "qqp@1") and target.variant == "attempt"
    assert target.config["init"] == "source:mnli@1"  # the paper's init: from the (imported) MNLI prompt
    shown = run("attn", "show", "rte", *common, "--json")
    assert shown.exit_code == 0, shown.output
    [summary] = json.loads(shown.output)
    assert set(summary["weights"]) == {"mnli@1", "qqp@1", "(target)"}
    evaluated = run("eval", "rte", *common, "--json")
    assert evaluated.exit_code == 0 and json.loads(evaluated.output)[0]["examples"] == 6


# -- refusals: one line, exit 1, nothing registered ---------------------------------------------

def _adapter(folder: Path, config: dict | str | None, tensors: dict | None = None, *, bin_file: bool = False) -> Path:
    folder.mkdir(parents=True)
    if config is not None:
        text = config if isinstance(config, str) else json.dumps(config)
        (folder / "adapter_config.json").write_text(text, encoding="utf-8")
    if tensors is not None:
        save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    if bin_file:
        (folder / "adapter_model.bin").write_bytes(b"\x80\x04not really a pickle")
    return folder


def _prompt_tuning(**changes) -> dict:
    return {"peft_type": "PROMPT_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": M, "token_dim": 64,
            "num_transformer_submodules": 1, "base_model_name_or_path": "tiny", **changes}


def _embeddings(rows: int = M, width: int = 64) -> dict:
    return {"prompt_embeddings": np.random.default_rng(0).standard_normal((rows, width)).astype(np.float32)}


REFUSALS = {
    "lora": (dict(config={"peft_type": "LORA", "r": 8, "task_type": "CAUSAL_LM"},
                  tensors={"base_model.model.q_proj.lora_A.weight": np.zeros((8, 64), np.float32)}),
             "only prompt tuning"),
    "prefix": (dict(config=_prompt_tuning(peft_type="PREFIX_TUNING"), tensors=_embeddings()), "only prompt tuning"),
    "p-tuning": (dict(config=_prompt_tuning(peft_type="P_TUNING"), tensors=_embeddings()), "only prompt tuning"),
    "token_dim": (dict(config=_prompt_tuning(token_dim=32), tensors=_embeddings(width=32)),
                  "token_dim 32 is not the backbone's d=64"),
    "two submodules": (dict(config=_prompt_tuning(task_type="SEQ_2_SEQ_LM", num_transformer_submodules=2),
                            tensors=_embeddings(rows=2 * M)), "num_transformer_submodules 2"),
    "two submodules, implied": (dict(config=_prompt_tuning(task_type="SEQ_2_SEQ_LM", num_transformer_submodules=None),
                                     tensors=_embeddings(rows=2 * M)), "num_transformer_submodules 2"),
    "seq2seq on decoder-only": (dict(config=_prompt_tuning(task_type="SEQ_2_SEQ_LM"), tensors=_embeddings()),
                                "a SEQ_2_SEQ_LM adapter, but backbone"),
    "no config": (dict(config=None, tensors=_embeddings()), "adapter_config.json: missing"),
    "bad json": (dict(config='{"peft_type": "PROMPT_TUNING",', tensors=_embeddings()),
                 "adapter_config.json:1:31: not valid JSON"),
    "json list": (dict(config="[1, 2]", tensors=_embeddings()), "must hold a JSON object"),
    "no peft_type": (dict(config={"num_virtual_tokens": M}, tensors=_embeddings()), "no peft_type"),
    "bad m": (dict(config=_prompt_tuning(num_virtual_tokens="four"), tensors=_embeddings()),
              "num_virtual_tokens must be a positive integer"),
    "no weights": (dict(config=_prompt_tuning()), "adapter_model.safetensors: missing"),
    "pickle": (dict(config=_prompt_tuning(), bin_file=True), "adapter_model.bin: a pickled adapter"),
    "wrong key": (dict(config=_prompt_tuning(), tensors={"prompt": np.zeros((M, 64), np.float32)}),
                  "no 'prompt_embeddings' tensor"),
    "wrong rows": (dict(config=_prompt_tuning(), tensors=_embeddings(rows=M + 1)),
                   "has 5 rows but num_virtual_tokens is 4"),
    "nan": (dict(config=_prompt_tuning(), tensors={"prompt_embeddings": np.full((M, 64), np.nan, np.float32)}),
            "NaN or infinite"),
}


def _registry_state(path: Path) -> tuple:
    with sqlite3.connect(path / "catalog.sqlite") as db:
        rows = db.execute("SELECT kind, name, version, sha256 FROM prompts ORDER BY id").fetchall()
    return rows, sorted(str(p.relative_to(path)) for p in (path / "blobs").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def one_source(tmp_path_factory, tiny_causal_dir, backbones):
    """A registry holding one imported source, so 'unchanged' compares against something."""
    root = tmp_path_factory.mktemp("refusals")
    _train_peft_adapter(tiny_causal_dir, backbones["causal"], root / "good", steps=1)
    registry = root / "registry"
    assert run("source", "import", root / "good", "--task", "mnli", "--registry", registry,
               "--backbone", tiny_causal_dir).exit_code == 0
    return registry


@pytest.mark.parametrize("case", list(REFUSALS))
def test_import_refusals_are_one_line_and_register_nothing(case, one_source, tmp_path):
    spec, message = REFUSALS[case]
    folder = _adapter(tmp_path / "adapter", **spec)
    before = _registry_state(one_source)
    result = run("source", "import", folder, "--task", "rte", "--registry", one_source)
    assert result.exit_code == 1, result.output
    assert message in result.output, result.output
    assert result.output.startswith("error:") and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3  # one line (rich may wrap it)
    assert _registry_state(one_source) == before


def test_import_refuses_missing_folders_and_unreachable_hub(one_source, tmp_path):
    before = _registry_state(one_source)
    for source, message in [(tmp_path / "nowhere", "no such adapter folder"),
                            ("attemptctl-tests/no-such-adapter", "downloading it from the Hugging Face hub failed"),
                            (tmp_path, "adapter_config.json: missing")]:
        result = run("source", "import", source, "--task", "rte", "--registry", one_source)
        assert result.exit_code == 1 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) <= 3
    result = run("source", "import", tmp_path, "--task", "no-such-task", "--registry", one_source)
    assert result.exit_code == 1 and "no-such-task" in result.output
    assert _registry_state(one_source) == before
