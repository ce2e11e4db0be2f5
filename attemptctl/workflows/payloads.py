"""Tensors <-> registry payloads (safetensors bytes), with the backbone check on every load.

The registry stores bytes and verifies their sha256; this module turns them into tensors and
refuses a payload whose structure is wrong, or whose backbone fingerprint differs from the loaded
one, naming the prompt.
"""

from __future__ import annotations

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from attemptctl.errors import AttemptError
from attemptctl.method.attention import AttentionModule
from attemptctl.method.backbones import Backbone, check_fingerprint
from attemptctl.method.mixture import PromptMixture
from attemptctl.method.variants import variant_of


def prompt_payload(prompt: torch.Tensor) -> bytes:
    """A prompt (m, d) as safetensors bytes."""
    return save_bytes({"prompt": prompt.detach().cpu().float().contiguous()})


def attention_settings(module: AttentionModule) -> dict:
    """What a registered G records about how it scores (besides its tensors): K, the divisor, the pooling."""
    return {"temperature_k": module.temperature_k, "attn_scale": module.scale, "attn_pool": module.pooling,
            "attn_norm": module.norm_mode,
            "attn_divisor": float(module.divisor())}


def attention_payload(module: AttentionModule) -> bytes:
    """G's parameters and its calibration buffers (``input_mean``, ``input_std``, ``score_scale``)."""
    state = {k: v.detach().cpu().float().contiguous() for k, v in module.state_dict().items()}
    return save_bytes(state, metadata={"rank": str(module.down.out_features), "temperature_k": str(module.temperature_k),
                                       "scale": module.scale, "pooling": module.pooling})


def _tensors(registry, record) -> dict[str, torch.Tensor]:
    payload = registry.load_payload(record)  # verifies sha256
    try:
        return load_bytes(payload)
    except (SafetensorError, ValueError, OSError) as exc:
        raise AttemptError(f"{record.kind} {record.ref}: stored file is not valid safetensors ({exc}); "
                           "retrain it or restore the registry from a backup") from exc


def payload_summary(registry, record) -> dict:
    """What a stored payload holds, for `registry show`: a prompt's shape and the norms of its rows (how far
    training moved it: a zero-started target prompt that barely trained stays near 0), or G's parameter count.
    A payload that cannot be read is described, not raised: showing a record must work on a damaged registry."""
    try:
        tensors = _tensors(registry, record)
    except Exception as exc:  # noqa: BLE001 - any damage is reported in the record's view instead
        return {"error": f"{exc}; `attemptctl registry verify` checks every file"}
    prompt = tensors.get("prompt")
    if prompt is not None and prompt.dim() == 2:
        norms = prompt.float().norm(dim=1)
        return {"shape": list(prompt.shape), "row_norm": {"mean": round(float(norms.mean()), 4),
                                                         "min": round(float(norms.min()), 4),
                                                         "max": round(float(norms.max()), 4)}}
    return {"tensors": len(tensors), "values": sum(t.numel() for t in tensors.values())}


def load_prompt(registry, record, backbone: Backbone) -> torch.Tensor:
    """The (m, d) prompt of a source or target record, checked against ``backbone``."""
    check_fingerprint(f"{record.kind} prompt {record.ref}", dict(record.fingerprint), backbone)
    tensors = _tensors(registry, record)
    prompt = tensors.get("prompt")
    if prompt is None or prompt.dim() != 2 or prompt.shape[1] != backbone.d:
        raise AttemptError(f"{record.kind} {record.ref}: stored prompt has the wrong shape; retrain it")
    return prompt


def load_attention(registry, record, backbone: Backbone) -> AttentionModule:
    """The attention module G of an attention record, checked against ``backbone``."""
    check_fingerprint(f"attention module {record.ref}", dict(record.fingerprint), backbone)
    tensors = _tensors(registry, record)
    # A module registered before the scale was calibrated has no buffers and no settings: it was
    # trained with the paper's divisor and pooling, and keeps them.
    config = record.config
    try:
        rank = tensors["down.weight"].shape[0]
        module = AttentionModule(backbone.d, rank=rank, temperature_k=float(config.get("temperature_k", 1.0)),
                                 scale=config.get("attn_scale", "paper"), pooling=config.get("attn_pool", "max"),
                                 norm=config.get("attn_norm", "trained"))
        if "score_scale" not in tensors:
            tensors = {**tensors, **{k: v for k, v in module.state_dict().items() if k not in tensors}}
        module.load_state_dict(tensors)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise AttemptError(f"attention {record.ref}: stored module does not match this backbone ({exc}); retrain it") from exc
    return module


def load_mixture(registry, records, backbone: Backbone):
    """One :class:`PromptMixture` serving ``records`` (sources, or targets that share sources and G)."""
    first = records[0]
    keys = {(r.kind, r.sources, r.attention, r.variant) for r in records}
    if len(keys) > 1:
        raise AttemptError("prompts mixed into one model must share kind, sources and attention module: "
                           + ", ".join(r.ref for r in records))
    targets = {r.name: load_prompt(registry, r, backbone) for r in records}
    variant = variant_of(first.variant).mixing
    device = backbone.model.device
    if first.kind == "source" or variant == "prompt-tuning":
        return PromptMixture(targets).to(device)
    sources = {ref: load_prompt(registry, registry.get("source", ref), backbone) for ref in first.sources}
    attention = load_attention(registry, registry.get("attention", first.attention), backbone) if first.attention else None
    return PromptMixture(targets, sources=sources, attention=attention, variant=variant).to(device)
