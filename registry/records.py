"""Plain, immutable records the registry hands out; the ORM rows never leave the store."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from .errors import RegistryError

KINDS = ("source", "target", "attention")

_LABELS = {"source": "source prompt", "target": "target prompt", "attention": "attention module"}
_REF = re.compile(r"^(?P<name>[^@\s]+?)(?:@(?P<version>\d+))?$")


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise RegistryError(f"unknown prompt kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


def kind_label(kind: str) -> str:
    """Human name of a kind, used in every message so the user knows which catalog was searched."""
    return _LABELS[check_kind(kind)]


def format_ref(name: str, version: int) -> str:
    return f"{name}@{version}"


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split ``"name"`` or ``"name@V"``; a missing version means "the latest"."""
    match = _REF.match(ref) if isinstance(ref, str) else None
    if match is None or (match["version"] is not None and int(match["version"]) < 1):
        raise RegistryError(f"bad prompt reference {ref!r}; write it as NAME or NAME@VERSION (e.g. mnli@2)")
    version = match["version"]
    return match["name"], None if version is None else int(version)


def check_name(name: str) -> str:
    parsed, version = parse_ref(name)
    if version is not None:
        raise RegistryError(f"prompt name {name!r} must not carry a version; the registry assigns versions")
    return parsed


# Mapping fields are excluded from the hash only: dicts are unhashable, and equality still
# compares them, so equal records keep equal hashes.
@dataclass(frozen=True)
class PromptRecord:
    """One registered version of a source prompt, target prompt or attention module."""

    kind: str
    name: str
    version: int
    task: str
    backbone: str
    fingerprint: Mapping[str, Any] = field(hash=False)
    d: int
    m: int
    sources: tuple[str, ...]
    attention: str | None
    variant: str
    parent: str | None
    config: Mapping[str, Any] = field(hash=False)
    metrics: Mapping[str, Any] = field(hash=False)
    sha256: str
    size: int
    created_at: datetime

    @property
    def ref(self) -> str:
        return format_ref(self.name, self.version)

    @property
    def label(self) -> str:
        """E.g. ``"source prompt mnli@1"``: how messages name this record."""
        return f"{kind_label(self.kind)} {self.ref}"


@dataclass(frozen=True)
class EvaluationRecord:
    """One evaluation of a registered prompt version on a split."""

    kind: str
    name: str
    version: int
    split: str
    metrics: Mapping[str, float] = field(hash=False)
    examples: int
    seconds: float
    created_at: datetime

    @property
    def ref(self) -> str:
        return format_ref(self.name, self.version)
