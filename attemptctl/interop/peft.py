"""PEFT prompt-tuning adapters as source prompts, and our prompts as PEFT adapters.

Prompt tuning (Lester et al. 2021) as Hugging Face PEFT saves it (``PromptTuningConfig`` and
``save_pretrained``) is a folder holding

    adapter_config.json        {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": m, "token_dim": d,
                                "num_transformer_submodules": 1, "task_type": "CAUSAL_LM", ...}
    adapter_model.safetensors  prompt_embeddings: (m · num_transformer_submodules, d)

PEFT's prompt is exactly ours: m vectors prepended to the input embeddings (the encoder input of
an encoder-decoder model) with the attention mask extended by m ones. So a prompt crosses over
unchanged, bit for bit, and only the tensor's name and the config around it differ. A pickled
``adapter_model.bin`` is refused without being opened: unpickling can run code.

Import loads the backbone, to check d and to record its fingerprint like any trained source.
Export needs neither torch nor the backbone: the registry's bytes are rewritten under PEFT's name.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from attemptctl.errors import AttemptError, BackboneError, ConfigError, DataError
from attemptctl.method.backbones import OFFLINE_ALIASES, cache_dir
from attemptctl.method.variants import mixes_sources
from attemptctl.workflows.workspace import Workspace
from registry import PromptRecord

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_FILE = "adapter_model.bin"
PEFT_KEY = "prompt_embeddings"
PROMPT_TUNING = "PROMPT_TUNING"
TASK_TYPES = {"CAUSAL_LM": False, "SEQ_2_SEQ_LM": True}
"""PEFT task types that say the model family: task type -> is encoder-decoder."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class PeftAdapter:
    """A prompt-tuning adapter's config, checked on its own (not yet against a backbone)."""

    origin: str
    """The absolute folder, or the hub id the folder was downloaded from."""
    folder: Path
    m: int
    """``num_virtual_tokens``."""
    d: int | None
    """``token_dim`` (None where the config leaves it to the tensor)."""
    task_type: str | None
    base_model: str | None
    peft_version: str | None


@dataclass(frozen=True)
class ExportResult:
    """What ``registry export`` wrote: the record and the adapter folder."""

    record: PromptRecord
    folder: Path
    task_type: str


# -- in ---------------------------------------------------------------------------------------------

def import_peft(ws: Workspace, source: str, task_name: str, *, name: str | None = None,
                labels: str = "words") -> PromptRecord:
    """Register the PEFT prompt-tuning adapter ``source`` (folder or hub id) as a source prompt for ``task_name``.

    The record's ``config["origin"]`` is ``{"type": "imported", "from": origin, "format": "peft"}``;
    records without it were trained here.
    """
    from attemptctl.tasks import get_task, labelled
    from registry.records import check_name

    task = labelled(get_task(task_name), labels)  # an unknown format fails here, before anything is read
    check_name(name or task.name)
    adapter = read_adapter(source)
    prompt = read_prompt(adapter)
    registry = ws.registry()
    spec = ws.backbone_spec(registry)

    from attemptctl.workflows import payloads

    backbone = ws.load_backbone(spec)
    _check_backbone(adapter, prompt.shape[1], backbone)
    return registry.register(
        kind="source", name=name or task.name, task=task.name, backbone=spec, fingerprint=backbone.fingerprint,
        d=backbone.d, m=prompt.shape[0], payload=payloads.prompt_payload(prompt), variant="prompt-tuning",
        config={"labels": labels, "origin": {"type": "imported", "from": adapter.origin, "format": "peft"},
                "peft": {"base_model_name_or_path": adapter.base_model, "task_type": adapter.task_type,
                         "num_virtual_tokens": adapter.m, "peft_version": adapter.peft_version}},
        metrics={},
    )


def read_adapter(source: str) -> PeftAdapter:
    """The adapter folder ``source`` (or hub id), its config checked: prompt tuning, one submodule, a weights file."""
    folder, origin = locate(source)
    path = folder / CONFIG_FILE
    config = _read_config(path, origin)
    peft_type = config.get("peft_type")
    if peft_type is None:
        raise DataError(f"{path}: no peft_type; is {origin} a PEFT adapter folder (saved with save_pretrained)?")
    if peft_type != PROMPT_TUNING:
        raise ConfigError(f"{origin} is a {peft_type} adapter; only prompt tuning (peft_type {PROMPT_TUNING}) can "
                          "be mixed: it alone is a fixed prompt in front of the input")
    submodules = _int(config, "num_transformer_submodules", path, optional=True)
    if submodules not in (None, 1):
        _refuse_submodules(origin, submodules)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        if (folder / PICKLE_FILE).is_file():
            raise DataError(f"{folder / PICKLE_FILE}: a pickled adapter, which attemptctl never loads (unpickling can "
                            f"run code); convert it to {WEIGHTS_FILE}: load it with PeftModel.from_pretrained where you "
                            "trust it and save it with save_pretrained(DIR, safe_serialization=True)")
        raise DataError(f"{weights}: missing; a PEFT prompt-tuning adapter folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    task_type = config.get("task_type")
    return PeftAdapter(origin=origin, folder=folder, m=_int(config, "num_virtual_tokens", path),
                       d=_int(config, "token_dim", path, optional=True),
                       task_type=task_type if isinstance(task_type, str) else None,
                       base_model=_str_or_none(config.get("base_model_name_or_path")),
                       peft_version=_str_or_none(config.get("peft_version")))


def read_prompt(adapter: PeftAdapter):
    """The adapter's ``prompt_embeddings`` as a float32 (m, d) tensor, read with safetensors (never pickle)."""
    import torch
    from safetensors import SafetensorError, safe_open

    path = adapter.folder / WEIGHTS_FILE
    try:
        with safe_open(str(path), framework="pt") as tensors:
            keys = list(tensors.keys())
            if PEFT_KEY not in keys:
                raise DataError(f"{path}: no '{PEFT_KEY}' tensor (it holds {', '.join(keys[:5]) or 'nothing'}); "
                                "a prompt-tuning adapter saved by PEFT has one")
            prompt = tensors.get_tensor(PEFT_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable safetensors file ({reason}); save the adapter again") from None
    if prompt.dim() != 2 or not prompt.is_floating_point():
        raise DataError(f"{path}: '{PEFT_KEY}' is {prompt.dtype} of shape {tuple(prompt.shape)}; "
                        "expected a floating-point (num_virtual_tokens, token_dim) matrix")
    rows, width = prompt.shape
    if rows == 2 * adapter.m:
        _refuse_submodules(adapter.origin, 2)  # the config left the count to PEFT's seq2seq default
    if rows != adapter.m:
        raise DataError(f"{path}: '{PEFT_KEY}' has {rows} rows but num_virtual_tokens is {adapter.m}")
    if adapter.d is not None and width != adapter.d:
        raise DataError(f"{path}: '{PEFT_KEY}' is {width} wide but token_dim is {adapter.d}")
    if not bool(torch.isfinite(prompt).all()):
        raise DataError(f"{path}: '{PEFT_KEY}' holds NaN or infinite values; the adapter is broken")
    return prompt.float().contiguous()


def locate(source: str) -> tuple[Path, str]:
    """(folder, origin) of an adapter given as a local folder or, where the hub is reachable, a hub id."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve(), str(path.resolve())
    if path.exists():
        raise DataError(f"{path}: a file; give the adapter's folder, the one holding {CONFIG_FILE}")
    if not _HUB_ID.match(source):
        raise DataError(f"{source}: no such adapter folder; give the folder PEFT's save_pretrained wrote (it holds "
                        f"{CONFIG_FILE}) or a hub id such as owner/name")
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(source, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, PICKLE_FILE])
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, refused: one message for all of them
        if type(exc).__name__ in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
            reason = "the hub cannot be reached and the adapter is not in the local hub cache"
        else:
            reason = f"{type(exc).__name__}: " + (str(exc).strip().splitlines() or ["no message"])[0]
        raise DataError(f"{source}: no such folder, and downloading it from the Hugging Face hub failed "
                        f"({reason}); give a local adapter folder") from None
    return Path(folder), source


def _check_backbone(adapter: PeftAdapter, width: int, backbone) -> None:
    trained_on = f" (it was trained on {adapter.base_model}: --backbone {adapter.base_model})" if adapter.base_model else ""
    if width != backbone.d:
        raise BackboneError(f"{adapter.origin}: token_dim {width} is not the backbone's d={backbone.d} "
                            f"({backbone.name}); import it with the backbone it was trained on{trained_on}")
    encoder_decoder = TASK_TYPES.get(adapter.task_type or "")
    if encoder_decoder is not None and encoder_decoder != backbone.is_encoder_decoder:
        family = "encoder-decoder" if backbone.is_encoder_decoder else "decoder-only"
        raise BackboneError(f"{adapter.origin}: a {adapter.task_type} adapter, but backbone {backbone.name} is "
                            f"{family}; import it with the backbone it was trained on{trained_on}")


def _refuse_submodules(origin: str, submodules: int) -> NoReturn:
    raise ConfigError(f"{origin}: num_transformer_submodules {submodules} (a prompt for the encoder and one for the "
                      "decoder) is not supported; attemptctl supports 1, one prompt on the encoder input: train with "
                      "PromptTuningConfig(num_transformer_submodules=1)")


def _read_config(path: Path, origin: str) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: missing; is {origin} a PEFT adapter folder (saved with save_pretrained)?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(config, dict):
        raise DataError(f"{path}: must hold a JSON object, not {type(config).__name__}")
    return config


def _int(config: dict, key: str, path: Path, *, optional: bool = False) -> int | None:
    value = config.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{path}: {key} must be a positive integer, not {value!r}")
    return value


def _str_or_none(value) -> str | None:
    return value if isinstance(value, str) and value else None


# -- out --------------------------------------------------------------------------------------------

def export_peft(ws: Workspace, ref: str, output: Path, *, kind: str | None = None) -> ExportResult:
    """Write source or pt/spot target ``ref`` as a PEFT prompt-tuning adapter into the new folder ``output``.

    Targets that mix sources are refused: their prompt is made per input (or with the sources at
    run time), and a PEFT adapter holds one fixed prompt. Torch-free.
    """
    registry = ws.registry()
    record = registry.find(ref, kinds=(kind,) if kind else ("target", "source", "attention"))
    _check_exportable(record)
    output = Path(output).expanduser().resolve()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"{output} exists and is not an empty folder; give a new folder for the adapter")
    prompt = _stored_prompt(registry, record)
    task_type, base_model = _peft_backbone(record)
    config = {
        "peft_type": PROMPT_TUNING, "task_type": task_type, "base_model_name_or_path": base_model,
        "num_virtual_tokens": int(prompt.shape[0]), "token_dim": int(prompt.shape[1]),
        "num_transformer_submodules": 1, "inference_mode": True, "prompt_tuning_init": "RANDOM",
        # Left for PEFT to fill in from the base model, as it does for a fresh config.
        "num_attention_heads": None, "num_layers": None, "revision": None, "auto_mapping": None,
        "prompt_tuning_init_text": None, "tokenizer_name_or_path": None,
    }
    _write_adapter(output, config, prompt, {"format": "pt", "attemptctl_prompt": f"{record.kind} {record.ref}",
                                            "attemptctl_backbone": record.backbone})
    return ExportResult(record=record, folder=output, task_type=task_type)


def _check_exportable(record: PromptRecord) -> None:
    fix = "export its sources, or train a pt or spot target (`target train TASK --variant pt`)"
    if record.kind == "attention":
        raise ConfigError(f"{record.label} is an attention module, not a prompt; export a source or a pt or spot target")
    if record.kind != "target" or not mixes_sources(record.variant):
        return
    if record.variant == "uniform":
        raise ConfigError(f"{record.label} (variant uniform) is not one stored prompt: its prompt is added to the "
                          f"mean of its sources' prompts at run time, and a PEFT adapter holds one stored prompt; {fix}")
    raise ConfigError(f"{record.label} (variant {record.variant}) has no input-independent prompt: attention G mixes "
                      f"its sources differently for every input, and a PEFT adapter holds one fixed prompt; {fix}")


def _stored_prompt(registry, record: PromptRecord):
    """The record's (m, d) float32 prompt as a numpy array (the registry verifies the bytes' sha256)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        prompt = load(registry.load_payload(record)).get("prompt")
    except (SafetensorError, ValueError) as exc:
        raise AttemptError(f"{record.label}: stored file is not valid safetensors ({exc}); retrain it or restore "
                           "the registry from a backup") from None
    if prompt is None or prompt.ndim != 2 or prompt.shape[1] != record.d:
        raise AttemptError(f"{record.label}: stored prompt has the wrong shape; retrain it")
    return prompt


def _peft_backbone(record: PromptRecord) -> tuple[str, str]:
    """PEFT's task type for the record's backbone, and the base model to name, without loading it."""
    spec = record.backbone
    folder = cache_dir() / "backbones" / spec if spec in OFFLINE_ALIASES else Path(spec).expanduser()
    base_model = str(folder.resolve()) if folder.is_dir() else spec
    config_file = folder / "config.json" if folder.is_dir() else _cached_hub_config(spec)
    if config_file is not None and Path(config_file).is_file():
        try:
            # Encoder-decoder configs (T5, BART, …) always write is_encoder_decoder; others leave it out.
            encoder_decoder = bool(json.loads(Path(config_file).read_text(encoding="utf-8")).get("is_encoder_decoder"))
            return ("SEQ_2_SEQ_LM" if encoder_decoder else "CAUSAL_LM"), base_model
        except (OSError, ValueError):
            pass
    model_class = str(record.fingerprint.get("class", ""))
    if model_class.endswith("ForCausalLM"):
        return "CAUSAL_LM", base_model
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES as SEQ2SEQ

    return ("SEQ_2_SEQ_LM" if model_class in SEQ2SEQ.values() else "CAUSAL_LM"), base_model


def _cached_hub_config(spec: str) -> str | None:
    if not _HUB_ID.match(spec):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(spec, "config.json")
    except Exception:  # noqa: BLE001 - a cache we cannot read is a cache miss
        return None
    return found if isinstance(found, str) else None


def _write_adapter(output: Path, config: dict, prompt, metadata: dict[str, str]) -> None:
    """Both files into a staging folder beside ``output``, then one rename: a reader sees all or nothing."""
    import numpy as np
    from safetensors.numpy import save_file

    staging = output.parent / f".{output.name}-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        save_file({PEFT_KEY: np.ascontiguousarray(prompt)}, str(staging / WEIGHTS_FILE), metadata=metadata)
        os.replace(staging, output)  # onto a missing or empty folder
    except OSError as exc:
        raise AttemptError(f"cannot write {output}: {exc.strerror or exc}; check free space and permissions") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
