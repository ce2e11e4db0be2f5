"""The source prompt zoo: trained source prompts that ship inside the package, and pulling them.

Layout: one folder per backbone, ``attemptctl/zoo/<backbone>/``, holding one ``<task>.safetensors``
per source (exactly the bytes the registry stores for it) and ``manifest.json``, which says for each
prompt how it was made (task, backbone fingerprint, m, steps and rows seen, data files, dev and test
scores, sha256, the recipe command). ``recipes/zoo.py`` trains and ships them; :func:`pull_zoo`
registers them into a user's registry. These prompts answer in label words; prompts trained with
``--labels index`` ship in the same layout under ``<backbone>/index/``.

Torch-free: pulling is reading files, checking hashes and writing rows, so it takes a second.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from attemptctl.errors import AttemptError, BackboneError
from attemptctl.method.backbones import MODEL_KEYS
from attemptctl.tasks import LABEL_FORMATS, labels_of
from registry import PromptRecord, Registry

MANIFEST_NAME = "manifest.json"
#: What a zoo prompt and a registry's prompts must share: the model, and the tokenizer's special ids.
FINGERPRINT_KEYS = (*MODEL_KEYS, "special_ids")


PACKAGE_ZOO = Path(__file__).resolve().parent


def zoo_dir(backbone: str, root: Path | None = None, labels: str = "words") -> Path:
    """The folder of ``backbone``'s zoo, in the package (or under ``root``, a copy of the zoo), for
    prompts answering in the label format ``labels``."""
    if labels not in LABEL_FORMATS:
        raise AttemptError(f"unknown labels '{labels}'; choose one of {', '.join(LABEL_FORMATS)}")
    folder = (root or PACKAGE_ZOO) / backbone
    return folder if labels == "words" else folder / labels


def available_backbones(root: Path | None = None) -> list[str]:
    return sorted(p.name for p in (root or PACKAGE_ZOO).iterdir() if (p / MANIFEST_NAME).is_file())


def load_manifest(backbone: str, root: Path | None = None, labels: str = "words") -> dict:
    """The manifest of ``backbone``'s zoo (the package's, or the copy at ``root``); a clear error when there is
    none or it is damaged."""
    if root is not None:
        _check_zoo_folder(Path(root))
    path = zoo_dir(backbone, root, labels) / MANIFEST_NAME
    if not path.is_file():
        if labels != "words":
            where = "" if root is None else f" in zoo folder {root}"
            raise AttemptError(f"no source prompt zoo answering in label format '{labels}' for backbone '{backbone}'"
                               f"{where}; train sources with `attemptctl source train TASK --labels {labels}`")
        have = ", ".join(available_backbones(root)) or "none"
        if root is not None:
            raise AttemptError(f"zoo folder {root} has no zoo for backbone '{backbone}' (its backbones: {have}); "
                               "give a copy of attemptctl/zoo (one folder per backbone)")
        raise AttemptError(f"no source prompt zoo for backbone '{backbone}' (zoos ship for: {have}); "
                           "train sources with `attemptctl source train TASK`")
    try:
        manifest = json.loads(path.read_text())
        manifest["prompts"], manifest["fingerprint"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AttemptError(f"zoo manifest {path} is damaged ({type(exc).__name__}: {exc}); {_remedy(root)}") from None
    return manifest


def _check_zoo_folder(root: Path) -> None:
    """A zoo copy given by the user: a folder of backbone folders, not one backbone's zoo or a file."""
    if not root.exists():
        raise AttemptError(f"zoo folder {root} does not exist; give a copy of attemptctl/zoo (one folder per backbone)")
    if not root.is_dir():
        raise AttemptError(f"zoo folder {root} is not a folder; give a copy of attemptctl/zoo (one folder per backbone)")
    if (root / MANIFEST_NAME).is_file():
        raise AttemptError(f"zoo folder {root} is one backbone's zoo; give the folder above it (one folder per backbone)")


def _remedy(root: Path | None) -> str:
    """What to do about a damaged zoo file: the package's is reinstalled, a copy is made again."""
    return "reinstall attemptctl" if root is None else f"copy zoo folder {root} again"


def safetensors_shape(payload: bytes, key: str = "prompt") -> list[int]:
    """The shape of tensor ``key`` from a safetensors header, without loading the tensors."""
    try:
        (size,) = struct.unpack("<Q", payload[:8])
        return list(json.loads(payload[8:8 + size])[key]["shape"])
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise AttemptError(f"not a safetensors prompt file ({exc})") from None


#: Paper sources (Asai et al. 2022) that no zoo can hold yet, and why.
MISSING = {"record": "ReCoRD's data is not available offline here; train it with `attemptctl source train record`"}


def ship_prompt(registry: Registry, record: PromptRecord, *, test_metrics: dict, test_examples: int,
                recipe: str, data_dir: str | Path | None = None) -> dict:
    """Copy a trained source prompt out of ``registry`` into the zoo and enter it in the manifest.

    ``data_dir`` is the data directory the prompt was trained from: the manifest records the data
    folder relative to it (``glue/mnli``), so that it names the same files on every machine.
    """
    payload = registry.load_payload(record)  # verified against its sha256
    folder = zoo_dir(record.backbone, labels=labels_of(record))
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / MANIFEST_NAME
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        manifest["fingerprint"] = completed_fingerprint(manifest["fingerprint"], record.fingerprint, record.label)
    else:
        manifest = new_manifest(record.backbone, record.fingerprint)
    config = dict(record.config)
    file = f"{record.task}.safetensors"
    entry = {
        "task": record.task, "file": file, "sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload),
        "m": record.m, "d": record.d, "steps": record.metrics.get("steps"), "best_step": record.metrics.get("best_step"),
        "rows_seen": (record.metrics.get("steps") or 0) * int(config.get("batch_size", 0)),
        "train_rows": record.metrics.get("train_rows"), "seconds": record.metrics.get("seconds"),
        "data": portable_data_path(config.get("data"), data_dir),
        "config": {k: v for k, v in config.items() if k != "data"},
        "dev": record.metrics.get("dev"), "history": record.metrics.get("history"),
        "test": {"metrics": test_metrics, "examples": test_examples}, "recipe": recipe,
    }
    (folder / file).write_bytes(payload)
    manifest["prompts"][record.task] = entry
    manifest.setdefault("missing", {}).pop(record.task, None)  # shipped now: no longer missing
    write_manifest(manifest_path, manifest)
    return entry


def completed_fingerprint(shipped: dict, fingerprint: dict, what: str) -> dict:
    """A manifest's fingerprint with the keys ``fingerprint`` (of ``what``, e.g. a prompt to ship) adds
    to it: the tokenizer's special ids, for a zoo shipped before fingerprints recorded them.

    Refused when the model differs, or when both record special ids and they differ.
    """
    differing = [k for k in FINGERPRINT_KEYS if shipped.get(k) != fingerprint.get(k)
                 and (k in MODEL_KEYS or (k in shipped and k in fingerprint))]
    if differing:
        raise BackboneError(f"{what} was trained on another build of {shipped.get('name')} than the zoo's prompts "
                            f"(differs in {', '.join(differing)})")
    return {**fingerprint, **shipped}


def portable_data_path(source: str | None, data_dir: str | Path | None) -> str | None:
    """A data source as a manifest records it: a folder under ``data_dir`` relative to it (the layout
    ``<dataset>/<config>`` that ``--data-dir`` expects, the same on every machine); anything else
    (a hub dataset, a folder elsewhere) as it is."""
    if source is None or data_dir is None:
        return source
    path, root = Path(source).resolve(), Path(data_dir).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else source


def new_manifest(backbone: str, fingerprint: dict) -> dict:
    """The manifest of a zoo that ships nothing yet: its backbone, and the paper sources it cannot hold."""
    return {"backbone": backbone, "fingerprint": dict(fingerprint), "prompts": {}, "missing": dict(MISSING)}


def write_manifest(path: Path, manifest: dict) -> None:
    """The manifest, whole or not at all: written beside it, then renamed over it."""
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    staging.replace(path)


@dataclass(frozen=True)
class PullResult:
    """What one pull did: the prompts it registered and the ones the registry already had."""

    added: list[PromptRecord]
    present: list[PromptRecord]
    missing: dict[str, str]
    """Paper sources with no prompt in this zoo, and why (e.g. ReCoRD, whose data is not available)."""


def pull_zoo(registry: Registry, backbone: str, *, tasks: list[str] | None = None, root: Path | None = None,
             labels: str = "words") -> PullResult:
    """Register the zoo's source prompts for ``backbone`` (answering in ``labels``) into ``registry``:
    verified, idempotent.

    Refused, with the registry unchanged, when the registry already holds prompts of another
    backbone (or of another build of this one: the fingerprints differ).
    """
    manifest = load_manifest(backbone, root, labels)
    prompts = manifest["prompts"]
    unknown = [t for t in (tasks or []) if t not in prompts]
    if unknown:
        raise AttemptError(f"the {backbone} zoo has no prompt for {', '.join(unknown)}; it has {', '.join(sorted(prompts))}")
    _check_backbone(registry, backbone, manifest["fingerprint"])
    chosen = {t: prompts[t] for t in (tasks or sorted(prompts))}
    folder = zoo_dir(backbone, root, labels)
    payloads = {task: _verified_payload(folder / entry["file"], entry, root) for task, entry in chosen.items()}  # all checked before any write
    added, present = [], []
    for task, entry in chosen.items():
        have = [r for r in registry.list(kind="source", name=task)
                if r.sha256 == entry["sha256"] and labels_of(r) == labels]
        if have:
            present.append(have[-1])
            continue
        where = f"{backbone}/{entry['file']}" if labels == "words" else f"{backbone}/{labels}/{entry['file']}"
        place = "attemptctl zoo" if root is None else f"zoo folder {Path(root).resolve()}:"
        origin = {"type": "zoo", "from": f"{place} {where}", "recipe": entry.get("recipe")}
        added.append(registry.register(
            kind="source", name=task, task=task, backbone=backbone, fingerprint=manifest["fingerprint"], d=entry["d"],
            m=entry["m"], payload=payloads[task], variant="prompt-tuning",
            config={**entry.get("config", {}), "labels": labels, "data": entry.get("data"), "origin": origin},
            metrics={k: entry.get(k) for k in ("dev", "steps", "best_step", "train_rows", "seconds", "history", "test")}))
    return PullResult(added, present, dict(manifest.get("missing", {})) if tasks is None else {})


def _verified_payload(path: Path, entry: dict, root: Path | None = None) -> bytes:
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise AttemptError(f"zoo prompt {path} cannot be read ({exc.strerror}); {_remedy(root)}") from None
    if hashlib.sha256(payload).hexdigest() != entry["sha256"]:
        raise AttemptError(f"zoo prompt {path} does not match its sha256 in the manifest; {_remedy(root)}")
    if safetensors_shape(payload) != [entry["m"], entry["d"]]:
        raise AttemptError(f"zoo prompt {path} is not a {entry['m']} x {entry['d']} prompt; {_remedy(root)}")
    return payload


def _check_backbone(registry: Registry, backbone: str, fingerprint: dict) -> None:
    existing = registry.list()
    other = next((r for r in existing if r.backbone != backbone
                  or any(r.fingerprint.get(k) != fingerprint.get(k) for k in FINGERPRINT_KEYS
                         if k in r.fingerprint and k in fingerprint)), None)
    if other is not None:
        raise BackboneError(f"registry {registry.root} holds prompts for backbone '{other.backbone}' ({other.label}); "
                            f"the zoo's prompts are for '{backbone}'; pull into another --registry")
